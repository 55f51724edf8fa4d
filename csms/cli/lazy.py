"""A root group that builds a top-level command or group only when a call names it.

Typer builds a click command of every function it was given, with its parameters, each
time the application runs: for ``csms`` that is every command of every group, whatever the
call. Here the root group knows each top-level name with the first paragraph of its help,
enough for ``csms --help`` and for a usage error; the module of a command is imported, and
the command built, when a call (a completion, a walk of ``commands``) needs the command
itself. Once built, a command is the very one ``app.add_typer`` / ``app.command`` would
have given the root group.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping, MutableMapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import typer
import typer.core
import typer.main
from typer._click.types import FloatParamType
from typer.models import CommandInfo, TyperInfo

if TYPE_CHECKING:
    from typer._click import Command, Context, HelpFormatter

__all__ = ["Entry", "LazyCommands", "LazyGroup", "command_info", "group_info"]


def command_info(name: str, callback: Callable[..., Any]) -> CommandInfo:
    """What ``app.command(name)(callback)`` registers on a root application."""
    holder = typer.Typer()
    holder.command(name)(callback)
    return holder.registered_commands[0]


def group_info(name: str, group: typer.Typer) -> TyperInfo:
    """What ``app.add_typer(group, name=name)`` registers on a root application."""
    holder = typer.Typer()
    holder.add_typer(group, name=name)
    return holder.registered_groups[0]


def finite_numbers(command: Command) -> None:
    """Every number option and argument of ``command`` and of its subcommands refuses
    ``nan`` and ``inf`` (Click takes them for floats, and a range lets ``nan`` through):
    a usage error, as a value out of its range is."""
    for param in command.params:
        if isinstance(param.type, FloatParamType):
            param.callback = _finite(param.callback)
    for sub in getattr(command, "commands", {}).values():
        finite_numbers(sub)


def _finite(callback: Callable[..., Any] | None) -> Callable[..., Any]:
    def check(ctx: Context, param: Any, value: Any) -> Any:
        if isinstance(value, float) and not math.isfinite(value):
            raise typer.BadParameter(f"{value} is not a finite number", ctx=ctx, param=param)
        return value if callback is None else callback(ctx, param, value)

    return check


@dataclass(frozen=True)
class Entry:
    """A top-level name: the first paragraph of its help, and its registration (imports
    the command's module; called once, when the command is built)."""

    summary: str
    load: Callable[[], CommandInfo | TyperInfo]


class LazyCommands(MutableMapping[str, "Command"]):
    """The root group's commands by name, in the listing's order: looking a name up
    builds its command; its names, its length and ``in`` build nothing."""

    def __init__(self, entries: Mapping[str, Entry], build: Callable[[Entry], Command]) -> None:
        self._entries = entries
        self._build = build
        self._names = list(entries)
        self._built: dict[str, Command] = {}

    def __getitem__(self, name: str) -> Command:
        if name not in self._built:
            if name not in self._names:
                raise KeyError(name)
            self._built[name] = self._build(self._entries[name])
        return self._built[name]

    def __setitem__(self, name: str, command: Command) -> None:
        if name not in self._names:
            self._names.append(name)
        self._built[name] = command

    def __delitem__(self, name: str) -> None:
        if name not in self._names:
            raise KeyError(name)
        self._names.remove(name)
        self._built.pop(name, None)

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._names))

    def __len__(self) -> int:
        return len(self._names)

    def __contains__(self, name: object) -> bool:
        return name in self._names

    def built(self) -> list[str]:
        """The names whose command was built, in the listing's order."""
        return [name for name in self._names if name in self._built]

    def listed(self, name: str) -> Command:
        """The command as a listing shows it: the built one, else one holding only its
        name and the summary of its help."""
        if name in self._built:
            return self._built[name]
        return typer.core.TyperCommand(name=name, help=self._entries[name].summary)


class LazyGroup(typer.core.TyperGroup):
    """A ``TyperGroup`` whose commands, besides those registered on its application, are
    the ``entries`` of the subclass, built when looked up (``cls=`` of ``typer.Typer``)."""

    entries: ClassVar[Mapping[str, Entry]] = {}
    pretty_exceptions_short: ClassVar[bool] = True  # as the application's (Typer's default)

    def __init__(self, **attrs: Any) -> None:
        super().__init__(**attrs)
        lazy = LazyCommands(self.entries, self._build)
        for name, command in self.commands.items():  # registered on the application itself
            lazy[name] = command
        self.lazy_commands = lazy
        self.commands = lazy

    def _build(self, entry: Entry) -> Command:
        info = entry.load()
        command: Command
        if isinstance(info, TyperInfo):
            command = typer.main.get_group_from_info(
                info, pretty_exceptions_short=self.pretty_exceptions_short,
                suggest_commands=self.suggest_commands, rich_markup_mode=self.rich_markup_mode)
        else:
            command = typer.main.get_command_from_info(
                info, pretty_exceptions_short=self.pretty_exceptions_short,
                rich_markup_mode=self.rich_markup_mode)
        finite_numbers(command)
        return command

    def list_commands(self, ctx: Context) -> list[str]:
        return list(self.commands)

    def format_commands(self, ctx: Context, formatter: HelpFormatter) -> None:
        """Typer's listing, of the commands as listed (nothing is built for it)."""
        listing = typer.core.TyperGroup(
            name=self.name, commands={n: self.lazy_commands.listed(n) for n in self.commands})
        listing.format_commands(ctx, formatter)
