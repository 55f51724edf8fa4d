"""Leases and node beats on both backends: one holder at a time, expiry, liveness."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from csms.service.cluster import (
    acquire_lease,
    beat,
    hold_lease,
    lease_holder,
    live_nodes,
    release_lease,
)
from csms.service.ports import Repository, Tx

T0 = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
TTL = timedelta(seconds=30)
BRIEF = timedelta(milliseconds=200)  # a holder's last renewal, to see it expire


async def take(repo: Repository, holder: str, ttl: timedelta = TTL) -> bool:
    async def work(tx: Tx) -> bool:
        return await acquire_lease(tx, "settlement", holder, ttl)

    return bool(await repo.unit(work))


async def hold(repo: Repository, holder: str) -> bool:
    async def work(tx: Tx) -> bool:
        return await hold_lease(tx, "settlement", holder, TTL)

    return bool(await repo.unit(work))


async def holder(repo: Repository) -> str | None:
    async def work(tx: Tx) -> str | None:
        return await lease_holder(tx, "settlement")

    return await repo.read(work)


async def expired(repo: Repository) -> None:
    """Until the database's clock says the lease expired."""
    async with asyncio.timeout(10):
        while await holder(repo) is not None:
            await asyncio.sleep(0.02)


async def test_one_holder_at_a_time_until_it_expires(repo: Repository) -> None:
    """When a lease expires is the database's clock (no node's clock is asked)."""
    assert await take(repo, "node-a")
    assert not await take(repo, "node-b")
    assert await take(repo, "node-a")  # renewed
    assert await holder(repo) == "node-a"
    assert await take(repo, "node-a", BRIEF)  # node-a's last renewal
    assert not await take(repo, "node-b")
    await expired(repo)
    assert await take(repo, "node-b")  # node-a stopped renewing
    assert not await take(repo, "node-a")
    assert await holder(repo) == "node-b"

    async def release(tx: Tx) -> None:
        await release_lease(tx, "settlement", "node-a")  # not its lease: no effect
        await release_lease(tx, "settlement", "node-b")

    await repo.unit(release)
    assert await holder(repo) is None
    assert await take(repo, "node-a")


async def test_a_holder_keeps_only_a_lease_it_holds_unexpired(repo: Repository) -> None:
    """``hold_lease`` (what a settler checks before each write) renews a lease only for
    its holder and only before it expires: one that lapsed, even taken by nobody since,
    is lost (another node may have settled meanwhile)."""
    assert not await hold(repo, "node-a")  # no lease at all
    assert await take(repo, "node-a", BRIEF)
    assert not await hold(repo, "node-b")
    assert await hold(repo, "node-a")  # renewed for 30 s
    assert await take(repo, "node-a", BRIEF)
    await expired(repo)
    assert not await hold(repo, "node-a")
    assert await holder(repo) is None


async def test_racing_takers_get_it_once(repo: Repository) -> None:
    results = await asyncio.gather(*(take(repo, f"node-{i}") for i in range(8)))
    assert sum(results) == 1


async def test_nodes_that_stop_beating_are_not_live(repo: Repository) -> None:
    async def beats(tx: Tx) -> None:
        await beat(tx, "node-a", T0)
        await beat(tx, "node-b", T0)
        await beat(tx, "node-a", T0 + timedelta(seconds=20))

    await repo.unit(beats)

    async def live(tx: Tx) -> set[str]:
        return await live_nodes(tx, T0 + timedelta(seconds=25))

    assert await repo.read(live) == {"node-a"}


async def test_a_station_on_a_dead_node_is_offline(repo: Repository) -> None:
    from csms.service.charging import new_station
    from csms.service.views import stations_view

    now = datetime.now(UTC)

    async def setup(tx: Tx) -> None:
        await tx.insert_station(new_station("CP-DEAD"))
        await tx.insert_station(new_station("CP-LIVE"))
        await tx.set_station_connection("CP-DEAD", "node-dead", now)
        await tx.set_station_connection("CP-LIVE", "node-live", now)
        await beat(tx, "node-dead", now - timedelta(seconds=60))  # killed a minute ago
        await beat(tx, "node-live", now)

    await repo.unit(setup)

    async def view(tx: Tx) -> dict[str, tuple[bool, str | None]]:
        return {s["id"]: (s["online"], s["node"]) for s in await stations_view(tx)}

    assert await repo.read(view) == {"CP-DEAD": (False, None),
                                     "CP-LIVE": (True, "node-live")}
