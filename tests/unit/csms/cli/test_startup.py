"""The ``csms`` command starts for every call: its help, and the parsing of any command,
import neither the storage adapters, the service layer, cryptography, the chain's
libraries nor the event loop, nor the modules of the commands it does not run; a command
imports what its work needs when it runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from csms.cli.station_reports import REPORT_KINDS
from csms.service import driver

# what a command's work needs, never the command's start-up
HEAVY = (
    "asyncio",
    "sqlite3",
    "aiosqlite",
    "asyncpg",
    "ssl",
    "urllib.request",
    "rich.console",
    "csms.storage",
    "csms.storage.sqlite",
    "csms.service.ports",
    "csms.service.charging",
    "csms.service.driver",
    "csms.service.views",
    "csms.protocol",
    "csms.metering.ocmf",
    "csms.bootstrap",
    "cryptography",
    "cryptography.x509",
    "settlement.anvil_guard",
    "settlement.chain",
    "web3",
    "eth_account",
    "vyper",
)

# runs ``python -m csms ARGS`` in this process, then prints the modules it imported
PROBE = """
import json, runpy, sys
sys.argv = ["csms", *sys.argv[1:]]
try:
    runpy.run_module("csms", run_name="__main__", alter_sys=True)
except SystemExit as exc:
    code = exc.code
else:
    code = 0
sys.stdout.flush()
sys.stderr.write("\\n" + json.dumps({"code": code, "modules": sorted(sys.modules)}) + "\\n")
"""


def imported_by(args: list[str], cwd: Path) -> tuple[int, set[str], list[str]]:
    """The exit code, the modules imported and the lines written to stderr."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CSMS_")}
    r = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True,
                       timeout=60, env={**env, "COLUMNS": "80"}, cwd=cwd)
    *said, report = r.stderr.strip().splitlines()
    found = json.loads(report)
    return found["code"], set(found["modules"]), [line for line in said if line]


@pytest.mark.parametrize("args", [
    ["--help"],
    [],
    ["tags", "--help"],
    ["tags", "list", "--help"],
    ["stations", "add", "--help"],
    ["certificates", "install", "--help"],
    ["remote", "--help"],
    ["tags", "list", "--no-such-option"],
], ids=lambda a: " ".join(a) or "no arguments")
def test_starting_the_command_imports_no_heavy_module(args: list[str], tmp_path: Path) -> None:
    code, modules, _ = imported_by(args, tmp_path)
    assert code in (0, 2)
    assert "csms.cli" in modules
    usage_error = "--no-such-option" in args  # its one line is printed by Rich's console
    heavy = sorted(m for m in HEAVY if m in modules and not (usage_error and m == "rich.console"))
    assert not heavy, f"csms {' '.join(args)} imports {heavy}"


# the modules of the command line that a call imports besides those of the command it runs
START = {"csms.cli", "csms.cli.common", "csms.cli.lazy"}


# the modules a group's commands are in (stations holds commands of other modules:
# set-password, set-host, variables...)
OWN = {
    "tags": {"csms.cli.tags"},
    "settle": {"csms.cli.settle"},
    "serve": {"csms.cli.serve"},
    "stations": {"csms.cli.stations", "csms.cli.station_reports", "csms.cli.remote",
                 "csms.cli.parties", "csms.cli.variables", "csms.cli.retention"},
}


@pytest.mark.parametrize("args", [
    ["--help"],
    [],
    ["nosuch"],
    ["tags", "list", "--help"],
    ["tags", "nosuch"],
    ["settle", "run", "--help"],
    ["serve", "--help"],
    ["stations", "add", "--help"],
], ids=lambda a: " ".join(a) or "no arguments")
def test_a_call_imports_only_the_group_it_runs(args: list[str], tmp_path: Path) -> None:
    code, modules, _ = imported_by(args, tmp_path)
    assert code in (0, 2)
    imported = {m for m in modules if m == "csms.cli" or m.startswith("csms.cli.")}
    own = OWN.get(args[0], set()) if args else set()
    assert imported == START | own, f"csms {' '.join(args)} imports {sorted(imported - START)}"


def test_a_command_imports_what_its_work_needs(tmp_path: Path) -> None:
    db = tmp_path / "csms.sqlite3"
    code, modules, _ = imported_by(["tags", "list", "--db", str(db), "--data-dir",
                                 str(tmp_path / "data")], tmp_path)
    assert code == 0
    assert {"csms.storage.sqlite", "asyncio", "csms.service.views"} <= modules


def test_the_report_kinds_of_the_help_are_the_service_ones() -> None:
    assert REPORT_KINDS == driver.REPORT_KINDS


def test_the_console_made_at_first_use_serves_a_progress_display(
        capsys: pytest.CaptureFixture[str]) -> None:
    from rich.progress import Progress

    from csms.cli.common import console

    with Progress(console=console, transient=True) as progress:  # enters the console
        progress.add_task("settling...")
        console.print("a line while it shows", markup=False)
    assert "a line while it shows" in capsys.readouterr().out


@pytest.mark.parametrize("args", [
    ["wallet", "entries", "--host", "0x1234"],
    ["wallet", "entries"],
    ["wallet", "entries", "--host", "0x" + "1" * 40, "--contract", "0xnothex"],
], ids=lambda a: " ".join(a[2:]) or "no address")
def test_a_wrong_argument_is_told_before_the_chains_libraries_load(
        args: list[str], tmp_path: Path) -> None:
    """A host's typo is answered at once: the chain's libraries take most of a second."""
    code, modules, _ = imported_by(args, tmp_path)
    assert code == 2
    loaded = sorted(m for m in ("settlement.chain", "web3", "eth_account") if m in modules)
    assert not loaded, f"csms {' '.join(args)} imports {loaded}"


@pytest.mark.parametrize("content", [None, "not json", json.dumps({"version": 1}),
                                     "[" * 2000 + "]" * 2000],
                         ids=["missing", "not json", "no receipt", "nested 2,000 levels"])
def test_a_file_that_is_no_receipt_is_refused_before_the_chains_libraries_load(
        content: str | None, tmp_path: Path) -> None:
    """csms verify reads and checks the receipts first: the chain's libraries take most
    of a second."""
    if content is not None:
        (tmp_path / "r.json").write_text(content)
    code, modules, said = imported_by(["verify", "r.json"], tmp_path)
    assert code == 2 and len(said) == 1 and said[0].startswith("error: "), said
    loaded = sorted(m for m in ("settlement.chain", "web3", "eth_account", "py_ecc")
                    if m in modules)
    assert not loaded, f"csms verify imports {loaded}"
