"""The central system asks the driver's escrow before a linked card charges, through real
sockets: Authorize, a start without one, a remote start, a signed app start."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest

from csms.service.holds import decide
from settlement import wallet
from support import RunningServer, station_events
from support.chainkit import Kit
from support.client import RawClient

BOOT16 = {"chargePointVendor": "V", "chargePointModel": "M"}
BOOT201 = {"reason": "PowerUp", "chargingStation": {"vendorName": "V", "model": "M"}}


async def settling(csms_server: RunningServer, *stations: str) -> RunningServer:
    """``csms_server`` settling on a py-evm chain, a tariff of 0.39 and ``stations``."""
    await csms_server.stop()
    csms_server.settings = replace(csms_server.settings, chain="memory", max_wait=3600)
    await csms_server.start()
    await csms_server.add_tariff("0.39")
    for sid in stations:
        await csms_server.add_station(sid)
    return csms_server


@pytest.fixture
async def server(csms_server: RunningServer) -> RunningServer:
    return await settling(csms_server, "CP16", "CP16B", "CP201")


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


async def authorize(server: RunningServer, version: str, tag: str) -> str:
    station = "CP16" if version == "1.6" else "CP201"
    async with await RawClient.connect(server.url, station, [f"ocpp{version}"]) as c:
        if version == "1.6":
            await c.result("BootNotification", {"chargePointVendor": "V",
                                                "chargePointModel": "M"})
            return str((await c.result("Authorize", {"idTag": tag}))["idTagInfo"]["status"])
        await c.result("BootNotification", {"reason": "PowerUp",
                                            "chargingStation": {"vendorName": "V",
                                                                "model": "M"}})
        answer = await c.result("Authorize", {"idToken": {"idToken": tag, "type": "ISO14443"}})
        return str(answer["idTokenInfo"]["status"])


@pytest.mark.parametrize("version", ["1.6", "2.0.1"])
async def test_a_linked_card_charges_only_what_its_escrow_covers(
    server: RunningServer, version: str,
) -> None:
    refused = "Blocked" if version == "1.6" else "NoCredit"
    await link(server, "RICH", deposit=10_000)
    await link(server, "POOR", deposit=100)  # below a session's reserve (20.00)
    await link(server, "NOCARDS", allow_cards=False)
    await link(server, "CHEAP", max_per_kwh=20)  # the tariff asks 39 c/kWh
    await server.add_tag("PLAIN")  # a tag of no driver: billed off-chain, as before
    assert await authorize(server, version, "RICH") == "Accepted"
    assert await authorize(server, version, "PLAIN") == "Accepted"
    for tag in ("POOR", "NOCARDS", "CHEAP"):
        assert await authorize(server, version, tag) == refused, tag


async def test_a_start_without_authorize_is_answered_blocked(server: RunningServer) -> None:
    await link(server, "POOR", deposit=100)
    async with await RawClient.connect(server.url, "CP16", ["ocpp1.6"]) as c:
        await c.result("BootNotification", {"chargePointVendor": "V", "chargePointModel": "M"})
        start = await c.result("StartTransaction", {
            "connectorId": 1, "idTag": "POOR", "meterStart": 0,
            "timestamp": datetime.now(UTC).isoformat()})
        assert start["idTagInfo"]["status"] == "Blocked"
    [s] = await server.sessions("CP16")
    assert "auth_nocredit" in s["flags"]


async def test_lowering_terms_counts_at_once_for_new_sessions(server: RunningServer) -> None:
    kit, driver = await link(server, "LOWER")
    assert await authorize(server, "1.6", "LOWER") == "Accepted"
    # the driver stops card payments: on chain it applies after the notice, but a session
    # starting now would be settled after it, so the central system refuses it now
    wallet.set_terms(kit.chain, driver, wallet.DriverTerms(max_per_kwh=40, allow_cards=False))
    server.app.service.credit.forget(driver.address.lower())  # type: ignore[union-attr]
    assert await authorize(server, "1.6", "LOWER") == "Blocked"


async def command(server: RunningServer, station: str, body: dict[str, Any]) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as http, http.post(
            f"{server.admin_url}/stations/{station}/commands/start", json=body,
            headers={"Authorization": f"Bearer {server.admin_token}"}) as r:
        return r.status, await r.json()


async def test_remote_starts_need_credit_or_the_drivers_signature(
    server: RunningServer,
) -> None:
    kit, _driver = await link(server, "POOR", deposit=100)
    chain = kit.chain
    index = chain.register_station(22_000)

    async def on_chain(tx: Any) -> None:
        st = await tx.get_station("CP16")
        st.chain_station = index
        await tx.update_station(st)

    await server.repo.unit(on_chain)
    async with await RawClient.connect(server.url, "CP16", ["ocpp1.6"]) as c:
        await c.result("BootNotification", {"chargePointVendor": "V", "chargePointModel": "M"})
        status, body = await command(server, "CP16", {"tag": "POOR"})
        assert status == 400 and body["error"].startswith("no credit:")
        # the driver signs this one session: up to 0.90, enough for what the escrow holds
        app, _ = kit.driver(deposit=5_000, allow_cards=False)
        good = wallet.authorize(chain, app, index, max_per_kwh=40, max_amount=90, nonce=1,
                                expiry=int(time.time()) + 3600)
        other_station = wallet.authorize(chain, app, index + 1, max_per_kwh=40,
                                         max_amount=90, nonce=2,
                                         expiry=int(time.time()) + 3600)
        forged = {**good.as_json(), "max_amount": 9_000}  # altered after signing
        for bad in (other_station.as_json(), forged):
            status, body = await command(server, "CP16", {"tag": "APP1",
                                                          "authorization": bad})
            assert status == 400 and "authorization refused" in body["error"], body
        started = asyncio.create_task(command(server, "CP16", {
            "tag": "APP1", "authorization": good.as_json()}))
        call = await c.calls.get()
        assert call[2] == "RemoteStartTransaction" and call[3]["idTag"] == "APP1"
        await c.answer(call[1], {"status": "Accepted"})
        status, body = await started
        assert status == 200 and body["status"] == "Accepted"
        # the session it starts carries the driver's signature to settlement
        start = await c.result("StartTransaction", {
            "connectorId": 1, "idTag": "APP1", "meterStart": 0,
            "timestamp": datetime.now(UTC).isoformat()})
        assert start["idTagInfo"]["status"] == "Accepted"  # the driver signed for APP1
    [session] = await server.sessions("CP16")

    async def bound(tx: Any) -> Any:
        return await tx.authorization_of(session["id"])

    row = await server.repo.read(bound)
    assert row is not None and row["driver"] == app.address.lower()
    assert session["flags"] == []


async def test_201_token_given_after_the_start_is_checked_for_credit(
    server: RunningServer,
) -> None:
    """2.0.1 E02/E03: with TxStartPoint EVConnected the transaction starts at plug-in, the
    idToken comes in an Updated event (triggerReason Authorized). A driver whose escrow
    covers nothing must get NoCredit there as in a Started event."""
    await link(server, "POOR", deposit=100)  # below a session's reserve (20.00)
    now = datetime.now(UTC).isoformat()
    async with await RawClient.connect(server.url, "CP201", ["ocpp2.0.1"]) as c:
        await c.result("BootNotification", {
            "reason": "PowerUp", "chargingStation": {"vendorName": "V", "model": "M"}})
        await c.result("TransactionEvent", {
            "eventType": "Started", "timestamp": now, "triggerReason": "CablePluggedIn",
            "seqNo": 0, "transactionInfo": {"transactionId": "T1", "chargingState": "EVConnected"},
            "evse": {"id": 1, "connectorId": 1}})
        answer = await c.result("TransactionEvent", {
            "eventType": "Updated", "timestamp": now, "triggerReason": "Authorized",
            "seqNo": 1, "transactionInfo": {"transactionId": "T1"},
            "idToken": {"idToken": "POOR", "type": "ISO14443"}})
    assert answer["idTokenInfo"]["status"] == "NoCredit", answer


async def started201(c: RawClient, tag: str) -> str:
    """A 2.0.1 transaction T1 started on EVSE 1 by ``tag``: the token's status."""
    started = await c.result("TransactionEvent", {
        "eventType": "Started", "timestamp": datetime.now(UTC).isoformat(),
        "triggerReason": "Authorized", "seqNo": 0, "transactionInfo": {"transactionId": "T1"},
        "idToken": {"idToken": tag, "type": "ISO14443"}, "evse": {"id": 1, "connectorId": 1}})
    return str(started["idTokenInfo"]["status"])


async def tapped201(c: RawClient, tag: str) -> dict[str, Any]:
    """``tag`` presented to authorize in T1 (an Updated event, seqNo 1): the answer."""
    return await c.result("TransactionEvent", {
        "eventType": "Updated", "timestamp": datetime.now(UTC).isoformat(),
        "triggerReason": "Authorized", "seqNo": 1, "transactionInfo": {"transactionId": "T1"},
        "idToken": {"idToken": tag, "type": "ISO14443"}})


@pytest.mark.parametrize(("first", "refused"), [("NOBODY", "Unknown"), ("POOR1", "NoCredit")])
async def test_201_token_after_a_refused_one_is_checked_for_credit(
    server: RunningServer, first: str, refused: str,
) -> None:
    """2.0.1 E02/E05: the transaction started on a card the registry (or its escrow)
    refused, then another card the registry accepts whose escrow covers nothing: it does
    not take the session over (the first accepted token would), nobody new pays for it, so
    the station is told NoCredit, not Accepted (a host charging on for free), and the
    session says why the token is not its payer."""
    await link(server, "POOR1", deposit=100)
    await link(server, "POOR", deposit=100)  # below a session's reserve (20.00)
    async with await RawClient.connect(server.url, "CP201", ["ocpp2.0.1"]) as c:
        await c.result("BootNotification", BOOT201)
        assert await started201(c, first) == refused
        answer = await tapped201(c, "POOR")
    assert answer["idTokenInfo"]["status"] == "NoCredit", answer
    [s] = await server.sessions("CP201")
    assert s["id_tag"] == first and "token_not_payer" in s["flags"], s
    [kept] = await station_events(server, "CP201", "token_not_payer")
    assert (kept["tag"], kept["reason"]) == ("POOR", "NoCredit"), kept


async def test_201_a_token_refused_for_credit_presented_again_is_refused_again(
    server: RunningServer,
) -> None:
    """A greedy driver whose escrow covers nothing taps the card again once the start was
    refused NoCredit: the registry accepts the card, but the escrow still covers nothing
    and nothing else pays. Answered Accepted, the station would charge on, the host paid
    what the empty escrow has; it is refused again, as at the start."""
    await link(server, "POOR", deposit=100)  # below a session's reserve (20.00)
    async with await RawClient.connect(server.url, "CP201", ["ocpp2.0.1"]) as c:
        await c.result("BootNotification", BOOT201)
        assert await started201(c, "POOR") == "NoCredit"
        again = await tapped201(c, "POOR")
    assert again["idTokenInfo"]["status"] == "NoCredit", again
    [s] = await server.sessions("CP201")
    assert s["id_tag"] == "POOR" and "auth_nocredit" in s["flags"], s


async def test_201_a_token_refused_for_credit_is_accepted_once_its_escrow_covers(
    server: RunningServer,
) -> None:
    """An honest driver's card is refused NoCredit as the transaction starts at plug-in;
    the driver tops the escrow up and taps the card again: it is accepted now, the
    session's payer (as before the refusal) with a limit, not refused for the rest of the
    transaction (the driver would have to unplug to charge)."""
    kit, driver = await link(server, "TOPUP", deposit=100)  # below the reserve (20.00)
    async with await RawClient.connect(server.url, "CP201", ["ocpp2.0.1"]) as c:
        await c.result("BootNotification", BOOT201)
        assert await started201(c, "TOPUP") == "NoCredit"
        wallet.deposit(kit.chain, driver, 10_000)
        server.app.service.credit.forget(driver.address.lower())  # type: ignore[union-attr]
        again = await tapped201(c, "TOPUP")
    assert again["idTokenInfo"]["status"] == "Accepted", again
    [s] = await server.sessions("CP201")
    assert s["id_tag"] == "TOPUP", s
    assert not [f for f in s["flags"] if f.startswith("auth_")], s
    assert s["limit_minor"] is not None, s


async def start16(c: RawClient, tag: str, connector: int = 1) -> str:
    start = await c.result("StartTransaction", {
        "connectorId": connector, "idTag": tag, "meterStart": 0,
        "timestamp": datetime.now(UTC).isoformat()})
    return str(start["idTagInfo"]["status"])


async def test_a_retried_start_gets_the_answer_it_was_given(server: RunningServer) -> None:
    """A station whose answer was lost sends the same StartTransaction again: the same
    transaction, the same answer (its own session is not a second one to cover)."""
    await link(server, "CARD", deposit=3_000)
    start = {"connectorId": 1, "idTag": "CARD", "meterStart": 0,
             "timestamp": datetime.now(UTC).isoformat()}
    async with await RawClient.connect(server.url, "CP16", ["ocpp1.6"]) as c:
        await c.result("BootNotification", BOOT16)
        first = await c.result("StartTransaction", start)
        again = await c.result("StartTransaction", start)
    assert first["idTagInfo"]["status"] == "Accepted"
    assert again == first


async def test_two_cards_of_one_driver_started_at_once_are_not_both_covered(
    server: RunningServer,
) -> None:
    """Two stations start a session of the same driver at the same moment: the escrow
    (30.00) covers one reserve (20.00), not two."""
    await link(server, "CARD", deposit=3_000)
    async with await RawClient.connect(server.url, "CP16", ["ocpp1.6"]) as a, \
            await RawClient.connect(server.url, "CP16B", ["ocpp1.6"]) as b:
        await a.result("BootNotification", BOOT16)
        await b.result("BootNotification", BOOT16)
        statuses = await asyncio.gather(start16(a, "CARD"), start16(b, "CARD"))
    assert sorted(statuses) == ["Accepted", "Blocked"], statuses


async def test_one_after_the_other_the_second_is_blocked(server: RunningServer) -> None:
    """The control of the test above: the same two starts one after the other."""
    await link(server, "CARD", deposit=3_000)
    async with await RawClient.connect(server.url, "CP16", ["ocpp1.6"]) as a, \
            await RawClient.connect(server.url, "CP16B", ["ocpp1.6"]) as b:
        await a.result("BootNotification", BOOT16)
        await b.result("BootNotification", BOOT16)
        assert await start16(a, "CARD") == "Accepted"
        assert await start16(b, "CARD") == "Blocked"


async def test_the_daily_limit_counts_sessions_in_progress(server: RunningServer) -> None:
    """A rich driver whose daily limit (30.00) covers one reserve: a second session while
    the first runs would be refused on chain for the day's limit (unpaid host)."""
    await link(server, "DAY", deposit=1_000_000, max_per_day=3_000)
    async with await RawClient.connect(server.url, "CP16", ["ocpp1.6"]) as a, \
            await RawClient.connect(server.url, "CP16B", ["ocpp1.6"]) as b:
        await a.result("BootNotification", BOOT16)
        await b.result("BootNotification", BOOT16)
        assert await start16(a, "DAY") == "Accepted"
        assert await start16(b, "DAY") == "Blocked"


async def _on_chain(server: RunningServer, kit: Kit, *stations: str) -> dict[str, int]:
    indexes = {}
    for sid in stations:
        index = kit.chain.register_station(22_000)

        async def work(tx: Any, sid: str = sid, index: int = index) -> None:
            st = await tx.get_station(sid)
            st.chain_station = index
            await tx.update_station(st)

        await server.repo.unit(work)
        indexes[sid] = index
    return indexes


async def _remote_start(server: RunningServer, c: RawClient, station: str,
                        body: dict[str, Any]) -> tuple[int, Any]:
    started = asyncio.create_task(command(server, station, body))
    done, _ = await asyncio.wait({started, asyncio.create_task(c.calls.get())},
                                 return_when=asyncio.FIRST_COMPLETED)
    if started in done:
        return started.result()
    call = next(iter(done)).result()
    assert call[2] == "RemoteStartTransaction"
    await c.answer(call[1], {"status": "Accepted"})
    return await started


async def test_signed_app_sessions_count_in_the_drivers_exposure(
    server: RunningServer,
) -> None:
    """A driver with 30.00 signs an app session (up to 20.00) and charges: while it runs,
    neither a second signed session (up to 20.00) nor the driver's card is covered."""
    kit, driver = await link(server, "OWNCARD", deposit=3_000)
    idx = await _on_chain(server, kit, "CP16", "CP16B")
    expiry = int(time.time()) + 3600
    first = wallet.authorize(kit.chain, driver, idx["CP16"], max_per_kwh=40,
                             max_amount=2_000, nonce=1, expiry=expiry)
    second = wallet.authorize(kit.chain, driver, idx["CP16B"], max_per_kwh=40,
                              max_amount=2_000, nonce=2, expiry=expiry)
    async with await RawClient.connect(server.url, "CP16", ["ocpp1.6"]) as a, \
            await RawClient.connect(server.url, "CP16B", ["ocpp1.6"]) as b:
        await a.result("BootNotification", BOOT16)
        await b.result("BootNotification", BOOT16)
        status, body = await _remote_start(server, a, "CP16",
                                           {"tag": "APP1", "authorization": first.as_json()})
        assert status == 200, body
        assert await start16(a, "APP1") == "Accepted"  # 20.00 of the 30.00 now at stake
        # the driver's card at the other station: 10.00 left, a session needs 20.00
        status, body = await command(server, "CP16B", {"tag": "OWNCARD"})
        card_refused = status == 400 and body["error"].startswith("no credit:")
        status, body = await _remote_start(server, b, "CP16B",
                                           {"tag": "APP2", "authorization": second.as_json()})
        signed_refused = status == 400 and "authorization refused" in body.get("error", "")
    assert (card_refused, signed_refused) == (True, True)


async def _held_session(server: RunningServer, tag: str) -> dict[str, Any]:
    """A 1.6 session of ``tag`` at CP16 whose meter went backwards: held for billing, never
    priced (``price_minor`` NULL), at the limit its start was given."""
    async with await RawClient.connect(server.url, "CP16", ["ocpp1.6"]) as c:
        await c.result("BootNotification", BOOT16)
        started = await c.result("StartTransaction", {
            "connectorId": 1, "idTag": tag, "meterStart": 5000,
            "timestamp": (datetime.now(UTC) - timedelta(minutes=10)).isoformat()})
        assert started["idTagInfo"]["status"] == "Accepted", started
        await c.result("StopTransaction", {
            "transactionId": started["transactionId"], "meterStop": 1000,
            "timestamp": datetime.now(UTC).isoformat(), "reason": "Local"})
    [session] = [s for s in await server.sessions("CP16") if s["id_tag"] == tag]
    assert "meter_went_backwards" in session["flags"], session
    return session


async def test_a_rejected_session_no_longer_counts_against_its_drivers_escrow(
    server: RunningServer,
) -> None:
    """A session held for billing (here: its meter went backwards) counts at its limit while
    it waits for an operator, who may release it: a station cannot make a session of a
    card escape the driver's exposure by getting it held, and let the driver overspend
    the escrow. Once the operator rejects it, it is never settled: nothing of it will ever
    be taken from the escrow, and its limit no longer counts (it used to, for ever: a
    hostile station that knows a card made such sessions at will, each rejection locking
    away one session limit of the driver's escrow for good, until the card was refused
    everywhere with money in the escrow)."""
    await link(server, "VICTIM", deposit=3_000)  # one session: the reserve is 20.00
    session = await _held_session(server, "VICTIM")
    assert session["limit_minor"] == 3_000, session
    # held, not decided: still at stake, the 30.00 cover no second session
    assert await authorize(server, "1.6", "VICTIM") == "Blocked"

    async def reject(tx: Any) -> None:
        await decide(tx, int(session["id"]), "rejected", actor="op", reason="bogus",
                     now=datetime.now(UTC))

    await server.repo.unit(reject)
    assert await authorize(server, "1.6", "VICTIM") == "Accepted"


async def test_a_released_session_counts_again_until_it_is_settled(
    server: RunningServer,
) -> None:
    """The control of the test above: a held session the operator releases is billed, so it
    keeps counting (at its limit until the worker prices it)."""
    await link(server, "RELEASED", deposit=3_000)
    session = await _held_session(server, "RELEASED")

    async def release(tx: Any) -> None:
        await decide(tx, int(session["id"]), "released", actor="op", reason="checked",
                     now=datetime.now(UTC))

    await server.repo.unit(release)
    assert await authorize(server, "1.6", "RELEASED") == "Blocked"
