"""Who is paid for a session is the host its station had when the session completed,
through real sockets and a real chain (py-evm): `csms stations set-host` changed before
the session is settled (to an index the operator registered with its own key, or to the
station's next host) pays the sessions after the change to the new host, never the ones
the station delivered for the host before it; an app session is paid to the index its
driver signed."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from settlement import wallet
from settlement.receipts import VALID, load_receipt, verify_receipt
from support import RunningServer
from support.chainkit import Kit
from support.client import RawClient

from .test_app_session_attacks import app_driver
from .test_card_payer import PRICE, charge, settled
from .test_credit import BOOT16, _remote_start, link, settling


@pytest.fixture
async def server(csms_server: RunningServer) -> RunningServer:
    return await settling(csms_server, "CP16", "CP201")


async def set_host(server: RunningServer, station_id: str, host: str, index: int) -> None:
    """`csms stations set-host STATION_ID HOST --chain-station INDEX`."""

    async def work(tx: Any) -> None:
        station = await tx.get_station(station_id)
        station.host_address, station.chain_station = host.lower(), index
        await tx.update_station(station)

    await server.repo.unit(work)


def host_share(kit: Kit, amount: int) -> int:
    fee_bps = int(kit.c.functions.fee_bps().call())
    return amount - amount * fee_bps // 10_000


@pytest.mark.parametrize("version", ["1.6", "2.0.1"])
async def test_a_host_changed_before_settlement_does_not_take_the_sessions_before(
    server: RunningServer, version: str,
) -> None:
    kit, driver = await link(server, "CARD", deposit=10_000)
    station = "CP16" if version == "1.6" else "CP201"
    host, host_index = kit.host()
    await set_host(server, station, host.address, host_index)
    sid = await charge(server, version, "CARD")
    # the operator records the station under an index its own key registered, before the
    # session is settled
    operator = kit.chain.operator.address
    operator_index = kit.chain.register_station(22_000)
    await set_host(server, station, operator, operator_index)
    row = await settled(server, sid)
    assert row["settlement_state"] == "paid", row
    assert kit.balance(driver) == 10_000 - PRICE
    assert kit.earnings(host.address) == host_share(kit, PRICE)
    receipt = await load_receipt(server.repo, sid, kit.chain.rpc_url)
    assert receipt["record"]["host"] == host.address.lower()
    assert receipt["record"]["chain_station"] == host_index
    verdict = verify_receipt(receipt, kit.chain.w3, driver=driver.address)
    assert verdict.status == VALID, [(c.name, c.detail) for c in verdict.checks
                                     if c.ok is not True]


async def charge16(server: RunningServer, tag: str, start: datetime) -> int:
    """A 1.6 session of ``tag`` on CP16 from ``start``: 5,000 Wh over half an hour."""
    async with await RawClient.connect(server.url, "CP16", ["ocpp1.6"]) as c:
        await c.result("BootNotification", BOOT16)
        started = await c.result("StartTransaction", {
            "connectorId": 1, "idTag": tag, "meterStart": 0, "timestamp": start.isoformat()})
        await c.result("StopTransaction", {
            "transactionId": started["transactionId"], "meterStop": 5000,
            "timestamp": (start + timedelta(minutes=30)).isoformat(), "reason": "Local"})
    [session] = [s for s in await server.sessions() if s["id_tag"] == tag]
    return int(session["id"])


async def test_a_station_handed_to_a_new_host_pays_each_host_its_own_sessions(
    server: RunningServer,
) -> None:
    kit, _ = await link(server, "FIRST", deposit=10_000)
    await link(server, "SECOND", deposit=10_000)
    first, first_index = kit.host()
    second, second_index = kit.host()
    await set_host(server, "CP16", first.address, first_index)
    now = datetime.now(UTC)
    before = await charge16(server, "FIRST", now - timedelta(minutes=70))
    await set_host(server, "CP16", second.address, second_index)  # the station sold
    after = await charge16(server, "SECOND", now - timedelta(minutes=35))
    for sid in (before, after):
        assert (await settled(server, sid))["settlement_state"] == "paid"
    assert kit.earnings(first.address) == host_share(kit, PRICE)
    assert kit.earnings(second.address) == host_share(kit, PRICE)


async def test_an_app_session_is_paid_to_the_station_index_its_driver_signed(
    server: RunningServer,
) -> None:
    """The contract checks an app session's signature with the entry's station index: the
    station given another index while it charges must not make the entry the driver's
    signature does not cover (BAD_AUTHORIZATION: the host paid nothing)."""
    kit, driver = app_driver(server)
    host, host_index = kit.host()
    await set_host(server, "CP16", host.address, host_index)
    auth = wallet.authorize(kit.chain, driver, host_index, max_per_kwh=40, max_amount=900,
                            nonce=1, expiry=int(time.time()) + 7200).as_json()
    async with await RawClient.connect(server.url, "CP16", ["ocpp1.6"]) as c:
        await c.result("BootNotification", BOOT16)
        status, answer = await _remote_start(server, c, "CP16",
                                             {"tag": "APP1", "authorization": auth})
        assert status == 200 and answer["status"] == "Accepted", answer
        started = await c.result("StartTransaction", {
            "connectorId": 1, "idTag": "APP1", "meterStart": 0,
            "timestamp": (datetime.now(UTC) - timedelta(minutes=5)).isoformat()})
        await set_host(server, "CP16", kit.chain.operator.address,
                       kit.chain.register_station(22_000))
        await c.result("StopTransaction", {
            "transactionId": started["transactionId"], "meterStop": 1000,
            "timestamp": datetime.now(UTC).isoformat(), "reason": "Local"})
    [session] = await server.sessions("CP16")
    row = await settled(server, int(session["id"]))
    assert (row["settlement_state"], row["unpaid_reason"]) == ("paid", None), row
    assert kit.earnings(host.address) == host_share(kit, 39)  # 1,000 Wh at 0.39
    receipt = await load_receipt(server.repo, int(session["id"]), kit.chain.rpc_url)
    assert receipt["record"]["chain_station"] == host_index
    verdict = verify_receipt(receipt, kit.chain.w3, driver=driver.address)
    assert verdict.status == VALID, [(c.name, c.detail) for c in verdict.checks
                                     if c.ok is not True]
