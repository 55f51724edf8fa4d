"""Each error of ``csms certificates ...`` and ``csms ca ...`` names only flags that the
command run takes (its --help): ``ca show`` told the operator to "give --ca-cert /
--ca-key", which only ``csms serve`` takes (the CA of the other commands is set by
CSMS_CA_CERT / CSMS_CA_KEY or the settings file)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import typer.main

from csms.cli import app

ROOT = Path(__file__).resolve().parents[4]
GROUPS = ("certificates", "ca")


def help_flags(group: str, name: str) -> set[str]:
    """The flags of ``csms GROUP NAME``, as its --help lists them."""
    command = typer.main.get_command(app).commands[group].commands[name]  # type: ignore[attr-defined]
    return {opt for p in command.params for opt in (*p.opts, *p.secondary_opts)} | {"--help"}


def not_pem(tmp: Path) -> str:
    (tmp / "junk.pem").write_text("not a certificate")
    return str(tmp / "junk.pem")


# (group, command, args, environment): each is refused with one line
CASES: list[tuple[str, str, list[str], dict[str, str]]] = [
    ("certificates", "install", ["CP1", "ca.pem", "--type", "Nope"], {}),
    ("certificates", "install", ["CP1", "missing.pem"], {}),
    ("certificates", "install", ["CP1", "junk.pem"], {}),
    ("certificates", "list-installed", ["CP1"], {}),
    ("certificates", "delete", ["CP1"], {}),
    ("certificates", "delete", ["CP1", "--hash-algorithm", "MD5"], {}),
    ("certificates", "delete", ["CP1", "--file", "junk.pem"], {}),
    ("certificates", "renew", ["CP1"], {}),
    ("certificates", "issued", ["--station", "NOPE"], {}),
    ("ca", "show", [], {}),
    ("ca", "export", [], {}),
    ("ca", "show", [], {"CSMS_CA_CERT": "missing.pem", "CSMS_CA_KEY": "missing.key"}),
    ("ca", "export", [], {"CSMS_CA_CERT": "junk.pem", "CSMS_CA_KEY": "junk.pem"}),
    ("ca", "show", [], {"CSMS_CA_CERT": "junk.pem"}),
]


def test_every_subcommand_has_a_case() -> None:
    cli = typer.main.get_command(app)
    every = {(g, n) for g in GROUPS for n in cli.commands[g].commands}  # type: ignore[attr-defined]
    assert every == {(g, n) for g, n, _, _ in CASES}


@pytest.mark.parametrize(("group", "name", "args", "env"), CASES,
                         ids=lambda v: " ".join(v) if isinstance(v, list) else
                         ",".join(v) if isinstance(v, dict) else v)
def test_an_error_names_only_the_flags_of_the_command_run(
    tmp_path: Path, group: str, name: str, args: list[str], env: dict[str, str],
) -> None:
    not_pem(tmp_path)
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CSMS_")}
    r = subprocess.run([sys.executable, "-m", "csms", group, name, *args,
                        "--data-dir", "data"], cwd=tmp_path, capture_output=True, text=True,
                       timeout=60, env={**clean, "COLUMNS": "200", "PYTHONPATH": str(ROOT),
                                        "CSMS_DB": "c.db", **env})
    assert r.returncode in (1, 2), (r.returncode, r.stdout, r.stderr)
    assert "Traceback" not in r.stderr
    text = r.stderr.strip()
    named = set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", text))
    taken = help_flags(group, name)
    assert named <= taken, (
        f"{text!r} names {sorted(named - taken)}, which csms {group} {name} does not take")
