from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from csms.domain.energy import compute_energy, register_wh, to_wh
from csms.domain.model import MeterSample

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def s(value: str, minutes: float = 10, **kw: object) -> MeterSample:
    return MeterSample(timestamp=T0 + timedelta(minutes=minutes), value=value, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("value", "unit", "multiplier", "wh"),
    [
        ("1234", "Wh", 0, Decimal(1234)),
        ("1.5", "kWh", 0, Decimal(1500)),
        ("12.3456", "kWh", 0, Decimal("12345.6")),
        ("7", "Wh", 3, Decimal(7000)),  # 2.0.1 multiplier 10^3
        ("1.0075", "kWh", 3, Decimal("1007500")),
        ("5", "kWh", -1, Decimal(500)),
        ("abc", "Wh", 0, None),
        ("NaN", "Wh", 0, None),
        ("10", "varh", 0, None),
        (" 42 ", None, 0, Decimal(42)),  # 1.6 §7.31: default unit Wh
    ],
)
def test_to_wh(value: str, unit: str | None, multiplier: int, wh: Decimal | None) -> None:
    assert to_wh(value, unit, multiplier) == wh


@pytest.mark.parametrize(
    ("sample", "wh"),
    [
        (s("100"), Decimal(100)),
        (s("100", phase="L1"), None),  # per-phase part, not the total
        (s("100", measurand="Power.Active.Import", unit="W"), None),
        (s("100", measurand="Energy.Active.Export.Register"), None),
        (s("OCMF|{}|{}", format="SignedData"), None),
        (s("100", location="EV"), None),
        (s("2", unit="kWh"), Decimal(2000)),
    ],
)
def test_register_wh(sample: MeterSample, wh: Decimal | None) -> None:
    assert register_wh(sample) == wh


def test_plain_start_stop() -> None:
    r = compute_energy(Decimal(1000), Decimal(8500), [s("5000")], T0)
    assert (r.energy_wh, r.flags) == (7500, [])


def test_phases_do_not_add_to_the_total() -> None:
    samples = [s("5000"), s("1700", phase="L1"), s("1600", phase="L2"), s("1700", phase="L3")]
    assert compute_energy(Decimal(1000), Decimal(9000), samples, T0).energy_wh == 8000


def test_kwh_strings_are_exact() -> None:
    samples = [s("1000.000", 0, unit="kWh", context="Transaction.Begin"),
               s("1012.3456", 60, unit="kWh", context="Transaction.End")]
    r = compute_energy(None, None, samples, T0)
    assert r.energy_wh == 12346  # 12345.6 Wh rounded half-even to whole Wh
    assert r.meter_start_wh == Decimal("1000000.000")


def test_placeholder_meter_start_never_bills_the_lifetime_reading() -> None:
    # The station sent meterStart 0 while its register reads 4.2 MWh.
    samples = [s("4200000", 1), s("4203000", 30)]
    r = compute_energy(Decimal(0), Decimal(4207000), samples, T0)
    assert r.energy_wh == 7000
    assert "meter_start_placeholder" in r.flags


def test_genuine_zero_start_is_kept() -> None:
    # A new meter really starting at 0 Wh: 11 kW for 10 minutes is plausible.
    r = compute_energy(Decimal(0), Decimal(1833), [s("1833", 10)], T0)
    assert (r.energy_wh, r.flags) == (1833, [])


def test_missing_start_uses_the_begin_reading() -> None:
    samples = [s("900", 5, context="Sample.Periodic"), s("800", 0, context="Transaction.Begin")]
    r = compute_energy(None, Decimal(2000), samples, T0)
    assert r.energy_wh == 1200
    assert r.flags == ["meter_start_from_samples"]


def test_missing_start_without_samples_is_flagged_and_bills_nothing() -> None:
    r = compute_energy(None, Decimal(4200000), [], T0)
    assert r.energy_wh == 0
    assert "meter_start_missing" in r.flags


def test_missing_stop_uses_the_last_reading() -> None:
    r = compute_energy(Decimal(1000), None, [s("1500", 5), s("2500", 20)], T0)
    assert (r.energy_wh, r.flags) == (1500, ["meter_stop_from_samples"])


def test_placeholder_stop_is_replaced_by_the_last_reading() -> None:
    r = compute_energy(Decimal(1000), Decimal(0), [s("2500", 20)], T0)
    assert r.energy_wh == 1500
    assert "meter_stop_placeholder" in r.flags


def test_meter_going_backwards_bills_nothing() -> None:
    r = compute_energy(Decimal(5000), Decimal(4000), [], T0)
    assert r.energy_wh == 0
    assert "meter_went_backwards" in r.flags
