"""A driver's signed app session binds the session of the remote start it was accepted for,
and no other, through real sockets, the admin API and the py-evm chain: a stranger who
knows the app session's tag (a plain string) presents it at the station after the remote
start failed, or on 2.0.1 without its remoteStartId, or on 1.6 after its window or on
another connector than the remote start named."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest

from settlement import wallet
from support import RunningServer, station_events
from support.client import RawClient

from .test_app_session_attacks import app_driver, bound_to, stored
from .test_credit import BOOT16, BOOT201, _on_chain, settling, start16


@pytest.fixture
async def server(csms_server: RunningServer) -> RunningServer:
    return await settling(csms_server, "CP16", "CP201")


async def post_start(server: RunningServer, station: str, body: Any) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as http, http.post(
            f"{server.admin_url}/stations/{station}/commands/start", json=body,
            headers={"Authorization": f"Bearer {server.admin_token}",
                     "X-Actor": "app-backend"}) as r:
        return r.status, await r.json()


async def signed(server: RunningServer, station: str, nonce: int = 1) -> dict[str, Any]:
    kit, driver = app_driver(server)
    idx = await _on_chain(server, kit, station)
    return wallet.authorize(kit.chain, driver, idx[station], max_per_kwh=40,
                            max_amount=900, nonce=nonce,
                            expiry=int(time.time()) + 7200).as_json()


async def connect16(server: RunningServer) -> RawClient:
    c = await RawClient.connect(server.url, "CP16", ["ocpp1.6"])
    await c.result("BootNotification", BOOT16)
    return c


@pytest.mark.parametrize("failure", ["Rejected", "Timeout", "Offline"])
async def test_a_failed_remote_start_leaves_no_authorization_for_a_stranger(
    server: RunningServer, failure: str,
) -> None:
    """The station refuses the remote start, does not answer in time, or goes away before
    answering: the driver's signature is withdrawn, and a stranger who presents the tag at
    the station afterwards (the station back, the late answer sent) charges on nothing."""
    auth = await signed(server, "CP16")
    c = await connect16(server)
    try:
        body: dict[str, Any] = {"tag": "APP1", "authorization": auth}
        if failure == "Timeout":
            body["timeout"] = 0.5
        started = asyncio.create_task(post_start(server, "CP16", body))
        call = await asyncio.wait_for(c.calls.get(), 10)
        assert call[2] == "RemoteStartTransaction" and call[3]["idTag"] == "APP1"
        if failure == "Rejected":
            await c.answer(call[1], {"status": "Rejected"})
        elif failure == "Offline":
            await c.close()
        status, answer = await started
        assert (status, answer["status"]) == {"Rejected": (200, "Rejected"),
                                              "Timeout": (504, "Timeout"),
                                              "Offline": (409, "Offline")}[failure], answer
        if failure == "Timeout":
            await c.answer(call[1], {"status": "Accepted"})  # too late
        elif failure == "Offline":
            c = await connect16(server)
        assert (await c.result("Authorize", {"idTag": "APP1"}))["idTagInfo"]["status"] \
            == "Invalid"
        assert await start16(c, "APP1") == "Invalid"
    finally:
        await c.close()
    [session] = await server.sessions("CP16")
    assert await bound_to(server, session["id"]) is None
    [row] = await stored(server)
    assert row["start_state"] == "withdrawn" and row["session_id"] is None
    [event] = await station_events(server, "CP16", "authorization_withdrawn")
    assert event["tag"] == "APP1" and event["reason"] == failure


async def test_a_station_connected_nowhere_keeps_no_authorization(
    server: RunningServer,
) -> None:
    auth = await signed(server, "CP16")
    status, answer = await post_start(server, "CP16", {"tag": "APP1", "authorization": auth})
    assert status == 409 and answer["status"] == "Offline", answer
    assert await stored(server) == []
    async with await connect16(server) as c:
        assert await start16(c, "APP1") == "Invalid"


async def test_an_accepted_16_start_binds_within_its_window_only(
    server: RunningServer,
) -> None:
    """1.6 reports no id of the remote start: the tag at the station binds the signature
    within the window after the station accepted it, not later."""
    server.app.service.remote_start_window = 1
    auth = await signed(server, "CP16")
    async with await connect16(server) as c:
        started = asyncio.create_task(post_start(server, "CP16",
                                                 {"tag": "APP1", "authorization": auth}))
        call = await asyncio.wait_for(c.calls.get(), 10)
        await c.answer(call[1], {"status": "Accepted"})
        status, answer = await started
        assert status == 200 and answer["status"] == "Accepted", answer
        await asyncio.sleep(2.2)
        assert await start16(c, "APP1") == "Invalid"
    [session] = await server.sessions("CP16")
    assert await bound_to(server, session["id"]) is None


@pytest.mark.parametrize("connector", [1, 2, 2**64 + 2], ids=["1", "2", "beyond-64-bits"])
async def test_a_16_remote_start_on_a_connector_binds_a_start_on_that_connector_only(
    server: RunningServer, connector: int,
) -> None:
    """The remote start asked for connector 2. A stranger who knows the tag (a plain
    string) starts with it on connector 1 within the window, or on a connector beyond 64
    bits (read as none): that session is not the driver's and is not bound; the driver's
    own start on connector 2 then is. A start on the connector asked binds at once."""
    auth = await signed(server, "CP16")
    async with await connect16(server) as c:
        started = asyncio.create_task(post_start(
            server, "CP16", {"tag": "APP1", "authorization": auth, "connector": 2}))
        call = await asyncio.wait_for(c.calls.get(), 10)
        assert call[3] == {"idTag": "APP1", "connectorId": 2}
        await c.answer(call[1], {"status": "Accepted"})
        status, answer = await started
        assert status == 200 and answer["status"] == "Accepted", answer
        if connector != 2:
            assert await start16(c, "APP1", connector=connector) == "Invalid"  # a stranger's
        assert await start16(c, "APP1", connector=2) == "Accepted"  # the driver's
    sessions = {s["connector_id"]: s for s in await server.sessions("CP16")}
    stranger = 1 if connector == 1 else None  # beyond 64 bits: stored as no connector
    assert set(sessions) == ({stranger, 2} if connector != 2 else {2})
    row = await bound_to(server, sessions[2]["id"])
    assert row is not None and row["start_state"] == "accepted"
    if connector != 2:
        assert await bound_to(server, sessions[stranger]["id"]) is None


async def test_an_accepted_16_start_answered_and_started_at_once_is_bound(
    server: RunningServer,
) -> None:
    """A station sends its StartTransaction right behind its answer to the remote start,
    and it is handled before the answer is stored (here the answer is stored half a second
    late, as behind a busy database): the driver's session is bound."""
    service = server.app.service
    record = service.remote_start_answered

    async def slow(*args: Any) -> None:
        await asyncio.sleep(0.5)
        await record(*args)

    service.remote_start_answered = slow  # type: ignore[method-assign]
    auth = await signed(server, "CP16")
    async with await connect16(server) as c:
        started = asyncio.create_task(post_start(server, "CP16",
                                                 {"tag": "APP1", "authorization": auth}))
        call = await asyncio.wait_for(c.calls.get(), 10)
        await c.answer(call[1], {"status": "Accepted"})
        assert await start16(c, "APP1") == "Accepted"
        assert (await started)[0] == 200
    [session] = await server.sessions("CP16")
    row = await bound_to(server, session["id"])
    assert row is not None and row["start_state"] == "accepted"


async def event201(c: RawClient, txid: str, tag: str,
                   remote_start_id: int | None) -> str:
    info: dict[str, Any] = {"transactionId": txid, "chargingState": "Charging"}
    if remote_start_id is not None:
        info["remoteStartId"] = remote_start_id
    answer = await c.result("TransactionEvent", {
        "eventType": "Started", "timestamp": datetime.now(UTC).isoformat(),
        "triggerReason": "RemoteStart", "seqNo": 0, "transactionInfo": info,
        "evse": {"id": 1, "connectorId": 1},
        "idToken": {"idToken": tag, "type": "Central"}})
    return str(answer["idTokenInfo"]["status"])


async def test_201_binds_the_transaction_that_reports_the_remote_start_id(
    server: RunningServer,
) -> None:
    """2.0.1 E02/F01: the Started event of the remote start reports its remoteStartId. A
    Started event with the tag and no remoteStartId, or another one, binds nothing."""
    auth = await signed(server, "CP201")
    async with await RawClient.connect(server.url, "CP201", ["ocpp2.0.1"]) as c:
        await c.result("BootNotification", BOOT201)
        started = asyncio.create_task(post_start(server, "CP201",
                                                 {"tag": "APP1", "authorization": auth}))
        call = await asyncio.wait_for(c.calls.get(), 10)
        assert call[2] == "RequestStartTransaction"
        remote_start_id = call[3]["remoteStartId"]
        await c.answer(call[1], {"status": "Accepted"})
        assert (await started)[0] == 200
        assert await event201(c, "STRANGER1", "APP1", None) == "Unknown"
        assert await event201(c, "STRANGER2", "APP1", remote_start_id + 1) == "Unknown"
        assert await event201(c, "DRIVER", "APP1", remote_start_id) == "Accepted"
    sessions = {s["transaction_id"]: s for s in await server.sessions("CP201")}
    assert await bound_to(server, sessions["STRANGER1"]["id"]) is None
    assert await bound_to(server, sessions["STRANGER2"]["id"]) is None
    row = await bound_to(server, sessions["DRIVER"]["id"])
    assert row is not None and row["remote_start_id"] == remote_start_id


async def test_201_a_rejected_remote_start_binds_nothing(server: RunningServer) -> None:
    auth = await signed(server, "CP201")
    async with await RawClient.connect(server.url, "CP201", ["ocpp2.0.1"]) as c:
        await c.result("BootNotification", BOOT201)
        started = asyncio.create_task(post_start(server, "CP201",
                                                 {"tag": "APP1", "authorization": auth}))
        call = await asyncio.wait_for(c.calls.get(), 10)
        await c.answer(call[1], {"status": "Rejected"})
        assert (await started)[1]["status"] == "Rejected"
        assert await event201(c, "T1", "APP1", call[3]["remoteStartId"]) == "Unknown"
    [row] = await stored(server)
    assert row["start_state"] == "withdrawn" and row["session_id"] is None


@pytest.mark.parametrize("value", [None, False, 0, "", [], "null"])
async def test_an_authorization_that_is_no_object_is_refused_and_audited(
    server: RunningServer, value: Any,
) -> None:
    """``authorization: null`` (or any value that is no object) is not a start without
    one: 400 with a clear message, audited, nothing sent to the station."""
    async with await connect16(server) as c:
        status, answer = await post_start(server, "CP16", {"tag": "APP1",
                                                           "authorization": value})
        assert status == 400, answer
        assert answer["error"].startswith("authorization must be a JSON object"), answer
        assert c.calls.empty()
    assert await stored(server) == []

    async def audit(tx: Any) -> list[dict[str, Any]]:
        return await tx.list_audit(10)

    [entry] = await server.repo.read(audit)
    assert (entry["actor"], entry["claimed_actor"], entry["action"], entry["target"],
            entry["ok"]) == ("admin@127.0.0.1", "app-backend", "start", "CP16", False), entry
    assert entry["result"] == answer
