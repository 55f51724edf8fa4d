"""Every command's ``--help``, rendered by the real process at 80 columns, documents each
option: a help text, its default where it has one, its environment variable where it has
one (every option that is a setting has one: ``CSMS_<SETTING>``)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import fields
from typing import Any

import pytest
import typer.main

from csms.cli import app
from csms.config import Settings, env_var, option_name

SETTING_OF = {option_name(f.name): f.name for f in fields(Settings)}
SETTING_OF["--password-file"] = "keystore_password_file"
# a driver's or a host's own key (csms wallet): not the operator's settings
NOT_SETTINGS = {("wallet", "--keystore"), ("wallet", "--password-file"),
                ("wallet", "--host"),  # a host's address (wallet entries), not serve's bind
                ("demo", "--chain"),  # the demo's own chain: local or memory
                # the driver's: how deep the settle block must be, not the operator's
                # CSMS_CONFIRMATIONS (when its worker takes a batch as final)
                ("verify", "--confirmations"),
                # a host's: how deep the block its entries are read at (wallet entries)
                ("wallet", "--confirmations")}
DEFAULTS = Settings()


def commands() -> list[tuple[list[str], Any]]:
    found: list[tuple[list[str], Any]] = []

    def walk(path: list[str], command: Any) -> None:
        found.append((path, command))
        for name, sub in sorted(getattr(command, "commands", {}).items()):
            walk([*path, name], sub)

    walk([], typer.main.get_command(app))
    return found


COMMANDS = commands()


def render(path: list[str]) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CSMS_")}
    r = subprocess.run([sys.executable, "-m", "csms", *path, "--help"], capture_output=True,
                       text=True, timeout=60, env={**env, "COLUMNS": "80"})
    assert r.returncode == 0, r.stderr
    assert r.stderr == "" and "Traceback" not in r.stdout
    return r.stdout


def option_blocks(text: str) -> dict[str, str]:
    """Each option's entry of the Options section, its lines joined."""
    section = text.split("\nOptions:\n", 1)[1].split("\nCommands:\n", 1)[0]
    blocks: dict[str, str] = {}
    current = ""
    for line in section.splitlines():
        match = re.match(r"  (-[-\w]+)", line)
        if match:
            current = match.group(1)
            blocks[current] = line
        elif current and line.strip():
            blocks[current] += " " + line.strip()
    return {k: " ".join(v.split()) for k, v in blocks.items()}


@pytest.mark.parametrize(("path", "command"), COMMANDS, ids=lambda v: " ".join(v)
                         if isinstance(v, list) else "")
def test_every_option_is_documented_at_80_columns(path: list[str], command: Any) -> None:
    text = render(path)
    for line in text.splitlines():
        assert len(line) <= 80, f"wider than 80 columns: {line!r}"
    assert "<bool>" not in text  # a flag takes no value
    blocks = option_blocks(text)
    group = path[0] if path else ""
    leaf = not hasattr(command, "commands")
    if leaf and group != "demo":  # the demo keeps everything in its --folder
        assert "--data-dir" in blocks, f"csms {' '.join(path)} takes no --data-dir"
    # and the commands that reach the running server besides (a master pass group is set
    # on the connected stations at once)
    reaches_server = path in (["stations", "set-password"], ["tags", "master-group"],
                              ["tags", "add"])
    if leaf and (group == "remote" or reaches_server):
        assert {"--admin-host", "--admin-port"} <= set(blocks), path  # as csms serve has them
    assert "--admin-url" not in blocks
    for param in command.params:
        if param.param_type_name != "option" or param.name == "help":
            continue
        name = param.opts[0]
        assert name in blocks, f"{name} not in the help of csms {' '.join(path)}"
        block = blocks[name]
        words = block.split(" ", 1)[1] if " " in block else ""
        words = re.sub(r"^(/ )?--[\w-]+", "", words.strip())  # a flag's --no- form
        words = re.sub(r"^<[^>]+>", "", words.strip()).strip()  # the value's type
        words = re.sub(r"\[[^]]*\]", "", words).strip()  # default, env var, range
        assert len(words) > 3, f"{name} of csms {' '.join(path)} has no help: {block!r}"
        setting = SETTING_OF.get(name) if (group, name) not in NOT_SETTINGS else None
        if setting is not None:
            assert f"env var: {env_var(setting)}" in block, (name, block)
            value = getattr(DEFAULTS, setting)
            if isinstance(value, bool):
                assert "default:" in block, (name, block)
            elif value != "" and param.default is None:
                assert f"default: {value}" in block, (name, block)
        if param.default not in (None, False, ()) and not param.is_flag:
            assert f"default: {param.default}" in block, (name, block)


def test_rich_markup_does_not_eat_brackets() -> None:
    text = " ".join(render(["serve"]).split())
    assert "[default: 127.0.0.1] [env var: CSMS_HOST]" in text
    assert "--auto-register / --no-auto-register" in text
