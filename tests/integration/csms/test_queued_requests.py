"""Requests for stations that are offline: firmware updates, log requests and firmware
publications are queued, sent once the station's next BootNotification is accepted (over
real sockets, by the node it connects to), never twice, never after their window, and
not at all once cancelled; the queue survives a restart of the central system."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from chargers_sim import Station
from chargers_sim.maintenance import simulator_image
from csms.config import Settings
from csms.domain.maintenance import FirmwareImage
from csms.filestore import firmware_path
from csms.service.ports import Tx
from support import RunningServer, until
from support.admin import api
from support.client import RawClient

FAST: dict[str, Any] = {"meter_interval": 0.05, "call_timeout": 3, "retry_interval": 0.1}
BOOT_201 = {"reason": "PowerUp", "chargingStation": {"vendorName": "v", "model": "m"}}


async def command(server: RunningServer, station: str, name: str,
                  body: dict[str, Any]) -> tuple[int, Any]:
    return await api(server, "POST", f"/stations/{station}/commands/{name}", body)


async def transfer(server: RunningServer, rid: int) -> Any:
    async def work(tx: Tx) -> Any:
        return await tx.get_transfer(rid)

    return await server.repo.read(work)


async def _status_is(server: RunningServer, rid: int, word: str) -> bool:
    return (await transfer(server, rid)).status == word


async def add_firmware(server: RunningServer, version: str, blob: bytes) -> None:
    digest = hashlib.sha256(blob).hexdigest()
    path = firmware_path(server.settings.data_dir, digest)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(blob)

    async def work(tx: Tx) -> None:
        if await tx.get_firmware(version) is None:
            await tx.add_firmware(FirmwareImage(version, "fw.bin", len(blob), digest,
                                                datetime.now(UTC)))

    await server.repo.unit(work)


async def listed(server: RunningServer, kind: str) -> list[dict[str, Any]]:
    status, rows = await api(server, "GET", f"/transfers?kind={kind}")
    assert status == 200
    return list(rows)


async def audit(server: RunningServer) -> list[dict[str, Any]]:
    return list((await api(server, "GET", "/audit?limit=50"))[1])


@pytest.fixture
async def registered(csms_server: RunningServer) -> RunningServer:
    for sid in ("SIM1", "SIM2"):
        await csms_server.add_station(sid)
    return csms_server


@pytest.mark.parametrize("version", ["1.6", "2.0.1"])
async def test_a_firmware_update_waits_for_the_station_and_installs(
        registered: RunningServer, version: str) -> None:
    await add_firmware(registered, "sim-2.0", simulator_image("sim-2.0"))
    status, result = await command(registered, "SIM1", "update-firmware",
                                   {"version": "sim-2.0", "retries": 1})
    assert status == 202 and result["status"] == "queued", result
    rid = result["request_id"]
    row = (await listed(registered, "firmware"))[0]
    assert row["id"] == rid and row["status"] == "queued" and row["url_open"] is False
    entry = (await audit(registered))[0]
    assert entry["action"] == "update-firmware" and entry["ok"]
    st = Station(registered.url, "SIM1", version, seed=7, **FAST)
    await st.start()
    try:
        await until(lambda: _status_is(registered, rid, "Installed"))
        assert [a for a, _ in st.received_calls].count("UpdateFirmware") == 1
        sent = [e for e in await audit(registered) if e["actor"] == "queue"]
        assert len(sent) == 1 and sent[0]["ok"] and sent[0]["action"] == "update-firmware"
        assert "firmware/" not in str(sent[0])  # no working URL in the audit trail
    finally:
        await st.close()


async def test_a_log_request_waits_for_the_station(registered: RunningServer) -> None:
    status, result = await command(registered, "SIM1", "get-log",
                                   {"type": "SecurityLog", "since": "-1d"})
    assert status == 202, result
    rid = result["request_id"]
    assert (await listed(registered, "log"))[0]["status"] == "queued"
    st = Station(registered.url, "SIM1", "2.0.1", seed=7, **FAST)
    await st.start()
    try:
        await until(lambda: _status_is(registered, rid, "Uploaded"))
        assert len(st.uploads) == 1
        sent = next(p for a, p in st.received_calls if a == "GetLog")
        assert sent["requestId"] == rid and sent["logType"] == "SecurityLog"
        assert "oldestTimestamp" in sent["log"]
    finally:
        await st.close()


async def test_a_window_that_passed_is_never_sent(registered: RunningServer) -> None:
    await add_firmware(registered, "sim-2.0", simulator_image("sim-2.0"))
    status, result = await command(registered, "SIM1", "update-firmware",
                                   {"version": "sim-2.0", "window_end": "+1s"})
    assert status == 202, result
    rid = result["request_id"]

    async def shown_expired() -> bool:
        return (await listed(registered, "firmware"))[0]["status"] == "expired"

    await until(shown_expired)
    async with await RawClient.connect(registered.url, "SIM1", ["ocpp2.0.1"]) as c:
        assert (await c.result("BootNotification", BOOT_201))["status"] == "Accepted"
        await _first_call_is_the_trigger(registered, c, "SIM1")
    assert (await transfer(registered, rid)).status == "expired"


async def _first_call_is_the_trigger(server: RunningServer, c: RawClient, sid: str) -> None:
    """Nothing queued reaches the station: the first CALL it gets after its boot is the
    operator's TriggerMessage sent now (a queued CALL would have gone first: one CALL at
    a time per connection, and the queued ones start as soon as the boot is answered)."""
    task = asyncio.create_task(command(server, sid, "trigger", {"message": "Heartbeat"}))
    call = await asyncio.wait_for(c.calls.get(), 5)
    assert call[2] == "TriggerMessage", call
    await c.answer(call[1], {"status": "Accepted"})
    assert (await task)[0] == 200


async def test_cancel_a_queued_request(registered: RunningServer) -> None:
    status, result = await command(registered, "SIM1", "get-log", {})
    assert status == 202
    rid = result["request_id"]
    # only a request of the kinds named, only while queued
    status, answer = await api(registered, "POST", f"/transfers/{rid}/cancel",
                               {"kinds": ["firmware", "publish"]})
    assert status == 400 and "no request" in answer["error"]
    for bad in ({"kinds": []}, {"kinds": ["sessions"]}, {"kinds": "log"}):
        assert (await api(registered, "POST", f"/transfers/{rid}/cancel", bad))[0] == 400
    status, answer = await api(registered, "POST", f"/transfers/{rid}/cancel",
                               {"kinds": ["log"]})
    assert status == 200 and answer == {"status": "cancelled", "request_id": rid}
    status, answer = await api(registered, "POST", f"/transfers/{rid}/cancel",
                               {"kinds": ["log"]})
    assert status == 400 and "cancelled" in answer["error"]
    for wrong in ("999999", "0", "x", str(2**64)):
        assert (await api(registered, "POST", f"/transfers/{wrong}/cancel", {}))[0] in (
            400, 404)
    assert [e["action"] for e in (await audit(registered))[:3]] == [
        "cancel-transfer"] * 3
    async with await RawClient.connect(registered.url, "SIM1", ["ocpp2.0.1"]) as c:
        assert (await c.result("BootNotification", BOOT_201))["status"] == "Accepted"
        await _first_call_is_the_trigger(registered, c, "SIM1")
    assert (await transfer(registered, rid)).status == "cancelled"
    # a request that was sent cannot be called back
    status, result = await command(registered, "SIM1", "get-log", {})
    async with await RawClient.connect(registered.url, "SIM1", ["ocpp2.0.1"]) as c:
        assert (await c.result("BootNotification", BOOT_201))["status"] == "Accepted"
        call = await asyncio.wait_for(c.calls.get(), 5)
        assert call[2] == "GetLog" and call[3]["requestId"] == result["request_id"]
        await c.answer(call[1], {"status": "Accepted", "filename": "x.log"})
        await until(lambda: _status_is(registered, result["request_id"], "Accepted"))
    status, answer = await api(registered, "POST",
                               f"/transfers/{result['request_id']}/cancel", {})
    assert status == 400 and "Accepted" in answer["error"]


async def test_not_before_an_accepted_boot_and_never_twice(registered: RunningServer) -> None:
    """A station that connects but is not booted yet gets nothing. Two boots in a row,
    and a reconnect while the request is on its way, never send it twice: the first
    connection got it (unanswered, it ends Offline)."""
    status, result = await command(registered, "SIM1", "get-log", {})
    assert status == 202
    rid = result["request_id"]
    async with await RawClient.connect(registered.url, "SIM1", ["ocpp2.0.1"]) as first:
        await registered.wait_connected("SIM1")
        assert (await first.result("Heartbeat", {})) is not None
        assert first.calls.empty() and (await transfer(registered, rid)).status == "queued"
        # two boots back to back on the same connection
        boots = [asyncio.create_task(first.call("BootNotification", BOOT_201))
                 for _ in range(2)]
        await asyncio.gather(*boots)
        call = await asyncio.wait_for(first.calls.get(), 5)
        assert call[2] == "GetLog" and call[3]["requestId"] == rid
        assert (await transfer(registered, rid)).status == "sending"
        # not answered: the station reconnects (a new socket replaces this one) and boots
        async with await RawClient.connect(registered.url, "SIM1",
                                           ["ocpp2.0.1"]) as second:
            assert (await second.result("BootNotification", BOOT_201))["status"] == "Accepted"
            await _first_call_is_the_trigger(registered, second, "SIM1")
        assert first.calls.empty()
    await until(lambda: _status_is(registered, rid, "Offline"))


async def test_a_pending_boot_does_not_release_the_queue(tmp_path: Path) -> None:
    settings = Settings(db=str(tmp_path / "db.sqlite3"), host="127.0.0.1", port=0,
                        admin_port=0, data_dir=str(tmp_path / "data"), call_timeout=5)
    server = RunningServer(settings)
    await server.start()
    try:
        await server.add_station("SIM1", boot="pending")
        status, result = await command(server, "SIM1", "get-log", {})
        assert status == 202
        async with await RawClient.connect(server.url, "SIM1", ["ocpp2.0.1"]) as c:
            assert (await c.result("BootNotification", BOOT_201))["status"] == "Pending"
            # B02.FR.09: refused while Pending (tests/integration/csms/
            # test_boot_not_accepted_v201.py)
            assert (await c.call("Heartbeat", {}))[2] == "SecurityError"
            assert c.calls.empty()
        assert (await transfer(server, result["request_id"])).status == "queued"
    finally:
        await server.stop()


async def test_the_queue_survives_a_restart(registered: RunningServer) -> None:
    await add_firmware(registered, "sim-2.0", simulator_image("sim-2.0"))
    status, result = await command(registered, "SIM1", "update-firmware",
                                   {"version": "sim-2.0", "window_start": "now",
                                    "window_end": "+1h"})
    assert status == 202
    rid = result["request_id"]
    await registered.restart()
    st = Station(registered.url, "SIM1", "2.0.1", seed=7, **FAST)
    await st.start()
    try:
        await until(lambda: _status_is(registered, rid, "Installed"))
        sent = next(p for a, p in st.received_calls if a == "UpdateFirmware")
        assert sent["requestId"] == rid
    finally:
        await st.close()


@pytest.mark.postgres
@contextlib.asynccontextmanager
async def _two_nodes(postgres_url: str, tmp_path: Path) -> AsyncIterator[list[RunningServer]]:
    """Two nodes of one PostgreSQL database, started, and stopped after."""
    base = Settings(db=postgres_url, host="127.0.0.1", port=0, admin_port=0,
                    call_timeout=5, data_dir=str(tmp_path / "a"), node_id="node-a")
    nodes = [RunningServer(base),
             RunningServer(replace(base, data_dir=str(tmp_path / "b"), node_id="node-b"))]
    for node in nodes:
        await node.start()
    try:
        yield nodes
    finally:
        for node in nodes:
            await node.stop()


async def test_two_nodes_on_one_database_send_it_once(postgres_url: str,
                                                      tmp_path: Path) -> None:
    """The station connects to two nodes of one PostgreSQL database at once and boots on
    both together: exactly one node sends the queued request."""
    async with _two_nodes(postgres_url, tmp_path) as nodes:
        await nodes[0].add_station("SIM1")
        for round_ in range(3):
            status, result = await command(nodes[round_ % 2], "SIM1", "get-log", {})
            assert status == 202, result
            rid = result["request_id"]
            clients = [await RawClient.connect(n.url, "SIM1", ["ocpp2.0.1"]) for n in nodes]
            try:
                for node in nodes:
                    await node.wait_connected("SIM1")
                answers = await asyncio.gather(*(c.result("BootNotification", BOOT_201)
                                                 for c in clients))
                assert all(a["status"] == "Accepted" for a in answers)
                await _sent_once(nodes, clients, rid, round_)
            finally:
                for c in clients:
                    await c.close()


async def _sent_once(nodes: list[RunningServer], clients: list[RawClient], rid: int,
                     round_: int) -> None:
    """Every CALL either connection gets is answered and recorded until the request
    ``rid`` is Accepted (within 20 s, below the nodes' first sweep, 30 s, which would send
    it too); each connection is live past the queue then; the request went out once, and
    nothing but it and the triggers."""
    got: list[list[Any]] = [[], []]
    answering = [asyncio.create_task(_answer_all(c, got[n])) for n, c in enumerate(clients)]
    try:
        await until(lambda: _status_is(nodes[0], rid, "Accepted"), timeout=20)
    except AssertionError:  # seen once in CI, under load: say where it stood
        stood = (await transfer(nodes[0], rid)).status
        raise AssertionError(f"round {round_}: request {rid} is {stood!r};"
                             f" calls seen by each connection: {got}") from None
    for node in nodes:
        assert (await command(node, "SIM1", "trigger", {"message": "Heartbeat"}))[0] == 200
    for task in answering:
        task.cancel()
    sent = [(n, c[3]["requestId"]) for n in (0, 1) for c in got[n] if c[2] == "GetLog"]
    assert len(sent) == 1 and sent[0][1] == rid, got
    assert all(c[2] in ("GetLog", "TriggerMessage") for g in got for c in g)


async def _answer_all(client: RawClient, seen: list[list[Any]]) -> None:
    while True:
        call = await client.calls.get()
        seen.append(call)
        await client.answer(call[1], {"status": "Accepted"} if call[2] != "GetLog" else
                            {"status": "Accepted", "filename": "x.log"})


# -- a station that reconnects without a BootNotification ---------------------------------

BOOT_16 = {"chargePointVendor": "v", "chargePointModel": "m"}
SUBPROTOCOL = {"1.6": "ocpp1.6", "2.0.1": "ocpp2.0.1"}
BOOT = {"1.6": BOOT_16, "2.0.1": BOOT_201}
FIRMWARE_ANSWER: dict[str, dict[str, Any]] = {"1.6": {}, "2.0.1": {"status": "Accepted"}}


def _status_notification(version: str) -> dict[str, Any]:
    if version == "1.6":
        return {"connectorId": 1, "errorCode": "NoError", "status": "Available"}
    return {"timestamp": datetime.now(UTC).isoformat(), "connectorStatus": "Available",
            "evseId": 1, "connectorId": 1}


async def _connect(server: RunningServer, sid: str, version: str,
                   password: str | None = None) -> RawClient:
    client = await RawClient.connect(server.url, sid, [SUBPROTOCOL[version]], password)
    await server.wait_connected(sid)
    return client


async def _gone(server: RunningServer, sid: str) -> None:
    """Wait until the station is connected nowhere (its requests are queued, not sent)."""

    async def offline() -> bool:
        return sid not in server.central.connections

    await until(offline, f"{sid} offline")


async def _booted_then_gone(server: RunningServer, sid: str, version: str,
                            expect: str = "Accepted", password: str | None = None) -> None:
    """The station boots (answered ``expect``) and drops its connection."""
    async with await _connect(server, sid, version, password) as c:
        assert (await c.result("BootNotification", BOOT[version]))["status"] == expect
    await _gone(server, sid)


async def _queue_firmware(server: RunningServer, sid: str) -> int:
    await add_firmware(server, "sim-2.0", simulator_image("sim-2.0"))
    status, result = await command(server, sid, "update-firmware", {"version": "sim-2.0"})
    assert status == 202 and result["status"] == "queued", result
    return int(result["request_id"])


async def _gets_the_update(server: RunningServer, c: RawClient, version: str,
                           rid: int) -> None:
    """The next CALL the station gets is the queued UpdateFirmware; it is answered."""
    call = await asyncio.wait_for(c.calls.get(), 5)
    assert call[2] == "UpdateFirmware", call
    if version == "2.0.1":
        assert call[3]["requestId"] == rid
    await c.answer(call[1], FIRMWARE_ANSWER[version])
    await until(lambda: _status_is(server, rid, "Accepted"))


async def _nothing_sent(server: RunningServer, c: RawClient, sid: str) -> None:
    """Nothing queued reaches the station: the first CALL it gets is a TriggerMessage
    sent now (a queued CALL would go first)."""
    await asyncio.sleep(0.2)
    await _first_call_is_the_trigger(server, c, sid)


@pytest.mark.parametrize("version", ["1.6", "2.0.1"])
async def test_a_reconnect_without_a_boot_gets_the_queue_once_heard(
        registered: RunningServer, version: str) -> None:
    """The station's last boot was accepted; it comes back without a BootNotification:
    nothing before its first message, the queued update once that is answered, and only
    once (more messages, and the node's sweep, do not send it again)."""
    await _booted_then_gone(registered, "SIM1", version)
    rid = await _queue_firmware(registered, "SIM1")
    async with await _connect(registered, "SIM1", version) as c:
        await asyncio.sleep(0.2)
        assert c.calls.empty() and (await transfer(registered, rid)).status == "queued"
        assert (await c.call("Heartbeat", {}))[0] == 3
        await _gets_the_update(registered, c, version, rid)
        assert (await c.call("StatusNotification", _status_notification(version)))[0] == 3
        assert (await c.call("Heartbeat", {}))[0] == 3
        assert registered.app is not None and registered.app.admin is not None
        assert await registered.app.admin.operator.send_queued("SIM1") == []
        await _nothing_sent(registered, c, "SIM1")
    sent = [e for e in await audit(registered) if e["actor"] == "queue"]
    assert len(sent) == 1 and sent[0]["action"] == "update-firmware", sent


@pytest.mark.parametrize("version", ["1.6", "2.0.1"])
@pytest.mark.parametrize("last_boot", ["pending", "rejected", "never"])
async def test_no_queue_without_a_boot_unless_the_last_boot_was_accepted(
        registered: RunningServer, version: str, last_boot: str) -> None:
    """A station whose last boot was Pending or Rejected (its registration accepts it
    since), or that never booted, gets nothing before a BootNotification is accepted;
    then it gets the request once. (A 2.0.1 station last answered Pending or Rejected
    is refused its messages until then: test_boot_not_accepted_v201.py.)"""
    if last_boot != "never":
        await registered.set_boot("SIM1", last_boot)
        await _booted_then_gone(registered, "SIM1", version, last_boot.capitalize())
        await registered.set_boot("SIM1", "accepted")
    rid = await _queue_firmware(registered, "SIM1")
    served = 4 if version == "2.0.1" and last_boot != "never" else 3
    async with await _connect(registered, "SIM1", version) as c:
        assert (await c.call("Heartbeat", {}))[0] == served
        assert (await c.call("StatusNotification", _status_notification(version)))[0] == served
        await _nothing_sent(registered, c, "SIM1")
        assert (await transfer(registered, rid)).status == "queued"
        assert (await c.result("BootNotification", BOOT[version]))["status"] == "Accepted"
        await _gets_the_update(registered, c, version, rid)
        await _nothing_sent(registered, c, "SIM1")


@pytest.mark.parametrize("version", ["1.6", "2.0.1"])
async def test_a_reconnect_that_opens_with_a_boot_gets_it_once(
        registered: RunningServer, version: str) -> None:
    """A reconnect that opens with a BootNotification (then other messages), and one whose
    first Heartbeat and BootNotification come back to back: the request is sent once."""
    await _booted_then_gone(registered, "SIM1", version)
    rid = await _queue_firmware(registered, "SIM1")
    async with await _connect(registered, "SIM1", version) as c:
        assert (await c.result("BootNotification", BOOT[version]))["status"] == "Accepted"
        assert (await c.call("Heartbeat", {}))[0] == 3
        await _gets_the_update(registered, c, version, rid)
        assert (await c.call("Heartbeat", {}))[0] == 3
        await _nothing_sent(registered, c, "SIM1")
    await _gone(registered, "SIM1")
    rid = await _queue_firmware(registered, "SIM1")
    async with await _connect(registered, "SIM1", version) as c:
        await asyncio.gather(c.call("Heartbeat", {}), c.call("BootNotification", BOOT[version]))
        await _gets_the_update(registered, c, version, rid)
        await _nothing_sent(registered, c, "SIM1")
    sent = [e for e in await audit(registered) if e["actor"] == "queue"]
    assert len(sent) == 2, sent


@pytest.mark.parametrize("version", ["1.6", "2.0.1"])
async def test_a_reconnect_without_a_boot_after_a_restart(
        registered: RunningServer, version: str) -> None:
    """The accepted boot is kept in the database: after a restart of the central system
    (a new server on the same database file) the station that comes back without a
    BootNotification gets its queued request after its first message."""
    await _booted_then_gone(registered, "SIM1", version)
    rid = await _queue_firmware(registered, "SIM1")
    await registered.restart()
    async with await _connect(registered, "SIM1", version) as c:
        assert (await c.call("StatusNotification", _status_notification(version)))[0] == 3
        await _gets_the_update(registered, c, version, rid)


async def test_a_registration_changed_since_the_boot_releases_nothing(
        registered: RunningServer) -> None:
    """The operator set the station to Pending after its accepted boot: its reconnect
    without a BootNotification gets nothing; nor does a station that booted on 1.6 and
    comes back speaking 2.0.1 without a BootNotification."""
    await _booted_then_gone(registered, "SIM1", "2.0.1")
    await registered.set_boot("SIM1", "pending")
    rid = await _queue_firmware(registered, "SIM1")
    async with await _connect(registered, "SIM1", "2.0.1") as c:
        assert (await c.call("Heartbeat", {}))[0] == 3
        await asyncio.sleep(0.3)
        assert c.calls.empty() and (await transfer(registered, rid)).status == "queued"
        assert (await c.result("BootNotification", BOOT_201))["status"] == "Pending"
        await asyncio.sleep(0.3)
        assert c.calls.empty() and (await transfer(registered, rid)).status == "queued"
    await _gone(registered, "SIM1")
    await _booted_then_gone(registered, "SIM2", "1.6")
    status, result = await command(registered, "SIM2", "get-log", {})
    assert status == 202, result
    async with await _connect(registered, "SIM2", "2.0.1") as c:
        assert (await c.call("Heartbeat", {}))[0] == 3
        await _nothing_sent(registered, c, "SIM2")
    assert (await transfer(registered, result["request_id"])).status == "queued"


async def test_a_station_cannot_release_another_stations_queue(
        csms_server: RunningServer) -> None:
    """Station A's messages release A's queue only; a connection as B with A's password,
    or with a wrong one, is refused and releases nothing."""
    pw_a, pw_b = "a-password-of-twenty", "b-password-of-twenty"
    await csms_server.add_station("A", pw_a)
    await csms_server.add_station("B", pw_b)
    for sid, pw in (("A", pw_a), ("B", pw_b)):
        await _booted_then_gone(csms_server, sid, "2.0.1", password=pw)
    rid = await _queue_firmware(csms_server, "B")
    for password, user in ((pw_a, "A"), (pw_a, None), ("wrong-password-of-20", None)):
        with pytest.raises(Exception):  # noqa: B017 - refused at the handshake (401)
            await RawClient.connect(csms_server.url, "B", ["ocpp2.0.1"], password, user)
    async with await _connect(csms_server, "A", "2.0.1", pw_a) as c:
        for action, payload in (("Heartbeat", {}),
                                ("StatusNotification", _status_notification("2.0.1"))):
            assert (await c.call(action, payload))[0] == 3
        await _nothing_sent(csms_server, c, "A")
    assert (await transfer(csms_server, rid)).status == "queued"
    async with await _connect(csms_server, "B", "2.0.1", pw_b) as c:
        assert (await c.call("Heartbeat", {}))[0] == 3
        await _gets_the_update(csms_server, c, "2.0.1", rid)


async def test_the_sweep_sends_to_a_station_heard_without_a_boot(
        registered: RunningServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """A request queued while its station was reconnecting (here, recorded as queued after
    the station's first message) goes out at the node's next sweep: the station's last
    boot was accepted, and it was heard on this connection."""
    from csms.service import defaults

    monkeypatch.setattr(defaults, "QUEUE_SWEEP_SECONDS", 0.2)
    await registered.restart()  # the sweep's wait is read when it starts waiting
    await _booted_then_gone(registered, "SIM1", "2.0.1")
    app = registered.app
    assert app is not None and app.admin is not None
    async with await _connect(registered, "SIM1", "2.0.1") as c:
        assert (await c.call("Heartbeat", {}))[0] == 3
        await asyncio.sleep(0.3)
        recorded = await app.admin.operator.maintenance.prepare("SIM1", "get-log", {}, queued=True)
        rid = recorded["request_id"]
        call = await asyncio.wait_for(c.calls.get(), 5)
        assert call[2] == "GetLog" and call[3]["requestId"] == rid, call
        await c.answer(call[1], {"status": "Accepted", "filename": "x.log"})
        await until(lambda: _status_is(registered, rid, "Accepted"))


@pytest.mark.postgres
async def test_two_nodes_send_it_once_to_a_reconnect_without_a_boot(
        postgres_url: str, tmp_path: Path) -> None:
    """The station booted (accepted) on node A; it comes back without a BootNotification
    to node B, then to both nodes at once: each queued request is sent exactly once."""
    async with _two_nodes(postgres_url, tmp_path) as nodes:
        await nodes[0].add_station("SIM1")
        await _booted_then_gone(nodes[0], "SIM1", "2.0.1")
        status, result = await command(nodes[0], "SIM1", "get-log", {})
        assert status == 202, result
        rid = result["request_id"]
        async with await _connect(nodes[1], "SIM1", "2.0.1") as c:
            assert (await c.call("Heartbeat", {}))[0] == 3
            call = await asyncio.wait_for(c.calls.get(), 5)
            assert call[2] == "GetLog" and call[3]["requestId"] == rid, call
            await c.answer(call[1], {"status": "Accepted", "filename": "x.log"})
            await until(lambda: _status_is(nodes[0], rid, "Accepted"))
        await _gone(nodes[1], "SIM1")
        for round_ in range(3):
            status, result = await command(nodes[round_ % 2], "SIM1", "get-log", {})
            assert status == 202, result
            rid = result["request_id"]
            clients = [await RawClient.connect(n.url, "SIM1", ["ocpp2.0.1"]) for n in nodes]
            try:
                for node in nodes:
                    await node.wait_connected("SIM1")
                answers = await asyncio.gather(*(c.call("Heartbeat", {}) for c in clients))
                assert all(a[0] == 3 for a in answers), answers
                await _sent_once(nodes, clients, rid, round_)
            finally:
                for c in clients:
                    await c.close()
            for node in nodes:
                await _gone(node, "SIM1")


async def test_a_request_claimed_as_a_pending_boot_is_answered_goes_back_unsent(
        registered: RunningServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """The station is heard without a boot (its last boot was accepted) and its request is
    claimed; before it goes out, the station boots and is answered Pending (the operator
    set it so): the request is not sent, it is queued again, and goes out once a later
    boot is accepted."""
    await _booted_then_gone(registered, "SIM1", "2.0.1")
    rid = await _queue_firmware(registered, "SIM1")
    service = registered.central.service
    claim = service.claim_queued
    claimed, answered = asyncio.Event(), asyncio.Event()

    async def held_claim(station_id: str) -> Any:
        got = await claim(station_id)
        if got is not None and not claimed.is_set():
            claimed.set()
            await answered.wait()
        return got

    monkeypatch.setattr(service, "claim_queued", held_claim)
    async with await _connect(registered, "SIM1", "2.0.1") as c:
        assert (await c.call("Heartbeat", {}))[0] == 3
        await asyncio.wait_for(claimed.wait(), 5)
        assert (await transfer(registered, rid)).status == "sending"
        await registered.set_boot("SIM1", "pending")
        assert (await c.result("BootNotification", BOOT_201))["status"] == "Pending"
        answered.set()
        await until(lambda: _status_is(registered, rid, "queued"))
        await asyncio.sleep(0.2)
        assert c.calls.empty()
        await registered.set_boot("SIM1", "accepted")
        assert (await c.result("BootNotification", BOOT_201))["status"] == "Accepted"
        await _gets_the_update(registered, c, "2.0.1", rid)
        await _nothing_sent(registered, c, "SIM1")


async def test_a_boot_accepted_while_the_first_message_is_looked_at_sends_at_once(
        registered: RunningServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """The station comes without a boot (it never booted: nothing is released; one last
    answered Pending is not even looked for, its first message is refused) and, while
    its first message's look at the queue is still running, boots and is accepted: the
    boot's send waits for that look to end and then runs, rather than leaving the request
    for the node's next sweep."""
    rid = await _queue_firmware(registered, "SIM1")
    service = registered.central.service
    release = service.queue_released
    looking, accepted = asyncio.Event(), asyncio.Event()

    async def slow_look(station_id: str, version: str) -> bool:
        released = await release(station_id, version)  # no stored boot: False
        if not looking.is_set():
            looking.set()
            await accepted.wait()
            await asyncio.sleep(0.2)  # the boot's own send is asked for meanwhile
        return released

    monkeypatch.setattr(service, "queue_released", slow_look)
    async with await _connect(registered, "SIM1", "2.0.1") as c:
        assert (await c.call("Heartbeat", {}))[0] == 3
        await asyncio.wait_for(looking.wait(), 5)
        assert (await c.result("BootNotification", BOOT_201))["status"] == "Accepted"
        accepted.set()
        await _gets_the_update(registered, c, "2.0.1", rid)
        await _nothing_sent(registered, c, "SIM1")
