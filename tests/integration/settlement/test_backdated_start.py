"""A signed app session's start as a dishonest station reports it (1.6 and 2.0.1), through
real sockets and the py-evm chain.

The central system sends the remote start at a moment it knows, and binds the driver's
signature only to the start of that remote start (1.6: a StartTransaction that arrives
within the remote start's window after it; 2.0.1: the transaction that reports its
remoteStartId). The start's own timestamp is the station's word: one weeks before the
remote start was even sent (yet within the registration window that holds
``time_implausible``) makes the session weeks long - at a per-minute price the driver signed
for, billed up to the signed maximum for a few minutes' charge. Such a session is held
(``start_before_authorization``) when it completes, with a station event saying why: the
station's clock is judged by its stop, so a clock behind (that dates its stop back as
well), a stop kept in the station's queue and sent late, or a 2.0.1 transaction reported
at plug-in before the app started it, is billed as before.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from csms.domain.tariff import Tariff
from csms.service.core import (
    ENERGY_BEFORE_AUTHORIZATION,
    START_BEFORE_AUTHORIZATION,
    TIME_BEFORE_AUTHORIZATION,
)
from csms.service.holds import billing_state
from settlement import wallet
from support import RunningServer, later, station_events
from support.client import RawClient

from .test_app_session_attacks import app_driver, online
from .test_app_session_starts import post_start
from .test_card_payer import settled
from .test_credit import BOOT201, _on_chain, _remote_start, settling


@pytest.fixture
async def server(csms_server: RunningServer) -> RunningServer:
    return await settling(csms_server, "CP16", "CP16B", "CP201")


async def per_minute(server: RunningServer, station: str) -> None:
    async def work(tx: Any) -> None:  # 0.39 a kWh and 0.05 a minute
        await tx.add_tariff(Tariff(station, Decimal("0.39"), "EUR", 2,
                                   per_minute=Decimal("0.05"),
                                   valid_from=datetime(2000, 1, 1, tzinfo=UTC)))

    await server.repo.unit(work)


async def held_unpaid(server: RunningServer, kit: Any, driver: Any, sid: int) -> None:
    """The session is held from settlement (an operator decides) and its driver has paid
    nothing, once the worker has run."""
    await server.app.worker.build_batches(force=True)  # type: ignore[union-attr]

    async def state(tx: Any) -> str:
        return str(billing_state(await tx.get_session(sid)))

    assert await server.repo.read(state) == "held"
    assert kit.balance(driver) == 10_000


async def start16_at(server: RunningServer, kit: Any, driver: Any,
                     start: datetime) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A signed app session on CP16 (a per-minute tariff) whose StartTransaction, sent
    right after the remote start, says it started at ``start``; 1 kWh, stopped ten minutes
    from now (its StopTransaction arrives then). The session and the station's
    ``start_before_authorization`` events."""
    idx = await _on_chain(server, kit, "CP16")
    await per_minute(server, "CP16")
    auth = wallet.authorize(kit.chain, driver, idx["CP16"], max_per_kwh=39, max_per_minute=5,
                            max_amount=5_000, nonce=1, expiry=int(time.time()) + 7200)
    c: RawClient
    async with online(server) as (c, _):
        status, body = await _remote_start(server, c, "CP16",
                                           {"tag": "APP1", "authorization": auth.as_json()})
        assert status == 200, body
        started = await c.result("StartTransaction", {
            "connectorId": 1, "idTag": "APP1", "meterStart": 0,
            "timestamp": start.isoformat()})
        assert started["idTagInfo"]["status"] == "Accepted", started
        [running] = await server.sessions("CP16")  # judged at its completion
        assert START_BEFORE_AUTHORIZATION not in running["flags"], running
        with later(server, timedelta(minutes=10)):
            await c.result("StopTransaction", {
                "transactionId": started["transactionId"], "meterStop": 1000,
                "timestamp": (datetime.now(UTC) + timedelta(minutes=10)).isoformat(),
                "reason": "Local"})
    [session] = await server.sessions("CP16")
    return session, await station_events(server, "CP16", START_BEFORE_AUTHORIZATION)


async def test_a_start_dated_before_the_remote_start_was_sent_is_held(
    server: RunningServer,
) -> None:
    """The car charges 1 kWh in ten minutes; the station dates the start 20 days back: at
    0.05 a minute the driver's whole signed maximum. Held for the operator, with a station
    event saying why, and nothing paid."""
    kit, driver = app_driver(server)
    now = datetime.now(UTC)
    session, [event] = await start16_at(server, kit, driver, now - timedelta(days=20))
    assert START_BEFORE_AUTHORIZATION in session["flags"], session["flags"]
    assert event["session_id"] == session["id"]
    assert datetime.fromisoformat(event["started_at"]) == now - timedelta(days=20)
    assert datetime.fromisoformat(event["authorized_at"]) >= now - timedelta(seconds=5)
    await held_unpaid(server, kit, driver, int(session["id"]))


async def test_a_station_clock_a_little_behind_is_not_held(server: RunningServer) -> None:
    """An honest station whose clock is two minutes behind (within ``time_future``) dates
    its start before the remote start was sent: settled as before, from the start it
    reports (twelve minutes and 1 kWh: 0.39 + 0.60)."""
    kit, driver = app_driver(server)
    session, events = await start16_at(server, kit, driver,
                                       datetime.now(UTC) - timedelta(minutes=2))
    assert events == [] and START_BEFORE_AUTHORIZATION not in session["flags"], session
    row = await settled(server, int(session["id"]))
    assert row["settlement_state"] == "paid", row
    assert 10_000 - kit.balance(driver) == row["price_minor"], row
    assert 99 <= row["price_minor"] <= 101, row


async def event201(c: RawClient, event: str, seq: int, at: datetime,
                   **extra: Any) -> dict[str, Any]:
    return await c.result("TransactionEvent", {
        "eventType": event, "timestamp": at.isoformat(), "seqNo": seq,
        "triggerReason": {"Started": "RemoteStart", "Ended": "StopAuthorized"}.get(
            event, "Authorized"),
        "transactionInfo": {"transactionId": "T1", "chargingState": "Charging",
                            **extra.pop("info", {})},
        "evse": {"id": 1, "connectorId": 1}, **extra})


async def signed201(server: RunningServer, c: RawClient, kit: Any, driver: Any,
                    minutes: bool = True) -> int:
    """A signed app session's remote start sent to CP201 and accepted: its remoteStartId.
    ``minutes``: CP201's tariff has a price per minute (else the one per kWh only)."""
    idx = await _on_chain(server, kit, "CP201")
    if minutes:
        await per_minute(server, "CP201")
    auth = wallet.authorize(kit.chain, driver, idx["CP201"], max_per_kwh=39,
                            max_per_minute=5, max_amount=5_000, nonce=1,
                            expiry=int(time.time()) + 7200)
    started = asyncio.create_task(post_start(server, "CP201", {
        "tag": "APP1", "authorization": auth.as_json()}))
    call = await asyncio.wait_for(c.calls.get(), 10)
    assert call[2] == "RequestStartTransaction"
    await c.answer(call[1], {"status": "Accepted"})
    assert (await started)[0] == 200
    return int(call[3]["remoteStartId"])


async def test_201_a_started_event_dated_before_the_remote_start_is_held(
    server: RunningServer,
) -> None:
    """2.0.1 F01: the Started event of the remote start (its remoteStartId) dated 20 days
    before the RequestStartTransaction was sent: held, with a station event."""
    kit, driver = app_driver(server)
    now = datetime.now(UTC)
    async with await RawClient.connect(server.url, "CP201", ["ocpp2.0.1"]) as c:
        await c.result("BootNotification", BOOT201)
        remote = await signed201(server, c, kit, driver)
        answer = await event201(c, "Started", 0, now - timedelta(days=20),
                                idToken={"idToken": "APP1", "type": "Central"},
                                info={"remoteStartId": remote},
                                meterValue=[{"timestamp": now.isoformat(), "sampledValue": [
                                    {"value": 0, "context": "Transaction.Begin"}]}])
        assert answer["idTokenInfo"]["status"] == "Accepted", answer
        end = now + timedelta(minutes=10)
        await event201(c, "Ended", 1, end, info={"stoppedReason": "Local"},
                       meterValue=[{"timestamp": end.isoformat(), "sampledValue": [
                           {"value": 1000, "context": "Transaction.End"}]}])
    [session] = await server.sessions("CP201")
    assert START_BEFORE_AUTHORIZATION in session["flags"], session["flags"]
    [event] = await station_events(server, "CP201", START_BEFORE_AUTHORIZATION)
    assert event["transaction_id"] == "T1"
    await held_unpaid(server, kit, driver, int(session["id"]))


async def plugged_in_then_app(server: RunningServer, kit: Any, driver: Any,
                              plugged: datetime, minutes: bool = True) -> dict[str, Any]:
    """2.0.1 F02 on CP201: the transaction reported when the cable was plugged in
    (``plugged``), the driver's app starting it now (an Updated event with the token and
    the remoteStartId), 1 kWh charged after that, then Ended: the session."""
    async with await RawClient.connect(server.url, "CP201", ["ocpp2.0.1"]) as c:
        await c.result("BootNotification", BOOT201)
        await c.result("TransactionEvent", {
            "eventType": "Started", "timestamp": plugged.isoformat(), "seqNo": 0,
            "triggerReason": "CablePluggedIn",
            "transactionInfo": {"transactionId": "T1", "chargingState": "EVConnected"},
            "evse": {"id": 1, "connectorId": 1},
            "meterValue": [{"timestamp": plugged.isoformat(), "sampledValue": [
                {"value": 0, "context": "Transaction.Begin"}]}]})
        remote = await signed201(server, c, kit, driver, minutes)
        answer = await event201(c, "Updated", 1, datetime.now(UTC),
                                idToken={"idToken": "APP1", "type": "Central"},
                                info={"remoteStartId": remote})
        assert answer["idTokenInfo"]["status"] == "Accepted", answer
        end = datetime.now(UTC)
        await event201(c, "Ended", 2, end, info={"stoppedReason": "Local"},
                       meterValue=[{"timestamp": end.isoformat(), "sampledValue": [
                           {"value": 1000, "context": "Transaction.End"}]}])
    [session] = await server.sessions("CP201")
    return session


async def test_201_minutes_before_the_app_start_at_a_price_per_minute_are_held(
    server: RunningServer,
) -> None:
    """2.0.1 F02: a transaction the station reported at plug-in three hours before the
    driver's app started it, nothing charged before: at a price per minute the driver would
    pay three hours they never signed for (up to the signed maximum) - a host's station
    that reports a transaction on an EVSE and keeps it open until an app driver starts
    there. Held when it completes (``time_before_authorization``), with a station event
    saying how long, and nothing paid."""
    kit, driver = app_driver(server)
    session = await plugged_in_then_app(server, kit, driver,
                                        datetime.now(UTC) - timedelta(hours=3))
    assert TIME_BEFORE_AUTHORIZATION in session["flags"], session["flags"]
    assert ENERGY_BEFORE_AUTHORIZATION not in session["flags"]
    [event] = await station_events(server, "CP201", TIME_BEFORE_AUTHORIZATION)
    assert event["transaction_id"] == "T1"
    assert 179 <= event["minutes_before"] <= 181, event
    await held_unpaid(server, kit, driver, int(session["id"]))


async def test_201_minutes_before_the_app_start_without_a_price_per_minute_are_billed(
    server: RunningServer,
) -> None:
    """The same three hours on a tariff without a price per minute cost the driver
    nothing: the session (its energy after the app start) is settled."""
    kit, driver = app_driver(server)
    session = await plugged_in_then_app(server, kit, driver,
                                        datetime.now(UTC) - timedelta(hours=3), minutes=False)
    assert TIME_BEFORE_AUTHORIZATION not in session["flags"], session["flags"]
    row = await settled(server, int(session["id"]))
    assert row["settlement_state"] == "paid", row


async def test_201_a_transaction_reported_at_plug_in_before_the_app_start_is_not_held(
    server: RunningServer,
) -> None:
    """2.0.1 F02: the station reported the transaction when the cable was plugged in, 5
    minutes before the driver's app started it (an Updated event with the token and the
    remoteStartId): its start was reported before the authorization, not dated back after
    it, and the minutes before it are within the clock's tolerance. Bound and settled as
    before."""
    kit, driver = app_driver(server)
    session = await plugged_in_then_app(server, kit, driver,
                                        datetime.now(UTC) - timedelta(minutes=5))
    assert START_BEFORE_AUTHORIZATION not in session["flags"], session["flags"]
    assert await station_events(server, "CP201", START_BEFORE_AUTHORIZATION) == []
    assert TIME_BEFORE_AUTHORIZATION not in session["flags"], session["flags"]
    row = await settled(server, int(session["id"]))
    assert row["settlement_state"] == "paid", row


@pytest.mark.parametrize("behind", [timedelta(minutes=20), timedelta(hours=5)])
async def test_a_station_clock_twenty_minutes_behind_is_not_held(
    server: RunningServer, behind: timedelta,
) -> None:
    """An honest station whose clock runs twenty minutes behind (never synchronised; a
    station sending local time of a zone west of UTC is hours behind): its start, sent at
    once after the remote start, and its stop twelve minutes later are both twenty minutes
    back by the central system's clock. The session is as long as it ran; nothing in it
    is dated before the driver signed, by the station's own clock."""
    kit, driver = app_driver(server)
    idx = await _on_chain(server, kit, "CP16")
    await per_minute(server, "CP16")
    auth = wallet.authorize(kit.chain, driver, idx["CP16"], max_per_kwh=39, max_per_minute=5,
                            max_amount=5_000, nonce=1, expiry=int(time.time()) + 7200)
    async with online(server) as (c, _):
        status, body = await _remote_start(server, c, "CP16",
                                           {"tag": "APP1", "authorization": auth.as_json()})
        assert status == 200, body
        start = datetime.now(UTC) - behind
        started = await c.result("StartTransaction", {
            "connectorId": 1, "idTag": "APP1", "meterStart": 0,
            "timestamp": start.isoformat()})
        with later(server, timedelta(minutes=12)):  # sent twelve minutes later
            await c.result("StopTransaction", {
                "transactionId": started["transactionId"], "meterStop": 1000,
                "timestamp": (start + timedelta(minutes=12)).isoformat(), "reason": "Local"})
    [session] = await server.sessions("CP16")
    assert START_BEFORE_AUTHORIZATION not in session["flags"], session["flags"]
    assert await station_events(server, "CP16", START_BEFORE_AUTHORIZATION) == []
    row = await settled(server, int(session["id"]))
    assert row["settlement_state"] == "paid", row


async def test_a_stop_sent_late_after_an_honest_start_is_not_held(
    server: RunningServer,
) -> None:
    """The station starts the app session at once, by a clock that is right; its stop, an
    hour later by that clock, is kept in its queue and arrives two hours after the start.
    The stop's lag moves the start later by the central system's clock, never earlier:
    settled as before, for the hour it reports (1 kWh: 0.39 + 3.00)."""
    kit, driver = app_driver(server)
    idx = await _on_chain(server, kit, "CP16")
    await per_minute(server, "CP16")
    auth = wallet.authorize(kit.chain, driver, idx["CP16"], max_per_kwh=39, max_per_minute=5,
                            max_amount=5_000, nonce=1, expiry=int(time.time()) + 7200)
    async with online(server) as (c, _):
        status, body = await _remote_start(server, c, "CP16",
                                           {"tag": "APP1", "authorization": auth.as_json()})
        assert status == 200, body
        start = datetime.now(UTC)
        started = await c.result("StartTransaction", {
            "connectorId": 1, "idTag": "APP1", "meterStart": 0,
            "timestamp": start.isoformat()})
        with later(server, timedelta(hours=2)):
            await c.result("StopTransaction", {
                "transactionId": started["transactionId"], "meterStop": 1000,
                "timestamp": (start + timedelta(hours=1)).isoformat(), "reason": "Local"})
    [session] = await server.sessions("CP16")
    assert START_BEFORE_AUTHORIZATION not in session["flags"], session["flags"]
    row = await settled(server, int(session["id"]))
    assert row["settlement_state"] == "paid", row
    assert row["price_minor"] == 339, row


async def test_201_a_start_dated_back_then_bound_by_a_later_event_is_held(
    server: RunningServer,
) -> None:
    """2.0.1: after the remote start was sent, the station reports a Started event with no
    token dated 20 days back, then attaches the token and the remoteStartId in an Updated
    event. The start arrived after the authorization was given: it is compared as one
    reported with it, and held when the session completes."""
    kit, driver = app_driver(server)
    now = datetime.now(UTC)
    async with await RawClient.connect(server.url, "CP201", ["ocpp2.0.1"]) as c:
        await c.result("BootNotification", BOOT201)
        remote = await signed201(server, c, kit, driver)
        await event201(c, "Started", 0, now - timedelta(days=20),
                       meterValue=[{"timestamp": now.isoformat(), "sampledValue": [
                           {"value": 0, "context": "Transaction.Begin"}]}])
        answer = await event201(c, "Updated", 1, datetime.now(UTC),
                                idToken={"idToken": "APP1", "type": "Central"},
                                info={"remoteStartId": remote})
        assert answer["idTokenInfo"]["status"] == "Accepted", answer
        end = now + timedelta(minutes=10)
        with later(server, timedelta(minutes=10)):
            await event201(c, "Ended", 2, end, info={"stoppedReason": "Local"},
                           meterValue=[{"timestamp": end.isoformat(), "sampledValue": [
                               {"value": 1000, "context": "Transaction.End"}]}])
    [session] = await server.sessions("CP201")
    assert START_BEFORE_AUTHORIZATION in session["flags"], session["flags"]
    [event] = await station_events(server, "CP201", START_BEFORE_AUTHORIZATION)
    assert event["transaction_id"] == "T1"
    await held_unpaid(server, kit, driver, int(session["id"]))


async def test_201_energy_delivered_before_the_app_start_is_held(
    server: RunningServer,
) -> None:
    """2.0.1: a transaction reported at plug-in an hour before the driver's app started it,
    its register read 20 kWh on before the remote start was even sent (an honest station
    delivers nothing before its transaction is authorized): the driver signed for none of
    it. Held when it completes, with a station event saying how much, and nothing paid;
    the same transaction charging only after the app start is billed (the test above)."""
    kit, driver = app_driver(server)
    plugged = datetime.now(UTC) - timedelta(hours=1)
    charged = plugged + timedelta(minutes=50)
    async with await RawClient.connect(server.url, "CP201", ["ocpp2.0.1"]) as c:
        await c.result("BootNotification", BOOT201)
        await c.result("TransactionEvent", {
            "eventType": "Started", "timestamp": plugged.isoformat(), "seqNo": 0,
            "triggerReason": "CablePluggedIn",
            "transactionInfo": {"transactionId": "T1", "chargingState": "EVConnected"},
            "evse": {"id": 1, "connectorId": 1},
            "meterValue": [{"timestamp": plugged.isoformat(), "sampledValue": [
                {"value": 0, "context": "Transaction.Begin"}]}]})
        await c.result("TransactionEvent", {
            "eventType": "Updated", "timestamp": charged.isoformat(), "seqNo": 1,
            "triggerReason": "MeterValuePeriodic",
            "transactionInfo": {"transactionId": "T1", "chargingState": "Charging"},
            "meterValue": [{"timestamp": charged.isoformat(), "sampledValue": [
                {"value": 20_000, "context": "Sample.Periodic"}]}]})
        remote = await signed201(server, c, kit, driver)
        answer = await event201(c, "Updated", 2, datetime.now(UTC),
                                idToken={"idToken": "APP1", "type": "Central"},
                                info={"remoteStartId": remote})
        assert answer["idTokenInfo"]["status"] == "Accepted", answer
        end = datetime.now(UTC)
        await event201(c, "Ended", 3, end, info={"stoppedReason": "Local"},
                       meterValue=[{"timestamp": end.isoformat(), "sampledValue": [
                           {"value": 21_000, "context": "Transaction.End"}]}])
    [session] = await server.sessions("CP201")
    assert session["energy_wh"] == 21_000  # as the station reports it, held
    assert ENERGY_BEFORE_AUTHORIZATION in session["flags"], session["flags"]
    [event] = await station_events(server, "CP201", ENERGY_BEFORE_AUTHORIZATION)
    assert (event["transaction_id"], event["energy_before_wh"]) == ("T1", 20_000)
    await held_unpaid(server, kit, driver, int(session["id"]))
