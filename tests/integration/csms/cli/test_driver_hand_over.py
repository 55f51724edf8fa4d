"""A driver links a card and hands the operator the command to run, on a managed local
chain: the command is printed so that it can be copied, and the operator's list shows
whom the card is charged to."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
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


KEY = ["--keystore", "driver.json", "--password-file", "driver.pw"]


@pytest.fixture(scope="module")
def funded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with the contract deployed on a managed local chain and a driver's wallet
    funded; built once a module (each command starts the chain from its saved state:
    nothing runs between commands), copied for each test."""
    if find_anvil() is None:
        if IN_CI:
            pytest.fail("anvil is required (make install)")
        pytest.skip("anvil not installed: make install")
    folder = tmp_path_factory.mktemp("funded")
    r = csms("contract", "deploy", "--chain", "local", cwd=folder)
    assert r.returncode == 0, r.stdout + r.stderr
    r = csms("wallet", "new", *KEY, "--fund", cwd=folder)
    assert r.returncode == 0, r.stdout + r.stderr
    return folder


@pytest.fixture(scope="module")
def linked(funded: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A copy of ``funded`` where the driver deposited 5000 and linked card CARD01 (built
    once a module): the folder and what ``csms wallet link-card`` printed."""
    folder = tmp_path_factory.mktemp("linked") / "work"
    shutil.copytree(funded, folder)
    r = csms("wallet", "deposit", "5000", *KEY, cwd=folder)
    assert r.returncode == 0, r.stdout + r.stderr
    r = csms("wallet", "link-card", "CARD01", *KEY, cwd=folder)
    assert r.returncode == 0, r.stdout + r.stderr
    return folder, r.stdout


def copy_of(folder: Path, tmp_path: Path) -> Path:
    """A copy of a module's folder for one test (no chain runs: the files are whole)."""
    copy = tmp_path / "work"
    shutil.copytree(folder, copy)
    return copy


def test_the_command_a_driver_hands_over_is_one_line_and_runs(
        linked: tuple[Path, str], tmp_path: Path) -> None:
    """``csms wallet link-card`` ends "give the operator: csms drivers link TAG --driver
    ADDRESS --salt SALT". At 80 columns it is wrapped into three lines with no line
    continuation: pasted into a shell, ``csms drivers link CARD01 --driver`` runs alone
    and fails, then the address and the salt are run as commands."""
    folder, printed = linked
    lines = [line for line in printed.splitlines() if "csms drivers link" in line]
    assert lines, printed
    command = lines[0][lines[0].index("csms drivers link"):]
    whole = (re.search(r"--driver 0x[0-9a-fA-F]{40}\b", command)
             and re.search(r"--salt 0x[0-9a-f]{64}\b", command))
    assert whole, f"the command is cut over several lines: {printed!r}"
    # the operator runs it as printed
    linked_card = csms(*shlex.split(command)[1:], cwd=copy_of(folder, tmp_path))
    assert linked_card.returncode == 0, linked_card.stdout + linked_card.stderr


def test_drivers_list_at_80_columns_shows_whole_addresses(
        linked: tuple[Path, str], tmp_path: Path) -> None:
    """``csms drivers list`` at 80 columns cuts the driver's address to
    ``0x901bb6a816f901cd9…``: the operator cannot tell whose escrow a card is charged to
    (the commitment is shortened on purpose; the address is what the operator checks)."""
    folder, printed = linked
    work = copy_of(folder, tmp_path)
    flat = " ".join(printed.split())
    driver = re.search(r"--driver (0x[0-9a-fA-F]{40})", flat)
    salt = re.search(r"--salt (0x[0-9a-f]{64})", flat)
    assert driver and salt, printed
    r = csms("drivers", "link", "CARD01", "--driver", driver.group(1), "--salt",
             salt.group(1), cwd=work)
    assert r.returncode == 0, r.stdout + r.stderr
    out = csms("drivers", "list", cwd=work).stdout
    assert driver.group(1).lower() in out.lower(), out


def test_wallet_terms_answers_in_words_not_a_python_repr(funded: Path,
                                                         tmp_path: Path) -> None:
    """``csms wallet terms`` answers "terms of 0x...: Terms(max_per_kwh=50,
    max_per_minute=0, ...)", the repr of a Python object, where ``wallet status`` says
    "accepts 50/kWh 0/min fee 100, at most 5000 a session"."""
    work = copy_of(funded, tmp_path)
    r = csms("wallet", "terms", *KEY, "--per-kwh", "50", "--session-fee", "100", cwd=work)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Terms(" not in r.stdout and "max_per_kwh=" not in r.stdout, r.stdout
    assert "50" in r.stdout and "100" in r.stdout, r.stdout
    r = csms("wallet", "terms", *KEY, "--per-kwh", "60", "--session-fee", "100", "--json",
             cwd=work)  # higher terms apply at once
    assert r.returncode == 0, r.stdout + r.stderr
    terms = json.loads(r.stdout)["terms"]
    assert (terms["max_per_kwh"], terms["max_session_fee"]) == (60, 100), terms
