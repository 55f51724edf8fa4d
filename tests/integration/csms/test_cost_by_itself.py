"""What the driver sees without anyone asking, over real sockets: 2.0.1 CostUpdated every
``cost_update_interval`` while a session's cost changes (stations marked for the running
cost, or a tariff with a time component), never for held or tariff-less sessions, a
station that errs or stays silent not asked again for the same cost; the 1.6 FinalCost
DataTransfer once at a marked station's session end, with the billed figure."""

from __future__ import annotations

import asyncio
import itertools
import json
import math
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import pytest

from chargers_sim import Station
from csms.config import Settings
from csms.domain.tariff import Tariff, price_minor
from csms.service.ports import Tx
from support import LONG_AGO, RunningServer
from support.admin import api
from support.client import RawClient

FAST: dict[str, Any] = {"meter_interval": 0.05, "call_timeout": 3, "retry_interval": 0.1}


async def serving(tmp_path: Path, interval: float) -> AsyncIterator[RunningServer]:
    settings = Settings(db=str(tmp_path / "csms.sqlite3"), host="127.0.0.1", port=0,
                        data_dir=str(tmp_path / "data"), call_timeout=1, admin_port=0,
                        cost_update_interval=interval)
    running = RunningServer(settings)
    await running.start()
    try:
        yield running
    finally:
        await running.stop()


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[RunningServer]:
    """The running cost sent every 0.1 s."""
    async for running in serving(tmp_path, 0.1):
        yield running


@pytest.fixture
async def quiet(tmp_path: Path) -> AsyncIterator[RunningServer]:
    """No running cost at an interval: FinalCost is the only cost sent by itself."""
    async for running in serving(tmp_path, 0):
        yield running


async def tariff(server: RunningServer, station_id: str, per_kwh: str,
                 per_minute: str = "0", fee: str = "0") -> Tariff:
    t = Tariff(station_id, Decimal(per_kwh), "EUR", 2, per_minute=Decimal(per_minute),
               session_fee=Decimal(fee), valid_from=LONG_AGO)

    async def work(tx: Tx) -> None:
        await tx.add_tariff(t)

    await server.repo.unit(work)
    return t


def event(kind: str, seq: int, wh: int, tx_id: str = "TX-1", **extra: Any) -> dict[str, Any]:
    now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    return {"eventType": kind, "timestamp": now, "seqNo": seq,
            "triggerReason": "Authorized" if kind == "Started" else "MeterValuePeriodic",
            "transactionInfo": {"transactionId": tx_id},
            "meterValue": [{"timestamp": now, "sampledValue": [
                {"value": wh, "unitOfMeasure": {"unit": "Wh"},
                 "context": "Transaction.Begin" if kind == "Started" else "Sample.Periodic"}]}],
            **extra}


class Recorder:
    """A 2.0.1 station on a raw socket that keeps every CALL it gets and answers each
    with ``{}``, a CALLERROR, or nothing at all."""

    def __init__(self, client: RawClient, mode: str) -> None:
        self.client, self.mode = client, mode
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.task = asyncio.create_task(self._serve())

    async def _serve(self) -> None:
        while True:
            _, msg_id, action, payload = await self.client.calls.get()
            self.calls.append((action, payload))
            if self.mode == "answer":
                await self.client.answer(msg_id, {})
            elif self.mode == "error":
                await self.client.send_raw(json.dumps(
                    [4, msg_id, "NotSupported", "no display here", {}]))

    def costs(self) -> list[dict[str, Any]]:
        return [p for a, p in self.calls if a == "CostUpdated"]

    async def close(self) -> None:
        self.task.cancel()
        await self.client.close()


async def raw_station(server: RunningServer, station_id: str, mode: str, marked: bool,
                      ) -> Recorder:
    await server.add_station(station_id)
    client = await RawClient.connect(server.url, station_id, ["ocpp2.0.1"])
    token = {"idToken": "DRIVER1", "type": "ISO14443"}
    await client.result("TransactionEvent", event("Started", 0, 1000, idToken=token,
                                                  evse={"id": 1, "connectorId": 1}))
    await client.result("TransactionEvent", event("Updated", 1, 5000))
    if marked:  # marked once the session holds its 4 kWh: the first cost sent is 1.56
        await server.central.service.set_station_option(station_id, "running_cost", "on")
    return Recorder(client, mode)


async def until(check: Any, what: str) -> None:
    async with asyncio.timeout(20):
        while not check():
            await asyncio.sleep(0.02)


async def test_cost_updated_by_itself_only_while_the_cost_changes(
    server: RunningServer,
) -> None:
    await server.add_tag("DRIVER1")
    await server.add_tag("SIMTAG")
    for station_id in ("FLAT", "ERR", "MUTE", "PLAIN"):
        await tariff(server, station_id, "0.39")  # energy only: 4 kWh = 1.56
    await tariff(server, "TIMED", "0.39", per_minute="6")  # and 0.10 EUR a second
    flat = await raw_station(server, "FLAT", "answer", marked=True)
    # a held session on the same station (an Updated without its Started) gets nothing
    lost = event("Updated", 4, 3000, tx_id="LOST")
    await flat.client.result("TransactionEvent", lost)
    err = await raw_station(server, "ERR", "error", marked=True)
    mute = await raw_station(server, "MUTE", "silent", marked=True)
    plain = await raw_station(server, "PLAIN", "answer", marked=False)
    await server.add_station("TIMED")
    timed = Station(server.url, "TIMED", "2.0.1", seed=3, **FAST)
    await timed.start()
    await timed.start_session(1, "SIMTAG")

    def timed_costs() -> list[float]:
        return [float(p["totalCost"]) for a, p in timed.received_calls if a == "CostUpdated"]

    await until(lambda: flat.costs() and err.costs() and mute.costs(), "first pushes")
    seen = len(timed_costs())
    # three more rounds of the sender (the timed session's cost grows every round)
    await until(lambda: len(timed_costs()) >= seen + 3, "three more rounds")
    assert flat.costs() == [{"transactionId": "TX-1", "totalCost": 1.56}]  # not LOST
    # an error or no answer at all: not asked again while the cost is the same
    assert err.costs() == mute.costs() == [{"transactionId": "TX-1", "totalCost": 1.56}]
    assert plain.costs() == []  # not marked, no time component: the event answers suffice
    costs = timed_costs()
    assert all(a < b for a, b in itertools.pairwise(costs)), costs
    assert costs[0] > 0
    [s] = await server.sessions("TIMED")
    assert timed.shown_cost[s["transaction_id"]] > 0  # shown (event answers show it too)
    # a changed cost is sent again, even to the station that erred before
    await err.client.result("TransactionEvent", event("Updated", 2, 6000))
    await until(lambda: len(err.costs()) == 2, "the changed cost")
    assert err.costs()[1] == {"transactionId": "TX-1", "totalCost": 1.95}
    for r in (flat, err, mute, plain):
        await r.close()
    await timed.close()


async def start16(c: RawClient, tag: str = "DRIVER1") -> int:
    answer = await c.result("StartTransaction", {
        "connectorId": 1, "idTag": tag, "meterStart": 1000,
        "timestamp": "2026-03-01T10:00:00Z"})
    return int(answer["transactionId"])


def stop16(txid: int) -> dict[str, Any]:
    return {"transactionId": txid, "idTag": "DRIVER1", "meterStop": 6500,
            "timestamp": "2026-03-01T10:20:00Z", "reason": "Local"}


async def next_call(c: RawClient) -> tuple[str, str, dict[str, Any]]:
    async with asyncio.timeout(10):
        _, msg_id, action, payload = await c.calls.get()
    return msg_id, action, payload


async def marker(server: RunningServer, c: RawClient, station_id: str) -> None:
    """The next CALL the station gets is the operator's ClearCache: nothing was queued
    before it (a follow-up is queued when the answer it follows goes out)."""
    sent = asyncio.create_task(api(server, "POST",
                                   f"/stations/{station_id}/commands/clear-cache", {}))
    msg_id, action, _ = await next_call(c)
    assert action == "ClearCache"
    await c.answer(msg_id, {"status": "Accepted"})
    assert (await sent)[0] == 200


async def test_final_cost_once_at_a_marked_1_6_stations_session_end(
    quiet: RunningServer,
) -> None:
    server = quiet
    await server.add_tag("DRIVER1")
    t = await tariff(server, "*", "0.39", per_minute="0.05", fee="0.50")
    for station_id in ("MARKED", "OTHER"):
        await server.add_station(station_id)
    await server.central.service.set_station_option("MARKED", "running_cost", "on")
    async with await RawClient.connect(server.url, "MARKED", ["ocpp1.6"]) as c:
        txid = await start16(c)
        stop = stop16(txid)
        assert (await c.result("StopTransaction", stop))["idTagInfo"]["status"] == "Accepted"
        msg_id, action, payload = await next_call(c)
        assert (action, payload["vendorId"], payload["messageId"]) == (
            "DataTransfer", "org.openchargealliance.costmsg", "FinalCost")
        await c.answer(msg_id, {"status": "Accepted"})
        # the figure settlement bills: fee + 5.5 kWh x 0.39 + 20 min x 0.05 = 3.645 -> 3.65
        [s] = await server.sessions("MARKED")
        billed = price_minor(t, s["energy_wh"], math.ceil(20 * 60))
        data = json.loads(payload["data"])
        assert data == {"transactionId": txid, "cost": billed / 100, "priceText":
                        "Total: 3.65 EUR for 5.500 kWh", "qrCodeText": ""}
        # a retried StopTransaction (the answer was lost) gets no second FinalCost
        assert (await c.result("StopTransaction", stop))["idTagInfo"]["status"] == "Accepted"
        await marker(server, c, "MARKED")
        # a held session (a stop for a transaction never started) gets none
        await c.result("StopTransaction", stop16(999_999))
        await marker(server, c, "MARKED")

    async def answer(tx: Tx) -> Any:
        return await tx.get_final_cost(s["id"])

    kept = await server.repo.read(answer)
    assert (kept["cost"], kept["currency"], kept["answer"]) == ("3.65", "EUR", "Accepted")
    # a station not marked for the running-cost convention gets nothing
    async with await RawClient.connect(server.url, "OTHER", ["ocpp1.6"]) as c:
        await c.result("StopTransaction", stop16(await start16(c)))
        await marker(server, c, "OTHER")


async def test_final_cost_reaches_the_simulated_display(quiet: RunningServer) -> None:
    server = quiet
    await server.add_station("SIM1")
    await server.add_tag("SIMTAG")
    await tariff(server, "*", "39")
    await server.central.service.set_station_option("SIM1", "running_cost", "on")
    st = Station(server.url, "SIM1", "1.6", seed=7, **FAST)
    st.config["CustomDisplayCostAndPrice"] = "true"
    await st.start()
    await st.start_session(1, "SIMTAG")
    await asyncio.sleep(0.2)  # let the meter run (no assert on time)
    done = await st.stop_session(1)
    await until(lambda: any(a == "DataTransfer" and p.get("messageId") == "FinalCost"
                            for a, p in st.received_calls), "FinalCost")
    [s] = await server.sessions("SIM1")
    assert s["energy_wh"] == done.energy_wh
    final = [json.loads(p["data"]) for a, p in st.received_calls
             if a == "DataTransfer" and p.get("messageId") == "FinalCost"]
    assert len(final) == 1
    assert final[0]["cost"] == float(
        (Decimal(done.energy_wh) * 39 / 1000).quantize(Decimal("0.01"), ROUND_HALF_UP))
    assert st.shown_cost[s["transaction_id"]] == final[0]["cost"]
    await st.close()
