"""The escrow covers a 2.0.1 token wherever it is first attached to a transaction, through
real sockets on a py-evm memory chain."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest

from settlement import wallet
from support import RunningServer
from support.chainkit import Kit
from support.client import RawClient

BOOT16 = {"chargePointVendor": "V", "chargePointModel": "M"}
BOOT201 = {"reason": "PowerUp", "chargingStation": {"vendorName": "V", "model": "M"}}


@pytest.fixture
async def server(csms_server: RunningServer) -> RunningServer:
    await csms_server.stop()
    csms_server.settings = replace(csms_server.settings, chain="memory", max_wait=3600)
    await csms_server.start()
    await csms_server.add_tariff("0.39")
    for sid in ("CP16", "CP16B", "CP201"):
        await csms_server.add_station(sid)
    return csms_server


async def link(server: RunningServer, tag: str, **terms: Any) -> tuple[Kit, Any]:
    kit = Kit(server.app.chain)  # type: ignore[union-attr]
    deposit = terms.pop("deposit", 10_000)
    driver, _ = kit.driver(deposit=deposit, **terms)
    salt = wallet.new_salt()
    commitment = wallet.link_card(kit.chain, driver, tag, salt)

    async def work(tx: Any) -> None:
        await tx.link_card(tag, driver.address, "0x" + salt.hex(), "0x" + commitment.hex(),
                           datetime.now(UTC))

    await server.repo.unit(work)
    await server.add_tag(tag)
    return kit, driver


async def start16(c: RawClient, tag: str) -> str:
    start = await c.result("StartTransaction", {
        "connectorId": 1, "idTag": tag, "meterStart": 0,
        "timestamp": datetime.now(UTC).isoformat()})
    return str(start["idTagInfo"]["status"])


async def test_201_token_given_after_the_start_is_checked_for_credit(
    server: RunningServer,
) -> None:
    """2.0.1 E02/E03: with TxStartPoint EVConnected the transaction starts at plug-in, the
    idToken comes in an Updated event (triggerReason Authorized). A driver whose escrow
    covers nothing must get NoCredit there as in a Started event."""
    await link(server, "POOR", deposit=100)  # below a session's reserve (20.00)
    now = datetime.now(UTC).isoformat()
    async with await RawClient.connect(server.url, "CP201", ["ocpp2.0.1"]) as c:
        await c.result("BootNotification", BOOT201)
        await c.result("TransactionEvent", {
            "eventType": "Started", "timestamp": now, "triggerReason": "CablePluggedIn",
            "seqNo": 0, "transactionInfo": {"transactionId": "T1", "chargingState": "EVConnected"},
            "evse": {"id": 1, "connectorId": 1}})
        answer = await c.result("TransactionEvent", {
            "eventType": "Updated", "timestamp": now, "triggerReason": "Authorized",
            "seqNo": 1, "transactionInfo": {"transactionId": "T1"},
            "idToken": {"idToken": "POOR", "type": "ISO14443"}})
    assert answer["idTokenInfo"]["status"] == "NoCredit", answer
