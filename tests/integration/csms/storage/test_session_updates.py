"""A session's update writes only the columns that changed since the unit read it
(SQLite: every index over a column named in SET is rewritten, whatever the value),
and must leave the row exactly as the full update did, whatever came in between.

Differential: the same changes through the partial update and through the full one
(the copies of read rows turned off for that unit) give the same rows, on both
backends. Hostile orders: another statement writes the row after it was read, a unit
updates an object read by an earlier unit of the same batch, an earlier unit of the
batch failed and was rolled back after updating the same session.
"""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from csms.domain.model import Session, SessionStatus, Station
from csms.service.ports import Repository, Tx
from csms.storage.sql import SqlTx

T0 = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
ROW = ("SELECT station_id, connector_id, evse_id, id_tag, auth_status, ocpp_version,"
       " transaction_id, started_at, stopped_at, reported_meter_start_wh,"
       " reported_meter_stop_wh, meter_start_wh, meter_stop_wh, energy_wh, status,"
       " stop_reason, flags, last_seq_no, start_key, price_minor, settlement_state"
       " FROM sessions WHERE id = ?")


async def _new(repo: Repository, tx_id: str = "7") -> int:
    async def work(tx: Tx) -> int:
        if await tx.get_station("CP1") is None:
            await tx.insert_station(Station(id="CP1", created_at=T0))
        return await tx.insert_session(Session(
            station_id="CP1", ocpp_version="ocpp1.6", transaction_id=tx_id, started_at=T0,
            connector_id=1, evse_id=1, id_tag="T1", auth_status="Accepted",
            meter_start_wh=Decimal("1000"), reported_meter_start_wh=Decimal("1000"),
            energy_wh=0, start_key=f"k{tx_id}"))

    return await repo.unit(work)


async def _row(repo: Repository, sid: int) -> dict[str, Any] | None:
    return await repo.read(lambda tx: tx.fetchone(ROW, sid))


# one change of a session as a station's messages make them
CHANGES = st.lists(st.one_of(
    st.tuples(st.just("energy_wh"), st.integers(0, 10**9) | st.none()),
    st.tuples(st.just("meter_stop_wh"),
              st.decimals(0, 10**7, places=3, allow_nan=False) | st.none()),
    st.tuples(st.just("stopped_at"),
              st.integers(0, 10**6).map(lambda s: T0 + timedelta(seconds=s)) | st.none()),
    st.tuples(st.just("status"), st.sampled_from(list(SessionStatus))),
    st.tuples(st.just("stop_reason"), st.sampled_from([None, "Local", "EVDisconnected"])),
    st.tuples(st.just("flag"), st.sampled_from(["seq_gap", "late_samples", "held"])),
    st.tuples(st.just("last_seq_no"), st.integers(0, 2**31) | st.none()),
    st.tuples(st.just("id_tag"), st.sampled_from(["T1", "T2", None])),
    st.tuples(st.just("connector_id"), st.sampled_from([1, 2, None])),
), max_size=6)


def _apply(session: Session, change: tuple[str, Any]) -> None:
    name, value = change
    if name == "flag":
        session.flag(value)
    else:
        setattr(session, name, value)


async def _updates(repo: Repository, sid: int, steps: list[list[tuple[str, Any]]],
                   *, partial: bool) -> None:
    async def work(tx: Tx) -> None:
        if not partial:
            assert isinstance(tx, SqlTx)
            tx._session_rows = None  # the full update, as before
        session = await tx.get_session(sid)
        assert session is not None
        for changes in steps:  # several updates of one object in one unit
            for change in changes:
                _apply(session, change)
            await tx.update_session(session)

    await repo.unit(work)


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=st.lists(CHANGES, min_size=1, max_size=3))
async def test_partial_and_full_updates_leave_the_same_row(
        repo: Repository, steps: list[list[tuple[str, Any]]]) -> None:
    a, b = await _new(repo, "a"), await _new(repo, "b")
    try:
        await _updates(repo, a, steps, partial=True)
        await _updates(repo, b, steps, partial=False)
        row_a, row_b = await _row(repo, a), await _row(repo, b)
        assert row_a is not None and row_b is not None
        for row in (row_a, row_b):
            row.pop("transaction_id"), row.pop("start_key")
        assert row_a == row_b
    finally:
        async def drop(tx: Tx) -> None:
            await tx.execute("DELETE FROM sessions WHERE id IN (?, ?)", a, b)

        await repo.unit(drop)


async def test_a_write_between_read_and_update_does_not_survive(repo: Repository) -> None:
    """Read, then another statement changes the row, then the session's update: the row
    holds the object's values (as with the full update), not a mix."""
    sid = await _new(repo)

    async def work(tx: Tx) -> None:
        session = await tx.get_session(sid)
        assert session is not None
        await tx.execute("UPDATE sessions SET status = ?, stop_reason = ?, energy_wh = ?"
                         " WHERE id = ?", "completed", "Hostile", 5, sid)
        session.energy_wh = 7
        await tx.update_session(session)

    await repo.unit(work)
    row = await _row(repo, sid)
    assert row is not None
    assert (row["status"], row["stop_reason"], row["energy_wh"]) == ("active", None, 7)


async def test_a_unit_updating_an_object_of_an_earlier_unit(repo: Repository) -> None:
    """Unit 2 of the same batch updates the object unit 1 read and changed: it writes
    every column (it read nothing itself), so unit 1's write is overwritten in full."""
    sid = await _new(repo)
    held: list[Session] = []
    gate = asyncio.Event()

    async def first(tx: Tx) -> None:
        session = await tx.get_session(sid)
        assert session is not None
        held.append(session)
        session.energy_wh = 100
        await tx.update_session(session)
        other = dataclasses.replace(session, flags=list(session.flags), energy_wh=200,
                                    stop_reason="Other")
        await tx.update_session(other)  # the row now: 200, "Other"
        gate.set()

    async def second(tx: Tx) -> None:
        async with asyncio.timeout(10):  # units run in order: the first is done
            await gate.wait()
        (session,) = held  # energy 100 in the object; 200 in the row
        await tx.update_session(session)

    await asyncio.gather(repo.unit(first), repo.unit(second))
    row = await _row(repo, sid)
    assert row is not None
    assert (row["energy_wh"], row["stop_reason"]) == (100, None)


async def test_a_rolled_back_unit_leaves_no_copy_behind(repo: Repository) -> None:
    """Unit 1 reads the session, updates its energy, then fails: rolled back. Unit 2 of
    the same batch updates the object unit 1 changed: its energy must be written (the
    row holds the old one again), not skipped as already there."""
    sid = await _new(repo)
    held: list[Session] = []

    async def failing(tx: Tx) -> None:
        session = await tx.get_session(sid)
        assert session is not None
        session.energy_wh = 4242
        await tx.update_session(session)
        held[:] = [session]  # a unit may run twice (its batch run again, SQLite)
        raise RuntimeError("the unit fails after its update")

    async def second(tx: Tx) -> None:
        (session,) = held
        await tx.update_session(session)

    # the same batch: both queued before the committer runs
    f1 = asyncio.ensure_future(repo.unit(failing))

    async def after_first(tx: Tx) -> None:
        async with asyncio.timeout(10):
            while not held:  # the failing unit ran first in this batch
                await asyncio.sleep(0)
        await second(tx)

    f2 = asyncio.ensure_future(repo.unit(after_first))
    with pytest.raises(RuntimeError):
        await f1
    await f2
    row = await _row(repo, sid)
    assert row is not None and row["energy_wh"] == 4242


@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(changes=CHANGES, tx_given=st.booleans())
async def test_a_session_updated_in_the_unit_that_inserted_it(
        repo: Repository, changes: list[tuple[str, Any]], tx_given: bool) -> None:
    """A 2.0.1 start inserts the session and updates it in the same unit: the update
    after the insert (only the changed columns, on SQLite) leaves the row the full one
    leaves; so does a 1.6 start, whose transaction id the insert assigns."""
    rows = []
    for partial in (True, False):
        async def work(tx: Tx, partial: bool = partial) -> int:
            if not partial:
                assert isinstance(tx, SqlTx)
                tx._session_rows = None
            if await tx.get_station("CP1") is None:
                await tx.insert_station(Station(id="CP1", created_at=T0))
            session = Session(
                station_id="CP1", ocpp_version="ocpp2.0.1" if tx_given else "ocpp1.6",
                started_at=T0, connector_id=1,
                transaction_id=f"tx-{partial}" if tx_given else "", evse_id=1,
                id_tag="T1", auth_status="Accepted", meter_start_wh=Decimal("1000"),
                energy_wh=0, start_key=f"k-{partial}")
            sid = await tx.insert_session(session)
            for change in changes:
                _apply(session, change)
            await tx.update_session(session)
            return sid

        sid = await repo.unit(work)
        row = await _row(repo, sid)
        assert row is not None
        row.pop("transaction_id"), row.pop("start_key")
        rows.append(row)

        async def drop(tx: Tx, sid: int = sid) -> None:
            await tx.execute("DELETE FROM sessions WHERE id = ?", sid)

        await repo.unit(drop)
    assert rows[0] == rows[1]


async def test_two_objects_of_one_session_in_a_unit(repo: Repository) -> None:
    """The update skips a field that still holds the object the stored row was written
    from: with two objects of one session read in the same unit, each update is checked
    against the other's objects, and the row ends as the full updates leave it (the
    last update's values)."""
    rows = []
    for partial in (True, False):
        sid = await _new(repo, f"two-{partial}")

        async def work(tx: Tx, sid: int = sid, partial: bool = partial) -> None:
            if not partial:
                assert isinstance(tx, SqlTx)
                tx._session_rows = None
            first = await tx.get_session(sid)
            assert first is not None
            first.energy_wh = 50
            first.flag("seq_gap")
            await tx.update_session(first)
            second = await tx.get_session(sid)  # 50 and the flag, objects of its own
            assert second is not None and second.energy_wh == 50
            first.energy_wh, first.stop_reason = 60, "Local"
            first.flag("late_samples")
            await tx.update_session(first)
            await tx.update_session(second)  # back to what the row held at its read

        await repo.unit(work)
        row = await _row(repo, sid)
        assert row is not None
        row.pop("transaction_id"), row.pop("start_key")
        rows.append(row)
    assert rows[0] == rows[1]
    assert (rows[0]["energy_wh"], rows[0]["stop_reason"], rows[0]["flags"]) == (
        50, None, '["seq_gap"]')
