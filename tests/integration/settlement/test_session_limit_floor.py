"""A session's limit must leave the host paid for what a station delivers before a stop
can take effect.

The central system takes a session's limit from the driver's terms at its start (the
smaller of the per-session limit and what the escrow holds) and asks the station to stop
once its price reaches it, at a meter reading; a session that ran past its limit is paid
its limit. A driver who states a per-session limit of one minor unit is accepted, and a
station that sends no readings during the session (MeterValueSampleInterval 0, common on
1.6) is never asked to stop: the host delivers the whole session for one cent."""

from __future__ import annotations

from typing import Any

import pytest
from integration.settlement.test_credit import BOOT16, link, settling
from integration.settlement.test_session_limit import at

from support import RunningServer, station_events
from support.client import RawClient


@pytest.fixture
async def server(csms_server: RunningServer) -> RunningServer:
    return await settling(csms_server, "CP16")


async def test_a_one_cent_session_limit_does_not_buy_a_whole_session(
        server: RunningServer) -> None:
    await link(server, "CHEAP", max_per_session=1)  # at most 0.01 EUR a session
    async with await RawClient.connect(server.url, "CP16", ["ocpp1.6"]) as c:
        await c.result("BootNotification", BOOT16)
        start = await c.result("StartTransaction", {
            "connectorId": 1, "idTag": "CHEAP", "meterStart": 0, "timestamp": at(-60)})
        accepted = start["idTagInfo"]["status"] == "Accepted"
        if accepted:
            # no MeterValues (a sample interval of 0): 30 kWh in the hour since its start
            await c.result("StopTransaction", {
                "transactionId": start["transactionId"], "meterStop": 30_000,
                "timestamp": at(0), "reason": "Local"})
    if not accepted:
        return  # refused at its start: nothing delivered for one cent
    [session] = await server.sessions("CP16")
    billed: Any = session.get("limit_minor")
    # 30 kWh at 0.39 EUR is 11.70 EUR; the escrow pays the limit, 0.01, and the session is
    # neither refused nor held for an operator
    assert session["flags"], (
        f"accepted with a limit of {billed} minor units, delivered 30 kWh (1170 at the"
        f" tariff) and queued to be billed at its limit, unheld: {session}")


async def test_a_session_far_past_its_limit_with_no_stop_asked_is_held(
        server: RunningServer) -> None:
    """A limit above the floor does not stop a station that sends no readings either: the
    completed session is held (limit_overrun), not queued to be paid its limit unseen; a
    session past its limit by less than one interval like its latest is billed as before."""
    await link(server, "CARD", max_per_session=100)  # 1.00 EUR
    async with await RawClient.connect(server.url, "CP16", ["ocpp1.6"]) as c:
        await c.result("BootNotification", BOOT16)
        start = await c.result("StartTransaction", {
            "connectorId": 1, "idTag": "CARD", "meterStart": 0, "timestamp": at(-70)})
        assert start["idTagInfo"]["status"] == "Accepted"
        await c.result("StopTransaction", {  # 30 kWh in the hour, no reading: 1170
            "transactionId": start["transactionId"], "meterStop": 30_000,
            "timestamp": at(-10), "reason": "Local"})
        # a reading at 1200 Wh (47, and 47 for one more: no stop), stopped at 2700 (105)
        start = await c.result("StartTransaction", {
            "connectorId": 1, "idTag": "CARD", "meterStart": 0, "timestamp": at(-2)})
        txid = start["transactionId"]
        await c.result("MeterValues", {"connectorId": 1, "transactionId": txid, "meterValue": [
            {"timestamp": at(-1), "sampledValue": [{"value": "1200"}]}]})
        await c.result("StopTransaction", {"transactionId": txid, "meterStop": 2700,
                                           "timestamp": at(0), "reason": "Local"})
    overrun, honest = sorted(await server.sessions("CP16"), key=lambda s: s["id"])
    assert overrun["limit_minor"] == 100 and overrun["flags"] == ["limit_overrun"], overrun
    assert honest["limit_minor"] == 100 and honest["flags"] == [], honest
    [hold] = [e for e in await station_events(server, "CP16", "billing_hold")
              if e["session_id"] == overrun["id"]]
    assert hold["flags"] == ["limit_overrun"]
