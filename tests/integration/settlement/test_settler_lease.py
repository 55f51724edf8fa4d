"""Two nodes' settlement workers on one PostgreSQL database: the ``settlement`` lease is
what keeps them to one settler. A node whose clock runs ahead, and two workers that both
cut a chunk at the same moment, must not settle sessions in chunks the chain refuses.

When a lease expires is the database's clock: a test makes one expire as time passing on
it would, by writing its expiry in the past (:func:`_expire`)."""

from __future__ import annotations

import asyncio
import random
import threading
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from csms.service.cluster import acquire_lease, lease_holder
from csms.service.ports import Repository, Tx
from csms.storage.postgres import PostgresRepository
from settlement import worker as worker_module
from settlement.chain import Chain, ContractParams, open_chain
from settlement.worker import (
    LEASE,
    LEASE_TTL,
    LeaseHeld,
    LeaseLost,
    SettlementWorker,
    WorkerSummary,
)
from support.chainkit import Kit

from .conftest import add_sessions, link_driver

pytestmark = pytest.mark.postgres

# add_sessions: session i has (700 + i) Wh at 0.40 EUR/kWh, tag TAG{i % 3}
PRICE = {i + 1: round((700 + i) * 0.40 / 10) for i in range(20)}


def _real_now() -> datetime:
    return datetime.now(UTC)


@pytest.fixture
async def two_nodes(postgres_url: str) -> AsyncIterator[tuple[Repository, Repository]]:
    # two nodes; a lock wait of up to a minute (5 s in production) lets the slow in-process
    # chain bring the second worker to the moment the test holds the first one at
    a = await PostgresRepository.open(postgres_url, lock_timeout=60)
    b = await PostgresRepository.open(postgres_url, lock_timeout=60)
    a.in_rounds = b.in_rounds = False  # unit by unit, as a batch that falls back runs
    try:
        yield a, b
    finally:
        await a.close()
        await b.close()


@pytest.fixture
def chain(tmp_path: Path) -> Chain:
    return open_chain("memory", tmp_path / "chain", params=ContractParams(fee_bps=500))


async def _holder(repo: Repository) -> str | None:
    async def work(tx: Tx) -> str | None:
        return await lease_holder(tx, LEASE)

    return await repo.read(work)


async def _connect(postgres_url: str) -> asyncpg.Connection:
    return await asyncpg.connect(postgres_url.split("?")[0],
                                 server_settings={"search_path": postgres_url.split("=")[-1]})


async def _expire(conn: asyncpg.Connection) -> None:
    """The settlement lease's time is up, by the database's clock (31 s on): it waits for
    a transaction that holds the lease's row, as a taker would."""
    await conn.execute("UPDATE leases SET expires_at = '2000-01-01T00:00:00+00:00'"
                       " WHERE name = $1", LEASE)


async def test_a_node_whose_clock_runs_ahead_does_not_take_the_lease_another_node_holds(
    two_nodes: tuple[Repository, Repository], chain: Chain, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Node a's worker holds the lease (renewed every second, 30 s ahead of its clock).
    Node b's clock runs 10 minutes ahead: for b the lease expired long ago, and b takes
    it while a goes on settling; two settlers on one database is what the lease exists to
    prevent. Whether a lease has expired must not depend on the clock of the node that
    asks (the database's own clock judges it, or the holder's time to live)."""
    a, b = two_nodes
    await add_sessions(a, 2)

    async def take(tx: Tx) -> bool:
        return await acquire_lease(tx, LEASE, "node-a", LEASE_TTL)

    assert await a.unit(take)  # node a's worker is settling
    monkeypatch.setattr(worker_module, "_now", lambda: _real_now() + timedelta(minutes=10))
    with pytest.raises(LeaseHeld, match="node-a"):
        await SettlementWorker(b, chain, holder="node-b").run_once()
    monkeypatch.setattr(worker_module, "_now", _real_now)
    assert await _holder(a) == "node-a"


async def _blocked_by(conn: asyncpg.Connection, pids: list[int]) -> list[int]:
    """The server processes that wait for a lock one of ``pids`` holds."""
    rows = await conn.fetch("SELECT pid FROM pg_stat_activity"
                            " WHERE pg_blocking_pids(pid) && $1::int[]", pids)
    return [int(r["pid"]) for r in rows]


async def _wait_until(check: Any) -> Any:
    async with asyncio.timeout(50):
        while not (found := await check()):
            await asyncio.sleep(0.02)
    return found


async def test_two_workers_cutting_at_once_never_give_two_chunks_one_sequence_number(
    two_nodes: tuple[Repository, Repository], chain: Chain, postgres_url: str
) -> None:
    """Two workers that both believe they settle cut at the same moment: a holder whose
    pass outlived its lease (a slow chain; its cut began while the lease was its own) and
    the node that takes the expired lease over. If each read the ledger's next sequence
    number before the other commits, both chunks start at the same number: the chain takes
    one; the other is a "conflict" and its driver's session is never paid to its host (or
    the ledger falls behind the chain and settlement stops). Every completed session must
    end paid exactly once: a cut holds the lease's row and the ledger's next number until
    it commits, so the other worker waits for it and then cuts after it."""
    a, b = two_nodes
    kit = Kit(chain)
    driver, _ = await link_driver(a, kit, "TAG0")
    driver1, _ = await link_driver(a, kit, "TAG1")
    await add_sessions(a, 2)  # session 1 (TAG0), session 2 (TAG1)

    async def unqueue(tx: Tx) -> None:  # session 1 completes later
        await tx.dequeue_settlement(1)

    await a.unit(unqueue)
    # a's lease lives 5 s from each renewal (its last: the cut); b's is as in production
    short = timedelta(seconds=5)
    wa = SettlementWorker(a, chain, holder="node-a", lease_ttl=short)
    wb = SettlementWorker(b, chain, holder="node-b", batch_size=1)
    lock = await _connect(postgres_url)
    try:
        tr = lock.transaction()
        await tr.start()
        # the moment both cut: their inserts of a batch wait here
        await lock.execute("LOCK TABLE batches IN SHARE MODE")
        me = lock.get_server_pid()
        run_a = asyncio.create_task(wa.run_once())
        (a_pid,) = await _wait_until(lambda: _blocked_by(lock, [me]))
        # a's lease runs out while its cut waits (as a slow chain makes it): 5 s after its
        # cut began, by the database's clock
        await lock.execute("SELECT pg_sleep($1)", short.total_seconds() + 0.1)

        async def requeue(tx: Tx) -> None:
            await tx.enqueue_settlement(1, _real_now())

        await b.unit(requeue)
        run_b = asyncio.create_task(wb.run_once())  # takes the lease a no longer holds

        async def b_waiting() -> bool:  # or b done (refused, or settled)
            return run_b.done() or bool(set(await _blocked_by(lock, [me, a_pid])) - {a_pid})

        await _wait_until(b_waiting)
        await tr.commit()
        outcomes = await asyncio.gather(run_a, run_b, return_exceptions=True)
    finally:
        await lock.close()
    # node a stopped at its next step (the lease is b's), node b settled
    assert isinstance(outcomes[0], LeaseHeld), outcomes
    assert isinstance(outcomes[1], WorkerSummary), outcomes
    # whatever the two passes did, a worker alone settles what is left
    await SettlementWorker(a, chain, holder="node-c").run_once()

    async def states(tx: Tx) -> dict[int, Any]:
        return {sid: (await tx.session_settlement(sid))["settlement_state"] for sid in (1, 2)}

    assert await a.read(states) == {1: "paid", 2: "paid"}, outcomes
    assert kit.balance(driver) == 10**6 - PRICE[1]
    assert kit.balance(driver1) == 10**6 - PRICE[2]


def _take_over(postgres_url: str, taken: list[bool]) -> Callable[[int], None]:
    """A hook: node b takes the settlement lease over (once), node a's having expired."""

    def node_b_takes_over(_batch: int) -> None:
        if taken:
            return

        async def take() -> None:
            conn = await _connect(postgres_url)
            try:
                await _expire(conn)
            finally:
                await conn.close()
            repo = await PostgresRepository.open(postgres_url)
            try:
                async def work(tx: Tx) -> bool:
                    return await acquire_lease(tx, LEASE, "node-b", LEASE_TTL)

                taken.append(await repo.unit(work))
            finally:
                await repo.close()

        thread = threading.Thread(target=lambda: asyncio.run(take()))
        thread.start()
        thread.join()

    return node_b_takes_over


async def test_a_worker_whose_lease_another_node_took_over_cuts_no_more_chunks(
    two_nodes: tuple[Repository, Repository], chain: Chain, postgres_url: str
) -> None:
    """Node a's pass outlives its lease (a chain endpoint that answers slowly), node b
    takes the lease over, and a must not go on cutting and settling as if it still held
    it: two settlers at once (above). Once another node holds the lease, a's next chunk
    is not cut (the cut checks, in its own transaction, that its worker still holds the
    lease) and its pass stops."""
    a, _ = two_nodes
    await add_sessions(a, 2)
    taken: list[bool] = []
    wa = SettlementWorker(a, chain, holder="node-a", batch_size=1,
                          hooks={"after_cut": _take_over(postgres_url, taken)})
    with pytest.raises(LeaseLost, match=r"node-a no longer holds the lease.*node-b"):
        await wa.run_once()
    assert taken == [True]

    async def cut(tx: Tx) -> list[str]:
        return [b["state"] for b in
                await tx.ledger_batches(int(await tx.ledger_value("ledger_id") or 0))]

    assert await a.read(cut) == ["pending"]  # the chunk cut before b took over, no more
    assert await _holder(a) == "node-b"


async def test_a_worker_whose_lease_another_node_took_over_sends_nothing(
    two_nodes: tuple[Repository, Repository], chain: Chain, postgres_url: str
) -> None:
    """Node b takes the lease over after node a signed a chunk's transaction: a neither
    sends it nor moves the batch on (each step that writes renews the lease first, and
    stops the pass once it is another's); node b, settling now, sends it."""
    a, b = two_nodes
    await add_sessions(a, 1)
    taken: list[bool] = []
    wa = SettlementWorker(a, chain, holder="node-a",
                          hooks={"after_sign": _take_over(postgres_url, taken)})
    with pytest.raises(LeaseLost, match="node-b"):
        await wa.run_once()
    assert taken == [True]

    async def states(tx: Tx) -> list[str]:
        return [b["state"] for b in
                await tx.ledger_batches(int(await tx.ledger_value("ledger_id") or 0))]

    assert await a.read(states) == ["signed"]
    ledger = int(await a.read(lambda tx: tx.ledger_value("ledger_id")) or 0)
    assert chain.ledger_next(ledger) == 1  # nothing sent
    summary = await SettlementWorker(b, chain, holder="node-b").run_once()
    assert (summary.finalized, await a.read(states)) == (1, ["finalized"])


async def test_a_running_worker_that_loses_its_lease_in_a_pass_stands_by(
    two_nodes: tuple[Repository, Repository], chain: Chain, postgres_url: str
) -> None:
    """``run_forever`` (what ``csms serve`` and ``csms settle worker`` run): node b takes
    the lease over in the middle of node a's pass. The pass stops before its next write
    (the chunk stays as cut: b settles it), and a stands by while b holds the lease."""
    a, _ = two_nodes
    await add_sessions(a, 1)
    taken: list[bool] = []
    wa = SettlementWorker(a, chain, holder="node-a", max_wait=0,
                          hooks={"after_cut": _take_over(postgres_url, taken)})
    stop = asyncio.Event()
    passes_after: list[BaseException | None] = []

    def on_step(error: BaseException | None) -> None:
        if taken:
            passes_after.append(error)
        if len(passes_after) >= 3:
            stop.set()

    await asyncio.wait_for(wa.run_forever(stop, interval=0.05, on_step=on_step), 40)
    assert taken == [True]
    assert passes_after == [None, None, None]  # standing by is no failure

    async def states(tx: Tx) -> list[str]:
        return [b["state"] for b in
                await tx.ledger_batches(int(await tx.ledger_value("ledger_id") or 0))]

    assert await a.read(states) == ["pending"]
    assert await _holder(a) == "node-b"


class _Jittery(SettlementWorker):
    """A worker whose every chain call is a little late, by a seeded random amount: two
    of them interleave differently with each seed."""

    def __init__(self, *args: Any, rng: random.Random, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.rng = rng

    async def _chain(self, fn: Callable[..., Any], *args: Any) -> Any:
        await asyncio.sleep(self.rng.uniform(0, 0.02))
        return await super()._chain(fn, *args)


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_two_workers_run_under_one_name_on_purpose_never_settle_a_session_twice(
    two_nodes: tuple[Repository, Repository], chain: Chain, seed: int
) -> None:
    """A dishonest operator runs two workers on two nodes under one holder name, so the
    lease never keeps either out, to have its drivers pay twice. Whatever the interleaving
    (chain calls delayed at random), a session is in one chunk, each chunk has numbers of
    its own, the chain holds every chunk the database cut, and each driver's escrow pays
    each of its sessions once."""
    a, b = two_nodes
    a.in_rounds = b.in_rounds = seed % 2 == 1  # type: ignore[attr-defined]
    kit = Kit(chain)
    drivers = [(await link_driver(a, kit, f"TAG{i}"))[0] for i in range(3)]
    sessions = await add_sessions(a, 6)  # tag TAG{i % 3}
    rng = random.Random(seed)
    workers = [_Jittery(repo, chain, holder="operator", batch_size=1, rng=rng)
               for repo in (a, b, a, b)]
    outcomes = await asyncio.gather(*(w.run_once() for w in workers), return_exceptions=True)
    # whatever the four passes did (one that finishes first gives the shared lease up, so
    # another may stop with LeaseLost), one worker settles what is left, one session a chunk
    await SettlementWorker(a, chain, holder="operator", batch_size=1).run_once()

    async def settled(tx: Tx) -> tuple[list[dict[str, Any]], dict[int, Any]]:
        ledger = int(await tx.ledger_value("ledger_id") or 0)
        return (await tx.ledger_batches(ledger),
                {sid: (await tx.batch_of_session(sid),
                       (await tx.session_settlement(sid))["settlement_state"])
                 for sid in sessions})

    batches, by_session = await a.read(settled)
    assert [b["state"] for b in batches] == ["finalized"] * len(batches), outcomes
    assert [(b["first_seq"], b["count"]) for b in batches] == [
        (n, 1) for n in range(1, len(sessions) + 1)]
    assert sorted(batch for batch, _ in by_session.values()) == sorted(
        b["id"] for b in batches)  # one chunk each, one session a chunk
    assert {state for _, state in by_session.values()} == {"paid"}
    ledger = int(await a.read(lambda tx: tx.ledger_value("ledger_id")) or 0)
    assert chain.ledger_next(ledger) == len(sessions) + 1
    for i, driver in enumerate(drivers):
        paid = sum(PRICE[sid] for sid in sessions if (sid - 1) % 3 == i)
        assert kit.balance(driver) == 10**6 - paid
