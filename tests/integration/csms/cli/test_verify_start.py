"""``csms verify`` reads and checks the receipts before it loads the chain's libraries
(web3, eth-account: ~0.5 s of CPU): a file that is no receipt is said at once."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest


def imported(*args: str, cwd: Path) -> tuple[int, str, set[str]]:
    """Exit code, the error lines and the top-level packages a ``csms`` process imported."""
    r = subprocess.run([sys.executable, "-X", "importtime", "-m", "csms", *args], cwd=cwd,
                       capture_output=True, text=True, timeout=60)
    lines = r.stderr.splitlines()
    modules = {line.rsplit("|", 1)[1].strip().split(".")[0]
               for line in lines if line.startswith("import time:") and "|" in line}
    return r.returncode, "\n".join(x for x in lines if not x.startswith("import time:")), modules


@pytest.mark.parametrize("content", [None, "not json", json.dumps({"version": 1}),
                                     "[" * 2000 + "]" * 2000])
def test_a_file_that_is_no_receipt_is_refused_before_the_chain_is_loaded(
        tmp_path: Path, content: str | None) -> None:
    if content is not None:
        (tmp_path / "r.json").write_text(content)
    code, errors, modules = imported("verify", "r.json", cwd=tmp_path)
    assert code == 2 and errors.startswith("error: ") and len(errors.splitlines()) == 1, errors
    assert not modules & {"web3", "eth_account", "py_ecc"}, sorted(modules)


def test_the_receipt_checks_themselves_need_no_chain_library() -> None:
    r = subprocess.run([sys.executable, "-c", "import sys, settlement.receipts; "
                        "print(sorted({'web3', 'eth_account', 'py_ecc'} & set(sys.modules)))"],
                       capture_output=True, text=True, timeout=60)
    assert r.stdout.strip() == "[]", r.stderr
