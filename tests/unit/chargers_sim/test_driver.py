"""The simulated station's composite schedule and its per-version modules."""

from __future__ import annotations

from typing import Any

import pytest

from chargers_sim import more_v16, more_v201
from chargers_sim.driver import composite_periods


def profile(purpose: str, level: int, unit: str, *periods: tuple[int, float]) -> dict[str, Any]:
    return {"id": level, "stackLevel": level, "chargingProfilePurpose": purpose,
            "chargingSchedule": [{"chargingRateUnit": unit, "chargingSchedulePeriod": [
                {"startPeriod": s, "limit": lim} for s, lim in periods]}]}


@pytest.mark.parametrize(("profiles", "unit", "duration", "expected"), [
    ([profile("TxDefaultProfile", 0, "W", (0, 11000))], "W", 3600,
     [{"startPeriod": 0, "limit": 11000.0}]),
    # the higher stack level of one purpose wins, even when it allows more
    ([profile("TxDefaultProfile", 0, "W", (0, 3000)),
      profile("TxDefaultProfile", 1, "W", (0, 7000))], "W", 3600,
     [{"startPeriod": 0, "limit": 7000.0}]),
    # across purposes the lower limit wins, period by period
    ([profile("ChargingStationMaxProfile", 0, "W", (0, 7400), (600, 22000)),
      profile("TxDefaultProfile", 0, "A", (0, 16))], "W", 3600,
     [{"startPeriod": 0, "limit": 7400.0}, {"startPeriod": 600, "limit": 11040.0}]),
    # periods past the duration are left out; in A: 11040 W / 690 = 16 A
    ([profile("TxDefaultProfile", 0, "W", (0, 11040), (7200, 3000))], "A", 3600,
     [{"startPeriod": 0, "limit": 16.0}]),
])
def test_composite_periods(profiles: list[dict[str, Any]], unit: str, duration: int,
                           expected: list[dict[str, Any]]) -> None:
    assert composite_periods(profiles, unit, duration) == expected


def test_both_modules_define_the_same_functions() -> None:
    assert sorted(more_v16.__all__) == sorted(more_v201.__all__)
    for name in more_v16.__all__:
        assert callable(getattr(more_v16, name)) and callable(getattr(more_v201, name))
