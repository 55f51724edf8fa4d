"""docs/configuration.md against the software: every setting it reads from a ``CSMS_*``
variable is in the table, under that variable, with the default the software uses; the
lists of which commands take ``--db``, ``--data-dir``, ``--admin-*`` and ``--files-*`` are
the commands of ``csms`` that take them."""

from __future__ import annotations

import re
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest
import typer.main

from csms.cli import app
from csms.config import Settings, SettingsError, env_var

DOC = Path(__file__).resolve().parents[3] / "docs" / "configuration.md"
# a default the table words rather than gives as a value, and what the code keeps for it
WORDED = {"-": "", "built in": "", "the system's CAs": "", "`CSMS_HOST`": "",
          "`http(s)://files-host:files-port`": "", "`<hostname>:<port>`": "",
          # no chain by default: serve does not settle, settle and contract use local
          "`serve`: off; the others: `local`": ""}


def documented() -> dict[str, str]:
    """Each variable of the table and its default, as written."""
    found: dict[str, str] = {}
    for line in DOC.read_text("utf-8").splitlines():
        if not line.startswith("| `CSMS_"):
            continue
        variables, default = (c.strip() for c in line.strip("|").split("|")[:2])
        names = re.findall(r"`(CSMS_[A-Z0-9_]+)`", variables.split("(")[0])
        defaults = [d.strip() for d in default.split(" / ")]
        if len(defaults) == 1:  # "built in", "-": one word for the whole row
            defaults *= len(names)
        assert len(defaults) == len(names), line
        found.update(zip(names, defaults, strict=True))
    return found


DOCUMENTED = documented()
DEFAULTS = Settings()


def read_from_environment(name: str) -> bool:
    """Whether Settings.load takes this setting from its CSMS_ variable: a value of the
    wrong type there is refused by naming the variable."""
    kind = next(f.type for f in fields(Settings) if f.name == name)
    if str(kind) == "str":
        # any text is a value: look for it in what load() returns
        marker = "/tmp/review-e-marker"
        try:
            loaded = Settings.load({env_var(name): marker})
        except SettingsError as exc:
            return env_var(name) in str(exc) or "--" + name.replace("_", "-") in str(exc)
        return bool(getattr(loaded, name) == marker)
    try:
        Settings.load({env_var(name): "not-a-value"})
    except SettingsError as exc:
        return env_var(name) in str(exc)
    return False


@pytest.mark.parametrize("name", [f.name for f in fields(Settings)])
def test_every_setting_read_from_the_environment_is_in_the_table(name: str) -> None:
    if not read_from_environment(name):
        return  # not an operator's variable: nothing to document
    variable = env_var(name)
    assert variable in DOCUMENTED, (
        f"{variable} is read from the environment (it changes what csms does) but"
        " docs/configuration.md does not list it")
    written = DOCUMENTED[variable]
    value = getattr(DEFAULTS, name)
    if written in WORDED:
        assert value == WORDED[written], (variable, written, value)
        return
    literal = written.strip("`")
    if isinstance(value, bool):
        assert literal == str(value).lower(), (variable, written, value)
    elif isinstance(value, int | float):
        assert float(literal) == float(value), (variable, written, value)
    else:
        assert literal == value, (variable, written, value)


# -- which commands take which options ---------------------------------------------------
def cli_commands() -> dict[str, set[str]]:
    """Each command of ``csms`` (``"stations add"``) and the options it takes."""
    found: dict[str, set[str]] = {}

    def walk(path: list[str], command: Any) -> None:
        subcommands = getattr(command, "commands", None)
        if subcommands:
            for name, sub in subcommands.items():
                walk([*path, name], sub)
        else:
            found[" ".join(path)] = {o for p in command.params for o in p.opts}

    walk([], typer.main.get_command(app))
    return found


COMMANDS = cli_commands()


def option_lists() -> dict[str, set[str]]:
    """The commands docs/configuration.md says take each option: its bullets under "Which
    commands take which options", ``- `--a` / `--b`: `cmd`, `group x|y`, `group`.`` or
    ``every command but `cmd`.``"""
    text = DOC.read_text("utf-8").split("Which commands take which options", 1)[1]
    bullets: list[str] = []
    for line in text.split("\n\n", 2)[1].splitlines():
        if line.startswith("- "):
            bullets.append(line[2:])
        else:
            assert line.startswith("  "), line
            bullets[-1] += " " + line.strip()
    lists: dict[str, set[str]] = {}
    for bullet in bullets:
        options, named = bullet.split(": ", 1)
        commands: set[str] = set()
        for item in re.findall(r"`([^`]+)`", named):
            group, _, subs = item.partition(" ")
            if subs:  # `group a|b`
                matched = {f"{group} {sub}" for sub in subs.split("|")}
                assert matched <= set(COMMANDS), f"{item!r}: no {sorted(matched - set(COMMANDS))}"
            else:  # a command, or every command of a group
                matched = {c for c in COMMANDS if c == group or c.startswith(group + " ")}
                assert matched, f"{item!r} names no command of csms"
            commands |= matched
        if named.startswith("every command but"):
            commands = set(COMMANDS) - commands
        for option in re.findall(r"`(--[a-z-]+)`", options):
            lists[option] = commands
    return lists


@pytest.mark.parametrize("option", ["--db", "--data-dir", "--admin-host", "--admin-port",
                                    "--files-host", "--files-port", "--files-url",
                                    "--max-upload-bytes"])
def test_the_commands_listed_for_an_option_are_those_that_take_it(option: str) -> None:
    listed = option_lists()
    assert option in listed, f"docs/configuration.md does not say which commands take {option}"
    takes = {c for c, options in COMMANDS.items() if option in options}
    assert listed[option] == takes, (
        f"docs/configuration.md: {option} is taken by {sorted(takes - listed[option])} too"
        f" and not by {sorted(listed[option] - takes)}")
