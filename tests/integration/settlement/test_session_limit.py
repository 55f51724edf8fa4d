"""A session is stopped when its price reaches what its driver's escrow pays for it,
through real sockets with the driver's escrow on the memory chain: the card's per-session
limit on chain, the app session's signed maximum amount (csms.service.limits)."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
from conftest import BACKENDS
from integration.csms.admin.test_console import Browser
from integration.settlement.test_credit import BOOT16, BOOT201, command, link, settling

from settlement import wallet
from support import RunningServer, station_events
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


async def test_a_session_below_its_limit_is_not_stopped(server: RunningServer) -> None:
    await link(server, "RICH", max_per_session=10_000)  # 100.00 EUR
    async with await RawClient.connect(server.url, "CP16", ["ocpp1.6"]) as c:
        txid = await start16(c, "RICH")
        for n, wh in enumerate((5_000, 20_000, 60_000, 120_000), start=1):
            await meter16(c, txid, wh, n)  # up to 46.80 EUR and 23.40 for one more
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
        await meter16(c, txid, 4000, 2)  # asked once, whatever the answer
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
        for n, wh in enumerate((3_000, 30_000, 90_000), start=1):  # up to 35.10 EUR
            await meter16(c, txid, wh, n)
        await no_call(c)
    session = await the_session(server, "CP16")
    assert session["limit_minor"] is None and session["flags"] == []
    assert await station_events(server, "CP16", "limit_reached") == []


async def test_an_app_session_is_stopped_at_the_amount_its_driver_signed(
        server: RunningServer) -> None:
    kit, _ = await link(server, "CARD")
    index = kit.chain.register_station(22_000)

    async def on_chain(tx: Any) -> None:
        st = await tx.get_station("CP16")
        st.chain_station = index
        await tx.update_station(st)

    await server.repo.unit(on_chain)
    app, _ = kit.driver(deposit=5_000, allow_cards=False)
    signed = wallet.authorize(kit.chain, app, index, max_per_kwh=40, max_amount=50, nonce=1,
                              expiry=int(time.time()) + 3600)
    async with await RawClient.connect(server.url, "CP16", ["ocpp1.6"]) as c:
        await c.result("BootNotification", BOOT16)
        remote = asyncio.create_task(command(server, "CP16", {
            "tag": "APP1", "authorization": signed.as_json()}))
        call = await c.calls.get()
        await c.answer(call[1], {"status": "Accepted"})
        assert (await remote)[0] == 200
        start = await c.result("StartTransaction", {
            "connectorId": 1, "idTag": "APP1", "meterStart": 0, "timestamp": at(0)})
        txid = int(start["transactionId"])
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
        await _meter(c, version, txid, 1, 30_000, 1)  # 11.70 and 11.70 for one more
        await _meter(c, version, txid, 2, 40_000, 2)  # 15.60 and 3.90
        await no_call(c)
        await _meter(c, version, txid, 3, 55_000, 3)  # 21.45 and 5.85: 27.30 reaches 25.00
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
    kit, _ = await link(server, "CARD")
    index = kit.chain.register_station(22_000)

    async def on_chain(tx: Any) -> None:
        st = await tx.get_station("CP16")
        st.chain_station = index
        await tx.update_station(st)

    await server.repo.unit(on_chain)
    app, _ = kit.driver(deposit=2_500, allow_cards=False)
    signed = wallet.authorize(kit.chain, app, index, max_per_kwh=40, max_amount=9_000,
                              nonce=1, expiry=int(time.time()) + 3600)
    async with await RawClient.connect(server.url, "CP16", ["ocpp1.6"]) as c:
        await c.result("BootNotification", BOOT16)
        remote = asyncio.create_task(command(server, "CP16", {
            "tag": "APP1", "authorization": signed.as_json()}))
        call = await c.calls.get()
        await c.answer(call[1], {"status": "Accepted"})
        assert (await remote)[0] == 200
        start = await c.result("StartTransaction", {
            "connectorId": 1, "idTag": "APP1", "meterStart": 0, "timestamp": at(0)})
        txid = int(start["transactionId"])
        await meter16(c, txid, 30_000, 1)  # 23.40 with the margin
        await no_call(c)
        await meter16(c, txid, 55_000, 2)  # 21.45 and 9.75
        call = await asyncio.wait_for(c.calls.get(), 5)
        assert call[2:] == ["RemoteStopTransaction", {"transactionId": txid}]
        await c.answer(call[1], {"status": "Accepted"})
    session = await the_session(server, "CP16")
    assert session["limit_minor"] == 2_500 and session["flags"] == ["limit_reached"]
