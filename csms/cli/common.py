"""Shared pieces of the ``csms`` command: options, errors, output."""

from __future__ import annotations

import asyncio
import getpass
import json
import sys
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Annotated, Any, NoReturn, TypeVar

import orjson
import typer
from rich.console import Console
from rich.table import Table

from csms.config import Settings
from csms.service.ports import Repository, Tx
from csms.storage import open_repository

__all__ = [
    "ChainOption",
    "DataDirOption",
    "DbOption",
    "JsonOption",
    "KeystoreOption",
    "PasswordFileOption",
    "actor",
    "console",
    "err_console",
    "fail",
    "open_chain_or_fail",
    "print_json",
    "print_table",
    "run",
    "with_repo",
]

T = TypeVar("T")

console = Console()
err_console = Console(stderr=True, soft_wrap=True)

DbOption = Annotated[
    str | None,
    typer.Option(
        "--db", help="SQLite file or postgresql:// URL [env: CSMS_DB]", show_default=False
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
ChainOption = Annotated[
    str, typer.Option("--chain", help="local (managed Anvil), memory, or an http(s):// RPC URL")
]
DataDirOption = Annotated[
    str | None, typer.Option("--data-dir", help="[env: CSMS_DATA_DIR]")
]
KeystoreOption = Annotated[
    str | None, typer.Option(help="V3 keystore of the operator key (RPC chains)")
]
PasswordFileOption = Annotated[
    str | None, typer.Option(help="File holding the keystore password")
]


class CliError(Exception):
    """A user error: printed as one line on stderr, exit code 2."""


def fail(message: str, code: int = 2) -> NoReturn:
    err_console.print(f"error: {message}", markup=False, highlight=False)
    raise typer.Exit(code)


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine; turn expected errors into one line and exit code 2."""
    try:
        return asyncio.run(coro)
    except CliError as exc:
        fail(str(exc))
    except ValueError as exc:
        fail(str(exc))


def settings_for(db: str | None, **overrides: Any) -> Settings:
    try:
        return Settings.load(db=db, **overrides)
    except ValueError as exc:
        fail(str(exc))


async def with_repo(db: str | None, fn: Callable[[Repository], Awaitable[T]]) -> T:
    settings = settings_for(db)
    repo = await open_repository(settings.db)
    try:
        return await fn(repo)
    finally:
        await repo.close()


async def in_unit(db: str | None, fn: Callable[[Tx], Awaitable[T]]) -> T:
    async def go(repo: Repository) -> T:
        return await repo.unit(fn)

    return await with_repo(db, go)


async def in_read(db: str | None, fn: Callable[[Tx], Awaitable[T]]) -> T:
    async def go(repo: Repository) -> T:
        return await repo.read(fn)

    return await with_repo(db, go)


def print_json(data: Any) -> None:
    try:
        text = orjson.dumps(data, option=orjson.OPT_INDENT_2).decode()
    except TypeError:  # an integer beyond 64 bits a station sent in a payload
        text = json.dumps(data, indent=2, default=str)
    sys.stdout.write(text + "\n")


def print_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    table = Table(title=title)
    for c in columns:
        table.add_column(c)
    for r in rows:
        table.add_row(*["" if v is None else str(v) for v in r])
    console.print(table)


def actor() -> str:
    """Who runs this command, for the audit log."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


def open_chain_or_fail(chain: str, data_dir: str, keystore: str | None,
                       password_file: str | None, deploy: bool = True,
                       params: Any = None) -> Any:
    """The settlement chain, or one line on stderr and exit code 1."""
    from settlement.chain import ChainError, open_chain

    settings = settings_for(None)  # CSMS_KEYSTORE / CSMS_KEYSTORE_PASSWORD_FILE
    keystore = keystore or settings.keystore or None
    password_file = password_file or settings.keystore_password_file or None
    try:
        return open_chain(chain, data_dir, keystore=keystore, password_file=password_file,
                          deploy=deploy, params=params)
    except ChainError as exc:
        fail(str(exc), 1)

