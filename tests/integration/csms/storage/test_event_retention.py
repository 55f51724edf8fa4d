"""Station events past the retention period, deleted in bounded units
(csms.service.retention) on SQLite and PostgreSQL: a flooding station's table is bounded,
and what a billing decision still needs stays."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from csms.domain.model import Session, SessionStatus, Station
from csms.service.ports import Repository, Tx
from csms.service.retention import RETENTION_LEASE, prune_station_events

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
CUTOFF = NOW - timedelta(days=90)


async def _events(repo: Repository, station_id: str, kind: str, count: int,
                  first: datetime, step: timedelta) -> None:
    async def work(tx: Tx) -> None:
        for i in range(count):
            await tx.add_station_event(station_id, kind, {"n": i, "pad": "x" * 200},
                                       first + i * step)

    await repo.unit(work)


async def _count(repo: Repository, station_id: str) -> int:
    return len(await repo.read(lambda tx: tx.list_station_events(station_id, limit=100_000)))


async def _station(repo: Repository, station_id: str) -> None:
    await repo.unit(lambda tx: tx.insert_station(Station(station_id, created_at=NOW
                                                         - timedelta(days=400))))


async def test_a_flooding_station_table_is_bounded_by_the_retention(
        repo: Repository) -> None:
    await _station(repo, "FLOOD")
    # 200 days of a station at its quota, a row every hour (shortened: 4,800 rows), then
    # 30 days within the retention period
    await _events(repo, "FLOOD", "data_transfer", 24 * 200, NOW - timedelta(days=230),
                  timedelta(hours=1))
    await _events(repo, "FLOOD", "data_transfer", 24 * 30, NOW - timedelta(days=30),
                  timedelta(hours=1))
    units: list[int] = []
    result = await prune_station_events(repo, CUTOFF, batch=1000, pause=0,
                                        progress=lambda done, step: units.append(step))
    assert result.deleted == 24 * 140 + 0  # older than 90 days: days 230..91 ago
    assert result.kept == 0
    assert await _count(repo, "FLOOD") == 24 * 200 + 24 * 30 - result.deleted
    # a short unit each: never more than the batch
    assert units and max(units) <= 1000 and sum(units) == result.deleted
    assert len(units) >= result.deleted // 1000
    again = await prune_station_events(repo, CUTOFF, batch=1000, pause=0)
    assert (again.deleted, again.kept) == (0, 0)


async def test_events_at_the_cutoff_stay(repo: Repository) -> None:
    await _station(repo, "CP1")
    await _events(repo, "CP1", "security", 1, CUTOFF - timedelta(microseconds=1),
                  timedelta(0))
    await _events(repo, "CP1", "security", 1, CUTOFF, timedelta(0))
    result = await prune_station_events(repo, CUTOFF, pause=0)
    assert result.deleted == 1
    rows = await repo.read(lambda tx: tx.list_station_events("CP1"))
    assert [r["ts"] for r in rows] == [CUTOFF.isoformat(timespec="microseconds")]


async def _session(tx: Tx, tid: str, *, completed: bool = True,
                   flags: tuple[str, ...] = (), settlement_state: str | None = None) -> int:
    session = Session(station_id="CP1", ocpp_version="ocpp1.6", transaction_id=tid,
                      started_at=NOW - timedelta(days=200), connector_id=1, evse_id=1,
                      id_tag="T1", meter_start_wh=Decimal("1000"))
    session_id = await tx.insert_session(session)
    if completed or flags:
        got = await tx.get_session(session_id)
        assert got is not None
        if completed:
            got.status = SessionStatus.COMPLETED
            got.stopped_at = NOW - timedelta(days=199)
        for flag in flags:
            got.flag(flag)
        await tx.update_session(got)
    if settlement_state is not None:
        await tx.execute("UPDATE sessions SET settlement_state = ? WHERE id = ?",  # type: ignore[attr-defined]
                         settlement_state, session_id)
    return session_id


async def test_what_an_unsettled_session_needs_stays(repo: Repository) -> None:
    await _station(repo, "CP1")
    old = NOW - timedelta(days=180)

    async def setup(tx: Tx) -> dict[str, int]:
        ids = {
            "held": await _session(tx, "1", flags=("unknown_transaction",)),
            "queued": await _session(tx, "2"),
            "batched": await _session(tx, "3", settlement_state="batched"),
            "active": await _session(tx, "4", completed=False),
            "paid": await _session(tx, "5", settlement_state="paid"),
            "unpaid": await _session(tx, "6", settlement_state="unpaid"),
            "rejected": await _session(tx, "7", flags=("unknown_transaction", "rejected")),
        }
        for name, session_id in ids.items():
            await tx.add_station_event("CP1", "billing_hold",
                                       {"session_id": session_id, "case": name}, old)
        # another session named beside the event's own (an overlap, a reused id)
        await tx.add_station_event("CP1", "sessions_overlap",
                                   {"session_id": ids["paid"], "other_session_id": ids["held"],
                                    "case": "overlaps held"}, old)
        await tx.add_station_event("CP1", "billing_hold",
                                   {"session_id": 10**9, "case": "no such session"}, old)
        await tx.add_station_event("CP1", "billing_hold",
                                   {"session_id": "junk", "case": "not a number"}, old)
        return ids

    ids = await repo.unit(setup)
    result = await prune_station_events(repo, CUTOFF, batch=2, pause=0)
    rows = await repo.read(lambda tx: tx.list_station_events("CP1"))
    assert sorted(r["payload"]["case"] for r in rows) == sorted(
        ["held", "queued", "batched", "active", "overlaps held"])
    assert (result.deleted, result.kept) == (5, 5)

    # once the held session is decided and paid, its events go at the next run
    async def settle(tx: Tx) -> None:
        for name in ("held", "queued", "batched", "active"):
            await tx.execute("UPDATE sessions SET status = 'completed',"  # type: ignore[attr-defined]
                             " settlement_state = 'paid' WHERE id = ?", ids[name])

    await repo.unit(settle)
    result = await prune_station_events(repo, CUTOFF, pause=0)
    assert (result.deleted, result.kept) == (5, 0)
    assert await _count(repo, "CP1") == 0


async def test_a_node_without_the_lease_deletes_nothing(repo: Repository) -> None:
    await _station(repo, "CP1")
    await _events(repo, "CP1", "security", 10, NOW - timedelta(days=200), timedelta(hours=1))
    assert await repo.unit(lambda tx: tx.take_lease(RETENTION_LEASE, "node-a",
                                                    timedelta(minutes=5)))
    result = await prune_station_events(repo, CUTOFF, pause=0, holder="node-b")
    assert (result.deleted, result.stopped) == (0, True)
    assert await _count(repo, "CP1") == 10
    result = await prune_station_events(repo, CUTOFF, pause=0, holder="node-a")
    assert (result.deleted, result.stopped) == (10, False)
