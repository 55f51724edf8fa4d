"""SQLite storage with group commit.

Theory of operation. One write connection, used only by the committer task.
Units of work queue up; the committer takes every queued unit, runs them one
after another inside one ``BEGIN IMMEDIATE`` transaction (each in its own
SAVEPOINT, so a failing unit rolls back alone) and then issues one ``COMMIT``
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
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from csms.service.ports import StorageError, Tx
from csms.storage.migrations import migrations_for
from csms.storage.sql import SqlTx

__all__ = ["SqliteRepository"]

T = TypeVar("T")
log = logging.getLogger("csms.storage.sqlite")

MAX_BATCH = 512


class _SqliteTx(SqlTx):
    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    async def execute(self, sql: str, *params: Any) -> int:
        return self._conn.execute(sql, params).rowcount

    async def execute_many(self, sql: str, rows: list[tuple[Any, ...]]) -> None:
        self._conn.executemany(sql, rows)

    async def fetchone(self, sql: str, *params: Any) -> dict[str, Any] | None:
        row = self._conn.execute(sql, params).fetchone()
        return None if row is None else dict(row)

    async def fetchall(self, sql: str, *params: Any) -> list[dict[str, Any]]:
        return [dict(r) for r in self._conn.execute(sql, params).fetchall()]

    async def insert_id(self, sql: str, *params: Any) -> int:
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


class SqliteRepository:
    """A SQLite file (or ``:memory:`` for unit tests) behind the Repository port."""

    dialect = "sqlite"

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self._write = _connect(self.path)
        self._migrate()
        self._read = self._write if self.path == ":memory:" else _connect(self.path, readonly=True)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-commit")
        self._queue: list[tuple[Callable[[Tx], Awaitable[Any]], asyncio.Future[Any]]] = []
        self._committer: asyncio.Task[None] | None = None
        self._closed = False
        self.commits = 0
        self.units = 0

    # -- schema ----------------------------------------------------------------
    def _migrate(self) -> None:
        conn = self._write
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY,"
            " name TEXT NOT NULL, applied_at TEXT NOT NULL)"
        )
        done = {r[0] for r in conn.execute("SELECT version FROM schema_migrations")}
        for m in migrations_for("sqlite"):
            if m.version in done:
                continue
            log.info("= applying migration %04d_%s", m.version, m.name)
            conn.execute("BEGIN IMMEDIATE")
            try:
                for statement in _split_sql(m.sql):
                    conn.execute(statement)
                conn.execute(
                    "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                    (m.version, m.name, datetime.now(UTC).isoformat()),
                )
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise

    def schema_version(self) -> int:
        row = self._write.execute("SELECT max(version) FROM schema_migrations").fetchone()
        return int(row[0] or 0)

    # -- units of work ----------------------------------------------------------
    async def unit(self, fn: Callable[[Tx], Awaitable[T]]) -> T:
        if self._closed:
            raise StorageError("repository is closed")
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[T] = loop.create_future()
        self._queue.append((fn, fut))
        if self._committer is None or self._committer.done():
            self._committer = loop.create_task(self._commit_loop(), name="sqlite-committer")
        # The committer owns the work; a cancelled caller does not cancel the unit.
        return await asyncio.shield(fut)

    async def read(self, fn: Callable[[Tx], Awaitable[T]]) -> T:
        return await fn(_SqliteTx(self._read))

    async def _commit_loop(self) -> None:
        loop = asyncio.get_running_loop()
        conn = self._write
        tx = _SqliteTx(conn)
        while self._queue:
            batch = self._queue[:MAX_BATCH]
            del self._queue[:MAX_BATCH]
            outcomes: list[tuple[asyncio.Future[Any], bool, Any]] = []
            try:
                await loop.run_in_executor(self._executor, conn.execute, "BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                for _, fut in batch:
                    if not fut.done():
                        fut.set_exception(StorageError(f"cannot begin a transaction: {exc}"))
                continue
            try:
                for fn, fut in batch:
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
                # The transaction itself failed (disk full, I/O error): nothing of
                # the batch is durable, so every caller gets the error and no
                # station is acknowledged; they retry.
                log.error("! commit failed: %s", exc)
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
                err = StorageError(f"commit failed: {exc}")
                for _, fut in batch:
                    if not fut.done():
                        fut.set_exception(err)
                continue
            self.commits += 1
            self.units += len(outcomes)
            for fut, ok, value in outcomes:
                if fut.done():
                    continue
                if ok:
                    fut.set_result(value)
                else:
                    fut.set_exception(value)

    async def close(self) -> None:
        self._closed = True
        if self._committer is not None:
            with contextlib.suppress(Exception):
                await self._committer
        self._executor.shutdown(wait=True)
        if self._read is not self._write:
            self._read.close()
        self._write.close()


def _split_sql(script: str) -> list[str]:
    """Split a migration into statements (no semicolons inside our literals)."""
    lines = [ln for ln in script.splitlines() if not ln.strip().startswith("--")]
    return [s.strip() for s in "\n".join(lines).split(";") if s.strip()]
