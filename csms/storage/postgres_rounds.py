"""A batch's units run together on one PostgreSQL connection, in rounds.

Theory of operation. Run one after another, the units of a batch cost a round trip per
statement each: 200 stations' meter values, one read each, are 200 round trips in
sequence before the commit. Here every unit of the batch starts at once, each with its
own :class:`RoundTx`, which sends nothing: a statement whose result the unit needs is a
request the unit waits on. When every unit is waiting (or done), that is a round, and
the round goes to the server in as few round trips as the statements allow:

1. the writes the asking units held back (:meth:`csms.storage.sql.SqlTx.write`: sample
   rows, session updates, events...) in one simple-protocol script, so a unit's own
   writes precede its next read (read-your-writes); a finished unit's writes wait for the
   script that ends with ``COMMIT``, unless a unit that waited for it (below) asks now;
2. each write whose outcome a unit reads (a row count, a new id), one statement each;
3. every read of the round in one statement: the reads of one SQL text are one
   ``LATERAL`` subquery over ``unnest`` of their parameters (``WITH ORDINALITY`` tells
   whose row is whose; ``row_number()`` keeps each read's own row order), the subqueries
   of different texts joined with ``UNION ALL``, each row as ``jsonb`` (the columns of
   this schema, text and integers, come back exactly; a round of one text gets its
   columns as they are), handed back to its unit.

A batch then costs as many rounds as its deepest unit has reads, not the sum of all its
units' statements: a batch of meter values is one read round and one script of writes
ending in ``COMMIT``. The transaction begins with the first write: the reads before it
run on their own, which under READ COMMITTED (a fresh snapshot per statement, plain
reads take no lock) is what they would see as the transaction's first statements.

Units that touch the same rows stay in sequence. A unit asking for a read another unit
of the batch already made with the same statement and parameters (the same session, the
same station) waits until that unit is done, and then sees its writes, as if the two had
run one after the other. Reads of reference data that stations only read (id tags,
:meth:`~csms.storage.sql.SqlTx.fetchone_shared`) do not wait: several units read the tag
at once, as units of two concurrent transactions would. Units that reach the same row
by different reads run as two concurrent transactions of a node would (a station's own
messages never meet in one batch: one is in flight per station).

Failures. A unit that raises before any of its writes was sent fails alone: its held
writes are dropped. Anything else, a database error in any statement (a unique
violation, a deadlock, the lock timeout), a unit that raises after its writes went out,
units waiting on each other's rows, is :class:`RunInSequence`: the transaction is rolled
back and the adapter runs the batch again unit by unit, each in its own savepoint, where
a failing unit fails alone or runs again exactly as before. Units must be safe to run
twice, which they already are (a station retries a message whose answer it lost).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import asyncpg
import orjson

from csms.storage.group_commit import Batch, Outcomes
from csms.storage.postgres_text import (
    literal,
    prepared_name,
    rowcount,
    sql_pieces,
    to_postgres_placeholders,
)
from csms.storage.settlement_sql import CARD_LINK, CARD_LINK_COLUMNS, card_link_params
from csms.storage.sql import (
    SESSION_COLUMNS,
    SqlTx,
    drawn_id_sql,
    dt_to_db,
    insert_session_sql,
    numbered_by_id,
    numbered_values,
)

__all__ = [
    "PostgresRowLocks", "ReadShape", "RoundStats", "RoundTx", "RunInSequence", "run_in_rounds",
]

log = logging.getLogger("csms.storage.postgres")

# Column types that jsonb carries exactly (text as a string, integers as numbers). A read
# with any other column (numeric sums, floats) runs on its own with its own types.
_JSON_EXACT = frozenset({"text", "varchar", "bpchar", "name", "int2", "int4", "int8",
                         "bool"})
_READS = ("fetchone", "fetchall")
_MAX_SHAPES = 4096
# Seconds the units of a round may take to all ask for a statement (or end).
QUIET_LIMIT = 2.0
_DB_ERRORS = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError)


def _key32(text: str) -> int:
    """A signed 32-bit advisory lock key for ``text``."""
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=4).digest(), "big",
                          signed=True)


DRIVER_LOCKS = _key32("voltledger.driver")  # the first key of a driver's advisory lock


class RunInSequence(Exception):
    """The batch cannot finish in rounds: run it again unit by unit."""


@dataclass(frozen=True, slots=True)
class ReadShape:
    """What PostgreSQL says about a read statement: its parameter types (for the arrays
    they are sent in) and its columns; ``coalesce`` when it can join a round's statement."""

    param_types: tuple[str, ...]
    columns: tuple[str, ...]
    coalesce: bool


@dataclass(slots=True)
class RoundStats:
    """Counters of a repository's batches run in rounds."""

    batches: int = 0
    rounds: int = 0
    round_trips: int = 0
    in_sequence: int = 0


@dataclass(slots=True, eq=False)
class _Request:
    unit: int
    kind: str
    sql: str
    params: tuple[Any, ...]
    future: asyncio.Future[Any]
    key: tuple[str, tuple[Any, ...]] | None = None  # None: a shared read or a write
    waited: bool = False  # it waited for another unit, whose writes it must see


@dataclass(slots=True, eq=False)
class _Unit:
    index: int
    done: bool = False
    ok: bool = False
    value: Any = None
    sent_writes: bool = False
    waiting: bool = False
    held: list[tuple[str, list[str] | None]] = field(default_factory=list)


_STATUS = SESSION_COLUMNS.index("status")
_FLAGS = SESSION_COLUMNS.index("flags")
_CHECKED_UPDATE = "WITH w AS (UPDATE sessions SET "


@functools.cache
def _inserts_a_session(sql: str) -> bool:
    """Whether ``sql`` writes the sessions table only by inserting rows (a new session:
    insert_session_sql, _insert_drawn_session_sql), which leaves every row read as it was."""
    return "INSERT INTO sessions " in sql and _CHANGES_SESSIONS.search(sql) is None


_CHANGES_SESSIONS = re.compile(r"UPDATE\s+sessions\b|DELETE\s+FROM\s+sessions\b|ON\s+CONFLICT",
                               re.I)


@functools.cache
def _checked_update_sql(changed: tuple[int, ...]) -> tuple[str, tuple[int, ...]]:
    """The update of the session columns at the indexes ``changed`` that requires the row
    to hold what was read in its status, its flags and those columns (the indexes it
    compares, in the order of their placeholders, then its updated_at as read), and
    fails with a serialization
    failure when it does not (migration 0205's ``session_changed``, called only then:
    a call for every row cost PostgreSQL a fifth more time per update)."""
    compared = (_STATUS, _FLAGS, *(i for i in changed if i not in (_STATUS, _FLAGS)))
    sets = "".join(f"{SESSION_COLUMNS[i]} = ?, " for i in changed)
    checks = "".join(f" AND {SESSION_COLUMNS[i]} IS NOT DISTINCT FROM ?" for i in compared)
    return (f"{_CHECKED_UPDATE}{sets}updated_at = ? WHERE id = ?{checks} AND updated_at = ?"
            " RETURNING 1) SELECT session_changed() WHERE NOT EXISTS (SELECT FROM w)",
            compared)


@functools.cache
def _insert_drawn_session_sql(numbered: bool, card: bool) -> str:
    """A new session's INSERT under an id drawn first, in the statement: its 1.6
    transactionId (``numbered``), and with ``card`` its card's row of session_cards
    (bind_card), whose parameters come next (card_link_params). That row is checked
    against the session's at the end of the statement, once both are written."""
    draw = "nextval(pg_get_serial_sequence('sessions', 'id'))"
    # a 1.6 session's id, its transactionId, is drawn on past its station's own
    # transactionIds (drawn_id_sql: the station's id is then the first parameter)
    drawn = [drawn_id_sql(draw, draw) if numbered else f"n AS (SELECT {draw} AS id)"]
    if card:
        drawn.append(f"c AS (INSERT INTO session_cards ({CARD_LINK_COLUMNS})"
                     f" SELECT id, {CARD_LINK} FROM n)")
    return (f"WITH {'RECURSIVE ' if numbered else ''}{', '.join(drawn)} "
            + insert_session_sql("(SELECT id FROM n)", numbered))


class PostgresRowLocks(SqlTx):
    """Bookkeeping that never waits for a row lock (PostgreSQL locks rows), on any
    PostgreSQL transaction of this adapter. In rounds its statements (a list parameter)
    make the batch run unit by unit, as every batch did before rounds. And the one lock
    that is waited for: a driver's, for a coverage check and what it covers.

    A session read without a row lock and written back: under READ COMMITTED another
    transaction (a unit of another batch or node: the operator's decision, the settlement
    worker's hold, a stop at the driver's limit, the station's own message) can commit a
    change of the row between a unit's read and its write. The write of a session read in
    the unit therefore names only the columns that changed, and also requires the row to
    still hold what was read in its status, its flags (what the use cases decide on),
    those columns and its updated_at (a MeterValues committed meanwhile changes no column
    a close writes, but brings readings the close did not bill); a row that no longer
    does fails the unit as a serialization failure
    (40001), which runs it again once the batch is rolled back to it, on the row as it is
    now. The check travels with the held update (no round trip of its own)."""

    _check_session_updates = True
    _ROW_LOCK = " FOR UPDATE"

    def _writes(self, sql: str) -> None:
        """Before a statement that may write: the sessions read so far are forgotten when
        it names their table (a write of the unit's own: what was read is stale; the
        session's next update then writes every column, unchecked, as it was read). Not
        for a checked update: it writes the one row whose copy the update replaces, and
        the other sessions the unit read keep theirs (and their check). Nor for a new
        session's insert, which changes no row read: a 2.0.1 start that takes an ended
        transaction's id again marks the ended session after storing the new one, and
        that update, unchecked, wrote back over what another node had decided since."""
        if self._session_rows and "sessions" in sql and not sql.startswith(_CHECKED_UPDATE) \
                and not _inserts_a_session(sql):
            self.forget_sessions()

    async def _checked_session_update(self, changed: tuple[int, ...], values: tuple[Any, ...],
                                      read: tuple[Any, ...], updated: Any, now: str | None,
                                      sid: int) -> None:
        sql, compared = _checked_update_sql(changed)
        await self.write(sql, *(values[i] for i in changed), now, sid,
                         *(read[i] for i in compared), updated)

    async def _insert_session_row(self, values: tuple[Any, ...], now: str | None,
                                  card: str | None) -> int:
        """A new session in one statement, one round trip: its id drawn first, for its
        1.6 transactionId and its card's row (a bind of its own was one round trip more
        per start, one after another, and a round more for its batch)."""
        new = numbered_by_id(values)
        if not new and card is None:
            return await super()._insert_session_row(values, now, card)
        return await self.insert_id(
            _insert_drawn_session_sql(new, card is not None),
            *((values[SESSION_COLUMNS.index("station_id")],) if new else ()),
            *(card_link_params(card) if card is not None else ()),
            *(numbered_values(values) if new else values), now, now)

    # SettlementSql.session_a_tariff_would_reprice: a start at most the tolerance after
    # the session was stored, in whole microseconds
    _STARTED_WITHIN = ("s.started_at::timestamptz"
                       " <= s.created_at::timestamptz + ?::bigint * interval '1 microsecond'")

    def _started_within(self, tolerance: timedelta) -> tuple[str, Any]:
        return self._STARTED_WITHIN, tolerance // timedelta(microseconds=1)

    # the lease's clock: the server's (csms.storage.sql.SqlTx.take_lease); the time of the
    # statement, not of the transaction's start
    _LEASE_LIVE = "expires_at::timestamptz >= clock_timestamp()"

    def _lease_until(self, ttl: timedelta) -> tuple[str, Any]:
        return ("to_char((clock_timestamp() + ?::bigint * interval '1 microsecond')"
                " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"+00:00\"')",
                ttl // timedelta(microseconds=1))

    async def lock_driver(self, driver: str) -> None:
        # a transaction-level advisory lock, in the two-key space (the migrations' lock
        # is a one-key lock): released at COMMIT or ROLLBACK, taken again by the same
        # transaction at no cost; two drivers whose keys collide only wait for each other
        await self.fetchone("SELECT 1 AS locked FROM pg_advisory_xact_lock(?, ?)",
                            DRIVER_LOCKS, _key32(driver.lower()))

    async def touch_stations(self, seen: dict[str, datetime]) -> list[str]:
        if not seen:
            return []
        ids = sorted(seen)  # locked in one order by every node
        rows = await self.fetchall(
            "WITH free AS (SELECT id FROM stations WHERE id = ANY(?::text[]) ORDER BY id"
            " FOR NO KEY UPDATE SKIP LOCKED)"
            " UPDATE stations s SET last_seen_at = v.at"
            " FROM unnest(?::text[], ?::text[]) AS v(id, at), free"
            " WHERE s.id = v.id AND s.id = free.id RETURNING s.id",
            ids, ids, [dt_to_db(seen[i]) for i in ids])
        written = {r["id"] for r in rows}
        missing = [i for i in ids if i not in written]
        if not missing:
            return []
        # locked by another transaction, or no such station any more (not kept)
        rows = await self.fetchall("SELECT id FROM stations WHERE id = ANY(?::text[])",
                                   missing)
        return sorted(r["id"] for r in rows)

    # a station recorded on two nodes at once: the second waits for the first's row
    # and sees its connection (the UPDATE that follows would wait for it anyway)
    _CONNECTION_SQL = f"{SqlTx._CONNECTION_SQL} FOR NO KEY UPDATE"

    async def release_station_connection(self, station_id: str, node: str,
                                         since: datetime | None) -> bool | None:
        row = await self.fetchone(
            "SELECT connected_node, connected_at FROM stations WHERE id = ?"
            " FOR NO KEY UPDATE SKIP LOCKED", station_id)
        if row is None:  # locked (try later), or no such station (nothing to do)
            exists = await self.fetchone("SELECT id FROM stations WHERE id = ?", station_id)
            return None if exists is not None else False
        if row["connected_node"] == node and (
                since is None or row["connected_at"] == dt_to_db(since)):
            await self.execute("UPDATE stations SET connected_node = NULL WHERE id = ?",
                               station_id)
            return True
        return False



class RoundTx(PostgresRowLocks, SqlTx):
    """One unit's view of the batch: writes held, every other statement a request that
    the round it joins answers."""

    def __init__(self, run: _Rounds, unit: _Unit) -> None:
        self._run = run
        self._unit = unit
        self._session_rows = {}  # the unit's own (see SqlTx.update_session)

    async def write(self, sql: str, *params: Any) -> None:
        self._writes(sql)
        values = [literal(v) for v in params]
        if any(v is None for v in values) or len(sql_pieces(sql)) != len(params) + 1:
            await self.execute(sql, *params)
            return
        self._unit.held.append((sql, [v for v in values if v is not None]))

    async def execute(self, sql: str, *params: Any) -> int:
        self._writes(sql)
        result: int = await self._run.request(self._unit, "execute", sql, params)
        return result

    async def execute_many(self, sql: str, rows: list[tuple[Any, ...]]) -> None:
        self._writes(sql)
        if rows:
            await self._run.request(self._unit, "execute_many", sql, tuple(rows))

    async def fetchone(self, sql: str, *params: Any) -> dict[str, Any] | None:
        if self._session_rows and not _plain_read(sql):
            self._writes(sql)
        row: dict[str, Any] | None = await self._run.request(self._unit, "fetchone", sql,
                                                             params, shared=False)
        return row

    async def fetchone_shared(self, sql: str, *params: Any) -> dict[str, Any] | None:
        row: dict[str, Any] | None = await self._run.request(self._unit, "fetchone", sql,
                                                             params, shared=True)
        return row

    async def fetchall(self, sql: str, *params: Any) -> list[dict[str, Any]]:
        if self._session_rows and not _plain_read(sql):
            self._writes(sql)
        rows: list[dict[str, Any]] = await self._run.request(self._unit, "fetchall", sql,
                                                             params, shared=False)
        return rows

    async def insert_id(self, sql: str, *params: Any) -> int:
        if not sql.rstrip().lower().endswith("returning id"):
            sql = sql.rstrip() + " RETURNING id"
        self._writes(sql)
        value: int = await self._run.request(self._unit, "insert_id", sql, params)
        return value


_LOCKING = re.compile(r"\bFOR\s+(UPDATE|SHARE|NO\s+KEY|KEY)\b|\bpg_advisory_xact_lock\b",
                      re.IGNORECASE)


@functools.lru_cache(maxsize=4096)
def _plain_read(sql: str) -> bool:
    """A SELECT that takes no row lock: it may run before the transaction begins (a
    statement that writes or locks, even asked as a read, runs inside it)."""
    return sql.lstrip()[:6].upper() == "SELECT" and not _LOCKING.search(sql)


async def run_in_rounds(
    conn: asyncpg.Connection, batch: Batch, *, begin: str, prepared: set[str],
    shapes: dict[str, ReadShape], stats: RoundStats, read_only: bool = False,
) -> Outcomes:
    """Run ``batch`` in rounds on ``conn`` and commit it; the outcome of each unit.

    ``read_only``: the units are reads (``Repository.read``), all in the one snapshot of
    the transaction ``begin`` opens at once, never waiting on each other; the transaction
    is left open for the caller to end once it has handed the results over.

    Raises :class:`RunInSequence` (nothing of the batch committed, the connection out of
    any transaction) when the batch must run unit by unit instead."""
    return await _Rounds(conn, begin, prepared, shapes, stats, read_only).run(batch)


class _Rounds:
    def __init__(self, conn: asyncpg.Connection, begin: str, prepared: set[str],
                 shapes: dict[str, ReadShape], stats: RoundStats, read_only: bool) -> None:
        self._conn = conn
        self._read_only = read_only
        self._begin = begin
        self._prepared = prepared
        self._shapes = shapes
        self._stats = stats
        self._units: list[_Unit] = []
        self._pending: list[_Request] = []
        self._parked: list[_Request] = []
        self._claims: dict[tuple[str, tuple[Any, ...]], int] = {}
        self._running = 0
        self._quiet = asyncio.Event()
        self._began = False
        self._sequence_reason: str | None = None

    # -- the units' side -------------------------------------------------------
    def request(self, unit: _Unit, kind: str, sql: str, params: tuple[Any, ...],
                shared: bool = True) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if unit.waiting:  # two statements of one unit at once (a gather inside a unit)
            self._in_sequence("a unit sent two statements at once")
            return future
        try:
            hash(params)
        except TypeError:  # a list as a parameter: not a key to wait on or read once by
            self._in_sequence("a statement with a list as a parameter")
            return future
        unit.waiting = True
        key = None if self._read_only or shared or kind not in _READS else (sql, params)
        req = _Request(unit.index, kind, sql, params, future, key)
        owner = self._claims.get(key) if key is not None else None
        if owner is not None and owner != unit.index and not self._units[owner].done:
            self._parked.append(req)  # the same row as another unit: after that unit
        else:
            self._take(req)
        self._idle()
        return future

    def _take(self, req: _Request) -> None:
        if req.key is not None:
            self._claims[req.key] = req.unit
        self._pending.append(req)

    def _idle(self) -> None:
        self._running -= 1
        if self._running == 0:
            self._quiet.set()

    def _in_sequence(self, reason: str) -> None:
        self._sequence_reason = self._sequence_reason or reason
        self._quiet.set()

    async def _drive(self, unit: _Unit, fn: Callable[[Any], Awaitable[Any]]) -> None:
        try:
            unit.value = await fn(RoundTx(self, unit))
            unit.ok = True
        except Exception as exc:  # the unit's own failure, handed to its caller
            unit.value = exc
            if unit.sent_writes:
                self._in_sequence("a unit failed after its writes were sent")
            unit.held.clear()  # a failed unit's writes go with it
        except BaseException as exc:  # cancelled: the batch is abandoned
            unit.value = exc
            self._in_sequence("a unit was cancelled")
        unit.done = True
        self._idle()

    # -- the coordinator -----------------------------------------------------------
    async def run(self, batch: Batch) -> Outcomes:
        loop = asyncio.get_running_loop()
        self._units = [_Unit(i) for i in range(len(batch))]
        self._running = len(batch)
        tasks = [loop.create_task(self._drive(unit, fn))
                 for unit, (fn, _) in zip(self._units, batch, strict=True)]
        try:
            if self._read_only:  # the snapshot is taken by the first read, after this
                self._began = True
                await self._send(self._conn.execute(self._begin))
            while True:
                try:
                    async with asyncio.timeout(QUIET_LIMIT):
                        await self._quiet.wait()
                except TimeoutError:
                    # a unit waits for something other than the database (another unit
                    # of the batch, an event): unit by unit, each runs to its end first
                    raise RunInSequence("a unit waits on something else than its statements"
                                        ) from None
                self._quiet.clear()
                if self._sequence_reason is not None:
                    raise RunInSequence(self._sequence_reason)
                if self._running:  # woken early (a finished unit), others still going
                    continue
                for req in list(self._parked):
                    owner = self._claims.get(req.key) if req.key is not None else None
                    if owner is None or self._units[owner].done:
                        self._parked.remove(req)
                        req.waited = True
                        self._take(req)
                if not self._pending:
                    if self._parked:
                        raise RunInSequence("units of the batch wait on each other's rows")
                    break
                await self._round()
            if not self._read_only:
                await self._commit()
            elif script := await self._held_script():
                # a write in a read: refused by the read-only transaction, as alone
                await self._send(self._conn.execute(";".join(script)))
        except RunInSequence:
            await self._abandon(tasks)
            raise
        except _DB_ERRORS as exc:
            await self._abandon(tasks)
            raise RunInSequence(f"{type(exc).__name__}: {exc}") from exc
        except BaseException:
            await self._abandon(tasks)
            raise
        self._stats.batches += 1
        return [(fut, unit.ok, unit.value)
                for unit, (_, fut) in zip(self._units, batch, strict=True)]

    async def _abandon(self, tasks: list[asyncio.Task[None]]) -> None:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._began and not self._conn.is_closed():
            with contextlib.suppress(*_DB_ERRORS):
                await self._conn.execute("ROLLBACK")
        self._stats.in_sequence += 1

    async def _send(self, coro: Awaitable[Any]) -> Any:
        self._stats.round_trips += 1
        return await coro

    async def _held_script(self, units: list[_Unit] | None = None) -> list[str]:
        """The writes ``units`` (default: all) held, as statements, preparing those new to
        the connection (one round trip, the first time only)."""
        new: dict[str, str] = {}
        out: list[str] = []
        for unit in self._units if units is None else units:
            if unit.held:
                unit.sent_writes = True
            for sql, values in unit.held:
                if values is None:  # a multi-row statement with its values written in
                    out.append(sql)
                    continue
                name = prepared_name(sql)
                if name not in self._prepared:
                    new[name] = sql
                out.append(f"EXECUTE {name}({', '.join(values)})" if values
                           else f"EXECUTE {name}")
            unit.held.clear()
        for name, sql in new.items():
            # one at a time: a script stopped by an error would leave some prepared and
            # some not, and preparing one twice is an error
            await self._send(self._conn.execute(
                f"PREPARE {name} AS {to_postgres_placeholders(sql)}"))
            self._prepared.add(name)
        return out

    async def _ensure_begun(self, script: list[str]) -> list[str]:
        if not self._began:
            self._began = True
            return [self._begin, *script]
        return script

    async def _round(self) -> None:
        self._stats.rounds += 1
        reqs, self._pending = self._pending, []
        # The writes of the units asking now go first (each reads its own writes); a
        # finished unit's wait for the commit, unless a unit that waited for it asks now.
        asking = {req.unit for req in reqs}
        script = await self._held_script([
            unit for unit in self._units
            if unit.index in asking or (unit.done and any(req.waited for req in reqs))])
        writes = [r for r in reqs if r.kind not in _READS]
        if script or writes or any(not _plain_read(r.sql) for r in reqs):
            script = await self._ensure_begun(script)
            if script:
                await self._send(self._conn.execute(";".join(script)))
        for req in reqs:  # its statement may change rows: if it fails later, so must all
            if req.kind not in _READS or not _plain_read(req.sql):
                self._units[req.unit].sent_writes = True
        answers: list[tuple[_Request, Any]] = []
        for req in writes:
            answers.append((req, await self._write(req)))
        reads = [r for r in reqs if r.kind in _READS]
        if reads:
            answers.extend(await self._reads(reads))
        for req, value in answers:
            self._units[req.unit].waiting = False
            self._running += 1
            req.future.set_result(value)

    async def _write(self, req: _Request) -> Any:
        sql = to_postgres_placeholders(req.sql)
        if req.kind == "insert_id":
            return int(await self._send(self._conn.fetchval(sql, *req.params)))
        if req.kind == "execute_many":
            return await self._send(self._conn.executemany(sql, list(req.params)))
        return rowcount(await self._send(self._conn.execute(sql, *req.params)))

    async def _shape(self, sql: str) -> ReadShape:
        shape = self._shapes.get(sql)
        if shape is None:
            stmt = await self._send(self._conn.prepare(to_postgres_placeholders(sql)))
            params = stmt.get_parameters()
            columns = tuple(a.name for a in stmt.get_attributes())
            shape = ReadShape(
                tuple(f'"{t.schema}"."{t.name}"[]' for t in params), columns,
                coalesce=sql.lstrip()[:6].upper() == "SELECT"
                and all(t.kind == "scalar" for t in params)
                and len(set(columns)) == len(columns)
                and all(a.type.schema == "pg_catalog" and a.type.name in _JSON_EXACT
                        for a in stmt.get_attributes()))
            if len(self._shapes) >= _MAX_SHAPES:  # texts made per call (IN lists): bounded
                self._shapes.clear()
            self._shapes[sql] = shape
        return shape

    async def _reads(self, reads: list[_Request]) -> list[tuple[_Request, Any]]:
        """Every read of the round, in one statement when they allow it."""
        # the same statement and parameters asked by several units: read once
        distinct: dict[tuple[str, tuple[Any, ...]], list[_Request]] = {}
        for req in reads:
            distinct.setdefault((req.sql, req.params), []).append(req)
        alone: list[tuple[str, tuple[Any, ...]]] = []
        groups: dict[str, list[tuple[Any, ...]]] = {}
        for sql, params in distinct:
            if len(distinct) > 1 and (await self._shape(sql)).coalesce:
                groups.setdefault(sql, []).append(params)
            else:
                alone.append((sql, params))
        rows: dict[tuple[str, tuple[Any, ...]], list[dict[str, Any]]] = {}
        for sql, params in alone:
            found = await self._send(self._conn.fetch(to_postgres_placeholders(sql), *params))
            rows[(sql, params)] = [dict(r.items()) for r in found]
        if groups:
            rows.update(await self._coalesced(groups))
        answers: list[tuple[_Request, Any]] = []
        for key, reqs in distinct.items():
            for req in reqs:
                got = rows[key]
                if req.kind == "fetchone":
                    answers.append((req, dict(got[0]) if got else None))
                else:
                    answers.append((req, [dict(r) for r in got]))
        return answers

    async def _coalesced(
        self, groups: dict[str, list[tuple[Any, ...]]],
    ) -> dict[tuple[str, tuple[Any, ...]], list[dict[str, Any]]]:
        parts: list[str] = []
        args: list[Any] = []
        order = sorted(groups)  # one text per set of statements: prepared once, cached
        # One text: its own columns, in PostgreSQL's types (as read alone). Several: each
        # row as jsonb, which every text's columns fit in (see _JSON_EXACT).
        native = len(order) == 1
        for g, sql in enumerate(order):
            shape = self._shapes[sql]
            pieces = sql_pieces(sql)
            inner = pieces[0] + "".join(f"v.p{j}{piece}" for j, piece in enumerate(pieces[1:]))
            if len(pieces) > 1:
                arrays = ", ".join(f"${len(args) + j + 1}::{t}"
                                   for j, t in enumerate(shape.param_types))
                names = ", ".join(f"p{j}" for j in range(len(pieces) - 1))
                source = f"unnest({arrays}) WITH ORDINALITY AS v({names}, k)"
                for j in range(len(pieces) - 1):
                    args.append([params[j] for params in groups[sql]])
            else:
                source = "(SELECT 1::bigint AS k) AS v"
            row = "s.*" if native else "to_jsonb(s) AS j"
            parts.append(
                f"SELECT {g} AS g, v.k, r.* FROM {source} CROSS JOIN LATERAL"
                f" (SELECT row_number() OVER () AS n, {row} FROM ({inner}) s) r")
        found = await self._send(self._conn.fetch(" UNION ALL ".join(parts), *args))
        out: dict[tuple[str, tuple[Any, ...]], list[dict[str, Any]]] = {
            (sql, params): [] for sql in order for params in groups[sql]}
        ranked: dict[tuple[str, tuple[Any, ...]], list[tuple[int, dict[str, Any]]]] = {}
        for rec in found:
            sql = order[rec[0]]
            columns = self._shapes[sql].columns
            if native:  # g, k, n, then the columns by position (a column may be named k)
                got = dict(zip(columns, tuple(rec)[3:], strict=True))
            else:
                obj = orjson.loads(rec[3])
                got = {c: obj[c] for c in columns}
            ranked.setdefault((sql, groups[sql][rec[1] - 1]), []).append((rec[2], got))
        for key, numbered in ranked.items():
            numbered.sort(key=lambda item: item[0])
            out[key] = [row for _, row in numbered]
        return out

    async def _commit(self) -> None:
        script = await self._held_script()
        if not script and not self._began:
            return  # only reads: nothing to commit
        script = await self._ensure_begun(script)
        status = await self._send(self._conn.execute(";".join([*script, "COMMIT"])))
        if status != "COMMIT":
            raise RunInSequence(f"commit answered {status!r}")
