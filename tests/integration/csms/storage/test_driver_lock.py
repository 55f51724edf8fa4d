"""A driver's lock (``Tx.lock_driver``): held by a unit's transaction until it commits, so a
coverage check and the session it covers are one step across nodes.

PostgreSQL: an advisory lock per driver, taken inside the transaction (in rounds too: the
statement is not a plain read that may run before BEGIN). SQLite: nothing to take, the
writers of every process take turns on the file."""

from __future__ import annotations

import asyncio

import pytest

from csms.service.ports import Repository, Tx
from csms.storage import open_repository


async def _holding(repo: Repository, driver: str
                   ) -> tuple[asyncio.Event, asyncio.Event, asyncio.Future[None]]:
    """A unit holding ``driver`` until ``release`` is set."""
    held, release = asyncio.Event(), asyncio.Event()

    async def work(tx: Tx) -> None:
        await tx.lock_driver(driver)
        held.set()
        await release.wait()

    return held, release, asyncio.ensure_future(repo.unit(work))


async def _lock(repo: Repository, driver: str) -> None:
    async def work(tx: Tx) -> None:
        await tx.lock_driver(driver)

    await repo.unit(work)


@pytest.mark.postgres
async def test_one_driver_is_held_until_the_holder_commits(
    two_nodes: tuple[Repository, Repository],
) -> None:
    a, b = two_nodes
    held, release, holder = await _holding(a, "0xAA")
    await asyncio.wait_for(held.wait(), 10)
    try:
        # another driver is free at once; the same driver (in any case) waits
        await asyncio.wait_for(_lock(b, "0xbb"), 10)
        waiter = asyncio.ensure_future(_lock(b, "0xaa"))
        await asyncio.sleep(0.5)
        assert not waiter.done()
    finally:
        release.set()
        await holder
    await asyncio.wait_for(waiter, 10)


async def test_sqlite_has_nothing_to_hold(tmp_path: object) -> None:
    repo = await open_repository(str(tmp_path) + "/csms.sqlite3")
    try:
        await asyncio.wait_for(_lock(repo, "0xaa"), 10)
    finally:
        await repo.close()
