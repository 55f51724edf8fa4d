"""scripts/pick-python: the interpreter make install builds the venv from."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "pick-python"


def _pick(candidates: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PICK_PYTHON_CANDIDATES": candidates, "PICK_PYTHON_VERBOSE": "1"}
    return subprocess.run(["sh", str(SCRIPT)], env=env, capture_output=True, text=True,
                          timeout=120, check=False)


def test_it_names_a_working_interpreter_and_skips_what_is_not_one(tmp_path: Path) -> None:
    old = tmp_path / "python3.9"  # says it is a Python below 3.11
    old.write_text("#!/bin/sh\necho 'Python 3.9' >&2\nexit 1\n")
    old.chmod(0o755)
    done = _pick(f"no-such-python {old} {sys.executable} {sys.executable}")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == os.path.realpath(sys.executable)
    # timed once, though named twice
    assert done.stderr.count(os.path.realpath(sys.executable)) == 1


def test_none_found_is_one_line_and_a_failure() -> None:
    done = _pick("no-such-python /nonexistent/python3")
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.strip().splitlines() == [
        "no Python 3.11+ with venv, ensurepip, sqlite3 and ssl found"
        " (tried: no-such-python /nonexistent/python3)"]
