"""Meter readings (one row per reading, its samples as JSON; migration 0090), on SQLite and
PostgreSQL: a session's samples come back as the station sent them, in the order of their
time; the rows of the table they replace move over whole and in order; the power shown for
a session is its latest one."""

from __future__ import annotations

import re
from datetime import timedelta

from csms.domain.model import MeterSample
from csms.service.ports import Repository, Tx
from csms.storage import open_repository
from csms.storage.migrations import migrations_for
from csms.storage.sql import dt_to_db, json_text
from support.ocmf_vectors import KEBA

from .test_tx import T0, session, unit

POWER = "Power.Active.Import"
HUGE = 123456789012345678901234567890  # beyond 64 bits: orjson would read it as a float


def _dialect(repo: Repository) -> str:
    return str(repo.dialect)  # type: ignore[attr-defined]


async def _new_session(repo: Repository, station_id: str = "CP1") -> int:
    return await unit(repo, lambda tx: tx.insert_session(session(station_id)))


async def _add(repo: Repository, sid: int | None, *readings: list[MeterSample],
               station_id: str = "CP1") -> None:
    async def work(tx: Tx) -> None:
        for samples in readings:
            await tx.add_samples(station_id, samples, session_id=sid, evse_id=1,
                                 connector_id=1, transaction_id=None if sid is None else str(sid))

    await unit(repo, work)


async def test_samples_come_back_in_time_order_and_in_arrival_order_for_one_time(
    repo: Repository,
) -> None:
    sid = await _new_session(repo)
    t = [T0 + timedelta(minutes=m) for m in range(4)]
    first = [MeterSample(t[2], "30"), MeterSample(t[0], "10")]  # one reading, two times
    late = [MeterSample(t[1], "20", phase="L1"), MeterSample(t[1], "21", phase="L2")]
    same = [MeterSample(t[2], "31", measurand=POWER, unit="W")]
    await _add(repo, sid, first, late, same)
    got = await repo.read(lambda tx: tx.session_samples(sid))
    assert [s.value for s in got] == ["10", "20", "21", "30", "31"]
    assert got[1] == late[0] and got[4] == same[0]


async def test_a_sessions_energy_samples_are_its_register_and_signed_ones(
    repo: Repository,
) -> None:
    """What a stop computes the energy from: the import register's samples (every phase
    and location of it) and the signed ones, in time order; not power, export or voltage."""
    sid = await _new_session(repo)
    t = [T0 + timedelta(minutes=m) for m in range(3)]
    register = [MeterSample(t[1], "20"), MeterSample(t[1], "7", phase="L1")]
    signed = [MeterSample(t[2], KEBA, measurand=POWER, format="SignedData",
                          signed={"signedData": KEBA})]
    others = [MeterSample(t[0], "5", measurand=POWER, unit="W"),
              MeterSample(t[0], "230", measurand="Voltage", unit="V"),
              MeterSample(t[2], "3", measurand="Energy.Active.Export.Register")]
    await _add(repo, sid, [MeterSample(t[0], "10"), *others[:2]], register, [others[2], *signed])
    got = await repo.read(lambda tx: tx.energy_samples(sid))
    assert got == [MeterSample(t[0], "10"), *register, *signed]
    assert len(await repo.read(lambda tx: tx.session_samples(sid))) == 7


async def test_a_stations_signed_data_and_odd_values_come_back_exactly(repo: Repository) -> None:
    """What a hostile or a real station sends in a reading is read back as it was stored:
    an integer beyond 64 bits in signed data (orjson alone reads it as a float), a real
    KEBA P30 OCMF record, text that is SQL or JSON to someone else, NUL-free unicode."""
    sid = await _new_session(repo)
    samples = [
        MeterSample(T0, KEBA, format="SignedData", signed={"signedData": KEBA}),
        MeterSample(T0, "1", format="SignedData",
                    signed={"signingMethod": "x", "counter": HUGE, "nested": [-HUGE, 2**63]}),
        MeterSample(T0, "x'); DROP TABLE meter_readings; --", unit="Zähler ⚡ \"\\",
                    phase="L1-N", context='{"a": [1', location="%_!", multiplier=-3,
                    seq_no=2**62),
    ]
    await _add(repo, sid, samples)
    got = await repo.read(lambda tx: tx.session_samples(sid))
    assert got == samples
    assert type(got[1].signed["counter"]) is int  # type: ignore[index]


async def test_a_stations_readings_outside_sessions_stay_apart(repo: Repository) -> None:
    sid = await _new_session(repo)
    await _add(repo, None, [MeterSample(T0, "99")])  # the main meter, clock-aligned
    await _add(repo, sid, [MeterSample(T0, "1")])
    assert [s.value for s in await repo.read(lambda tx: tx.session_samples(sid))] == ["1"]
    rows = await repo.read(lambda tx: tx.fetchall(
        "SELECT session_id, station_id, evse_id, transaction_id FROM meter_readings"
        " ORDER BY id"))
    assert [(r["session_id"], r["transaction_id"]) for r in rows] == [(None, None),
                                                                        (sid, str(sid))]


async def test_latest_power_is_the_latest_reading_that_carries_it(repo: Repository) -> None:
    """The power shown for a session: its latest reading (the last to arrive) with the
    measurand, at the measurand's latest time in it; all phases of that time."""
    a, b, c, d, e = [await _new_session(repo, f"CP{i}") for i in range(5)]

    def power(at: int, value: str, phase: str | None = None) -> MeterSample:
        return MeterSample(T0 + timedelta(minutes=at), value, measurand=POWER, unit="W",
                           phase=phase)

    energy_only = [MeterSample(T0 + timedelta(minutes=9), "5000")]
    # a: three phases at minute 5 (and an earlier time in the same reading), then a reading
    # of energy only
    await _add(repo, a, [power(1, "100")], [power(4, "900"), power(5, "1000", "L1"),
                                              power(5, "1100", "L2"), power(5, "1200", "L3")],
               energy_only, station_id="CP0")
    # b: kW with a total; c: no power at all
    await _add(repo, b, [power(2, "7.4"), MeterSample(T0 + timedelta(minutes=2), "16",
                                                      measurand="Current.Import")],
               station_id="CP1")
    await _add(repo, c, energy_only, station_id="CP2")
    # d: a reading stamped earlier arrives last (a station sending what it queued offline):
    # the latest report is what is shown
    await _add(repo, d, [power(7, "7000")], [power(3, "3000")], station_id="CP3")
    # e: a hostile station puts the measurand's name in its values after a real reading
    await _add(repo, e, [power(1, "11")], [MeterSample(T0 + timedelta(minutes=2), POWER,
                                                     measurand="Current.Import")],
               [MeterSample(T0 + timedelta(minutes=3), "1", signed={"x": POWER})],
               station_id="CP4")
    rows = await repo.read(lambda tx: tx.latest_power_samples([a, b, c, d, e], POWER))
    got = sorted((r["session_id"], r["value"], r["phase"], r["unit"], r["multiplier"])
                 for r in rows)
    assert got == [(a, "1000", "L1", "W", 0), (a, "1100", "L2", "W", 0),
                   (a, "1200", "L3", "W", 0), (b, "7.4", None, "W", 0),
                   (d, "3000", None, "W", 0), (e, "11", None, "W", 0)]
    assert {r["ts"] for r in rows if r["session_id"] == a} == {
        dt_to_db(T0 + timedelta(minutes=5))}
    assert await repo.read(lambda tx: tx.latest_power_samples([], POWER)) == []
    assert await repo.read(lambda tx: tx.latest_power_samples([c, 999999], POWER)) == []


# -- migration 0090: meter_samples rows become readings ----------------------------------
def _old_table(dialect: str) -> list[str]:
    """meter_samples and its index as migration 0001 declared them."""
    [core] = [m for m in migrations_for(dialect) if m.version == 1]
    table = re.search(r"CREATE TABLE meter_samples \(.*?\);", core.sql, re.S)
    index = re.search(r"CREATE INDEX meter_samples_session .*?;", core.sql)
    assert table and index
    return [table.group(0).rstrip(";"), index.group(0).rstrip(";")]


async def test_migration_moves_every_sample_over_in_order(db: str) -> None:
    """A database as it was before 0090 (meter_samples, one row per sample) opened by this
    build: each row becomes a reading of one sample, and a session's samples read back as
    the old table's ``ORDER BY ts, id`` gave them, signed data and all."""
    repo = await open_repository(db)
    dialect = _dialect(repo)
    try:
        sid = await _new_session(repo)
        other = await _new_session(repo, "CP2")
    finally:
        await repo.close()
    t = [T0 + timedelta(minutes=m) for m in range(3)]
    rows: list[tuple[int | None, str, MeterSample]] = [
        (sid, "CP1", MeterSample(t[2], "300", seq_no=2**62)),
        (sid, "CP1", MeterSample(t[0], KEBA, format="SignedData", signed={"signedData": KEBA})),
        (None, "CP1", MeterSample(t[1], "999", context="Sample.Clock")),
        (sid, "CP1", MeterSample(t[0], "101", measurand=POWER, unit="kW", phase="L2",
                                 multiplier=3, location="Outlet")),
        (other, "CP2", MeterSample(t[1], "7", signed={"counter": HUGE, "x": None})),
        (sid, "CP1", MeterSample(t[1], "x'); DROP TABLE sessions; --", unit="Zähler ⚡")),
    ]

    async def back_to_0080(tx: Tx) -> None:
        await tx.execute("DROP TABLE meter_readings")
        for statement in _old_table(dialect):
            await tx.execute(statement)
        await tx.execute("DELETE FROM schema_migrations WHERE version = 90")
        for session_id, station_id, s in rows:
            await tx.execute(
                "INSERT INTO meter_samples (session_id, station_id, evse_id, connector_id,"
                " transaction_id, seq_no, ts, measurand, phase, context, location, unit,"
                " multiplier, value, format, signed)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                session_id, station_id, 1, 1, None if session_id is None else str(session_id),
                s.seq_no, dt_to_db(s.timestamp), s.measurand,
                s.phase, s.context, s.location, s.unit, s.multiplier, s.value, s.format,
                None if s.signed is None else json_text(s.signed))

    repo = await open_repository(db)
    try:
        await unit(repo, back_to_0080)
    finally:
        await repo.close()
    repo = await open_repository(db)  # applies 0090
    try:
        assert await repo.read(lambda tx: tx.fetchone(
            "SELECT count(*) AS n FROM schema_migrations WHERE version = 90")) == {"n": 1}
        mine = [s for session_id, _, s in rows if session_id == sid]
        want = [mine[1], mine[2], mine[3], mine[0]]  # by time, then by the old row's id
        assert await repo.read(lambda tx: tx.session_samples(sid)) == want
        [theirs] = await repo.read(lambda tx: tx.session_samples(other))
        assert theirs == rows[4][2] and type(theirs.signed["counter"]) is int  # type: ignore[index]
        moved = await repo.read(lambda tx: tx.fetchall(
            "SELECT session_id, station_id, transaction_id FROM meter_readings ORDER BY id"))
        assert [(r["session_id"], r["station_id"]) for r in moved] == [
            (session_id, station_id) for session_id, station_id, _ in rows]
        # and the table takes new readings after the moved ones
        await _add(repo, sid, [MeterSample(t[2] + timedelta(minutes=1), "400")])
        assert (await repo.read(lambda tx: tx.session_samples(sid)))[-1].value == "400"
    finally:
        await repo.close()
