"""The SQL text of the PostgreSQL adapter: ``?`` placeholders numbered, values written in
as literals, names of the statements prepared for held writes. Pure functions, no I/O."""

from __future__ import annotations

import functools
import zlib
from decimal import Decimal
from typing import Any

__all__ = [
    "inline_statement", "literal", "prepared_name", "rowcount", "sql_pieces",
    "to_postgres_placeholders",
]


@functools.lru_cache(maxsize=2048)
def sql_pieces(sql: str) -> tuple[str, ...]:
    """The text around the ``?`` placeholders, leaving quoted text alone: ``n + 1``
    pieces for ``n`` placeholders. Text inside ``'...'``, ``"..."`` and ``--`` comments
    is copied as is."""
    pieces: list[str] = []
    out: list[str] = []
    i = 0
    length = len(sql)
    while i < length:
        ch = sql[i]
        if ch in "'\"":
            end = sql.find(ch, i + 1)
            # a doubled quote inside a literal ('it''s') is two adjacent literals here
            end = length - 1 if end < 0 else end
            out.append(sql[i:end + 1])
            i = end + 1
            continue
        if ch == "-" and sql.startswith("--", i):
            end = sql.find("\n", i)
            end = length - 1 if end < 0 else end
            out.append(sql[i:end + 1])
            i = end + 1
            continue
        if ch == "?":
            pieces.append("".join(out))
            out = []
        else:
            out.append(ch)
        i += 1
    pieces.append("".join(out))
    return tuple(pieces)


@functools.lru_cache(maxsize=2048)
def to_postgres_placeholders(sql: str) -> str:
    """Number the ``?`` placeholders (``$1``, ``$2``...), leaving quoted text alone.

    The portable SQL of :mod:`csms.storage.sql` uses ``?``; asyncpg wants
    ``$n``. Text inside ``'...'``, ``"..."`` and ``--`` comments is copied as is.
    """
    if "?" not in sql:
        return sql
    pieces = sql_pieces(sql)
    out = [pieces[0]]
    for n, piece in enumerate(pieces[1:], 1):
        out.append(f"${n}")
        out.append(piece)
    return "".join(out)


def literal(value: Any) -> str | None:
    """``value`` as an SQL literal for a TEXT or BIGINT column, or None when it is not one
    of the plain types written that way (the statement then goes with parameters).

    Strings are quoted by doubling ``'``, which is the whole escaping with
    ``standard_conforming_strings`` on (every pool connection sets it); a string with a
    NUL character, which PostgreSQL text cannot hold, is left to the parameter path and
    its error."""
    if value is None:
        return "NULL"
    if isinstance(value, str):
        return None if "\x00" in value else "'" + value.replace("'", "''") + "'"
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, Decimal):
        return "'" + str(value) + "'"
    return None


def inline_statement(sql: str, params: tuple[Any, ...]) -> str | None:
    """``sql`` (``?`` placeholders) with ``params`` written in as literals, or None."""
    pieces = sql_pieces(sql)
    if len(pieces) != len(params) + 1:
        return None
    out = [pieces[0]]
    for value, piece in zip(params, pieces[1:], strict=True):
        lit = literal(value)
        if lit is None:
            return None
        out.append(lit)
        out.append(piece)
    return "".join(out)


def rowcount(status: str) -> int:
    # asyncpg returns the command tag: "INSERT 0 1", "UPDATE 3", "DELETE 0", ...
    last = status.rsplit(" ", 1)[-1]
    return int(last) if last.isascii() and last.isdigit() else 0


@functools.lru_cache(maxsize=256)
def prepared_name(sql: str) -> str:
    return f"vl_write_{zlib.crc32(sql.encode()):08x}_{len(sql)}"
