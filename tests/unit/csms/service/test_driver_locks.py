"""Per-driver locks: one holder at a time per driver, none kept once unused."""

from __future__ import annotations

import asyncio

from csms.service.credit import DriverLocks


async def test_one_driver_at_a_time_and_nothing_kept() -> None:
    locks = DriverLocks()
    order: list[str] = []

    async def hold(name: str, driver: str) -> None:
        async with locks.hold(driver):
            order.append(f"{name}+")
            await asyncio.sleep(0.01)
            order.append(f"{name}-")

    await asyncio.gather(hold("a", "0xAA"), hold("b", "0xaa"), hold("c", "0xbb"))
    assert order.index("a-") < order.index("b+")  # one driver (any case): in turn
    assert order.index("c+") < order.index("a-")  # another driver: alongside
    assert len(locks) == 0


async def test_a_cancelled_waiter_leaves_nothing() -> None:
    locks = DriverLocks()
    async with locks.hold("0xaa"):
        waiter = asyncio.create_task(_enter(locks))
        await asyncio.sleep(0)
        waiter.cancel()
        await asyncio.gather(waiter, return_exceptions=True)
        assert len(locks) == 1
    assert len(locks) == 0


async def _enter(locks: DriverLocks) -> None:
    async with locks.hold("0xaa"):
        pass
