"""A card the central system refused at the start (1.6 Blocked, 2.0.1 NoCredit) is not
charged to the driver's escrow when a station charges anyway, through real sockets and a
real chain (py-evm).

docs/settlement.md, "Before charging": a card is accepted only while it is still linked on
chain - "a driver who unlinks a lost card is not charged for it again". A station charges
whatever the answer (offline with its authorization cache, or a dishonest one): the session
is kept, but the escrow of a driver who unlinked the card must not pay for it. Only refusals
that make the card not its driver's at the session's start do so (unlinked on chain;
blocked, unknown or expired at the start in the registry): a refusal of the escrow, which
the driver can bring about after the station started and undo, leaves it the driver's.
"""

from __future__ import annotations

import copy
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from web3 import Web3

from csms.domain.model import Session
from csms.service.holds import decide
from csms.storage.open import open_repository
from settlement import wallet
from support import RunningServer
from support.chainkit import Kit
from support.client import RawClient

from .test_card_payer import charge, settled
from .test_credit import BOOT16, BOOT201, settling


@pytest.fixture
async def server(csms_server: RunningServer) -> RunningServer:
    return await settling(csms_server, "CP16", "CP201")


@pytest.mark.parametrize("version", ["1.6", "2.0.1"])
async def test_a_card_the_driver_unlinked_on_chain_is_not_charged_when_a_station_charges_anyway(
    server: RunningServer, version: str,
) -> None:
    kit = Kit(server.app.chain)  # type: ignore[union-attr]
    driver, _ = kit.driver(deposit=10_000)
    salt = wallet.new_salt()
    commitment = wallet.link_card(kit.chain, driver, "LOST", salt)

    async def work(tx: Any) -> None:  # the operator's csms drivers link
        await tx.link_card("LOST", driver.address, "0x" + salt.hex(), "0x" + commitment.hex(),
                           datetime.now(UTC))

    await server.repo.unit(work)
    await server.add_tag("LOST")
    # the card is lost: its driver unlinks it on chain (the operator is not told yet)
    wallet.link_card(kit.chain, driver, "LOST", salt, linked=False)
    # a thief's session, started after the unlink: refused as the card is no longer
    # linked, charged anyway
    start = after_the_chains_latest_block(kit)
    sid, answer = await session_between(server, version, "LOST", start,
                                        start + timedelta(minutes=2), energy_wh=500)
    assert answer == ("Blocked" if version == "1.6" else "NoCredit"), answer
    assert await payer(server, sid) == ""
    row = await settled(server, sid)
    assert row["settlement_state"] == "unpaid", row
    assert kit.balance(driver) == 10_000, row


def after_the_chains_latest_block(kit: Kit) -> datetime:
    """A second after the latest block's time: a start after what the chain holds (py-evm
    gives each block a second more than its parent, ahead of the wall clock)."""
    return datetime.fromtimestamp(kit.now() + 1, UTC)


async def linked_card(server: RunningServer, tag: str) -> tuple[Kit, Any]:
    """A card linked on chain (and in the operator's links) to a driver with 100.00, still
    linked, but not in the operator's tag registry."""
    kit = Kit(server.app.chain)  # type: ignore[union-attr]
    driver, _ = kit.driver(deposit=10_000)
    salt = wallet.new_salt()
    commitment = wallet.link_card(kit.chain, driver, tag, salt)

    async def work(tx: Any) -> None:
        await tx.link_card(tag, driver.address, "0x" + salt.hex(), "0x" + commitment.hex(),
                           datetime.now(UTC))

    await server.repo.unit(work)
    return kit, driver


# what the operator's registry says of a card still linked on chain, and the answer to a
# start with it (1.6, 2.0.1)
REFUSALS = {
    "expired": ("Expired", "Expired"),
    "blocked": ("Blocked", "Blocked"),
    "unregistered": ("Invalid", "Unknown"),
}


@pytest.mark.parametrize("registry", sorted(REFUSALS))
@pytest.mark.parametrize("version", ["1.6", "2.0.1"])
async def test_no_refusal_answer_charges_the_cards_driver(
    server: RunningServer, version: str, registry: str,
) -> None:
    """Whatever the refusal (the operator let the card expire, blocked it, or never
    registered it), a card the central system did not accept at the start charges its
    driver nothing: the driver's escrow pays only what an Accepted answer committed it to.
    The session is settled all the same (anchored, paid by nobody)."""
    kit, driver = await linked_card(server, "CARD")
    if registry == "expired":
        await server.add_tag("CARD", expires=datetime(2020, 1, 1, tzinfo=UTC))
    elif registry == "blocked":
        await server.add_tag("CARD", status="blocked")
    answer = REFUSALS[registry][0 if version == "1.6" else 1]
    sid = await charge(server, version, "CARD", answer)
    row = await settled(server, sid)
    assert row["settlement_state"] == "unpaid", row
    assert kit.balance(driver) == 10_000, row


async def test_a_refused_card_session_held_and_released_charges_its_driver_nothing(
    server: RunningServer,
) -> None:
    """An operator's release of a refused card's session (held for its meter) settles it
    with the payer bound at its start: nobody."""
    kit, driver = await linked_card(server, "CARD")
    await server.add_tag("CARD", status="blocked")
    async with await RawClient.connect(server.url, "CP16", ["ocpp1.6"]) as c:
        await c.result("BootNotification", BOOT16)
        started = await c.result("StartTransaction", {
            "connectorId": 1, "idTag": "CARD", "meterStart": 5000,
            "timestamp": (datetime.now(UTC) - timedelta(minutes=30)).isoformat()})
        assert started["idTagInfo"]["status"] == "Blocked", started
        await c.result("StopTransaction", {  # the register went backwards: held
            "transactionId": started["transactionId"], "meterStop": 1000,
            "timestamp": datetime.now(UTC).isoformat(), "reason": "Local"})
    sid = int(started["transactionId"])

    async def release(tx: Any) -> None:
        session = await tx.get_session(sid)
        assert "meter_went_backwards" in session.flags, session.flags
        await decide(tx, sid, "released", actor="op", reason="checked", now=datetime.now(UTC))

    await server.repo.unit(release)
    row = await settled(server, sid)
    assert row["settlement_state"] == "unpaid", row
    assert kit.balance(driver) == 10_000, row


async def test_a_refused_cards_session_is_bound_to_nobody(db_url: str) -> None:
    """The storage of both databases: a session bound with its insert to the card's
    driver, then refused (bind_no_payer), is charged to nobody and counts in no driver's
    exposure, whatever the card's link; once refused it stays so."""
    repo = await open_repository(db_url)
    driver = "0x" + "aa" * 20
    try:
        async def start(tx: Any) -> int:
            await tx.link_card("CARD", driver, "0x" + "01" * 32, "0x" + "0a" * 32,
                               datetime.now(UTC))
            now = datetime.now(UTC)
            sid = int(await tx.insert_session(Session(
                station_id="CP1", ocpp_version="ocpp1.6", transaction_id="", started_at=now,
                connector_id=1, evse_id=1, id_tag="CARD", auth_status="Blocked"),
                card="CARD"))
            await tx.bind_no_payer(sid, "CARD")
            await tx.bind_card(sid, "CARD")  # bound already: stays refused
            return sid

        sid = await repo.unit(start)

        async def read(tx: Any) -> tuple[Any, dict[str, int]]:
            now = int(datetime.now(UTC).timestamp())
            return await tx.session_card(sid), await tx.driver_exposure(driver, now, 2000)

        bound, exposure = await repo.read(read)
        assert bound == {"tag": "CARD", "driver": "", "salt": "", "commitment": ""}
        assert exposure["active"] == 0, exposure
    finally:
        await repo.close()


async def test_an_authorized_card_pays_despite_a_withdrawal_announced_before_its_start(
    server: RunningServer,
) -> None:
    """1.6 §4.1: the station asks Authorize (Accepted), waits for the car and starts; its
    StartTransaction comes once the energy flows. Meanwhile the driver announced a
    withdrawal of the whole escrow (request_withdrawal: the balance stays, the notice
    period keeps it there for the sessions under way), so the StartTransaction's check
    answers no credit. The central system accepted the card, the honest station charged on
    that answer, the escrow still holds the money: the driver pays. A refusal the driver
    can bring about after the station started (and undo after, request_withdrawal(0))
    must not make the session free for the driver at its host's expense."""
    kit, driver = await linked_card(server, "CARD")
    await server.add_tag("CARD")
    server.app.service.credit.cache_seconds = 0  # type: ignore[union-attr]  # seconds pass
    start = datetime.now(UTC) - timedelta(minutes=30)
    async with await RawClient.connect(server.url, "CP16", ["ocpp1.6"]) as c:
        await c.result("BootNotification", BOOT16)
        authorized = await c.result("Authorize", {"idTag": "CARD"})
        assert authorized["idTagInfo"]["status"] == "Accepted", authorized
        wallet.request_withdrawal(kit.chain, driver, 10_000)  # while the car is plugged in
        started = await c.result("StartTransaction", {
            "connectorId": 1, "idTag": "CARD", "meterStart": 0,
            "timestamp": start.isoformat()})
        await c.result("StopTransaction", {
            "transactionId": started["transactionId"], "meterStop": 5000,
            "timestamp": datetime.now(UTC).isoformat(), "reason": "Local"})
    wallet.request_withdrawal(kit.chain, driver, 0)  # and taken back
    row = await settled(server, int(started["transactionId"]))
    assert row["settlement_state"] == "paid", (started["idTagInfo"], row)
    assert kit.balance(driver) < 10_000, row


async def test_a_session_started_offline_before_the_card_expired_is_charged_to_its_driver(
    server: RunningServer,
) -> None:
    """The station was offline: the card (valid until an hour ago) started a session three
    hours ago, which the station sends on reconnecting, after the card's expiry. The
    answer says Expired (the card is expired now), but it was valid when the driver
    charged: the session is the driver's, as it was before refused cards were bound to
    nobody."""
    kit, driver = await linked_card(server, "CARD")
    await server.add_tag("CARD", expires=datetime.now(UTC) - timedelta(hours=1))
    start = datetime.now(UTC) - timedelta(hours=3)
    async with await RawClient.connect(server.url, "CP16", ["ocpp1.6"]) as c:
        await c.result("BootNotification", BOOT16)
        started = await c.result("StartTransaction", {
            "connectorId": 1, "idTag": "CARD", "meterStart": 0,
            "timestamp": start.isoformat()})
        await c.result("StopTransaction", {
            "transactionId": started["transactionId"], "meterStop": 5000,
            "timestamp": (start + timedelta(minutes=30)).isoformat(), "reason": "Local"})
    row = await settled(server, int(started["transactionId"]))
    assert row["settlement_state"] == "paid", (started["idTagInfo"], row)
    assert kit.balance(driver) < 10_000, row


async def session_between(server: RunningServer, version: str, tag: str, start: datetime,
                          stop: datetime, meanwhile: Callable[[], Awaitable[None]]
                          | None = None, energy_wh: int = 5000) -> tuple[int, str]:
    """A session of ``tag`` from ``start`` to ``stop`` (``energy_wh``), the card authorized
    first
    (Authorize, its answer not asked), ``meanwhile`` done between the Authorize and the
    start; its id and the answer to its start."""
    if version == "1.6":
        async with await RawClient.connect(server.url, "CP16", ["ocpp1.6"]) as c:
            await c.result("BootNotification", BOOT16)
            await c.result("Authorize", {"idTag": tag})
            if meanwhile is not None:
                await meanwhile()
            started = await c.result("StartTransaction", {
                "connectorId": 1, "idTag": tag, "meterStart": 0,
                "timestamp": start.isoformat()})
            await c.result("StopTransaction", {
                "transactionId": started["transactionId"], "meterStop": energy_wh,
                "timestamp": stop.isoformat(), "reason": "Local"})
        return int(started["transactionId"]), str(started["idTagInfo"]["status"])
    token = {"idToken": tag, "type": "ISO14443"}
    async with await RawClient.connect(server.url, "CP201", ["ocpp2.0.1"]) as c:
        await c.result("BootNotification", BOOT201)
        await c.result("Authorize", {"idToken": token})
        if meanwhile is not None:
            await meanwhile()
        answer = await c.result("TransactionEvent", {
            "eventType": "Started", "timestamp": start.isoformat(),
            "triggerReason": "Authorized", "seqNo": 0,
            "transactionInfo": {"transactionId": f"T-{tag}", "chargingState": "Charging"},
            "idToken": token, "evse": {"id": 1, "connectorId": 1},
            "meterValue": [{"timestamp": start.isoformat(), "sampledValue": [
                {"value": 0, "context": "Transaction.Begin"}]}]})
        await c.result("TransactionEvent", {
            "eventType": "Ended", "timestamp": stop.isoformat(),
            "triggerReason": "StopAuthorized", "seqNo": 1,
            "transactionInfo": {"transactionId": f"T-{tag}", "stoppedReason": "Local"},
            "meterValue": [{"timestamp": stop.isoformat(), "sampledValue": [
                {"value": energy_wh, "context": "Transaction.End"}]}]})
    [session] = [s for s in await server.sessions() if s["id_tag"] == tag]
    return int(session["id"]), str(answer["idTokenInfo"]["status"])


async def payer(server: RunningServer, sid: int) -> str:
    """The driver a session is bound to at its start ('' for nobody)."""
    async def work(tx: Any) -> str:
        return str((await tx.session_card(sid))["driver"])

    return await server.repo.read(work)


ESCROW_CAUSES = ["withdrawal", "no_card_sessions", "chain_unreadable"]
# the terms Kit.driver gives a driver
TERMS = {"max_per_kwh": 40, "max_session_fee": 50, "max_per_session": 10_000,
         "max_per_day": 1_000_000}


@pytest.mark.parametrize("cause", ESCROW_CAUSES)
@pytest.mark.parametrize("version", ["1.6", "2.0.1"])
async def test_a_card_the_escrow_refused_at_its_start_stays_its_drivers(
    server: RunningServer, version: str, cause: str,
) -> None:
    """The driver's card is accepted (Authorize), then the start is refused for a cause of
    the escrow the driver can bring about in between and undo after (a withdrawal of the
    whole escrow announced, card sessions turned off on chain), or because the chain could
    not be read then: the session is still its driver's, and once the cause is gone the
    contract pays it. Only the card unlinked on chain binds nobody
    (test_a_card_the_driver_unlinked_on_chain_is_not_charged_when_a_station_charges_anyway)."""
    kit, driver = await linked_card(server, "CARD")
    await server.add_tag("CARD")
    credit = server.app.service.credit
    credit.cache_seconds = 0  # type: ignore[union-attr]  # each check reads the chain
    chain = kit.chain

    async def refuse() -> None:
        if cause == "withdrawal":
            wallet.request_withdrawal(chain, driver, 10_000)
        elif cause == "no_card_sessions":
            wallet.set_terms(chain, driver, wallet.DriverTerms(**TERMS, allow_cards=False))
        else:  # a node without the contract's address: nothing of the escrow is readable
            broken = copy.copy(chain)
            broken.contract_address = None
            credit.chain = broken  # type: ignore[union-attr]

    start = datetime.now(UTC) - timedelta(minutes=30)
    sid, answer = await session_between(server, version, "CARD", start, datetime.now(UTC),
                                        refuse)
    assert answer == ("Blocked" if version == "1.6" else "NoCredit"), answer
    assert await payer(server, sid) == driver.address.lower()
    # undone: the withdrawal taken back, card sessions on again, the chain readable
    if cause == "withdrawal":
        wallet.request_withdrawal(chain, driver, 0)
    elif cause == "no_card_sessions":
        wallet.set_terms(chain, driver, wallet.DriverTerms(**TERMS))
    credit.chain = chain  # type: ignore[union-attr]
    row = await settled(server, sid)
    assert row["settlement_state"] == "paid", row
    assert kit.balance(driver) < 10_000, row


@pytest.mark.parametrize("version", ["1.6", "2.0.1"])
async def test_a_card_expired_after_its_offline_session_started_pays_and_before_does_not(
    server: RunningServer, version: str,
) -> None:
    """An offline station sends, an hour after the card expired, a session started three
    hours ago: the card's expiry is judged at the session's start. It was valid then: the
    driver pays (the answer still says Expired, the card is expired now). The same session
    started after the expiry is charged to nobody."""
    expiry = datetime.now(UTC) - timedelta(hours=1)
    kit, driver = await linked_card(server, "CARD")
    await server.add_tag("CARD", expires=expiry)
    before = expiry - timedelta(hours=2)
    sid, answer = await session_between(server, version, "CARD", before,
                                        before + timedelta(minutes=30))
    assert answer == "Expired", answer
    assert await payer(server, sid) == driver.address.lower()
    assert (await settled(server, sid))["settlement_state"] == "paid"
    paid = kit.balance(driver)
    assert paid < 10_000
    _, other = await linked_card(server, "LATE")
    await server.add_tag("LATE", expires=expiry)
    after = expiry + timedelta(minutes=5)
    sid, answer = await session_between(server, version, "LATE", after,
                                        after + timedelta(minutes=30))
    assert answer == "Expired", answer
    assert await payer(server, sid) == ""
    assert (await settled(server, sid))["settlement_state"] == "unpaid"
    assert kit.balance(other) == 10_000


@pytest.mark.parametrize("version", ["1.6", "2.0.1"])
async def test_a_card_unlinked_after_its_session_started_stays_its_drivers(
    server: RunningServer, version: str,
) -> None:
    """The driver charged with the card, linked on chain, at a station whose authorization
    cache accepted it (offline); ten minutes later (the chain's time), before the station
    is back, the driver unlinks the card on chain. The start arrives then: refused as the
    card is unlinked now, but it was linked, the driver's, when the session started - as a
    card's expiry is judged at the start
    (test_a_card_expired_after_its_offline_session_started_pays_and_...), its unlinking is
    a cause the driver brings about after the station started. The session stays the
    driver's: unlinking a card must not make its sessions free."""
    kit, driver = await linked_card(server, "CARD")
    await server.add_tag("CARD")
    server.app.service.credit.cache_seconds = 0  # type: ignore[union-attr]
    start = after_the_chains_latest_block(kit)
    kit.advance(600)
    wallet.link_card(kit.chain, driver, "CARD",
                     bytes.fromhex((await _salt(server, "CARD"))[2:]), linked=False)
    sid, answer = await session_between(server, version, "CARD", start,
                                        start + timedelta(minutes=2), energy_wh=500)
    assert answer != "Accepted", answer
    assert await payer(server, sid) == driver.address.lower()


@pytest.mark.parametrize("version", ["1.6", "2.0.1"])
async def test_a_card_unlinked_at_an_unreadable_time_stays_its_drivers(
    server: RunningServer, version: str,
) -> None:
    """The card is unlinked on chain before a session's start, but the node that answers
    the central system does not serve the contract's logs (unreachable for them): when
    it was unlinked is not known, and a host is never left unpaid on a guess - the
    session stays the driver's, as for a chain that could not be read."""
    kit, driver = await linked_card(server, "CARD")
    await server.add_tag("CARD")
    salt = bytes.fromhex((await _salt(server, "CARD"))[2:])
    wallet.link_card(kit.chain, driver, "CARD", salt, linked=False)
    chain = kit.chain
    chain.card_link_changes(driver.address, b"")  # the chain's reader, made once
    # its logs asked of a node that refuses every connection
    chain._reader.w3 = Web3(Web3.HTTPProvider(  # type: ignore[union-attr]
        "http://127.0.0.1:9", request_kwargs={"timeout": 2}))
    start = after_the_chains_latest_block(kit)
    sid, answer = await session_between(server, version, "CARD", start,
                                        start + timedelta(minutes=2), energy_wh=500)
    assert answer != "Accepted", answer
    assert await payer(server, sid) == driver.address.lower()


async def test_the_chain_tells_every_change_of_a_cards_link_at_its_blocks_time(
    server: RunningServer,
) -> None:
    """The link history the central system judges a refused start on: the changes of
    that card's commitment only (not another card of the driver), oldest first, each at
    its block's timestamp."""
    kit, driver = await linked_card(server, "CARD")
    salt = bytes.fromhex((await _salt(server, "CARD"))[2:])
    linked_at = kit.now()
    wallet.link_card(kit.chain, driver, "OTHER", wallet.new_salt())
    kit.advance(3600)
    commitment = wallet.link_card(kit.chain, driver, "CARD", salt, linked=False)
    unlinked_at = kit.now()
    kit.advance(60)
    wallet.link_card(kit.chain, driver, "CARD", salt)
    relinked_at = kit.now()
    assert kit.chain.card_link_changes(driver.address, commitment) == [
        (linked_at, True), (unlinked_at, False), (relinked_at, True)]
    assert kit.chain.card_link_changes(driver.address, b"\x01" * 32) == []


async def _salt(server: RunningServer, tag: str) -> str:
    """The salt the operator keeps for the link of ``tag``."""
    async def work(tx: Any) -> str:
        return str((await tx.card_of(tag))["salt"])

    return await server.repo.read(work)
