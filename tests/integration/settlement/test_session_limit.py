"""A session is stopped when its price reaches what its driver's escrow pays for it,
through real sockets with the driver's escrow on the memory chain: the card's per-session
limit on chain, the app session's signed maximum amount (csms.service.limits)."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import aiohttp
import orjson
import pytest
from conftest import BACKENDS
from integration.csms.admin.test_console import Browser
from integration.settlement.test_credit import BOOT16, BOOT201, command, link, settling

from csms.domain.tariff import Tariff
from csms.service import defaults
from settlement import wallet
from settlement.worker import EXPIRY_MARGIN_S
from support import LONG_AGO, RunningServer, station_events
from support.client import RawClient

# the tariff is 0.39 EUR per kWh: 39 minor units a kWh, nothing per minute
QUIET = 0.5  # how long a station waits to be sure no CALL comes


@pytest.fixture
async def server(csms_server: RunningServer) -> RunningServer:
    return await settling(csms_server, "CP16", "CP201")


def at(minutes: float) -> str:
    return (datetime.now(UTC) + timedelta(minutes=minutes)).isoformat()


async def start16(c: RawClient, tag: str) -> int:
    await c.result("BootNotification", BOOT16)
    start = await c.result("StartTransaction", {
        "connectorId": 1, "idTag": tag, "meterStart": 0, "timestamp": at(0)})
    assert start["idTagInfo"]["status"] == "Accepted", start
    return int(start["transactionId"])


async def meter16(c: RawClient, txid: int, wh: int, minutes: float) -> None:
    await c.result("MeterValues", {"connectorId": 1, "transactionId": txid, "meterValue": [
        {"timestamp": at(minutes), "sampledValue": [{"value": str(wh)}]}]})


async def no_call(c: RawClient) -> None:
    """No CALL of the central system reaches the station within QUIET."""
    with pytest.raises(TimeoutError):
        call = await asyncio.wait_for(c.calls.get(), QUIET)
        pytest.fail(f"unexpected CALL {call}")


async def the_session(server: RunningServer, station: str) -> dict[str, Any]:
    [session] = await server.sessions(station)
    return session


@pytest.mark.parametrize("csms_db", BACKENDS, indirect=True)
async def test_a_card_session_is_stopped_once_at_its_drivers_limit_16(
        server: RunningServer) -> None:
    await link(server, "CARD", max_per_session=100)  # 1.00 EUR: about 2.5 kWh
    async with await RawClient.connect(server.url, "CP16", ["ocpp1.6"]) as c:
        txid = await start16(c, "CARD")
        # 39 so far and 39 for one more kWh; then 59 and 20 for one more 500 Wh
        await meter16(c, txid, 1000, 1)
        await meter16(c, txid, 1500, 2)
        await no_call(c)
        # 86 so far and 27 for one more 700 Wh: 113 reaches 100
        await meter16(c, txid, 2200, 3)
        call = await asyncio.wait_for(c.calls.get(), 5)
        assert call[2:] == ["RemoteStopTransaction", {"transactionId": txid}]
        await c.answer(call[1], {"status": "Accepted"})
        await meter16(c, txid, 2300, 4)  # before the stop takes effect: not asked again
        await meter16(c, txid, 2400, 5)
        await no_call(c)
    session = await the_session(server, "CP16")
    assert session["limit_minor"] == 100
    assert session["flags"] == ["limit_reached"]
    [reached] = await station_events(server, "CP16", "limit_reached")
    assert reached == {"session_id": session["id"], "transaction_id": str(txid),
                       "limit_minor": 100, "price_minor": 86, "margin_minor": 27,
                       "currency": "EUR"}
    [answer] = await station_events(server, "CP16", "limit_stop")
    assert answer["status"] == "Accepted" and answer["action"] == "RemoteStopTransaction"
    # the session's view: the admin API's and the console's
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        async with http.get(f"{server.admin_url}/sessions/{session['id']}", headers={
                "Authorization": f"Bearer {server.admin_token}"}) as r:
            shown = await r.json()
        browser = Browser(server, http)
        await browser.login()
        page = await (await browser.get(f"/sessions/{session['id']}")).text()
    assert shown["limit_minor"] == 100 and shown["flags"] == ["limit_reached"]
    assert 'id="limit">100 (the tariff\'s minor units): reached, stop asked<' in page


def event201(kind: str, seq: int, wh: int, minutes: float, **extra: Any) -> dict[str, Any]:
    return {"eventType": kind, "timestamp": at(minutes), "seqNo": seq,
            "triggerReason": "Authorized" if kind == "Started" else "MeterValuePeriodic",
            "transactionInfo": {"transactionId": "T1"}, "evse": {"id": 1, "connectorId": 1},
            "meterValue": [{"timestamp": at(minutes), "sampledValue": [{"value": wh}]}],
            **extra}


async def test_a_card_session_is_stopped_once_at_its_drivers_limit_201(
        server: RunningServer) -> None:
    await link(server, "CARD", max_per_session=100)
    async with await RawClient.connect(server.url, "CP201", ["ocpp2.0.1"]) as c:
        await c.result("BootNotification", BOOT201)
        started = await c.result("TransactionEvent", event201(
            "Started", 0, 0, 0, idToken={"idToken": "CARD", "type": "ISO14443"}))
        assert started["idTokenInfo"]["status"] == "Accepted"
        await c.result("TransactionEvent", event201("Updated", 1, 1000, 1))
        await no_call(c)
        await c.result("TransactionEvent", event201("Updated", 2, 2200, 3))
        call = await asyncio.wait_for(c.calls.get(), 5)
        assert call[2:] == ["RequestStopTransaction", {"transactionId": "T1"}]
        await c.answer(call[1], {"status": "Accepted"})
        await c.result("TransactionEvent", event201("Updated", 3, 2300, 4))
        await no_call(c)
    session = await the_session(server, "CP201")
    assert session["limit_minor"] == 100 and session["flags"] == ["limit_reached"]
    [reached] = await station_events(server, "CP201", "limit_reached")
    assert reached["session_id"] == session["id"] and reached["transaction_id"] == "T1"
    assert reached["price_minor"] == 86 and reached["margin_minor"] == 47  # 1200 Wh more


@pytest.mark.parametrize("tag", [
    {},  # lbbrhzn/ocpp#2093, #2115
    {"location": "Body", "phase": "L1-N"},  # the frames' only register (lbbrhzn/ocpp#442)
], ids=["total", "one phase only"])
async def test_a_grizzl_e_session_register_is_stopped_at_its_drivers_limit(
        server: RunningServer, tag: dict[str, str]) -> None:
    """A Grizzl-E: meterStart the lifetime register, its readings the session's energy in
    kWh counting from 0, as the total or tagged with its one phase, "L1-N" (a single-phase
    charger's total). Billed at the stop from meterStop, so while it charges its readings
    are the session's energy: its limit is enforced."""
    await link(server, "CARD", max_per_session=100)  # 1.00 EUR: about 2.5 kWh
    async with await RawClient.connect(server.url, "CP16", ["ocpp1.6"]) as c:
        await c.result("BootNotification", BOOT16)
        start = await c.result("StartTransaction", {
            "connectorId": 1, "idTag": "CARD", "meterStart": 4_076_447, "timestamp": at(0)})
        txid = int(start["transactionId"])

        async def kwh(value: str, minutes: float) -> None:
            await c.result("MeterValues", {"connectorId": 1, "transactionId": txid,
                                           "meterValue": [{"timestamp": at(minutes),
                                                           "sampledValue": [{
                "value": value, "context": "Sample.Periodic", **tag,
                "measurand": "Energy.Active.Import.Register", "unit": "kWh"}]}]})

        # as a register from 0: 39 so far and 39 for one more kWh; then 59 and 20
        await kwh("1.000", 1)
        await kwh("1.500", 2)
        await no_call(c)
        # 86 so far and 27 for one more 700 Wh: 113 reaches 100
        await kwh("2.200", 3)
        call = await asyncio.wait_for(c.calls.get(), 5)
        assert call[2:] == ["RemoteStopTransaction", {"transactionId": txid}]
        await c.answer(call[1], {"status": "Accepted"})
    session = await the_session(server, "CP16")
    assert session["energy_wh"] == 2200 and session["flags"] == ["limit_reached"]
    [reached] = await station_events(server, "CP16", "limit_reached")
    assert (reached["price_minor"], reached["margin_minor"]) == (86, 27)


# (the Started event's readings, the Updated events' readings in kWh): a Grizzl-E whose only
# register is tagged with its one phase, its begin reading the lifetime register and its
# readings on from it; the same without a begin reading (its first reading the start); and
# its readings counting the session from 0 beside a lifetime begin reading
GRIZZL_E_201 = {
    "lifetime": ([("4076.447", "Transaction.Begin")], ["4077.447", "4077.947", "4078.647"]),
    "no begin reading": ([], ["4076.447", "4077.447", "4077.947", "4078.647"]),
    "from 0": ([("4076.447", "Transaction.Begin")], ["1.000", "1.500", "2.200"]),
}


@pytest.mark.parametrize("csms_db", BACKENDS, indirect=True)
@pytest.mark.parametrize("kind", list(GRIZZL_E_201))
async def test_a_201_session_of_one_phase_register_is_stopped_at_its_drivers_limit(
        server: RunningServer, kind: str) -> None:
    """A single-phase charger's TransactionEvents whose only energy register is tagged with
    its phase, "L1-N" (a Grizzl-E, lbbrhzn/ocpp#442): its readings are the session's
    running energy, what the driver's limit is checked against, with or without a
    Transaction.Begin reading."""
    begin, readings = GRIZZL_E_201[kind]
    await link(server, "CARD", max_per_session=100)  # 1.00 EUR: about 2.5 kWh

    def kwh(value: str, minutes: float, context: str = "Sample.Periodic") -> dict[str, Any]:
        return {"timestamp": at(minutes), "sampledValue": [{
            "value": float(value), "context": context, "location": "Body", "phase": "L1-N",
            "measurand": "Energy.Active.Import.Register",
            "unitOfMeasure": {"unit": "kWh"}}]}

    def event(kind: str, seq: int, minutes: float, values: list[dict[str, Any]],
              **extra: Any) -> dict[str, Any]:
        return {"eventType": kind, "timestamp": at(minutes), "seqNo": seq,
                "triggerReason": "Authorized" if kind == "Started" else "MeterValuePeriodic",
                "transactionInfo": {"transactionId": "G1"},
                "evse": {"id": 1, "connectorId": 1},
                **({"meterValue": values} if values else {}), **extra}

    async with await RawClient.connect(server.url, "CP201", ["ocpp2.0.1"]) as c:
        await c.result("BootNotification", BOOT201)
        started = await c.result("TransactionEvent", event(
            "Started", 0, 0, [kwh(v, 0, ctx) for v, ctx in begin],
            idToken={"idToken": "CARD", "type": "ISO14443"}))
        assert started["idTokenInfo"]["status"] == "Accepted"
        seq = 1
        if len(readings) == 4:  # the first reading is the start: 0 so far
            await c.result("TransactionEvent", event("Updated", seq, 0.5,
                                                     [kwh(readings[0], 0.5)]))
            seq += 1
        # 39 so far and 39 for one more kWh; then 59 and 20 for one more 500 Wh
        for minutes, value in ((1, readings[-3]), (2, readings[-2])):
            await c.result("TransactionEvent", event("Updated", seq, minutes,
                                                     [kwh(value, minutes)]))
            seq += 1
        await no_call(c)
        # 86 so far and 27 for one more 700 Wh: 113 reaches 100
        await c.result("TransactionEvent", event("Updated", seq, 3, [kwh(readings[-1], 3)]))
        call = await asyncio.wait_for(c.calls.get(), 5)
        assert call[2:] == ["RequestStopTransaction", {"transactionId": "G1"}]
        await c.answer(call[1], {"status": "Accepted"})
    session = await the_session(server, "CP201")
    assert session["energy_wh"] == 2200 and session["flags"] == ["limit_reached"]
    [reached] = await station_events(server, "CP201", "limit_reached")
    assert (reached["price_minor"], reached["margin_minor"]) == (86, 27)


async def test_a_session_below_its_limit_is_not_stopped(server: RunningServer) -> None:
    await link(server, "RICH", max_per_session=10_000)  # 100.00 EUR
    async with await RawClient.connect(server.url, "CP16", ["ocpp1.6"]) as c:
        txid = await start16(c, "RICH")
        # readings a 350 kW station can make from 0 within minutes of its start
        for minutes, wh in ((1, 5_000), (4, 20_000), (7, 40_000), (9, 59_000)):
            await meter16(c, txid, wh, minutes)  # up to 23.01 EUR and 7.41 for one more
        await no_call(c)
    session = await the_session(server, "CP16")
    assert session["limit_minor"] == 10_000 and session["flags"] == []
    assert await station_events(server, "CP16", "limit_reached") == []


async def test_a_stop_the_station_rejects_holds_the_session_for_the_operator(
        server: RunningServer) -> None:
    await link(server, "CARD", max_per_session=100)
    async with await RawClient.connect(server.url, "CP16", ["ocpp1.6"]) as c:
        txid = await start16(c, "CARD")
        await meter16(c, txid, 3000, 1)
        call = await asyncio.wait_for(c.calls.get(), 5)
        assert call[2] == "RemoteStopTransaction"
        await c.answer(call[1], {"status": "Rejected"})
        for _ in range(50):  # the answer is kept once it is in
            if await station_events(server, "CP16", "limit_stop"):
                break
            await asyncio.sleep(0.05)
        await meter16(c, txid, 4000, 2)  # not asked again within a minute
        await no_call(c)
        await c.result("StopTransaction", {"transactionId": txid, "meterStop": 4000,
                                           "timestamp": at(3), "reason": "Local"})
    [answer] = await station_events(server, "CP16", "limit_stop")
    assert answer["status"] == "Rejected"
    session = await the_session(server, "CP16")
    assert session["flags"] == ["limit_reached", "limit_stop_refused"]
    [hold] = await station_events(server, "CP16", "billing_hold")
    assert hold["session_id"] == session["id"]


async def test_a_tag_of_no_driver_has_no_limit(server: RunningServer) -> None:
    await link(server, "CARD", max_per_session=100)  # a driver's card elsewhere
    await server.add_tag("PLAIN")  # billed off-chain: no escrow to reach
    async with await RawClient.connect(server.url, "CP16", ["ocpp1.6"]) as c:
        txid = await start16(c, "PLAIN")
        for minutes, wh in ((1, 3_000), (6, 30_000), (9, 55_000)):  # up to 21.45 EUR
            await meter16(c, txid, wh, minutes)
        await no_call(c)
    session = await the_session(server, "CP16")
    assert session["limit_minor"] is None and session["flags"] == []
    assert await station_events(server, "CP16", "limit_reached") == []


async def on_chain(server: RunningServer) -> tuple[Any, int]:
    """The settling kit (a card driver linked) and CP16 registered on chain: its index."""
    kit, _ = await link(server, "CARD")
    index = kit.chain.register_station(22_000)

    async def register(tx: Any) -> None:
        st = await tx.get_station("CP16")
        st.chain_station = index
        await tx.update_station(st)

    await server.repo.unit(register)
    return kit, index


async def start_signed(server: RunningServer, c: RawClient, signed: Any) -> int:
    """CP16 boots, takes the remote start of the signed authorization for APP1 and starts
    its session: the transaction id."""
    await c.result("BootNotification", BOOT16)
    remote = asyncio.create_task(command(server, "CP16", {
        "tag": "APP1", "authorization": signed.as_json()}))
    call = await c.calls.get()
    await c.answer(call[1], {"status": "Accepted"})
    assert (await remote)[0] == 200
    start = await c.result("StartTransaction", {
        "connectorId": 1, "idTag": "APP1", "meterStart": 0, "timestamp": at(0)})
    return int(start["transactionId"])


async def test_an_app_session_is_stopped_at_the_amount_its_driver_signed(
        server: RunningServer) -> None:
    kit, index = await on_chain(server)
    app, _ = kit.driver(deposit=5_000, allow_cards=False)
    signed = wallet.authorize(kit.chain, app, index, max_per_kwh=40, max_amount=50, nonce=1,
                              expiry=int(time.time()) + 3600)
    async with await RawClient.connect(server.url, "CP16", ["ocpp1.6"]) as c:
        txid = await start_signed(server, c, signed)
        await meter16(c, txid, 600, 1)  # 23 and 23 for one more: 46, below 50
        await no_call(c)
        await meter16(c, txid, 800, 2)  # 31 and 8: 39
        await no_call(c)
        await meter16(c, txid, 1100, 3)  # 43 and 12: 55 reaches 50
        call = await asyncio.wait_for(c.calls.get(), 5)
        assert call[2:] == ["RemoteStopTransaction", {"transactionId": txid}]
        await c.answer(call[1], {"status": "Accepted"})
    session = await the_session(server, "CP16")
    assert session["limit_minor"] == 50 and session["flags"] == ["limit_reached"]


def later(server: RunningServer, seconds: float) -> None:
    """The central system's clock ``seconds`` ahead of the real one (the station's readings
    keep their own times)."""
    assert server.app is not None
    server.app.service.clock = lambda: datetime.now(UTC) + timedelta(seconds=seconds)


async def answered(server: RunningServer, station: str, count: int) -> list[str]:
    """The statuses of the station's ``limit_stop`` events, oldest first, once there are
    ``count`` of them."""
    for _ in range(100):
        events = await station_events(server, station, "limit_stop")
        if len(events) >= count:
            return [e["status"] for e in reversed(events)]
        await asyncio.sleep(0.05)
    pytest.fail(f"{count} limit_stop events expected, {len(events)} came")


async def check(server: RunningServer) -> list[int]:
    """One pass of the node's check of its stations' sessions with a limit."""
    assert server.app is not None
    return await server.app.check_limits()


@pytest.mark.parametrize("csms_db", BACKENDS, indirect=True)
async def test_a_stop_not_taken_is_asked_again_at_a_later_reading_once_a_minute(
        server: RunningServer) -> None:
    await link(server, "CARD", max_per_session=100)
    async with await RawClient.connect(server.url, "CP16", ["ocpp1.6"]) as c:
        txid = await start16(c, "CARD")
        await meter16(c, txid, 3000, 1)
        call = await asyncio.wait_for(c.calls.get(), 5)
        assert call[2] == "RemoteStopTransaction"
        await c.send_raw(orjson.dumps([4, call[1], "InternalError", "busy", {}]).decode())
        assert await answered(server, "CP16", 1) == ["none"]
        await meter16(c, txid, 3100, 1.5)  # within a minute of the stop asked: not again
        await no_call(c)
        later(server, 61)
        await meter16(c, txid, 3200, 2)
        call = await asyncio.wait_for(c.calls.get(), 5)
        assert call[2:] == ["RemoteStopTransaction", {"transactionId": txid}]
        await c.send_raw(orjson.dumps([4, call[1], "InternalError", "busy", {}]).decode())
        assert await answered(server, "CP16", 2) == ["none", "none"]
        later(server, 125)
        await meter16(c, txid, 3300, 3)
        call = await asyncio.wait_for(c.calls.get(), 5)
        await c.answer(call[1], {"status": "Accepted"})
        assert await answered(server, "CP16", 3) == ["none", "none", "Accepted"]
        later(server, 600)  # taken: never asked again
        await meter16(c, txid, 3400, 4)
        await no_call(c)
    session = await the_session(server, "CP16")
    # the stop not taken at first holds the session all the same: it ran beyond the limit
    assert session["flags"] == ["limit_reached", "limit_stop_refused"]
    assert len(await station_events(server, "CP16", "limit_reached")) == 1


async def test_a_station_offline_at_its_stop_is_asked_again_once_connected(
        server: RunningServer) -> None:
    await link(server, "CARD", max_per_session=100)
    async with await RawClient.connect(server.url, "CP16", ["ocpp1.6"]) as c:
        txid = await start16(c, "CARD")
        await meter16(c, txid, 3000, 1)
        call = await asyncio.wait_for(c.calls.get(), 5)
        assert call[2] == "RemoteStopTransaction"  # the station goes away unanswering
    assert await answered(server, "CP16", 1) == ["none"]
    async with await RawClient.connect(server.url, "CP16", ["ocpp1.6"]) as c:
        await c.result("BootNotification", BOOT16)
        later(server, 30)
        await check(server)  # connected again, but asked less than a minute ago
        await no_call(c)
        later(server, 61)
        assert await check(server) == [(await the_session(server, "CP16"))["id"]]
        call = await asyncio.wait_for(c.calls.get(), 5)
        assert call[2:] == ["RemoteStopTransaction", {"transactionId": txid}]
        await c.answer(call[1], {"status": "Accepted"})
        assert await answered(server, "CP16", 2) == ["none", "Accepted"]
        later(server, 300)
        await check(server)
        await no_call(c)
    for _ in range(100):  # the node sees the connection closed
        if "CP16" not in server.central.connections:
            break
        await asyncio.sleep(0.05)
    # without the station on this node its sessions are not looked at
    assert await check(server) == []


async def test_a_per_minute_session_without_readings_is_stopped_by_the_nodes_check(
        server: RunningServer) -> None:
    async def per_minute(tx: Any) -> None:
        await tx.add_tariff(Tariff("CP201", Decimal(0), per_minute=Decimal("0.10"),
                                   valid_from=LONG_AGO))

    await server.repo.unit(per_minute)
    await link(server, "CARD", max_per_session=100, max_per_minute=10)  # ten minutes
    await server.add_tag("PLAIN")
    async with await RawClient.connect(server.url, "CP201", ["ocpp2.0.1"]) as c, \
            await RawClient.connect(server.url, "CP16", ["ocpp1.6"]) as plain:
        await c.result("BootNotification", BOOT201)
        started = await c.result("TransactionEvent", event201(
            "Started", 0, 0, 0, idToken={"idToken": "CARD", "type": "ISO14443"}))
        assert started["idTokenInfo"]["status"] == "Accepted"
        await start16(plain, "PLAIN")  # no limit: never looked at
        [card] = await server.sessions("CP201")
        later(server, 9 * 60)  # 90 so far and 5 for the next 30 s
        assert await check(server) == [card["id"]]
        await no_call(c)
        later(server, 9.5 * 60)  # 95 and 5
        assert await check(server) == [card["id"]]
        call = await asyncio.wait_for(c.calls.get(), 5)
        assert call[2:] == ["RequestStopTransaction", {"transactionId": "T1"}]
        await c.answer(call[1], {"status": "Accepted"})
        assert await answered(server, "CP201", 1) == ["Accepted"]
        await no_call(plain)
    session = await the_session(server, "CP201")
    assert session["flags"] == ["limit_reached"]
    [reached] = await station_events(server, "CP201", "limit_reached")
    assert reached == {"session_id": session["id"], "transaction_id": "T1",
                       "limit_minor": 100, "price_minor": 95, "margin_minor": 5,
                       "currency": "EUR"}
    assert (await the_session(server, "CP16"))["flags"] == []


async def test_a_signed_session_is_stopped_ahead_of_its_signatures_expiry(
        server: RunningServer) -> None:
    kit, index = await on_chain(server)
    app, _ = kit.driver(deposit=5_000, allow_cards=False)
    expiry = int(time.time()) + 3600
    signed = wallet.authorize(kit.chain, app, index, max_per_kwh=40, max_amount=2_000,
                              nonce=1, expiry=expiry)
    async with await RawClient.connect(server.url, "CP16", ["ocpp1.6"]) as c:
        txid = await start_signed(server, c, signed)
        ahead = defaults.SIGNED_STOP_AHEAD + defaults.LIMIT_CHECK_SECONDS
        later(server, 3600 - ahead - 60)  # not yet: the check after next is soon enough
        await check(server)
        await no_call(c)
        later(server, 3600 - ahead + 1)
        await check(server)
        call = await asyncio.wait_for(c.calls.get(), 5)
        assert call[2:] == ["RemoteStopTransaction", {"transactionId": txid}]
        await c.answer(call[1], {"status": "Accepted"})
        assert await answered(server, "CP16", 1) == ["Accepted"]
    # asked when settlement still has its margin, and the stop's time to take effect
    assert defaults.SIGNED_STOP_AHEAD > EXPIRY_MARGIN_S
    session = await the_session(server, "CP16")
    assert session["limit_minor"] == 2_000
    assert session["flags"] == ["authorization_expiring"]
    [expiring] = await station_events(server, "CP16", "authorization_expiring")
    assert expiring["session_id"] == session["id"] and expiring["expiry"] == expiry
    [answer] = await station_events(server, "CP16", "limit_stop")
    assert answer["reason"] == "authorization_expiring"
    assert await station_events(server, "CP16", "limit_reached") == []
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        browser = Browser(server, http)
        await browser.login()
        page = await (await browser.get(f"/sessions/{session['id']}")).text()
    assert "id=\"limit\">2000 (the tariff's minor units): the driver's signature" \
        " expires, stop asked<" in page


async def _start(c: RawClient, version: str, tag: str) -> Any:
    """Boot and start a session of ``tag``: its transaction id (1.6) or T1 (2.0.1)."""
    if version == "1.6":
        return await start16(c, tag)
    await c.result("BootNotification", BOOT201)
    started = await c.result("TransactionEvent", event201(
        "Started", 0, 0, 0, idToken={"idToken": tag, "type": "ISO14443"}))
    assert started["idTokenInfo"]["status"] == "Accepted", started
    return "T1"


async def _meter(c: RawClient, version: str, txid: Any, seq: int, wh: int,
                 minutes: float) -> None:
    if version == "1.6":
        await meter16(c, txid, wh, minutes)
    else:
        await c.result("TransactionEvent", event201("Updated", seq, wh, minutes))


@pytest.mark.parametrize("version", ["1.6", "2.0.1"])
async def test_a_card_session_is_stopped_at_what_the_escrow_holds(
        server: RunningServer, version: str) -> None:
    """The escrow (25.00) holds less than the per-session limit (100.00) and more than a
    reserve (20.00): the session starts, and is stopped at 25.00, not 100.00 (75.00 the
    contract could not pay)."""
    await link(server, "CARD", deposit=2_500, max_per_session=10_000)
    station = "CP16" if version == "1.6" else "CP201"
    stop = ["RemoteStopTransaction", {"transactionId": 0}] if version == "1.6" \
        else ["RequestStopTransaction", {"transactionId": "T1"}]
    async with await RawClient.connect(server.url, station, [f"ocpp{version}"]) as c:
        txid = await _start(c, version, "CARD")
        if version == "1.6":
            stop[1] = {"transactionId": txid}
        await _meter(c, version, txid, 1, 30_000, 6)  # 11.70 and 11.70 for one more
        await _meter(c, version, txid, 2, 40_000, 7)  # 15.60 and 3.90
        await no_call(c)
        await _meter(c, version, txid, 3, 55_000, 9)  # 21.45 and 5.85: 27.30 reaches 25.00
        call = await asyncio.wait_for(c.calls.get(), 5)
        assert call[2:] == stop
        await c.answer(call[1], {"status": "Accepted"})
    session = await the_session(server, station)
    assert session["limit_minor"] == 2_500 and session["flags"] == ["limit_reached"]


async def test_two_sessions_of_one_driver_share_the_escrow(server: RunningServer) -> None:
    """Two stations start a card of one driver at once (50.00 in escrow, 30.00 a session):
    one gets 30.00, the other what is left, 20.00 (a reserve): never 60.00 together."""
    await link(server, "CARD", deposit=5_000, max_per_session=3_000)
    async with await RawClient.connect(server.url, "CP16", ["ocpp1.6"]) as a, \
            await RawClient.connect(server.url, "CP201", ["ocpp2.0.1"]) as b:
        await asyncio.gather(_start(a, "1.6", "CARD"), _start(b, "2.0.1", "CARD"))
    limits = [(await the_session(server, sid))["limit_minor"] for sid in ("CP16", "CP201")]
    assert sorted(limits) == [2_000, 3_000], limits


async def test_an_app_session_is_stopped_at_what_the_escrow_holds(
        server: RunningServer) -> None:
    """The driver signed for up to 90.00 and holds 25.00: the session's limit is 25.00."""
    kit, index = await on_chain(server)
    app, _ = kit.driver(deposit=2_500, allow_cards=False)
    signed = wallet.authorize(kit.chain, app, index, max_per_kwh=40, max_amount=9_000,
                              nonce=1, expiry=int(time.time()) + 3600)
    async with await RawClient.connect(server.url, "CP16", ["ocpp1.6"]) as c:
        txid = await start_signed(server, c, signed)
        await meter16(c, txid, 30_000, 6)  # 23.40 with the margin
        await no_call(c)
        await meter16(c, txid, 55_000, 9)  # 21.45 and 9.75
        call = await asyncio.wait_for(c.calls.get(), 5)
        assert call[2:] == ["RemoteStopTransaction", {"transactionId": txid}]
        await c.answer(call[1], {"status": "Accepted"})
    session = await the_session(server, "CP16")
    assert session["limit_minor"] == 2_500 and session["flags"] == ["limit_reached"]
