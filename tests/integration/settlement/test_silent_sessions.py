"""A card session whose station falls silent holds its driver's escrow for a grace period,
not for ever, through real sockets, a real chain (py-evm) and both storage backends: a
station that stopped reporting (broken, offline for good, or a hostile host's station that
started a session on a card's idTag it saw once and never sends the stop) no longer gets
the driver refused everywhere else; one that reports keeps its session counted; and one
heard of again after the grace is billed as usual."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from conftest import BACKENDS

from csms.domain.model import BILLING_HOLD_FLAGS
from csms.service.holds import decide
from csms.storage.settlement_sql import SILENT_GRACE_S
from csms.storage.sql import dt_to_db
from settlement import wallet
from support import RunningServer, station_events
from support.client import RawClient

from .test_card_payer import PRICE, settled
from .test_credit import (
    BOOT16,
    BOOT201,
    _on_chain,
    _remote_start,
    authorize,
    link,
    settling,
)

pytestmark = pytest.mark.parametrize("csms_db", BACKENDS, indirect=True)


@pytest.fixture
async def server(csms_server: RunningServer) -> RunningServer:
    return await settling(csms_server, "CP16", "CP16B", "CP201")


RESUMED = "resumed_after_silence"


async def _start16(server: RunningServer, station: str, tag: str, minutes: int,
                   stop: bool) -> tuple[int, int]:
    """A 1.6 session of ``tag`` at ``station`` started ``minutes`` ago (stopped now at
    5,000 Wh with ``stop``): its id and its transactionId."""
    async with await RawClient.connect(server.url, station, ["ocpp1.6"]) as c:
        await c.result("BootNotification", BOOT16)
        started = await c.result("StartTransaction", {
            "connectorId": 1, "idTag": tag, "meterStart": 0,
            "timestamp": (datetime.now(UTC) - timedelta(minutes=minutes)).isoformat()})
        assert started["idTagInfo"]["status"] == "Accepted", started
        if stop:
            await c.result("StopTransaction", {
                "transactionId": started["transactionId"], "meterStop": 5000,
                "timestamp": datetime.now(UTC).isoformat(), "reason": "Local"})
    [session] = [s for s in await server.sessions(station) if s["id_tag"] == tag]
    return int(session["id"]), int(started["transactionId"])


async def start(server: RunningServer, tag: str) -> tuple[int, int]:
    """A session of ``tag`` started on CP16, whose station then goes away: its id and its
    transactionId."""
    return await _start16(server, "CP16", tag, 30, stop=False)


async def _written(server: RunningServer, sid: int, column: str, at: datetime) -> None:
    """The session's ``column`` (updated_at, created_at) set to ``at``: the database's
    clock cannot be moved."""
    async def work(tx: Any) -> None:
        await tx.execute(f"UPDATE sessions SET {column} = ? WHERE id = ?", dt_to_db(at), sid)

    await server.repo.unit(work)


async def silent(server: RunningServer, sid: int) -> None:
    """Nothing heard of the session for longer than the grace (its last update that long
    ago)."""
    await _written(server, sid, "updated_at",
                   datetime.now(UTC) - timedelta(seconds=SILENT_GRACE_S + 60))


async def accepted_at(server: RunningServer, sid: int, at: datetime) -> None:
    """The session's row created at ``at`` (the central system's clock of its acceptance)."""
    await _written(server, sid, "created_at", at)


async def stop16(server: RunningServer, txid: int, meter_stop: int = 5000) -> None:
    """The station of ``start`` back with its queued stop of transaction ``txid``."""
    async with await RawClient.connect(server.url, "CP16", ["ocpp1.6"]) as c:
        await c.result("BootNotification", BOOT16)
        await c.result("StopTransaction", {
            "transactionId": txid, "meterStop": meter_stop,
            "timestamp": datetime.now(UTC).isoformat(), "reason": "Local"})


async def honest(server: RunningServer, tag: str) -> int:
    """A session of ``tag`` at CP16B, another host's station: 5,000 Wh over ten minutes,
    started and stopped as it ran; its id."""
    return (await _start16(server, "CP16B", tag, 10, stop=True))[0]


async def session(server: RunningServer, sid: int) -> dict[str, Any]:
    [row] = [s for s in await server.sessions() if s["id"] == sid]
    return row


async def release(server: RunningServer, sid: int) -> None:
    async def work(tx: Any) -> None:
        await decide(tx, sid, "released", actor="op", reason="checked",
                     now=datetime.now(UTC))

    await server.repo.unit(work)


async def test_a_silent_stations_session_frees_the_escrow_and_is_held_when_heard_again(
    server: RunningServer,
) -> None:
    """The hostile order: a station starts a session on a card, goes silent past the grace,
    waits until the driver charged at another host's station, then sends its stop. The
    late session is held for the operator; the honest one settles first, and is paid."""
    kit, driver = await link(server, "CARD", deposit=3_000)  # one session's reserve (20.00)
    sid, txid = await start(server, "CARD")
    # within the grace the session is at stake: no second one anywhere
    assert await authorize(server, "1.6", "CARD") == "Blocked"
    await silent(server, sid)
    # its station has sent nothing for it since the grace: the driver charges elsewhere
    assert await authorize(server, "1.6", "CARD") == "Accepted"
    other = await honest(server, "CARD")
    # the silent station comes back with its (queued, or held back) stop
    await stop16(server, txid)
    late = await session(server, sid)
    assert late["status"] == "completed" and RESUMED in late["flags"], late
    assert RESUMED in BILLING_HOLD_FLAGS
    [event] = await station_events(server, "CP16", RESUMED)
    assert event["session_id"] == sid and event["action"] == "StopTransaction", event
    assert event["held"] is True, event
    assert event["accepted_meanwhile"]["kind"] == "session", event
    assert event["accepted_meanwhile"]["id"] == other, event
    assert [e["session_id"] for e in await station_events(server, "CP16", "billing_hold")] \
        == [sid]
    # the driver's session of meanwhile is settled, and its host paid
    row = await settled(server, other)
    assert row["settlement_state"] == "paid", row
    assert kit.balance(driver) == 3_000 - PRICE
    assert (await session(server, sid))["status"] == "completed"

    async def state(tx: Any) -> dict[str, Any]:
        return dict(await tx.session_settlement(sid))

    assert (await server.repo.read(state))["settlement_state"] is None
    # the operator releases the late one: the escrow still covers it, the chain pays it
    await release(server, sid)
    row = await settled(server, sid)
    assert row["settlement_state"] == "paid", row
    assert kit.balance(driver) == 3_000 - 2 * PRICE


async def test_a_201_silent_transaction_ended_late_is_held(server: RunningServer) -> None:
    """The same on 2.0.1: readings, then the Ended event, of a transaction its station was
    silent about past the grace, the driver charged elsewhere meanwhile; the hold is taken
    at the first event heard of again."""
    await link(server, "CARD201", deposit=3_000)
    begun = datetime.now(UTC) - timedelta(minutes=30)
    async with await RawClient.connect(server.url, "CP201", ["ocpp2.0.1"]) as c:
        await c.result("BootNotification", BOOT201)
        started = await c.result("TransactionEvent", {
            "eventType": "Started", "timestamp": begun.isoformat(),
            "triggerReason": "Authorized", "seqNo": 0,
            "transactionInfo": {"transactionId": "S1", "chargingState": "Charging"},
            "idToken": {"idToken": "CARD201", "type": "ISO14443"},
            "evse": {"id": 1, "connectorId": 1},
            "meterValue": [{"timestamp": begun.isoformat(), "sampledValue": [
                {"value": 0, "context": "Transaction.Begin"}]}]})
        assert started["idTokenInfo"]["status"] == "Accepted", started
    [row] = [s for s in await server.sessions("CP201") if s["id_tag"] == "CARD201"]
    sid = int(row["id"])
    await silent(server, sid)
    await honest(server, "CARD201")
    now = datetime.now(UTC)
    async with await RawClient.connect(server.url, "CP201", ["ocpp2.0.1"]) as c:
        await c.result("BootNotification", BOOT201)
        await c.result("TransactionEvent", {
            "eventType": "Updated", "timestamp": now.isoformat(),
            "triggerReason": "MeterValuePeriodic", "seqNo": 1,
            "transactionInfo": {"transactionId": "S1"},
            "meterValue": [{"timestamp": now.isoformat(), "sampledValue": [{"value": 4000}]}]})
        assert RESUMED in (await session(server, sid))["flags"]
        await c.result("TransactionEvent", {
            "eventType": "Ended", "timestamp": now.isoformat(),
            "triggerReason": "StopAuthorized", "seqNo": 2,
            "transactionInfo": {"transactionId": "S1", "stoppedReason": "Local"},
            "meterValue": [{"timestamp": now.isoformat(), "sampledValue": [
                {"value": 5000, "context": "Transaction.End"}]}]})
    late = await session(server, sid)
    assert late["status"] == "completed" and RESUMED in late["flags"], late
    assert [e["session_id"] for e in await station_events(server, "CP201", RESUMED)] == [sid]


async def test_a_station_that_reports_within_the_grace_is_not_held(
    server: RunningServer,
) -> None:
    kit, driver = await link(server, "CARD", deposit=3_000)
    sid, txid = await start(server, "CARD")
    await stop16(server, txid)
    assert RESUMED not in (await session(server, sid))["flags"]
    row = await settled(server, sid)
    assert row["settlement_state"] == "paid", row
    assert kit.balance(driver) == 3_000 - PRICE
    assert await station_events(server, "CP16", RESUMED) == []


async def test_a_session_of_a_tag_of_no_driver_is_not_held(server: RunningServer) -> None:
    """Nobody's escrow is at stake for a tag linked to no driver: its silence freed nothing,
    its late stop holds nothing."""
    await server.add_tag("NOBODY")
    sid, txid = await start(server, "NOBODY")
    await silent(server, sid)
    await stop16(server, txid)
    row = await session(server, sid)
    assert row["status"] == "completed", row
    assert not BILLING_HOLD_FLAGS.intersection(row["flags"]), row
    assert await station_events(server, "CP16", RESUMED) == []


async def test_a_station_that_keeps_reporting_keeps_its_session_counted(
    server: RunningServer,
) -> None:
    await link(server, "CARD", deposit=3_000)
    sid, txid = await start(server, "CARD")
    await silent(server, sid)
    # a reading of the session, however late, is news of it: it counts again
    async with await RawClient.connect(server.url, "CP16", ["ocpp1.6"]) as c:
        await c.result("BootNotification", BOOT16)
        await c.result("MeterValues", {"connectorId": 1, "transactionId": txid, "meterValue": [
            {"timestamp": datetime.now(UTC).isoformat(),
             "sampledValue": [{"value": "1000", "measurand": "Energy.Active.Import.Register",
                               "unit": "Wh"}]}]})
    assert await authorize(server, "1.6", "CARD") == "Blocked"
    # nothing of the driver's was accepted while it did not count: not held
    assert RESUMED not in (await session(server, sid))["flags"]
    [event] = await station_events(server, "CP16", RESUMED)
    assert (event["action"], event["held"], event["accepted_meanwhile"]) \
        == ("MeterValues", False, None), event


async def test_readings_of_another_connector_after_the_grace_hold_the_session_too(
    server: RunningServer,
) -> None:
    """A silent station that names the session's transactionId on another connector (kept
    apart, ``evse_mismatch``) writes the session again: held for its silence as well when
    the driver charged elsewhere meanwhile, so the operator who releases the mismatch sees
    it."""
    await link(server, "CARD", deposit=3_000)
    sid, txid = await start(server, "CARD")
    await silent(server, sid)
    await honest(server, "CARD")
    async with await RawClient.connect(server.url, "CP16", ["ocpp1.6"]) as c:
        await c.result("BootNotification", BOOT16)
        await c.result("MeterValues", {"connectorId": 2, "transactionId": txid, "meterValue": [
            {"timestamp": datetime.now(UTC).isoformat(),
             "sampledValue": [{"value": "1000", "measurand": "Energy.Active.Import.Register",
                               "unit": "Wh"}]}]})
    flags = (await session(server, sid))["flags"]
    assert "evse_mismatch" in flags and RESUMED in flags, flags
    [event] = await station_events(server, "CP16", RESUMED)
    assert event["action"] == "MeterValues", event


async def test_an_honest_overnight_session_heard_of_at_its_stop_only_is_paid_unheld(
    server: RunningServer,
) -> None:
    """A 1.6 station that samples nothing (MeterValueSampleInterval 0) sends the start and,
    14 hours later, the stop: its session stopped counting after the grace, but the driver
    charged nowhere meanwhile, so its late stop takes no escrow another session was
    accepted on: billed as usual, no hold, no operator's decision (nor its deadline)."""
    kit, driver = await link(server, "CARD", deposit=3_000)
    sid, txid = await start(server, "CARD")
    await silent(server, sid)
    await stop16(server, txid)
    late = await session(server, sid)
    assert late["status"] == "completed", late
    assert not BILLING_HOLD_FLAGS.intersection(late["flags"]), late
    [event] = await station_events(server, "CP16", RESUMED)
    assert event["session_id"] == sid and event["action"] == "StopTransaction", event
    assert (event["held"], event["accepted_meanwhile"]) == (False, None), event
    assert event["silent_s"] > SILENT_GRACE_S, event
    row = await settled(server, sid)
    assert row["settlement_state"] == "paid", row
    assert kit.balance(driver) == 3_000 - PRICE


async def test_a_session_accepted_before_the_silence_passed_the_grace_holds_nothing(
    server: RunningServer,
) -> None:
    """The driver's other session was accepted while the silent one still counted against
    the escrow (judged with it at stake): the late stop takes nothing it was accepted on."""
    # each session's limit 30.00: two at once are covered
    kit, driver = await link(server, "CARD", deposit=6_000, max_per_session=3_000)
    sid, txid = await start(server, "CARD")
    other = await honest(server, "CARD")  # both at stake: accepted on what is left
    await silent(server, sid)
    # its acceptance came before the silent session stopped counting (its last update
    # plus the grace: a minute ago)
    await accepted_at(server, sid, datetime.now(UTC) - timedelta(seconds=SILENT_GRACE_S + 7200))
    await accepted_at(server, other, datetime.now(UTC) - timedelta(hours=1))
    await stop16(server, txid)
    late = await session(server, sid)
    assert late["status"] == "completed", late
    assert not BILLING_HOLD_FLAGS.intersection(late["flags"]), late
    [event] = await station_events(server, "CP16", RESUMED)
    assert (event["held"], event["accepted_meanwhile"]) == (False, None), event
    for sid_ in (other, sid):
        row = await settled(server, sid_)
        assert row["settlement_state"] == "paid", row
    assert kit.balance(driver) == 6_000 - 2 * PRICE


async def test_another_drivers_session_meanwhile_holds_nothing(server: RunningServer) -> None:
    """Only the silent session's driver's acceptances count: another driver charging
    meanwhile took none of its escrow."""
    await link(server, "CARD", deposit=3_000)
    await link(server, "ELSE", deposit=3_000)
    sid, txid = await start(server, "CARD")
    await silent(server, sid)
    await honest(server, "ELSE")
    await stop16(server, txid)
    late = await session(server, sid)
    assert late["status"] == "completed", late
    assert not BILLING_HOLD_FLAGS.intersection(late["flags"]), late


async def test_another_card_of_the_driver_meanwhile_holds_the_late_session(
    server: RunningServer,
) -> None:
    """The driver's escrow, not the card: a session of another card linked to the same
    driver, accepted while the silent one did not count, holds the late one."""
    kit, driver = await link(server, "CARD", deposit=3_000)

    salt = wallet.new_salt()
    commitment = wallet.link_card(kit.chain, driver, "SPARE", salt)

    async def work(tx: Any) -> None:
        await tx.link_card("SPARE", driver.address, "0x" + salt.hex(),
                           "0x" + commitment.hex(), datetime.now(UTC))

    await server.repo.unit(work)
    await server.add_tag("SPARE")
    sid, txid = await start(server, "CARD")
    await silent(server, sid)
    other = await honest(server, "SPARE")
    await stop16(server, txid)
    late = await session(server, sid)
    assert RESUMED in late["flags"], late
    [event] = await station_events(server, "CP16", RESUMED)
    assert event["accepted_meanwhile"]["id"] == other, event


async def test_a_signed_authorization_accepted_meanwhile_holds_the_late_session(
    server: RunningServer,
) -> None:
    """The driver signed an app session while the silent one did not count: accepted (the
    station took the remote start), not started yet. It may start and settle on the escrow
    the late session would take: the late one is held."""
    kit, driver = await link(server, "CARD", deposit=3_000)
    idx = await _on_chain(server, kit, "CP16B")
    sid, txid = await start(server, "CARD")
    await silent(server, sid)
    signed = wallet.authorize(kit.chain, driver, idx["CP16B"], max_per_kwh=40,
                              max_amount=2_000, nonce=1, expiry=int(time.time()) + 3600)
    async with await RawClient.connect(server.url, "CP16B", ["ocpp1.6"]) as b:
        await b.result("BootNotification", BOOT16)
        status, body = await _remote_start(server, b, "CP16B",
                                           {"tag": "APP1", "authorization": signed.as_json()})
        assert status == 200, body
    await stop16(server, txid)
    late = await session(server, sid)
    assert late["status"] == "completed" and RESUMED in late["flags"], late
    [event] = await station_events(server, "CP16", RESUMED)
    assert event["held"] is True, event
    assert event["accepted_meanwhile"]["kind"] == "authorization", event
