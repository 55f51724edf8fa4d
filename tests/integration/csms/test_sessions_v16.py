"""1.6 transactions over real sockets: energy, idempotency, odd data, binding."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from support import RunningServer, is_queued, periodic_readings, station_events
from support.client import RawClient

T0 = "2026-03-01T10:00:00Z"


def mv(ts: str, *values: dict[str, Any]) -> dict[str, Any]:
    return {"timestamp": ts, "sampledValue": list(values)}


@pytest.fixture
async def station(csms_server: RunningServer) -> Any:
    await csms_server.add_station("CP1")
    await csms_server.add_tag("T1")
    client = await RawClient.connect(csms_server.url, "CP1", ["ocpp1.6"])
    await client.result(
        "BootNotification", {"chargePointVendor": "V", "chargePointModel": "M"}
    )
    yield client
    await client.close()


async def start(c: RawClient, meter_start: int = 4_200_000, tag: str = "T1",
                ts: str = T0, connector: int = 1) -> dict[str, Any]:
    return await c.result("StartTransaction", {
        "connectorId": connector, "idTag": tag, "meterStart": meter_start, "timestamp": ts})


async def test_full_session_with_exact_energy(
    csms_server: RunningServer, station: RawClient
) -> None:
    r = await start(station)
    assert r["idTagInfo"]["status"] == "Accepted"
    txid = r["transactionId"]
    assert isinstance(txid, int)
    # periodic readings in kWh strings, per-phase values and Power: only the
    # total register counts
    await station.result("MeterValues", {
        "connectorId": 1, "transactionId": txid,
        "meterValue": [mv("2026-03-01T10:15:00Z",
                          {"value": "4202.7505", "unit": "kWh",
                           "measurand": "Energy.Active.Import.Register"},
                          {"value": "900.1", "unit": "Wh", "phase": "L1",
                           "measurand": "Energy.Active.Import.Register"},
                          {"value": "11000", "unit": "W", "measurand": "Power.Active.Import"},
                          {"value": "16.0", "unit": "A", "phase": "L1",
                           "measurand": "Current.Import"})]})
    # connector 0 (main meter) and a clock-aligned reading without transaction
    await station.result("MeterValues", {
        "connectorId": 0,
        "meterValue": [mv("2026-03-01T10:15:00Z",
                          {"value": "99999999", "context": "Sample.Clock"})]})
    await station.result("MeterValues", {
        "connectorId": 1,
        "meterValue": [mv("2026-03-01T10:15:00Z",
                          {"value": "1", "context": "Sample.Clock"})]})
    active = await csms_server.sessions("CP1")
    assert active[0]["status"] == "active"
    assert active[0]["energy_wh"] == 2750  # running total for the API
    stop = await station.result("StopTransaction", {
        "transactionId": txid, "meterStop": 4_211_042, "timestamp": "2026-03-01T11:00:00Z",
        "reason": "EVDisconnected", "idTag": "T1",
        "transactionData": [mv("2026-03-01T11:00:00Z",
                               {"value": "4211042", "context": "Transaction.End"})]})
    assert stop["idTagInfo"]["status"] == "Accepted"
    [s] = await csms_server.sessions("CP1")
    assert s == {
        "id": s["id"], "station_id": "CP1", "connector_id": 1, "evse_id": 1, "id_tag": "T1",
        "ocpp_version": "1.6", "transaction_id": str(txid),
        "started_at": "2026-03-01T10:00:00+00:00", "stopped_at": "2026-03-01T11:00:00+00:00",
        "meter_start_wh": 4200000, "meter_stop_wh": 4211042, "energy_wh": 11042,
        "status": "completed", "stop_reason": "EVDisconnected", "flags": [],
        "limit_minor": None,
    }


async def test_start_retry_gets_the_same_transaction_id(
    csms_server: RunningServer, station: RawClient
) -> None:
    first = await start(station)
    retry = await start(station)  # new message id, same content: the answer was lost
    assert retry["transactionId"] == first["transactionId"]
    other = await start(station, ts="2026-03-01T12:00:00Z")
    assert other["transactionId"] != first["transactionId"]
    assert len(await csms_server.sessions()) == 2


async def test_stop_retry_is_idempotent(csms_server: RunningServer, station: RawClient) -> None:
    txid = (await start(station, 1000))["transactionId"]
    stop = {"transactionId": txid, "meterStop": 3000, "timestamp": "2026-03-01T11:00:00Z"}
    await station.result("StopTransaction", stop)
    await station.result("StopTransaction", {**stop, "meterStop": 9000})
    [s] = await csms_server.sessions()
    assert (s["energy_wh"], s["stop_reason"]) == (2000, "Local")


@pytest.mark.parametrize(("tag", "status"), [("NOBODY", "Invalid"), ("BLK", "Blocked")])
async def test_unknown_or_blocked_tag_is_acknowledged_stored_and_flagged(
    csms_server: RunningServer, station: RawClient, tag: str, status: str
) -> None:
    await csms_server.add_tag("BLK", "blocked")
    r = await start(station, tag=tag)
    assert r["idTagInfo"]["status"] == status
    assert r["transactionId"] > 0
    [s] = await csms_server.sessions()
    assert s["id_tag"] == tag
    assert f"auth_{'unknown' if tag == 'NOBODY' else 'blocked'}" in s["flags"]


async def test_placeholder_meter_start_is_not_billed_as_lifetime(
    csms_server: RunningServer, station: RawClient
) -> None:
    txid = (await start(station, meter_start=0))["transactionId"]
    await station.result("MeterValues", {
        "connectorId": 1, "transactionId": txid,
        "meterValue": [mv("2026-03-01T10:01:00Z", {"value": "5000000"})]})
    await station.result("StopTransaction", {
        "transactionId": txid, "meterStop": 5_004_000, "timestamp": "2026-03-01T10:30:00Z"})
    [s] = await csms_server.sessions()
    assert s["energy_wh"] == 4000
    assert "meter_start_placeholder" in s["flags"]


async def test_stop_for_unknown_transaction_is_acknowledged_and_held(
    csms_server: RunningServer, station: RawClient
) -> None:
    r = await station.result("StopTransaction", {
        "transactionId": 777, "meterStop": 5000, "timestamp": "2026-03-01T10:30:00Z"})
    assert r == {}
    [s] = await csms_server.sessions()
    assert s["status"] == "completed"
    assert "unknown_transaction" in s["flags"]
    assert s["energy_wh"] == 0


async def test_transactions_are_bound_to_their_station(
    csms_server: RunningServer, station: RawClient
) -> None:
    txid = (await start(station, 1000))["transactionId"]
    await csms_server.add_station("CP2")
    async with await RawClient.connect(csms_server.url, "CP2") as other:
        await other.result("MeterValues", {
            "connectorId": 1, "transactionId": txid,
            "meterValue": [mv("2026-03-01T10:05:00Z", {"value": "999999"})]})
        r = await other.result("StopTransaction", {
            "transactionId": txid, "meterStop": 999999, "timestamp": "2026-03-01T10:30:00Z"})
        assert r == {}  # acknowledged, so the station stops retrying...
    [s] = await csms_server.sessions("CP1")
    assert s["status"] == "active"  # ...but not applied
    assert s["energy_wh"] is None
    assert await csms_server.sessions("CP2") == []

    async def events(tx: Any) -> list[dict[str, Any]]:
        return await tx.list_station_events("CP2", "security")

    kinds = {e["payload"]["action"] for e in await csms_server.repo.read(events)}
    assert kinds == {"MeterValues", "StopTransaction"}


async def test_schema_violation_in_meter_values_gets_error_not_silent_drop(
    station: RawClient,
) -> None:
    answer = await station.call("MeterValues", {"connectorId": 1, "meterValue": []})
    assert answer[0] == 4  # minItems: the station learns its message was malformed


def register(ts: str, value: int) -> dict[str, Any]:
    return mv(ts, {"value": str(value), "measurand": "Energy.Active.Import.Register"})


async def test_a_second_driver_started_on_a_charging_connector_is_held(
    csms_server: RunningServer, station: RawClient,
) -> None:
    """A hostile station starts T2's transaction on connector 1 while T1's still charges
    there (its readings go on after T2's start): both are held. T1's, without readings
    since 10:10, is closed as T2's starts (``stop_lost``); its reading at 10:30 holds T2's,
    its stop completes it, held for T2's time: each named in an event."""
    await csms_server.add_tag("T2")
    first = (await start(station, 1000))["transactionId"]
    await station.result("MeterValues", {"connectorId": 1, "transactionId": first,
                                         "meterValue": [register("2026-03-01T10:10:00Z", 2000)]})
    second = (await start(station, 2500, "T2", "2026-03-01T10:20:00Z"))["transactionId"]
    await station.result("MeterValues", {"connectorId": 1, "transactionId": first,
                                         "meterValue": [register("2026-03-01T10:30:00Z", 4000)]})
    for txid, stop, at in ((second, 5000, "2026-03-01T10:40:00Z"),
                           (first, 6000, "2026-03-01T11:00:00Z")):
        await station.result("StopTransaction", {"transactionId": txid, "meterStop": stop,
                                                 "timestamp": at})
    by = {s["transaction_id"]: s for s in await csms_server.sessions("CP1")}
    for txid in (first, second):
        assert "overlaps_session" in by[str(txid)]["flags"]
        assert not await is_queued(csms_server, by[str(txid)]["id"])
    named = [(e["session_id"], e["other_session_id"])
             for e in await station_events(csms_server, "CP1", "overlaps_session")]
    assert sorted(named) == sorted([(by[str(second)]["id"], by[str(first)]["id"]),
                                    (by[str(first)]["id"], by[str(second)]["id"])])


async def test_a_start_after_a_lost_stop_is_billed(
    csms_server: RunningServer, station: RawClient,
) -> None:
    """A station reboots without sending T1's StopTransaction (its last reading 10:10) and
    starts T2's on connector 1 at 10:30: T2's is billed; T1's is closed at 10:10 in the
    same transaction (billed from its readings, held ``stop_lost``), and completed by its
    real stop when the station delivers it later (queued)."""
    await csms_server.add_tag("T2")
    first = (await start(station, 1000))["transactionId"]
    await station.result("MeterValues", {"connectorId": 1, "transactionId": first,
                                         "meterValue": [register("2026-03-01T10:10:00Z", 2000)]})
    second = (await start(station, 2500, "T2", "2026-03-01T10:30:00Z"))["transactionId"]
    await station.result("StopTransaction", {"transactionId": second, "meterStop": 4000,
                                             "timestamp": "2026-03-01T11:00:00Z"})
    by = {s["transaction_id"]: s for s in await csms_server.sessions("CP1")}
    assert by[str(second)]["flags"] == [] and "stop_lost" in by[str(first)]["flags"]
    assert await is_queued(csms_server, by[str(second)]["id"])
    closed = by[str(first)]
    assert (closed["status"], closed["stopped_at"], closed["energy_wh"]) == (
        "completed", "2026-03-01T10:10:00+00:00", 1000)
    assert not await is_queued(csms_server, closed["id"])
    [event] = await station_events(csms_server, "CP1", "stop_lost")
    assert (event["session_id"], event["new_session_id"]) == (
        closed["id"], by[str(second)]["id"])
    assert await station_events(csms_server, "CP1", "overlaps_session") == []
    assert await station.result("StopTransaction", {
        "transactionId": first, "meterStop": 2200,
        "timestamp": "2026-03-01T10:15:00Z"}) == {}
    done = {s["transaction_id"]: s for s in await csms_server.sessions("CP1")}[str(first)]
    assert (done["flags"], done["energy_wh"]) == ([], 1200)
    assert await is_queued(csms_server, done["id"])


# -- a StopTransaction for a transaction that has a stop already ------------------------

STOP = {"meterStop": 20_000, "timestamp": "2026-03-01T11:00:00Z", "idTag": "T1",
        "reason": "Local"}


async def _stopped(server: RunningServer, c: RawClient) -> tuple[int, dict[str, Any]]:
    """A 19 kWh session of T1, stopped (queued): its transactionId and the stop's answer."""
    txid = (await start(c, 1000))["transactionId"]
    answer = await c.result("StopTransaction", {"transactionId": txid, **STOP})
    [s] = await server.sessions("CP1")
    assert s["energy_wh"] == 19_000 and await is_queued(server, s["id"])
    return txid, answer


async def _settled(server: RunningServer, session_id: int, state: str) -> None:
    """The settlement worker's writes for a session in ``state`` (batched: in a chunk)."""

    async def work(tx: Any) -> None:
        await tx.dequeue_settlement(session_id)
        await tx.set_session_settlement(session_id, settlement_state=state)

    await server.repo.unit(work)


async def test_a_retried_stop_is_answered_as_the_first_and_changes_nothing(
    csms_server: RunningServer, station: RawClient,
) -> None:
    txid, first = await _stopped(csms_server, station)
    # the station never got the answer: the same stop again (same time, meterStop, idTag)
    assert await station.result("StopTransaction", {"transactionId": txid, **STOP}) == first
    [s] = await csms_server.sessions("CP1")
    assert (s["energy_wh"], s["flags"]) == (19_000, [])
    assert await is_queued(csms_server, s["id"])
    assert await station_events(csms_server, "CP1", "stop_differs") == []


@pytest.mark.parametrize("other", [
    {"meterStop": 30_000},  # 10 kWh more than the stop billed
    {"meterStop": 19_500},  # a correction down
    {"timestamp": "2026-03-01T12:00:00Z"},  # an hour longer
    {"idTag": "T2"},  # another driver's card: the same time and reading
], ids=["more", "less", "later", "other-tag"])
async def test_a_second_stop_that_differs_is_kept_and_holds_the_session(
    csms_server: RunningServer, station: RawClient, other: dict[str, Any],
) -> None:
    await csms_server.add_tag("T2")
    txid, _ = await _stopped(csms_server, station)
    [before] = await csms_server.sessions("CP1")
    second = {"transactionId": txid, **STOP, **other}
    # acknowledged (an error would make the station retry it for ever); T2 may not stop
    # T1's session (Invalid), T1 may
    answer = await station.result("StopTransaction", second)
    assert answer["idTagInfo"]["status"] == ("Invalid" if second["idTag"] == "T2"
                                             else "Accepted")
    [s] = await csms_server.sessions("CP1")
    billed = ("started_at", "stopped_at", "meter_stop_wh", "energy_wh", "id_tag")
    assert [s[k] for k in billed] == [before[k] for k in billed]  # not changed silently
    # held for the operator, not settled on either stop unseen
    assert "stop_differs" in s["flags"] and not await is_queued(csms_server, s["id"])
    [event] = await station_events(csms_server, "CP1", "stop_differs")
    assert event["session_id"] == s["id"] and event["held"] is True
    assert (event["stop"]["meter_stop"], event["stop"]["timestamp"],
            event["stop"]["id_tag"]) == (str(STOP["meterStop"]),
                                         "2026-03-01T11:00:00+00:00", "T1")
    assert (event["other_stop"]["meter_stop"], event["other_stop"]["id_tag"]) == (
        str(second["meterStop"]), second["idTag"])
    # its retry is the same: answered again, nothing billed changes
    assert await station.result("StopTransaction", second) == answer
    [again] = await csms_server.sessions("CP1")
    assert [again[k] for k in billed] == [before[k] for k in billed]


async def test_a_second_stop_after_a_release_holds_the_session_again(
    csms_server: RunningServer, station: RawClient,
) -> None:
    from csms.service.holds import decide

    txid, _ = await _stopped(csms_server, station)
    await station.result("StopTransaction", {"transactionId": txid, **STOP,
                                             "meterStop": 25_000})
    [s] = await csms_server.sessions("CP1")

    async def release(tx: Any) -> None:
        await decide(tx, s["id"], "released", actor="test", reason=None,
                     now=datetime.now(UTC))

    await csms_server.repo.unit(release)
    assert await is_queued(csms_server, s["id"])
    # a third stop, once the operator released the session: held again, the release used up
    await station.result("StopTransaction", {"transactionId": txid, **STOP,
                                             "meterStop": 40_000})
    [held] = await csms_server.sessions("CP1")
    assert "released" not in held["flags"] and held["energy_wh"] == 19_000
    assert not await is_queued(csms_server, s["id"])


async def test_a_second_stop_of_a_settled_session_is_kept_and_changes_nothing(
    csms_server: RunningServer, station: RawClient,
) -> None:
    # past the point of no return: the session is in a chunk with its sequence number
    txid, _ = await _stopped(csms_server, station)
    [s] = await csms_server.sessions("CP1")
    await _settled(csms_server, s["id"], "batched")
    answer = await station.result("StopTransaction", {"transactionId": txid, **STOP,
                                                      "meterStop": 30_000})
    assert answer["idTagInfo"]["status"] == "Accepted"
    [after] = await csms_server.sessions("CP1")
    assert (after["energy_wh"], after["meter_stop_wh"]) == (19_000, 20_000)
    [event] = await station_events(csms_server, "CP1", "stop_differs")
    assert (event["session_id"], event["held"], event["billing"]) == (s["id"], False, "batched")


# 1.6 §6.49 StopTransaction.req carries transactionData, filled per §9.1
# StopTxnSampledData / StopTxnAlignedData with the session's periodic readings. EVerest had
# to add a MaxMessageSize key because "the transactionData field of the StopTransaction.req
# message can become really large" (EVerest/libocpp#651); stations without such a key send
# it whole: an overnight session sampled once a minute with one measurand is ~90 KB of
# JSON. The former frame limit (64 KiB) closed the connection instead (1009): the station
# reconnected and sent the same StopTransaction again, for ever, and the session was never
# completed, priced or settled (DESIGN.md: "Always acknowledge ... StopTransaction").
async def test_the_stop_of_an_overnight_16_session_is_acknowledged(
    csms_server: RunningServer,
) -> None:
    await csms_server.add_station("LONG1")
    await csms_server.add_tag("TAG1")
    begin = datetime(2026, 3, 1, 20, tzinfo=UTC)
    samples = periodic_readings(begin, 600)
    async with await RawClient.connect(csms_server.url, "LONG1", ["ocpp1.6"]) as c:
        assert (await c.result("BootNotification", {
            "chargePointVendor": "V", "chargePointModel": "M"}))["status"] == "Accepted"
        start = await c.result("StartTransaction", {
            "connectorId": 1, "idTag": "TAG1", "meterStart": 1_000_000,
            "timestamp": "2026-03-01T20:00:00.000Z"})
        stop = {"transactionId": start["transactionId"], "meterStop": 1_072_000,
                "timestamp": "2026-03-02T06:00:00.000Z", "reason": "EVDisconnected",
                "transactionData": samples}
        assert len(json.dumps(stop)) > 65536  # what a real overnight stop weighs
        answer = await c.call("StopTransaction", stop, timeout=10)
        assert answer[0] == 3, answer
    sessions = await csms_server.sessions("LONG1")
    assert [s["status"] for s in sessions] == ["completed"], sessions
    # what the stop held of the node's budget for large frames is given back
    assert csms_server.central.large_frames.held == 0


async def test_a_stop_dated_before_its_readings_is_held(
    csms_server: RunningServer, station: RawClient
) -> None:
    """A StopTransaction dated 10:10 after MeterValues of its transaction up to 10:40: the
    driver would pay for the connector's energy after the stop, which the next session
    there (started after 10:10) is billed for too. Held, as a 2.0.1 Ended event dated so
    (csms.service.sessions ``readings_outside_session``)."""
    txid = (await start(station, meter_start=1_000))["transactionId"]
    await station.result("MeterValues", {"connectorId": 1, "transactionId": txid,
                                         "meterValue": [mv("2026-03-01T10:40:00Z", {
                                             "value": "14000"})]})
    await station.result("StopTransaction", {
        "transactionId": txid, "meterStop": 14_000, "timestamp": "2026-03-01T10:10:00Z"})
    [s] = await csms_server.sessions()
    assert s["energy_wh"] == 13_000
    assert "readings_outside_session" in s["flags"]
    assert not await is_queued(csms_server, s["id"])


async def test_a_placeholder_start_is_found_from_a_lone_phase_register(
    csms_server: RunningServer, station: RawClient
) -> None:
    """A single-phase charger whose one register, tagged "L1-N", is its lifetime register
    starts with meterStart 0 (a value it had not read) and stops with that register: its
    first reading, 5 minutes after the start, is more than any charger delivers in that
    time, so the session starts there (the 3,000 Wh of that register it delivered), as a
    total's placeholder does - not the 253 kWh lifetime of meterStop less 0, which an hour
    at the default power let through unheld."""
    txid = (await start(station, 0))["transactionId"]
    for at, wh in (("10:05", 250_000), ("10:30", 251_500), ("11:00", 253_000)):
        await station.result("MeterValues", {
            "connectorId": 1, "transactionId": txid, "meterValue": [mv(
                f"2026-03-01T{at}:00Z", {"value": str(wh), "phase": "L1-N",
                                         "measurand": "Energy.Active.Import.Register"})]})
    await station.result("StopTransaction", {
        "transactionId": txid, "meterStop": 253_000, "timestamp": "2026-03-01T11:01:00Z"})
    [s] = await csms_server.sessions()
    assert (s["meter_start_wh"], s["meter_stop_wh"], s["energy_wh"]) == (250_000, 253_000,
                                                                          3_000)
    assert {"meter_start_placeholder", "billed_from_phase"} <= set(s["flags"])
    assert s["status"] == "completed" and await is_queued(csms_server, s["id"])


async def test_a_placeholder_stop_is_read_from_a_lone_phase_register(
    csms_server: RunningServer, station: RawClient
) -> None:
    """A single-phase charger whose one register is tagged "L1-N" stops with meterStop 0
    (a value it had not read): its register's last reading is the stop (the 2,200 Wh it
    delivered, not 0), flagged as billed from one phase; a meterStop it read bills as
    reported, the phase register beside it only shown."""
    txids = []
    for hour, meter_start, meter_stop in ((10, 15000, 0), (11, 20000, 22500)):
        txid = (await start(station, meter_start, ts=f"2026-03-01T{hour}:00:00Z"))[
            "transactionId"]
        txids.append(str(txid))
        for minutes, wh in ((15, meter_start + 1000), (30, meter_start + 2200)):
            await station.result("MeterValues", {
                "connectorId": 1, "transactionId": txid, "meterValue": [mv(
                    f"2026-03-01T{hour}:{minutes:02d}:00Z",
                    {"value": str(wh), "phase": "L1-N",
                     "measurand": "Energy.Active.Import.Register"})]})
        await station.result("StopTransaction", {
            "transactionId": txid, "meterStop": meter_stop,
            "timestamp": f"2026-03-01T{hour}:31:00Z"})
    placeholder, reported = [
        next(s for s in await csms_server.sessions() if s["transaction_id"] == txid)
        for txid in txids]
    assert (placeholder["energy_wh"], placeholder["meter_stop_wh"]) == (2200, 17200)
    assert placeholder["flags"] == ["meter_stop_placeholder", "billed_from_phase"]
    assert (reported["energy_wh"], reported["flags"]) == (2500, [])
    for s in (placeholder, reported):
        assert s["status"] == "completed" and await is_queued(csms_server, s["id"])
