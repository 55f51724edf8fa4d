from __future__ import annotations

import pytest

from csms.service.throttle import MAX_DELAY, NO_DELAY, TRANSACTION_ACTIONS, TransactionThrottle


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_transaction_actions() -> None:
    assert {"MeterValues", "StartTransaction", "StopTransaction",
            "TransactionEvent"} == TRANSACTION_ACTIONS
    assert "DataTransfer" not in TRANSACTION_ACTIONS  # metered by the payload quota


def test_within_the_burst_nothing_waits() -> None:
    t = TransactionThrottle(1000, 10_000, clock=Clock())
    assert [t.charge("CP1", 1000) for _ in range(10)] == [NO_DELAY] * 10
    assert t.tokens("CP1") == 0


def test_an_empty_bucket_delays_the_answer_until_the_bytes_are_back() -> None:
    clock = Clock()
    t = TransactionThrottle(1000, 5000, clock=clock)
    assert t.charge("CP1", 5000) == NO_DELAY
    first = t.charge("CP1", 2000)
    assert first.seconds == pytest.approx(2.0) and first.first
    clock.now += first.seconds  # the station waited for the answer
    second = t.charge("CP1", 500)
    assert second.seconds == pytest.approx(0.5) and not second.first
    clock.now += 0.5
    # a station that paces itself at the rate waits no more
    clock.now += 1.0
    assert t.charge("CP1", 1000) == NO_DELAY


def test_a_flood_is_held_to_the_rate() -> None:
    """A station that sends as soon as it is answered stores ``burst + rate x time``."""
    clock = Clock()
    t = TransactionThrottle(20_000, 100_000, clock=clock)  # a frame: 3.2 s, under the cap
    start, sent = clock.now, 0
    while clock.now - start < 60:
        sent += 64_000
        clock.now += t.charge("FLOOD", 64_000).seconds + 0.001  # answered, sends again
    assert sent <= 100_000 + 20_000 * (clock.now - start) + 64_000
    assert sent >= 20_000 * 60  # and no less: every message answered


def test_the_wait_is_capped_and_the_rest_forgiven() -> None:
    clock = Clock()
    t = TransactionThrottle(1000, 64_000, clock=clock)  # a frame is 64 s of budget
    assert t.charge("CP1", 64_000) == NO_DELAY
    waits = []
    for _ in range(5):
        d = t.charge("CP1", 64_000)
        waits.append(d.seconds)
        clock.now += d.seconds
    assert waits == [pytest.approx(MAX_DELAY)] * 5
    # no debt beyond the cap: the bucket is full again burst / rate later
    clock.now += 64 + MAX_DELAY
    assert t.tokens("CP1") == 64_000


def test_stations_have_their_own_buckets() -> None:
    t = TransactionThrottle(100, 1000, clock=Clock())
    assert t.charge("CP1", 1000) == NO_DELAY
    assert t.charge("CP1", 100).seconds > 0
    assert t.charge("CP2", 1000) == NO_DELAY


def test_off() -> None:
    t = TransactionThrottle(0, 0, clock=Clock())
    assert not t.enabled
    assert all(t.charge("CP1", 64_000) == NO_DELAY for _ in range(100))
    assert len(t) == 0


def test_reconnecting_gives_no_new_burst_and_a_full_bucket_is_forgotten() -> None:
    clock = Clock()
    t = TransactionThrottle(1000, 10_000, clock=clock)
    t.charge("CP1", 10_000)
    t.left("CP1")  # its bucket is empty: kept
    assert len(t) == 1
    assert t.charge("CP1", 1000).seconds == pytest.approx(1.0)  # back, still empty
    clock.now += 1.0
    t.left("CP1")
    clock.now += 10 + MAX_DELAY  # full for certain by now
    t.charge("CP2", 1)  # any later call sweeps
    assert t.tokens("CP1") == 10_000
    assert len(t) == 1  # CP2 only
    clock.now += 0.01  # its byte is back
    t.left("CP2")  # full when it left: forgotten at once
    assert len(t) == 0


def test_a_station_back_before_its_bucket_filled_is_not_swept() -> None:
    clock = Clock()
    t = TransactionThrottle(1000, 10_000, clock=clock)
    t.charge("CP1", 10_000)
    t.left("CP1")
    clock.now += 1
    t.charge("CP1", 1000)  # connected again and sending: its bucket is its own again
    clock.now += 30
    t.charge("CP2", 1)
    assert len(t) == 2


def test_memory_is_bounded() -> None:
    clock = Clock()
    t = TransactionThrottle(1000, 10_000, clock=clock, max_stations=50)
    for i in range(500):
        t.charge(f"CP{i}", 20_000)
        if i % 2:
            t.left(f"CP{i}")
    assert len(t) == 50
    # a gone station makes room first: the connected ones' buckets stay
    assert t.tokens("CP498") < 0


def test_negative_settings_are_refused() -> None:
    with pytest.raises(ValueError):
        TransactionThrottle(-1, 1000)


def test_a_second_flood_after_the_bucket_filled_again_is_reported_again() -> None:
    """``Delay.first``: the station's first delayed answer since its bucket was full (the
    warning and the TransactionDataDelayed event, once per flood). A station connected all
    along that floods, stops until its bucket is full, and floods again is reported again."""
    clock = Clock()
    t = TransactionThrottle(1000, 5000, clock=clock)
    assert t.charge("CP1", 5000) == NO_DELAY
    assert t.charge("CP1", 2000).first
    clock.now += 3600  # an hour later: the bucket is full again
    assert t.tokens("CP1") == 5000
    assert t.charge("CP1", 5000) == NO_DELAY
    assert t.charge("CP1", 2000).first


def test_a_small_message_takes_the_minimum_charge() -> None:
    """A frame smaller than ``min_charge`` takes ``min_charge``; a larger one its size."""
    t = TransactionThrottle(1000, 10_000, clock=Clock(), min_charge=2048)
    assert t.charge("CP1", 130) == NO_DELAY
    assert t.tokens("CP1") == 10_000 - 2048
    assert t.charge("CP1", 5000) == NO_DELAY
    assert t.tokens("CP1") == 10_000 - 2048 - 5000
    with pytest.raises(ValueError):
        TransactionThrottle(1000, 10_000, min_charge=-1)
