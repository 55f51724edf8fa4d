"""PostgreSQL storage (asyncpg) with group commit, for several nodes on one database.

Theory of operation. The same design as :mod:`csms.storage.sqlite` (the queue and
its committers are :mod:`csms.storage.group_commit`'s). Units of
work queue up; a committer task takes every queued unit (at most
``MAX_BATCH``), borrows one connection from the pool and runs the units of the
batch together in rounds (:mod:`csms.storage.postgres_rounds`: every unit's next
read gathered into one statement per round, their held writes into one script,
the commit with the last of them), so a batch costs as many round trips as its
deepest unit has reads rather than one per statement of every unit. When a batch
cannot finish that way (a database error in any statement, a unit failing after
its writes went out, units waiting on each other's rows) it is rolled back and
runs again as described below, the units one after another inside one
transaction, each in its own SAVEPOINT, so a failing unit rolls back alone (and
``in_rounds=False`` runs every batch that way). While committers are busy, a unit
that arrives starts another one (up to ``COMMITTERS``), so several batches are in
flight on their own connections; units of one batch never wait for another batch's
round trips.
Order is unaffected where it matters: a station's next message is handled only
after the unit of the previous one committed. Two batches touching the same
rows are two transactions like two nodes' batches (below). Each batch ends with
one ``COMMIT`` (with ``synchronous_commit = on`` the WAL is flushed before the
server answers) and only then are the callers' futures resolved: nothing is
acknowledged before it is durable, and one WAL flush covers every message that
arrived meanwhile. A failing ``COMMIT`` (or a
connection lost mid-batch) fails every unit of the batch. When the connection
is lost during ``COMMIT`` the outcome is unknown; the callers get an error and
the station retries, which ingest dedupes (DESIGN.md: ingest is idempotent).

Savepoints are plain SQL rather than asyncpg's nested ``transaction()``: the
release of one unit's savepoint and the start of the next one travel in one
simple-protocol round trip (``RELEASE SAVEPOINT unit; SAVEPOINT unit``), and
after a failure ``ROLLBACK TO SAVEPOINT unit`` leaves the savepoint in place
for the next unit. That is one round trip per unit instead of two.

Held writes. A unit's writes whose outcome it does not read (``SqlTx.write``: sample
rows, the session update, outbox and station events...) are not sent at once: they
wait, with their values written in as literals, for the unit's next statement or the
savepoint release that ends the unit, and go with it in one simple-protocol round trip
(a 1.6 MeterValues: 2 round trips instead of 5). Each runs as ``EXECUTE`` of a statement
prepared once per connection, so PostgreSQL does not parse and plan it every time. An
error of a held write surfaces there and undoes its unit like any other.

Isolation: READ COMMITTED, set explicitly on every write transaction. Every
statement sees the rows other nodes committed before it started, which is what
makes the conflict handling below work: with REPEATABLE READ or SERIALIZABLE
the whole batch would keep the snapshot of its first statement and a retried
unit would not see the row it collided with.

Several nodes on one database. Two units on different nodes can collide on a
unique key, e.g. the 1.6 StartTransaction dedupe on ``(station_id,
start_key)`` when a station's retry reaches a second node (1.6 §4.8): both
units find no session and insert; the second insert waits for the first
node's transaction and then fails with a unique violation. That unit's
savepoint is rolled back and the unit runs once more in a fresh savepoint;
under READ COMMITTED it now finds the committed session and answers with the
same transactionId. The same single retry covers deadlocks between two
nodes' batches (SQLSTATE 40P01, PostgreSQL aborts one statement after
``deadlock_timeout``) and serialization failures (40001). A unit that fails
again is reported to its caller as :class:`StorageError` (a genuine duplicate
such as adding an existing station), like the SQLite adapter does. Units must
therefore be safe to run twice: they are functions of the database state,
which is already required because a station retries a message whose answer
it did not get. ``ON CONFLICT DO NOTHING`` inserts (2.0.1 ``tx_events``)
never raise: they wait for the other transaction and then do nothing.

A session read and written back. A unit reads a session without a row lock, decides
and writes it back; under READ COMMITTED another transaction (another batch, another
node: an operator's release or reject, the settlement worker's hold, a stop at the
driver's limit, the station's own message) can commit a change of the row in between,
which the write would overwrite (a hold flag, an operator's decision, the session's
completion undone). The update of a session the unit read therefore names only the
columns that changed, and requires the row to still hold what was read in its status,
its flags and those columns, and its ``updated_at`` (no other update since: a station's
readings come with one, and a stop or a close bills the readings it read); when it does
not, the update calls migration 0205's
``session_changed()``, which fails the unit with a serialization failure (40001), and
the unit runs again on the row as it is now (:class:`PostgresRowLocks`). The check
travels with the held update: no round trip, and no row lock taken at the read.

Parameters are typed by the server, not by affinity as in SQLite: pass a
``str`` for a TEXT column and an ``int`` for an integer one (a mismatch is a
:class:`StorageError`); a ``?`` without a column to compare with is text.

Reads run in a read-only REPEATABLE READ transaction, so one ``read(fn)`` sees one
consistent snapshot. They queue up like units (up to ``READERS`` batches at once, each
on its own pooled connection) and a batch of them runs in rounds in one transaction,
every read of a round in one statement; a batch that fails runs each read again in a
transaction of its own, which is how every read runs with ``in_rounds=False``.

Schema migrations (``migrations/postgres``) run at :meth:`PostgresRepository.open`
under a session-level advisory lock keyed by the schema, so two nodes that
start at once do not both migrate: the second waits, then finds nothing to do. A
migration of CREATE INDEX statements alone, on tables that hold rows, builds them
CONCURRENTLY: the other nodes' writes to those tables go on meanwhile.
Tables live in the connection's ``current_schema()``; a ``search_path`` query
parameter in the URL (``postgresql://u@host/db?search_path=tenant``) selects
another schema.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import re
import zlib
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar
from urllib.parse import urlsplit

import asyncpg

from csms.service.ports import StorageError, Tx
from csms.storage.group_commit import Batch, GroupCommit, Outcomes
from csms.storage.migrations import CREATE_MIGRATIONS_TABLE, Migration, migrate
from csms.storage.postgres_rounds import (
    PostgresRowLocks,
    ReadShape,
    RoundStats,
    RunInSequence,
    run_in_rounds,
)
from csms.storage.postgres_text import (
    inline_statement,
    literal,
    prepared_name,
    rowcount,
    sql_pieces,
    to_postgres_placeholders,
)
from csms.storage.sql import SqlTx

__all__ = [
    "PostgresRepository", "describe_dsn", "inline_statement",
    "to_postgres_placeholders",
]

T = TypeVar("T")
log = logging.getLogger("csms.storage.postgres")

MAX_BATCH = 512
# Batches committed at once, each on its own pooled connection: with one, the server
# waits on PostgreSQL while a batch's round trips go and come. On one machine this many in
# all, shared by the processes of csms serve --workers (at least one each): more batches
# in flight make smaller batches, and each batch costs the server and PostgreSQL CPU of
# its own (round trips, BEGIN and COMMIT, a read statement planned): on 2 cores, two
# workers with 1 each ran at 1.04-1.42x the rate of 2 each, at 0.67-0.94x the server's
# CPU per message (6 pairs, docs/benchmarks.md).
COMMITTERS = 2
# unique_violation, serialization_failure, deadlock_detected: another node's
# concurrent transaction; one more attempt under a fresh statement snapshot (a
# serialization failure is also a session changed since the unit read it, see above).
# lock_not_available: a statement of the batch waited for a row lock longer than
# LOCK_TIMEOUT (see below); run the unit again like after a deadlock.
RETRYABLE_SQLSTATES = frozenset({"23505", "40001", "40P01", "55P03"})
# The longest a batch's statement waits for another transaction's row lock. Batches of
# several nodes wait on each other's rows (stations that reconnected to another node);
# PostgreSQL breaks the cycles it sees as deadlocks, and this bounds any other wait (one
# was seen lasting minutes with four nodes under reconnection churn), so a stuck batch
# turns into retried units and, at worst, errors the stations retry.
LOCK_TIMEOUT = 5.0
# Batches of reads at once, each on its own pooled connection (PostgresRepository.read)
READERS = 2
READ_BEGIN = "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"
MAX_ATTEMPTS = 4  # a deadlock can recur under load when both sides retry at once
# InternalClientError: asyncpg's own faults (a connection in a state it did not expect:
# "cannot switch to state ..."), which derive from Exception alone
_DB_ERRORS = (asyncpg.PostgresError, asyncpg.InterfaceError, asyncpg.InternalClientError,
              OSError)


def describe_dsn(dsn: str) -> str:
    """The URL without its password, for messages and logs."""
    try:
        parts = urlsplit(dsn)
        host = parts.hostname or "localhost"
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "postgresql://?"
    user = f"{parts.username}@" if parts.username else ""
    return f"{parts.scheme}://{user}{host}{port}{parts.path}"


async def _keep_session(conn: asyncpg.Connection) -> None:
    """What a pooled connection is reset with when it is released: nothing more than
    asyncpg's own rollback of an unfinished transaction. Its default (unlock advisory
    locks, close cursors, UNLISTEN, RESET ALL) is one more round trip per batch and per
    read, for session state this adapter never leaves behind (its only advisory lock,
    the migrations', is released where it is taken; no LISTEN, no SET)."""


def _storage_error(exc: BaseException) -> StorageError:
    detail = getattr(exc, "sqlstate", None)
    prefix = f"{type(exc).__name__} ({detail})" if detail else type(exc).__name__
    return StorageError(f"{prefix}: {exc}")


class _Connection(asyncpg.Connection):  # type: ignore[misc]
    """A pooled connection that knows which held-write statements it has prepared (a
    prepared statement lives as long as its session, whatever its transactions do)."""

    __slots__ = ("prepared_writes",)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.prepared_writes: set[str] = set()


def _prepared_writes(conn: asyncpg.Connection) -> set[str]:
    """The names of the held-write statements prepared on ``conn`` (a connection of
    another class: a set of its own, which the statements' names then outlive)."""
    prepared = getattr(conn, "prepared_writes", None)
    return prepared if isinstance(prepared, set) else set()


class _PostgresTx(PostgresRowLocks, SqlTx):
    """The four SQL primitives on one asyncpg connection.

    Writes whose outcome the unit does not read (:meth:`write`) are held back as
    statements with their values written in, and sent in one simple-protocol round trip
    with the next statement: the unit's next read, or the savepoint release that ends
    the unit (:meth:`held`). A meter value's sample rows, session update and outbox event
    cost one round trip together instead of one each."""

    def __init__(self, conn: asyncpg.Connection, *, keep_sessions: bool = False) -> None:
        """``keep_sessions``: a write transaction's, which keeps the sessions each unit
        reads (forgotten at each unit's start) for their checked update
        (:class:`csms.storage.postgres_rounds.PostgresRowLocks`)."""
        self._conn = conn
        if keep_sessions:
            self._session_rows = {}
        self._held: list[str] = []
        prepared = getattr(conn, "prepared_writes", None)
        self._prepared: set[str] | None = prepared if isinstance(prepared, set) else None

    def held(self) -> list[str]:
        """Take the statements held back (the caller sends them)."""
        held, self._held = self._held, []
        return held

    async def _send_held(self) -> None:
        if self._held:
            await self._conn.execute(";".join(self.held()))

    async def write(self, sql: str, *params: Any) -> None:
        self._writes(sql)
        values = [literal(v) for v in params]
        if any(v is None for v in values) or len(sql_pieces(sql)) != len(params) + 1:
            await self.execute(sql, *params)
            return
        if self._prepared is None:  # a connection of another class: the text itself
            self._held.append(inline_statement(sql, params) or "")
            return
        # EXECUTE of a statement prepared once per connection: PostgreSQL parses and
        # plans the text once, not at every write (a round trip the first time only)
        name = prepared_name(sql)
        if name not in self._prepared:
            await self._conn.execute(f"PREPARE {name} AS {to_postgres_placeholders(sql)}")
            self._prepared.add(name)
        self._held.append(f"EXECUTE {name}({', '.join(v for v in values if v)})"
                          if values else f"EXECUTE {name}")

    async def execute(self, sql: str, *params: Any) -> int:
        self._writes(sql)
        await self._send_held()
        status: str = await self._conn.execute(to_postgres_placeholders(sql), *params)
        return rowcount(status)

    async def execute_many(self, sql: str, rows: list[tuple[Any, ...]]) -> None:
        if len(rows) == 1:
            await self.execute(sql, *rows[0])
        elif rows:  # pipelined: one round trip for all the rows
            self._writes(sql)
            await self._send_held()
            await self._conn.executemany(to_postgres_placeholders(sql), rows)

    async def fetchone(self, sql: str, *params: Any) -> dict[str, Any] | None:
        if self._session_rows and sql.lstrip()[:6].upper() != "SELECT":
            self._writes(sql)
        await self._send_held()
        row = await self._conn.fetchrow(to_postgres_placeholders(sql), *params)
        return None if row is None else dict(row.items())

    async def fetchall(self, sql: str, *params: Any) -> list[dict[str, Any]]:
        if self._session_rows and sql.lstrip()[:6].upper() != "SELECT":
            self._writes(sql)
        await self._send_held()
        rows = await self._conn.fetch(to_postgres_placeholders(sql), *params)
        return [dict(r.items()) for r in rows]

    async def insert_id(self, sql: str, *params: Any) -> int:
        if not sql.rstrip().lower().endswith("returning id"):
            sql = sql.rstrip() + " RETURNING id"
        self._writes(sql)
        await self._send_held()
        value = await self._conn.fetchval(to_postgres_placeholders(sql), *params)
        return int(value)


# how often a node that starts while another migrates asks for the migrations' lock again
MIGRATION_LOCK_POLL = 0.1


class _PostgresMigrations:
    """:func:`csms.storage.migrations.migrate` on one connection."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    async def applied_versions(self) -> set[int]:
        await self.conn.execute(CREATE_MIGRATIONS_TABLE)
        rows = await self.conn.fetch("SELECT version FROM schema_migrations")
        return {r["version"] for r in rows}

    async def apply(self, migration: Migration, applied_at: str) -> None:
        record = ("INSERT INTO schema_migrations (version, name, applied_at)"
                  " VALUES ($1, $2, $3)", migration.version, migration.name, applied_at)
        builds = index_builds(migration.sql)
        if builds and await self._any_rows({table for _, table, _ in builds}):
            # Indexes on tables that hold rows: built CONCURRENTLY, outside a transaction,
            # one statement at a time. A plain CREATE INDEX queues for a lock that stops
            # every write to the table until the index is built (other nodes of a cluster
            # go on serving while one upgrades: a million sessions, seconds of every
            # station's starts and stops waiting). A build cut off (a crash) leaves an
            # invalid index behind: dropped and built again when the migration is retried.
            for name, _, statement in builds:
                await self.conn.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")
                await self.conn.execute(statement)
            await self.conn.execute(*record)
            return
        async with self.conn.transaction():
            await self.conn.execute(migration.sql)  # no parameters: the whole script at once
            await self.conn.execute(*record)

    async def _any_rows(self, tables: set[str]) -> bool:
        for table in sorted(tables):
            if await self.conn.fetchval(f"SELECT EXISTS (SELECT 1 FROM {table})"):
                return True
        return False


_INDEX = re.compile(r"CREATE\s+(UNIQUE\s+)?INDEX\s+(\w+)\s+ON\s+(\w+)\s*(\(.*)", re.S | re.I)


def index_builds(sql: str) -> list[tuple[str, str, str]] | None:
    """For a migration made of CREATE INDEX statements only: each index's name, its table
    and its CREATE INDEX CONCURRENTLY statement; None for any other migration (its
    statements run in one transaction)."""
    text = "\n".join(line.split("--", 1)[0] for line in sql.splitlines())
    statements = [s.strip() for s in text.split(";") if s.strip()]
    builds = []
    for statement in statements:
        found = _INDEX.fullmatch(statement)
        if found is None:
            return None
        unique, name, table, rest = found.groups()
        builds.append((name, table, f"CREATE {unique or ''}INDEX CONCURRENTLY {name}"
                                    f" ON {table} {rest}"))
    return builds or None


class _ReadBatches(GroupCommit):
    """The queue of a repository's reads: each batch in one read-only transaction."""

    max_batch = MAX_BATCH
    parallel = READERS
    committer_name = "postgres-reader"

    def __init__(self, repo: PostgresRepository) -> None:
        super().__init__()
        self._repo = repo

    async def _run_batch(self, batch: Batch) -> Outcomes:
        return await self._repo._run_reads(batch)


class _ApartLane(GroupCommit):
    """The batches of :meth:`PostgresRepository.unit_apart`: bookkeeping units only
    (they never wait for a row lock), committed by the repository's own batch runner."""

    max_batch = MAX_BATCH
    parallel = 1
    committer_name = "postgres-apart-committer"

    def __init__(self, run: Callable[[Batch], Awaitable[Outcomes]]) -> None:
        super().__init__()
        self._run = run

    async def _run_batch(self, batch: Batch) -> Outcomes:
        return await self._run(batch)


class PostgresRepository(GroupCommit):
    """A PostgreSQL database behind the Repository port; open with :meth:`open`.

    Units of a batch hold the rows they locked until the batch commits, while the later
    units run: a batch of another node that needs one of those rows waits for the whole
    batch. The connection bookkeeping of stations (last seen, a closed connection) is
    therefore committed apart (:meth:`unit_apart`), in batches of its own that skip
    rows other transactions hold instead of waiting for them; a node whose station
    moved to another node never keeps that node's new connection waiting.
    """

    dialect = "postgres"
    reads_together = True  # reads awaited together go in one batch
    max_batch = MAX_BATCH
    committer_name = "postgres-committer"

    def __init__(self, pool: asyncpg.Pool, dsn: str, parallel: int = COMMITTERS,
                 lock_timeout: float = LOCK_TIMEOUT, in_rounds: bool = True) -> None:
        super().__init__()
        self._pool = pool
        self.dsn = dsn
        self.parallel = parallel
        self._begin_rounds = ("BEGIN ISOLATION LEVEL READ COMMITTED;"
                              f" SET LOCAL lock_timeout = {max(1, round(lock_timeout * 1000))}")
        self._begin = f"{self._begin_rounds}; SAVEPOINT unit"
        self.retries = 0
        # A batch's units run together, their reads gathered in rounds
        # (csms.storage.postgres_rounds); False: one after another, as a fallback does.
        self.in_rounds = in_rounds
        self.round_stats = RoundStats()
        self.read_stats = RoundStats()
        self._read_shapes: dict[str, ReadShape] = {}
        self._reads = _ReadBatches(self)
        self._apart = _ApartLane(self._run_batch)

    async def unit_apart(self, fn: Callable[[Tx], Awaitable[T]]) -> T:
        return await self._apart.unit(fn)

    @classmethod
    async def open(
        cls, dsn: str, *, min_size: int = 1, max_size: int = 10, command_timeout: float = 60.0,
        lock_timeout: float = LOCK_TIMEOUT, processes: int = 1,
    ) -> PostgresRepository:
        """Connect, apply pending migrations and return the repository; ``processes``: the
        server processes of this machine, which share its ``COMMITTERS``."""
        where = describe_dsn(dsn)
        try:
            pool = await asyncpg.create_pool(
                dsn, min_size=min_size, max_size=max(2, max_size),
                command_timeout=command_timeout, statement_cache_size=512,
                # standard_conforming_strings: held-back writes quote their strings
                # by doubling quotes only (literal), which needs it on
                server_settings={"application_name": "voltledger",
                                 "standard_conforming_strings": "on"},
                reset=_keep_session, connection_class=_Connection,
            )
        except (*_DB_ERRORS, ValueError) as exc:
            raise StorageError(f"cannot connect to {where}: {exc}") from exc
        repo = cls(pool, dsn, parallel=max(1, COMMITTERS // processes),
                   lock_timeout=lock_timeout)
        try:
            await repo._migrate()
        except BaseException:
            await pool.close()
            raise
        return repo

    # -- schema ----------------------------------------------------------------
    async def _migrate(self) -> None:
        try:
            async with self._pool.acquire() as conn:
                await self._migrate_on(conn)
        except _DB_ERRORS as exc:
            raise StorageError(f"migration failed on {describe_dsn(self.dsn)}: {exc}") from exc

    async def _migrate_on(self, conn: asyncpg.Connection) -> None:
        schema = await conn.fetchval("SELECT current_schema()")
        if schema is None:
            raise StorageError(
                f"{describe_dsn(self.dsn)}: no schema to create tables in (check search_path)"
            )
        if await conn.fetchval("SHOW synchronous_commit") == "off":
            log.warning("! synchronous_commit is off: acknowledged data can be lost on a crash")
        key = zlib.crc32(f"voltledger.migrations:{schema}".encode())
        # Session-level, not per transaction: each migration commits on its
        # own (as in SQLite) while the lock is held across all of them.
        # Waited for without a statement that waits: one holds a snapshot, and a CREATE
        # INDEX CONCURRENTLY of the node migrating waits for every older snapshot while
        # this one waits for its lock (a deadlock: one of the two nodes failed to open)
        while not await conn.fetchval("SELECT pg_try_advisory_lock($1)", key):  # noqa: ASYNC110
            await asyncio.sleep(MIGRATION_LOCK_POLL)
        try:
            await migrate("postgres", _PostgresMigrations(conn))
        finally:
            with contextlib.suppress(*_DB_ERRORS):
                await conn.execute("SELECT pg_advisory_unlock($1)", key)

    async def schema_version(self) -> int:
        value = await self._pool.fetchval("SELECT max(version) FROM schema_migrations")
        return int(value or 0)

    # -- units of work (queued and committed by GroupCommit) ---------------------
    async def read(self, fn: Callable[[Tx], Awaitable[T]]) -> T:
        """``fn`` in a read-only REPEATABLE READ transaction: one consistent snapshot.

        Reads queue up like units and run together in rounds, in one transaction per
        batch (:class:`_ReadBatches`); a batch that cannot (a database error) runs each
        read again on its own."""
        if not self.in_rounds:
            return await self._read_alone(fn)
        return await self._reads.unit(fn)

    async def _read_alone(self, fn: Callable[[Tx], Awaitable[T]]) -> T:
        try:
            async with self._pool.acquire() as conn, conn.transaction(
                isolation="repeatable_read", readonly=True
            ):
                tx = _PostgresTx(conn)
                result = await fn(tx)
                await tx._send_held()
                return result
        except _DB_ERRORS as exc:
            raise _storage_error(exc) from exc

    async def _run_reads(self, batch: Batch) -> Outcomes:
        try:
            async with self._pool.acquire() as conn:
                try:
                    outcomes = await run_in_rounds(
                        conn, batch, begin=READ_BEGIN, read_only=True,
                        prepared=_prepared_writes(conn), shapes=self._read_shapes,
                        stats=self.read_stats)
                except RunInSequence as exc:
                    log.info("= batch of %d reads runs read by read: %s", len(batch), exc)
                else:
                    # handed over before the (read-only) transaction ends
                    for fut, ok, value in outcomes:
                        if fut.done():
                            continue
                        if ok:
                            fut.set_result(value)
                        else:
                            fut.set_exception(value)
                    with contextlib.suppress(*_DB_ERRORS):
                        await conn.execute("COMMIT")
                    return outcomes
        except _DB_ERRORS as exc:
            raise _storage_error(exc) from exc
        results = await asyncio.gather(*(self._read_alone(fn) for fn, _ in batch),
                                       return_exceptions=True)
        return [(fut, not isinstance(r, BaseException), r)
                for (_, fut), r in zip(batch, results, strict=True)]

    async def _run_batch(self, batch: Batch) -> Outcomes:
        try:
            return await self._run_batch_on_a_connection(batch)
        except (*_DB_ERRORS, StorageError) as exc:
            # The transaction itself failed (commit refused, connection lost, server
            # shutting down): nothing of the batch is known to be durable.
            log.error("! batch of %d units not committed: %s", len(batch), exc)
            raise StorageError(f"batch not committed: {_storage_error(exc)}") from exc

    async def _run_batch_on_a_connection(self, batch: Batch) -> Outcomes:
        async with self._pool.acquire() as conn:
            if self.in_rounds:
                try:
                    return await run_in_rounds(
                        conn, batch, begin=self._begin_rounds, prepared=_prepared_writes(conn),
                        shapes=self._read_shapes, stats=self.round_stats)
                except RunInSequence as exc:
                    log.info("= batch of %d units runs unit by unit: %s", len(batch), exc)
            return await self._run_in_sequence(conn, batch)

    async def _run_in_sequence(self, conn: asyncpg.Connection, batch: Batch) -> Outcomes:
        """The units one after another, each in its own savepoint."""
        outcomes: Outcomes = []
        tx = _PostgresTx(conn, keep_sessions=True)
        await conn.execute(self._begin)
        try:
            last = len(batch) - 1
            for i, (fn, fut) in enumerate(batch):
                attempt = 1
                while True:
                    tx.forget_sessions()  # what an earlier unit or attempt read
                    try:
                        result = await fn(tx)
                        # Inside the try: a unit that swallowed a database
                        # error left the transaction aborted, which fails
                        # here and is undone like any other failing unit; so
                        # does an error of the writes it held back, sent here
                        # in the same round trip.
                        await conn.execute(";".join([
                            *tx.held(),
                            "RELEASE SAVEPOINT unit; SAVEPOINT unit" if i < last
                            else "RELEASE SAVEPOINT unit",
                        ]))
                    except Exception as exc:  # handed to the caller
                        tx.held()  # a failed unit's writes are dropped with it
                        # Undo this unit only; the savepoint stays for the
                        # next attempt or the next unit. If this fails the
                        # transaction is gone and the batch fails.
                        await conn.execute("ROLLBACK TO SAVEPOINT unit")
                        sqlstate = getattr(exc, "sqlstate", None)
                        # A unique violation needs one retry (to see the row the other
                        # node committed); a deadlock may recur, so it gets a few.
                        limit = 2 if sqlstate == "23505" else MAX_ATTEMPTS
                        if sqlstate in RETRYABLE_SQLSTATES and attempt < limit:
                            log.info("= unit conflicted with another transaction (%s),"
                                     " running it again", sqlstate)
                            self.retries += 1
                            attempt += 1
                            # a little jitter so two nodes do not collide again in step
                            await asyncio.sleep(random.uniform(0, 0.02 * attempt))
                            continue
                        if isinstance(exc, _DB_ERRORS):
                            exc = _storage_error(exc)
                        outcomes.append((fut, False, exc))
                    else:
                        outcomes.append((fut, True, result))
                    break
            status = await conn.execute("COMMIT")
            if status != "COMMIT":
                # PostgreSQL answers COMMIT of an aborted transaction with ROLLBACK
                raise StorageError(f"commit answered {status!r}")
        except BaseException:
            if not conn.is_closed():
                with contextlib.suppress(*_DB_ERRORS):
                    await conn.execute("ROLLBACK")
            raise
        return outcomes

    async def close(self) -> None:
        await self._finish_committers()
        await self._reads._finish_committers()
        await self._apart._finish_committers()
        try:
            await asyncio.wait_for(self._pool.close(), 10)
        except TimeoutError:
            self._pool.terminate()
