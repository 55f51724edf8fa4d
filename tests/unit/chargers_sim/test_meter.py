from __future__ import annotations

import random

import pytest

from chargers_sim.meter import Meter, power_curve_w
from chargers_sim.station import backoff_delay


@pytest.mark.parametrize(
    ("elapsed", "limit", "low", "high"),
    [
        (0, None, 0, 0),
        (15, None, 5000, 6000),  # half way up the 30 s ramp of 11 kW
        (60, None, 10900, 11000),
        (7200, None, 8800, 9300),  # tapering after two hours
        (600, 3680, 3680, 3680),  # a 16 A single-phase cap
        (600, 0, 0, 0),
    ],
)
def test_power_curve(elapsed: float, limit: float | None, low: float, high: float) -> None:
    assert low <= power_curve_w(elapsed, 11000, limit) <= high


def test_meter_counts_whole_wh_and_carries_fractions() -> None:
    m = Meter(register_wh=1000)
    for _ in range(3600):
        m.advance(11000, 1)  # 11 kW for an hour, second by second
    assert m.register_wh == 12000
    m.advance(500, 3.6)  # 0.5 Wh
    m.advance(500, 3.6)
    assert m.register_wh == 12001


def test_lifetime_reading_is_never_zero() -> None:
    assert Meter.with_lifetime(random.Random(1)).register_wh >= 1_000_000


def test_backoff_grows_and_is_capped_with_jitter() -> None:
    rng = random.Random(3)
    delays = [backoff_delay(a, 0.5, 8.0, rng) for a in range(10) for _ in range(50)]
    assert all(0 <= d <= 8.0 for d in delays)
    assert max(backoff_delay(0, 0.5, 8.0, rng) for _ in range(100)) <= 0.5
    assert len({round(d, 6) for d in delays}) > 100  # jittered, not a fixed schedule
