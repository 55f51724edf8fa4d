"""Shared pieces of the ``csms`` command: the options of settings, loading the settings
once per command, opening the database, errors as one line, tables and JSON output.

The command starts for every call (``csms --help`` too): what only a command's work needs
(the storage adapters, the event loop, the service layer) is imported where it is used."""

from __future__ import annotations

import getpass
import sys
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar, cast

import typer

from csms.config import (
    MAX_SETTINGS_FILE,
    Settings,
    SettingsError,
    env_var,
    option_name,
    read_limited,
)

if TYPE_CHECKING:
    from rich.console import Console

    from csms.service.ports import Repository, Tx

__all__ = [
    "FIRMWARE_FILE",
    "IN_PROCESS_CHAIN",
    "MAX_ID",
    "RECEIPT_FILE",
    "SMALL_FILE",
    "AdminHost",
    "AdminPort",
    "ChainOption",
    "CliError",
    "DataDirOption",
    "DbOption",
    "JsonOption",
    "KeystoreOption",
    "PasswordFileOption",
    "WideOption",
    "actor",
    "console",
    "err_console",
    "fail",
    "group",
    "in_read",
    "in_unit",
    "invocation",
    "known_station",
    "load_settings",
    "open_chain_or_fail",
    "print_json",
    "print_table",
    "process_alive",
    "read_limited",
    "run",
    "say",
    "setting_error",
    "setting_option",
    "short_time",
    "warn",
    "with_repo",
]

T = TypeVar("T")


class _FirstUse:
    """A Rich console made when it is first used: most commands (``--help`` too) print
    nothing through one of the two, and Rich's console is slow to import. Its attributes
    are the console's; so is ``with`` (a Rich progress display enters its console)."""

    def __init__(self, **options: Any) -> None:
        self._first_use_options = options
        self._first_use_console: Console | None = None

    def _made(self) -> Console:
        if self._first_use_console is None:
            from rich.console import Console

            self._first_use_console = Console(**self._first_use_options)
        return self._first_use_console

    def __getattr__(self, name: str) -> Any:
        return getattr(self._made(), name)

    def __enter__(self) -> Console:
        return self._made().__enter__()

    def __exit__(self, *exc: Any) -> None:
        self._made().__exit__(*exc)


console = cast("Console", _FirstUse())
err_console = cast("Console", _FirstUse(stderr=True, soft_wrap=True))

_DEFAULTS = Settings()


class Invocation:
    """What ``csms`` itself was given, before the command: ``--config FILE``; and the
    settings the command takes as flags (None: it loaded none)."""

    config: str | None = None
    setting_flags: frozenset[str] | None = None


invocation = Invocation()


def group(help: str) -> typer.Typer:
    """A command group. Help is Click's plain text, not Rich panels: it keeps
    ``[default: ...]`` and ``[env var: ...]`` (Rich markup would take them for tags) and
    stays readable at 80 columns."""
    return typer.Typer(help=help, no_args_is_help=True, rich_markup_mode=None)


# Each setting's flags, as the commands spell them (--password-file: keystore_password_file)
_FLAGS_OF: dict[str, set[str]] = {}


def setting_option(name: str, help: str, *decls: str, default: str | None = None,
                   **kwargs: Any) -> Any:
    """The option of the setting ``name`` (its flag unless ``decls`` name others): its
    help says the default (from :class:`Settings`, or ``default``) and the environment
    variable. Its value is None when not given, so that the settings decide."""
    _FLAGS_OF.setdefault(name, set()).update(
        d.split("/")[0] for d in decls or (option_name(name),) if d.startswith("--"))
    if default is None:
        value = getattr(_DEFAULTS, name)
        default = ("on" if value else "off") if isinstance(value, bool) else str(value)
    text = f"{help} [default: {default}]" if default else help
    return typer.Option(*(decls or (option_name(name),)),
                        help=f"{text} [env var: {env_var(name)}]", show_default=False,
                        **kwargs)


DbOption = Annotated[str | None, setting_option("db", "SQLite file or postgresql:// URL")]
DataDirOption = Annotated[str | None, setting_option(
    "data_dir", "Folder of the admin token, the chain state, the operator key, caches")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
# a list's table shows the columns that fit the terminal (print_table's priority), or all
WideOption = Annotated[bool, typer.Option("--wide", help="Every column, however wide the"
                                                         " terminal")]
ChainOption = Annotated[str | None, setting_option(
    "chain", "local (managed Anvil), memory, or an http(s):// RPC URL", default="local")]
KeystoreOption = Annotated[str | None, setting_option(
    "keystore", "V3 keystore of the operator key (RPC chains)", default="-")]
PasswordFileOption = Annotated[str | None, setting_option(
    "keystore_password_file", "File holding the keystore password", "--password-file",
    default="-")]


# What settling on ``--chain memory`` means, said on stderr by each command that does
IN_PROCESS_CHAIN = (
    "--chain memory settles on an in-process chain that is gone when this command exits:"
    " the sessions it settles are settled for good (never settled again on another chain)"
    " and their receipts can never be verified. For real settlement use --chain local (a"
    " managed node, its state kept in the data folder) or an http(s):// RPC URL")

# where a command that reaches the running csms serve finds its admin API (csms remote ...,
# stations set-password, tags master-group): the options and variables of csms serve
AdminHost = Annotated[str | None, setting_option(
    "admin_host", "Address of the admin API of the running csms serve")]
AdminPort = Annotated[int | None, setting_option(
    "admin_port", "Port of the admin API of the running csms serve", min=1, max=65535)]


# The largest id (a session's, a request's) and --limit the database takes: a SQLite /
# PostgreSQL bigint. Arguments are bounded by it where they are parsed (one line, exit 2).
MAX_ID = 2**63 - 1


class CliError(Exception):
    """A user error: printed as one line on stderr, exit code 2."""


def fail(message: str, code: int = 2) -> NoReturn:
    """``error: message`` on stderr, one line whatever it quotes (an operator's line break,
    a station's ESC is shown escaped), and exit ``code``."""
    from csms.logsafe import visible

    err_console.print(f"error: {visible(message)}", markup=False, highlight=False)
    raise typer.Exit(code)


def say(*parts: str | tuple[str, str], **options: Any) -> None:
    """Print a line of plain strings, and ``(text, style)`` pairs for words that stand
    out: what a station, a receipt, a file name or an operator chose is never read as Rich
    markup ("CP[/]" was a MarkupError, "CP[red]1" printed as "CP1"; rich.markup.escape
    doubles a trailing backslash where no tag follows)."""
    from rich.text import Text

    from csms.logsafe import visible

    console.print(Text.assemble(*(visible(p) if isinstance(p, str) else (visible(p[0]), p[1])
                                  for p in parts)), **options)


def warn(message: str) -> None:
    err_console.print(f"warning: {message}", markup=False, highlight=False)


def run(coro: Coroutine[Any, Any, T], event_loop: str = "asyncio") -> T:
    """Run a coroutine (on the loop ``event_loop`` names, see :mod:`csms.eventloop`);
    turn expected errors into one line and exit code 2."""
    import asyncio
    import sqlite3

    from csms.eventloop import loop_factory
    from csms.service.ports import StorageError

    try:
        factory = loop_factory(event_loop)
    except (RuntimeError, ValueError) as exc:
        coro.close()
        fail(str(exc))
    try:
        with asyncio.Runner(loop_factory=factory) as runner:
            return runner.run(coro)
    except CliError as exc:
        fail(str(exc))
    except SettingsError as exc:
        fail(setting_error(exc))
    except ValueError as exc:
        fail(str(exc))
    except OverflowError as exc:  # a number or a time beyond what the database keeps
        fail(f"a value out of range: {exc}")
    except sqlite3.OperationalError as exc:  # cannot open, read-only, disk full...
        fail(f"the database: {exc}", 1)
    except StorageError as exc:  # a unit of work not committed (locked, disk full...)
        fail(f"the database: {exc}", 1)
    except Exception as exc:
        chain = sys.modules.get("settlement.chain")  # imported by the work that reached one
        if chain is not None and isinstance(exc, chain.ChainError):
            fail(str(exc).splitlines()[0], 1)  # no keystore, an RPC that cannot be reached
        raise


def load_settings(**flags: Any) -> Settings:
    """The settings of this command, loaded and checked once: its flags (None: not
    given), the environment, the file of ``csms --config``; one line and exit 2 when a
    value is wrong."""
    if flags.get("config") is None:
        flags["config"] = invocation.config
    invocation.setting_flags = frozenset(flags) - {"config"}
    try:
        return Settings.load(**flags)
    except SettingsError as exc:
        fail(setting_error(exc))


def setting_flag(name: str) -> str | None:
    """The flag by which this command takes the setting ``name``; None where it takes
    none (most settings have no flag but on ``csms serve``, or none at all)."""
    import typer._click.globals as click_globals  # Typer's own Click

    if invocation.setting_flags is None:  # no settings loaded by flags: serve's wording
        return option_name(name)
    if name not in invocation.setting_flags:
        return None
    spellings = _FLAGS_OF.get(name, {option_name(name)})
    context = click_globals.get_current_context(silent=True)
    if context is None:
        return min(spellings)
    taken = {o for p in context.command.params for o in p.opts}
    return min(spellings & taken, default=None)


def setting_error(exc: SettingsError) -> str:
    """The line of a setting that cannot be used, naming only the flags this command
    takes (the variable alone for the others)."""
    return exc.worded(setting_flag)


async def with_repo(settings: Settings, fn: Callable[[Repository], Awaitable[T]]) -> T:
    """Run ``fn`` on the database of the settings; a database that cannot be opened is
    one line (a folder, a file that is not SQLite, a folder without write access)."""
    import sqlite3

    from csms.storage import open_repository

    settings.check_database()
    try:
        repo = await open_repository(settings.db)
    except (sqlite3.Error, OSError) as exc:
        raise CliError(f"cannot open the database {settings.db}: {exc}") from None
    try:
        return await fn(repo)
    finally:
        await repo.close()


async def in_unit(settings: Settings, fn: Callable[[Tx], Awaitable[T]]) -> T:
    async def go(repo: Repository) -> T:
        return await repo.unit(fn)

    return await with_repo(settings, go)


async def in_read(settings: Settings, fn: Callable[[Tx], Awaitable[T]]) -> T:
    async def go(repo: Repository) -> T:
        return await repo.read(fn)

    return await with_repo(settings, go)


async def known_station(tx: Tx, station: str | None) -> None:
    """A ``--station`` filter names a registered station (None: no filter): a typo, or
    the wrong case, is one line and exit code 2, not an empty list."""
    if station is not None and await tx.get_station(station) is None:
        raise CliError(f"--station: no station {station!r} (csms stations list shows the"
                       " known ones)")


def print_json(data: Any) -> None:
    """``data`` as JSON on stdout; what a terminal would obey rather than show (a
    station's DEL, C1 control, bidi override or zero width: JSON escapes the C0 controls
    only) written as its ``\\u`` escape, which reads back as the same string."""
    from csms.logsafe import unshown_as_json
    from csms.protocol.frames import dumps  # an integer beyond 64 bits too

    sys.stdout.write(unshown_as_json(dumps(data, indent=True)) + "\n")


def print_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]], *,
                priority: Sequence[str] | None = None, wide: bool = False) -> None:
    """A Rich table. With ``priority`` (column names, most wanted first) it shows the
    columns that fit the terminal, in their own order, and says which it left out;
    ``wide`` shows every column, however wide (lines are not wrapped). A cell's control
    characters are shown escaped (:func:`csms.logsafe.visible`: a station's ESC or line
    break is never the terminal's); a list is a cell of one line per item."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from csms.logsafe import visible

    def cell(v: Any) -> str:
        if isinstance(v, list):
            return "\n".join(visible(str(x)) for x in v)
        return "" if v is None else visible(str(v))

    cells = [[cell(v) for v in r] for r in rows]
    widths = [max([len(c), *(len(r[i]) for r in cells)]) for i, c in enumerate(columns)]

    def width(chosen: Sequence[int]) -> int:  # cells padded by one space, one line each
        return sum(widths[i] + 3 for i in chosen) + 1

    shown = list(range(len(columns)))
    out = console
    if wide:
        out = Console(width=max(console.width, width(shown)), soft_wrap=False)
    elif priority is not None:
        chosen: list[int] = []
        for name in priority:
            i = columns.index(name)
            if not chosen or width([*chosen, i]) <= console.width:  # the first, always
                chosen.append(i)
        shown = sorted(chosen)
    hidden = [columns[i] for i in range(len(columns)) if i not in shown]
    table = Table(title=Text(visible(title)), caption=Text(
        f"not shown: {', '.join(hidden)} (--wide shows all)") if hidden else None)
    for i in shown:
        table.add_column(columns[i], no_wrap=wide)
    for r in cells:  # as Text: what a station or an operator chose is never Rich markup
        table.add_row(*[Text(r[i]) for i in shown])
    out.print(table)


# The most a command reads of a file it is given, by what it holds (read_limited, from
# csms.config): more is refused
SMALL_FILE = MAX_SETTINGS_FILE  # a key, a password, a certificate, a keystore, a settings file
RECEIPT_FILE = 64 * 1024 * 1024
FIRMWARE_FILE = 1024 * 1024 * 1024


def short_time(iso: str | None) -> str | None:
    """A UTC time to the second for a table (``--json`` keeps the full ISO 8601 time)."""
    if iso is None or not iso.endswith("+00:00"):
        return iso
    return iso[:19].replace("T", " ") + "Z"


def actor() -> str:
    """Who runs this command, for the audit log."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` runs on this machine: see
    :func:`settlement.anvil_guard.process_alive`."""
    from settlement.anvil_guard import process_alive as alive

    return alive(pid)


def open_chain_or_fail(settings: Settings, **kwargs: Any) -> Any:
    """The settlement chain of the settings (see csms.bootstrap.open_settlement_chain), or
    one line on stderr and exit code 1."""
    from csms.bootstrap import open_settlement_chain
    from settlement.chain import ChainError

    try:
        return open_settlement_chain(settings, **kwargs)
    except SettingsError as exc:
        fail(setting_error(exc))
    except ChainError as exc:
        fail(str(exc).splitlines()[0], 1)

