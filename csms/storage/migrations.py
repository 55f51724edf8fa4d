"""Versioned schema migrations: ``migrations/<dialect>/NNNN_name.sql``, applied in order.

One runner for both engines (:func:`migrate`): it reads which versions the database has
(``schema_migrations``), warns about versions this build does not know, and applies each
missing one in its own transaction together with its ``schema_migrations`` row. What
differs per engine is a :class:`MigrationTarget`: how it runs a script and commits.
"""

from __future__ import annotations

import logging
from collections.abc import Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from typing import Any, Protocol, TypeVar

__all__ = ["CREATE_MIGRATIONS_TABLE", "Migration", "MigrationTarget", "migrate",
           "migrations_for", "run_now"]

T = TypeVar("T")
log = logging.getLogger("csms.storage")

CREATE_MIGRATIONS_TABLE = (
    "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY,"
    " name TEXT NOT NULL, applied_at TEXT NOT NULL)"
)


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str


def migrations_for(dialect: str) -> list[Migration]:
    folder = resources.files("csms.storage").joinpath("migrations", dialect)
    found: list[Migration] = []
    for entry in folder.iterdir():
        name = entry.name
        if not name.endswith(".sql"):
            continue
        number, _, rest = name.partition("_")
        found.append(Migration(int(number), rest.removesuffix(".sql"), entry.read_text("utf-8")))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise RuntimeError(f"duplicate migration numbers in {dialect}: {versions}")
    return found


class MigrationTarget(Protocol):
    """The engine's side of :func:`migrate`."""

    async def applied_versions(self) -> set[int]:
        """Create ``schema_migrations`` if needed; the versions it lists."""
        ...

    async def apply(self, migration: Migration, applied_at: str) -> None:
        """Run the script and record it, in one transaction."""
        ...


async def migrate(dialect: str, target: MigrationTarget) -> None:
    done = await target.applied_versions()
    known = migrations_for(dialect)
    newer = done - {m.version for m in known}
    if newer:
        log.warning("! database has migrations this build does not know: %s", sorted(newer))
    for m in known:
        if m.version in done:
            continue
        log.info("= applying migration %04d_%s", m.version, m.name)
        await target.apply(m, datetime.now(UTC).isoformat())


def run_now(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine that never suspends (a target whose steps are synchronous, such as
    the stdlib sqlite3 module) to its end, from synchronous code."""
    try:
        coro.send(None)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    coro.close()
    raise RuntimeError("a synchronous migration step waited on something")
