"""2.0.1 readings of a transaction dated outside its time, over real sockets and a real
SQLite file (csms.service.sessions ``readings_outside_session``).

A transaction's register readings are the energy its driver pays. A station that dates
the Ended event of one transaction back (before the last Updated's readings, or with no
meter value at all: its stop is then its latest reading) makes its driver pay for the
readings after the end; the next transaction on the EVSE, started after that end, is
compared with nothing, and its driver pays for the same energy. So does a reading dated
before the start (no Transaction.Begin reading: the earliest reading is the start), in the
time of the transaction before. Such a session is held; readings within a clock's
tolerance of its times, and a Transaction.Begin reading (the register at the start,
whatever time a charger gives it) are billed as before.
"""

from __future__ import annotations

from typing import Any

import pytest

from support import RunningServer, is_queued, station_events
from support.client import RawClient

OUTSIDE = "readings_outside_session"


def event(kind: str, seq: int, ts: str, txid: str, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "eventType": kind, "timestamp": ts, "seqNo": seq,
        "triggerReason": {"Started": "Authorized", "Updated": "MeterValuePeriodic",
                          "Ended": "EVCommunicationLost"}[kind],
        "transactionInfo": {"transactionId": txid},
    }
    body.update(extra)
    return body


def reading(ts: str, wh: int, context: str) -> list[dict[str, Any]]:
    return [{"timestamp": ts, "sampledValue": [{
        "value": wh, "context": context, "measurand": "Energy.Active.Import.Register"}]}]


def token(tag: str) -> dict[str, str]:
    return {"idToken": tag, "type": "ISO14443"}


EVSE = {"id": 1, "connectorId": 1}


@pytest.fixture
async def station(csms_server: RunningServer) -> Any:
    await csms_server.add_station("EV1")
    await csms_server.add_tag("T1")
    await csms_server.add_tag("T2")
    client = await RawClient.connect(csms_server.url, "EV1", ["ocpp2.0.1"])
    await client.result("BootNotification", {
        "chargingStation": {"vendorName": "V", "model": "M"}, "reason": "PowerUp"})
    yield client
    await client.close()


def by_tx(sessions: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {s["transaction_id"]: s for s in sessions}


async def test_ended_dated_before_its_readings_is_held(
    csms_server: RunningServer, station: RawClient
) -> None:
    """A's Ended dated 10:10, its readings going on to 10:40 (the energy B's car took from
    10:15): A is held, B, whose own readings are within its time, is billed."""
    await station.result("TransactionEvent", event(
        "Started", 0, "2026-03-01T10:00:00Z", "tx-A", idToken=token("T1"), evse=EVSE,
        meterValue=reading("2026-03-01T10:00:00Z", 1_000, "Transaction.Begin")))
    await station.result("TransactionEvent", event(
        "Updated", 1, "2026-03-01T10:05:00Z", "tx-A",
        meterValue=reading("2026-03-01T10:05:00Z", 2_000, "Sample.Periodic")))
    await station.result("TransactionEvent", event(
        "Updated", 2, "2026-03-01T10:40:00Z", "tx-A",
        meterValue=reading("2026-03-01T10:40:00Z", 14_000, "Sample.Periodic")))
    await station.result("TransactionEvent", event(
        "Ended", 3, "2026-03-01T10:10:00Z", "tx-A",
        transactionInfo={"transactionId": "tx-A", "stoppedReason": "EVDisconnected"}))
    # B, on the same EVSE after A's end as the station dates it
    await station.result("TransactionEvent", event(
        "Started", 0, "2026-03-01T10:15:00Z", "tx-B", idToken=token("T2"), evse=EVSE,
        meterValue=reading("2026-03-01T10:15:00Z", 3_000, "Transaction.Begin")))
    await station.result("TransactionEvent", event(
        "Ended", 1, "2026-03-01T10:40:00Z", "tx-B",
        transactionInfo={"transactionId": "tx-B", "stoppedReason": "EVDisconnected"},
        meterValue=reading("2026-03-01T10:40:00Z", 14_000, "Transaction.End")))
    sessions = by_tx(await csms_server.sessions())
    a, b = sessions["tx-A"], sessions["tx-B"]
    assert (a["status"], a["energy_wh"]) == ("completed", 13_000)  # what the station says
    assert OUTSIDE in a["flags"]
    assert not await is_queued(csms_server, a["id"])
    assert OUTSIDE not in b["flags"] and await is_queued(csms_server, b["id"])
    [kept] = await station_events(csms_server, "EV1", OUTSIDE)
    assert kept["transaction_id"] == "tx-A"
    assert kept["latest"] == "2026-03-01T10:40:00+00:00"


async def test_reading_dated_before_the_start_is_held(
    csms_server: RunningServer, station: RawClient
) -> None:
    """No Transaction.Begin reading: the earliest reading is the start, and one dated an
    hour before the Started event (the time of a transaction before) bills that hour."""
    await station.result("TransactionEvent", event(
        "Started", 0, "2026-03-01T11:00:00Z", "tx-C", idToken=token("T1"), evse=EVSE))
    await station.result("TransactionEvent", event(
        "Updated", 1, "2026-03-01T11:10:00Z", "tx-C",
        meterValue=reading("2026-03-01T10:00:00Z", 1_000, "Sample.Periodic")
        + reading("2026-03-01T11:10:00Z", 20_000, "Sample.Periodic")))
    await station.result("TransactionEvent", event(
        "Ended", 2, "2026-03-01T11:30:00Z", "tx-C",
        meterValue=reading("2026-03-01T11:30:00Z", 22_000, "Transaction.End")))
    [c] = await csms_server.sessions()
    assert OUTSIDE in c["flags"] and not await is_queued(csms_server, c["id"])


async def test_readings_within_a_clocks_tolerance_are_billed(
    csms_server: RunningServer, station: RawClient
) -> None:
    """An honest station: its end reading stamped a few seconds after its Ended event, a
    Transaction.Begin reading repeated later (some chargers do) or stamped before the
    Started event, and no other session on the EVSE: billed, not held."""
    await station.result("TransactionEvent", event(
        "Started", 0, "2026-03-01T10:00:00Z", "tx-D", idToken=token("T1"), evse=EVSE,
        meterValue=reading("2026-03-01T09:59:40Z", 1_000, "Transaction.Begin")))
    await station.result("TransactionEvent", event(
        "Updated", 1, "2026-03-01T10:30:00Z", "tx-D",
        meterValue=reading("2026-03-01T10:30:00Z", 1_000, "Transaction.Begin")
        + reading("2026-03-01T10:30:00Z", 6_000, "Sample.Periodic")))
    await station.result("TransactionEvent", event(
        "Ended", 2, "2026-03-01T11:00:00Z", "tx-D",
        meterValue=reading("2026-03-01T11:00:20Z", 11_000, "Transaction.End")))
    [d] = await csms_server.sessions()
    assert d["energy_wh"] == 10_000
    assert OUTSIDE not in d["flags"] and await is_queued(csms_server, d["id"])
