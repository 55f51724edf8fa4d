"""What the driver sees and who may stop a session, on the in-memory storage fake: the
running cost from the tariff (held sessions get none), the cost command's arguments, stops
by another tag of the group or a master pass, customer information assembled from parts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from csms.domain.model import BILLING_HOLD_FLAGS, AuthStatus, IdTag, MeterSample, Session
from csms.domain.tariff import Tariff
from csms.service.charging import ChargingService, TransactionEventIn, new_station
from csms.service.driver import customer_reports, may_stop, personal_message
from support.memory import MemoryRepository, MemoryState

T0 = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
NOW = T0 + timedelta(minutes=30)


@pytest.fixture
def state() -> MemoryState:
    s = MemoryState()
    s.stations["CP1"] = new_station("CP1")
    s.stations["CP1"].created_at = T0 - timedelta(days=400)
    s.tags["T1"] = IdTag("T1")
    return s


@pytest.fixture
def service(state: MemoryState) -> ChargingService:
    return ChargingService(MemoryRepository(state), clock=lambda: NOW)


def tariff(per_kwh: str, per_minute: str = "0", fee: str = "0", decimals: int = 2,
           currency: str = "EUR", station: str = "*") -> Tariff:
    return Tariff(station, Decimal(per_kwh), currency, decimals, Decimal(per_minute),
                  Decimal(fee), valid_from=T0 - timedelta(days=1))


async def charge(service: ChargingService, seq_start: int = 0, *wh: int) -> None:
    for n, value in enumerate(wh):
        kind = "Started" if seq_start + n == 0 else "Updated"
        await service.transaction_event("CP1", TransactionEventIn(
            kind, T0 + timedelta(minutes=n), "Authorized", seq_start + n, "TX1",
            id_tag="T1" if kind == "Started" else None, evse_id=1, connector_id=1,
            samples=[MeterSample(T0 + timedelta(minutes=n), str(value),
                                 context="Sample.Periodic")]))


@pytest.mark.parametrize(("t", "energy", "expected"), [
    (tariff("0.39"), 4000, Decimal("1.56")),
    (tariff("0.39"), 5500, Decimal("2.15")),  # 2.145 rounded half up
    # a session fee, 30 minutes at 0.05, 1 kWh at 0.30: 0.50 + 1.50 + 0.30
    (tariff("0.30", "0.05", "0.50"), 1000, Decimal("2.30")),
    (tariff("30", decimals=0, currency="JPY"), 1500, Decimal("45")),
])
async def test_running_cost_from_the_tariff(
    service: ChargingService, state: MemoryState, t: Tariff, energy: int, expected: Decimal,
) -> None:
    state.tariffs.append(t)
    await charge(service, 0, 1000, 1000 + energy)
    cost = await service.running_cost("CP1", "TX1")
    assert cost is not None
    assert (cost.total, cost.currency, cost.energy_wh, cost.final) == (
        expected, t.currency, energy, False)
    assert cost.total.as_tuple().exponent == -t.decimals


async def test_the_cost_of_a_session_past_its_limit_is_its_limit(
    service: ChargingService, state: MemoryState,
) -> None:
    """What the driver's escrow pays at most (settlement bills the limit): the station does
    not show the driver more."""
    state.tariffs.append(tariff("0.39"))
    await charge(service, 0, 1000, 5000)  # 1.56
    [session] = state.sessions.values()
    session.limit_minor = 100
    cost = await service.running_cost("CP1", "TX1")
    assert cost is not None and cost.total == Decimal("1.00")
    assert cost.total.as_tuple().exponent == -2
    [session] = state.sessions.values()  # a read restores the state it found: a copy
    session.limit_minor = 200  # below its limit: the tariff's price
    cost = await service.running_cost("CP1", "TX1")
    assert cost is not None and cost.total == Decimal("1.56")


async def test_the_cost_read_with_the_event_is_the_cost_read_after_it(
    service: ChargingService, state: MemoryState,
) -> None:
    """2.0.1 I02's running cost, read in the unit that stores an Updated or Ended event,
    is what a read after the unit gives: this event's energy included, final once
    Ended; a retry of the event gets the same cost."""
    state.tariffs.append(tariff("0.30", "0.05", "0.50"))
    await charge(service, 0, 1000)
    updated = TransactionEventIn(
        "Updated", T0 + timedelta(minutes=1), "MeterValuePeriodic", 1, "TX1", evse_id=1,
        connector_id=1, samples=[MeterSample(T0 + timedelta(minutes=1), "3500",
                                             context="Sample.Periodic")])
    status, cost, _ = await service.transaction_event_with_cost("CP1", updated)
    assert status is None and cost is not None
    assert cost == await service.running_cost("CP1", "TX1")
    assert (cost.energy_wh, cost.final) == (2500, False)
    assert await service.transaction_event_with_cost("CP1", updated) == (None, cost, None)
    ended = TransactionEventIn(
        "Ended", T0 + timedelta(minutes=20), "EVDeparted", 2, "TX1", evse_id=1,
        connector_id=1, stopped_reason="EVDisconnected",
        samples=[MeterSample(T0 + timedelta(minutes=20), "4000",
                             context="Transaction.End")])
    _, final, _ = await service.transaction_event_with_cost("CP1", ended)
    assert final is not None and final == await service.running_cost("CP1", "TX1")
    # 0.50 + 20 min x 0.05 + 3 kWh x 0.30, and final
    assert (final.total, final.energy_wh, final.final) == (Decimal("2.40"), 3000, True)


async def test_a_price_that_cannot_be_computed_leaves_the_event_stored(
    service: ChargingService, state: MemoryState,
) -> None:
    """A tariff whose price overflows the decimal context: the event is stored and
    acknowledged, its answer has no cost (never a guessed one)."""
    state.tariffs.append(tariff("1e999999"))
    await charge(service, 0, 1000)
    updated = TransactionEventIn(
        "Updated", T0 + timedelta(minutes=1), "MeterValuePeriodic", 1, "TX1", evse_id=1,
        connector_id=1, samples=[MeterSample(T0 + timedelta(minutes=1), "2000",
                                             context="Sample.Periodic")])
    assert await service.transaction_event_with_cost("CP1", updated) == (None, None, None)
    session = next(iter(state.sessions.values()))
    assert session.energy_wh == 1000 and session.last_seq_no == 1


async def test_no_cost_when_held_without_tariff_or_for_another_station(
    service: ChargingService, state: MemoryState,
) -> None:
    await charge(service, 0, 1000, 2000)
    assert await service.running_cost("CP1", "TX1") is None  # no tariff
    state.tariffs.append(tariff("0.39"))
    assert await service.running_cost("CP2", "TX1") is None  # not CP2's transaction
    assert await service.running_cost("CP1", "TX1") is not None
    session = next(iter(state.sessions.values()))
    session.flags.append("meter_went_backwards")  # held for billing: no cost at all
    assert await service.running_cost("CP1", "TX1") is None


async def test_cost_command_args_name_the_session_and_the_convention(
    service: ChargingService, state: MemoryState,
) -> None:
    state.tariffs.append(tariff("0.39"))
    await charge(service, 0, 1000, 5000)
    args = await service.cost_command_args("CP1", None)
    assert args == {"transaction_id": "TX1", "total_cost": "1.56", "currency": "EUR",
                    "meter_wh": 4000, "timestamp": NOW.isoformat().replace("+00:00", "Z"),
                    "final": False, "text": "Cost so far: 1.56 EUR for 4.000 kWh",
                    "kwh_price": "0.39", "hour_price": "0", "flat_fee": "0",
                    "running_cost": False}
    await service.set_station_option("CP1", "running_cost", "on")
    assert (await service.cost_command_args("CP1", None))["running_cost"] is True
    with pytest.raises(ValueError, match="no session 99"):
        await service.cost_command_args("CP1", 99)
    with pytest.raises(ValueError, match="no station"):
        await service.set_station_option("NOPE", "running_cost", "on")


def tag(name: str, group: str | None = None, master: bool = False,
        status: str = "accepted") -> IdTag:
    return IdTag(name, status, None, group, master)


@pytest.mark.parametrize(("stopper", "record", "allowed", "reason"), [
    ("ALICE", tag("ALICE", "A"), True, "own session"),
    ("BOB", tag("BOB", "A"), True, "same group"),
    ("BOSS", tag("BOSS", "A", master=True), True, "master pass"),
    ("BOSS-B", tag("BOSS-B", "B", master=True), False, "not of the session's group"),
    ("A", tag("A"), False, "not of the session's group"),  # named like the group
    ("X", None, False, "unknown tag"),
    ("BOB", tag("BOB", "A", status="blocked"), False, "tag blocked"),
])
def test_who_may_stop(stopper: str, record: IdTag | None, allowed: bool, reason: str) -> None:
    decision = may_stop(tag("ALICE", "A"), "ALICE", record, stopper)
    assert (decision.allowed, decision.reason) == (allowed, reason)


def test_a_session_of_a_tag_without_group_is_stopped_by_that_tag_only() -> None:
    assert not may_stop(tag("ALICE"), "ALICE", tag("BOSS", None, master=True), "BOSS").allowed
    assert may_stop(None, None, None, "ANY").allowed  # a session with no tag at all


async def test_a_refused_stop_is_recorded(service: ChargingService,
                                          state: MemoryState) -> None:
    state.sessions[1] = Session(station_id="CP1", ocpp_version="ocpp2.0.1",
                                transaction_id="TX9", started_at=T0, id_tag="T1", id=1)
    decision = await service.check_stop("CP1", "TX9", "STRANGER")
    assert not decision.allowed
    [event] = [e for e in state.station_events if e["kind"] == "security"]
    assert event["payload"]["type"] == "StopNotAllowed"


def part(seq: int, data: str, tbc: bool, request: int = 1) -> dict[str, object]:
    return {"ts": f"t{seq}", "payload": {"requestId": request, "seqNo": seq, "data": data,
                                         "tbc": tbc, "generatedAt": f"2026-03-01T10:0{seq}Z"}}


def test_customer_reports_assembled_in_order_once_complete() -> None:
    events = [part(2, "c", False), part(0, "a", True), part(1, "b", True), part(1, "b", True),
              part(0, "z", False, request=2), {"ts": "x", "payload": {"seqNo": "bad"}}]
    reports = {r["request_id"]: r for r in customer_reports(events)}
    assert (reports[1]["data"], reports[1]["parts"], reports[1]["complete"]) == ("abc", 3, True)
    assert reports[2]["complete"] and reports[2]["data"] == "z"
    gap = customer_reports([part(0, "a", True), part(2, "c", False)])
    assert gap[0]["complete"] is False  # part 1 never came


def test_personal_message_stays_short_and_plain() -> None:
    from csms.service.driver import RunningCost

    cost = RunningCost(1, "TX", Decimal("123456789.99"), "EUR", 10**12, NOW, True,
                       tariff("0.39"))
    text = personal_message(cost)
    assert text == "Total: 123456789.99 EUR for 1000000000.000 kWh"
    assert len(text) <= 512 and text.isprintable()


@pytest.mark.parametrize(("stopper", "record", "allowed", "reason"), [
    # 2.0.1 C16: a tag of the master pass group stops any session, whatever its group
    ("OFFICER", tag("OFFICER", "POLICE", master=True), True, "master pass"),
    ("CADET", tag("CADET", "POLICE"), True, "master pass"),  # the group is what counts
    ("OFFICER", tag("OFFICER", "POLICE", status="blocked"), False, "tag blocked"),
    ("POLICE", tag("POLICE"), False, "not of the session's group"),  # named like it
    ("BOSS-B", tag("BOSS-B", "B", master=True), False, "not of the session's group"),
])
def test_who_may_stop_with_a_master_pass_group(stopper: str, record: IdTag, allowed: bool,
                                                reason: str) -> None:
    decision = may_stop(tag("ALICE", "A"), "ALICE", record, stopper, "POLICE")
    assert (decision.allowed, decision.reason) == (allowed, reason)
    # without a master pass group (1.6, or none set) the police is a stranger here
    assert not may_stop(tag("ALICE", "A"), "ALICE", tag("OFFICER", "POLICE", master=True),
                        "OFFICER").allowed


async def test_a_master_pass_start_is_answered_invalid_flagged_and_held(
    service: ChargingService, state: MemoryState,
) -> None:
    state.tags["OFFICER"] = tag("OFFICER", "POLICE", master=True)
    state.central_options["master_pass_group"] = "POLICE"
    started = TransactionEventIn("Started", T0, "Authorized", 0, "TX-M", id_tag="OFFICER",
                                 evse_id=1, connector_id=1)
    assert await service.transaction_event("CP1", started) is AuthStatus.INVALID
    [s] = state.sessions.values()
    assert s.id_tag == "OFFICER" and "master_pass_start" in s.flags
    assert BILLING_HOLD_FLAGS.intersection(s.flags)
    # the same tag presented to stop a cable-started transaction does not own it
    await service.transaction_event("CP1", TransactionEventIn(
        "Started", T0, "CablePluggedIn", 0, "TX-C", evse_id=2, connector_id=1))
    stop = TransactionEventIn("Updated", T0 + timedelta(minutes=5), "StopAuthorized", 1,
                              "TX-C", id_tag="OFFICER")
    assert await service.transaction_event("CP1", stop) is AuthStatus.ACCEPTED
    [cable] = [x for x in state.sessions.values() if x.transaction_id == "TX-C"]
    assert cable.id_tag is None and cable.flags == []


async def test_costs_pushed_by_themselves(service: ChargingService, state: MemoryState
                                          ) -> None:
    state.tariffs.append(tariff("0.39", per_minute="0.05"))
    await charge(service, 0, 1000, 5000)
    # 2.0.1 with a time component: pushed; 1.6 only when the station is marked
    [(session_id, cost)] = await service.costs_to_push("CP1", "ocpp2.0.1")
    assert cost > Decimal("1.56")  # 4 kWh and the minutes so far
    assert await service.costs_to_push("CP1", "ocpp1.6") == []
    await service.set_station_option("CP1", "running_cost", "on")
    assert [i for i, _ in await service.costs_to_push("CP1", "ocpp1.6")] == [session_id]


async def test_costs_not_pushed_for_energy_only_tariffs_or_held_sessions(
    service: ChargingService, state: MemoryState,
) -> None:
    state.tariffs.append(tariff("0.39"))
    await charge(service, 0, 1000, 5000)
    assert await service.costs_to_push("CP1", "ocpp2.0.1") == []  # the events suffice
    await service.set_station_option("CP1", "running_cost", "on")
    [(_, cost)] = await service.costs_to_push("CP1", "ocpp2.0.1")
    assert cost == Decimal("1.56")
    [s] = state.sessions.values()
    s.flag("meter_went_backwards")
    assert await service.costs_to_push("CP1", "ocpp2.0.1") == []


async def test_stations_with_a_cost_to_push_found_in_one_read(
    service: ChargingService, state: MemoryState,
) -> None:
    connected = {"CP1": "ocpp1.6", "CP2": "ocpp2.0.1", "CP3": "ocpp1.6"}
    state.tariffs.append(tariff("0.39"))
    # energy-only tariffs and unmarked stations: nobody is read at the interval
    assert await service.cost_push_stations(connected) == set()
    state.station_options["CP3", "running_cost"] = "on"
    state.station_options["CP9", "running_cost"] = "on"  # not connected here
    assert await service.cost_push_stations(connected) == {"CP3"}
    state.station_options["CP3", "running_cost"] = "off"
    assert await service.cost_push_stations(connected) == set()
    # a tariff with a time component: every 2.0.1 station may have a growing cost
    state.tariffs.append(tariff("0.39", per_minute="0.05"))
    state.station_options["CP1", "running_cost"] = "on"
    assert await service.cost_push_stations(connected) == {"CP1", "CP2"}
