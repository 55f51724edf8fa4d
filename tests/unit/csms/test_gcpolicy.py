"""The collector's policy: survivors of a full collection frozen, thawed after churn or
time, installed once per process however many servers run in it."""

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
        policy.connection_closed(open_now=2)
    assert policy.thaws == 1 and gc.get_freeze_count() == 0
    gc.collect()
    assert ref() is None


def test_the_churn_needed_grows_with_the_connections_open(policy: GcPolicy) -> None:
    policy.install()
    for _ in range(9):
        policy.connection_closed(open_now=20)  # half of 20: 10 closes
    assert policy.thaws == 0
    policy.connection_closed(open_now=20)
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
    policy.connection_closed(open_now=0)  # inactive: nothing happens
    assert policy.thaws == 0
