"""A driver's session is stopped before a notice announced at its start runs out.

A driver may announce a withdrawal (or lower the terms) as soon as its session started,
and make it the contract's notice period later. A session still charging then (a car left
plugged in, a price per minute running on) completes after the escrow was emptied: the
contract refuses its entry (``ESCROW_TOO_LOW``) and the host is paid nothing for the
energy it delivered. So the node's check between readings stops a session with a limit
``defaults.NOTICE_STOP_AHEAD`` before its start plus the notice period: it is settled while
the escrow still holds what was at stake for it."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from integration.csms.admin.test_console import Browser
from integration.settlement.test_credit import link
from integration.settlement.test_session_limit import (
    answered,
    check,
    later,
    meter16,
    no_call,
    server,
    start16,
    the_session,
)

from csms.service import defaults
from csms.service.holds import NOTICE_PERIOD
from settlement import wallet
from support import RunningServer, station_events
from support.chainkit import Row
from support.client import RawClient

__all__ = ["server"]

ESCROW_TOO_LOW = 11  # Settlement.vy


async def notice_kept(server: RunningServer) -> int:
    """The contract's notice period, once the node's settlement worker has kept it in the
    ledger values (its first pass)."""
    for _ in range(200):
        value = await server.repo.read(lambda tx: tx.ledger_value(NOTICE_PERIOD))
        if value is not None:
            return int(value)
        await asyncio.sleep(0.05)
    pytest.fail("the settlement worker kept no notice period")


async def test_a_session_is_stopped_before_a_withdrawal_announced_at_its_start_is_made(
        server: RunningServer) -> None:
    kit, driver = await link(server, "CARD", deposit=10_000, max_per_session=10_000)
    notice = await notice_kept(server)
    assert server.app is not None and server.app.chain is not None
    assert notice == server.app.chain.info()["notice_period"]
    async with await RawClient.connect(server.url, "CP16", ["ocpp1.6"]) as c:
        txid = await start16(c, "CARD")
        await meter16(c, txid, 1_000, 5)  # 1 kWh: 0.39 of a 100.00 limit
        # the greedy driver announces a withdrawal of everything once charging
        wallet.request_withdrawal(kit.chain, driver, 10_000)
        ahead = defaults.NOTICE_STOP_AHEAD + defaults.LIMIT_CHECK_SECONDS
        later(server, notice - ahead - 60)  # days on, far below the limit: not yet
        await check(server)
        await no_call(c)
        later(server, notice - ahead + 1)
        await check(server)
        call = await asyncio.wait_for(c.calls.get(), 5)
        assert call[2:] == ["RemoteStopTransaction", {"transactionId": txid}]
        await c.answer(call[1], {"status": "Accepted"})
        assert await answered(server, "CP16", 1) == ["Accepted"]
        # asked once: the next check does not ask again
        await check(server)
        await no_call(c)
    session = await the_session(server, "CP16")
    assert session["flags"] == ["notice_ending"]
    [ending] = await station_events(server, "CP16", "notice_ending")
    assert ending["session_id"] == session["id"] and ending["notice_s"] == notice
    [answer] = await station_events(server, "CP16", "limit_stop")
    assert answer["reason"] == "notice_ending"
    assert await station_events(server, "CP16", "limit_reached") == []
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        browser = Browser(server, http)
        await browser.login()
        page = await (await browser.get(f"/sessions/{session['id']}")).text()
    assert "id=\"limit\">10000 (the tariff's minor units): charging for nearly the driver's" \
        " notice period, stop asked<" in page
    # what the stop spares the host: at its start plus the notice the driver takes the
    # escrow, and an entry settled after that is refused whole
    kit.advance(notice + 1)
    wallet.withdraw(kit.chain, driver)
    assert kit.balance(driver) == 0
    _, st = kit.host()
    di = kit.chain.driver_state(driver.address).index
    late = kit.settle([Row(st, di, 1_000, notice, 39)])
    assert late.unpaid == {late.first_seq: ESCROW_TOO_LOW}


async def test_a_session_without_a_limit_is_never_stopped_for_the_notice(
        server: RunningServer) -> None:
    """A tag of no driver has no escrow at stake: its session runs as long as it runs."""
    await server.add_tag("PLAIN")
    notice = await notice_kept(server)
    async with await RawClient.connect(server.url, "CP16", ["ocpp1.6"]) as c:
        await start16(c, "PLAIN")
        later(server, notice + 3600)
        assert await check(server) == []
        await no_call(c)
    assert (await the_session(server, "CP16"))["flags"] == []
