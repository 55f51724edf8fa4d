"""What the driver sees, over real sockets: the running cost in 2.0.1 TransactionEvent
answers, CostUpdated and the 1.6 running-cost DataTransfer from the session's tariff, and
display messages on a simulated station."""

from __future__ import annotations

import asyncio
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import pytest

from chargers_sim import Station
from csms.config import Settings
from support import RunningServer, csms_cli
from support.admin import api
from support.client import RawClient

FAST: dict[str, Any] = {"meter_interval": 0.05, "call_timeout": 3, "retry_interval": 0.1}
T0 = "2026-03-01T10:00:00Z"


def event(kind: str, seq: int, minutes: int, wh: int, **extra: Any) -> dict[str, Any]:
    context = {"Started": "Transaction.Begin", "Ended": "Transaction.End"}.get(
        kind, "Sample.Periodic")
    return {
        "eventType": kind, "timestamp": f"2026-03-01T10:{minutes:02d}:00Z",
        "triggerReason": {"Started": "Authorized", "Ended": "StopAuthorized"}.get(
            kind, "MeterValuePeriodic"),
        "seqNo": seq, "transactionInfo": {"transactionId": "TX-COST"},
        "meterValue": [{"timestamp": f"2026-03-01T10:{minutes:02d}:00Z", "sampledValue": [
            {"value": wh, "context": context, "unitOfMeasure": {"unit": "Wh"}}]}], **extra}


async def test_running_cost_in_transaction_event_answers(csms_server: RunningServer) -> None:
    await csms_server.add_station("EV1")
    await csms_server.add_tag("DRIVER1")
    await csms_server.add_tariff("0.39")
    token = {"idToken": "DRIVER1", "type": "ISO14443"}
    async with await RawClient.connect(csms_server.url, "EV1", ["ocpp2.0.1"]) as c:
        started = await c.result("TransactionEvent", event(
            "Started", 0, 0, 1000, idToken=token, evse={"id": 1, "connectorId": 1}))
        assert "totalCost" not in started  # nothing charged yet: I02 is for Updated/Ended
        updated = await c.result("TransactionEvent", event("Updated", 1, 10, 5000))
        assert updated["totalCost"] == 1.56  # 4 kWh x 0.39 EUR
        assert updated["updatedPersonalMessage"] == {
            "format": "UTF8", "language": "en", "content": "Cost so far: 1.56 EUR for 4.000 kWh"}
        ended = await c.result("TransactionEvent", event("Ended", 2, 20, 6500, idToken=token))
    assert ended["totalCost"] == 2.15  # 5.5 kWh x 0.39 = 2.145, rounded half up per EUR
    assert ended["updatedPersonalMessage"]["content"] == "Total: 2.15 EUR for 5.500 kWh"
    assert ended["idTokenInfo"]["status"] == "Accepted"


async def test_no_cost_without_a_tariff_or_for_a_held_session(
    csms_server: RunningServer,
) -> None:
    await csms_server.add_station("EV1")
    async with await RawClient.connect(csms_server.url, "EV1", ["ocpp2.0.1"]) as c:
        await c.result("TransactionEvent", event("Started", 0, 0, 1000))
        assert "totalCost" not in await c.result("TransactionEvent", event("Updated", 1, 5, 2000))
        await csms_server.add_tariff("0.39")
        # an Updated without a Started: the session is held (started_missing): no cost,
        # rather than a wrong one; the event is acknowledged all the same
        lost = {**event("Updated", 7, 5, 2000), "transactionInfo": {"transactionId": "LOST"}}
        assert await c.result("TransactionEvent", lost) == {}
    [held] = [s for s in await csms_server.sessions("EV1") if s["transaction_id"] == "LOST"]
    assert "started_missing" in held["flags"]


async def _sim(server: RunningServer, version: str) -> Station:
    await server.add_station("SIM1")
    await server.add_tag("SIMTAG")
    await server.add_tariff("39")  # a price that makes a short session's cost plain
    st = Station(server.url, "SIM1", version, seed=7, **FAST)
    await st.start()
    return st


async def test_cost_updated_reaches_the_simulated_display(csms_server: RunningServer) -> None:
    st = await _sim(csms_server, "2.0.1")
    await st.start_session(1, "SIMTAG")
    await asyncio.sleep(0.3)
    await st.drain()
    [s] = await csms_server.sessions("SIM1")
    status, body = await api(csms_server, "POST", "/stations/SIM1/commands/cost-updated",
                             {"total_cost": 12345})  # the caller's figure is not used
    assert (status, body["action"]) == (200, "CostUpdated"), body
    shown = st.shown_cost[s["transaction_id"]]
    [now] = await csms_server.sessions("SIM1")
    assert shown == pytest.approx(round(now["energy_wh"] * 39 / 1000, 2), abs=0.5)
    assert 0 < shown != 12345
    # the simulated station also shows the totalCost of each TransactionEvent answer
    done = await st.stop_session(1)
    await st.drain()
    [final] = await csms_server.sessions("SIM1")
    assert final["energy_wh"] == done.energy_wh
    assert st.shown_cost[s["transaction_id"]] == float(
        (Decimal(done.energy_wh) * 39 / 1000).quantize(Decimal("0.01"), ROUND_HALF_UP))
    await st.close()


async def test_running_cost_on_1_6_only_when_the_station_announced_it(
    csms_server: RunningServer,
) -> None:
    st = await _sim(csms_server, "1.6")
    await st.start_session(1, "SIMTAG")
    await asyncio.sleep(0.3)
    await st.drain()
    status, body = await api(csms_server, "POST", "/stations/SIM1/commands/cost-updated", {})
    assert status == 400 and "has not announced" in body["error"]  # refused locally
    assert not [a for a, _ in st.received_calls if a == "DataTransfer"]
    st.config["CustomDisplayCostAndPrice"] = "true"
    # what `csms stations running-cost SIM1 --on` does (tests/integration/csms/cli), here
    # in the server's process: a CLI write competes with the station's traffic for SQLite
    await csms_server.central.service.set_station_option("SIM1", "running_cost", "on")
    status, body = await api(csms_server, "POST", "/stations/SIM1/commands/cost-updated", {})
    assert (status, body["status"], body["action"]) == (200, "Accepted", "DataTransfer"), body
    [(_, sent)] = [(a, p) for a, p in st.received_calls if a == "DataTransfer"]
    assert (sent["vendorId"], sent["messageId"]) == ("org.openchargealliance.costmsg",
                                                     "RunningCost")
    [s] = await csms_server.sessions("SIM1")
    assert st.shown_cost[s["transaction_id"]] > 0
    await st.close()


async def test_display_messages_set_reported_and_cleared(csms_server: RunningServer) -> None:
    st = await _sim(csms_server, "2.0.1")
    base = "/stations/SIM1/commands/"
    for n, text in ((1, "Welcome"), (2, "Tarif: 0,39 €/kWh\nDanke")):
        status, body = await api(csms_server, "POST", base + "set-display-message",
                                 {"message_id": n, "text": text, "language": "de"})
        assert (status, body["status"], body["action"]) == (200, "Accepted",
                                                            "SetDisplayMessage"), body
    assert st.display_messages[2]["message"] == {
        "format": "UTF8", "language": "de", "content": "Tarif: 0,39 €/kWh\nDanke"}
    status, body = await api(csms_server, "POST", base + "get-display-messages", {})
    assert (status, body["status"], body["action"]) == (200, "Accepted", "GetDisplayMessages")
    async with asyncio.timeout(30):  # the command in a thread: the server runs on this loop
        while not (out := await asyncio.to_thread(
                csms_cli, csms_server, "stations", "reports", "SIM1", "--kind",
                "display_messages", "--json")).stdout.count('"id"') >= 2:
            await asyncio.sleep(0.1)
    assert "Tarif: 0,39" in out.stdout
    status, body = await api(csms_server, "POST", base + "clear-display-message",
                             {"message_id": 1})
    assert (body["status"], body["action"]) == ("Accepted", "ClearDisplayMessage")
    status, body = await api(csms_server, "POST", base + "clear-display-message",
                             {"message_id": 1})
    assert body["status"] == "Unknown"
    assert list(st.display_messages) == [2]
    await st.close()


@pytest.mark.parametrize(("text", "why"), [
    ("x" * 10_000, "at most 512"),
    ("pay here\x1b[2J", "control characters"),
    ("bell\x07", "control characters"),
    ("", "missing"),
])
async def test_hostile_display_messages_are_refused_before_the_station(
    csms_server: RunningServer, text: str, why: str,
) -> None:
    await csms_server.add_station("EV1")
    async with await RawClient.connect(csms_server.url, "EV1", ["ocpp2.0.1"]) as c:
        await csms_server.wait_connected("EV1")
        status, body = await api(csms_server, "POST",
                                 "/stations/EV1/commands/set-display-message",
                                 {"message_id": 1, "text": text})
        assert status == 400 and why in body["error"]
        assert c.calls.empty()  # nothing reached the station


async def test_display_commands_are_2_0_1_only(csms_server: RunningServer) -> None:
    await csms_server.add_station("CP1")
    async with await RawClient.connect(csms_server.url, "CP1", ["ocpp1.6"]) as c:
        await csms_server.wait_connected("CP1")
        for command in ("set-display-message", "get-display-messages",
                        "clear-display-message"):
            status, body = await api(csms_server, "POST", f"/stations/CP1/commands/{command}",
                                     {"message_id": 1, "text": "hi"})
            assert status == 400 and "1.6 has no display messages" in body["error"]
        assert c.calls.empty()


async def test_running_cost_sent_at_an_interval_to_announcing_stations(
    tmp_path: Path,
) -> None:
    settings = Settings(db=str(tmp_path / "csms.sqlite3"), host="127.0.0.1", port=0,
                        data_dir=str(tmp_path / "data"), call_timeout=5, admin_port=0,
                        cost_update_interval=0.1)
    server = RunningServer(settings)
    await server.start()
    try:
        st = await _sim(server, "1.6")
        other = Station(server.url, "SIM2", "1.6", seed=8, **FAST)
        await server.add_station("SIM2")
        await other.start()
        st.config["CustomDisplayCostAndPrice"] = "true"
        other.config["CustomDisplayCostAndPrice"] = "true"  # but not marked by the operator
        await server.central.service.set_station_option("SIM1", "running_cost", "on")
        for station in (st, other):
            await station.start_session(1, "SIMTAG")
        async with asyncio.timeout(10):
            while len([a for a, _ in st.received_calls if a == "DataTransfer"]) < 2:
                await asyncio.sleep(0.05)
        assert st.shown_cost and min(st.shown_cost.values()) > 0
        assert not [a for a, _ in other.received_calls if a == "DataTransfer"]
        await st.close()
        await other.close()
    finally:
        await server.stop()
