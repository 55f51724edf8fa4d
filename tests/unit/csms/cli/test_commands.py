"""The root group builds a top-level command when a call names it: its listing (names, order,
help lines) is what Typer gives when it builds every command, and a group built for a call
has every command the modules register in it."""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any

import pytest
import typer
import typer.main
from typer.models import CommandInfo, TyperInfo

import csms.cli
from csms.cli import COMMANDS, app
from csms.cli.lazy import LazyGroup


def eager() -> Any:
    """The root group as Typer builds it when every command is registered on it (as
    ``app.command`` / ``app.add_typer`` do): every command built."""
    infos = [entry.load() for entry in COMMANDS.values()]
    built = typer.Typer(name="csms", help=app.info.help, no_args_is_help=True,
                        pretty_exceptions_enable=False, add_completion=False,
                        rich_markup_mode=None)
    built.registered_callback = app.registered_callback
    built.registered_commands = [i for i in infos if isinstance(i, CommandInfo)]
    built.registered_groups = [i for i in infos if isinstance(i, TyperInfo)]
    command = typer.main.get_command(built)
    assert not isinstance(command, LazyGroup)
    return command


def help_of(command: Any, width: int) -> str:
    text: str = command.get_help(typer.Context(command, info_name="csms", terminal_width=width))
    return text


def test_the_listed_names_and_help_lines_are_the_built_commands() -> None:
    built = eager()
    lazy: Any = typer.main.get_command(app)
    assert list(lazy.commands) == list(built.commands)  # the names, in the listing's order
    for name, entry in COMMANDS.items():
        real = built.commands[name]
        assert real.name == name
        assert real.short_help is None and not real.hidden and not real.deprecated, name
        first = (real.help or "").split("\n\n")[0]
        assert entry.summary == " ".join(first.split()), name
        listed = lazy.lazy_commands.listed(name)
        assert listed is not real
        for limit in range(1, 200):
            assert listed.get_short_help_str(limit) == real.get_short_help_str(limit), name


@pytest.mark.parametrize("width", [40, 60, 79, 80, 120, 200])
def test_the_root_help_is_the_one_of_every_command_built(width: int) -> None:
    lazy: Any = typer.main.get_command(app)
    assert help_of(lazy, width) == help_of(eager(), width)


def test_every_group_of_the_modules_is_listed() -> None:
    groups: dict[int, str] = {}
    for module in pkgutil.iter_modules(csms.cli.__path__, "csms.cli."):
        for name, value in vars(importlib.import_module(module.name)).items():
            if isinstance(value, typer.Typer) and value is not app:
                groups[id(value)] = f"{module.name}.{name}"
    listed = {id(info.typer_instance) for entry in COMMANDS.values()
              if isinstance(info := entry.load(), TyperInfo)}
    assert sorted(groups[g] for g in set(groups) - listed) == []
    assert len(listed) == len(groups)


def test_a_group_has_the_commands_of_other_modules_once() -> None:
    first: Any = typer.main.get_command(app)
    again: Any = typer.main.get_command(app)
    for name, added in (("stations", ["reports", "running-cost", "pnc", "set-password",
                                      "set-host", "variables", "monitors", "events"]),
                        ("remote", ["clear-cache", "get-base-report", "get-report",
                                    "get-monitoring-report"]),
                        ("contract", ["deploy", "info"])):
        names = list(first.commands[name].commands)
        assert names == list(again.commands[name].commands)
        assert set(added) <= set(names), name
        info = COMMANDS[name].load()
        assert isinstance(info, TyperInfo) and info.typer_instance is not None
        registered = [c.name for c in info.typer_instance.registered_commands]
        assert len(registered) == len(set(registered)), name  # registered once


def test_a_lookup_builds_only_the_command_looked_up() -> None:
    root: Any = typer.main.get_command(app)
    help_of(root, 80)
    assert "tags" in root.commands and "nosuch" not in root.commands
    assert root.lazy_commands.built() == []
    tags = root.commands["tags"]
    assert root.lazy_commands.built() == ["tags"] and "list" in tags.commands
    assert root.commands.get("nosuch") is None
    with pytest.raises(KeyError):
        root.commands["nosuch"]
