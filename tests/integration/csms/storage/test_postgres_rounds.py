"""PostgreSQL: the units of a batch run together in rounds (csms.storage.postgres_rounds).

Every batch here is made by queueing its units at once (``asyncio.gather``), which puts
them in one batch; each test checks that it did (``repo.commits``).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from csms.domain.model import IdTag, MeterSample, Session, Station
from csms.service.charging import ChargingService
from csms.service.messages import StopInfo
from csms.service.ports import StorageError, Tx
from csms.storage.postgres import PostgresRepository

pytestmark = pytest.mark.postgres

T0 = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
STATIONS = 20


@pytest.fixture
async def pg(postgres_url: str) -> AsyncIterator[PostgresRepository]:
    repo = await PostgresRepository.open(postgres_url)
    try:
        yield repo
    finally:
        await repo.close()


async def _stations(repo: PostgresRepository, n: int = STATIONS) -> list[int]:
    """``n`` stations with an active session each; the sessions' ids."""

    async def setup(tx: Tx) -> list[int]:
        ids = []
        for i in range(n):
            await tx.insert_station(Station(f"CP{i}", created_at=T0))
            ids.append(await tx.insert_session(Session(
                station_id=f"CP{i}", ocpp_version="ocpp1.6", transaction_id="", started_at=T0,
                connector_id=1, evse_id=1, id_tag="T1", meter_start_wh=Decimal(1000),
                energy_wh=0)))
        return ids

    return await repo.unit(setup)


async def _one_batch(repo: PostgresRepository,
                     units: list[Callable[[Tx], Awaitable[Any]]]) -> list[Any]:
    """Run ``units`` as one batch; their results or exceptions."""
    commits = repo.commits
    results = await asyncio.gather(*(repo.unit(u) for u in units), return_exceptions=True)
    assert repo.commits == commits + 1, "the units did not share one batch"
    return list(results)


def _meter_value(station: str, txid: str, k: int) -> Callable[[Tx], Awaitable[int]]:
    """What a 1.6 MeterValues costs: find the session, sample rows, the session updated."""

    async def work(tx: Tx) -> int:
        session = await tx.find_session(station, txid)
        assert session is not None and session.id is not None
        await tx.add_samples(station, [MeterSample(T0 + timedelta(seconds=k), str(1000 + k))],
                             session_id=session.id, evse_id=1, connector_id=1,
                             transaction_id=txid)
        session.energy_wh = k
        await tx.update_session(session)
        return session.id

    return work


async def test_a_batch_of_meter_values_is_one_read_and_one_write_round_trip(
    pg: PostgresRepository,
) -> None:
    ids = await _stations(pg)
    # the first batch prepares its statements (once per connection and statement)
    await _one_batch(pg, [_meter_value(f"CP{i}", str(ids[i]), 1) for i in range(STATIONS)])
    before = pg.round_stats.round_trips
    results = await _one_batch(
        pg, [_meter_value(f"CP{i}", str(ids[i]), 2) for i in range(STATIONS)])
    assert results == ids  # each unit got its own station's session
    # the 20 reads in one statement; the 40 writes and the COMMIT in one script
    assert pg.round_stats.round_trips - before == 2
    assert pg.round_stats.in_sequence == 0
    sessions = await pg.read(lambda tx: tx.list_sessions())
    assert {s.energy_wh for s in sessions} == {2}
    readings = await pg.read(lambda tx: tx.fetchall(
        "SELECT session_id, count(*) AS n FROM meter_readings GROUP BY session_id"))
    assert sorted((r["session_id"], r["n"]) for r in readings) == [(i, 2) for i in sorted(ids)]


@pytest.mark.parametrize("mixed", [False, True], ids=["one-text-a-round", "jsonb"])
async def test_reads_in_rounds_return_what_reads_one_by_one_return(
    pg: PostgresRepository, mixed: bool,
) -> None:
    """Rows come back in rounds as read alone: text, integers and NULL exactly, columns
    in their order, each read's rows in its own ORDER BY. Every unit asking the same
    statements in the same order makes rounds of one text (its own columns); ``mixed``,
    each unit starts at another statement, so each round joins several texts as jsonb."""
    ids = await _stations(pg, 4)
    odd = ["x'); DROP TABLE sessions; --", "Zähler ⚡ \n\t\r", "", "\\' ''", "9" * 30]

    async def fill(tx: Tx) -> None:
        for i, sid in enumerate(ids):
            for k, text in enumerate(odd):  # a reading each: rows in their ORDER BY
                await tx.add_samples(
                    f"CP{i}", [MeterSample(T0 + timedelta(seconds=60 - k), value=text,
                                           unit=text or None, seq_no=2**62 + k)],
                    session_id=sid, evse_id=None, connector_id=1, transaction_id=None)
            await tx.set_connector_status(f"CP{i}", 1, 1, odd[i], None, T0)
        await tx.put_tag(IdTag("T1", "Accepted", T0, odd[0]))

    await pg.unit(fill)

    def reads(i: int) -> Callable[[Tx], Awaitable[Any]]:
        asks: list[Callable[[Tx], Awaitable[Any]]] = [
            lambda tx: tx.session_samples(ids[i]),
            lambda tx: tx.fetchall("SELECT * FROM meter_readings WHERE session_id = ?"
                                   " ORDER BY id DESC", ids[i]),
            lambda tx: tx.get_station(f"CP{i}"),
            lambda tx: tx.list_connectors(f"CP{i}"),
            lambda tx: tx.get_tag("T1"),
            lambda tx: tx.get_station("nobody"),
            lambda tx: tx.fetchone("SELECT ? AS given, NULL AS nothing", odd[i]),
        ]
        start = i if mixed else 0

        async def work(tx: Tx) -> Any:
            got: list[Any] = [None] * len(asks)
            for k in range(len(asks)):
                at = (start + k) % len(asks)
                got[at] = await asks[at](tx)
            return got
        return work

    pg.in_rounds = False
    one_by_one = await _one_batch(pg, [reads(i) for i in range(4)])
    pg.in_rounds = True
    in_rounds = await _one_batch(pg, [reads(i) for i in range(4)])
    assert pg.round_stats.in_sequence == 0
    assert in_rounds == one_by_one
    for got, want in zip(in_rounds, one_by_one, strict=True):
        assert [list(r) for r in got[1]] == [list(r) for r in want[1]]  # column order
    assert [s.value for s in in_rounds[0][0]] == odd[::-1]  # ordered by time


async def test_one_failing_unit_fails_alone(pg: PostgresRepository) -> None:
    ids = await _stations(pg, 3)

    async def raises_before_writing(tx: Tx) -> None:
        session = await tx.find_session("CP1", str(ids[1]))
        assert session is not None
        await tx.add_station_event("CP1", "never", {}, T0)  # held, never sent
        raise ValueError("the unit's own error")

    results = await _one_batch(pg, [_meter_value("CP0", str(ids[0]), 5),
                                    raises_before_writing,
                                    _meter_value("CP2", str(ids[2]), 5)])
    assert results[0] == ids[0] and results[2] == ids[2]
    assert isinstance(results[1], ValueError)
    assert pg.round_stats.in_sequence == 0  # nothing of it had reached the database
    assert await pg.read(lambda tx: tx.list_station_events("CP1")) == []

    async def duplicate(tx: Tx) -> None:
        await tx.find_session("CP1", str(ids[1]))
        await tx.insert_station(Station("CP0", created_at=T0))  # a unique violation

    results = await _one_batch(pg, [_meter_value("CP0", str(ids[0]), 6), duplicate,
                                    _meter_value("CP2", str(ids[2]), 6)])
    assert results[0] == ids[0] and results[2] == ids[2]
    assert isinstance(results[1], StorageError) and "23505" in str(results[1])
    assert pg.round_stats.in_sequence == 1  # the batch ran again unit by unit
    assert pg.retries == 1  # where the duplicate ran once more, as before, then failed

    async def raises_after_writing(tx: Tx) -> None:
        await tx.add_station_event("CP1", "undone", {}, T0)
        await tx.list_station_events("CP1")  # the event went out before this read
        raise ValueError("after its writes")

    results = await _one_batch(pg, [_meter_value("CP0", str(ids[0]), 7),
                                    raises_after_writing,
                                    _meter_value("CP2", str(ids[2]), 7)])
    assert results[0] == ids[0] and results[2] == ids[2]
    assert isinstance(results[1], ValueError)
    assert pg.round_stats.in_sequence == 2
    assert await pg.read(lambda tx: tx.list_station_events("CP1")) == []
    energy = {s.station_id: s.energy_wh for s in await pg.read(lambda tx: tx.list_sessions())}
    assert energy == {"CP0": 7, "CP1": 0, "CP2": 7}


async def test_units_reading_the_same_row_run_one_after_the_other(
    pg: PostgresRepository,
) -> None:
    """Twenty units add one to the same session's energy: run together without waiting
    for each other, each would read 0 and the session would end at 1."""
    ids = await _stations(pg, 2)

    async def add_one(tx: Tx) -> int:
        session = await tx.find_session("CP0", str(ids[0]))
        assert session is not None and session.energy_wh is not None
        session.energy_wh += 1
        await tx.update_session(session)
        return session.energy_wh

    async def other(tx: Tx) -> None:
        session = await tx.find_session("CP1", str(ids[1]))
        assert session is not None
        await tx.update_session(session)

    results = await _one_batch(pg, [add_one] * 20 + [other])
    assert sorted(results[:20]) == list(range(1, 21))
    session = await pg.read(lambda tx: tx.get_session(ids[0]))
    assert session is not None and session.energy_wh == 20
    assert pg.round_stats.in_sequence == 0


async def test_units_reading_a_tag_do_not_wait_for_each_other(pg: PostgresRepository) -> None:
    await pg.unit(lambda tx: tx.put_tag(IdTag("SHARED", "Accepted")))

    async def read_tag(tx: Tx) -> str | None:
        tag = await tx.get_tag("SHARED")
        return None if tag is None else tag.status

    rounds = pg.round_stats.rounds
    assert await _one_batch(pg, [read_tag] * 30) == ["Accepted"] * 30
    assert pg.round_stats.rounds - rounds == 1


async def test_units_waiting_on_each_others_rows_run_one_by_one(
    pg: PostgresRepository,
) -> None:
    ids = await _stations(pg, 2)

    def crossed(first: int, second: int) -> Callable[[Tx], Awaitable[int]]:
        async def work(tx: Tx) -> int:
            a = await tx.find_session(f"CP{first}", str(ids[first]))
            b = await tx.find_session(f"CP{second}", str(ids[second]))
            assert a is not None and b is not None and a.energy_wh is not None
            a.energy_wh += 1
            await tx.update_session(a)
            return a.energy_wh + (b.energy_wh or 0)
        return work

    results = await _one_batch(pg, [crossed(0, 1), crossed(1, 0)])
    assert pg.round_stats.in_sequence == 1
    assert sorted(results) == [1, 2]  # the second saw the first's write
    sessions = await pg.read(lambda tx: tx.list_sessions())
    assert {s.energy_wh for s in sessions} == {1}


async def test_a_unit_reads_its_own_writes_within_a_batch(pg: PostgresRepository) -> None:
    ids = await _stations(pg, 10)

    def writes_then_reads(i: int) -> Callable[[Tx], Awaitable[Any]]:
        async def work(tx: Tx) -> Any:
            session = await tx.get_session(ids[i])
            assert session is not None
            session.energy_wh = 100 + i
            session.flag(f"mine{i}")
            await tx.update_session(session)  # held
            await tx.add_station_event(f"CP{i}", "note", {"i": i}, T0)  # held
            again = await tx.get_session(ids[i])
            events = await tx.list_station_events(f"CP{i}")
            assert again is not None
            return again.energy_wh, again.flags, [e["payload"] for e in events]
        return work

    results = await _one_batch(pg, [writes_then_reads(i) for i in range(10)])
    assert results == [(100 + i, [f"mine{i}"], [{"i": i}]) for i in range(10)]
    assert pg.round_stats.in_sequence == 0


async def test_each_stations_messages_are_stored_in_their_order(
    pg: PostgresRepository,
) -> None:
    """Stations charge at once, each waiting for its answers (one message in flight per
    station, as OCPP-J has it): every session ends with its own readings in order."""
    await pg.unit(lambda tx: tx.put_tag(IdTag("LOADTAG", "Accepted")))
    clock = T0 + timedelta(hours=1)
    service = ChargingService(pg, clock=lambda: clock)

    async def station(i: int) -> int:
        sid = f"ST{i}"
        await pg.unit(lambda tx: tx.insert_station(Station(sid, created_at=T0)))
        txid, _, _ = await service.start_transaction(sid, 1, "LOADTAG", Decimal(1000), T0)
        for k in range(1, 11):
            await service.meter_values(sid, 1, str(txid), [MeterSample(
                T0 + timedelta(minutes=k), str(1000 + 100 * k))])
        await service.stop_transaction(sid, StopInfo(
            transaction_id=txid, meter_stop_wh=Decimal(2000 + i),
            timestamp=T0 + timedelta(minutes=11), id_tag="LOADTAG"))
        return txid

    txids = await asyncio.gather(*(station(i) for i in range(STATIONS)))
    assert len(set(txids)) == STATIONS
    sessions = await pg.read(lambda tx: tx.list_sessions(limit=100))
    assert len(sessions) == STATIONS
    for s in sessions:
        i = int(s.station_id[2:])
        assert s.transaction_id == str(txids[i])
        assert s.status.value == "completed"
        assert s.energy_wh == 1000 + i
        assert s.auth_status == "Accepted"
        assert s.id is not None
        samples = await pg.read(lambda tx, sid=s.id: tx.session_samples(sid))
        assert [x.value for x in samples] == [str(1000 + 100 * k) for k in range(1, 11)]
    assert pg.round_stats.batches > 0
    assert pg.round_stats.in_sequence == 0


async def test_reads_at_once_run_together_each_with_its_own_answer(
    pg: PostgresRepository,
) -> None:
    ids = await _stations(pg, STATIONS)

    def session_of(i: int) -> Callable[[Tx], Awaitable[Any]]:
        async def work(tx: Tx) -> Any:
            session = await tx.find_session(f"CP{i}", str(ids[i]))
            return None if session is None else session.id
        return work

    async def broken(tx: Tx) -> None:
        await tx.fetchone("SELECT no_such_column FROM stations")

    async def raises(tx: Tx) -> None:
        await tx.get_station("CP0")
        raise ValueError("the read's own error")

    batches, alone = pg.read_stats.batches, pg.read_stats.in_sequence
    results = await asyncio.gather(*(pg.read(session_of(i)) for i in range(STATIONS)),
                                   pg.read(raises), return_exceptions=True)
    assert results[:STATIONS] == ids
    assert isinstance(results[STATIONS], ValueError)
    assert pg.read_stats.batches == batches + 1 and pg.read_stats.in_sequence == alone
    results = await asyncio.gather(pg.read(session_of(0)), pg.read(broken),
                                   pg.read(session_of(1)), return_exceptions=True)
    assert results[0] == ids[0] and results[2] == ids[1]
    assert isinstance(results[1], StorageError) and "no_such_column" in str(results[1])
    assert pg.read_stats.in_sequence == alone + 1  # that batch ran read by read


async def test_a_read_sees_one_snapshot_while_others_commit(pg: PostgresRepository) -> None:
    first_done = asyncio.Event()
    committed = asyncio.Event()

    async def twice(tx: Tx) -> tuple[int, int]:
        before = await tx.list_tags()
        first_done.set()
        await committed.wait()
        after = await tx.list_tags()
        return len(before), len(after)

    reading = asyncio.create_task(pg.read(twice))
    await first_done.wait()
    await pg.unit(lambda tx: tx.put_tag(IdTag("NEW")))
    committed.set()
    assert await reading == (0, 0)
    assert [t.tag for t in await pg.read(lambda tx: tx.list_tags())] == ["NEW"]


async def test_a_unit_failing_after_a_write_it_read_back_leaves_nothing(
    pg: PostgresRepository,
) -> None:
    """Writes sent at once (a row count, a RETURNING asked as a read) are undone with
    their unit, and never run outside the batch's transaction."""
    ids = await _stations(pg, 2)

    async def counted_then_fails(tx: Tx) -> None:
        assert await tx.execute("UPDATE sessions SET energy_wh = 77 WHERE id = ?",
                                ids[0]) == 1
        raise ValueError("after a counted write")

    async def returning_then_fails(tx: Tx) -> None:
        row = await tx.fetchone("UPDATE sessions SET energy_wh = 88 WHERE id = ?"
                                " RETURNING id", ids[1])
        assert row == {"id": ids[1]}
        raise ValueError("after a write asked as a read")

    async def tag(tx: Tx) -> None:
        await tx.put_tag(IdTag("KEPT"))

    results = await _one_batch(pg, [counted_then_fails, returning_then_fails, tag])
    assert [type(r) for r in results] == [ValueError, ValueError, type(None)]
    assert {s.energy_wh for s in await pg.read(lambda tx: tx.list_sessions())} == {0}
    assert [t.tag for t in await pg.read(lambda tx: tx.list_tags())] == ["KEPT"]


@pytest.mark.parametrize("stopper", ["OWNER", "STRANGER"])
async def test_the_reads_an_answer_needs_go_in_one_batch(
    pg: PostgresRepository, stopper: str,
) -> None:
    """Authorize (the tag, its group) and a StopTransaction after its unit (may this tag
    end the session, its group) each read in one batch of reads, not one after another;
    every read's answer lands in its own place (the group is the stopper's, a stranger's
    stop is Invalid)."""
    from csms.translate import v16

    async def setup(tx: Tx) -> None:
        await tx.insert_station(Station("ST1", created_at=T0))
        await tx.put_tag(IdTag("OWNER", "Accepted", parent="HOME"))
        await tx.put_tag(IdTag("STRANGER", "Accepted", parent="AWAY"))

    await pg.unit(setup)
    clock = T0 + timedelta(hours=1)
    service = ChargingService(pg, clock=lambda: clock)
    before = pg.read_stats.batches
    answer = await v16.authorize(service, "ST1", {"idTag": stopper})
    assert answer == {"idTagInfo": {"status": "Accepted",
                                    "parentIdTag": "HOME" if stopper == "OWNER" else "AWAY"}}
    assert pg.read_stats.batches - before == 1
    txid, _, _ = await service.start_transaction("ST1", 1, "OWNER", Decimal(1000), T0)
    before = pg.read_stats.batches
    answer = await v16.stop_transaction(service, "ST1", {
        "transactionId": txid, "meterStop": 1500, "timestamp": "2026-03-01T10:30:00Z",
        "idTag": stopper})
    assert pg.read_stats.batches - before == 1
    if stopper == "OWNER":
        assert answer == {"idTagInfo": {"status": "Accepted", "parentIdTag": "HOME"}}
    else:  # §3.5.1: not the session's tag nor of its group
        assert answer == {"idTagInfo": {"status": "Invalid", "parentIdTag": "AWAY"}}
    session = await pg.read(lambda tx: tx.find_session("ST1", str(txid)))
    assert session is not None and session.energy_wh == 500


async def test_a_2_0_1_meter_value_reads_its_cost_in_its_own_unit(
    pg: PostgresRepository,
) -> None:
    """2.0.1 I02: an Updated TransactionEvent's answer carries the cost so far, read in the
    unit that stores the event: no batch of reads after it (most of a 2.0.1 station's
    messages). An Ended one with its token reads only the token's group and the stop
    check after its unit, in one batch."""
    from csms.domain.tariff import Tariff
    from csms.translate import v201

    async def setup(tx: Tx) -> None:
        await tx.insert_station(Station("ST1", created_at=T0))
        await tx.put_tag(IdTag("OWNER", "Accepted", parent="HOME"))
        await tx.add_tariff(Tariff("*", Decimal("0.30"), "EUR", 2, Decimal(0), Decimal("0.50"),
                                   valid_from=T0 - timedelta(days=1)))

    await pg.unit(setup)
    service = ChargingService(pg, clock=lambda: T0 + timedelta(minutes=30))

    def event(kind: str, seq: int, wh: int, **more: Any) -> dict[str, Any]:
        return {"eventType": kind, "timestamp": f"2026-03-01T10:{seq:02d}:00Z",
                "triggerReason": "MeterValuePeriodic", "seqNo": seq,
                "transactionInfo": {"transactionId": "TX1"}, "evse": {"id": 1, "connectorId": 1},
                "meterValue": [{"timestamp": f"2026-03-01T10:{seq:02d}:00Z", "sampledValue": [
                    {"value": wh, "measurand": "Energy.Active.Import.Register"}]}], **more}

    token = {"idToken": "OWNER", "type": "ISO14443"}
    await v201.transaction_event(service, "ST1", event("Started", 0, 1000, idToken=token))
    before = pg.read_stats.batches
    answer = await v201.transaction_event(service, "ST1", event("Updated", 1, 3000))
    assert pg.read_stats.batches == before  # the cost came with the unit
    assert answer["totalCost"] == 1.10  # 0.50 + 2 kWh x 0.30
    before = pg.read_stats.batches
    answer = await v201.transaction_event(service, "ST1", event(
        "Ended", 2, 4000, idToken=token, transactionInfo={"transactionId": "TX1",
                                                          "stoppedReason": "Local"}))
    assert pg.read_stats.batches - before == 1
    assert answer["idTokenInfo"] == {"status": "Accepted", "groupIdToken": {
        "idToken": "HOME", "type": "Central"}}
    assert answer["totalCost"] == 1.40  # final: 3 kWh


async def test_2_0_1_starts_reading_the_master_pass_group_do_not_wait_for_each_other(
    pg: PostgresRepository,
) -> None:
    """Every 2.0.1 Started event with a token reads the master pass group (C16), the same
    row for all stations. Only the operator writes it: the units of a batch read it at
    once. Had they waited for each other on it, as on a session's row, a batch of
    twenty starts would take twenty units' rounds one after another (found under load:
    2.0.1 at 1,000 stations had a p99 of seconds on PostgreSQL)."""
    from csms.service.driver import MASTER_PASS_OPTION
    from csms.translate import v201

    async def setup(tx: Tx) -> None:
        await tx.set_central_option(MASTER_PASS_OPTION, "MASTERS")
        await tx.put_tag(IdTag("FLEET", "Accepted", parent="DEPOT"))
        await tx.put_tag(IdTag("BOSS", "Accepted", parent="MASTERS"))
        for i in range(STATIONS):
            await tx.insert_station(Station(f"ST{i}", created_at=T0))

    await pg.unit(setup)
    service = ChargingService(pg, clock=lambda: T0 + timedelta(minutes=5))

    def started(i: int, tag: str) -> dict[str, Any]:
        return {"eventType": "Started", "timestamp": "2026-03-01T10:00:00Z",
                "triggerReason": "Authorized", "seqNo": 0,
                "transactionInfo": {"transactionId": f"TX{i}"},
                "evse": {"id": 1, "connectorId": 1},
                "idToken": {"idToken": tag, "type": "ISO14443"}}

    rounds, batches = pg.round_stats.rounds, pg.round_stats.batches
    answers = await asyncio.gather(*(
        v201.transaction_event(service, f"ST{i}", started(i, "BOSS" if i == 7 else "FLEET"))
        for i in range(STATIONS)))
    assert pg.round_stats.in_sequence == 0
    used = pg.round_stats.rounds - rounds
    per_batch = used / (pg.round_stats.batches - batches)
    # a unit's own reads in turn (9 today), not one unit after another (159 before)
    assert per_batch < STATIONS, f"{used} rounds in {pg.round_stats.batches - batches} batches"
    # the group is read right: a master pass starting a transaction is refused (C16)
    for i, answer in enumerate(answers):
        assert answer["idTokenInfo"]["status"] == ("Invalid" if i == 7 else "Accepted")
    held = await pg.read(lambda tx: tx.find_session("ST7", "TX7"))
    assert held is not None and "master_pass_start" in held.flags


async def test_a_batch_of_1_6_starts_binds_their_cards_without_a_round_trip_of_their_own(
    pg: PostgresRepository,
) -> None:
    """A 1.6 StartTransaction stores its session and the card's link at the start (its
    payer, session_cards) in one statement: bound in a statement of its own, each start
    of a batch cost one round trip more, one after another, and the batch a round more."""
    from csms.translate import v16

    driver = "0x" + "aa" * 20

    async def setup(tx: Tx) -> None:
        await tx.link_card("CARD", driver, "0x00", "0x00", T0)
        await tx.put_tag(IdTag("CARD"))  # as csms drivers link does: an accepted tag
        for i in range(STATIONS):
            await tx.insert_station(Station(f"ST{i}", created_at=T0))

    await pg.unit(setup)
    service = ChargingService(pg, clock=lambda: T0 + timedelta(minutes=5))

    async def starts(minute: int) -> list[dict[str, Any]]:
        # each batch on connectors of its own: no session of the batch before runs there
        # (one that does is read once more, for its last reading: csms.service.sessions)
        return await asyncio.gather(*(v16.start_transaction(service, f"ST{i}", {
            "connectorId": 1 + minute, "idTag": "CARD" if i % 2 else "NOBODY",
            "meterStart": 1000,
            "timestamp": f"2026-03-01T10:{minute:02d}:00Z"}) for i in range(STATIONS)))

    await starts(0)  # the first batch prepares its statements
    trips, rounds, batches = (pg.round_stats.round_trips, pg.round_stats.rounds,
                              pg.round_stats.batches)
    answers = await starts(1)
    assert pg.round_stats.in_sequence == 0
    assert pg.round_stats.batches - batches == 1, "the starts did not share one batch"
    # each start's insert is a round trip of its own (its id is read back): a bind of its
    # own was another one, in a round more (6 rounds and 47 round trips, then 5 and 27;
    # 6 since a start reads its EVSE's other sessions, overlaps_session; 7 since it reads
    # its station's sessions in progress, at most max_connectors + 1 of them)
    assert pg.round_stats.rounds - rounds == 7
    assert pg.round_stats.round_trips - trips < 2 * STATIONS
    for i, answer in enumerate(answers):
        card = await pg.read(lambda tx, a=answer: tx.session_card(a["transactionId"]))
        assert card == ({"tag": "CARD", "driver": driver, "salt": "0x00", "commitment": "0x00"}
                        if i % 2 else
                        {"tag": "NOBODY", "driver": "", "salt": "", "commitment": ""})
