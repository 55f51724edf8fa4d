"""Id tag groups and master passes over real sockets: Authorize and transaction answers
carry the group (1.6 parentIdTag, 2.0.1 groupIdToken); a tag of the session's group or its
master pass may end it; anyone else's stop is acknowledged, answered Invalid and recorded."""

from __future__ import annotations

import json
from typing import Any

import pytest

from csms.domain.model import IdTag
from csms.service.ports import Tx
from support import RunningServer, csms_cli, station_events
from support.client import RawClient


async def tags(server: RunningServer) -> None:
    async def work(tx: Tx) -> None:
        for tag, group, master in (("ALICE", "FLEET-A", False), ("BOB", "FLEET-A", False),
                                   ("BOSS-A", "FLEET-A", True), ("BOSS-B", "FLEET-B", True),
                                   ("FLEET-A", None, False), ("LONER", None, False)):
            await tx.put_tag(IdTag(tag, "accepted", None, group, master))

    await server.repo.unit(work)


async def start16(c: RawClient, minute: int) -> int:
    answer = await c.result("StartTransaction", {
        "connectorId": 1, "idTag": "ALICE", "meterStart": 1000,
        "timestamp": f"2026-03-01T10:{minute:02d}:00Z"})
    assert answer["idTagInfo"] == {"status": "Accepted", "parentIdTag": "FLEET-A"}
    return int(answer["transactionId"])


async def stop16(c: RawClient, txid: int, tag: str, minute: int) -> dict[str, Any]:
    return await c.result("StopTransaction", {
        "transactionId": txid, "idTag": tag, "meterStop": 2000,
        "timestamp": f"2026-03-01T10:{minute:02d}:30Z", "reason": "Local"})


async def test_1_6_authorize_carries_the_group(csms_server: RunningServer) -> None:
    await csms_server.add_station("CP1")
    await tags(csms_server)
    async with await RawClient.connect(csms_server.url, "CP1", ["ocpp1.6"]) as c:
        assert await c.result("Authorize", {"idTag": "BOB"}) == {
            "idTagInfo": {"status": "Accepted", "parentIdTag": "FLEET-A"}}
        assert await c.result("Authorize", {"idTag": "LONER"}) == {
            "idTagInfo": {"status": "Accepted"}}
        assert await c.result("Authorize", {"idTag": "STRANGER"}) == {
            "idTagInfo": {"status": "Invalid"}}


@pytest.mark.parametrize(("stopper", "allowed", "reason"), [
    ("ALICE", True, None),
    ("BOB", True, None),  # same parentIdTag (1.6 §3.5.1)
    ("BOSS-A", True, None),  # the group's master pass
    ("BOSS-B", False, "not of the session's group"),  # another group's master pass
    ("FLEET-A", False, "not of the session's group"),  # a tag named like the group
    ("LONER", False, "not of the session's group"),
    ("STRANGER", False, "unknown tag"),
])
async def test_1_6_who_may_stop_a_session(
    csms_server: RunningServer, stopper: str, allowed: bool, reason: str | None,
) -> None:
    await csms_server.add_station("CP1")
    await tags(csms_server)
    async with await RawClient.connect(csms_server.url, "CP1", ["ocpp1.6"]) as c:
        txid = await start16(c, 0)
        answer = await stop16(c, txid, stopper, 5)
    status = answer["idTagInfo"]["status"]
    assert (status == "Accepted") is allowed, answer
    [session] = await csms_server.sessions("CP1")
    assert session["status"] == "completed"  # acknowledged and stored whoever stopped it
    events = [e for e in await station_events(csms_server, "CP1", "security")
              if e.get("type") == "StopNotAllowed"]
    if allowed:
        assert events == []
    else:
        assert status == "Invalid"
        [event] = events
        assert (event["tag"], event["reason"]) == (stopper, reason)


def ended(tag: str | None, seq: int = 1) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "eventType": "Ended", "timestamp": "2026-03-01T10:20:00Z",
        "triggerReason": "StopAuthorized", "seqNo": seq,
        "transactionInfo": {"transactionId": "TX-G", "stoppedReason": "Local"},
        "meterValue": [{"timestamp": "2026-03-01T10:20:00Z", "sampledValue": [
            {"value": 2000, "context": "Transaction.End"}]}]}
    if tag:
        payload["idToken"] = {"idToken": tag, "type": "ISO14443"}
    return payload


@pytest.mark.parametrize(("stopper", "status"), [
    ("BOSS-A", "Accepted"), ("BOB", "Accepted"), ("BOSS-B", "Invalid"),
    ("STRANGER", "Invalid")])
async def test_2_0_1_group_id_token_and_master_pass(
    csms_server: RunningServer, stopper: str, status: str,
) -> None:
    await csms_server.add_station("EV1")
    await tags(csms_server)
    async with await RawClient.connect(csms_server.url, "EV1", ["ocpp2.0.1"]) as c:
        authorized = await c.result("Authorize", {"idToken": {"idToken": stopper,
                                                              "type": "ISO14443"}})
        if stopper.startswith("BOSS"):
            group = "FLEET-" + stopper[-1]
            assert authorized["idTokenInfo"]["groupIdToken"] == {"idToken": group,
                                                                 "type": "Central"}
        started = await c.result("TransactionEvent", {
            "eventType": "Started", "timestamp": "2026-03-01T10:00:00Z",
            "triggerReason": "Authorized", "seqNo": 0,
            "transactionInfo": {"transactionId": "TX-G"},
            "idToken": {"idToken": "ALICE", "type": "ISO14443"},
            "evse": {"id": 1, "connectorId": 1},
            "meterValue": [{"timestamp": "2026-03-01T10:00:00Z", "sampledValue": [
                {"value": 1000, "context": "Transaction.Begin"}]}]})
        assert started["idTokenInfo"]["groupIdToken"]["idToken"] == "FLEET-A"
        answer = await c.result("TransactionEvent", ended(stopper))
    assert answer["idTokenInfo"]["status"] == status
    [session] = await csms_server.sessions("EV1")
    assert (session["status"], session["id_tag"]) == ("completed", "ALICE")
    refused = [e for e in await station_events(csms_server, "EV1", "security")
               if e.get("type") == "StopNotAllowed"]
    assert bool(refused) is (status == "Invalid")


def test_cli_tags_with_groups(csms_server: RunningServer) -> None:
    out = csms_cli(csms_server, "tags", "add", "BOSS", "--group", "FLEET-A", "--master")
    assert out.returncode == 0, out.stderr
    assert "master pass of group FLEET-A" in out.stdout
    out = csms_cli(csms_server, "tags", "list", "--json")
    assert json.loads(out.stdout) == [{"tag": "BOSS", "status": "accepted",
                                       "expires_at": None, "group": "FLEET-A",
                                       "master": True}]
    for args, why in ((["--master"], "--group"), (["--group", "G" * 21], "1 to 20")):
        out = csms_cli(csms_server, "tags", "add", "X", *args)
        assert out.returncode == 2 and why in out.stderr and "Traceback" not in out.stderr
