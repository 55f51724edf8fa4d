"""The domain operations of :class:`csms.service.ports.Tx` in portable SQL.

Backends subclass :class:`SqlTx` and provide the four primitives (``execute``,
``fetchone``, ``fetchall``, ``insert_id``) with ``?`` placeholders; the SQL
here runs unchanged on SQLite and PostgreSQL.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import operator
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from itertools import compress
from typing import Any

import orjson

from csms.domain.energy import ENERGY_REGISTER
from csms.domain.model import (
    BILLING_HOLD_FLAGS,
    BootPolicy,
    ErrorDetail,
    IdTag,
    MeterSample,
    Session,
    SessionStatus,
    Station,
    numbered_by_central_system,
)
from csms.protocol.frames import dumps, has_long_digit_run
from csms.storage.device_sql import DeviceSql
from csms.storage.maintenance_sql import MaintenanceSql
from csms.storage.settlement_sql import SettlementSql

__all__ = ["SESSION_COLUMNS", "SqlTx", "dt_from_db", "dt_to_db", "held_sessions_query",
           "insert_session_sql", "json_text", "json_value", "numbered_by_id",
           "numbered_values", "one_session_sql"]


def dt_to_db(value: datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is not UTC:
        value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    # isoformat()'s text, written by orjson: a quarter of its instructions (isoformat()
    # builds its text through PyUnicode_FromFormat, ~6,900 instructions a call, ~2% of a
    # message's); tests/unit/csms/storage/test_sql_times.py compares the two
    # (a subclass of datetime, which orjson does not write: isoformat())
    text = orjson.dumps(value)[1:-1].decode() if type(value) is datetime \
        else value.isoformat()
    if not value.microsecond:  # neither writes a zero fraction: texts must sort
        text = text[:19] + ".000000" + text[19:]
    return text


def dt_from_db(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def json_text(value: Any) -> str:
    """JSON for a TEXT column: orjson, or the standard library for what orjson refuses
    (integers beyond 64 bits a station sent in a payload); the protocol layer's
    :func:`csms.protocol.frames.dumps`, which writes what it reads back."""
    return dumps(value)


def json_value(text: str) -> Any:
    """What :func:`json_text` wrote, read back exactly: orjson, or the standard library
    where a run of 19 digits or more may be an integer beyond 64 bits (which orjson would
    read, silently, as a float)."""
    if has_long_digit_run(text):
        return json.loads(text)
    return orjson.loads(text)


def _like_literal(text: str) -> str:
    """``text`` matched literally by LIKE ... ESCAPE '!'."""
    return text.replace("!", "!!").replace("%", "!%").replace("_", "!_")


def _flag_pattern(flag: str) -> str:
    """LIKE ... ESCAPE '!' of a session's flags (a JSON array of strings) holding ``flag``."""
    return "%" + _like_literal(json_text(flag)) + "%"


# a session's flags holding any flag that holds it for an operator (held_sessions)
_HOLD_FLAG_PATTERNS = [_flag_pattern(f) for f in sorted(BILLING_HOLD_FLAGS)]
_HOLD_FLAGS_SQL = " OR ".join("s.flags LIKE ? ESCAPE '!'" for _ in _HOLD_FLAG_PATTERNS)


def held_sessions_query(before: int | None, limit: int,
                        without: str | None = None) -> tuple[str, list[Any]]:
    """The SQL and parameters of ``held_sessions``: the completed sessions the settlement
    worker has not taken (the index on (status, settlement_state, id), newest first, as
    unsettled_sessions) whose flags hold a hold flag and neither ``rejected`` nor
    ``released`` (:func:`csms.service.billing.billing_state` held), nor ``without``."""
    sql = (f"SELECT {_SESSION_READ} FROM sessions s WHERE s.status = ?"
           " AND s.settlement_state IS NULL AND s.id < ?"
           " AND s.flags NOT LIKE ? ESCAPE '!' AND s.flags NOT LIKE ? ESCAPE '!'"
           f" AND ({_HOLD_FLAGS_SQL})")
    params: list[Any] = [SessionStatus.COMPLETED.value,
                         before if before is not None else 2**62,
                         _flag_pattern("rejected"), _flag_pattern("released"),
                         *_HOLD_FLAG_PATTERNS]
    if without is not None:
        sql += " AND s.flags NOT LIKE ? ESCAPE '!'"
        params.append(_flag_pattern(without))
    sql += (" AND NOT EXISTS (SELECT 1 FROM settlement_queue q WHERE q.session_id = s.id)"
            " AND NOT EXISTS (SELECT 1 FROM batch_items b WHERE b.session_id = s.id)"
            " ORDER BY s.id DESC LIMIT ?")
    return sql, [*params, limit]


# How many of a session's readings latest_power_samples reads at most, when the latest
# that holds the measurand's name does not carry the measurand
LATEST_SCAN = 100


def _dec_to_db(value: Decimal | None) -> str | None:
    return None if value is None else str(value)


def _dec_from_db(value: str | None) -> Decimal | None:
    return None if value is None else Decimal(value)


def _station(row: dict[str, Any]) -> Station:
    return Station(
        id=row["id"],
        boot_policy=BootPolicy(row["boot_policy"]),
        security_profile=row["security_profile"],
        password_hash=row["password_hash"],
        ocpp_version=row["ocpp_version"],
        vendor=row["vendor"],
        model=row["model"],
        firmware_version=row["firmware_version"],
        serial_number=row["serial_number"],
        last_boot_at=dt_from_db(row["last_boot_at"]),
        last_seen_at=dt_from_db(row["last_seen_at"]),
        created_at=dt_from_db(row["created_at"]),
        connected_node=row.get("connected_node"),
        connected_at=dt_from_db(row.get("connected_at")),
        max_power_w=_dec_from_db(row.get("max_power_w")),
        reported_max_power_w=_dec_from_db(row.get("reported_max_power_w")),
        host_address=row.get("host_address"),
        chain_station=row.get("chain_station"),
    )


def _tag(row: dict[str, Any]) -> IdTag:
    return IdTag(row["tag"], row["status"], dt_from_db(row["expires_at"]), row["parent"],
                 bool(row.get("master") or 0), dt_from_db(row.get("status_since")))


_STATUS = {s.value: s for s in SessionStatus}  # a dict read, not an enum's call (~0.5 us)
# Session's fields in the order _session_of passes them: by position, not by keyword (27
# keywords took ~0.75 us more a session read, on the write turn). Checked here, at import.
_SESSION_ORDER = (
    "station_id", "ocpp_version", "transaction_id", "started_at", "connector_id", "evse_id",
    "id_tag", "auth_status", "stopped_at", "meter_start_wh", "meter_stop_wh",
    "reported_meter_start_wh", "reported_meter_stop_wh", "energy_wh", "status", "stop_reason",
    "flags", "last_seq_no", "start_key", "limit_minor", "energy_grew_at", "id", "created_at",
    "updated_at", "price_minor", "currency", "settlement_state")
if tuple(f.name for f in dataclasses.fields(Session)) != _SESSION_ORDER:
    raise ImportError("Session's fields are not in the order _session_of passes them")


_from_iso = datetime.fromisoformat  # dt_from_db's


def _session_of(row: tuple[Any, ...]) -> Session:
    """A Session from a row of _SESSION_READ (every read of sessions selects those)."""
    (id_, station_id, connector_id, evse_id, id_tag, auth_status, ocpp_version,
     transaction_id, started_at, stopped_at, reported_meter_start_wh, reported_meter_stop_wh,
     meter_start_wh, meter_stop_wh, energy_wh, status, stop_reason, flags, last_seq_no,
     start_key, limit_minor, energy_grew_at, price_minor, currency, settlement_state,
     created_at, updated_at) = row
    # dt_from_db and _dec_from_db written out: nine calls less a session read
    return Session(  # in the order of _SESSION_ORDER
        station_id, ocpp_version, transaction_id,
        None if started_at is None else _from_iso(started_at),  # type: ignore[arg-type]
        connector_id, evse_id, id_tag, auth_status,
        None if stopped_at is None else _from_iso(stopped_at),
        None if meter_start_wh is None else Decimal(meter_start_wh),
        None if meter_stop_wh is None else Decimal(meter_stop_wh),
        None if reported_meter_start_wh is None else Decimal(reported_meter_start_wh),
        None if reported_meter_stop_wh is None else Decimal(reported_meter_stop_wh),
        energy_wh, _STATUS.get(status) or SessionStatus(status), stop_reason,
        orjson.loads(flags), last_seq_no, start_key, limit_minor,
        None if energy_grew_at is None else _from_iso(energy_grew_at), id_,
        None if created_at is None else _from_iso(created_at),
        None if updated_at is None else _from_iso(updated_at),
        price_minor, currency, settlement_state,
    )


def _samples_of(text: str, measurand: str) -> list[list[Any]]:
    """The items of a reading's ``samples`` text that are of ``measurand``."""
    return [item for item in json_value(text) if item[2] == measurand]


_SAMPLE_FIELDS = len(dataclasses.fields(MeterSample))
# A sample's fields after its time, in their order: one C call for the ten
_AFTER_TIME = operator.attrgetter(*(f.name for f in dataclasses.fields(MeterSample)[1:]))


def _samples(items: list[list[Any]]) -> list[MeterSample]:
    """MeterSamples from items of readings' ``samples`` (meter_readings): [ts, value,
    measurand, unit, multiplier, phase, context, location, format, signed, seq_no], the
    order of MeterSample's fields. The items of one reading share their time: it is read
    once (a stopped session's 44 samples had 44 times read)."""
    times: dict[str | None, datetime | None] = {}
    samples = []
    for item in items:
        if len(item) != _SAMPLE_FIELDS:
            raise ValueError(f"a stored sample has {len(item)} fields, not {_SAMPLE_FIELDS}")
        ts = item[0]
        if ts in times:
            at = times[ts]
        else:
            at = times[ts] = dt_from_db(ts)
        samples.append(MeterSample(at, *item[1:]))  # type: ignore[arg-type]
    return samples


# What update_session writes (with updated_at), in the order of _session_fields.
_CONNECTOR_COLUMNS = ("station_id, evse_id, connector_id, status, error_code, error_info,"
                      " vendor_id, vendor_error_code, updated_at")
_CONNECTOR_UPSERT = (
    "ON CONFLICT (station_id, evse_id, connector_id) DO UPDATE SET status = excluded.status,"
    " error_code = excluded.error_code, error_info = excluded.error_info,"
    " vendor_id = excluded.vendor_id, vendor_error_code = excluded.vendor_error_code,"
    " updated_at = excluded.updated_at")
_SESSION_COLUMNS = (
    "station_id", "connector_id", "evse_id", "id_tag", "auth_status", "ocpp_version",
    "transaction_id", "started_at", "stopped_at", "reported_meter_start_wh",
    "reported_meter_stop_wh", "meter_start_wh", "meter_stop_wh", "energy_wh", "status",
    "stop_reason", "flags", "last_seq_no", "start_key", "limit_minor", "energy_grew_at",
)
# What every read of sessions selects, as a tuple (no dict of 26 columns per row): the id,
# _SESSION_COLUMNS, then what the use cases read besides, and last the time of the row's
# latest write (what a unit read it at, for its checked update: SqlTx.update_session)
_SESSION_READ = ", ".join(("id", *_SESSION_COLUMNS, "price_minor", "currency",
                           "settlement_state", "created_at", "updated_at"))
_SESSION_READ_S = ", ".join(f"s.{c}" for c in _SESSION_READ.split(", "))
# A station's sessions on one EVSE started before a time and active or stopped after
# another: two searches of the index by the stop (sessions_evse), never the station's
# earlier sessions (an OR of the two is read as one search of all of them where the
# database keeps no statistics: 850 us against 16 at 2,000 sessions of the station)
SESSIONS_ON_EVSE = (
    f"SELECT {_SESSION_READ} FROM sessions WHERE station_id = ? AND evse_id = ?"
    " AND stopped_at IS NULL AND started_at < ? AND id <> ?"
    f" UNION ALL SELECT {_SESSION_READ} FROM sessions WHERE station_id = ? AND evse_id = ?"
    " AND stopped_at > ? AND started_at < ? AND id <> ? ORDER BY id")
_SESSION_END = 1 + len(_SESSION_COLUMNS)
_sample_time = operator.itemgetter(0)  # of a reading's sample item
_TRANSACTION_ID = _SESSION_COLUMNS.index("transaction_id")
_STATION_ID = _SESSION_COLUMNS.index("station_id")
_OCPP_VERSION = _SESSION_COLUMNS.index("ocpp_version")


@functools.cache
def one_session_sql(where: str) -> str:
    """The read of one session by ``where`` (a condition over its own columns)."""
    return f"SELECT {_SESSION_READ} FROM sessions WHERE {where}"


@functools.cache
def insert_session_sql(next_id: str | None = None, numbered: bool = False) -> str:
    """The INSERT of a new session, RETURNING its id. Its parameters: the values of
    _SESSION_COLUMNS, then created_at and updated_at. ``next_id``: an expression of the id
    the row gets (the same value wherever it appears in the statement), written as its
    id; ``numbered``: and, as text, as its transactionId (a 1.6 session's, §5.6), whose
    parameter is then left out (:func:`numbered_values`)."""
    columns = ["id"] if next_id else []
    places = [next_id] if next_id else []
    for i, column in enumerate(_SESSION_COLUMNS):
        columns.append(column)
        places.append(f"CAST({next_id} AS TEXT)" if numbered and i == _TRANSACTION_ID
                      else "?")
    return (f"INSERT INTO sessions ({', '.join(columns)}, created_at, updated_at)"
            f" VALUES ({', '.join(places)}, ?, ?) RETURNING id")


def drawn_id_sql(first: str, following: str) -> str:
    """The CTEs (of a ``WITH RECURSIVE``) of a new 1.6 session's id and transactionId,
    ``n`` (insert_session_sql's ``(SELECT id FROM n)``): ``first``, the id it would get,
    or the first one after it (``following``: an expression of the last one drawn, ``id``)
    that is no transactionId of its station, whose id is the statement's first parameter.
    A station that ran 2.0.1 chose its own transactionIds, numbers among them ("2", "3"),
    while 1.6 ids are the central system's (§5.6) and unique for the station: the
    session's id taken as it came would collide with one, and the start be refused for
    ever (the insert rolled back does not consume the id). One index probe in the usual
    case; the ids passed over are never drawn again (the next session's follows the one
    taken). Only the station's own transactionIds count: another station's never stand
    in the way of its starts."""
    return (f"drawn(id) AS (SELECT {first} UNION ALL SELECT {following}"
            " FROM drawn WHERE EXISTS (SELECT 1 FROM sessions WHERE station_id = ?"
            " AND transaction_id = CAST(drawn.id AS TEXT))),"
            " n AS (SELECT max(id) AS id FROM drawn)")


def numbered_by_id(values: tuple[Any, ...]) -> bool:
    """Whether the session of the values of _SESSION_COLUMNS ``values`` is to get its id as
    its transactionId (a 1.6 session: none yet; a 2.0.1 session's "" is the station's)."""
    return numbered_by_central_system(values[_OCPP_VERSION], values[_TRANSACTION_ID])


@functools.cache
def _insert_numbered_sql(next_id: str) -> str:
    """The INSERT of a new 1.6 session whose id the engine's ``next_id`` draws, passing
    over its station's transactionIds (:func:`drawn_id_sql`): the station's id first."""
    return (f"WITH RECURSIVE {drawn_id_sql(next_id, 'id + 1')} "
            + insert_session_sql("(SELECT id FROM n)", True))


def _with_transaction_id(row: tuple[Any, ...], transaction_id: str) -> tuple[Any, ...]:
    """A session's fields or values of _SESSION_COLUMNS with ``transaction_id`` in place
    of the one it had."""
    return (*row[:_TRANSACTION_ID], transaction_id, *row[_TRANSACTION_ID + 1:])


def numbered_values(values: tuple[Any, ...]) -> tuple[Any, ...]:
    """The values of _SESSION_COLUMNS without the transactionId (insert_session_sql)."""
    return values[:_TRANSACTION_ID] + values[_TRANSACTION_ID + 1:]


_UPDATE_SESSION_ALL = (
    "UPDATE sessions SET " + ", ".join(f"{c} = ?" for c in _SESSION_COLUMNS)
    + ", updated_at = ? WHERE id = ?"
)


def _session_fields(s: Session) -> tuple[Any, ...]:
    """The session's own objects for _SESSION_COLUMNS, in their order. The flags as a
    tuple: the list is changed in place; every other field is given a new object when it
    changes, and holds immutable ones."""
    return (s.station_id, s.connector_id, s.evse_id, s.id_tag, s.auth_status,
            s.ocpp_version, s.transaction_id, s.started_at, s.stopped_at,
            s.reported_meter_start_wh, s.reported_meter_stop_wh, s.meter_start_wh,
            s.meter_stop_wh, s.energy_wh, s.status, s.stop_reason, tuple(s.flags),
            s.last_seq_no, s.start_key, s.limit_minor, s.energy_grew_at)


def _same(value: Any) -> Any:
    return value


def _status_to_db(status: SessionStatus) -> str:
    return status.value


def _flags_to_db(flags: tuple[str, ...]) -> str:
    return orjson.dumps(flags).decode()  # a tuple is written as the list's array


# How each of _session_fields is written
_TO_DB: tuple[Callable[[Any], Any], ...] = (
    _same, _same, _same, _same, _same, _same, _same, dt_to_db, dt_to_db, _dec_to_db,
    _dec_to_db, _dec_to_db, _dec_to_db, _same, _status_to_db, _same, _flags_to_db,
    _same, _same, _same, dt_to_db)
_COLUMN_INDEXES = tuple(range(len(_SESSION_COLUMNS)))
_FLAGS = _SESSION_COLUMNS.index("flags")
SESSION_COLUMNS = _SESSION_COLUMNS  # for an adapter's own statements over them


def _to_db(fields: tuple[Any, ...]) -> tuple[Any, ...]:
    """What _session_fields are written as: the values of _SESSION_COLUMNS."""
    return tuple(to_db(value) for to_db, value in zip(_TO_DB, fields, strict=True))


@functools.cache
def _update_session_sql(changed: tuple[int, ...]) -> str:
    """The UPDATE of the columns at the indexes ``changed`` of _SESSION_COLUMNS."""
    return ("UPDATE sessions SET "
            + "".join(f"{_SESSION_COLUMNS[i]} = ?, " for i in changed)
            + "updated_at = ? WHERE id = ?")


class SqlTx(SettlementSql, MaintenanceSql, DeviceSql, ABC):
    """Domain operations over four SQL primitives (``?`` placeholders)."""

    # Sessions read in the running unit of work: id -> their stored values of
    # _SESSION_COLUMNS, so that update_session writes only what changed. None: not kept
    # (an engine opts in; it must forget them at each unit's start and whenever another
    # statement writes the sessions table, see forget_sessions).
    # Beside each row, the objects of _session_fields that hold its values (a field that
    # still holds its object has not changed), and its updated_at as read or written.
    _session_rows: dict[int, tuple[tuple[Any, ...], tuple[Any, ...], Any]] | None = None
    # Whether the update of a session read in the unit goes through
    # _checked_session_update: an engine whose transactions can commit between a unit's
    # read of a session and its write (PostgreSQL) opts in.
    _check_session_updates = False
    # Appended to a SELECT whose row the unit writes back from what it read: a lock on it
    # till the transaction ends where another transaction may commit in between
    # (PostgreSQL: " FOR UPDATE"); SQLite's writers take turns on the file.
    _ROW_LOCK = ""
    # An expression of the id the next session gets, the same value wherever it appears in
    # one statement: a 1.6 session's transactionId is written with its row
    # (_insert_session_row; an engine that draws it otherwise overrides that instead).
    _NEXT_SESSION_ID: str

    def forget_sessions(self) -> None:
        """The rows read so far may not be what the table holds any more."""
        if self._session_rows:
            self._session_rows.clear()

    def _read_session(self, row: tuple[Any, ...]) -> Session:
        """A row of _SESSION_READ read in a unit: its _SESSION_COLUMNS kept for
        update_session."""
        session = _session_of(row)
        if self._session_rows is not None:
            self._session_rows[row[0]] = (tuple(row[1:_SESSION_END]),
                                          _session_fields(session), row[-1])
        return session

    async def _one_session(self, where: str, *params: Any) -> Session | None:
        rows = await self.fetchrows(one_session_sql(where), *params)
        return self._read_session(rows[0]) if rows else None

    @abstractmethod
    async def execute(self, sql: str, *params: Any) -> int:
        """Run a statement; return the number of rows changed."""

    @abstractmethod
    async def fetchone(self, sql: str, *params: Any) -> dict[str, Any] | None: ...

    @abstractmethod
    async def fetchall(self, sql: str, *params: Any) -> list[dict[str, Any]]: ...

    async def fetchrows(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        """:meth:`fetchall` as tuples of the selected columns in their order, for reads
        of many rows (an adapter may hand its rows over without a dict each)."""
        return [tuple(r.values()) for r in await self.fetchall(sql, *params)]

    @abstractmethod
    async def insert_id(self, sql: str, *params: Any) -> int:
        """Run an INSERT ending in ``RETURNING id``; return the id."""

    async def execute_many(self, sql: str, rows: list[tuple[Any, ...]]) -> None:
        """One statement for several rows (an adapter may send them in one round trip)."""
        for row in rows:
            await self.execute(sql, *row)

    async def write(self, sql: str, *params: Any) -> None:
        """A write whose outcome the unit does not read: an adapter may hold it back and
        send it with the unit's next statement (at the latest with the end of the unit,
        before its savepoint is released), so its error, if any, fails the unit there."""
        await self.execute(sql, *params)

    async def fetchone_shared(self, sql: str, *params: Any) -> dict[str, Any] | None:
        """:meth:`fetchone` of reference data that stations only read (id tags, central
        options): units an adapter runs together may read it at once, without waiting
        for each other (they do wait for each other on any other read of the same row,
        see :mod:`csms.storage.postgres_rounds`)."""
        return await self.fetchone(sql, *params)

    async def free_space(self) -> int | None:
        """Bytes the database can still grow by; None when the adapter cannot tell."""
        return None

    # -- stations ------------------------------------------------------------
    async def get_station(self, station_id: str) -> Station | None:
        row = await self.fetchone("SELECT * FROM stations WHERE id = ?", station_id)
        return None if row is None else _station(row)

    async def insert_station(self, station: Station) -> None:
        await self.execute(
            "INSERT INTO stations (id, boot_policy, security_profile, password_hash, ocpp_version,"
            " vendor, model, firmware_version, serial_number, last_boot_at, last_seen_at,"
            " created_at, max_power_w, reported_max_power_w, host_address, chain_station)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            station.id, station.boot_policy.value, station.security_profile,
            station.password_hash, station.ocpp_version, station.vendor, station.model,
            station.firmware_version, station.serial_number, dt_to_db(station.last_boot_at),
            dt_to_db(station.last_seen_at),
            dt_to_db(station.created_at or datetime.now(UTC)),
            _dec_to_db(station.max_power_w), _dec_to_db(station.reported_max_power_w),
            station.host_address, station.chain_station,
        )

    async def update_station(self, station: Station) -> None:
        await self.execute(
            "UPDATE stations SET boot_policy = ?, security_profile = ?, password_hash = ?,"
            " ocpp_version = ?, vendor = ?, model = ?, firmware_version = ?, serial_number = ?,"
            " last_boot_at = ?, last_seen_at = ?, max_power_w = ?, reported_max_power_w = ?,"
            " host_address = ?, chain_station = ? WHERE id = ?",
            station.boot_policy.value, station.security_profile, station.password_hash,
            station.ocpp_version, station.vendor, station.model, station.firmware_version,
            station.serial_number, dt_to_db(station.last_boot_at), dt_to_db(station.last_seen_at),
            _dec_to_db(station.max_power_w), _dec_to_db(station.reported_max_power_w),
            station.host_address, station.chain_station, station.id,
        )

    async def list_stations(self) -> list[Station]:
        return [_station(r) for r in await self.fetchall("SELECT * FROM stations ORDER BY id")]

    async def touch_station(self, station_id: str, at: datetime) -> None:
        await self.execute(
            "UPDATE stations SET last_seen_at = ? WHERE id = ?", dt_to_db(at), station_id
        )

    # the station's connection as a node that records a new one reads it (PostgreSQL
    # locks the row: PostgresRowLocks; SQLite has one writer, the unit's own)
    _CONNECTION_SQL = "SELECT connected_node, connected_at FROM stations WHERE id = ?"

    async def set_station_connection(self, station_id: str, node: str,
                                     at: datetime) -> tuple[str, datetime | None] | None:
        row = await self.fetchone(self._CONNECTION_SQL, station_id)
        await self.write(
            "UPDATE stations SET connected_node = ?, connected_at = ?, last_seen_at = ?"
            " WHERE id = ?",
            node, dt_to_db(at), dt_to_db(at), station_id,
        )
        if row is None or row["connected_node"] is None:
            return None
        return str(row["connected_node"]), dt_from_db(row["connected_at"])

    async def touch_stations(self, seen: dict[str, datetime]) -> list[str]:
        # SQLite locks the whole file, never a row: nothing is left for later
        await self.execute_many(
            "UPDATE stations SET last_seen_at = ? WHERE id = ?",
            [(dt_to_db(at), station_id) for station_id, at in sorted(seen.items())])
        return []

    async def release_station_connection(self, station_id: str, node: str,
                                         since: datetime | None) -> bool | None:
        # only the node that holds the socket clears it, and only the connection it made
        sql = "UPDATE stations SET connected_node = NULL WHERE id = ? AND connected_node = ?"
        if since is None:
            return await self.execute(sql, station_id, node) > 0
        return await self.execute(f"{sql} AND connected_at = ?", station_id, node,
                                  dt_to_db(since)) > 0

    async def clear_node_connections(self, node: str) -> int:
        return await self.execute(
            "UPDATE stations SET connected_node = NULL WHERE connected_node = ?", node
        )

    async def known_clients(self, since: datetime,
                            limit: int) -> list[tuple[str, str, datetime]]:
        rows = await self.fetchrows(
            "SELECT client, station_id, seen_at FROM known_clients WHERE seen_at >= ?"
            " ORDER BY seen_at DESC, client LIMIT ?", dt_to_db(since), limit)
        return [(client, station_id, datetime.fromisoformat(seen))
                for client, station_id, seen in rows]

    async def save_known_clients(self, seen: list[tuple[str, str, datetime]],
                                 forgotten: list[str]) -> None:
        if forgotten:
            await self.execute_many("DELETE FROM known_clients WHERE client = ?",
                                    [(client,) for client in sorted(forgotten)])
        if seen:
            # a station deleted meanwhile has no row to name: its clients are not stored
            await self.execute_many(
                "INSERT INTO known_clients (client, station_id, seen_at)"
                " SELECT ?, id, ? FROM stations WHERE id = ?"
                " ON CONFLICT (client) DO UPDATE SET station_id = excluded.station_id,"
                " seen_at = excluded.seen_at",
                [(client, dt_to_db(at), station_id)
                 for client, station_id, at in sorted(seen)])

    async def prune_known_clients(self, before: datetime, keep: int) -> int:
        return await self.execute(
            "DELETE FROM known_clients WHERE seen_at < ? OR client NOT IN"
            " (SELECT client FROM known_clients ORDER BY seen_at DESC, client LIMIT ?)",
            dt_to_db(before), keep)

    async def add_audit(
        self, actor: str, action: str, target: str | None, request: dict[str, Any],
        result: dict[str, Any], ok: bool, at: datetime, claimed_actor: str | None = None,
    ) -> None:
        await self.execute(
            "INSERT INTO audit_log (at, actor, action, target, request, result, ok,"
            " claimed_actor) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            dt_to_db(at), actor, action, target, json_text(request), json_text(result), int(ok),
            claimed_actor,
        )

    async def list_audit(self, limit: int = 100) -> list[dict[str, Any]]:
        rows = await self.fetchall("SELECT * FROM audit_log ORDER BY id DESC LIMIT ?", limit)
        for r in rows:
            r["request"] = json_value(r["request"])
            r["result"] = json_value(r["result"])
            r["ok"] = bool(r["ok"])
        return rows

    async def next_local_list_version(self, station_id: str) -> int:
        await self.execute(
            "INSERT INTO local_list_versions (station_id, version) VALUES (?, 1)"
            " ON CONFLICT (station_id) DO UPDATE SET version = local_list_versions.version + 1",
            station_id,
        )
        row = await self.fetchone(
            "SELECT version FROM local_list_versions WHERE station_id = ?", station_id
        )
        assert row is not None
        return int(row["version"])

    async def count_sessions(self) -> dict[str, int]:
        rows = await self.fetchall("SELECT status, count(*) AS n FROM sessions GROUP BY status")
        return {r["status"]: int(r["n"]) for r in rows}

    async def settlement_backlog(self) -> int:
        row = await self.fetchone("SELECT count(*) AS n FROM settlement_queue")
        return int(row["n"]) if row else 0

    async def set_connector_status(
        self, station_id: str, evse_id: int, connector_id: int, status: str,
        error_code: str | None, at: datetime, *, error: ErrorDetail | None = None,
        limit: int | None = None,
    ) -> bool:
        detail = error or ErrorDetail()
        values = (station_id, evse_id, connector_id, status, error_code, detail.info,
                  detail.vendor_id, detail.vendor_error_code, dt_to_db(at))
        if limit is None:
            await self.write(
                f"INSERT INTO connectors ({_CONNECTOR_COLUMNS}) VALUES"
                f" (?, ?, ?, ?, ?, ?, ?, ?, ?) {_CONNECTOR_UPSERT}", *values)
            return True
        # one statement: the row is written when it exists, or when the station has
        # fewer than ``limit`` (the casts type the parameters of a SELECT for PostgreSQL)
        return await self.execute(
            f"INSERT INTO connectors ({_CONNECTOR_COLUMNS}) SELECT ?, CAST(? AS BIGINT),"
            " CAST(? AS BIGINT), ?, ?, ?, ?, ?, ? WHERE EXISTS (SELECT 1 FROM connectors"
            " WHERE station_id = ? AND evse_id = ? AND connector_id = ?) OR"
            " (SELECT count(*) FROM connectors WHERE station_id = ?) < ?"
            f" {_CONNECTOR_UPSERT}",
            *values, station_id, evse_id, connector_id, station_id, limit) > 0

    async def list_connectors(self, station_id: str | None = None) -> list[dict[str, Any]]:
        if station_id is None:
            return await self.fetchall(
                "SELECT * FROM connectors ORDER BY station_id, evse_id, connector_id"
            )
        return await self.fetchall(
            "SELECT * FROM connectors WHERE station_id = ? ORDER BY evse_id, connector_id",
            station_id,
        )

    # -- id tags -------------------------------------------------------------
    async def get_tag(self, tag: str) -> IdTag | None:
        row = await self.fetchone_shared("SELECT * FROM id_tags WHERE tag = ?", tag)
        if row is None:
            return None
        return _tag(row)

    async def put_tag(self, tag: IdTag) -> None:
        """Register ``tag`` or change its entry (its ``status_since`` is the storage's to
        keep): a new status keeps the one it replaces, with the times it held, for
        :meth:`tag_status_at`."""
        now = dt_to_db(datetime.now(UTC))
        # the row locked till the end (PostgreSQL): two operators changing one tag at once
        # keep the status it replaces once, not twice (SQLite's writers take turns)
        old = await self.fetchone("SELECT status, status_since FROM id_tags WHERE tag = ?"
                                  + self._ROW_LOCK, tag.tag)
        since = None if old is None else old["status_since"]
        if old is not None and old["status"] != tag.status:
            await self.execute(
                "INSERT INTO id_tag_statuses (tag, status, since, until) VALUES (?, ?, ?, ?)",
                tag.tag, old["status"], since, now)
            since = now
        await self.execute(
            "INSERT INTO id_tags (tag, status, expires_at, parent, master, created_at,"
            " status_since) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (tag) DO UPDATE SET"
            " status = excluded.status, expires_at = excluded.expires_at,"
            " parent = excluded.parent, master = excluded.master,"
            " status_since = excluded.status_since",
            tag.tag, tag.status, dt_to_db(tag.expires_at), tag.parent, int(tag.master),
            now, since,
        )

    async def tag_status_at(self, tag: str, at: datetime) -> str | None:
        """The status ``tag`` had at ``at``, from the statuses its entry has replaced; None
        where none of them held then (its status now, or no entry)."""
        when = dt_to_db(at)
        row = await self.fetchone(
            "SELECT status FROM id_tag_statuses WHERE tag = ? AND until > ?"
            " AND (since IS NULL OR since <= ?) ORDER BY until LIMIT 1", tag, when, when)
        return None if row is None else str(row["status"])

    async def list_tags(self, used_at: str | None = None) -> list[IdTag]:
        if used_at is not None:
            rows = await self.fetchall(
                "SELECT * FROM id_tags WHERE tag IN"
                " (SELECT id_tag FROM sessions WHERE station_id = ?) ORDER BY tag", used_at)
            return [_tag(r) for r in rows]
        rows = await self.fetchall("SELECT * FROM id_tags ORDER BY tag")
        return [_tag(r) for r in rows]

    async def get_station_option(self, station_id: str, name: str) -> str | None:
        row = await self.fetchone(
            "SELECT value FROM station_options WHERE station_id = ? AND name = ?",
            station_id, name)
        return None if row is None else str(row["value"])

    async def stations_with_option(self, name: str, value: str) -> set[str]:
        rows = await self.fetchall(
            "SELECT station_id FROM station_options WHERE name = ? AND value = ?", name, value)
        return {str(r["station_id"]) for r in rows}

    async def set_station_option(self, station_id: str, name: str, value: str | None) -> None:
        if value is None:
            await self.execute(
                "DELETE FROM station_options WHERE station_id = ? AND name = ?",
                station_id, name)
            return
        await self.execute(
            "INSERT INTO station_options (station_id, name, value) VALUES (?, ?, ?)"
            " ON CONFLICT (station_id, name) DO UPDATE SET value = excluded.value",
            station_id, name, value)

    async def get_central_option(self, name: str) -> str | None:
        # Reference data only the operator writes (the master pass group): shared, or
        # every 2.0.1 Started event of a batch would wait for the one before it.
        row = await self.fetchone_shared(
            "SELECT value FROM central_options WHERE name = ?", name)
        return None if row is None else str(row["value"])

    async def set_central_option(self, name: str, value: str | None) -> None:
        if value is None:
            await self.execute("DELETE FROM central_options WHERE name = ?", name)
            return
        await self.execute(
            "INSERT INTO central_options (name, value) VALUES (?, ?)"
            " ON CONFLICT (name) DO UPDATE SET value = excluded.value", name, value)

    async def claim_central_option(self, name: str, value: str) -> str:
        await self.execute(
            "INSERT INTO central_options (name, value) VALUES (?, ?)"
            " ON CONFLICT (name) DO NOTHING", name, value)
        row = await self.fetchone("SELECT value FROM central_options WHERE name = ?", name)
        assert row is not None
        return str(row["value"])

    async def claim_final_cost(self, session_id: int, station_id: str, cost: str,
                               currency: str, at: datetime) -> bool:
        return await self.execute(
            "INSERT INTO final_costs (session_id, station_id, cost, currency, claimed_at)"
            " VALUES (?, ?, ?, ?, ?) ON CONFLICT (session_id) DO NOTHING",
            session_id, station_id, cost, currency, dt_to_db(at)) == 1

    async def set_final_cost_answer(self, session_id: int, answer: str) -> None:
        await self.execute("UPDATE final_costs SET answer = ? WHERE session_id = ?",
                           answer, session_id)

    async def get_final_cost(self, session_id: int) -> dict[str, Any] | None:
        return await self.fetchone("SELECT * FROM final_costs WHERE session_id = ?",
                                   session_id)

    # -- sessions ------------------------------------------------------------
    async def get_session(self, session_id: int) -> Session | None:
        return await self._one_session("id = ?", session_id)

    async def find_session(self, station_id: str, transaction_id: str) -> Session | None:
        return await self._one_session("station_id = ? AND transaction_id = ?",
                                       station_id, transaction_id)

    async def latest_reuse(self, station_id: str, transaction_id: str) -> int | None:
        row = await self.fetchone(
            "SELECT session_id FROM reused_transactions WHERE station_id = ?"
            " AND transaction_id = ?", station_id, transaction_id)
        return None if row is None else int(row["session_id"])

    async def set_latest_reuse(self, station_id: str, transaction_id: str,
                               session_id: int) -> None:
        await self.write(
            "INSERT INTO reused_transactions (station_id, transaction_id, session_id)"
            " VALUES (?, ?, ?) ON CONFLICT (station_id, transaction_id)"
            " DO UPDATE SET session_id = excluded.session_id",
            station_id, transaction_id, session_id)

    async def stop_key(self, session_id: int) -> str | None:
        row = await self.fetchone("SELECT stop_key FROM session_stops WHERE session_id = ?",
                                  session_id)
        return None if row is None else str(row["stop_key"])

    async def set_stop_key(self, session_id: int, key: str) -> None:
        await self.write(
            "INSERT INTO session_stops (session_id, stop_key) VALUES (?, ?)"
            " ON CONFLICT (session_id) DO UPDATE SET stop_key = excluded.stop_key",
            session_id, key)

    async def find_session_by_start_key(self, station_id: str, start_key: str) -> Session | None:
        return await self._one_session("station_id = ? AND start_key = ?",
                                       station_id, start_key)

    async def stations_with_transaction(self, transaction_id: str) -> list[str]:
        rows = await self.fetchall(
            "SELECT station_id FROM sessions WHERE transaction_id = ?", transaction_id
        )
        return [r["station_id"] for r in rows]

    async def sessions_on_evse(self, station_id: str, evse_id: int, before: datetime,
                               after: datetime, other_than: int = 0) -> list[Session]:
        before_db, after_db = dt_to_db(before), dt_to_db(after)
        rows = await self.fetchrows(SESSIONS_ON_EVSE, station_id, evse_id, before_db,
                                    other_than, station_id, evse_id, after_db, before_db,
                                    other_than)
        return [self._read_session(r) for r in rows]

    async def insert_session(self, session: Session, card: str | None = None) -> int:
        """Store a new session; its id (a 1.6 session's transactionId too). ``card``: the
        tag it starts on, which charges it to the card's link now (:meth:`bind_card`), in
        the insert's statement where the engine allows. Its ``created_at``: now."""
        at = datetime.now(UTC)
        now = dt_to_db(at)
        fields = _session_fields(session)
        values = _to_db(fields)
        sid = await self._insert_session_row(values, now, card)
        session.id, session.created_at, session.updated_at = sid, at, at
        if numbered_by_central_system(session.ocpp_version, session.transaction_id):
            # 1.6 §5.6: the central system assigns an integer transactionId; the
            # session's own id is unique and never reused (_insert_session_row)
            session.transaction_id = str(sid)
            fields = _with_transaction_id(fields, session.transaction_id)
            values = _with_transaction_id(values, session.transaction_id)
        if self._session_rows is not None:
            # what the new row holds, as for a row read: a start updates the session in
            # the same unit (a 2.0.1 one always), and that update then names only what
            # changed (it rewrote every index of the table)
            self._session_rows[sid] = (values, fields, now)
        return sid

    async def _insert_session_row(self, values: tuple[Any, ...], now: str | None,
                                  card: str | None) -> int:
        """Insert the session whose _SESSION_COLUMNS hold ``values``; its id. A session
        without a transactionId (1.6) gets its id as one in the same statement (the
        engine's _NEXT_SESSION_ID, or the first after it that is no transactionId of the
        station, drawn_id_sql: an update after the insert was ~11 us of a start on
        SQLite, rewriting the row and the transactionId's index entry just written). With
        ``card``, the session is bound to it (:meth:`bind_card`) right after, in a
        statement of its own: SQLite cannot write two tables in one (no INSERT inside a
        WITH); an engine that can overrides this."""
        if numbered_by_id(values):
            sid = await self.insert_id(_insert_numbered_sql(self._NEXT_SESSION_ID),
                                       values[_STATION_ID], *numbered_values(values),
                                       now, now)
        else:
            sid = await self.insert_id(insert_session_sql(), *values, now, now)
        if card is not None:
            await self.bind_card(sid, card)
        return sid

    async def update_session(self, session: Session) -> None:
        at = datetime.now(UTC)
        now = dt_to_db(at)
        sid = session.id
        stored = self._session_rows
        kept = stored.get(sid) if stored is not None and sid is not None else None
        fields = _session_fields(session)
        if kept is None:
            values = _to_db(fields)
            await self.write(_UPDATE_SESSION_ALL, *values, now, sid)
        else:
            # Only the columns whose value changed since the session was read in this
            # unit: SQLite rewrites the entry of every index over a column named in SET,
            # whatever its value, and the sessions table has eight (a MeterValues
            # changes the energy and the time of update only). A field that still holds
            # the object that held the row's value has not changed, and is not written
            # again (a MeterValues wrote all 19 to compare them); one that holds another
            # object is written, unless it writes the same type and value as stored.
            old, before, updated = kept
            row = list(old)
            changed = []
            for i in compress(_COLUMN_INDEXES, map(operator.is_not, before, fields)):
                if i == _FLAGS and before[i] == fields[i]:
                    continue
                value = _TO_DB[i](fields[i])
                if type(value) is not type(old[i]) or value != old[i]:
                    row[i] = value
                    changed.append(i)
            values = tuple(row)
            if self._check_session_updates:
                assert sid is not None
                await self._checked_session_update(tuple(changed), values, old, updated,
                                                   now, sid)
            else:
                await self.write(_update_session_sql(tuple(changed)),
                                 *(values[i] for i in changed), now, sid)
        if stored is not None and sid is not None:
            stored[sid] = (values, fields, now)  # what the row holds now
        session.updated_at = at

    async def _checked_session_update(self, changed: tuple[int, ...], values: tuple[Any, ...],
                                      read: tuple[Any, ...], updated: Any, now: str | None,
                                      sid: int) -> None:
        """Write ``values`` at the indexes ``changed`` of _SESSION_COLUMNS into session
        ``sid`` only if the row still holds ``read`` (what the unit read of it, or wrote
        last) in its status, its flags and those columns, and was not written since
        (its updated_at still ``updated``: every update of a session sets it, a station's
        readings come with one, and a unit that completes a session bills the readings
        it read); otherwise fail the unit, at the latest when it ends, with an error its
        engine runs the unit again for. For an engine that sets
        ``_check_session_updates``."""
        raise NotImplementedError

    async def list_sessions(
        self, station_id: str | None = None, active: bool | None = None, limit: int = 1000
    ) -> list[Session]:
        where: list[str] = []
        params: list[Any] = []
        if station_id is not None:
            where.append("station_id = ?")
            params.append(station_id)
        if active is not None:
            where.append("status = ?")
            params.append(SessionStatus.ACTIVE.value if active else SessionStatus.COMPLETED.value)
        sql = f"SELECT {_SESSION_READ} FROM sessions"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY id DESC LIMIT ?"
        params.append(limit)
        return [_session_of(r) for r in await self.fetchrows(sql, *params)]

    async def sessions_in_progress_beyond(self, station_id: str, keep: int,
                                          limit: int = 1000) -> list[int]:
        # the index sessions_status (status, station_id) holds the ids in order: no row
        # is read, and a station within the bound costs one probe
        rows = await self.fetchrows(
            "SELECT id FROM sessions WHERE status = 'active' AND station_id = ?"
            " ORDER BY id DESC LIMIT ? OFFSET ?", station_id, limit, keep)
        return [int(r[0]) for r in rows]

    async def limited_sessions(self, node: str) -> list[tuple[Session, int | None]]:
        # the status and the limit as the partial index sessions_limited names them
        rows = await self.fetchrows(
            f"SELECT {_SESSION_READ_S}, a.expiry FROM sessions s"
            " JOIN stations st ON st.id = s.station_id"
            " LEFT JOIN session_authorizations a ON a.session_id = s.id"
            " WHERE s.status = 'active' AND s.limit_minor IS NOT NULL"
            " AND st.connected_node = ? ORDER BY s.id", node)
        return [(_session_of(r[:-1]), None if r[-1] is None else int(r[-1])) for r in rows]

    async def add_samples(
        self, station_id: str, samples: list[MeterSample], *, session_id: int | None,
        evse_id: int | None, connector_id: int | None, transaction_id: str | None,
    ) -> None:
        """One reading: one row whose ``samples`` are the sampled values in their order
        (see migration 0090)."""
        items = []
        at: datetime | None = None
        ts: str | None = None
        for s in samples:
            if s.timestamp is not at:  # the samples of one meterValue share their time
                at, ts = s.timestamp, dt_to_db(s.timestamp)
            items.append((ts, *_AFTER_TIME(s)))
        try:  # json_text's orjson, called here: two calls less a reading
            text = orjson.dumps(items).decode()
        except TypeError:  # what orjson refuses (an integer beyond 64 bits)
            text = json_text(items)
        await self.write(
            "INSERT INTO meter_readings (session_id, station_id, evse_id, connector_id,"
            " transaction_id, samples) VALUES (?, ?, ?, ?, ?, ?)",
            session_id, station_id, evse_id, connector_id, transaction_id, text)

    async def latest_reading_at(self, session_id: int) -> datetime | None:
        rows = await self.fetchrows(
            "SELECT samples FROM meter_readings WHERE session_id = ? ORDER BY id DESC LIMIT 1",
            session_id)
        times = [item[0] for item in json_value(rows[0][0])] if rows else []
        return max((at for at in map(dt_from_db, times) if at is not None), default=None)

    async def session_samples(self, session_id: int) -> list[MeterSample]:
        """In the order of their time, and of their arrival for the same time."""
        rows = await self.fetchrows(
            "SELECT samples FROM meter_readings WHERE session_id = ? ORDER BY id", session_id)
        items = [item for (text,) in rows for item in json_value(text)]
        items.sort(key=_sample_time)  # stable: arrival order among equal times
        return _samples(items)

    async def energy_samples(self, session_id: int) -> list[MeterSample]:
        # the items filtered before they are made samples: a stop's unit read and made all
        # of a session's (44 for ten readings of four values), where a quarter count
        rows = await self.fetchrows(
            "SELECT samples FROM meter_readings WHERE session_id = ? ORDER BY id", session_id)
        items = [item for (text,) in rows for item in json_value(text)
                 if item[2] == ENERGY_REGISTER or item[9] is not None]
        items.sort(key=_sample_time)
        return _samples(items)

    # -- signed meter data (OCMF) --------------------------------------------
    async def get_meter_key(self, station_id: str) -> tuple[str | None, str | None]:
        row = await self.fetchone(
            "SELECT meter_public_key, meter_key_source FROM stations WHERE id = ?", station_id)
        if row is None:
            return None, None
        return row["meter_public_key"], row["meter_key_source"]

    async def set_meter_key(self, station_id: str, key: str | None, source: str | None) -> None:
        await self.execute(
            "UPDATE stations SET meter_public_key = ?, meter_key_source = ? WHERE id = ?",
            key, source, station_id)

    async def get_evse_meter_keys(self, station_id: str) -> dict[int, str]:
        rows = await self.fetchall(
            "SELECT evse_id, public_key FROM evse_meter_keys WHERE station_id = ?"
            " ORDER BY evse_id", station_id)
        return {int(r["evse_id"]): r["public_key"] for r in rows}

    async def set_evse_meter_key(self, station_id: str, evse_id: int, key: str | None) -> None:
        if key is None:
            await self.execute(
                "DELETE FROM evse_meter_keys WHERE station_id = ? AND evse_id = ?",
                station_id, evse_id)
            return
        await self.execute(
            "INSERT INTO evse_meter_keys (station_id, evse_id, public_key) VALUES (?, ?, ?)"
            " ON CONFLICT (station_id, evse_id) DO UPDATE SET public_key = excluded.public_key",
            station_id, evse_id, key)

    async def add_signed_readings(
        self, session_id: int, station_id: str, rows: list[dict[str, Any]]
    ) -> None:
        await self.execute("DELETE FROM signed_readings WHERE session_id = ?", session_id)
        for r in rows:
            await self.execute(
                "INSERT INTO signed_readings (session_id, station_id, container_no, tx_code,"
                " reading_time, reading_wh, resolution_wh, meter_serial, pagination,"
                " public_key, status, detail, register_code, register_kind)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                session_id, station_id, r["container_no"], r["tx_code"], r["reading_time"],
                r["reading_wh"], r["resolution_wh"], r["meter_serial"], r["pagination"],
                r["public_key"], r["status"], r["detail"], r.get("register_code"),
                r.get("register_kind"),
            )

    async def signed_readings(self, session_id: int) -> list[dict[str, Any]]:
        return await self.fetchall(
            "SELECT container_no, tx_code, reading_time, reading_wh, resolution_wh,"
            " meter_serial, pagination, public_key, status, detail, register_code,"
            " register_kind FROM signed_readings WHERE session_id = ? ORDER BY id", session_id)

    async def signed_readings_around(
        self, station_id: str, since: datetime, until: datetime, other_than: int,
    ) -> list[dict[str, Any]]:
        rows = await self.fetchall(
            "SELECT r.session_id, s.started_at, r.tx_code, r.reading_time, r.reading_wh,"
            " r.resolution_wh, r.meter_serial, r.pagination, r.register_code,"
            " r.register_kind FROM signed_readings r JOIN sessions s ON s.id = r.session_id"
            " WHERE r.station_id = ? AND r.session_id <> ? AND r.status = 'verified'"
            " AND s.station_id = ? AND s.started_at <= ?"
            " AND (s.stopped_at IS NULL OR s.stopped_at >= ?) ORDER BY r.id",
            station_id, other_than, station_id, dt_to_db(until), dt_to_db(since))
        return [{**r, "started_at": dt_from_db(r["started_at"])} for r in rows]

    async def signed_readings_elsewhere(
        self, station_id: str, public_key: str, times: list[str],
    ) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        for at in dict.fromkeys(times):
            rows += await self.fetchall(
                "SELECT r.session_id, r.station_id, s.started_at, r.tx_code,"
                " r.reading_time, r.reading_wh, r.resolution_wh, r.meter_serial,"
                " r.pagination, r.register_code, r.register_kind FROM signed_readings r"
                " JOIN sessions s ON s.id = r.session_id WHERE r.reading_time = ?"
                " AND r.public_key = ? AND r.station_id <> ? AND r.status = 'verified'"
                " ORDER BY r.id", at, public_key, station_id)
        return [{**r, "started_at": dt_from_db(r["started_at"])} for r in rows]

    # -- events --------------------------------------------------------------
    async def record_tx_event(self, session_id: int, seq_no: int,
                              digest: int | None = None) -> bool:
        changed = await self.execute(
            "INSERT INTO tx_events (session_id, seq_no, digest) VALUES (?, ?, ?)"
            " ON CONFLICT DO NOTHING", session_id, seq_no, digest)
        return changed > 0

    async def tx_event_digest(self, session_id: int, seq_no: int) -> int | None:
        row = await self.fetchone(
            "SELECT digest FROM tx_events WHERE session_id = ? AND seq_no = ?",
            session_id, seq_no)
        return None if row is None or row["digest"] is None else int(row["digest"])

    async def set_tx_event_digest(self, session_id: int, seq_no: int,
                                  digest: int | None) -> None:
        await self.execute(
            "UPDATE tx_events SET digest = ? WHERE session_id = ? AND seq_no = ?",
            digest, session_id, seq_no)

    async def add_station_event(
        self, station_id: str, kind: str, payload: dict[str, Any], at: datetime
    ) -> None:
        await self.write(
            "INSERT INTO station_events (station_id, kind, ts, payload) VALUES (?, ?, ?, ?)",
            station_id, kind, dt_to_db(at), json_text(payload),
        )

    async def list_station_events(
        self, station_id: str, kind: str | None = None, limit: int = 100
    ) -> list[dict[str, Any]]:
        if kind is None:
            rows = await self.fetchall(
                "SELECT * FROM station_events WHERE station_id = ? ORDER BY id DESC LIMIT ?",
                station_id, limit,
            )
        else:
            rows = await self.fetchall(
                "SELECT * FROM station_events WHERE station_id = ? AND kind = ?"
                " ORDER BY id DESC LIMIT ?",
                station_id, kind, limit,
            )
        for r in rows:
            r["payload"] = orjson.loads(r["payload"])
        return rows

    async def station_events_by_time(
        self, station_id: str, kind: str, at: datetime, later: bool, limit: int
    ) -> list[dict[str, Any]]:
        if later:
            # from the station's newest event stored at or before ``at`` on (the index
            # station_events_station read backwards to it, then forwards from it), not
            # from the station's oldest event: read what the station stored since ``at``
            sql = ("SELECT * FROM station_events WHERE station_id = ? AND kind = ? AND ts > ?"
                   " AND id > coalesce((SELECT id FROM station_events WHERE station_id = ?"
                   " AND ts <= ? ORDER BY id DESC LIMIT 1), 0) ORDER BY id LIMIT ?")
            args: tuple[Any, ...] = (station_id, kind, dt_to_db(at), station_id,
                                     dt_to_db(at), limit)
        else:
            sql = ("SELECT * FROM station_events WHERE station_id = ? AND kind = ? AND ts <= ?"
                   " ORDER BY id DESC LIMIT ?")
            args = (station_id, kind, dt_to_db(at), limit)
        rows = await self.fetchall(sql, *args)
        for r in rows:
            r["payload"] = orjson.loads(r["payload"])
        return rows

    async def old_station_events(
        self, before: datetime, after: tuple[str, int] | None, limit: int
    ) -> list[dict[str, Any]]:
        # the index on (ts, id) read from the cursor on: no row is read twice in a run
        if after is None:
            rows = await self.fetchall(
                "SELECT id, ts, payload FROM station_events WHERE ts < ?"
                " ORDER BY ts, id LIMIT ?", dt_to_db(before), limit)
        else:
            rows = await self.fetchall(
                "SELECT id, ts, payload FROM station_events WHERE ts < ?"
                " AND (ts, id) > (?, ?) ORDER BY ts, id LIMIT ?",
                dt_to_db(before), after[0], after[1], limit)
        for r in rows:
            r["payload"] = orjson.loads(r["payload"])
        return rows

    async def delete_station_events(self, ids: list[int]) -> int:
        if not ids:
            return 0
        marks = ", ".join("?" for _ in ids)
        return await self.execute(f"DELETE FROM station_events WHERE id IN ({marks})", *ids)

    async def add_outbox(self, topic: str, payload: dict[str, Any], at: datetime) -> str:
        event_id = str(uuid.uuid4())
        await self.write(
            "INSERT INTO outbox (event_id, topic, payload, created_at) VALUES (?, ?, ?, ?)",
            event_id, topic, json_text({"event_id": event_id, **payload}),
            dt_to_db(at),
        )
        return event_id

    async def enqueue_settlement(self, session_id: int, at: datetime) -> None:
        await self.write(
            "INSERT INTO settlement_queue (session_id, enqueued_at) VALUES (?, ?)"
            " ON CONFLICT DO NOTHING",
            session_id, dt_to_db(at),
        )

    async def pending_outbox(self, limit: int) -> list[dict[str, Any]]:
        """Events not yet published, oldest first: id, topic, payload (JSON text)."""
        return await self.fetchall(
            "SELECT id, topic, payload FROM outbox WHERE published_at IS NULL"
            " ORDER BY id LIMIT ?", limit,
        )

    async def mark_outbox_published(self, ids: list[int], at: datetime) -> None:
        if not ids:
            return
        marks = ", ".join("?" for _ in ids)
        await self.execute(
            f"UPDATE outbox SET published_at = ? WHERE id IN ({marks})", at.isoformat(), *ids,
        )

    async def purge_outbox(self, published_before: datetime) -> int:
        return await self.execute(
            "DELETE FROM outbox WHERE published_at IS NOT NULL AND published_at < ?",
            published_before.isoformat(),
        )

    async def count_outbox_pending(self) -> int:
        row = await self.fetchone("SELECT count(*) AS n FROM outbox WHERE published_at IS NULL")
        return int(row["n"]) if row else 0

    async def gas_spent(self) -> int:
        row = await self.fetchone(
            "SELECT coalesce(sum(gas_used), 0) AS g FROM batches WHERE gas_used IS NOT NULL")
        return int(row["g"]) if row else 0

    # -- cluster: node beats and leases ----------------------------------------
    async def beat_node(self, node_id: str, at: datetime) -> None:
        await self.execute(
            "INSERT INTO nodes (id, started_at, last_seen) VALUES (?, ?, ?)"
            " ON CONFLICT (id) DO UPDATE SET last_seen = excluded.last_seen",
            node_id, _iso_local(at), _iso_local(at))

    async def node_beats(self) -> dict[str, datetime]:
        rows = await self.fetchall("SELECT id, last_seen FROM nodes")
        return {r["id"]: datetime.fromisoformat(r["last_seen"]) for r in rows}

    # When a lease expires is the database's clock: a node whose clock runs ahead would
    # take a lease another node holds, one whose clock runs behind would keep its own
    # past its time. Here SQLite's, the clock of the one machine the file is on
    # (PostgresRowLocks: the server's). Expiry times are ISO text in UTC.
    _LEASE_LIVE = "julianday(expires_at) >= julianday('now')"

    def _lease_until(self, ttl: timedelta) -> tuple[str, Any]:
        """The SQL of the database's now + ``ttl`` as stored, and its one parameter."""
        return ("strftime('%Y-%m-%dT%H:%M:%f', 'now', ?) || '+00:00'",
                f"{ttl.total_seconds():+.3f} seconds")

    async def take_lease(self, name: str, holder: str, ttl: timedelta) -> bool:
        """Take ``name`` for ``holder`` for ``ttl`` if it is free, expired or already held
        by ``holder``; one conditional write, so at most one holder at a time."""
        until, arg = self._lease_until(ttl)
        taken = await self.execute(
            f"INSERT INTO leases (name, holder, expires_at) VALUES (?, ?, {until})"
            " ON CONFLICT (name) DO NOTHING", name, holder, arg)
        if taken:
            return True
        renewed = await self.execute(
            f"UPDATE leases SET holder = ?, expires_at = {until} WHERE name = ?"
            f" AND (holder = ? OR NOT ({self._LEASE_LIVE}))", holder, arg, name, holder)
        return renewed == 1

    async def hold_lease(self, name: str, holder: str, ttl: timedelta) -> bool:
        until, arg = self._lease_until(ttl)
        return await self.execute(
            f"UPDATE leases SET expires_at = {until} WHERE name = ? AND holder = ?"
            f" AND {self._LEASE_LIVE}", arg, name, holder) == 1

    async def claim_bus_command(self, node_id: str, request_id: str, until: datetime,
                                now: datetime) -> bool:
        # an expired row not swept yet (drop_expired_bus_commands) is taken over
        taken = await self.execute(
            "INSERT INTO bus_served (node_id, request_id, until) VALUES (?, ?, ?)"
            " ON CONFLICT (node_id, request_id) DO UPDATE SET until = excluded.until"
            " WHERE bus_served.until < ?",
            node_id, request_id, _iso_local(until), _iso_local(now))
        return taken == 1

    async def drop_expired_bus_commands(self, now: datetime) -> int:
        return await self.execute("DELETE FROM bus_served WHERE until < ?", _iso_local(now))

    async def drop_lease(self, name: str, holder: str) -> None:
        await self.execute("DELETE FROM leases WHERE name = ? AND holder = ?", name, holder)

    async def lease_holder(self, name: str) -> str | None:
        row = await self.fetchone(
            f"SELECT holder FROM leases WHERE name = ? AND {self._LEASE_LIVE}", name)
        return None if row is None else str(row["holder"])

    # -- the operator console's pages (indexes: migrations 0030_console.sql) -----------
    async def list_stations_page(self, after: str | None, limit: int) -> list[Station]:
        if after is None:
            rows = await self.fetchall("SELECT * FROM stations ORDER BY id LIMIT ?", limit)
        else:
            rows = await self.fetchall(
                "SELECT * FROM stations WHERE id > ? ORDER BY id LIMIT ?", after, limit)
        return [_station(r) for r in rows]

    async def list_connectors_of(self, station_ids: list[str]) -> list[dict[str, Any]]:
        if not station_ids:
            return []
        marks = ", ".join("?" for _ in station_ids)
        return await self.fetchall(
            f"SELECT * FROM connectors WHERE station_id IN ({marks})"
            " ORDER BY station_id, evse_id, connector_id", *station_ids)

    async def count_stations_by_node(self) -> dict[str | None, int]:
        rows = await self.fetchall(
            "SELECT connected_node, count(*) AS n FROM stations GROUP BY connected_node")
        return {r["connected_node"]: int(r["n"]) for r in rows}

    async def list_sessions_page(
        self, *, station_id: str | None, id_tag: str | None, status: str | None,
        before: int | None, limit: int,
    ) -> list[Session]:
        where: list[str] = []
        params: list[Any] = []
        for column, value in (("station_id", station_id), ("id_tag", id_tag),
                              ("status", status)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        if before is not None:
            where.append("id < ?")
            params.append(before)
        sql = f"SELECT {_SESSION_READ} FROM sessions"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY id DESC LIMIT ?"
        return [_session_of(r) for r in await self.fetchrows(sql, *params, limit)]

    async def unsettled_sessions(self, before: int | None, limit: int) -> list[Session]:
        rows = await self.fetchrows(
            f"SELECT {_SESSION_READ} FROM sessions s WHERE s.status = ?"
            " AND s.settlement_state IS NULL"
            " AND s.id < ? AND NOT EXISTS (SELECT 1 FROM settlement_queue q"
            " WHERE q.session_id = s.id) AND NOT EXISTS (SELECT 1 FROM batch_items b"
            " WHERE b.session_id = s.id) ORDER BY s.id DESC LIMIT ?",
            SessionStatus.COMPLETED.value, before if before is not None else 2**62, limit)
        return [_session_of(r) for r in rows]

    async def held_sessions(self, before: int | None, limit: int, *,
                            without: str | None = None) -> list[Session]:
        sql, params = held_sessions_query(before, limit, without)
        return [_session_of(r) for r in await self.fetchrows(sql, *params)]

    async def latest_power_samples(self, session_ids: list[int],
                                   measurand: str) -> list[dict[str, Any]]:
        """Each session's latest reading that carries ``measurand`` (the last to arrive:
        the index on (session_id, id) walked backwards, its name as a JSON string in the
        text), and in it the measurand's samples at their latest time."""
        if not session_ids:
            return []
        wanted = ", ".join("(CAST(? AS BIGINT))" for _ in session_ids)
        pattern = "%" + _like_literal(json_text(measurand)) + "%"
        rows = await self.fetchrows(
            f"WITH wanted (session_id) AS (VALUES {wanted})"
            " SELECT w.session_id, (SELECT m.samples FROM meter_readings m"
            " WHERE m.session_id = w.session_id AND m.samples LIKE ? ESCAPE '!'"
            " ORDER BY m.id DESC LIMIT 1) FROM wanted w",
            *session_ids, pattern)
        out: list[dict[str, Any]] = []
        for session_id, text in rows:
            if text is None:
                continue
            items = _samples_of(text, measurand)
            if not items:  # the name stood elsewhere in it (a value, signed data)
                items = await self._latest_samples_of(session_id, measurand, pattern)
                if not items:
                    continue
            last = max(item[0] for item in items)
            out += [{"session_id": session_id, "ts": item[0], "value": item[1],
                     "unit": item[3], "multiplier": item[4], "phase": item[5]}
                    for item in items if item[0] == last]
        return out

    async def _latest_samples_of(self, session_id: int, measurand: str,
                                 pattern: str) -> list[list[Any]]:
        """The measurand's samples in the latest of a session's readings that carries it,
        among the LATEST_SCAN last that hold its name (a station that puts the name in
        its values costs the reader that many rows at most)."""
        rows = await self.fetchrows(
            "SELECT samples FROM meter_readings WHERE session_id = ? AND samples LIKE ?"
            " ESCAPE '!' ORDER BY id DESC LIMIT ?", session_id, pattern, LATEST_SCAN)
        for (text,) in rows:
            if items := _samples_of(text, measurand):
                return items
        return []

    async def energy_stopped_since(self, at: datetime) -> int:
        row = await self.fetchone(
            "SELECT coalesce(sum(energy_wh), 0) AS wh FROM sessions WHERE stopped_at >= ?",
            dt_to_db(at))
        return int(row["wh"]) if row else 0

    async def list_batches_page(self, before: int | None, limit: int) -> list[dict[str, Any]]:
        return await self.fetchall(
            "SELECT id, state, root, count, chain_id, contract, nonce, tx_hash, block_number,"
            " gas_used, error, created_at, updated_at, first_seq FROM batches WHERE id < ?"
            " ORDER BY id DESC LIMIT ?", before if before is not None else 2**62, limit)

    async def batch_sessions(self, batch_id: int) -> list[dict[str, Any]]:
        return await self.fetchall(
            "SELECT s.id, s.station_id, s.id_tag, s.energy_wh, s.price_minor, s.currency,"
            " s.settlement_state, s.unpaid_reason, bi.position FROM batch_items bi"
            " JOIN sessions s ON s.id = bi.session_id WHERE bi.batch_id = ?"
            " ORDER BY bi.position", batch_id)

    async def batch_summaries(self, batch_ids: list[int]) -> list[dict[str, Any]]:
        if not batch_ids:
            return []
        marks = ", ".join("?" for _ in batch_ids)
        return await self.fetchall(
            "SELECT bi.batch_id, s.settlement_state, s.currency, count(*) AS sessions,"
            " coalesce(sum(s.price_minor), 0) AS amount_minor FROM batch_items bi"
            f" JOIN sessions s ON s.id = bi.session_id WHERE bi.batch_id IN ({marks})"
            " GROUP BY bi.batch_id, s.settlement_state, s.currency"
            " ORDER BY bi.batch_id, s.settlement_state", *batch_ids)

    async def list_audit_page(self, before: int | None, limit: int) -> list[dict[str, Any]]:
        rows = await self.fetchall(
            "SELECT * FROM audit_log WHERE id < ? ORDER BY id DESC LIMIT ?",
            before if before is not None else 2**62, limit)
        for r in rows:
            r["request"] = json_value(r["request"])
            r["result"] = json_value(r["result"])
            r["ok"] = bool(r["ok"])
        return rows

    async def list_tags_page(self, after: str | None, limit: int) -> list[IdTag]:
        rows = await self.fetchall(
            "SELECT * FROM id_tags WHERE tag > ? ORDER BY tag LIMIT ?", after or "", limit)
        return [IdTag(r["tag"], r["status"], dt_from_db(r["expires_at"]), r["parent"])
                for r in rows]

    async def insert_sessions(self, sessions: list[Session]) -> None:
        now = dt_to_db(datetime.now(UTC))
        for s in sessions:
            if numbered_by_central_system(s.ocpp_version, s.transaction_id):
                raise ValueError("insert_sessions needs each session's transaction id")
        await self.execute_many(
            "INSERT INTO sessions (station_id, connector_id, evse_id, id_tag, auth_status,"
            " ocpp_version, transaction_id, started_at, stopped_at, reported_meter_start_wh,"
            " reported_meter_stop_wh, meter_start_wh, meter_stop_wh, energy_wh, status,"
            " stop_reason, flags, last_seq_no, start_key, limit_minor, energy_grew_at,"
            " created_at, updated_at, price_minor, currency, settlement_state)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?,"
            " ?)",
            [(*_to_db(_session_fields(s)), now, now, s.price_minor, s.currency,
              s.settlement_state) for s in sessions])


def _iso_local(at: datetime) -> str:
    """Times of the cluster tables, as the callers give them (their offset kept)."""
    return at.isoformat(timespec="microseconds")
