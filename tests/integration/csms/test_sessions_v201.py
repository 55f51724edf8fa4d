"""2.0.1 TransactionEvent over real sockets: seqNo dedupe, gaps, offline, units."""

from __future__ import annotations

from typing import Any

import pytest

from support import RunningServer
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
