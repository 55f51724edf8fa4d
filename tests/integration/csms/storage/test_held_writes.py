"""Writes a unit does not read back (``Tx.write``): PostgreSQL holds them and sends them
with the unit's next statement; on both engines they behave like any other statement."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from csms.domain.model import MeterSample, Session, Station
from csms.service.ports import Repository, StorageError, Tx

T0 = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
HOSTILE = [
    "x'); DROP TABLE sessions; --",
    "back\\slash\\' and ''quotes''",
    "$1 ? $$ E'\\x41' ; COMMIT; ROLLBACK",
    "Zähler ⚡ \n\t\r",
    "",
]


async def _setup(tx: Tx) -> int:
    await tx.insert_station(Station("CP1", created_at=T0))
    return await tx.insert_session(Session(
        station_id="CP1", ocpp_version="ocpp1.6", transaction_id="", started_at=T0,
        connector_id=1, evse_id=1, id_tag="T1", meter_start_wh=Decimal("1000")))


async def test_hostile_text_is_stored_exactly_and_nothing_else_runs(repo: Repository) -> None:
    session_id = await repo.unit(_setup)

    async def work(tx: Tx) -> None:
        await tx.add_samples(
            "CP1", [MeterSample(T0, value=text, unit=text, phase=text or None) for text in HOSTILE],
            session_id=session_id, evse_id=1, connector_id=1, transaction_id=str(session_id))
        for text in HOSTILE:
            await tx.add_station_event("CP1", text or "empty", {"note": text}, T0)
        session = await tx.get_session(session_id)
        assert session is not None
        session.stop_reason = HOSTILE[0]
        session.flag(HOSTILE[1])
        await tx.update_session(session)

    await repo.unit(work)
    samples = await repo.read(lambda tx: tx.session_samples(session_id))
    assert [(s.value, s.unit, s.phase) for s in samples] == \
        [(t, t, t or None) for t in HOSTILE]
    events = await repo.read(lambda tx: tx.list_station_events("CP1"))
    assert sorted(e["payload"]["note"] for e in events) == sorted(HOSTILE)
    session = await repo.read(lambda tx: tx.get_session(session_id))
    assert session is not None
    assert session.stop_reason == HOSTILE[0]
    assert HOSTILE[1] in session.flags
    assert await repo.read(lambda tx: tx.count_sessions()) == {"active": 1}


async def test_a_unit_reads_its_own_held_writes(repo: Repository) -> None:
    session_id = await repo.unit(_setup)

    async def work(tx: Tx) -> tuple[int, str | None]:
        await tx.add_samples("CP1", [MeterSample(T0, value="1500")], session_id=session_id,
                             evse_id=1, connector_id=1, transaction_id=str(session_id))
        session = await tx.get_session(session_id)
        assert session is not None
        session.stop_reason = "Remote"
        await tx.update_session(session)
        again = await tx.get_session(session_id)
        assert again is not None
        return len(await tx.session_samples(session_id)), again.stop_reason

    assert await repo.unit(work) == (1, "Remote")


async def test_a_held_write_that_fails_fails_its_unit_only(repo: Repository) -> None:
    session_id = await repo.unit(_setup)

    async def orphan_samples(tx: Tx) -> None:
        await tx.add_station_event("CP1", "before", {}, T0)  # undone with the unit
        # no such session: the foreign key refuses the rows when they are sent
        await tx.add_samples("CP1", [MeterSample(T0, value="1")], session_id=session_id + 99,
                             evse_id=1, connector_id=1, transaction_id="x")

    async def nul_in_text(tx: Tx) -> None:
        await tx.add_station_event("CP1", "nul\x00", {}, T0)

    async def fine(tx: Tx) -> None:
        await tx.add_station_event("CP1", "kept", {}, T0)

    results = await asyncio.gather(repo.unit(orphan_samples), repo.unit(fine),
                                   repo.unit(nul_in_text), repo.unit(fine),
                                   return_exceptions=True)
    assert isinstance(results[0], StorageError)
    assert results[1] is None and results[3] is None
    if repo.dialect == "postgres":  # SQLite text may hold a NUL
        assert isinstance(results[2], StorageError)
    kinds = [e["kind"] for e in await repo.read(lambda tx: tx.list_station_events("CP1"))]
    assert "before" not in kinds
    assert kinds.count("kept") == 2


@pytest.mark.postgres
async def test_a_read_only_unit_refuses_held_writes(postgres_url: str) -> None:
    from csms.storage.postgres import PostgresRepository

    repo = await PostgresRepository.open(postgres_url)
    try:
        with pytest.raises(StorageError, match="read-only"):
            await repo.read(lambda tx: tx.add_station_event("CP1", "x", {}, T0))
    finally:
        await repo.close()
