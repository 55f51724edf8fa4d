"""`csms verify` against a receipt file a dishonest operator may hand a driver: one line
and exit 2 for a file that is no receipt, never a crash of the process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.parametrize("depth", [100_000, 300_000])
def test_a_deeply_nested_file_is_one_line_not_a_crash(tmp_path: Path, depth: int) -> None:
    """verify imports the chain libraries, one of which (py_ecc) raises the recursion
    limit to 100,000: the standard library's JSON reader then recursed until the C stack
    ran out (SIGSEGV, exit -11) on a file of a few hundred kilobytes."""
    receipt = tmp_path / "receipt.json"
    receipt.write_text("[" * depth + "]" * depth)
    r = subprocess.run([sys.executable, "-m", "csms", "verify", str(receipt),
                        "--data-dir", str(tmp_path / "data")],
                       capture_output=True, text=True, timeout=60,
                       env={**os.environ, "COLUMNS": "200"})
    assert r.returncode == 2, (r.returncode, r.stderr[-400:])
    assert "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and r.stderr.startswith("error:"), r.stderr
