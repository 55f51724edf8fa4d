"""Energy of a charging session from its meter readings.

Rules (DESIGN.md, "Protocol rules"):

* Only the total ``Energy.Active.Import.Register`` counts. 1.6 §7.31: the
  default measurand of a sampled value is that register and the default unit
  Wh; values are strings and may be in kWh. 2.0.1 §2.55/2.56: values are
  numbers and ``unitOfMeasure.multiplier`` scales them by 10^n.
* Per-phase readings (``phase`` set) are parts, not the total: never summed in. A
  station whose only register is tagged with one phase (a single-phase Grizzl-E's
  "L1-N", lbbrhzn/ocpp#442) has its readings read as the total for the running energy
  (:func:`lone_phase_readings`); and billed where the total leaves the session without a
  start or a stop (:func:`billed_energy`: 2.0.1 has no meterStart/meterStop), under the
  same rules as a total's, flagged ``billed_from_phase`` (not a hold). One phase's energy
  is never more than the total's: a three-phase charger reporting one phase is
  underbilled, never a driver overbilled. Registers of several phases, or a phase beside
  a total, are never billed so. A 1.6 stop with meterStart and meterStop bills them,
  unless meterStart is a placeholder 0 that register's readings show (below).
* Readings of connector 0 / the main meter and clock-aligned readings outside a
  transaction are never attached to a session (the service layer sees to that).
* A missing or placeholder ``meterStart`` must never bill the meter's lifetime
  reading: when a station sends 0 (as meterStart or as a 2.0.1 Transaction.Begin
  reading) but its first other reading in the session is more than the station could
  deliver since the start, the reading is a lifetime register and the session starts
  at that reading instead (``meter_start_placeholder``, not a hold). "Could deliver" is
  at the power the session's plausibility check holds it to (``max_power_w``: the
  station's registered maximum, else the default, ``DEFAULT_MAX_POWER_W`` unless
  configured; a power the station reports may lower it, not raise it:
  csms.service.sessions), with that check's slack and a kWh more: a reading that check
  would take as energy is energy here too (a new meter's 7 kWh an hour after a begin of 0
  is billed). A later reading beyond that
  bound after plausible ones (begin 0, 100 Wh, then a lifetime register) is a jump no
  station makes: the session starts at it as well, and is held
  (``energy_above_max_power``): the lifetime register is never billed, whatever reading a
  station puts before it.
* A ``Transaction.Begin`` reading is the register at the transaction's start, whatever
  time its frame gives it: it comes before the session's other readings (some chargers
  repeat it, stamped with the frame's time, beside every periodic reading). A station that
  repeats it repeats one value: begin readings of the billed register that differ (by any
  amount, in any frame) leave the start unknown, and the session is held
  (``begin_readings_differ``) whatever meterStart the station reported.
* A 1.6 ``meterStart`` is a reading of the register at the start too: one that differs
  from a begin reading of the billed register leaves the start unknown as well
  (``begin_readings_differ``: a station that reports meterStart below its begin reading
  bills energy it never delivered). They agree within the coarser of their resolutions,
  read from the digits each was written with, the reading rounded or cut (``1234.56`` kWh
  is 1,234,555-1,234,569 Wh; meterStart is whole Wh; ``1234.5`` kWh, 100 Wh steps), at
  most ``START_TOLERANCE_WH`` (1 kWh); meterStart is then billed as reported. Not
  compared: another register's begin reading (an inlet's beside the outlet's, a phase's,
  the EV's), a meterStart of 0 found to be a placeholder (below: the session starts
  elsewhere), a begin reading of 0 beside a meterStart that is not (:func:`start_claims`:
  a value the charger had not read, as the 2.0.1 placeholder below; nor is it a second
  begin value beside the others), a meter-signed begin reading (it settles the start, see
  ``csms.service.sessions``).
* A start in dispute never bills the driver more than any of its claims: the energy is
  counted from the highest of the starts (meterStart and the begin readings), for the
  running energy (shown, checked against the driver's limit) and for the held session.
* Signed samples are evidence, not readings: their bare ``value`` never counts (the
  service reads the verified OCMF reading instead, see ``csms.metering.ocmf``).
* A reading beyond any meter (``MAX_REGISTER_WH``), below 0 (an import register counts
  up from 0) or scaled by a multiplier beyond any unit is not a reading: it is ignored
  and the session flagged ``value_out_of_range``.
* Readings and energy are computed in ``csms.domain.tariff.DECIMALS`` (28 digits), as
  prices are, whatever the thread's context (importing vyper sets 78): the energy billed
  from a reading with more digits is the one a receipt's verifier computes from the record.
* A 1.6 ``meterStop`` is a reading of the register too. Below a reading of the billed
  register in the session (meterStart 1,000, a periodic 5,000, meterStop 3,000) by
  ``START_TOLERANCE_WH`` or more (less is a reading's rounded or cut kWh digits), the
  register went backwards (``meter_went_backwards``), as where a 2.0.1 Transaction.End
  reading is below a periodic one: the station's data contradicts itself. Not a decrease of
  the readings themselves (``EnergyResult.readings_decrease``): a meter-signed end reading
  settles it (``csms.service.sessions``). Beside a Transaction.End reading of the register
  that it does not agree with (as a meterStart with a begin reading), it is a stop in
  dispute (``end_readings_differ``), counted to the lower; so are Transaction.End
  readings of the register that differ among themselves. A meterStart above later
  readings is not compared: readings that count each session from 0 beside lifetime
  meterStart/meterStop values are a real charger's, and a start too high bills less.
  While such a session runs, those readings are its energy (:func:`counted_from_zero`:
  what its driver's limit is checked against), never below what :func:`energy_of` counts.
* Plausibility (:func:`energy_flags`, :func:`implausible_times`): energy above the station's
  maximum power over the session's duration, energy in no time, a meter that runs
  backwards (under one location's label, or from an unlabelled reading to an Outlet one or
  back by a step of the coarser or more: the default location is the Outlet, one
  register), times outside the window the station could have sent - each a named flag
  that holds the session from billing.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from decimal import ROUND_HALF_EVEN, Context, Decimal, getcontext, localcontext
from typing import Any, ParamSpec, TypeVar

from csms.domain.model import MeterSample
from csms.domain.tariff import DECIMALS, within_exponents

__all__ = [
    "BILLED_FROM_PHASE",
    "DEFAULT_MAX_POWER_W",
    "ENERGY_REGISTER",
    "MAX_PLAUSIBLE_POWER_W",
    "MAX_REGISTER_WH",
    "START_TOLERANCE_WH",
    "EnergyResult",
    "Readings",
    "billed_energy",
    "compute_energy",
    "counted_from_zero",
    "energy_between",
    "energy_flags",
    "energy_of",
    "implausible_times",
    "lone_phase_readings",
    "readings_outside",
    "register_readings",
    "register_wh",
    "start_claims",
    "start_judged",
    "to_wh",
    "watts",
]

ENERGY_REGISTER = "Energy.Active.Import.Register"
# Upper bound for any charger (MCS megawatt charging is 3.75 MW): no station's reported
# power is taken above it (csms.translate.v201); never used to bill.
MAX_PLAUSIBLE_POWER_W = Decimal(4_000_000)
PLAUSIBILITY_SLACK_WH = Decimal(1000)
# The most a station is taken to deliver when none is registered or reported (the fastest
# CCS chargers in service); see energy_flags.
DEFAULT_MAX_POWER_W = Decimal(350_000)
# No meter register reads more (1 TWh: a million times a busy DC charger's lifetime); a
# larger value, or one scaled by an absurd multiplier, is not a reading.
MAX_REGISTER_WH = Decimal(10) ** 15
MAX_MULTIPLIER = 24
# A meterStart agrees with a begin reading within the coarser of their resolutions (a
# charger that writes kWh to one decimal, or whole, cannot say more), but never beyond a
# kWh: steps coarser than that are no reading of a start.
START_TOLERANCE_WH = Decimal(1000)
# a session billed from the register of one phase, its only one (billed_energy): not a hold,
# shown for the operator to spot a three-phase charger reporting one phase (underbilled)
BILLED_FROM_PHASE = "billed_from_phase"
# Clocks and sampling: energy may exceed power x duration by this much before it is
# implausible (a minute at full power, and 1% for meter accuracy).
POWER_SLACK_SECONDS = 60
POWER_SLACK_RATIO = Decimal("1.01")

_UNIT_FACTOR = {"wh": Decimal(1), "kwh": Decimal(1000)}
# Where the billed register is read when a station reports several (EV is never billed):
# the outlet (what the car was given) first
_LOCATIONS = ("Outlet", "Cable", "Inlet", "Body")


_P = ParamSpec("_P")
_R = TypeVar("_R")


_TRAPS = DECIMALS.traps


def _pinned(context: Context) -> bool:
    """Whether ``context`` computes as :data:`~csms.domain.tariff.DECIMALS` does (a
    thread's default context does): then no context of its own is needed (entering one
    costs more than this look)."""
    return (context.prec == DECIMALS.prec and context.rounding == DECIMALS.rounding
            and context.Emax == DECIMALS.Emax and context.Emin == DECIMALS.Emin
            and context.clamp == DECIMALS.clamp and context.traps == _TRAPS)


def _in_decimals(fn: Callable[_P, _R]) -> Callable[_P, _R]:
    """``fn`` computed in :data:`~csms.domain.tariff.DECIMALS`, whatever the thread's
    context (see the module's docstring)."""
    @functools.wraps(fn)
    def pinned(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        if _pinned(getcontext()):
            return fn(*args, **kwargs)
        with localcontext(DECIMALS):
            return fn(*args, **kwargs)
    return pinned


def _to_wh(value: str, unit: str | None = "Wh", multiplier: int = 0) -> Decimal | None:
    """Convert one energy value to Wh, or None if it is not an energy value."""
    factor = _UNIT_FACTOR.get((unit or "Wh").lower())
    if factor is None or abs(multiplier) > MAX_MULTIPLIER:
        return None
    try:
        number = Decimal(value.strip())
        if not number.is_finite():
            return None
        return number.scaleb(multiplier) * factor
    except (ArithmeticError, AttributeError):  # InvalidOperation, Overflow (1e999999 Wh)
        return None


def _register_wh(sample: MeterSample, phased: bool = False) -> Decimal | None:
    """The total import register reading of ``sample`` in Wh, or None if it is not one
    (``phased``: a reading tagged with a phase is read as well, see
    :func:`lone_phase_readings`)."""
    if sample.measurand != ENERGY_REGISTER:
        return None
    if sample.phase and not phased:  # L1, L2, L3, L1-N...: a part of the total
        return None
    if sample.signed is not None or sample.format in ("SignedData", "SignedMeterValue"):
        return None  # evidence: the verified OCMF reading counts, never the bare value
    if sample.location == "EV":
        return None
    return _to_wh(sample.value, sample.unit, sample.multiplier)


to_wh = _in_decimals(_to_wh)
register_wh = _in_decimals(_register_wh)


@dataclass(slots=True)
class EnergyResult:
    meter_start_wh: Decimal | None
    meter_stop_wh: Decimal | None
    energy_wh: int
    flags: list[str] = field(default_factory=list)
    # where each reading came from: "reported" (meterStart/meterStop), "context" (a
    # Transaction.Begin/End sample), "sample" (the first/last reading), None (none); the
    # start's is that of ``claimed_start_wh``
    start_source: str | None = None
    stop_source: str | None = None
    readings_decrease: bool = False  # a later register reading below an earlier one
    # the start the station's data names (meterStart, else its first begin reading, else
    # its first reading): ``meter_start_wh``, unless the start is in dispute
    # (``begin_readings_differ``) and a higher one is counted from
    claimed_start_wh: Decimal | None = None
    # a reported meterStop below a reading of the billed register (flagged
    # ``meter_went_backwards``): no decrease of the readings themselves, a side a signed
    # end reading of the meter may still settle
    stop_below_reading: bool = False


def _max_plausible_wh(since: datetime | None, until: datetime,
                      max_power_w: Decimal) -> Decimal | None:
    """The most a register can have counted from 0 at ``since`` to ``until`` at
    ``max_power_w``: what :func:`energy_flags` allows for that time, and
    ``PLAUSIBILITY_SLACK_WH`` more (None without a start time)."""
    if since is None:
        return None
    seconds = max(Decimal(0), Decimal(str((until - since).total_seconds())))
    return max_power_w * (seconds + POWER_SLACK_SECONDS) / Decimal(3600) \
        * POWER_SLACK_RATIO + PLAUSIBILITY_SLACK_WH


@dataclass(frozen=True, slots=True)
class Readings:
    """The billed register's readings among some samples (:func:`register_readings`),
    in the order of their time (a Transaction.Begin reading first): what
    :func:`energy_of` needs of the samples, worked out apart from any session (a message's
    readings are read before its unit of work takes the database's write turn)."""

    readings: tuple[tuple[datetime, Decimal, str | None, str], ...]  # time, Wh, context, location
    flags: tuple[str, ...]  # value_out_of_range, meter_went_backwards, begin_readings_differ
    decrease: bool  # a later reading of one register below an earlier one
    # the billed register's Transaction.Begin readings: Wh, and the resolution (Wh) its
    # digits give it, to compare a meterStart with
    begins: tuple[tuple[Decimal, Decimal], ...] = ()
    # and its Transaction.End readings, the same way, to compare a meterStop with
    ends: tuple[tuple[Decimal, Decimal], ...] = ()
    # the phase of the register read (:func:`lone_phase_readings`); None: the total
    phase: str | None = None


@_in_decimals
def register_readings(samples: Iterable[MeterSample], phased: bool = False) -> Readings:
    """The total import register's readings of ``samples`` (one register: the outlet's
    when a station reports several), sorted by time (a Transaction.Begin reading first,
    see :func:`_in_order`), with their flags: ``begin_readings_differ`` when that
    register's Transaction.Begin readings are not all one value (another register's never
    count: an inlet's begin reading is not the outlet's); and that register's begin
    readings with the resolution of each, for a meterStart to be compared with.
    ``phased``: readings tagged with a phase are read as the total too (only
    :func:`lone_phase_readings` asks it)."""
    flags: list[str] = []
    readings: list[tuple[datetime, Decimal, str | None, str]] = []
    steps: dict[int, Decimal] = {}  # a begin reading's resolution, by its place in readings
    # the samples of each reading, by its time and value: their resolution is read only for
    # a reading lower than the one before it (the billed register as one, below)
    sources: dict[tuple[datetime, Decimal], list[MeterSample]] = {}
    by_location: dict[str | None, list[tuple[datetime, Decimal, str | None]]] = {}
    for s in samples:
        wh = _register_wh(s, phased)
        if wh is None:
            if s.measurand == ENERGY_REGISTER and _beyond_range(s, phased):
                _flag(flags, "value_out_of_range")
            continue
        if not _readable(wh):
            _flag(flags, "value_out_of_range")
            continue
        # none is the outlet, the default of both versions (for the choice below; a
        # station may still keep a register of its own under each: KEBA's differ in unit)
        if s.context in ("Transaction.Begin", "Transaction.End"):
            steps[len(readings)] = _resolution_wh(s)
        sources.setdefault((s.timestamp, wh), []).append(s)
        readings.append((s.timestamp, wh, s.context, s.location or "Outlet"))
        by_location.setdefault(s.location, []).append((s.timestamp, wh, s.context))
    located = {r[3] for r in readings}
    billed = next((loc for loc in _LOCATIONS if loc in located), min(located)) \
        if len(located) > 1 else None
    # one register from start to stop: a charger may report its outlet and its inlet
    # (the grid side, its losses included), each a register of its own
    begins = tuple((r[1], steps[i]) for i, r in enumerate(readings)
                   if i in steps and r[2] == "Transaction.Begin"
                   and (billed is None or r[3] == billed))
    ends = tuple((r[1], steps[i]) for i, r in enumerate(readings)
                 if i in steps and r[2] == "Transaction.End"
                 and (billed is None or r[3] == billed))
    if billed is not None:
        readings = [r for r in readings if r[3] == billed]
    readings.sort(key=_in_order)
    if len({r[1] for r in readings if r[2] == "Transaction.Begin"}) > 1:
        # a station repeats its begin reading with one value: two are two starts
        _flag(flags, "begin_readings_differ")
    decrease = False
    for series in by_location.values():
        # a begin reading of 0 claims no register (a value the charger had not read, see
        # energy_of): no reading for the register to have gone back from or to
        series = [r for r in series if r[1] or r[2] != "Transaction.Begin"]
        series.sort(key=_in_order)
        if any(later[1] < earlier[1] for earlier, later in itertools.pairwise(series)):
            decrease = True
            _flag(flags, "meter_went_backwards")  # a register never decreases
    # the billed register as billed: unlabelled readings and the Outlet's are one register
    # (the default location), its start and stop taken from either. Going backwards from one
    # label's reading to the other's by a step of the coarser of the two or more (a kWh
    # reading beside a Wh one is cut or rounded) is a decrease as well: a station labelling
    # its readings by turns is billed from one series' start to the other's stop otherwise.
    # Begin readings apart: two that differ are two starts (begin_readings_differ, which a
    # signed begin settles), and a start above later readings bills less, never more
    billed_series = [r for r in readings if r[2] != "Transaction.Begin"]
    for earlier, later in itertools.pairwise(billed_series):
        if later[1] >= earlier[1]:
            continue
        step = min(max(_resolution_wh(x) for r in (earlier, later)
                       for x in sources[(r[0], r[1])]), START_TOLERANCE_WH)
        if earlier[1] - later[1] >= step:
            decrease = True
            _flag(flags, "meter_went_backwards")
            break
    return Readings(tuple(readings), tuple(flags), decrease, begins, ends)


def lone_phase_readings(samples: Iterable[MeterSample]) -> Readings | None:
    """The readings of ``samples``' register read as the total (:func:`register_readings`)
    when it is their only one yet tagged with a phase (a single-phase Grizzl-E tags its
    register "L1-N", lbbrhzn/ocpp#442): no reading of the register without a phase, and
    every reading of it of one phase. None otherwise: a total is read as it is, and a
    three-phase charger's L1, L2 and L3 registers are parts of a total it did not send.
    For a session's running energy (csms.service.sessions), and its bill where the total
    gives none (:func:`billed_energy`)."""
    registers: list[MeterSample] = []
    for s in samples:  # most messages: their first register reading has no phase
        if s.measurand == ENERGY_REGISTER:
            if not s.phase or (registers and s.phase != registers[0].phase):
                return None
            registers.append(s)
    if not registers:
        return None
    return replace(register_readings(registers, phased=True), phase=registers[0].phase)


def billed_energy(
    samples: Sequence[MeterSample],
    meter_start_wh: Decimal | None,
    meter_stop_wh: Decimal | None,
    started_at: datetime | None = None,
    max_power_w: Decimal = DEFAULT_MAX_POWER_W,
) -> tuple[Readings, EnergyResult]:
    """The register a completed session is billed from among its ``samples``, and
    :func:`energy_of` from it: the total's readings; but where they leave the session
    without a start or a stop (no total reading at all, and no meterStart or meterStop to
    stand for it: a 2.0.1 session, a 1.6 meterStop of 0 or beyond any meter) and its only
    register is one phase's (:func:`lone_phase_readings`), that register's, under every
    rule the total's follow, flagged ``billed_from_phase``. A phase never counts more than
    the total (a single-phase charger's one phase is its total), so the driver is never
    billed more than delivered; a three-phase charger reporting one phase bills less, the
    flag shows it. Registers of several phases, a phase that changes its label, or any
    reading of the total beside a phase's, and the total bills as before (held where it
    gives no start or stop): no station bills more by tagging its readings with a phase
    than it would sending them untagged. A 1.6 meterStart of 0 beside no reading of the
    total is judged a placeholder against that register's readings as against a total's
    (its lifetime register read 5 minutes after the start): the session then starts at
    that register's reading, and is billed from it alone (its last reading the stop, a
    meterStop below it the stop), flagged so."""
    found = register_readings(samples)
    result = energy_of(found, meter_start_wh, meter_stop_wh, started_at, max_power_w)
    if found.readings:
        return found, result
    if result.meter_start_wh is not None and result.meter_stop_wh is not None:
        if meter_start_wh != 0:
            return found, result
        # a meterStart of 0 beside no reading of the total: judged against the lone phase's
        # readings as a total's would be (a single-phase charger's lifetime register tagged
        # "L1-N"). Where it is a placeholder, the session starts at that register's reading
        # and is billed from that register alone, its last reading the stop: a phase is
        # never counted from one register's start to another's stop (a meterStop of the
        # total, a three-phase charger's), a single-phase charger's last periodic reading
        # bills less than its meterStop, never more
        lone = lone_phase_readings(samples)
        if lone is None or not lone.readings:
            return found, result
        read = energy_of(lone, meter_start_wh, None, started_at, max_power_w)
        if "meter_start_placeholder" not in read.flags:
            return found, result
        if read.meter_stop_wh is not None and meter_stop_wh is not None \
                and meter_stop_wh < read.meter_stop_wh:
            # a meterStop below the phase's readings (no phase counts more than the total):
            # the stop it reported, under the total's rule (the register went backwards
            # where it is below by a kWh or more), never more than the total would bill
            read = energy_of(lone, meter_start_wh, meter_stop_wh, started_at, max_power_w)
        read.flags.append(BILLED_FROM_PHASE)
        return lone, read
    lone = lone_phase_readings(samples)
    if lone is None or not lone.readings:
        return found, result
    read = energy_of(lone, meter_start_wh, meter_stop_wh, started_at, max_power_w)
    read.flags.append(BILLED_FROM_PHASE)
    return lone, read


def _resolution_wh(sample: MeterSample) -> Decimal:
    """One step of the last digit ``sample``'s value was written with, in Wh (``1234.56``
    kWh: 10 Wh; ``157440`` Wh: 1 Wh; ``123456`` at 10^1 Wh: 10 Wh), for a reading
    :func:`register_wh` read."""
    return _step(Decimal(sample.value.strip())).scaleb(sample.multiplier) \
        * _UNIT_FACTOR[(sample.unit or "Wh").lower()]


def start_claims(begins: Iterable[tuple[Decimal, Decimal]],
                 meter_start_wh: Decimal | None) -> list[tuple[Decimal, Decimal]]:
    """Of a register's begin readings (``Readings.begins``: Wh and resolution), those that
    claim a start beside ``meter_start_wh``: all, but a 0 beside a meterStart that is not
    0 (a value the charger had not read, no start)."""
    return [(wh, step) for wh, step in begins if wh or not meter_start_wh]


def start_judged(found: Readings, start: Decimal | None) -> bool:
    """Whether :func:`energy_of` of ``found`` from ``start`` may judge a start of 0 a
    placeholder, and so needs the station's power: a start of 0 (or none yet: a begin
    reading of 0 may be it) beside a reading above ``PLAUSIBILITY_SLACK_WH`` (one at or
    below it is within the bound at any power)."""
    return (start is None or start == 0) \
        and any(r[1] > PLAUSIBILITY_SLACK_WH for r in found.readings)


def counted_from_zero(found: Readings, starts: Iterable[Decimal | None],
                      started_at: datetime | None, max_power_w: Decimal) -> int | None:
    """The energy a session's register counting from 0 shows in ``found`` (whole Wh), for
    its running energy only: a reading at least ``START_TOLERANCE_WH`` below every start
    the station claimed (``starts``: meterStart, the running start; and ``found``'s begin
    readings, a 0 apart) is no reading of that register (it never goes back by more than a
    reading's digits), and within what the station could deliver from 0 since
    ``started_at`` at ``max_power_w`` it is the session's energy (a Grizzl-E: meterStart
    the lifetime register, its readings the session's from 0). :func:`energy_of` never
    bills it: the stop bills meterStop less meterStart (a start too high bills less). None
    when no reading is such, or no start is claimed above the tolerance."""
    if started_at is None:
        return None
    # the lowest claim, by plain loops (every reading of a running session asks: two
    # lists and min() cost more than the comparisons)
    lowest: Decimal | None = None
    for wh in starts:
        if wh and (lowest is None or wh < lowest):
            lowest = wh
    for wh, _ in found.begins:
        if wh and (lowest is None or wh < lowest):
            lowest = wh
    if lowest is None:
        return None
    # a comparison first (no context needed): most messages have no reading below a start
    for r in found.readings:
        if r[1] < lowest:
            return _counted_from_zero(found, lowest, started_at, max_power_w)
    return None


@_in_decimals
def _counted_from_zero(found: Readings, lowest: Decimal, started_at: datetime,
                       max_power_w: Decimal) -> int | None:
    below = lowest - START_TOLERANCE_WH
    counted = [r[1] for r in found.readings
               if r[2] != "Transaction.Begin" and r[1] < below
               and (bound := _max_plausible_wh(started_at, r[0], max_power_w)) is not None
               and r[1] <= bound]
    if not counted:
        return None
    return int(max(counted).quantize(Decimal(1), rounding=ROUND_HALF_EVEN))


def _step(number: Decimal) -> Decimal:
    """One step of the last digit ``number`` was written with (1 for a whole number;
    csms.metering.ocmf reads a signed reading's the same way: the two layers import
    neither)."""
    exponent = number.as_tuple().exponent
    return Decimal(1).scaleb(exponent) if isinstance(exponent, int) and exponent < 0 \
        else Decimal(1)


def _agree(start: Decimal, start_step: Decimal, reading: Decimal, step: Decimal) -> bool:
    """Whether a meterStart and a begin reading of the register agree: the meterStart is a
    value the reading's digits allow, rounded or cut, within the coarser of their
    resolutions (at most ``START_TOLERANCE_WH``): from half a step below it (rounded) to a
    step above it (cut). So never more than half a step below what the reading allows:
    the driver is not billed for energy it says was on the register before the start."""
    tolerance = min(max(start_step, step), START_TOLERANCE_WH)
    return -tolerance / 2 <= start - reading < tolerance


def _in_order(reading: tuple[Any, ...]) -> tuple[bool, datetime]:
    """Where a register reading (time, Wh, context, ...) stands among a session's: a
    Transaction.Begin reading is the register at the start, before every other reading
    of the session whatever time it carries (Growatt and Project EV chargers repeat it in
    every frame under the frame's time), the others in the order of their time."""
    return reading[2] != "Transaction.Begin", reading[0]


def compute_energy(
    meter_start_wh: Decimal | None,
    meter_stop_wh: Decimal | None,
    samples: Iterable[MeterSample],
    started_at: datetime | None = None,
    max_power_w: Decimal = DEFAULT_MAX_POWER_W,
) -> EnergyResult:
    """Energy delivered in a session, in whole Wh (banker's rounding), with flags.

    ``meter_start_wh``/``meter_stop_wh`` are what the station reported in its
    start/stop messages (None when it did not); ``samples`` are the session's
    own meter samples; ``max_power_w`` the station's power, as :func:`energy_flags`
    takes it (a start of 0 is judged a placeholder by it).
    """
    return energy_of(register_readings(samples), meter_start_wh, meter_stop_wh, started_at,
                     max_power_w)


@_in_decimals
def energy_of(
    found: Readings,
    meter_start_wh: Decimal | None,
    meter_stop_wh: Decimal | None,
    started_at: datetime | None = None,
    max_power_w: Decimal = DEFAULT_MAX_POWER_W,
    *,
    between: bool = True,
) -> EnergyResult:
    """:func:`compute_energy` of samples whose register readings are ``found``.
    ``between=False``: the start and the stop only, with their flags; the energy between
    them is not worked out (``energy_wh`` 0, and no ``meter_went_backwards`` for a stop
    below the start): a running session's reading asks only where its register stands."""
    flags = list(found.flags)
    readings = found.readings
    for name, value in (("start", meter_start_wh), ("stop", meter_stop_wh)):
        if value is not None and not _readable(value):
            _flag(flags, "value_out_of_range")
            if name == "start":
                meter_start_wh = None
            else:
                meter_stop_wh = None

    if meter_start_wh and "begin_readings_differ" in flags \
            and len({wh for wh, _ in start_claims(found.begins, meter_start_wh)}) < 2:
        # begin readings of one value and 0 beside a meterStart that is not 0: the 0 is a
        # value the charger had not read (a placeholder), no second start
        flags.remove("begin_readings_differ")
    start = meter_start_wh
    start_source: str | None = "reported" if start is not None else None
    if start is None:
        begin = next((r for r in readings if r[2] == "Transaction.Begin"), None)
        first = begin or (readings[0] if readings else None)
        if first is not None:
            start, start_source = first[1], "context" if begin else "sample"
            flags.append("meter_start_from_samples")
        else:
            flags.append("meter_start_missing")
    if start == 0 and start_source in ("reported", "context"):
        # a begin reading of 0 claims what a meterStart of 0 does: both are checked
        # against the readings that are not such a claim (an Iocharger starting offline
        # reports 0, its register unread, then its lifetime register), at the power the
        # session is held to (a 4 MW bound let a lifetime register of 300 kWh ten
        # minutes after the start through as energy)
        later = [r for r in readings if r[2] != "Transaction.Begin" or r[1] != 0]
        jump = next((n for n, r in enumerate(later)
                     if (bound := _max_plausible_wh(started_at, r[0], max_power_w))
                     is not None and r[1] > bound), None)
        if jump is not None:
            start, start_source = later[jump][1], "sample"
            flags.append("meter_start_placeholder")
            if jump:
                # plausible readings from 0, then the jump: the start is not the
                # register's, and no station makes the jump; never billed from 0
                _flag(flags, "energy_above_max_power")

    if start is not None and start_source == "reported" and found.begins and not all(
            _agree(start, _step(start), wh, step)
            for wh, step in start_claims(found.begins, start)):
        # meterStart and a begin reading of the billed register: two starts
        _flag(flags, "begin_readings_differ")
    claimed = start
    if start is not None and "begin_readings_differ" in flags:
        # the start is in dispute: counted from the highest claim, never billing the
        # driver for energy one of the station's own readings says it did not deliver
        start = max([start, *(wh for wh, _ in found.begins)])

    stop = meter_stop_wh
    stop_source: str | None = "reported" if stop is not None else None
    if stop is not None and stop == 0 and start is not None and start > 0:
        stop, stop_source = None, None
        flags.append("meter_stop_placeholder")
    if stop is None:
        end = next((r for r in reversed(readings) if r[2] == "Transaction.End"), None)
        last = end or (readings[-1] if readings else None)
        if last is not None:
            stop, stop_source = last[1], "context" if end else "sample"
            if "meter_stop_placeholder" not in flags:
                flags.append("meter_stop_from_samples")

    if stop is not None and stop_source == "reported":
        # meterStop and an end reading of the billed register (1.6 transactionData): two
        # stops where they differ by more than a reading's digits allow. Held, and never
        # billing the driver for energy one of the station's own readings says it did not
        # deliver: counted to the lowest (an end reading of 0 is a value not read)
        ends = [(wh, step) for wh, step in found.ends if wh]
        if not all(_agree(stop, _step(stop), wh, step) for wh, step in ends):
            _flag(flags, "end_readings_differ")
            stop = min([stop, *(wh for wh, _ in ends)])
    elif stop is not None and stop_source == "context":
        # no meterStop (2.0.1): Transaction.End readings of the billed register that differ
        # among themselves by more than their digits allow are two stops as well, counted
        # to the lowest (the last one alone named the stop)
        ends = [(wh, step) for wh, step in found.ends if wh]
        lowest = min(ends, default=None)
        if lowest is not None and not all(_agree(wh, step, *lowest) for wh, step in ends):
            _flag(flags, "end_readings_differ")
            stop = lowest[0]
    # a meterStop is a reading of the register as much as a sample is: below one by more
    # than a reading's digits allow, the register went backwards (what a 2.0.1
    # Transaction.End reading below a periodic one is)
    below = stop is not None and stop_source == "reported" and any(
        r[1] - stop >= START_TOLERANCE_WH for r in readings)
    if below:
        _flag(flags, "meter_went_backwards")
    if start is None or stop is None:
        if stop is None and "meter_stop_placeholder" not in flags:
            flags.append("meter_stop_missing")
        return EnergyResult(start, stop, 0, flags, start_source, stop_source, found.decrease,
                            claimed, below)
    if not between:
        return EnergyResult(start, stop, 0, flags, start_source, stop_source, found.decrease,
                            claimed, below)
    energy, problem = _energy_between(start, stop)  # in DECIMALS already
    if problem:
        _flag(flags, problem)
    return EnergyResult(start, stop, energy, flags, start_source, stop_source,
                        found.decrease, claimed, below)


def _energy_between(start_wh: Decimal, stop_wh: Decimal) -> tuple[int, str | None]:
    """Whole Wh between two register readings (banker's rounding), and a flag when the
    meter went backwards (then nothing is billed)."""
    delta = stop_wh - start_wh
    if delta < 0:
        return 0, "meter_went_backwards"
    return int(delta.quantize(Decimal(1), rounding=ROUND_HALF_EVEN)), None


energy_between = _in_decimals(_energy_between)


def _flag(flags: list[str], name: str) -> None:
    if name not in flags:
        flags.append(name)


def _readable(wh: Decimal) -> bool:
    """Whether ``wh`` is a value an import register can show: from 0 (it counts up from
    there) to ``MAX_REGISTER_WH``, written with no figure beyond 10^-MAX_EXPONENT (1E-40
    Wh is no meter's step, and no receipt's verifier reads it)."""
    return 0 <= wh <= MAX_REGISTER_WH and within_exponents(wh)


def _beyond_range(sample: MeterSample, phased: bool = False) -> bool:
    """A total register reading in Wh/kWh that is a number, yet could not be read: scaled
    by a multiplier no unit has (10^25 and more), too large to compute (1e999999), or not
    finite (Infinity, NaN: a meter that failed). ``phased``: as :func:`_register_wh`."""
    if (sample.phase and not phased) or sample.location == "EV" or sample.signed is not None \
            or sample.format in ("SignedData", "SignedMeterValue") \
            or (sample.unit or "Wh").lower() not in _UNIT_FACTOR:
        return False
    if abs(sample.multiplier) > MAX_MULTIPLIER:
        return True
    try:
        Decimal(sample.value.strip())
    except (ArithmeticError, AttributeError):
        return False  # not a number at all: not a reading, ignored
    return True


@_in_decimals
def watts(kw: float | str | Decimal) -> Decimal:
    """kW (a setting, a CLI argument) as exact W: 11 -> 11000, 7.4 -> 7400, 0.5 -> 500."""
    w = Decimal(str(kw)) * 1000
    return w.to_integral_value() if w == w.to_integral_value() else w.normalize()


@_in_decimals
def energy_flags(started_at: datetime, stopped_at: datetime | None, energy_wh: int,
                 max_power_w: Decimal) -> list[str]:
    """Hold flags for energy no station could have delivered in the session's time.

    ``max_power_w``: the station's registered maximum power, or the connector's reported
    limit, or ``DEFAULT_MAX_POWER_W``.
    """
    if stopped_at is None:
        return []
    seconds = Decimal(str((stopped_at - started_at).total_seconds()))
    if seconds < 0:
        return ["stop_before_start"]
    if seconds == 0:
        return ["zero_duration_with_energy"] if energy_wh > 0 else []
    allowed = max_power_w * (seconds + POWER_SLACK_SECONDS) / 3600 * POWER_SLACK_RATIO
    return ["energy_above_max_power"] if Decimal(energy_wh) > allowed else []


def readings_outside(found: Readings, started_at: datetime, stopped_at: datetime,
                     tolerance_s: int = POWER_SLACK_SECONDS) -> tuple[datetime, datetime] | None:
    """The earliest and latest times of the billed register's readings ``found`` when one
    lies outside a session's time, from ``started_at`` to ``stopped_at``, by more than
    ``tolerance_s`` (a clock's and a sampling's): a reading after the stop (a stop dated
    before the readings, or with none, the latest reading its stop) or, not a
    Transaction.Begin one, before the start (without a begin reading the earliest is the
    start) is energy of the EVSE's time outside the session, which another session on it
    may be billed for too. A Transaction.Begin reading is the register at the start
    whatever time it carries (:func:`_in_order`). None when all are within."""
    slack = timedelta(seconds=tolerance_s)
    times = [r[0] for r in found.readings if r[2] != "Transaction.Begin"]
    # as differences: a time at the end of the calendar has no time after it
    if not any(t - stopped_at > slack or started_at - t > slack for t in times):
        return None
    return min(times), max(times)


def implausible_times(times: Iterable[datetime], not_before: datetime | None,
                      not_after: datetime) -> list[datetime]:
    """Those of ``times`` outside the window the central system accepts for a transaction
    time (``time_implausible``), in their order: not before the station's registration
    less a margin, not after the receive time plus a margin (clocks drift; stations queue
    messages while offline). A message's times in one call: every reading of a session
    asks, on the writer's turn."""
    if not_before is None:
        return [at for at in times if at > not_after]
    return [at for at in times if at > not_after or at < not_before]
