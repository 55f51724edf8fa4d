"""The ledger's next sequence number (``Tx.take_next_seq``): taken under a row lock, so
two settlement workers cutting at once on two nodes never give two chunks one number.

PostgreSQL: the row stays locked until the cutting transaction ends (in rounds too: the
statement is a write, never a plain read sent before BEGIN). SQLite: its one writer
serializes the cuts."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from csms.service.ports import Repository, Tx


async def _next(repo: Repository) -> int:
    async def work(tx: Tx) -> int:
        return await tx.take_next_seq()

    return await repo.unit(work)


async def test_the_first_number_is_one_and_then_what_was_written(repo: Repository) -> None:
    assert await _next(repo) == 1
    assert await _next(repo) == 1  # taking it writes nothing new

    async def cut(tx: Tx) -> int:
        first = await tx.take_next_seq()
        await tx.set_ledger_value("next_seq", str(first + 5))
        return first

    assert await repo.unit(cut) == 1
    assert await _next(repo) == 6


@pytest.mark.postgres
async def test_a_second_cut_waits_for_the_first_and_reads_its_number(
    two_nodes: tuple[Repository, Repository], postgres_url: str
) -> None:
    """Node a takes the next number (the ledger's first: its row is made now) and holds
    its transaction open; node b's cut waits for it, and then reads the number a wrote,
    not the one a read."""
    a, b = two_nodes
    held, release = asyncio.Event(), asyncio.Event()
    pids: list[int] = []

    async def first(tx: Tx) -> int:
        taken = await tx.take_next_seq()
        row = await tx.fetchone("SELECT pg_backend_pid() AS pid")  # type: ignore[attr-defined]
        pids.append(int(row["pid"]))
        held.set()
        await release.wait()
        await tx.set_ledger_value("next_seq", str(taken + 3))
        return taken

    cut_a = asyncio.ensure_future(a.unit(first))
    watch = await asyncpg.connect(postgres_url.split("?")[0])
    try:
        await asyncio.wait_for(held.wait(), 10)
        cut_b = asyncio.ensure_future(_next(b))

        async def b_waits_or_answered() -> None:
            while not cut_b.done() and not await watch.fetchval(
                    "SELECT count(*) FROM pg_stat_activity"
                    " WHERE pg_blocking_pids(pid) && $1::int[]", pids):
                await asyncio.sleep(0.02)

        await asyncio.wait_for(b_waits_or_answered(), 20)
        release.set()
        assert (await cut_a, await asyncio.wait_for(cut_b, 20)) == (1, 4)
    finally:
        release.set()
        await watch.close()
