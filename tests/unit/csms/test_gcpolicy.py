"""The collector's policy: survivors of every collection frozen, thawed after churn or
time (then the next full collection walks everything), installed once per process however
many servers run in it."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from csms.gcpolicy import GcPolicy


@pytest.fixture
def policy() -> Iterator[GcPolicy]:
    p = GcPolicy(churn_floor=3, churn_fraction=0.5, thaw_interval=3600)
    yield p
    while p.active:
        p.uninstall()
    gc.unfreeze()


class Node:
    def __init__(self) -> None:
        self.other: Node | None = None


def cycle() -> Node:
    a, b = Node(), Node()
    a.other, b.other = b, a
    return a


def test_survivors_of_a_full_collection_are_frozen(policy: GcPolicy) -> None:
    policy.install()
    kept = cycle()
    gc.collect()  # a full collection: what survived it is not walked again
    assert policy.freezes >= 1 and gc.get_freeze_count() > 0
    assert not gc.is_finalized(kept) and kept.other is not None


def test_a_frozen_cycle_is_freed_after_enough_connections_closed(policy: GcPolicy) -> None:
    import weakref

    policy.install()
    node = cycle()
    ref = weakref.ref(node)
    gc.collect()  # frozen with the node alive
    del node
    gc.collect()
    assert ref() is not None  # garbage now, but frozen: waits
    for _ in range(3):  # the floor (3) beats half of 2 open connections
        policy.connection_closed(open_now=2, opened_at=float('-inf'))
    assert policy.thaws == 1 and gc.get_freeze_count() == 0
    gc.collect()
    assert ref() is None


def test_the_churn_needed_grows_with_the_connections_open(policy: GcPolicy) -> None:
    policy.install()
    for _ in range(9):
        policy.connection_closed(open_now=20, opened_at=float('-inf'))  # half of 20: 10 closes
    assert policy.thaws == 0
    policy.connection_closed(open_now=20, opened_at=float('-inf'))
    assert policy.thaws == 1


def test_a_full_collection_after_the_interval_thaws(policy: GcPolicy) -> None:
    policy.thaw_interval = 0.0
    policy.install()
    gc.collect()
    assert policy.thaws == 1 and gc.get_freeze_count() == 0


def test_installed_once_per_process_and_removed_with_the_last_user(policy: GcPolicy) -> None:
    callbacks = len(gc.callbacks)
    policy.install()
    policy.install()
    assert len(gc.callbacks) == callbacks + 1
    policy.uninstall()
    assert policy.active and len(gc.callbacks) == callbacks + 1
    policy.uninstall()
    assert not policy.active and len(gc.callbacks) == callbacks
    assert gc.get_freeze_count() == 0
    policy.connection_closed(open_now=0, opened_at=float('-inf'))  # inactive: nothing happens
    assert policy.thaws == 0


def test_survivors_of_a_young_collection_are_frozen(policy: GcPolicy) -> None:
    """What lives between two messages of a station survives the young collections: frozen,
    it is not walked again by each of them."""
    policy.install()
    kept = cycle()
    assert any(o is kept for o in gc.get_objects(0))
    gc.collect(0)
    assert not any(o is kept for g in range(3) for o in gc.get_objects(g))  # frozen
    assert kept.other is not None


def test_a_connection_that_never_opened_or_opened_since_the_freeze_is_no_churn(
    policy: GcPolicy,
) -> None:
    """A socket that came and went after the last freeze was never frozen; one whose
    handshake never finished (a connect storm's retries) holds a few objects: neither may
    thaw the whole heap, whose next full collection walks every connected station."""
    import time

    policy.install()
    gc.disable()  # no collection by count (each one freezes): the last freeze is the one below
    try:
        before = time.monotonic()
        gc.collect()  # frozen now
        after = time.monotonic()
        for _ in range(10):
            policy.connection_closed(open_now=2, opened_at=after)
            policy.connection_closed(open_now=2, opened_at=None)
        assert policy.thaws == 0
        for _ in range(3):  # opened before the freeze: its objects may be frozen garbage now
            policy.connection_closed(open_now=2, opened_at=before)
        assert policy.thaws == 1 and gc.get_freeze_count() == 0
    finally:
        gc.enable()


def test_after_a_thaw_nothing_is_frozen_until_a_full_collection_walked_everything(
    policy: GcPolicy,
) -> None:
    import weakref

    policy.install()
    node = cycle()
    ref = weakref.ref(node)
    gc.collect(0)  # frozen with the node alive
    del node
    policy.thaw()
    gc.collect(0)
    gc.collect(1)  # young collections after the thaw freeze nothing
    assert gc.get_freeze_count() == 0
    for _ in range(5):  # and no closes count while the walk is due
        policy.connection_closed(open_now=2, opened_at=float("-inf"))
    assert policy.thaws == 1
    gc.collect()  # the full walk: frees the cycle, then freezing starts again
    assert ref() is None
    assert gc.get_freeze_count() > 0


async def test_young_collections_come_by_time_not_only_by_count(policy: GcPolicy) -> None:
    """The count that starts a young collection hardly grows when every message frees as
    many objects as it makes; the policy's own timer collects (and freezes) anyway."""
    import asyncio

    policy.install()
    gc.disable()  # no collection by count at all
    try:
        kept = cycle()
        task = asyncio.get_running_loop().create_task(policy.young_collections(0.01))
        await asyncio.sleep(0.1)
        assert not any(o is kept for g in range(3) for o in gc.get_objects(g))  # frozen
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    finally:
        gc.enable()
