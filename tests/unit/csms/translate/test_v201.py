"""2.0.1 payloads -> domain: what a NotifyReport says about a station's power."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from csms.translate.v201 import reported_max_power_w


def power(component: str, limit: Any, unit: str | None = "W") -> dict[str, Any]:
    chars: dict[str, Any] = {"dataType": "decimal", "maxLimit": limit}
    if unit is not None:
        chars["unit"] = unit
    return {"component": {"name": component, "evse": {"id": 1}},
            "variable": {"name": "Power"}, "variableAttribute": [{"value": "0"}],
            "variableCharacteristics": chars}


@pytest.mark.parametrize(("items", "watts"), [
    ([power("EVSE", 22000)], Decimal(22000)),
    ([power("EVSE", 11.5, "kW")], Decimal(11500)),
    ([power("EVSE", 7400, None)], Decimal(7400)),  # W by default
    ([power("EVSE", 7400), power("EVSE", 22000)], Decimal(22000)),  # the largest EVSE
    ([power("ChargingStation", 50000)], Decimal(50000)),
    ([power("Connector", 22000)], None),
    ([power("EVSE", "22000")], None),  # not a number
    ([power("EVSE", True)], None),
    ([power("EVSE", -5)], None),
    ([power("EVSE", 22000, "A")], None),
    ([{"component": {"name": "EVSE"}, "variable": {"name": "Power"}}], None),
    ([], None),
    # no charger delivers more than MCS's 3.75 MW (csms.domain.energy): a station that
    # reports more (to lift its own energy_above_max_power bound) reports no power
    ([power("EVSE", 3750, "kW")], Decimal(3750000)),
    ([power("EVSE", 4_000_000)], Decimal(4_000_000)),
    ([power("EVSE", 4_000_001)], None),
    ([power("ChargingStation", 99_999_999, "kW")], None),
    ([power("EVSE", 22000), power("ChargingStation", 5000, "kW")], Decimal(22000)),
])
def test_reported_maximum_power(items: list[dict[str, Any]], watts: Decimal | None) -> None:
    assert reported_max_power_w(items) == watts
