from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from csms.domain.energy import (
    BILLED_FROM_PHASE,
    DEFAULT_MAX_POWER_W,
    Readings,
    _counted_from_zero,
    billed_energy,
    compute_energy,
    counted_from_zero,
    energy_between,
    energy_flags,
    energy_of,
    implausible_times,
    lone_phase_readings,
    readings_outside,
    register_readings,
    register_wh,
    to_wh,
    watts,
)
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


def test_register_readings_are_the_billed_register_in_time_order() -> None:
    """What a message's samples give a session, read before its unit of work: the outlet's
    register (not the inlet's), sorted by time, its flags, and nothing of any session."""
    found = register_readings([
        s("12.5", 20, unit="kWh", location="Outlet"), s("12600", 20, location="Inlet"),
        s("12000", 10), s("500", 15, phase="L1"), s("1e30", 12),
        s("11000", 5, location="Inlet"),
    ])
    assert [(r[0], r[1]) for r in found.readings] == [
        (T0 + timedelta(minutes=10), Decimal(12000)),
        (T0 + timedelta(minutes=20), Decimal(12500)),
    ]
    assert found.flags == ("value_out_of_range",)
    assert not found.decrease
    # the session's side: its start and the readings give its energy so far
    result = energy_of(found, Decimal(11500), None, T0)
    assert (result.meter_stop_wh, result.energy_wh) == (Decimal(12500), 1000)
    went_back = register_readings([s("12000", 10), s("11990", 11)])
    assert went_back.decrease and went_back.flags == ("meter_went_backwards",)


def test_plain_start_stop() -> None:
    r = compute_energy(Decimal(1000), Decimal(8500), [s("5000")], T0)
    assert (r.energy_wh, r.flags) == (7500, [])


def test_phases_do_not_add_to_the_total() -> None:
    samples = [s("5000"), s("1700", phase="L1"), s("1600", phase="L2"), s("1700", phase="L3")]
    assert compute_energy(Decimal(1000), Decimal(9000), samples, T0).energy_wh == 8000


@pytest.mark.parametrize("samples", [
    # three phases, no total: parts, whatever labels they carry
    [s("1700", phase="L1"), s("1600", phase="L2"), s("1700", phase="L3")],
    [s("1700", phase="L1-N"), s("1600", phase="L2-N"), s("1700", phase="L3-N")],
    # a total beside a phase: the total is read as it is
    [s("5000"), s("1700", phase="L1")],
    # no register at all
    [s("7483.98", measurand="Power.Active.Import", phase="L1-N")],
    [],
])
def test_phase_registers_beside_others_or_a_total_are_no_lone_phase(
        samples: list[MeterSample]) -> None:
    assert lone_phase_readings(samples) is None


def test_a_lone_phase_register_is_read_as_the_total() -> None:
    # a single-phase charger whose only register is tagged L1-N (a Grizzl-E)
    samples = [s("32.21", 10, measurand="Current.Import", unit="A", phase="L1-N"),
               s("15174.00", 10, phase="L1-N", location="Body"),
               s("15.2", 12, phase="L1-N", unit="kWh", location="Body")]
    found = lone_phase_readings(samples)
    assert found is not None
    assert [r[1] for r in found.readings] == [Decimal("15174.00"), Decimal("15200.0")]
    assert found == replace(register_readings([s("15174.00", 10, location="Body"),
                                               s("15.2", 12, unit="kWh", location="Body")]),
                            phase="L1-N")
    assert energy_of(found, Decimal(0), None, T0).meter_stop_wh == Decimal("15200.0")
    # none of it counts where the registers are read as the total
    assert register_readings(samples).readings == ()


def _l1(value: str, minutes: float, **kw: object) -> MeterSample:
    """A single-phase charger's register, tagged with its phase (a Grizzl-E's "L1-N")."""
    return s(value, minutes, phase="L1-N", **kw)


def test_a_201_session_whose_only_register_is_one_phase_is_billed_from_it() -> None:
    # 2.0.1: no meterStart/meterStop; the register at the start, then 5.2 kWh in an hour
    found, r = billed_energy([_l1("15000", 0, context="Transaction.Begin"),
                              _l1("17500", 30), _l1("20200", 60, context="Transaction.End")],
                             None, None, T0)
    assert found.phase == "L1-N"
    assert (r.meter_start_wh, r.meter_stop_wh, r.energy_wh) == (15000, 20200, 5200)
    assert (r.start_source, r.stop_source) == ("context", "context")
    assert BILLED_FROM_PHASE in r.flags
    assert "meter_start_missing" not in r.flags and "meter_stop_missing" not in r.flags
    # without begin/end readings: its first and last readings
    _, r = billed_energy([_l1("15000", 1), _l1("17500", 30), _l1("20200", 60)], None, None,
                         T0)
    assert (r.energy_wh, r.start_source, r.stop_source) == (5200, "sample", "sample")


def test_a_lone_phase_is_billed_under_the_totals_rules() -> None:
    # going backwards, begin readings that differ, a begin of 0 before a lifetime register
    _, r = billed_energy([_l1("15000", 0), _l1("17500", 30), _l1("16000", 60)], None, None,
                         T0)
    assert "meter_went_backwards" in r.flags
    _, r = billed_energy([_l1("15000", 0, context="Transaction.Begin"),
                          _l1("14000", 1, context="Transaction.Begin"), _l1("16000", 60)],
                         None, None, T0)
    assert "begin_readings_differ" in r.flags and r.meter_start_wh == 15000
    _, r = billed_energy([_l1("0", 0, context="Transaction.Begin"), _l1("4076447", 10),
                          _l1("4077447", 20)], None, None, T0)
    assert "meter_start_placeholder" in r.flags and r.energy_wh == 1000


@pytest.mark.parametrize("samples", [
    # three phases without a total: parts of a total nobody sent, never summed
    [s("1700", 0, phase="L1"), s("1600", 0, phase="L2"), s("1700", 0, phase="L3"),
     s("3700", 60, phase="L1"), s("3600", 60, phase="L2"), s("3700", 60, phase="L3")],
    # one register whose label changes in the session
    [_l1("15000", 0), s("90000", 60, phase="L2-N")],
    [s("15000", 0, phase="L1"), _l1("90000", 60)],
])
def test_several_phase_registers_are_never_billed(samples: list[MeterSample]) -> None:
    found, r = billed_energy(samples, None, None, T0)
    assert found.readings == () and r.energy_wh == 0
    assert {"meter_start_missing", "meter_stop_missing"} <= set(r.flags)
    assert BILLED_FROM_PHASE not in r.flags


def test_a_phase_beside_a_total_never_bills() -> None:
    # a hostile station's L1-N register far above the total it also sends: the total bills
    samples = [s("15000", 0), _l1("15000", 0), s("16000", 60), _l1("90000", 60)]
    found, r = billed_energy(samples, None, None, T0)
    assert found.phase is None and r.energy_wh == 1000
    assert BILLED_FROM_PHASE not in r.flags
    # a total that is no reading (beyond any meter) is a total all the same
    found, r = billed_energy([s("1e30", 0), _l1("15000", 0), _l1("90000", 60)], None, None,
                             T0)
    assert found.phase is None and r.energy_wh == 0 and "meter_stop_missing" in r.flags


def test_a_16_stop_with_its_readings_bills_them_not_the_phase() -> None:
    # meterStart and meterStop bill, as before: the phase is not read, nor flagged
    samples = [_l1("20000", 30)]
    found, r = billed_energy(samples, Decimal(15000), Decimal(18000), T0)
    assert found.phase is None and r.energy_wh == 3000 and r.flags == []
    # a meterStop of 0 (a placeholder): the phase's last reading is the stop
    found, r = billed_energy([_l1("16000", 30), _l1("17200", 60)], Decimal(15000), Decimal(0),
                             T0)
    assert found.phase == "L1-N" and r.energy_wh == 2200
    assert BILLED_FROM_PHASE in r.flags and "meter_stop_placeholder" in r.flags


def test_a_16_placeholder_start_is_found_from_a_lone_phase_register() -> None:
    # meterStart 0 (a value not read) beside a single-phase charger's lifetime register
    # tagged L1-N, its meterStop that register 12 hours on: 12 hours at 22 kW let 250 kWh
    # through as energy, the lifetime register billed. Its first reading, 5 minutes after
    # the start, is more than any charger delivers in that time: the start is there
    samples = [_l1("250000", 5), _l1("254000", 360), _l1("257000", 700)]
    found, r = billed_energy(samples, Decimal(0), Decimal(257100), T0, Decimal(22000))
    assert found.phase == "L1-N"
    assert "meter_start_placeholder" in r.flags and BILLED_FROM_PHASE in r.flags
    # billed from that register alone: a phase's readings never mixed with a total's stop
    assert (r.meter_start_wh, r.meter_stop_wh, r.energy_wh) == (250000, 257000, 7000)
    # plausible readings, then the jump: started there, held
    _, r = billed_energy([_l1("100", 5), *samples], Decimal(0), Decimal(257100), T0,
                         Decimal(22000))
    assert {"meter_start_placeholder", "energy_above_max_power"} <= set(r.flags)
    assert r.energy_wh <= 7000
    # a meterStop below the phase's readings: the register went backwards, as a total's
    # would (untagged, these readings bill nothing): never the phase's 40 kWh
    found, r = billed_energy([_l1("50000", 5), _l1("90000", 60)], Decimal(0), Decimal(100),
                             T0, Decimal(22000))
    assert found.phase == "L1-N" and "meter_went_backwards" in r.flags and r.energy_wh == 0
    untagged = [replace(x, phase=None) for x in [_l1("50000", 5), _l1("90000", 60)]]
    _, total = billed_energy(untagged, Decimal(0), Decimal(100), T0, Decimal(22000))
    assert "meter_went_backwards" in total.flags and total.energy_wh == 0
    # a meterStop of 0 too: the phase's last reading is the stop
    _, r = billed_energy(samples, Decimal(0), Decimal(0), T0, Decimal(22000))
    assert r.energy_wh == 7000 and BILLED_FROM_PHASE in r.flags
    # a new meter's reading from 0 is energy: meterStart and meterStop bill as before
    found, r = billed_energy([_l1("1800", 10)], Decimal(0), Decimal(2000), T0)
    assert found.phase is None and (r.energy_wh, r.flags) == (2000, [])
    # a meterStart that is not 0 is no placeholder: billed as reported
    found, r = billed_energy(samples, Decimal(249900), Decimal(257100), T0, Decimal(22000))
    assert found.phase is None and (r.energy_wh, r.flags) == (7200, [])


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


@pytest.mark.parametrize(("sample", "flag"), [
    (s("1e30"), "value_out_of_range"),
    (s("5", multiplier=10**9), "value_out_of_range"),
    (s("1e999999", unit="kWh"), "value_out_of_range"),
    (s("Infinity"), "value_out_of_range"),
    # a figure beyond 10^-30 Wh: no meter's step, and no receipt's verifier reads it
    (s("1e-10000000"), "value_out_of_range"),
    (s("1", multiplier=-24, unit="Wh"), None),
    (s("0.0000001", multiplier=-24), "value_out_of_range"),
    (s("0E-40"), "value_out_of_range"),
    (s("1.5", multiplier=3), None),  # 1,500 Wh: between meterStart and meterStop
    (s("abc"), None),  # not a number at all: ignored as before
    (s("1e30", phase="L1"), None),  # a part, not the total
])
def test_values_beyond_any_meter_are_flagged_and_never_billed(
        sample: MeterSample, flag: str | None) -> None:
    r = compute_energy(Decimal(1000), Decimal(2000), [sample], T0)
    assert r.energy_wh == 1000
    assert r.flags == ([flag] if flag else [])


def test_a_negative_register_reading_is_no_reading() -> None:
    """An import register counts up from 0: a hostile station's reading below 0 (the
    register behind it, to bill energy it never read) is beyond any meter, never the
    start of a placeholder's 0 rule either."""
    r = compute_energy(Decimal(1000), Decimal(2000), [s("-4000", 5), s("1500", 10)], T0)
    assert (r.energy_wh, r.flags) == (1000, ["value_out_of_range"])
    r = compute_energy(None, None, [s("-4e3", 0, context="Transaction.Begin"),
                                    s("2000", 60, context="Transaction.End")], T0)
    assert (r.energy_wh, r.meter_start_wh) == (0, Decimal(2000))
    assert "value_out_of_range" in r.flags
    assert s("-0") and compute_energy(Decimal(0), Decimal(0), [s("-0")], T0).flags == []


def test_a_negative_meter_start_bills_nothing() -> None:
    """A 1.6 meterStart of -1,000,000 Wh beside a register that read 20,000 Wh at the
    stop would bill 1,020,000 Wh; the register cannot show it: the start is not known."""
    r = compute_energy(Decimal(-1_000_000), Decimal(20_000), [], T0)
    assert (r.energy_wh, r.meter_start_wh) == (0, None)
    assert "value_out_of_range" in r.flags and "meter_start_missing" in r.flags
    r = compute_energy(Decimal(1000), Decimal(-1), [], T0)
    assert (r.energy_wh, r.meter_stop_wh) == (0, None)
    assert "value_out_of_range" in r.flags


def test_energy_does_not_depend_on_the_threads_decimal_context() -> None:
    """Importing vyper sets the thread's precision to 78 digits: the energy billed (and the
    readings the record keeps) must be what a receipt's verifier computes from them, in 28
    digits (csms.domain.tariff.DECIMALS), all the same. A stop of 2.5 Wh and a
    thirtieth-digit 1 is 2.5 Wh in 28 digits (2 Wh, half to even) and 3 Wh in 78."""
    import decimal

    readings = [s("0", 0, context="Transaction.Begin"),
                s("2.50000000000000000000000000001", 60, context="Transaction.End")]
    found = register_readings(readings)
    expected = compute_energy(None, None, readings, T0)
    start, stop = Decimal("0.1"), Decimal("2.60000000000000000000000000001")
    with decimal.localcontext() as ctx:
        ctx.prec = 78
        r = compute_energy(None, None, readings, T0)
        assert (r.energy_wh, r.meter_stop_wh) == (expected.energy_wh, expected.meter_stop_wh)
        assert register_readings(readings) == found
        assert energy_between(start, stop) == (2, None)
        assert to_wh("1.00000000000000000000000000049", "kWh") == Decimal(1000)
    assert (expected.energy_wh, str(expected.meter_stop_wh)) == (
        2, "2.500000000000000000000000000")


def test_start_and_stop_beyond_any_meter_bill_nothing() -> None:
    r = compute_energy(Decimal(2**63), Decimal(2**64 - 1), [], T0)
    assert (r.energy_wh, r.meter_start_wh) == (0, None)
    assert "value_out_of_range" in r.flags and "meter_start_missing" in r.flags


def test_signed_samples_are_evidence_not_readings() -> None:
    # KEBA's 2.0.1 signed sample: the bare value is the reading in kWh, no unit
    signed = s("2114.1356", 0, context="Transaction.Begin", format="SignedData",
               signed={"signedMeterData": "..."})
    assert register_wh(signed) is None
    r = compute_energy(None, None, [signed, s("2114135.6", 0, context="Transaction.Begin"),
                                    s("2133854.3", 60, context="Transaction.End")], T0)
    assert (r.energy_wh, r.start_source, r.stop_source) == (19719, "context", "context")


def test_a_register_that_decreases_between_readings() -> None:
    r = compute_energy(Decimal(1000), Decimal(3000), [s("2500", 20), s("1200", 40)], T0)
    assert "meter_went_backwards" in r.flags and r.readings_decrease
    # readings of two locations are two series
    r = compute_energy(Decimal(1000), Decimal(3000),
                       [s("2500", 20, location="Outlet"), s("1200", 40, location="Inlet")], T0)
    assert not r.readings_decrease


@pytest.mark.parametrize(("minutes", "energy", "power_w", "flags"), [
    (60, 11_000, 11_000, []),  # 11 kW for an hour
    (60, 11_250, 11_000, []),  # within a minute's slack and 1%
    (60, 12_500, 11_000, ["energy_above_max_power"]),
    (1, 1_000_000_000_000, 350_000, ["energy_above_max_power"]),  # the 1e12 Wh session
    (0, 500, 350_000, ["zero_duration_with_energy"]),
    (0, 0, 350_000, []),
    (-5, 100, 350_000, ["stop_before_start"]),
])
def test_energy_against_the_stations_maximum_power(
        minutes: int, energy: int, power_w: int, flags: list[str]) -> None:
    assert energy_flags(T0, T0 + timedelta(minutes=minutes), energy, Decimal(power_w)) == flags


def test_times_outside_the_window() -> None:
    registered = T0 - timedelta(days=30)
    latest = T0 + timedelta(minutes=10)
    assert implausible_times([T0], registered, latest) == []
    late, early = T0 + timedelta(minutes=11), registered - timedelta(seconds=1)
    assert implausible_times([late], registered, latest) == [late]
    assert implausible_times([early], registered, latest) == [early]
    # no registration
    assert implausible_times([datetime(1, 1, 1, tzinfo=UTC)], None, latest) == []


def test_kilowatts_to_watts() -> None:
    assert [watts(k) for k in (350.0, 11, "7.4", 0.5)] == [
        Decimal(350000), Decimal(11000), Decimal(7400), Decimal(500)]


def _at(at: datetime, value: int, context: str, location: str | None) -> MeterSample:
    return MeterSample(timestamp=at, value=str(value), context=context, location=location)


def test_start_and_stop_come_from_one_location() -> None:
    """A DC charger reporting its register at the outlet (what the car was given) and at
    the inlet (drawn from the grid, its losses included), the outlet listed first: start
    and stop from the outlet, never the outlet's start and the inlet's stop."""
    t1 = T0 + timedelta(hours=1)
    samples = [_at(T0, 1_000, "Transaction.Begin", "Outlet"),
               _at(T0, 1_200, "Transaction.Begin", "Inlet"),
               _at(t1, 11_000, "Transaction.End", "Outlet"),
               _at(t1, 12_700, "Transaction.End", "Inlet")]
    result = compute_energy(None, None, samples, T0)
    assert result.flags == ["meter_start_from_samples", "meter_stop_from_samples"]
    assert (result.meter_start_wh, result.meter_stop_wh, result.energy_wh) == (
        1_000, 11_000, 10_000)
    # no location is the outlet (the default of both versions); the inlet alone is billed
    # when it is all there is
    unnamed = [_at(T0, 1_000, "Transaction.Begin", None),
               _at(T0, 1_200, "Transaction.Begin", "Inlet"),
               _at(t1, 11_000, "Transaction.End", "Outlet"),
               _at(t1, 12_700, "Transaction.End", "Inlet")]
    assert compute_energy(None, None, unnamed, T0).energy_wh == 10_000
    inlet = [s for s in samples if s.location == "Inlet"]
    assert compute_energy(None, None, inlet, T0).energy_wh == 11_500


def test_a_begin_reading_is_the_start_whatever_time_it_carries() -> None:
    """Growatt and Project EV chargers repeat the Transaction.Begin reading in every frame,
    under the frame's time, beside the periodic one: the register has not gone back, and
    the latest reading is the periodic one."""
    frames = [s("18", 10, context="Sample.Periodic"), s("0", 10, context="Transaction.Begin"),
              s("111", 13, context="Sample.Periodic"), s("0", 13, context="Transaction.Begin")]
    found = register_readings(frames)
    assert not found.decrease and found.flags == ()
    assert [r[1] for r in found.readings] == [0, 0, 18, 111]
    r = energy_of(found, Decimal(0), None, T0)
    assert (r.meter_stop_wh, r.energy_wh) == (Decimal(111), 111)
    # 2.0.1 (no meterStart): the begin reading starts the session
    r = compute_energy(None, None, frames, T0)
    assert (r.meter_start_wh, r.meter_stop_wh, r.energy_wh) == (0, 111, 111)
    # a begin reading above the register read after it: a register that went back
    found = register_readings([s("163630", 10, context="Sample.Periodic"),
                               s("170000", 10, context="Transaction.Begin")])
    assert found.decrease and found.flags == ("meter_went_backwards",)


def _begin(value: str, minutes: float, **kw: object) -> MeterSample:
    return s(value, minutes, context="Transaction.Begin", **kw)


@pytest.mark.parametrize("begins", [
    [_begin("0", 10), _begin("157440", 13)],  # the register from 0, then a lifetime one
    [_begin("157440", 10), _begin("0", 13)],  # the same, the other way round
    [_begin("157440", 10), _begin("157440.1", 13)],  # a tenth of a Wh apart
    [_begin("157440", 10), _begin("157.441", 13, unit="kWh")],  # a Wh apart, in kWh
    [_begin("157440", 10), _begin("157440", 13), _begin("157500", 16)],  # the third
], ids=["up", "down", "a-tenth-of-a-wh", "in-kwh", "a-later-third"])
def test_begin_readings_that_differ_leave_the_start_unknown(begins: list[MeterSample]) -> None:
    """A station that repeats its Transaction.Begin reading repeats one value: two values
    are two starts, and which one the session began at is not known."""
    samples = [*begins, s("163630", 20, context="Sample.Periodic")]
    found = register_readings(samples)
    assert "begin_readings_differ" in found.flags
    # whether the station reported a meterStart (1.6) or not (2.0.1); but beside a
    # meterStart that is not 0, a begin reading of 0 is a value the charger had not read
    # (the first two): one begin value, meterStart's
    zero = any(b.value == "0" for b in begins)
    for start in (Decimal(157440), Decimal(0), None):
        differ = "begin_readings_differ" in compute_energy(start, None, samples, T0).flags
        assert differ is not (zero and start == 157440), start


def test_begin_readings_of_one_value_or_of_another_register_do_not_differ() -> None:
    """The same value however it is written (Wh, kWh, decimals) is one start; a begin
    reading of a register that is not billed (the inlet's beside the outlet's, a phase's,
    the EV's) is no start of the session."""
    same = [_begin("157440", 10), _begin("157440.0", 13), _begin("157.44", 16, unit="kWh"),
            s("163630", 20, context="Sample.Periodic")]
    assert register_readings(same).flags == ()
    others = [_begin("1000", 0, location="Outlet"), _begin("1200", 0, location="Inlet"),
              _begin("1250", 5, location="Inlet"), _begin("400", 5, phase="L1"),
              _begin("90000", 5, location="EV"),
              s("11000", 60, context="Transaction.End", location="Outlet"),
              s("12700", 60, context="Transaction.End", location="Inlet")]
    r = compute_energy(None, None, others, T0)
    assert "begin_readings_differ" not in r.flags and r.energy_wh == 10_000


@pytest.mark.parametrize("meter_start", [None, Decimal(0)], ids=["2.0.1", "1.6"])
def test_a_begin_reading_of_0_beside_a_lifetime_register_is_a_placeholder(
        meter_start: Decimal | None) -> None:
    """An Iocharger AC station (citrineos/citrineos-core#1060) that starts a transaction
    while offline reports Transaction.Begin 0, its register unread; the register it reads
    once online is its lifetime one (909,948 Wh a minute later). A begin reading of 0 is
    the claim a meterStart of 0 makes, and is no more believed: the session starts at the
    first reading that is not a begin one, not at 0 (910,031 - 909,948 = 83 Wh)."""
    samples = [_begin("0", 0), s("909948", 1, context="Sample.Periodic"),
               s("910031", 180, context="Transaction.End")]
    r = compute_energy(meter_start, None, samples, T0)
    assert (r.meter_start_wh, r.energy_wh) == (909948, 83)
    assert "meter_start_placeholder" in r.flags
    # a register that starts at 0 each transaction is no placeholder (Growatt, Project EV)
    growing = [_begin("0", 0), s("18", 1, context="Sample.Periodic"),
               s("111", 4, context="Transaction.End")]
    r = compute_energy(meter_start, None, growing, T0)
    assert (r.meter_start_wh, r.energy_wh) == (0, 111)
    assert "meter_start_placeholder" not in r.flags


def test_a_meter_start_below_the_begin_reading_holds_the_session() -> None:
    """A hostile 1.6 station reports meterStart 1,000 Wh below the register it gives as its
    Transaction.Begin reading, to bill the driver for 1,000 Wh never delivered: two starts,
    held; the energy counted meanwhile is from the higher one (never more than either
    start claims)."""
    samples = [_begin("157440", 0), s("163630", 90, context="Transaction.End")]
    r = compute_energy(Decimal(156440), Decimal(163630), samples, T0)
    assert "begin_readings_differ" in r.flags
    assert (r.meter_start_wh, r.energy_wh) == (157440, 6190)
    assert (r.claimed_start_wh, r.start_source) == (156440, "reported")
    # the other way round: a meterStart above the begin reading, held as well
    r = compute_energy(Decimal(158440), Decimal(163630), samples, T0)
    assert "begin_readings_differ" in r.flags
    assert (r.meter_start_wh, r.energy_wh) == (158440, 5190)
    # a Wh apart is apart (both written to the Wh)
    r = compute_energy(Decimal(157439), Decimal(163630), samples, T0)
    assert "begin_readings_differ" in r.flags


@pytest.mark.parametrize(("meter_start", "begin"), [
    (Decimal(157440), _begin("157440", 0)),  # the same reading
    (Decimal(157440), _begin("157440.000", 0)),  # written with decimals (Alfen)
    (Decimal(1234563), _begin("1234.56", 0, unit="kWh")),  # 10 Wh steps: 1,234,560-569
    (Decimal(1234569), _begin("1234.56", 0, unit="kWh")),
    (Decimal(1234555), _begin("1234.56", 0, unit="kWh")),  # rounded up to 1234.56
    (Decimal(1234563), _begin("123456", 0, multiplier=1)),  # 2.0.1 10^1 Wh
    # kWh to one decimal (100 Wh steps) or whole: the reading cannot say more, and an
    # honest charger that writes it so must not have every session held
    (Decimal(1234563), _begin("1234.5", 0, unit="kWh")),
    (Decimal(1234563), _begin("1235", 0, unit="kWh")),
], ids=["same", "decimals", "kwh-truncated", "kwh-last-wh", "kwh-rounded", "multiplier",
        "tenth-kwh", "whole-kwh"])
def test_a_meter_start_within_the_begin_readings_resolution_agrees(
        meter_start: Decimal, begin: MeterSample) -> None:
    """A begin reading written in coarser steps than meterStart (kWh to two decimals: 10
    Wh) agrees with any meterStart its digits allow; meterStart is billed, as reported."""
    r = compute_energy(meter_start, Decimal(1300000), [begin], T0)
    assert "begin_readings_differ" not in r.flags
    assert r.meter_start_wh == meter_start and r.start_source == "reported"


@pytest.mark.parametrize(("meter_start", "begin"), [
    (Decimal(1234570), _begin("1234.56", 0, unit="kWh")),  # one step beyond
    (Decimal(1234549), _begin("1234.56", 0, unit="kWh")),
    (Decimal(1234399), _begin("1234.5", 0, unit="kWh")),  # beyond 100 Wh steps
    (Decimal(1233563), _begin("1235", 0, unit="kWh")),  # a whole kWh apart
    # below a rounded reading by more than half its step (1235 kWh, rounded or cut, is at
    # least 1,234,500 Wh): meterStart 999 Wh low would bill 999 Wh never delivered
    (Decimal(1234001), _begin("1235", 0, unit="kWh")),
    (Decimal(1234001), _begin("1235", 0, multiplier=3)),
    # steps beyond a kWh (10^3 kWh here) are no licence to differ by more than one kWh
    (Decimal(1232563), _begin("1.234", 0, unit="kWh", multiplier=3)),
], ids=["kwh-above", "kwh-below", "tenth-kwh-below", "whole-kwh-apart", "whole-kwh-below",
        "whole-kwh-by-multiplier", "kwh-times-1000"])
def test_a_meter_start_beyond_the_begin_readings_resolution_differs(
        meter_start: Decimal, begin: MeterSample) -> None:
    r = compute_energy(meter_start, Decimal(1300000), [begin], T0)
    assert "begin_readings_differ" in r.flags


def test_a_meter_start_is_compared_with_the_billed_registers_begin_reading_only() -> None:
    """An inlet's begin reading (the grid side, its losses included), a phase's and the
    EV's are no start of the billed register: a meterStart that is the outlet's agrees."""
    samples = [_begin("1000", 0, location="Outlet"), _begin("1200", 0, location="Inlet"),
               _begin("400", 0, phase="L1"), _begin("90000", 0, location="EV"),
               s("11000", 60, context="Transaction.End", location="Outlet"),
               s("12700", 60, context="Transaction.End", location="Inlet")]
    r = compute_energy(Decimal(1000), None, samples, T0)
    assert "begin_readings_differ" not in r.flags and r.energy_wh == 10_000
    # the outlet's own begin reading 1,000 Wh above meterStart differs
    r = compute_energy(Decimal(0), None, samples, T0)
    assert "begin_readings_differ" in r.flags and r.energy_wh == 10_000


@pytest.mark.parametrize("meter_start", [None, Decimal(0)], ids=["2.0.1", "1.6"])
def test_a_start_of_0_is_judged_at_the_stations_power_not_at_any_chargers(
        meter_start: Decimal | None) -> None:
    """A begin reading of 0, then the lifetime register 300,000 Wh ten minutes later:
    1.8 MW, five times the 350 kW the session's plausibility check holds a station of
    unknown power to. Judged by 4 MW (667 kWh at ten minutes) it passed as energy, and so
    did 310 kWh over the hour: the lifetime register billed. At the station's power it is
    a placeholder: 10,000 Wh from the register."""
    samples = [_begin("0", 0), s("300000", 10, context="Sample.Periodic"),
               s("310000", 60, context="Transaction.End")]
    r = compute_energy(meter_start, None, samples, T0)  # the default 350 kW
    assert (r.meter_start_wh, r.energy_wh) == (300000, 10000)
    assert "meter_start_placeholder" in r.flags and "energy_above_max_power" not in r.flags
    # a station registered at 2 MW could have delivered it: energy, held or not by the
    # session's own check
    r = compute_energy(meter_start, None, samples, T0, Decimal(2_000_000))
    assert (r.meter_start_wh, r.energy_wh) == (0, 310000)
    assert "meter_start_placeholder" not in r.flags


@pytest.mark.parametrize(("power", "minutes", "wh"), [
    (Decimal(350_000), 60, "7000"),  # a new meter: 7 kWh an hour after a begin of 0
    (Decimal(11_000), 60, "11000"),  # an 11 kW wallbox at full power for the hour
    (Decimal(11_000), 10, "1900"),  # its first ten minutes, within the check's slack
    (Decimal(350_000), 10, "58000"),  # a 350 kW charger's first ten minutes
])
def test_an_honest_start_of_0_on_a_new_meter_is_billed_from_0(
        power: Decimal, minutes: int, wh: str) -> None:
    """A real register that starts small (a new meter, a per-session counter) is no
    placeholder at the station's power: billed from 0, no flag."""
    r = compute_energy(None, None, [_begin("0", 0),
                                    s(wh, minutes, context="Transaction.End")], T0, power)
    assert (r.meter_start_wh, r.energy_wh) == (0, int(wh))
    assert set(r.flags) == {"meter_start_from_samples", "meter_stop_from_samples"}
    assert energy_flags(T0, T0 + timedelta(minutes=minutes), r.energy_wh, power) == []


def test_a_plausible_reading_before_the_lifetime_register_never_bills_it() -> None:
    """A hostile station puts a plausible reading (100 Wh a minute after the begin reading
    of 0) before its lifetime register, so that the first reading passes the placeholder
    check and 310 kWh, within 350 kW over the hour, is billed. No station jumps from 100 Wh
    to 300,000 Wh in nine minutes: counted from the jump, never from 0, and held."""
    samples = [_begin("0", 0), s("100", 1, context="Sample.Periodic"),
               s("300000", 10, context="Sample.Periodic"),
               s("310000", 60, context="Transaction.End")]
    for start in (None, Decimal(0)):
        r = compute_energy(start, None, samples, T0)
        assert (r.meter_start_wh, r.energy_wh) == (300000, 10000)
        assert {"meter_start_placeholder", "energy_above_max_power"} <= set(r.flags)
    # the same readings within the station's power are a session's: billed from 0
    slow = [_begin("0", 0), s("100", 1), s("3000", 10), s("13000", 60)]
    r = compute_energy(Decimal(0), Decimal(13000), slow, T0, Decimal(22_000))
    assert (r.energy_wh, r.flags) == (13000, [])


def test_a_placeholder_meter_start_of_0_does_not_differ_from_the_begin_reading() -> None:
    """meterStart 0 beside a lifetime register read at the start is a placeholder (the
    session starts at the register, flagged meter_start_placeholder, not held), not a
    second start; a meterStart of 0 beside a begin reading any charger could have reached
    since its start is not a placeholder, and two starts."""
    lifetime = [_begin("909948", 0), s("910031", 180, context="Transaction.End")]
    r = compute_energy(Decimal(0), None, lifetime, T0)
    assert "meter_start_placeholder" in r.flags and "begin_readings_differ" not in r.flags
    assert (r.meter_start_wh, r.energy_wh) == (909948, 83)
    small = [_begin("500", 0), s("600", 180, context="Transaction.End")]
    r = compute_energy(Decimal(0), None, small, T0)
    assert "meter_start_placeholder" not in r.flags and "begin_readings_differ" in r.flags
    assert (r.meter_start_wh, r.energy_wh) == (500, 100)


def test_a_begin_reading_of_0_beside_a_meter_start_is_a_placeholder() -> None:
    """A 1.6 begin reading of 0 beside a meterStart (a charger that fills in 0 for a value
    it has not read, as the Iocharger does on 2.0.1) is no second start: meterStart is
    billed, nothing held."""
    samples = [_begin("0", 0), s("1240563", 60, context="Transaction.End")]
    r = compute_energy(Decimal(1234563), None, samples, T0)
    assert "begin_readings_differ" not in r.flags
    assert (r.meter_start_wh, r.energy_wh, r.start_source) == (1234563, 6000, "reported")


def test_begin_readings_that_differ_count_from_the_highest_start() -> None:
    """Two begin readings leave the start unknown: the energy counted (shown, checked
    against the driver's limit, billed if an operator releases the session) is from the
    highest, the least any of them claims."""
    samples = [_begin("157440", 10), _begin("157500", 13), s("163630", 20)]
    for start in (Decimal(157440), None):
        r = compute_energy(start, None, samples, T0)
        assert "begin_readings_differ" in r.flags
        assert (r.meter_start_wh, r.energy_wh) == (157500, 6130)


def test_a_meter_stop_below_an_earlier_reading_is_a_meter_going_backwards() -> None:
    """A 1.6 meterStop below a reading of the billed register the session already had
    (1,000 at the start, 5,000 at a periodic reading, 3,000 at the stop): the register
    went backwards, as it does where the stop is a Transaction.End reading (2.0.1). Not a
    decrease of the readings themselves: signed meter data may still settle the stop."""
    r = compute_energy(Decimal(1000), Decimal(3000), [s("5000", 30)], T0)
    assert "meter_went_backwards" in r.flags and not r.readings_decrease
    assert r.stop_below_reading
    ended = compute_energy(None, None, [s("1000", 0, context="Transaction.Begin"),
                                        s("5000", 30), s("3000", 60,
                                                         context="Transaction.End")], T0)
    assert "meter_went_backwards" in ended.flags and ended.readings_decrease
    # a stop at or above every reading: nothing went backwards
    fine = compute_energy(Decimal(1000), Decimal(5000), [s("1000", 0), s("5000", 30)], T0)
    assert (fine.flags, fine.stop_below_reading) == ([], False)
    # a kilowatt-hour below a reading: the tolerance a meterStart has beside its begin one
    assert compute_energy(Decimal(1000), Decimal(4000), [s("5000", 30)], T0).stop_below_reading
    assert not compute_energy(Decimal(1000), Decimal(4001), [s("5000", 30)],
                              T0).stop_below_reading


def kwh(value: str, minutes: int, context: str | None = None) -> MeterSample:
    return MeterSample(T0 + timedelta(minutes=minutes), value, unit="kWh", context=context,
                       measurand="Energy.Active.Import.Register")


def test_honest_readings_beside_a_meter_start_and_stop_are_no_meter_going_backwards() -> None:
    """Real chargers' readings beside 1.6 meterStart/meterStop in Wh: kWh rounded to 10 Wh
    (157.44 beside a meterStop of 157,436), cut to 100 Wh (150.0 beside a meterStart of
    150,049), and periodic readings that count each session from 0 beside lifetime
    meterStart/meterStop values. None is a register that went backwards: the stop is within
    a reading's digits, and a start above later readings is not compared (it bills the
    driver less, never more)."""
    for start, stop, samples in (
            (150_000, 157_436, [kwh("153.20", 30), kwh("157.44", 60, "Transaction.End")]),
            (150_049, 157_000, [kwh("150.0", 1), kwh("157.0", 60, "Transaction.End")]),
            (157_000, 164_000, [kwh("2.0", 20), kwh("7.0", 50)])):
        r = compute_energy(Decimal(start), Decimal(stop), samples, T0)
        assert "meter_went_backwards" not in r.flags and not r.stop_below_reading, \
            (start, stop, r.flags)
        assert r.energy_wh == stop - start


def test_a_meter_stop_above_the_stations_end_reading_is_a_stop_in_dispute() -> None:
    """A 1.6 meterStop of 10,000 beside the station's own Transaction.End reading of 8,000
    (transactionData) billed 9,000 Wh with no flag: 2,000 Wh the station's own reading says
    it did not deliver. Two stops: held (end_readings_differ), counted to the lower. A
    meterStop within the end reading's digits (157,436 beside 157.44 kWh) is one stop."""
    r = compute_energy(Decimal(1000), Decimal(10000),
                       [s("5000", 30), s("8000", 60, context="Transaction.End")], T0)
    assert "end_readings_differ" in r.flags
    assert (r.meter_stop_wh, r.energy_wh) == (8000, 7000)
    honest = compute_energy(Decimal(150_000), Decimal(157_436),
                            [kwh("157.44", 60, "Transaction.End")], T0)
    assert (honest.flags, honest.energy_wh) == ([], 7436)
    # an end reading of 0 beside a meterStop that is not: a value not read, no stop
    assert compute_energy(Decimal(1000), Decimal(9000),
                          [s("0", 60, context="Transaction.End")], T0).flags == []


def test_two_end_readings_of_one_register_that_differ_are_a_stop_in_dispute() -> None:
    """A 2.0.1 station (no meterStop) sends two Transaction.End readings of the billed
    register, 8,000 then 10,000 Wh: two stops. The later one alone billed 9,000 Wh with no
    flag, 2,000 Wh that the station's other end reading says it did not deliver. Held
    (end_readings_differ), counted to the lowest, as a meterStop beside an end reading is.
    End readings within each other's digits (157.44 kWh beside 157,436 Wh) are one stop,
    and an end reading of 0 is a value not read."""
    r = compute_energy(None, None, [s("1000", 0, context="Transaction.Begin"),
                                    s("8000", 59, context="Transaction.End"),
                                    s("10000", 60, context="Transaction.End")], T0)
    assert "end_readings_differ" in r.flags
    assert (r.meter_stop_wh, r.energy_wh) == (8000, 7000)
    end = "Transaction.End"
    for ends in ([kwh("157.44", 60, end), s("157436", 60, context=end)],
                 [s("157436", 60, context=end), kwh("157.44", 60, end)],
                 [s("0", 59, context=end), s("157436", 60, context=end)],
                 [s("157436", 59, context=end)] * 2):
        honest = compute_energy(None, None, [s("150000", 0, context="Transaction.Begin"),
                                             *ends], T0)
        assert "end_readings_differ" not in honest.flags, (ends, honest.flags)
        assert honest.energy_wh in (7436, 7440), (ends, honest.energy_wh)


@pytest.mark.parametrize(
    ("samples", "outside"),
    [
        # within the session (minutes 0 to 60)
        ([s("1000", 0, context="Transaction.Begin"), s("5000", 60)], None),
        # a minute of clock and sampling either side
        ([s("1000", -1), s("5000", 61)], None),
        # after the stop: the energy after it billed
        ([s("1000", 0), s("5000", 30), s("9000", 61.5)], (0, 61.5)),
        # before the start, no begin reading: the earliest reading is the start
        ([s("1000", -30), s("5000", 30)], (-30, 30)),
        # a Transaction.Begin reading is the start whatever its time
        ([s("1000", -30, context="Transaction.Begin"), s("1000", 90,
                                                        context="Transaction.Begin"),
          s("5000", 30)], None),
        # another register's, or a phase's, reading is not billed: not compared
        ([s("1000", 0), s("9000", 120, phase="L1"), s("9000", 120, location="EV")], None),
    ],
)
def test_readings_outside_the_session(samples: list[MeterSample],
                                      outside: tuple[float, float] | None) -> None:
    found = readings_outside(register_readings(samples), T0, T0 + timedelta(minutes=60))
    assert found == (None if outside is None else tuple(
        T0 + timedelta(minutes=m) for m in outside))


def test_readings_outside_at_the_end_of_the_calendar() -> None:
    """A stop at the last time there is: no overflow, a reading before the start found."""
    end = datetime.max.replace(tzinfo=UTC)
    early = MeterSample(timestamp=T0 - timedelta(days=1), value="1")
    found = readings_outside(register_readings([early]), T0, end)
    assert found == (early.timestamp, early.timestamp)


@pytest.mark.parametrize(("readings", "backwards", "energy"), [
    # the outlet's register unlabelled (the default) and labelled Outlet is one register,
    # billed from the first reading to the last: one label's 50 kWh before the other's
    # 12 kWh is the register going backwards, as it is under one label (a hostile station
    # labelling its readings by turns billed 42 kWh of two 2 kWh series, unheld)
    ([s("10000", 0, context="Transaction.Begin"), s("50000", 10, location="Outlet"),
      s("12000", 20), s("52000", 30, location="Outlet", context="Transaction.End")],
     True, 42000),
    ([s("10000", 0, context="Transaction.Begin"), s("50000", 10), s("12000", 20),
      s("52000", 30, context="Transaction.End")], True, 42000),
    # the register in Wh unlabelled and in kWh (coarser) as Outlet: within a step, no decrease
    ([s("10000", 0, context="Transaction.Begin"), s("12345", 10),
      s("12.3", 10, unit="kWh", location="Outlet"), s("12399", 20),
      s("12.4", 20, unit="kWh", location="Outlet", context="Transaction.End")],
     False, 2400),
])
def test_one_register_under_two_labels_going_backwards_is_held(
    readings: list[MeterSample], backwards: bool, energy: int,
) -> None:
    result = compute_energy(None, None, readings, T0)
    assert ("meter_went_backwards" in result.flags) is backwards
    assert result.readings_decrease is backwards
    assert result.energy_wh == energy


@pytest.mark.parametrize(("starts", "samples", "expected"), [
    # a Grizzl-E: lifetime meterStart, the session's kWh from 0 (lbbrhzn/ocpp#2093)
    ((Decimal(4_076_447),), [s("0.104", 1, unit="kWh"), s("0.353", 3, unit="kWh")], 353),
    # a lifetime register in kWh, cut: a reading of it within a kWh below the start
    ((Decimal(4_076_447),), [s("4076.4", 3, unit="kWh")], None),
    # more than the default 350 kW delivers from 0 in ten minutes: no register from 0
    ((Decimal(4_076_447),), [s("2000000", 10)], None),
    # at or above a start: the register itself (energy_of counts it)
    ((Decimal(157_440),), [s("163630", 90)], None),
    # a begin reading is a start claimed too: a reading above it is no register from 0
    ((Decimal(170_000),), [_begin("157440", 90), s("163630", 90)], None),
    # no start claimed above 0 (a Growatt from 0): energy_of counts it
    ((Decimal(0), None), [s("111", 3)], None),
], ids=["grizzl-e", "cut-lifetime", "beyond-power", "above-start", "below-a-begin",
        "start-0"])
def test_a_register_from_0_below_every_start_is_the_running_energy(
        starts: tuple[Decimal | None, ...], samples: list[MeterSample],
        expected: int | None) -> None:
    found = register_readings(samples)
    assert counted_from_zero(found, starts, T0, DEFAULT_MAX_POWER_W) == expected


# a register's readings as stations send them: totals, a begin and an end reading, values
# in Wh and kWh, 0, a lone phase, one beyond any meter
_READINGS = st.lists(st.builds(
    lambda value, minutes, context, unit: s(value, minutes, context=context, unit=unit),
    st.sampled_from(["0", "1000", "1000.4", "999", "12345", "12.3", "4076447", "1E+30"]),
    st.integers(-5, 300),
    st.sampled_from([None, "Sample.Periodic", "Transaction.Begin", "Transaction.End"]),
    st.sampled_from(["Wh", "kWh"])), max_size=5)
_STARTS = st.sampled_from([None, Decimal(0), Decimal(1000), Decimal("999.5"),
                           Decimal(4_076_447), Decimal(-1)])


@settings(max_examples=400, deadline=None)
@given(_READINGS, _STARTS, st.sampled_from([None, Decimal(0), Decimal(13000)]))
def test_a_start_and_stop_without_the_energy_between_are_the_full_computations(
        samples: list[MeterSample], start: Decimal | None, stop: Decimal | None) -> None:
    # what a running session's reading asks (the start, the stop and their flags) is what
    # the full computation gives; only the energy between them, and its own flag, are left
    found = register_readings(samples)
    full = energy_of(found, start, stop, T0, DEFAULT_MAX_POWER_W)
    ends = energy_of(found, start, stop, T0, DEFAULT_MAX_POWER_W, between=False)
    assert ends.energy_wh == 0
    assert replace(ends, energy_wh=full.energy_wh, flags=full.flags) == full
    # the flag of a stop below the start, the energy between them's, is the one left out
    backwards_between = full.meter_start_wh is not None and full.meter_stop_wh is not None \
        and full.meter_stop_wh < full.meter_start_wh
    assert ends.flags in ((full.flags, full.flags[:-1]) if backwards_between
                          else (full.flags,))


def _counted_from_zero_by_lists(found: Readings, starts: tuple[Decimal | None, ...],
                                started_at: datetime) -> int | None:
    """counted_from_zero as its rule reads: the claims listed, the lowest of them."""
    claims = [wh for wh in starts if wh] + [wh for wh, _ in found.begins if wh]
    if not claims or not any(r[1] < min(claims) for r in found.readings):
        return None
    return _counted_from_zero(found, min(claims), started_at, DEFAULT_MAX_POWER_W)


@settings(max_examples=400, deadline=None)
@given(_READINGS, st.tuples(_STARTS, _STARTS))
def test_a_register_from_0_is_found_as_its_rule_reads(
        samples: list[MeterSample], starts: tuple[Decimal | None, Decimal | None]) -> None:
    found = register_readings(samples)
    assert counted_from_zero(found, starts, T0, DEFAULT_MAX_POWER_W) \
        == _counted_from_zero_by_lists(found, starts, T0)


_TIMES = st.integers(-10**6, 10**6).map(lambda s: T0 + timedelta(seconds=s))


@given(st.lists(_TIMES, max_size=6), st.none() | _TIMES, _TIMES)
def test_a_message_s_implausible_times_are_those_outside_its_window_in_order(
        times: list[datetime], not_before: datetime | None, not_after: datetime) -> None:
    assert implausible_times(times, not_before, not_after) == [
        t for t in times if t > not_after or (not_before is not None and t < not_before)]
