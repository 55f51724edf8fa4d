"""SQLite storage with group commit.

Theory of operation. One write connection, used only by the committer task
(the queue and the committer are :mod:`csms.storage.group_commit`'s). A batch of
units runs inside one ``BEGIN IMMEDIATE`` transaction (each unit in its own
SAVEPOINT, so a failing unit rolls back alone) and ends with one ``COMMIT``
(``synchronous=FULL``: the WAL is fsynced) in a worker thread. Only then are
the callers' futures resolved, so nothing is acknowledged before it is
durable, and one fsync covers every message that arrived meanwhile.

Statements run on the event loop thread: with the pages in SQLite's cache they
take microseconds, far less than a thread hop per statement would cost (which
is why this adapter uses the stdlib ``sqlite3`` module directly rather than
``aiosqlite``, whose every statement is a round trip to its thread). Only the
calls that may wait on the disk or on another process's lock (BEGIN IMMEDIATE,
COMMIT) go to the worker thread. Reads use a second connection (WAL readers
never block the writer).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sqlite3
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from csms.service.ports import StorageError, Tx
from csms.storage.group_commit import Batch, GroupCommit, Outcomes
from csms.storage.migrations import CREATE_MIGRATIONS_TABLE, Migration, migrate, run_now
from csms.storage.sql import SqlTx

__all__ = ["SqliteRepository"]

T = TypeVar("T")
log = logging.getLogger("csms.storage.sqlite")

MAX_BATCH = 512


class _SqliteTx(SqlTx):
    def __init__(self, conn: sqlite3.Connection, *, keep_sessions: bool = False) -> None:
        """``keep_sessions``: the write transaction keeps the sessions a unit read, so
        that their update writes only the columns that changed (SqlTx.update_session)."""
        self._conn = conn
        if keep_sessions:
            self._session_rows = {}

    async def execute(self, sql: str, *params: Any) -> int:
        if self._session_rows and "sessions" in sql:
            self.forget_sessions()  # a write of its own to the table: the copies are stale
        return self._conn.execute(sql, params).rowcount

    async def execute_many(self, sql: str, rows: list[tuple[Any, ...]]) -> None:
        if self._session_rows and "sessions" in sql:
            self.forget_sessions()
        self._conn.executemany(sql, rows)

    async def fetchone(self, sql: str, *params: Any) -> dict[str, Any] | None:
        if self._session_rows and "sessions" in sql and not sql.startswith("SELECT"):
            self.forget_sessions()  # a write with RETURNING
        row = self._conn.execute(sql, params).fetchone()
        return None if row is None else dict(row)

    async def fetchall(self, sql: str, *params: Any) -> list[dict[str, Any]]:
        if self._session_rows and "sessions" in sql and not sql.startswith("SELECT"):
            self.forget_sessions()
        return [dict(r) for r in self._conn.execute(sql, params).fetchall()]

    async def insert_id(self, sql: str, *params: Any) -> int:
        if self._session_rows and "sessions" in sql:
            self.forget_sessions()
        row = self._conn.execute(sql, params).fetchone()
        return int(row[0])

    async def free_space(self) -> int | None:
        """What the file may still grow by: the disk's free space and the page limit
        (``max_page_count``), plus pages freed inside the file."""
        c = self._conn
        page_size = int(c.execute("PRAGMA page_size").fetchone()[0])
        pages = int(c.execute("PRAGMA page_count").fetchone()[0])
        limit = int(c.execute("PRAGMA max_page_count").fetchone()[0])
        free_pages = int(c.execute("PRAGMA freelist_count").fetchone()[0])
        inside = free_pages * page_size
        by_limit = (limit - pages) * page_size + inside
        row = c.execute("PRAGMA database_list").fetchone()
        path = row[2] if row is not None else ""
        if not path:  # :memory:
            return by_limit
        st = os.statvfs(os.path.dirname(path) or ".")
        return min(by_limit, st.f_bavail * st.f_frsize + inside)


def _connect(path: str, *, readonly: bool = False) -> sqlite3.Connection:
    conn = sqlite3.connect(
        path, isolation_level=None, check_same_thread=False, timeout=10.0,
        cached_statements=256,
    )
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA busy_timeout = 10000")
    conn.execute("PRAGMA foreign_keys = ON")
    if not readonly:
        conn.execute("PRAGMA journal_mode = WAL")
        # FULL: a commit survives power loss, not only a process crash.
        conn.execute("PRAGMA synchronous = FULL")
    return conn


class _SqliteMigrations:
    """:func:`csms.storage.migrations.migrate` on the write connection (synchronous steps)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    async def applied_versions(self) -> set[int]:
        self.conn.execute(CREATE_MIGRATIONS_TABLE)
        return {r[0] for r in self.conn.execute("SELECT version FROM schema_migrations")}

    async def apply(self, migration: Migration, applied_at: str) -> None:
        conn = self.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in _split_sql(migration.sql):
                conn.execute(statement)
            conn.execute(
                "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                (migration.version, migration.name, applied_at),
            )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise


class SqliteRepository(GroupCommit):
    """A SQLite file (or ``:memory:`` for unit tests) behind the Repository port."""

    dialect = "sqlite"
    max_batch = MAX_BATCH
    parallel = 1  # one write connection
    committer_name = "sqlite-committer"

    def __init__(self, path: str | Path) -> None:
        super().__init__()
        self.path = str(path)
        self._write = _connect(self.path)
        run_now(migrate("sqlite", _SqliteMigrations(self._write)))
        self._read = self._write if self.path == ":memory:" else _connect(self.path, readonly=True)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-commit")

    def schema_version(self) -> int:
        row = self._write.execute("SELECT max(version) FROM schema_migrations").fetchone()
        return int(row[0] or 0)

    # -- units of work (queued and committed by GroupCommit) ---------------------
    async def read(self, fn: Callable[[Tx], Awaitable[T]]) -> T:
        return await fn(_SqliteTx(self._read))

    async def _run_batch(self, batch: Batch) -> Outcomes:
        loop = asyncio.get_running_loop()
        conn = self._write
        tx = _SqliteTx(conn, keep_sessions=True)
        outcomes: Outcomes = []
        try:
            await loop.run_in_executor(self._executor, conn.execute, "BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise StorageError(f"cannot begin a transaction: {exc}") from exc
        try:
            for fn, fut in batch:
                tx.forget_sessions()  # what an earlier unit read is not this one's
                conn.execute("SAVEPOINT unit")
                try:
                    result = await fn(tx)
                except Exception as exc:  # handed to the caller
                    # A unit's own error (including a constraint violation)
                    # undoes that unit only.
                    conn.execute("ROLLBACK TO unit")
                    conn.execute("RELEASE unit")
                    if isinstance(exc, sqlite3.Error):
                        exc = StorageError(f"{type(exc).__name__}: {exc}")
                    outcomes.append((fut, False, exc))
                else:
                    conn.execute("RELEASE unit")
                    outcomes.append((fut, True, result))
            await loop.run_in_executor(self._executor, conn.execute, "COMMIT")
        except sqlite3.Error as exc:
            # The transaction itself failed (disk full, I/O error): nothing of the
            # batch is durable.
            log.error("! commit failed: %s", exc)
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            raise StorageError(f"commit failed: {exc}") from exc
        return outcomes

    async def close(self) -> None:
        await self._finish_committers()
        self._executor.shutdown(wait=True)
        if self._read is not self._write:
            self._read.close()
        self._write.close()


def _split_sql(script: str) -> list[str]:
    """Split a migration into statements (no semicolons inside our literals)."""
    lines = [ln for ln in script.splitlines() if not ln.strip().startswith("--")]
    return [s.strip() for s in "\n".join(lines).split(";") if s.strip()]
