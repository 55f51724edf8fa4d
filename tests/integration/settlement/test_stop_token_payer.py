"""Who pays a 2.0.1 transaction ended by a token that only stopped it, through real
sockets, a real SQLite file and the in-process chain (py-evm)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from support import RunningServer
from support.client import RawClient

from .test_card_payer import settled
from .test_credit import BOOT201, link, settling


@pytest.fixture
async def server(csms_server: RunningServer) -> RunningServer:
    return await settling(csms_server, "CP16", "CP201")


async def test_a_token_presented_only_to_stop_a_201_transaction_does_not_pay_for_it(
    server: RunningServer,
) -> None:
    """A 2.0.1 transaction started at plug-in, never authorized by any token, and ended by a
    card presented to stop it (E07 StopAuthorized: the Ended event's idToken is the one that
    stopped it). The card never authorized the energy: its escrow was not asked whether it
    covers the session (the central system leaves a stopping token out of the credit
    check) and the session got no limit, yet the whole session is charged to the card's
    driver. A hostile station reaches the same with any card it has seen: the credit check
    and the driver's limit, which a Started or Updated token gets, are bypassed."""
    kit, driver = await link(server, "STOPPER", deposit=10_000)
    start, stop = datetime.now(UTC) - timedelta(minutes=30), datetime.now(UTC)
    async with await RawClient.connect(server.url, "CP201", ["ocpp2.0.1"]) as c:
        await c.result("BootNotification", BOOT201)
        await c.result("TransactionEvent", {
            "eventType": "Started", "timestamp": start.isoformat(),
            "triggerReason": "CablePluggedIn", "seqNo": 0,
            "transactionInfo": {"transactionId": "FREE1", "chargingState": "Charging"},
            "evse": {"id": 1, "connectorId": 1},
            "meterValue": [{"timestamp": start.isoformat(), "sampledValue": [
                {"value": 0, "context": "Transaction.Begin"}]}]})
        await c.result("TransactionEvent", {
            "eventType": "Ended", "timestamp": stop.isoformat(),
            "triggerReason": "StopAuthorized", "seqNo": 1,
            "transactionInfo": {"transactionId": "FREE1", "stoppedReason": "Local"},
            "idToken": {"idToken": "STOPPER", "type": "ISO14443"},
            "meterValue": [{"timestamp": stop.isoformat(), "sampledValue": [
                {"value": 5000, "context": "Transaction.End"}]}]})
    [session] = await server.sessions("CP201")
    if session["status"] == "completed" and not session["flags"]:
        await settled(server, int(session["id"]))
    assert kit.balance(driver) == 10_000, (
        f"the driver whose card only stopped the transaction paid"
        f" {10_000 - kit.balance(driver)} for energy it never authorized"
        f" (session limit {session['limit_minor']}, flags {session['flags']})")
