"""Energy of a charging session from its meter readings.

Rules (DESIGN.md, "Protocol rules"):

* Only the total ``Energy.Active.Import.Register`` counts. 1.6 §7.31: the
  default measurand of a sampled value is that register and the default unit
  Wh; values are strings and may be in kWh. 2.0.1 §2.55/2.56: values are
  numbers and ``unitOfMeasure.multiplier`` scales them by 10^n.
* Per-phase readings (``phase`` set) are parts, not the total: never summed in.
* Readings of connector 0 / the main meter and clock-aligned readings outside a
  transaction are never attached to a session (the service layer sees to that).
* A missing or placeholder ``meterStart`` must never bill the meter's lifetime
  reading: when a station sends 0 but its first reading in the session is more
  than any charger could deliver since the start, the reading is a lifetime
  register and the session starts at the earliest reading instead (flagged).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation

from csms.domain.model import MeterSample

__all__ = [
    "ENERGY_REGISTER",
    "EnergyResult",
    "compute_energy",
    "register_wh",
    "to_wh",
]

ENERGY_REGISTER = "Energy.Active.Import.Register"
# Upper bound for any charger (MCS megawatt charging is 3.75 MW); used only to
# recognise impossible jumps, never to bill.
MAX_PLAUSIBLE_POWER_W = Decimal(4_000_000)
PLAUSIBILITY_SLACK_WH = Decimal(1000)

_UNIT_FACTOR = {"wh": Decimal(1), "kwh": Decimal(1000)}


def to_wh(value: str, unit: str | None = "Wh", multiplier: int = 0) -> Decimal | None:
    """Convert one energy value to Wh, or None if it is not an energy value."""
    factor = _UNIT_FACTOR.get((unit or "Wh").lower())
    if factor is None:
        return None
    try:
        number = Decimal(value.strip())
    except (InvalidOperation, AttributeError):
        return None
    if not number.is_finite():
        return None
    return number.scaleb(multiplier) * factor


def register_wh(sample: MeterSample) -> Decimal | None:
    """The total import register reading of ``sample`` in Wh, or None if it is not one."""
    if sample.measurand != ENERGY_REGISTER:
        return None
    if sample.phase:  # L1, L2, L3, L1-N...: a part of the total
        return None
    if sample.format == "SignedData":  # the value is a signed container, not a number
        return None
    if sample.location == "EV":
        return None
    return to_wh(sample.value, sample.unit, sample.multiplier)


@dataclass(slots=True)
class EnergyResult:
    meter_start_wh: Decimal | None
    meter_stop_wh: Decimal | None
    energy_wh: int
    flags: list[str] = field(default_factory=list)


def _max_plausible_wh(since: datetime | None, until: datetime) -> Decimal | None:
    if since is None:
        return None
    seconds = max(Decimal(0), Decimal(str((until - since).total_seconds())))
    return MAX_PLAUSIBLE_POWER_W * seconds / Decimal(3600) + PLAUSIBILITY_SLACK_WH


def compute_energy(
    meter_start_wh: Decimal | None,
    meter_stop_wh: Decimal | None,
    samples: Iterable[MeterSample],
    started_at: datetime | None = None,
) -> EnergyResult:
    """Energy delivered in a session, in whole Wh (banker's rounding), with flags.

    ``meter_start_wh``/``meter_stop_wh`` are what the station reported in its
    start/stop messages (None when it did not); ``samples`` are the session's
    own meter samples.
    """
    flags: list[str] = []
    readings: list[tuple[datetime, Decimal, str | None]] = []
    for s in samples:
        wh = register_wh(s)
        if wh is not None:
            readings.append((s.timestamp, wh, s.context))
    readings.sort(key=lambda r: r[0])

    start = meter_start_wh
    if start is None:
        begin = next((r for r in readings if r[2] == "Transaction.Begin"), None)
        first = begin or (readings[0] if readings else None)
        if first is not None:
            start = first[1]
            flags.append("meter_start_from_samples")
        else:
            flags.append("meter_start_missing")
    elif start == 0 and readings:
        t0, first_wh, _ = readings[0]
        bound = _max_plausible_wh(started_at, t0)
        if bound is not None and first_wh > bound:
            start = first_wh
            flags.append("meter_start_placeholder")

    stop = meter_stop_wh
    if stop is not None and stop == 0 and start is not None and start > 0:
        stop = None
        flags.append("meter_stop_placeholder")
    if stop is None:
        end = next((r for r in reversed(readings) if r[2] == "Transaction.End"), None)
        last = end or (readings[-1] if readings else None)
        if last is not None:
            stop = last[1]
            if "meter_stop_placeholder" not in flags:
                flags.append("meter_stop_from_samples")
        elif "meter_stop_placeholder" in flags:
            stop = None

    if start is None or stop is None:
        if stop is None and "meter_stop_placeholder" not in flags:
            flags.append("meter_stop_missing")
        return EnergyResult(start, stop, 0, flags)
    delta = stop - start
    if delta < 0:
        flags.append("meter_went_backwards")
        return EnergyResult(start, stop, 0, flags)
    energy = int(delta.quantize(Decimal(1), rounding=ROUND_HALF_EVEN))
    return EnergyResult(start, stop, energy, flags)
