from __future__ import annotations

import pytest

from csms.service.quota import MIN_CHARGE, PayloadQuota, quota_kind


class Clock:
    def __init__(self) -> None:
        self.now = 7 * 3600.0 + 10

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(("event", "kind"), [
    ("data_transfer", "data_transfer"), ("security", "security"), ("boot", "notification"),
    ("firmware_status", "notification"), ("log_status", "notification"),
    ("diagnostics_status", "notification"), ("online", "connection"),
    ("offline", "connection"), ("started_again", None), ("quota", None)])
def test_which_events_are_metered(event: str, kind: str | None) -> None:
    assert quota_kind(event) == kind


def test_within_and_beyond_the_quota() -> None:
    q = PayloadQuota({"data_transfer": 10_000}, clock=Clock())
    assert q.admit("CP1", "data_transfer", 6_000).store
    verdict = q.admit("CP1", "data_transfer", 6_000)
    assert not verdict.store and verdict.first_drop
    second = q.admit("CP1", "data_transfer", 6_000)
    assert not second.store and not second.first_drop
    assert q.admit("CP1", "data_transfer", 4_000).store  # what fits still fits
    assert q.used("CP1", "data_transfer") == (10_000, 2)
    assert q.admit("CP2", "data_transfer", 6_000).store  # per station


def test_small_payloads_count_at_least_the_minimum() -> None:
    q = PayloadQuota({"security": 10 * MIN_CHARGE}, clock=Clock())
    assert sum(q.admit("CP1", "security", 1).store for _ in range(100)) == 10


def test_a_new_hour_starts_the_quota_again() -> None:
    clock = Clock()
    q = PayloadQuota({"notification": 1000}, clock=clock)
    assert q.admit("CP1", "notification", 1000).store
    assert not q.admit("CP1", "notification", 1).store
    clock.now += 3600
    assert q.admit("CP1", "notification", 1000).store


def test_over_the_quota_until_the_hour_ends_without_an_entry_made() -> None:
    clock = Clock()
    q = PayloadQuota({"connection": 2 * MIN_CHARGE}, clock=clock, max_keys=10)
    assert not q.over("CP1", "connection")
    assert len(q._used) == 0  # a look makes no entry (strangers' ids cost no memory)
    assert q.admit("CP1", "connection", 1).store and q.admit("CP1", "connection", 1).store
    assert not q.over("CP1", "connection")  # at the quota, nothing dropped yet
    assert not q.admit("CP1", "connection", 1).store
    assert q.over("CP1", "connection") and not q.over("CP2", "connection")
    clock.now += 3600
    assert not q.over("CP1", "connection")


def test_refund_and_unmetered_kinds() -> None:
    q = PayloadQuota({"data_transfer": 1000}, clock=Clock())
    assert q.admit("CP1", "data_transfer", 1000).store
    q.refund("CP1", "data_transfer", 1000)
    assert q.admit("CP1", "data_transfer", 1000).store
    assert q.admit("CP1", "security", 10**9).store  # no limit given for it


def test_memory_is_bounded_and_kinds_are_checked() -> None:
    q = PayloadQuota({"data_transfer": 1000}, clock=Clock(), max_keys=50)
    for i in range(500):
        q.admit(f"CP{i}", "data_transfer", 10)
    assert len(q._used) <= 50
    with pytest.raises(ValueError):
        PayloadQuota({"teleport": 1})
