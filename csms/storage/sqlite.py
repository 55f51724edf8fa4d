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

Several processes may write the same file (``csms serve --workers``, or a ``csms``
command beside a running node). Each batch then first takes an exclusive ``flock`` on
``<file>.write-lock``, in the worker thread, and holds it until its COMMIT returns: the
processes take turns, and a waiting one is woken the moment the lock is free, where
SQLite's own busy handler (kept as a backstop) polls with sleeps of up to 100 ms and lets
a process that commits back to back take the lock again and again. The kernel drops the
lock of a process that dies, however it dies.

The write transactions keep two things between statements, each guarded: the session
rows a unit read (its update then writes only what changed; ``SqlTx.update_session``),
and the tariffs looked up, across batches, checked once per batch against a counter that
triggers raise on every change to the table (:class:`_Tariffs`).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import functools
import logging
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor, Future
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

from csms.domain.model import Session
from csms.domain.tariff import Tariff
from csms.service.ports import StorageError, Tx
from csms.storage.group_commit import Batch, GroupCommit, Outcomes
from csms.storage.migrations import CREATE_MIGRATIONS_TABLE, Migration, migrate, run_now
from csms.storage.sql import SqlTx, one_session_sql

__all__ = ["SqliteRepository", "TurnSeconds"]

T = TypeVar("T")
log = logging.getLogger("csms.storage.sqlite")

MAX_BATCH = 512
# After a unit that wrote and then failed (its batch run again, unit by unit), the batches
# that run each unit in a savepoint of its own: a station whose messages fail that way
# costs the others one run more per this many batches, not one per batch.
SAVEPOINT_BATCHES = 64
BUSY_SECONDS = 10.0  # SQLite's busy timeout, and the longest wait for the write turn


class TurnSeconds(NamedTuple):
    held: float  # BEGIN to the end of COMMIT
    waited: float  # for another process's turn to end
    before_batch: float  # of held: taken, while the event loop had not run the batch yet


def _names(cursor: sqlite3.Cursor) -> list[str]:
    return [d[0] for d in cursor.description]


class _Tariffs:
    """The tariffs the write transactions of one repository looked up, by (station, time):
    every 2.0.1 TransactionEvent asks for its session's tariff (the running cost), on the
    writer's turn, and the answer only changes when the tariffs table does.

    Whether it did is ``tariff_generation.n`` (migration 0100: triggers raise it on every
    insert, update and delete, whoever writes), read once per batch inside its write
    transaction (:meth:`sync`; BEGIN IMMEDIATE reads the newest commit, and no other
    process can commit until this one does): a changed counter drops everything kept. A
    batch that writes the table itself (:meth:`stop`) keeps nothing more, and the next
    batch starts empty, whatever the counter says then: a write of a unit that rolled back
    leaves the counter where it was, not the lookups made after it."""

    LIMIT = 4096  # lookups kept at most (one per running session is enough)

    def __init__(self) -> None:
        self.found: dict[tuple[str, Any], Tariff | None] = {}
        self.generation: int | None = None  # the counter ``found`` was read under
        self.open = False  # lookups may be kept (this batch has not written tariffs)

    def sync(self, generation: int) -> None:
        """At the start of a batch's transaction: the counter it reads."""
        if generation != self.generation:
            self.found.clear()
            self.generation = generation
        self.open = True

    def stop(self) -> None:
        """This batch wrote the tariffs table: drop and keep nothing until the next one."""
        self.found.clear()
        self.generation = None
        self.open = False

    def keep(self, key: tuple[str, Any], tariff: Tariff | None) -> None:
        if self.open:
            if len(self.found) >= self.LIMIT:
                self.found.clear()
            self.found[key] = tariff


class _SqliteTx(SqlTx):
    # The id the next session gets: AUTOINCREMENT's (one more than the largest the table
    # ever had, its row of sqlite_sequence, or than the largest it has). Read in its
    # insert, the write turn held: no other connection inserts meanwhile.
    _NEXT_SESSION_ID = (
        "(SELECT max(coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'sessions'), 0),"
        " coalesce(max(id), 0)) + 1 FROM sessions)")

    def __init__(self, conn: sqlite3.Connection, *, keep_sessions: bool = False,
                 tariffs: _Tariffs | None = None) -> None:
        """``keep_sessions``: the write transaction keeps the sessions a unit read, so
        that their update writes only the columns that changed (SqlTx.update_session).
        ``tariffs``: the write transaction's kept tariff lookups (:class:`_Tariffs`)."""
        self._conn = conn
        if keep_sessions:
            self._session_rows = {}
        self._tariffs = tariffs

    def _writes(self, sql: str) -> None:
        """Before a statement that writes: what the copies kept of the tables it names no
        longer hold."""
        if self._session_rows and "sessions" in sql:
            self.forget_sessions()  # a write of its own to the table: the copies are stale
        if self._tariffs is not None and "tariffs" in sql:
            self._tariffs.stop()

    async def execute(self, sql: str, *params: Any) -> int:
        self._writes(sql)
        return self._conn.execute(sql, params).rowcount

    async def execute_many(self, sql: str, rows: list[tuple[Any, ...]]) -> None:
        self._writes(sql)
        self._conn.executemany(sql, rows)

    # A write whose outcome the unit does not read runs at once, as execute() does; here
    # rather than through it: one coroutine less for each (a reading's row and its
    # session's update, on every meter value, on the write turn)
    async def write(self, sql: str, *params: Any) -> None:
        self._writes(sql)
        self._conn.execute(sql, params)

    def _query(self, sql: str, params: tuple[Any, ...]) -> sqlite3.Cursor:
        """A statement whose rows are read: a SELECT, or a write with RETURNING."""
        if not sql.startswith("SELECT"):
            self._writes(sql)  # a write with RETURNING
        return self._conn.execute(sql, params)

    async def find_tariff(self, station_id: str, at: Any) -> Tariff | None:
        tariffs = self._tariffs
        if tariffs is None:
            return await super().find_tariff(station_id, at)
        key = (station_id, at)
        try:
            return tariffs.found[key]
        except KeyError:
            pass
        tariff = await super().find_tariff(station_id, at)
        tariffs.keep(key, tariff)
        return tariff

    async def fetchone(self, sql: str, *params: Any) -> dict[str, Any] | None:
        cursor = self._query(sql, params)
        row = cursor.fetchone()
        return None if row is None else dict(zip(_names(cursor), row, strict=True))

    async def fetchall(self, sql: str, *params: Any) -> list[dict[str, Any]]:
        cursor = self._query(sql, params)
        rows = cursor.fetchall()
        if not rows:
            return []
        names = _names(cursor)
        return [dict(zip(names, r, strict=True)) for r in rows]

    async def fetchrows(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        return self._query(sql, params).fetchall()

    async def _one_session(self, where: str, *params: Any) -> Session | None:
        # SqlTx's, without a coroutine of fetchrows between (every transaction message
        # reads its session)
        rows = self._conn.execute(one_session_sql(where), params).fetchall()
        return self._read_session(rows[0]) if rows else None

    async def insert_id(self, sql: str, *params: Any) -> int:
        self._writes(sql)
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
        path, isolation_level=None, check_same_thread=False, timeout=BUSY_SECONDS,
        cached_statements=256,
    )
    # rows are plain tuples: fetchone/fetchall make their dicts from the cursor's column
    # names, about half the cost of a dict made from a sqlite3.Row
    conn.execute(f"PRAGMA busy_timeout = {int(BUSY_SECONDS * 1000)}")
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


class _WriteTurn:
    """The exclusive ``flock`` a process holds from BEGIN IMMEDIATE to COMMIT (see the
    module's docstring); nothing for ``:memory:``, which no other process can open.

    It counts the seconds this process waited for its turn and held it (taken in the
    commit thread, read anywhere): while one process holds the turn, no other writes, so
    the turns held by all processes over a stretch of time, divided by its length, say
    how close the file is to its limit (1.0: writes never pause, and another process
    cannot add any; docs/benchmarks.md). Of the seconds held, it counts apart those before
    the batch ran: the turn is taken in the commit thread, and the event loop gets to the
    batch once it has finished what it was doing (the answers of its last batch, the
    frames that came meanwhile)."""

    def __init__(self, path: str) -> None:
        self._fd: int | None = None
        self.waited_s = 0.0
        self.held_s = 0.0
        self.before_batch_s = 0.0  # of held_s: taken, the batch not yet running
        self._since: float | None = None  # when the turn held now was taken
        if path != ":memory:":
            real = Path(path).expanduser().resolve()
            self._fd = os.open(real.with_name(real.name + ".write-lock"),
                               os.O_RDWR | os.O_CREAT, 0o644)

    def take(self) -> None:
        asked = time.perf_counter()
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_EX)
        self._since = time.perf_counter()
        self.waited_s += self._since - asked

    def batch_started(self) -> None:
        """On the event loop, when the batch that asked for the turn starts to run: the
        turn was held meanwhile while the loop finished what it was doing."""
        if self._since is not None:
            self.before_batch_s += time.perf_counter() - self._since

    def give(self) -> None:
        if self._since is not None:  # given twice on some paths: counted once
            self.held_s += time.perf_counter() - self._since
            self._since = None
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _port_error(exc: Exception) -> Exception:
    """A unit's error as its caller gets it: a database error in the port's terms."""
    if isinstance(exc, sqlite3.Error):
        return StorageError(f"{type(exc).__name__}: {exc}")
    return exc


def _still_in(conn: sqlite3.Connection) -> None:
    """After a unit: the batch's transaction must still be open. A unit that ended it
    (a COMMIT or ROLLBACK of its own, or an error after which SQLite rolled it back)
    fails the batch; the units after it would each commit on its own."""
    if not conn.in_transaction:
        raise sqlite3.OperationalError("the batch's transaction ended inside a unit")


class _TurnThread(Executor):
    """The one thread that runs the calls which may wait on the disk or on another
    process's lock (taking the turn, BEGIN, COMMIT), in order. A daemon: a wait for the
    turn that a batch gave up (another process keeps it, stopped but not dead) cannot be
    interrupted (``flock``), and neither :meth:`SqliteRepository.close` nor the process's
    exit must wait for it (a ``ThreadPoolExecutor``'s thread is joined at exit: a ``csms``
    command that had reported the busy file then hung)."""

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue[tuple[Future[Any], Callable[[], Any]] | None] = \
            queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="sqlite-commit", daemon=True)
        self._thread.start()

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        future: Future[T] = Future()
        self._jobs.put((future, functools.partial(fn, *args, **kwargs)))
        return future

    def _run(self) -> None:
        while (job := self._jobs.get()) is not None:
            future, call = job
            if not future.set_running_or_notify_cancel():
                continue
            try:
                result = call()
            except BaseException as exc:  # handed to the waiting batch
                future.set_exception(exc)
            else:
                future.set_result(result)
            del job, future, call

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self._jobs.put(None)
        if wait:
            self._thread.join()


class SqliteRepository(GroupCommit):
    """A SQLite file (or ``:memory:`` for unit tests) behind the Repository port."""

    dialect = "sqlite"
    max_batch = MAX_BATCH
    parallel = 1  # one write connection
    reads_together = False  # a read runs at once, on the event loop's thread
    committer_name = "sqlite-committer"

    def __init__(self, path: str | Path) -> None:
        super().__init__()
        self.path = str(path)
        self._write = _connect(self.path)
        run_now(migrate("sqlite", _SqliteMigrations(self._write)))
        # The units' temporary tables in memory. A statement that buffers rows (an
        # INSERT ... RETURNING, a materialized WITH, an IN (SELECT ...)) opens a temporary
        # b-tree, and with temporary files (the default) each one set up and tore down a
        # pager for a file of its own: a 1.6 session's insert took ~150 us of which ~75%
        # there (a start's unit ~270 us, ~130 us in memory; docs/benchmarks.md). The units'
        # temporary tables are small; set after the migrations, whose index builds may
        # sort a whole table, and not on the read connection, whose listings and exports
        # may sort more than memory should hold.
        self._write.execute("PRAGMA temp_store = MEMORY")
        self._read = self._write if self.path == ":memory:" else _connect(self.path, readonly=True)
        self._executor = _TurnThread()
        self._gave_up = False  # a batch stopped waiting for the turn (see close)
        self._turn = _WriteTurn(self.path)
        self._tariffs = _Tariffs()
        self._apart_batches = 0  # batches still to run with a savepoint per unit
        self.runs_again = 0  # batches run again unit by unit (a unit wrote, then failed)

    def write_turn_seconds(self) -> TurnSeconds:
        """Seconds this repository has held the database's write turn (from BEGIN to
        the end of COMMIT), waited for it, and held it before its batch ran, since it
        was opened."""
        turn = self._turn
        return TurnSeconds(turn.held_s, turn.waited_s, turn.before_batch_s)

    def schema_version(self) -> int:
        row = self._write.execute("SELECT max(version) FROM schema_migrations").fetchone()
        return int(row[0] or 0)

    # -- units of work (queued and committed by GroupCommit) ---------------------
    async def read(self, fn: Callable[[Tx], Awaitable[T]]) -> T:
        return await fn(_SqliteTx(self._read))

    async def _run_batch(self, batch: Batch) -> Outcomes:
        loop = asyncio.get_running_loop()
        conn = self._write
        tariffs = self._tariffs
        tx = _SqliteTx(conn, keep_sessions=True, tariffs=tariffs)
        outcomes: Outcomes = []
        abandoned = threading.Event()
        begun = loop.run_in_executor(self._executor, self._begin, abandoned)
        try:
            # as long as SQLite's own busy timeout: a process that keeps the turn (stopped,
            # not dead) fails this batch, as the busy handler would, rather than hang it
            await asyncio.wait_for(asyncio.shield(begun), BUSY_SECONDS)
        except TimeoutError:
            abandoned.set()  # the thread gives the turn back at once when it gets it,
            self._gave_up = True
            # and undoes a BEGIN that got through meanwhile (the same thread, next)
            self._executor.submit(self._undo_begin)
            raise StorageError("cannot begin a transaction: another process has held the"
                               f" database's write turn for {BUSY_SECONDS:g} s") from None
        except sqlite3.Error as exc:
            raise StorageError(f"cannot begin a transaction: {exc}") from exc
        self._turn.batch_started()
        # Units that queued while this batch waited for the write turn (other processes
        # writing) go in with it: one commit for them too, not a turn of their own. The
        # committer reads the outcome of every unit in ``batch``, these included.
        self._take_more(batch)
        try:
            tariffs.sync(conn.execute("SELECT n FROM tariff_generation").fetchone()[0])
            if self._apart_batches > 0:
                self._apart_batches -= 1
                outcomes = await self._units_apart(batch, tx)
            else:
                outcomes = await self._units(batch, tx)
            await loop.run_in_executor(self._executor, self._commit)
        except sqlite3.Error as exc:
            # The transaction itself failed (disk full, I/O error): nothing of the
            # batch is durable.
            log.error("! commit failed: %s", exc)
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            raise StorageError(f"commit failed: {exc}") from exc
        except BaseException:
            # cancelled mid-batch (shutting down): nothing of it is committed
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            raise
        finally:
            self._turn.give()
        return outcomes

    async def _units(self, batch: Batch, tx: _SqliteTx) -> Outcomes:
        """The batch's units one after another, in one savepoint for them all (not one
        each: SAVEPOINT and RELEASE were ~4 us of a unit's ~60-100). A unit that fails
        having written nothing has nothing to undo (SQLite undoes a failing statement
        itself); one that wrote and then failed is undone with the units before it, and
        the batch runs again unit by unit (:meth:`_units_apart`): units are safe to run
        twice, as a retried message already requires (see the PostgreSQL adapter)."""
        conn = self._write
        outcomes: Outcomes = []
        conn.execute("SAVEPOINT batch")
        for fn, fut in batch:
            tx.forget_sessions()  # what an earlier unit read is not this one's
            before = conn.total_changes
            try:
                result = await fn(tx)
            except Exception as exc:  # handed to the caller
                _still_in(conn)
                if conn.total_changes != before:  # it wrote: undo the batch so far
                    conn.execute("ROLLBACK TO batch")
                    conn.execute("RELEASE batch")
                    self.runs_again += 1
                    self._apart_batches = SAVEPOINT_BATCHES
                    return await self._units_apart(batch, tx)
                outcomes.append((fut, False, _port_error(exc)))
            else:
                _still_in(conn)
                outcomes.append((fut, True, result))
        conn.execute("RELEASE batch")
        return outcomes

    async def _units_apart(self, batch: Batch, tx: _SqliteTx) -> Outcomes:
        """The batch's units one after another, each in its own savepoint, so that a
        failing unit's writes are undone alone. A unit that wrote and then failed keeps
        the batches after it this way for ``SAVEPOINT_BATCHES`` more."""
        conn = self._write
        outcomes: Outcomes = []
        for fn, fut in batch:
            tx.forget_sessions()
            conn.execute("SAVEPOINT unit")
            before = conn.total_changes
            try:
                result = await fn(tx)
            except Exception as exc:  # handed to the caller
                # A unit's own error (including a constraint violation) undoes that unit
                # only.
                if conn.total_changes != before:
                    self._apart_batches = SAVEPOINT_BATCHES
                conn.execute("ROLLBACK TO unit")
                conn.execute("RELEASE unit")
                outcomes.append((fut, False, _port_error(exc)))
            else:
                conn.execute("RELEASE unit")
                outcomes.append((fut, True, result))
        return outcomes

    def _commit(self) -> None:
        """In the worker thread: COMMIT, and the next process's turn at once (not after
        this process's event loop has woken up to the result)."""
        try:
            self._write.execute("COMMIT")
        finally:
            self._turn.give()

    def _undo_begin(self) -> None:
        if self._write.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                self._write.execute("ROLLBACK")
            self._turn.give()

    def _begin(self, abandoned: threading.Event) -> None:
        """In the worker thread: this process's turn to write, then the transaction;
        nothing if the batch gave up waiting meanwhile."""
        self._turn.take()
        if abandoned.is_set():
            self._turn.give()
            return
        try:
            self._write.execute("BEGIN IMMEDIATE")
        except BaseException:
            self._turn.give()
            raise

    async def close(self) -> None:
        await self._finish_committers()
        # The thread may still be waiting for a turn a batch gave up on: it cannot be
        # interrupted, and is a daemon (_TurnThread); it gives the turn back if it gets it.
        self._executor.shutdown(wait=not self._gave_up)
        if self._read is not self._write:
            self._read.close()
        self._write.close()
        self._turn.close()


def _split_sql(script: str) -> list[str]:
    """Split a migration into statements: at each semicolon that ends one, as SQLite
    reads it (a trigger's body holds statements of its own; no semicolons inside our
    literals)."""
    lines = [ln for ln in script.splitlines() if not ln.strip().startswith("--")]
    statements: list[str] = []
    pending = ""
    for piece in "\n".join(lines).split(";"):
        pending += piece + ";"
        if sqlite3.complete_statement(pending):
            if pending.strip(" \n;"):
                statements.append(pending.strip().rstrip(";").strip())
            pending = ""
    if pending.strip(" \n;"):
        statements.append(pending.strip().rstrip(";").strip())
    return statements
