"""Who pays for a card session is decided when it starts, through real sockets and a real
chain (py-evm): a card unlinked or linked to another driver afterwards (a driver who
reports it lost before the session is settled, a card handed on) changes nothing of a
session already charged on it."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from csms.domain.model import Session, SessionStatus
from csms.storage.open import open_repository
from settlement.receipts import VALID, load_receipt, verify_receipt
from support import RunningServer
from support.client import RawClient

from .test_credit import BOOT16, BOOT201, link, settling

# 5,000 Wh at the tariff's 0.39 per kWh
PRICE = 195


@pytest.fixture
async def server(csms_server: RunningServer) -> RunningServer:
    return await settling(csms_server, "CP16", "CP201")


async def charge(server: RunningServer, version: str, tag: str, status: str = "Accepted") -> int:
    """A session of ``tag``, 5,000 Wh over half an hour, completed (the station charges
    whatever the answer, ``status``); its id."""
    start, stop = datetime.now(UTC) - timedelta(minutes=30), datetime.now(UTC)
    if version == "1.6":
        async with await RawClient.connect(server.url, "CP16", ["ocpp1.6"]) as c:
            await c.result("BootNotification", BOOT16)
            started = await c.result("StartTransaction", {
                "connectorId": 1, "idTag": tag, "meterStart": 0,
                "timestamp": start.isoformat()})
            assert started["idTagInfo"]["status"] == status, started
            await c.result("StopTransaction", {
                "transactionId": started["transactionId"], "meterStop": 5000,
                "timestamp": stop.isoformat(), "reason": "Local"})
    else:
        async with await RawClient.connect(server.url, "CP201", ["ocpp2.0.1"]) as c:
            await c.result("BootNotification", BOOT201)
            started = await c.result("TransactionEvent", {
                "eventType": "Started", "timestamp": start.isoformat(),
                "triggerReason": "Authorized", "seqNo": 0,
                "transactionInfo": {"transactionId": "T1", "chargingState": "Charging"},
                "idToken": {"idToken": tag, "type": "ISO14443"},
                "evse": {"id": 1, "connectorId": 1},
                "meterValue": [{"timestamp": start.isoformat(), "sampledValue": [
                    {"value": 0, "context": "Transaction.Begin"}]}]})
            assert started["idTokenInfo"]["status"] == status, started
            await c.result("TransactionEvent", {
                "eventType": "Ended", "timestamp": stop.isoformat(),
                "triggerReason": "StopAuthorized", "seqNo": 1,
                "transactionInfo": {"transactionId": "T1", "stoppedReason": "Local"},
                "meterValue": [{"timestamp": stop.isoformat(), "sampledValue": [
                    {"value": 5000, "context": "Transaction.End"}]}]})
    [session] = [s for s in await server.sessions() if s["id_tag"] == tag]
    return int(session["id"])


async def settled(server: RunningServer, sid: int) -> dict[str, Any]:
    """Settle now (the node's own worker drives the chunk to the end) and wait for it."""
    await server.app.worker.build_batches(force=True)  # type: ignore[union-attr]

    async def state(tx: Any) -> dict[str, Any]:
        return dict(await tx.session_settlement(sid))

    for _ in range(200):
        row = await server.repo.read(state)
        if row["settlement_state"] in ("paid", "unpaid"):
            return row
        await asyncio.sleep(0.05)
    raise AssertionError(f"session {sid} not settled: {row}")


@pytest.mark.parametrize("version", ["1.6", "2.0.1"])
async def test_a_card_unlinked_after_the_session_still_pays_for_it(
    server: RunningServer, version: str,
) -> None:
    kit, driver = await link(server, "LOST", deposit=10_000)
    sid = await charge(server, version, "LOST")

    async def unlink(tx: Any) -> None:  # csms drivers unlink: "my card is lost"
        assert await tx.unlink_card("LOST")

    await server.repo.unit(unlink)
    row = await settled(server, sid)
    assert row["settlement_state"] == "paid", row
    assert kit.balance(driver) == 10_000 - PRICE
    # the driver's receipt verifies: its own card, linked when it was charged
    receipt = await load_receipt(server.repo, sid, kit.chain.rpc_url)
    assert receipt["record"]["driver"] == driver.address.lower()
    verdict = verify_receipt(receipt, kit.chain.w3, driver=driver.address)
    assert verdict.status == VALID, [(c.name, c.detail) for c in verdict.checks
                                     if c.ok is not True]


@pytest.mark.parametrize("version", ["1.6", "2.0.1"])
async def test_a_card_linked_to_another_driver_after_the_session_does_not_bill_them(
    server: RunningServer, version: str,
) -> None:
    kit, first = await link(server, "HANDED", deposit=10_000)
    sid = await charge(server, version, "HANDED")
    _, second = await link(server, "HANDED", deposit=10_000)  # the card handed on
    row = await settled(server, sid)
    assert row["settlement_state"] == "paid", row
    assert kit.balance(first) == 10_000 - PRICE
    assert kit.balance(second) == 10_000


@pytest.mark.parametrize("version", ["1.6", "2.0.1"])
async def test_a_card_linked_only_after_the_session_does_not_bill_its_new_driver(
    server: RunningServer, version: str,
) -> None:
    """A card of no driver when it charged (a card found, or its earlier holder's session)
    is charged to nobody: a driver who links the card afterwards does not pay for it."""
    await server.add_tag("FOUND")
    sid = await charge(server, version, "FOUND")
    kit, later = await link(server, "FOUND", deposit=10_000)
    row = await settled(server, sid)
    assert row["settlement_state"] == "unpaid", row
    assert kit.balance(later) == 10_000


@pytest.mark.parametrize("version", ["1.6", "2.0.1"])
async def test_a_card_unknown_at_the_start_does_not_bill_whoever_links_it_later(
    server: RunningServer, version: str,
) -> None:
    """A station that charges a card the central system does not know (1.6 Invalid,
    2.0.1 Unknown): the session is charged to nobody, also once a driver links that card."""
    sid = await charge(server, version, "STRANGER",
                       status="Invalid" if version == "1.6" else "Unknown")
    kit, later = await link(server, "STRANGER", deposit=10_000)
    row = await settled(server, sid)
    assert row["settlement_state"] == "unpaid", row
    assert kit.balance(later) == 10_000


async def test_a_sessions_card_link_is_kept_as_it_was_at_its_start(db_url: str) -> None:
    """The storage of both databases: the link a session was bound to at its start
    outlives the card's unlinking and relinking, counts in its driver's exposure, and is
    bound once."""
    repo = await open_repository(db_url)
    a, b = "0x" + "aa" * 20, "0x" + "bb" * 20
    try:
        async def start(tx: Any) -> int:
            await tx.link_card("CARD", a, "0x" + "01" * 32, "0x" + "0a" * 32, datetime.now(UTC))
            now = datetime.now(UTC)
            sid = int(await tx.insert_session(Session(
                station_id="CP1", ocpp_version="ocpp1.6", transaction_id="", started_at=now,
                stopped_at=now, connector_id=1, evse_id=1, id_tag="CARD",
                meter_start_wh=Decimal(0), meter_stop_wh=Decimal(0), energy_wh=0,
                status=SessionStatus.COMPLETED, limit_minor=500)))
            await tx.bind_card(sid, "CARD")
            other = int(await tx.insert_session(Session(
                station_id="CP1", ocpp_version="ocpp1.6", transaction_id="", started_at=now,
                stopped_at=now, connector_id=2, evse_id=2, id_tag="NO DRIVER'S",
                meter_start_wh=Decimal(0), meter_stop_wh=Decimal(0), energy_wh=0,
                status=SessionStatus.COMPLETED, limit_minor=500)))
            await tx.bind_card(other, "NO DRIVER'S")  # a tag of no driver: charged to nobody
            return sid, other

        sid, other = await repo.unit(start)

        async def hand_on(tx: Any) -> None:
            assert await tx.unlink_card("CARD")
            await tx.link_card("CARD", b, "0x" + "02" * 32, "0x" + "0b" * 32, datetime.now(UTC))
            await tx.bind_card(sid, "CARD")  # bound already: stays

        await repo.unit(hand_on)

        async def read(tx: Any) -> tuple[Any, Any, dict[str, int], dict[str, int]]:
            now = int(datetime.now(UTC).timestamp())
            return (await tx.session_card(sid), await tx.session_card(other),
                    await tx.driver_exposure(a, now, 2000),
                    await tx.driver_exposure(b, now, 2000))

        bound, none, first, second = await repo.read(read)
        assert bound == {"tag": "CARD", "driver": a, "salt": "0x" + "01" * 32,
                         "commitment": "0x" + "0a" * 32}
        assert none == {"tag": "NO DRIVER'S", "driver": "", "salt": "", "commitment": ""}
        assert first["in_flight_minor"] == 500, first  # still the first driver's
        assert second["in_flight_minor"] == 0, second  # not the card's new driver's
    finally:
        await repo.close()
