"""1.6 transactions of a station that ran 2.0.1 before, and 1.6 stops under a transactionId
the central system never assigned, over real sockets on a real database (SQLite and
PostgreSQL): the transactionIds the central system assigns must not collide with the ones
the station chose itself (1.6 §5.6: the central system's ids; 2.0.1: the station's), no
stop is dropped as the retry of another, and readings named for a transaction on another
connector than its own are not billed to it."""

from __future__ import annotations

from typing import Any

from support import RunningServer, is_queued, station_events
from support.client import RawClient

from .test_real_frames import station_readings
from .test_sessions_v201 import event, reading


async def _ran_201(server: RunningServer, station_id: str, txids: list[str]) -> None:
    """``station_id`` ran 2.0.1 and numbered its transactions itself: each of ``txids`` one
    hour-long transaction of 5 kWh, on tag A, started on the day of its number."""
    async with await RawClient.connect(server.url, station_id, ["ocpp2.0.1"]) as c:
        await c.result("BootNotification", {
            "chargingStation": {"vendorName": "V", "model": "M"}, "reason": "PowerUp"})
        for n, txid in enumerate(txids, start=2):
            day = f"2026-03-{n:02d}"
            await c.result("TransactionEvent", event(
                "Started", 0, f"{day}T10:00:00Z", txid=txid,
                idToken={"idToken": "A", "type": "ISO14443"}, evse={"id": 1, "connectorId": 1},
                meterValue=[reading(f"{day}T10:00:00Z", n * 10000, "Transaction.Begin")]))
            await c.result("TransactionEvent", event(
                "Ended", 1, f"{day}T11:00:00Z", txid=txid,
                meterValue=[reading(f"{day}T11:00:00Z", n * 10000 + 5000,
                                    "Transaction.End")]))


async def _start_and_stop_16(server: RunningServer, station_id: str) -> tuple[Any, Any]:
    """A 1.6 start (and its retry) and its stop of 7 kWh on ``station_id``: the answers to
    the start and to its retry."""
    async with await RawClient.connect(server.url, station_id, ["ocpp1.6"]) as c:
        await c.result("BootNotification", {"chargePointVendor": "V", "chargePointModel": "M"})
        start = {"connectorId": 1, "idTag": "A", "meterStart": 30000,
                 "timestamp": "2026-03-20T10:00:00Z"}
        answer: Any = await c.call("StartTransaction", start)
        retry: Any = await c.call("StartTransaction", start)
        if answer[0] == 3:
            assert await c.result("StopTransaction", {
                "transactionId": answer[2]["transactionId"], "meterStop": 37000,
                "idTag": "A", "timestamp": "2026-03-20T11:00:00Z"}) \
                == {"idTagInfo": {"status": "Accepted"}}
    return answer, retry


async def test_a_16_start_after_the_station_ran_201_with_numbered_transactions_is_answered(
    csms_server: RunningServer,
) -> None:
    await csms_server.add_station("EV1")
    await csms_server.add_tag("A")
    # the station ran 2.0.1 with its counter at 2 when it first connected here: "2", "3"
    # (this central system's sessions 1 and 2); its firmware is rolled back to 1.6, and the
    # central system assigns transactionIds now
    await _ran_201(csms_server, "EV1", ["2", "3"])
    answer, retry = await _start_and_stop_16(csms_server, "EV1")
    # a well-formed StartTransaction is answered with a transactionId (DESIGN.md:
    # transaction messages are always acknowledged), and its retry the same
    assert answer[0] == 3, answer
    assert retry[0] == 3 and retry[2]["transactionId"] == answer[2]["transactionId"], retry
    txid = answer[2]["transactionId"]
    assert isinstance(txid, int) and str(txid) not in ("2", "3"), txid
    # its stop bills the 1.6 session, never the station's old one under that number: a
    # station cannot have its new stop land on a transaction it ran before
    by_txid = {s["transaction_id"]: s for s in await csms_server.sessions("EV1")}
    assert sorted(by_txid) == sorted(["2", "3", str(txid)])
    assert by_txid[str(txid)]["ocpp_version"] == "1.6"
    assert by_txid[str(txid)]["id"] == txid  # a 1.6 session's transactionId is its id
    assert [(by_txid[t]["status"], by_txid[t]["energy_wh"]) for t in ("2", "3", str(txid))] \
        == [("completed", 5000), ("completed", 5000), ("completed", 7000)]


async def test_another_stations_201_ids_do_not_move_a_16_stations_transaction_ids(
    csms_server: RunningServer,
) -> None:
    """A hostile 2.0.1 station that names its transactions after the ids this central system
    assigns next ("3", "4") changes nothing of another station's 1.6 starts: transactionIds
    are unique per station, the 1.6 station's start gets the next id as it always does,
    and its stop completes its own session, not the other station's."""
    await csms_server.add_station("EV9")
    await csms_server.add_station("CP1")
    await csms_server.add_tag("A")
    await _ran_201(csms_server, "EV9", ["3", "4"])  # sessions 1 and 2
    answer, _ = await _start_and_stop_16(csms_server, "CP1")
    assert answer[0] == 3 and answer[2]["transactionId"] == 3, answer
    [mine] = await csms_server.sessions("CP1")
    assert (mine["transaction_id"], mine["status"], mine["energy_wh"]) == ("3", "completed", 7000)
    assert [(s["transaction_id"], s["energy_wh"]) for s in await csms_server.sessions("EV9")] \
        == [("3", 5000), ("4", 5000)]
    assert await station_events(csms_server, "CP1", "security") == []


async def test_a_second_stop_under_the_same_unknown_transaction_id_is_not_dropped(
    csms_server: RunningServer,
) -> None:
    # a station that sends its stops with transactionId -1 when it started offline (the
    # StartTransaction sent later, its answer not waited for): two transactions, 5 kWh then
    # 10 kWh on connector 1, each stop under -1
    await csms_server.add_station("CP1")
    await csms_server.add_tag("A")
    async with await RawClient.connect(csms_server.url, "CP1", ["ocpp1.6"]) as c:
        await c.result("BootNotification", {"chargePointVendor": "V", "chargePointModel": "M"})
        for start_wh, stop_wh, hour in ((1000, 6000, 10), (6000, 16000, 12)):
            await c.result("StartTransaction", {
                "connectorId": 1, "idTag": "A", "meterStart": start_wh,
                "timestamp": f"2026-03-01T{hour}:00:00Z"})
            stopped = await c.result("StopTransaction", {
                "transactionId": -1, "meterStop": stop_wh, "idTag": "A", "reason": "Local",
                "timestamp": f"2026-03-01T{hour + 1}:00:00Z"})
            assert stopped["idTagInfo"]["status"] == "Accepted"
    sessions = await csms_server.sessions("CP1")
    # each stop is kept (held for the operator will do): the second, with another time and
    # reading, is no retry of the first
    stops = sorted(s["stopped_at"] for s in sessions if s["stopped_at"] is not None
                   and "stop_lost" not in s["flags"])
    assert stops == ["2026-03-01T11:00:00+00:00", "2026-03-01T13:00:00+00:00"], sessions
    held = [s for s in sessions if "unknown_transaction" in s["flags"]]
    assert len(held) == 2 and len({s["transaction_id"] for s in held}) == 2, held
    # each one the operator sees held, with what its stop carried
    holds = {e["session_id"] for e in await station_events(csms_server, "CP1", "billing_hold")}
    assert {s["id"] for s in held} <= holds


async def test_a_retried_unknown_stop_is_kept_once_and_a_replayed_one_bills_nobody(
    csms_server: RunningServer,
) -> None:
    """A stop under -1 sent again as it was (its answer lost) is its retry: kept once. A
    station that replays it with a higher meterStop, or another idTag, to have the driver
    pay twice (or pay more) gets a held session of its own for each: none is queued for
    settlement, none is charged to a card; the operator decides."""
    await csms_server.add_station("CP1")
    await csms_server.add_tag("A")
    stop = {"transactionId": -1, "meterStop": 6000, "idTag": "A", "reason": "Local",
            "timestamp": "2026-03-01T11:00:00Z"}
    async with await RawClient.connect(csms_server.url, "CP1", ["ocpp1.6"]) as c:
        await c.result("BootNotification", {"chargePointVendor": "V", "chargePointModel": "M"})
        for payload in (stop, stop, {**stop, "meterStop": 60000}, {**stop, "meterStop": 60000},
                        {**stop, "idTag": "B"}):
            await c.result("StopTransaction", payload)
    held = await csms_server.sessions("CP1")
    assert sorted((s["meter_stop_wh"], s["id_tag"]) for s in held) == [
        (6000, "A"), (6000, "B"), (60000, "A")], held
    assert all("unknown_transaction" in s["flags"] and s["status"] == "completed"
               for s in held), held
    for s in held:
        assert not await is_queued(csms_server, s["id"]), s

        async def card(tx: Any, sid: int = s["id"]) -> Any:
            return await tx.session_card(sid)

        assert await csms_server.repo.read(card) is None, s


def _register(connector: int, txid: Any, at: str, wh: int) -> dict[str, Any]:
    """A 1.6 MeterValues frame: the register of ``connector`` at ``at``, for ``txid``."""
    return {"connectorId": connector, "transactionId": txid, "meterValue": [{
        "timestamp": at, "sampledValue": [{
            "value": str(wh), "measurand": "Energy.Active.Import.Register", "unit": "Wh"}]}]}


async def test_readings_of_another_connector_under_a_transaction_are_not_billed_to_it(
    csms_server: RunningServer,
) -> None:
    """A station (hostile, or numbering its frames wrong) sends connector 2's register under
    A's transaction on connector 1: A's session is not charged with connector 2's energy
    (59 kWh from A's meterStart), nor counted towards A's limit. The readings are the
    station's (no session, the connector it named), an ``evse_mismatch`` station event
    keeps what came, and A's session is held for the operator (as a 2.0.1 event of its
    transaction on another EVSE is). Its stop bills its own meterStart to meterStop."""
    await csms_server.add_station("CP1")
    for tag in ("A", "B"):
        await csms_server.add_tag(tag)
    async with await RawClient.connect(csms_server.url, "CP1", ["ocpp1.6"]) as c:
        await c.result("BootNotification", {"chargePointVendor": "V", "chargePointModel": "M"})
        a = (await c.result("StartTransaction", {
            "connectorId": 1, "idTag": "A", "meterStart": 1000,
            "timestamp": "2026-03-01T10:00:00Z"}))["transactionId"]
        b = (await c.result("StartTransaction", {
            "connectorId": 2, "idTag": "B", "meterStart": 50000,
            "timestamp": "2026-03-01T10:00:00Z"}))["transactionId"]
        # A's own reading, then connector 2's under A's transaction, then connector 0's
        # (the whole station: never a session's)
        for frame in (_register(1, a, "2026-03-01T10:20:00Z", 1300),
                      _register(2, a, "2026-03-01T10:30:00Z", 60000),
                      _register(0, a, "2026-03-01T10:40:00Z", 999000)):
            assert await c.result("MeterValues", frame) == {}
        running = {s["transaction_id"]: s for s in await csms_server.sessions("CP1")}
        # A's running energy is its own connector's (300 Wh), never 59 kWh
        assert running[str(a)]["energy_wh"] == 300, running[str(a)]
        assert "evse_mismatch" in running[str(a)]["flags"]
        assert "evse_mismatch" not in running[str(b)]["flags"]
        for txid, wh in ((a, 2000), (b, 60000)):
            await c.result("StopTransaction", {
                "transactionId": txid, "meterStop": wh, "timestamp": "2026-03-01T11:00:00Z"})
    done = {s["transaction_id"]: s for s in await csms_server.sessions("CP1")}
    assert (done[str(a)]["energy_wh"], done[str(b)]["energy_wh"]) == (1000, 10000)
    # held: its station sent it another connector's readings; B is billed as any session
    assert not await is_queued(csms_server, done[str(a)]["id"])
    assert await is_queued(csms_server, done[str(b)]["id"])
    # the readings are each where the station named them: A's own, connector 2's apart
    assert [(r["session_id"], r["transaction_id"], r["connector_id"])
            for r in await station_readings(csms_server, "CP1")] == [
        (done[str(a)]["id"], str(a), 1), (None, str(a), 2), (None, str(a), 0)]
    [kept] = await station_events(csms_server, "CP1", "evse_mismatch")
    assert (kept["session_id"], kept["transaction_id"], kept["evse_id"],
            kept["event_evse_id"], kept["readings"]) == (done[str(a)]["id"], str(a), 1, 2, 1)


async def test_readings_of_another_connector_after_the_stop_are_kept_at_their_connector(
    csms_server: RunningServer,
) -> None:
    """The same frame once A's session has ended: what A billed stays as its stop
    completed it, and connector 2's readings are kept as connector 2's (not A's
    connector's, as late data of A's would be)."""
    await csms_server.add_station("CP1")
    await csms_server.add_tag("A")
    async with await RawClient.connect(csms_server.url, "CP1", ["ocpp1.6"]) as c:
        await c.result("BootNotification", {"chargePointVendor": "V", "chargePointModel": "M"})
        a = (await c.result("StartTransaction", {
            "connectorId": 1, "idTag": "A", "meterStart": 1000,
            "timestamp": "2026-03-01T10:00:00Z"}))["transactionId"]
        await c.result("StopTransaction", {
            "transactionId": a, "meterStop": 2000, "timestamp": "2026-03-01T11:00:00Z"})
        assert await c.result("MeterValues", _register(
            2, a, "2026-03-01T10:30:00Z", 60000)) == {}
    [s] = await csms_server.sessions("CP1")
    assert s["energy_wh"] == 1000 and await is_queued(csms_server, s["id"]), s
    assert [(r["session_id"], r["connector_id"])
            for r in await station_readings(csms_server, "CP1")] == [(None, 2)]
    [kept] = await station_events(csms_server, "CP1", "evse_mismatch")
    assert (kept["session_id"], kept["event_evse_id"]) == (s["id"], 2)
