"""A wrong value in a ``CSMS_*`` variable stops ``csms serve`` with one line "naming the
flag and the variable to fix" (docs/configuration.md): the flag it names must be one
``csms serve`` takes. Settings with no flag of their own (the variable is the only way to
set them) are named as ``--call-timeout (CSMS_CALL_TIMEOUT)``; the operator who adds
``--call-timeout 30`` is told "No such option"."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import pytest
import typer.main

from csms.cli import app
from csms.config import Settings, SettingsError, env_var


def serve_options() -> set[str]:
    serve = typer.main.get_command(app).commands["serve"]  # type: ignore[attr-defined]
    return {opt for p in serve.params for opt in (*p.opts, *p.secondary_opts)}


SERVE_OPTIONS = serve_options()


LISTENERS = ("port", "admin_port", "files_port")


def refused_when_negative() -> list[str]:
    """The settings the variable can set to -1 and the check refuses."""
    names = []
    for f in fields(Settings):
        # the ports are given as flags below (nothing listens): flags win over variables
        if str(f.type) not in ("int", "float") or f.name in LISTENERS:
            continue
        try:
            Settings.load({env_var(f.name): "-2"})
        except SettingsError:
            names.append(f.name)
    return names


@pytest.mark.parametrize("name", refused_when_negative())
def test_a_wrong_variable_names_only_flags_serve_takes(tmp_path: Path, name: str) -> None:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CSMS_")}
    r = subprocess.run(
        [sys.executable, "-m", "csms", "serve", "--db", "c.db", "--data-dir", "data",
         "--port", "-1", "--admin-port", "-1", "--files-port", "-1"],
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
        env={**clean, "COLUMNS": "80", env_var(name): "-2"})
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    assert "Traceback" not in r.stderr
    [line] = r.stderr.strip().splitlines()
    assert env_var(name) in line, line
    named = set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", line))
    assert named <= SERVE_OPTIONS, (
        f"{line!r} names {sorted(named - SERVE_OPTIONS)}, which csms serve does not take")
    assert not (tmp_path / "c.db").exists()  # refused before anything was made


@pytest.mark.parametrize(("command", "env", "line"), [
    (["settle", "worker"], {"CSMS_MAX_WAIT": "-2"}, "--max-wait (CSMS_MAX_WAIT): not negative"),
    (["settle", "run"], {"CSMS_MAX_WAIT": "-2"}, "CSMS_MAX_WAIT: not negative"),
    (["settle", "run"], {"CSMS_BATCH_SIZE": "0"}, "--batch-size (CSMS_BATCH_SIZE): at least 1"),
    (["sessions", "list"], {"CSMS_BATCH_SIZE": "0"}, "CSMS_BATCH_SIZE: at least 1"),
    (["stations", "list"], {"CSMS_CLIENT_CA": "ca.pem"}, "CSMS_CLIENT_CA: needs CSMS_TLS_CERT"),
    (["sessions", "list"], {"CSMS_DB": "."}, "--db (CSMS_DB): . is a folder, not a SQLite file"),
    (["stations", "list"], {"CSMS_WS_COMPRESSION": "gzip"},
     "CSMS_WS_COMPRESSION: choose one of stateless, context, off"),
    (["serve"], {"CSMS_WS_COMPRESSION": "gzip"},
     "--ws-compression (CSMS_WS_COMPRESSION): choose one of stateless, context, off"),
], ids=lambda v: " ".join(v) if isinstance(v, list) else None)
def test_each_command_names_the_flags_it_takes(tmp_path: Path, command: list[str],
                                               env: dict[str, str], line: str) -> None:
    """The same wrong variable is named by the flag of a command that takes it, by the
    variable alone for one that does not (settle worker takes --max-wait, settle run
    does not)."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CSMS_")}
    r = subprocess.run([sys.executable, "-m", "csms", *command], cwd=tmp_path,
                       capture_output=True, text=True, timeout=60,
                       env={**clean, "COLUMNS": "80", "CSMS_DATA_DIR": "data", **env})
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    assert r.stderr.strip() == f"error: {line}", r.stderr
