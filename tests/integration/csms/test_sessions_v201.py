"""2.0.1 TransactionEvent over real sockets: seqNo dedupe, gaps, offline, units, a copy
under a seqNo that says something else."""

from __future__ import annotations

from typing import Any

import pytest

from support import RunningServer, is_queued, station_events
from support.client import RawClient


def event(kind: str, seq: int, ts: str, txid: str = "tx-1", **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "eventType": kind, "timestamp": ts, "seqNo": seq,
        "triggerReason": {"Started": "Authorized", "Updated": "MeterValuePeriodic",
                          "Ended": "StopAuthorized"}[kind],
        "transactionInfo": {"transactionId": txid},
    }
    body.update(extra)
    return body


def reading(ts: str, value: float, context: str, unit: str = "Wh", multiplier: int = 0,
            **extra: Any) -> dict[str, Any]:
    return {"timestamp": ts, "sampledValue": [{
        "value": value, "context": context, "measurand": "Energy.Active.Import.Register",
        "unitOfMeasure": {"unit": unit, "multiplier": multiplier}, **extra}]}


@pytest.fixture
async def station(csms_server: RunningServer) -> Any:
    await csms_server.add_station("EV1")
    await csms_server.add_tag("T1")
    client = await RawClient.connect(csms_server.url, "EV1", ["ocpp2.0.1"])
    await client.result("BootNotification", {
        "chargingStation": {"vendorName": "V", "model": "M"}, "reason": "PowerUp"})
    yield client
    await client.close()


TOKEN = {"idToken": "T1", "type": "ISO14443"}
EVSE = {"id": 1, "connectorId": 1}


async def test_full_session_exact_energy_with_multipliers(
    csms_server: RunningServer, station: RawClient
) -> None:
    r = await station.result("TransactionEvent", event(
        "Started", 0, "2026-03-01T10:00:00Z", idToken=TOKEN, evse=EVSE,
        meterValue=[reading("2026-03-01T10:00:00Z", 3_100_000, "Transaction.Begin")]))
    assert r == {"idTokenInfo": {"status": "Accepted"}}
    await station.result("TransactionEvent", event(
        "Updated", 1, "2026-03-01T10:30:00Z",
        meterValue=[{"timestamp": "2026-03-01T10:30:00Z", "sampledValue": [
            {"value": 3105.25, "context": "Sample.Periodic", "unitOfMeasure": {"unit": "kWh"}},
            {"value": 1750, "context": "Sample.Periodic", "phase": "L1",
             "measurand": "Energy.Active.Import.Register"},
            {"value": 11.2, "measurand": "Power.Active.Import",
             "unitOfMeasure": {"unit": "kW", "multiplier": 0}},
        ]}]))
    [s] = await csms_server.sessions()
    assert (s["status"], s["energy_wh"]) == ("active", 5250)
    await station.result("TransactionEvent", event(
        "Ended", 2, "2026-03-01T11:00:00Z",
        transactionInfo={"transactionId": "tx-1", "stoppedReason": "EVDisconnected"},
        meterValue=[reading("2026-03-01T11:00:00Z", 3.110017, "Transaction.End", "kWh", 3)]))
    [s] = await csms_server.sessions()
    assert s["status"] == "completed"
    assert s["energy_wh"] == 10017
    assert (s["evse_id"], s["connector_id"], s["id_tag"]) == (1, 1, "T1")
    assert (s["ocpp_version"], s["transaction_id"], s["stop_reason"]) == (
        "2.0.1", "tx-1", "EVDisconnected")
    assert s["meter_start_wh"] == 3_100_000 and s["meter_stop_wh"] == 3_110_017


async def test_seqno_retry_is_deduplicated(csms_server: RunningServer, station: RawClient) -> None:
    start = event("Started", 0, "2026-03-01T10:00:00Z", idToken=TOKEN, evse=EVSE,
                  meterValue=[reading("2026-03-01T10:00:00Z", 1000, "Transaction.Begin")])
    upd = event("Updated", 1, "2026-03-01T10:10:00Z",
                meterValue=[reading("2026-03-01T10:10:00Z", 1500, "Sample.Periodic")])
    await station.result("TransactionEvent", start)
    await station.result("TransactionEvent", upd)
    await station.result("TransactionEvent", upd)  # retried with a new message id
    await station.result("TransactionEvent", start)

    async def samples(tx: Any) -> int:
        [s] = await tx.list_sessions()
        return len(await tx.session_samples(s.id))

    assert await csms_server.repo.read(samples) == 2
    assert len(await csms_server.sessions()) == 1
    assert await station_events(csms_server, "EV1", "seq_conflict") == []


T0, T1, T2 = "2026-03-01T10:00:00Z", "2026-03-01T10:10:00Z", "2026-03-01T11:00:00Z"


def periodic(wh: float, power_w: float = 7000, ts: str = T1) -> dict[str, Any]:
    """An Updated event's meter value: the register and the power beside it."""
    return {"timestamp": ts, "sampledValue": [
        {"value": wh, "context": "Sample.Periodic"},
        {"value": power_w, "context": "Sample.Periodic", "measurand": "Power.Active.Import",
         "unitOfMeasure": {"unit": "W"}}]}


async def started(station: RawClient) -> None:
    await station.result("TransactionEvent", event(
        "Started", 0, T0, idToken=TOKEN, evse=EVSE,
        meterValue=[reading(T0, 1000, "Transaction.Begin")]))


async def test_a_copy_with_other_readings_is_recorded_once_and_holds_the_session(
        csms_server: RunningServer, station: RawClient) -> None:
    """An Updated event sent again under its seqNo with another register reading (an honest
    station's second copy, or one rewriting what it sent): answered as a retry, the first
    copy kept, and recorded: once, however often the copies come; the session is held."""
    await started(station)
    assert await station.result("TransactionEvent", event(
        "Updated", 1, T1, meterValue=[periodic(1500)])) == {}
    for wh in (1900, 2500, 1900, 3000):  # copy after copy: one record
        assert await station.result("TransactionEvent", event(
            "Updated", 1, T1, meterValue=[periodic(wh)])) == {}
    [s] = await csms_server.sessions()
    assert s["energy_wh"] == 500 and s["flags"] == ["seq_conflict"]
    [conflict] = await station_events(csms_server, "EV1", "seq_conflict")
    assert conflict == {
        "session_id": s["id"], "transaction_id": "tx-1", "seq_no": 1,
        "event_type": "Updated", "timestamp": "2026-03-01T10:10:00+00:00",
        "differs": ["meter_value"], "late": False, "billing": "active", "held": True,
        "kept": [["2026-03-01T10:10:00+00:00", "1500", "Sample.Periodic"]],
        "sent": [["2026-03-01T10:10:00+00:00", "1900", "Sample.Periodic"]],
        "restarted": False}
    await station.result("TransactionEvent", event(
        "Ended", 2, T2, meterValue=[reading(T2, 2000, "Transaction.End")]))
    [s] = await csms_server.sessions()
    assert s["status"] == "completed" and s["energy_wh"] == 1000
    assert "seq_conflict" in s["flags"] and not await is_queued(csms_server, s["id"])
    [hold] = await station_events(csms_server, "EV1", "billing_hold")
    assert hold["session_id"] == s["id"]


async def test_a_station_whose_counter_restarted_is_recorded_not_held(
        csms_server: RunningServer, station: RawClient) -> None:
    """A station rebooted mid-transaction numbers its events from 0 again: its Updated
    seq 1 after the reboot carries later readings than every one the session has. Nothing
    of a moment already read is contradicted: recorded (``restarted``), not held, and its
    stop bills as usual; a copy rewriting a moment the session has read still holds."""
    await started(station)
    await station.result("TransactionEvent", event(
        "Updated", 1, T1, meterValue=[periodic(1500)]))
    await station.result("TransactionEvent", event(
        "Updated", 2, "2026-03-01T10:20:00Z",
        meterValue=[periodic(1700, ts="2026-03-01T10:20:00Z")]))
    after = "2026-03-01T10:40:00Z"  # rebooted: seq 1 again, a later reading
    await station.result("TransactionEvent", event(
        "Updated", 1, after, meterValue=[periodic(1900, ts=after)]))
    [conflict] = await station_events(csms_server, "EV1", "seq_conflict")
    assert (conflict["restarted"], conflict["held"]) == (True, False)
    [s] = await csms_server.sessions()
    assert "seq_conflict" not in s["flags"]
    await station.result("TransactionEvent", event(
        "Ended", 2, T2, meterValue=[reading(T2, 2000, "Transaction.End")]))
    [s] = await csms_server.sessions()
    assert s["status"] == "completed" and s["energy_wh"] == 1000
    assert "seq_conflict" not in s["flags"] and await is_queued(csms_server, s["id"])


async def test_a_copy_differing_beside_the_billed_register_is_recorded_not_held(
        csms_server: RunningServer, station: RawClient) -> None:
    """A copy with another power reading and trigger: nothing billed differs, the parts
    that do are named, the session is not held; the same copy again is no new record."""
    await started(station)
    await station.result("TransactionEvent", event(
        "Updated", 1, T1, meterValue=[periodic(1500)]))
    other = event("Updated", 1, T1, meterValue=[periodic(1500.0, power_w=11000)],
                  triggerReason="ChargingStateChanged", offline=True)
    await station.result("TransactionEvent", other)
    await station.result("TransactionEvent", other)
    [conflict] = await station_events(csms_server, "EV1", "seq_conflict")
    assert (conflict["differs"], conflict["held"]) == (["event", "meter_value"], False)
    assert "kept" not in conflict and "sent" not in conflict
    await station.result("TransactionEvent", event(
        "Ended", 2, T2, meterValue=[reading(T2, 2000, "Transaction.End")]))
    [s] = await csms_server.sessions()
    assert s["flags"] == [] and await is_queued(csms_server, s["id"])
    assert await station_events(csms_server, "EV1", "billing_hold") == []


async def test_an_ended_copy_with_another_stop_holds_the_completed_session(
        csms_server: RunningServer, station: RawClient) -> None:
    """The Ended event sent again with a higher end reading, once the session is queued:
    what it billed stays (1000 Wh), it leaves the queue, held for the operator."""
    await started(station)
    ended = event("Ended", 1, T2, meterValue=[reading(T2, 2000, "Transaction.End")])
    await station.result("TransactionEvent", ended)
    await station.result("TransactionEvent", ended)  # a retry: nothing recorded
    [s] = await csms_server.sessions()
    assert await is_queued(csms_server, s["id"])
    assert await station_events(csms_server, "EV1", "seq_conflict") == []
    await station.result("TransactionEvent", event(
        "Ended", 1, T2, meterValue=[reading(T2, 9000, "Transaction.End")]))
    [s] = await csms_server.sessions()
    assert s["energy_wh"] == 1000 and s["meter_stop_wh"] == 2000
    assert "seq_conflict" in s["flags"] and not await is_queued(csms_server, s["id"])
    [conflict] = await station_events(csms_server, "EV1", "seq_conflict")
    assert (conflict["billing"], conflict["held"]) == ("queued", True)
    assert conflict["kept"] == [["2026-03-01T11:00:00+00:00", "2000", "Transaction.End"]]
    assert conflict["sent"] == [["2026-03-01T11:00:00+00:00", "9000", "Transaction.End"]]
    [hold] = await station_events(csms_server, "EV1", "billing_hold")
    assert hold["session_id"] == s["id"]


async def test_a_copy_of_late_data_is_recorded_not_held(
        csms_server: RunningServer, station: RawClient) -> None:
    """An event after the session completed (late data, kept apart) sent again with other
    readings: recorded, but neither copy was billed: the session stays queued."""
    await started(station)
    await station.result("TransactionEvent", event(
        "Ended", 1, T2, meterValue=[reading(T2, 2000, "Transaction.End")]))
    late = "2026-03-01T11:05:00Z"
    await station.result("TransactionEvent", event(
        "Updated", 2, late, meterValue=[periodic(2100, ts=late)]))
    await station.result("TransactionEvent", event(
        "Updated", 2, late, meterValue=[periodic(5000, ts=late)]))
    [s] = await csms_server.sessions()
    assert "seq_conflict" not in s["flags"] and await is_queued(csms_server, s["id"])
    [conflict] = await station_events(csms_server, "EV1", "seq_conflict")
    assert (conflict["late"], conflict["held"], conflict["kept"]) == (True, False, None)


async def test_seqno_gap_is_recorded(csms_server: RunningServer, station: RawClient) -> None:
    await station.result("TransactionEvent", event(
        "Started", 0, "2026-03-01T10:00:00Z", idToken=TOKEN, evse=EVSE,
        meterValue=[reading("2026-03-01T10:00:00Z", 1000, "Transaction.Begin")]))
    await station.result("TransactionEvent", event(
        "Ended", 3, "2026-03-01T11:00:00Z",
        meterValue=[reading("2026-03-01T11:00:00Z", 4000, "Transaction.End")]))
    [s] = await csms_server.sessions()
    assert "seq_gap" in s["flags"]
    assert s["energy_wh"] == 3000

    async def gaps(tx: Any) -> list[dict[str, Any]]:
        return await tx.list_station_events("EV1", "seq_gap")

    [gap] = await csms_server.repo.read(gaps)
    assert (gap["payload"]["expected"], gap["payload"]["received"]) == (1, 3)


async def test_offline_events_are_stored_and_flagged(
    csms_server: RunningServer, station: RawClient
) -> None:
    for seq, (kind, ts, value, ctx) in enumerate([
        ("Started", "2026-03-01T10:00:00Z", 500, "Transaction.Begin"),
        ("Updated", "2026-03-01T10:30:00Z", 800, "Sample.Periodic"),
        ("Ended", "2026-03-01T11:00:00Z", 1200, "Transaction.End"),
    ]):
        extra: dict[str, Any] = {"idToken": TOKEN, "evse": EVSE} if kind == "Started" else {}
        await station.result("TransactionEvent", event(
            kind, seq, ts, offline=True, meterValue=[reading(ts, value, ctx)], **extra))
    [s] = await csms_server.sessions()
    assert s["energy_wh"] == 700
    assert "offline_events" in s["flags"]
    assert s["started_at"] == "2026-03-01T10:00:00+00:00"


async def test_ended_without_started_is_acknowledged_and_held(
    csms_server: RunningServer, station: RawClient
) -> None:
    r = await station.result("TransactionEvent", event(
        "Ended", 4, "2026-03-01T11:00:00Z", txid="lost",
        meterValue=[reading("2026-03-01T11:00:00Z", 4000, "Transaction.End")]))
    assert r == {}
    [s] = await csms_server.sessions()
    assert s["status"] == "completed"
    assert "started_missing" in s["flags"]


async def test_unknown_token_is_acknowledged(csms_server: RunningServer,
                                             station: RawClient) -> None:
    r = await station.result("TransactionEvent", event(
        "Started", 0, "2026-03-01T10:00:00Z",
        idToken={"idToken": "WHO", "type": "ISO14443"}, evse=EVSE))
    assert r == {"idTokenInfo": {"status": "Unknown"}}
    [s] = await csms_server.sessions()
    assert "auth_unknown" in s["flags"]


async def test_main_meter_values_never_touch_sessions(
    csms_server: RunningServer, station: RawClient
) -> None:
    await station.result("TransactionEvent", event(
        "Started", 0, "2026-03-01T10:00:00Z", idToken=TOKEN, evse=EVSE,
        meterValue=[reading("2026-03-01T10:00:00Z", 1000, "Transaction.Begin")]))
    await station.result("MeterValues", {
        "evseId": 0, "meterValue": [reading("2026-03-01T10:05:00Z", 9e9, "Sample.Clock")]})
    await station.result("MeterValues", {
        "evseId": 1, "meterValue": [reading("2026-03-01T10:05:00Z", 7e8, "Sample.Clock")]})
    await station.result("TransactionEvent", event(
        "Ended", 1, "2026-03-01T11:00:00Z",
        meterValue=[reading("2026-03-01T11:00:00Z", 1600, "Transaction.End")]))
    [s] = await csms_server.sessions()
    assert s["energy_wh"] == 600


# -- a register of one phase only (a single-phase charger: a Grizzl-E tags its "L1-N") -----
def phased(ts: str, values: dict[str, float], context: str = "Sample.Periodic",
           ) -> dict[str, Any]:
    """A meter value of the import register in Wh, one sampled value per phase of
    ``values`` ("total": the untagged register)."""
    return {"timestamp": ts, "sampledValue": [
        {"value": wh, "context": context, "measurand": "Energy.Active.Import.Register",
         **({"phase": phase} if phase != "total" else {})} for phase, wh in values.items()]}


async def lone_phase_session(station: RawClient, begin: dict[str, float],
                             periodic: dict[str, float], end: dict[str, float]) -> Any:
    """A session from 10:00 to 11:00 with the register's ``begin``, ``periodic`` (10:30)
    and ``end`` readings, by phase ("total": the untagged register): the Ended event's
    answer."""
    await station.result("TransactionEvent", event(
        "Started", 0, "2026-03-01T10:00:00Z", idToken=TOKEN, evse=EVSE,
        meterValue=[phased("2026-03-01T10:00:00Z", begin, "Transaction.Begin")]))
    await station.result("TransactionEvent", event(
        "Updated", 1, "2026-03-01T10:30:00Z",
        meterValue=[phased("2026-03-01T10:30:00Z", periodic)]))
    return await station.result("TransactionEvent", event(
        "Ended", 2, "2026-03-01T11:00:00Z",
        meterValue=[phased("2026-03-01T11:00:00Z", end, "Transaction.End")]))


async def test_a_session_whose_only_register_is_one_phase_is_billed_from_it(
    csms_server: RunningServer, station: RawClient
) -> None:
    """A single-phase charger whose one register is tagged with its phase: billed from it
    (5,200 Wh in an hour), not held, and flagged for the operator (a three-phase charger
    reporting one phase would be underbilled)."""
    await csms_server.add_tariff("0.39")
    ended = await lone_phase_session(station, {"L1-N": 15000}, {"L1-N": 17500},
                                     {"L1-N": 20200})
    assert ended["totalCost"] == 2.03  # 5.2 kWh x 0.39 EUR = 2.028
    [s] = await csms_server.sessions()
    assert (s["status"], s["energy_wh"]) == ("completed", 5200)
    assert (s["meter_start_wh"], s["meter_stop_wh"]) == (15000, 20200)
    assert s["flags"] == ["billed_from_phase"]
    assert await is_queued(csms_server, s["id"])


@pytest.mark.parametrize(("begin", "periodic", "end", "flag"), [
    # three phases, no total: parts of a total it did not send, never summed
    ({"L1": 5000, "L2": 5000, "L3": 5000}, {"L1": 6000, "L2": 6000, "L3": 6000},
     {"L1": 7000, "L2": 7000, "L3": 7000}, "meter_stop_missing"),
    # one register whose phase changes label mid-session (the last reading far above)
    ({"L1-N": 15000}, {"L1-N": 17500}, {"L2-N": 990000}, "meter_stop_missing"),
    ({"L1": 15000}, {"L1-N": 17500}, {"L1-N": 990000}, "meter_stop_missing"),
], ids=["three-phases", "label-changes", "label-written-otherwise"])
async def test_several_phase_registers_are_held_not_billed(
    csms_server: RunningServer, station: RawClient, begin: dict[str, float],
    periodic: dict[str, float], end: dict[str, float], flag: str,
) -> None:
    await csms_server.add_tariff("0.39")
    ended = await lone_phase_session(station, begin, periodic, end)
    assert "totalCost" not in ended  # held: no cost rather than a wrong one
    [s] = await csms_server.sessions()
    assert s["status"] == "completed" and s["energy_wh"] == 0
    assert {"meter_start_missing", flag} <= set(s["flags"])
    assert "billed_from_phase" not in s["flags"]
    assert not await is_queued(csms_server, s["id"])


async def test_a_phase_register_above_the_total_beside_it_never_bills(
    csms_server: RunningServer, station: RawClient
) -> None:
    """A hostile station sends the total and, beside it, a phase register far above it:
    the total bills (1,000 Wh), the phase is never read."""
    await csms_server.add_tariff("0.39")
    ended = await lone_phase_session(
        station, {"total": 15000, "L1-N": 15000}, {"total": 15500, "L1-N": 60000},
        {"total": 16000, "L1-N": 90000})
    assert ended["totalCost"] == 0.39
    [s] = await csms_server.sessions()
    assert (s["energy_wh"], s["flags"]) == (1000, [])
    assert await is_queued(csms_server, s["id"])


async def test_a_copy_with_other_readings_of_a_lone_phase_holds_the_session(
    csms_server: RunningServer, station: RawClient
) -> None:
    """An Updated event sent again under its seqNo with another reading of the session's
    only register, one phase's: the copies would bill differently (the phase bills the
    session), so the first is kept and the session held, as for a total's."""
    await csms_server.add_tariff("0.39")
    await station.result("TransactionEvent", event(
        "Started", 0, "2026-03-01T10:00:00Z", idToken=TOKEN, evse=EVSE,
        meterValue=[phased("2026-03-01T10:00:00Z", {"L1-N": 15000}, "Transaction.Begin")]))
    for wh in (17500, 90000):
        await station.result("TransactionEvent", event(
            "Updated", 1, "2026-03-01T10:30:00Z",
            meterValue=[phased("2026-03-01T10:30:00Z", {"L1-N": wh})]))
    [conflict] = await station_events(csms_server, "EV1", "seq_conflict")
    assert conflict["held"] and conflict["kept"] == [
        ["2026-03-01T10:30:00+00:00", "17500", "Sample.Periodic"]]
    await station.result("TransactionEvent", event(
        "Ended", 2, "2026-03-01T11:00:00Z",
        meterValue=[phased("2026-03-01T11:00:00Z", {"L1-N": 20200}, "Transaction.End")]))
    [s] = await csms_server.sessions()
    assert s["energy_wh"] == 5200 and "seq_conflict" in s["flags"]
    assert not await is_queued(csms_server, s["id"])
