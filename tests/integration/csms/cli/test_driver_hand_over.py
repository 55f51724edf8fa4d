"""A driver links a card and hands the operator the command to run, on a managed local
chain: the command is printed so that it can be copied, and the operator's list shows
whom the card is charged to."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from settlement.chain import find_anvil
from support import IN_CI


def csms(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CSMS_")}
    r = subprocess.run([sys.executable, "-m", "csms", *args], cwd=cwd, capture_output=True,
                       text=True, timeout=180,
                       env={**clean, "COLUMNS": "80", "CSMS_DB": "c.db",
                            "CSMS_DATA_DIR": "data"})
    assert "Traceback" not in r.stdout + r.stderr, r.stderr
    return r


@pytest.fixture
def chain_folder(tmp_path: Path) -> Path:
    if find_anvil() is None:
        if IN_CI:
            pytest.fail("anvil is required (make install)")
        pytest.skip("anvil not installed: make install")
    r = csms("contract", "deploy", "--chain", "local", cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    return tmp_path


def test_the_command_a_driver_hands_over_is_one_line_and_runs(chain_folder: Path) -> None:
    """``csms wallet link-card`` ends "give the operator: csms drivers link TAG --driver
    ADDRESS --salt SALT". At 80 columns it is wrapped into three lines with no line
    continuation: pasted into a shell, ``csms drivers link CARD01 --driver`` runs alone
    and fails, then the address and the salt are run as commands."""
    key = ["--keystore", "driver.json", "--password-file", "driver.pw"]
    assert csms("wallet", "new", *key, "--fund", cwd=chain_folder).returncode == 0
    r = csms("wallet", "deposit", "5000", *key, cwd=chain_folder)
    assert r.returncode == 0, r.stdout + r.stderr
    r = csms("wallet", "link-card", "CARD01", *key, cwd=chain_folder)
    assert r.returncode == 0, r.stdout + r.stderr
    lines = [line for line in r.stdout.splitlines() if "csms drivers link" in line]
    assert lines, r.stdout
    command = lines[0][lines[0].index("csms drivers link"):]
    whole = (re.search(r"--driver 0x[0-9a-fA-F]{40}\b", command)
             and re.search(r"--salt 0x[0-9a-f]{64}\b", command))
    assert whole, f"the command is cut over several lines: {r.stdout!r}"
    # the operator runs it as printed
    linked = csms(*shlex.split(command)[1:], cwd=chain_folder)
    assert linked.returncode == 0, linked.stdout + linked.stderr


def test_drivers_list_at_80_columns_shows_whole_addresses(chain_folder: Path) -> None:
    """``csms drivers list`` at 80 columns cuts the driver's address to
    ``0x901bb6a816f901cd9…``: the operator cannot tell whose escrow a card is charged to
    (the commitment is shortened on purpose; the address is what the operator checks)."""
    key = ["--keystore", "driver.json", "--password-file", "driver.pw"]
    assert csms("wallet", "new", *key, "--fund", cwd=chain_folder).returncode == 0
    assert csms("wallet", "deposit", "5000", *key, cwd=chain_folder).returncode == 0
    r = csms("wallet", "link-card", "CARD01", *key, cwd=chain_folder)
    assert r.returncode == 0, r.stdout + r.stderr
    flat = " ".join(r.stdout.split())
    driver = re.search(r"--driver (0x[0-9a-fA-F]{40})", flat)
    salt = re.search(r"--salt (0x[0-9a-f]{64})", flat)
    assert driver and salt, r.stdout
    r = csms("drivers", "link", "CARD01", "--driver", driver.group(1), "--salt",
             salt.group(1), cwd=chain_folder)
    assert r.returncode == 0, r.stdout + r.stderr
    out = csms("drivers", "list", cwd=chain_folder).stdout
    assert driver.group(1).lower() in out.lower(), out


def test_wallet_terms_answers_in_words_not_a_python_repr(chain_folder: Path) -> None:
    """``csms wallet terms`` answers "terms of 0x...: Terms(max_per_kwh=50,
    max_per_minute=0, ...)", the repr of a Python object, where ``wallet status`` says
    "accepts 50/kWh 0/min fee 100, at most 5000 a session"."""
    key = ["--keystore", "driver.json", "--password-file", "driver.pw"]
    assert csms("wallet", "new", *key, "--fund", cwd=chain_folder).returncode == 0
    r = csms("wallet", "terms", *key, "--per-kwh", "50", "--session-fee", "100",
             cwd=chain_folder)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Terms(" not in r.stdout and "max_per_kwh=" not in r.stdout, r.stdout
    assert "50" in r.stdout and "100" in r.stdout, r.stdout
    r = csms("wallet", "terms", *key, "--per-kwh", "60", "--session-fee", "100", "--json",
             cwd=chain_folder)  # higher terms apply at once
    assert r.returncode == 0, r.stdout + r.stderr
    terms = json.loads(r.stdout)["terms"]
    assert (terms["max_per_kwh"], terms["max_session_fee"]) == (60, 100), terms
