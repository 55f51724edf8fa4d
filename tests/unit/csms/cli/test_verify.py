"""``csms verify`` reads the receipt files the driver's page reads."""

from __future__ import annotations

import json
from pathlib import Path

from csms.cli.verify import _read_json


def test_a_receipt_saved_with_a_byte_order_mark_is_read(tmp_path: Path) -> None:
    """An editor that saves UTF-8 with a byte order mark (Windows Notepad did by default):
    the receipt page reads the file (a File's text() drops the mark), ``csms verify``
    answers "cannot read receipt" - the same file, no verdict from one of the two."""
    receipt = {"voltledger_receipt": 2, "record": {"id_tag": "TAG0"}}
    path = tmp_path / "receipt.json"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(receipt).encode())
    assert _read_json(path) == receipt
