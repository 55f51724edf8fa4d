"""PostgreSQL only: migrations under an advisory lock, several nodes on one database."""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import asyncpg
import pytest

from csms.domain.model import IdTag, Session, Station
from csms.service.charging import ChargingService
from csms.service.ports import StorageError, Tx
from csms.storage.migrations import migrations_for
from csms.storage.postgres import PostgresRepository

T0 = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
START_KEY = "1|T1|2026-03-01T10:00:00+00:00|1000"


pytestmark = pytest.mark.postgres


@pytest.fixture(params=["in_rounds", "in_sequence"])
async def nodes(postgres_url: str, request: pytest.FixtureRequest,
                ) -> AsyncIterator[tuple[PostgresRepository, PostgresRepository]]:
    """Two central-system nodes on one database (deadlocks detected after 100 ms), their
    batches run in rounds or unit by unit."""
    url = postgres_url + "&deadlock_timeout=100ms"
    a = await PostgresRepository.open(url)
    b = await PostgresRepository.open(url)
    a.in_rounds = b.in_rounds = request.param == "in_rounds"
    try:
        yield a, b
    finally:
        await a.close()
        await b.close()


def _reruns(repo: PostgresRepository) -> int:
    """Units run again after a conflict, and batches run again unit by unit after one."""
    return repo.retries + repo.round_stats.in_sequence


async def _admin(url: str) -> asyncpg.Connection:
    return await asyncpg.connect(url)


async def test_two_nodes_starting_at_once_migrate_once(postgres_url: str) -> None:
    a, b = await asyncio.gather(PostgresRepository.open(postgres_url),
                                PostgresRepository.open(postgres_url))
    try:
        rows = await a.read(lambda tx: tx.fetchall("SELECT version FROM schema_migrations"))
        assert sorted(r["version"] for r in rows) == [m.version for m in migrations_for(
            "postgres")]
        assert await b.schema_version() == migrations_for("postgres")[-1].version
    finally:
        await a.close()
        await b.close()


async def test_migrations_wait_for_the_advisory_lock(postgres_url: str) -> None:
    schema = postgres_url.rsplit("search_path=", 1)[1]
    key = zlib.crc32(f"voltledger.migrations:{schema}".encode())
    holder = await _admin(postgres_url)
    try:
        await holder.execute("SELECT pg_advisory_lock($1)", key)  # another node is migrating
        opening = asyncio.create_task(PostgresRepository.open(postgres_url))
        await asyncio.sleep(0.3)
        assert not opening.done()
        assert await holder.fetchval("SELECT to_regclass('schema_migrations')") is None
        await holder.execute("SELECT pg_advisory_unlock($1)", key)
        repo = await asyncio.wait_for(opening, 10)
        await repo.close()
    finally:
        await holder.close()


async def test_start_key_race_between_two_nodes_gives_one_session(
    nodes: tuple[PostgresRepository, PostgresRepository], postgres_url: str,
) -> None:
    """A 1.6 StartTransaction retry reaches node B while node A's insert is uncommitted."""
    a, b = nodes
    inserted = asyncio.Event()
    release = asyncio.Event()
    a_pid: list[int] = []

    def start(hold: bool) -> Any:
        async def work(tx: Tx) -> str:
            # what ChargingService.start_transaction does: dedupe, else insert
            existing = await tx.find_session_by_start_key("CP1", START_KEY)
            if existing is not None:
                return existing.transaction_id
            session = Session("CP1", "ocpp1.6", "", T0, connector_id=1, id_tag="T1",
                              meter_start_wh=Decimal(1000), start_key=START_KEY)
            await tx.insert_session(session)
            if hold:
                row = await tx.fetchone("SELECT pg_backend_pid() AS pid")
                assert row is not None
                a_pid.append(row["pid"])
                inserted.set()
                await release.wait()
            return session.transaction_id

        return work

    on_a = asyncio.create_task(a.unit(start(hold=True)))
    await inserted.wait()
    on_b = asyncio.create_task(b.unit(start(hold=False)))
    watcher = await _admin(postgres_url)
    try:  # wait until B's insert is blocked behind A's uncommitted row
        async with asyncio.timeout(10):
            while not await watcher.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE $1 = ANY(pg_blocking_pids(pid))",
                a_pid[0],
            ):
                await asyncio.sleep(0.01)
    finally:
        await watcher.close()
    release.set()
    txid_a, txid_b = await asyncio.gather(on_a, on_b)
    assert txid_a == txid_b
    # B's insert collided once: its unit ran again (in rounds: its batch, unit by unit)
    assert (_reruns(a), _reruns(b)) == (0, 1)
    rows = await a.read(lambda tx: tx.fetchall("SELECT id FROM sessions"))
    assert len(rows) == 1


async def test_start_transaction_retries_on_two_nodes_share_one_transaction_id(
    nodes: tuple[PostgresRepository, PostgresRepository],
) -> None:
    a, b = nodes
    await a.unit(lambda tx: tx.put_tag(IdTag("T1")))
    services = [ChargingService(a), ChargingService(b)]

    async def start(i: int) -> int:
        txid, _, _ = await services[i % 2].start_transaction(
            "CP1", 1, "T1", Decimal(1000), T0)
        return txid

    txids = await asyncio.gather(*(start(i) for i in range(20)))
    assert len(set(txids)) == 1
    rows = await a.read(lambda tx: tx.fetchall("SELECT transaction_id FROM sessions"))
    assert rows == [{"transaction_id": str(txids[0])}]


async def test_transaction_event_seq_no_is_recorded_once_across_nodes(
    nodes: tuple[PostgresRepository, PostgresRepository],
) -> None:
    a, b = nodes
    sid = await a.unit(lambda tx: tx.insert_session(Session(
        station_id="EV1", ocpp_version="ocpp2.0.1", transaction_id="tx1", started_at=T0)))

    def record(seq_no: int) -> Any:
        async def work(tx: Tx) -> bool:
            return await tx.record_tx_event(sid, seq_no)

        return work

    firsts = await asyncio.gather(*(r.unit(record(s)) for s in range(10) for r in (a, b)))
    assert sum(firsts) == 10  # each seqNo new exactly once, on one of the nodes
    row = await a.read(lambda tx: tx.fetchone("SELECT count(*) AS n FROM tx_events"))
    assert row == {"n": 10}


async def test_a_genuine_duplicate_is_reported_after_one_retry(
    nodes: tuple[PostgresRepository, PostgresRepository],
) -> None:
    a, b = nodes
    await a.unit(lambda tx: tx.insert_station(Station("CP1", created_at=T0)))

    async def duplicate(tx: Tx) -> None:
        await tx.insert_station(Station("CP1", created_at=T0))

    results = await asyncio.gather(b.unit(duplicate), b.unit(lambda tx: tx.put_tag(IdTag("T"))),
                                   return_exceptions=True)
    assert isinstance(results[0], StorageError)
    assert "23505" in str(results[0])
    assert results[1] is None
    assert b.retries == 1
    assert [t.tag for t in await a.read(lambda tx: tx.list_tags())] == ["T"]


async def test_a_deadlock_between_two_nodes_batches_is_retried(
    nodes: tuple[PostgresRepository, PostgresRepository],
) -> None:
    a, b = nodes

    async def setup(tx: Tx) -> None:
        await tx.insert_station(Station("X", created_at=T0))
        await tx.insert_station(Station("Y", created_at=T0))

    await a.unit(setup)
    a_holds_x = asyncio.Event()
    b_holds_y = asyncio.Event()

    async def on_a(tx: Tx) -> str:
        await tx.touch_station("X", T0)
        a_holds_x.set()
        await b_holds_y.wait()
        await tx.touch_station("Y", T0)  # waits for B, which waits for A: deadlock
        return "a"

    async def on_b(tx: Tx) -> str:
        await a_holds_x.wait()
        await tx.touch_station("Y", T0)
        b_holds_y.set()
        await tx.touch_station("X", T0)
        return "b"

    results = await asyncio.wait_for(asyncio.gather(a.unit(on_a), b.unit(on_b)), 20)
    assert list(results) == ["a", "b"]
    assert _reruns(a) + _reruns(b) >= 1  # the deadlock victim ran again (twice under load)


async def test_reads_are_read_only(nodes: tuple[PostgresRepository, PostgresRepository]) -> None:
    a, _ = nodes
    with pytest.raises(StorageError, match="read-only"):
        await a.read(lambda tx: tx.put_tag(IdTag("T1")))


async def test_a_lost_connection_fails_the_batch_and_the_next_one_works(
    nodes: tuple[PostgresRepository, PostgresRepository],
) -> None:
    a, _ = nodes

    async def killed(tx: Tx) -> None:
        await tx.put_tag(IdTag("LOST1"))
        await tx.execute("SELECT pg_terminate_backend(pg_backend_pid())")

    results = await asyncio.gather(a.unit(lambda tx: tx.put_tag(IdTag("LOST0"))),
                                   a.unit(killed), return_exceptions=True)
    assert all(isinstance(r, StorageError) for r in results), results
    await a.unit(lambda tx: tx.put_tag(IdTag("KEPT")))
    assert [t.tag for t in await a.read(lambda tx: tx.list_tags())] == ["KEPT"]


async def test_a_batch_waits_for_another_nodes_row_lock_a_bounded_time(
    postgres_url: str,
) -> None:
    a = await PostgresRepository.open(postgres_url)
    b = await PostgresRepository.open(postgres_url, lock_timeout=0.2)
    try:
        await a.unit(lambda tx: tx.insert_station(Station("X", created_at=T0)))
        a_holds_x = asyncio.Event()
        release = asyncio.Event()

        async def hold(tx: Tx) -> None:
            await tx.touch_station("X", T0)
            a_holds_x.set()
            await release.wait()  # node a's batch keeps the row locked meanwhile

        holder = asyncio.create_task(a.unit(hold))
        await a_holds_x.wait()
        # node b's unit gives up waiting, runs again (the lock is still held), then fails:
        # an error the station retries, not a batch stuck behind another node's
        results = await asyncio.gather(b.unit(lambda tx: tx.touch_station("X", T0)),
                                       b.unit(lambda tx: tx.put_tag(IdTag("FREE"))),
                                       return_exceptions=True)
        assert isinstance(results[0], StorageError) and "55P03" in str(results[0])
        assert results[1] is None  # the other units of the batch are committed
        assert b.retries == 3
        release.set()
        await holder
        await b.unit(lambda tx: tx.touch_station("X", T0))  # free again
    finally:
        await a.close()
        await b.close()


@pytest.mark.parametrize(("processes", "committers"), [(1, 2), (2, 1), (3, 1)])
async def test_the_workers_of_one_machine_share_the_batches_in_flight(
    postgres_url: str, processes: int, committers: int,
) -> None:
    """csms serve --workers N: each worker's repository runs fewer batches at once, so
    the machine's cores are not split into ever smaller batches (at least one each)."""
    from csms.storage import open_repository

    repo = await open_repository(postgres_url, processes)
    try:
        assert isinstance(repo, PostgresRepository)
        assert repo.parallel == committers
        done: list[str] = []

        def unit(name: str, seconds: float) -> Any:
            async def work(tx: Tx) -> None:
                await tx.fetchone("SELECT pg_sleep(?::float8) AS slept", seconds)
                done.append(name)
            return work

        slow = asyncio.create_task(repo.unit(unit("slow", 1.0)))
        await asyncio.sleep(0.2)  # its batch is running
        await asyncio.gather(slow, repo.unit(unit("quick", 0.0)))
        # a second committer takes the quick unit at once; with one, it waits its turn
        assert done == (["quick", "slow"] if committers > 1 else ["slow", "quick"])
    finally:
        await repo.close()
