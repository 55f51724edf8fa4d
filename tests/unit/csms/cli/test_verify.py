"""``csms verify`` reads the receipt files the driver's page reads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from csms.cli.verify import _read_json


def test_a_receipt_saved_with_a_byte_order_mark_is_read(tmp_path: Path) -> None:
    """An editor that saves UTF-8 with a byte order mark (Windows Notepad did by default):
    the receipt page reads the file (a File's text() drops the mark), ``csms verify``
    answers "cannot read receipt" - the same file, no verdict from one of the two."""
    receipt = {"voltledger_receipt": 2, "record": {"id_tag": "TAG0"}}
    path = tmp_path / "receipt.json"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(receipt).encode())
    assert _read_json(path) == receipt


def test_a_number_beyond_the_interpreters_digits_is_said_in_the_receipts_words(
    tmp_path: Path,
) -> None:
    """A figure of 5,000 digits: no receipt's, refused in words about the receipt, not
    the interpreter's advice to raise its limit (``sys.set_int_max_str_digits``)."""
    path = tmp_path / "receipt.json"
    path.write_text('{"record": {"energy_wh": ' + "9" * 5000 + "}}")
    with pytest.raises(ValueError, match="a number of more than 4300 digits") as caught:
        _read_json(path)
    assert "set_int_max_str_digits" not in str(caught.value)
    path.write_text('{"record": ')  # not JSON: as before
    with pytest.raises(ValueError, match="Expecting value"):
        _read_json(path)
