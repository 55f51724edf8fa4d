"""A 1.6 StopTransaction for a transaction that never started, over real sockets: it is
acknowledged and kept as a held session, and it must not keep the station's later
transactions from starting (1.6 §5.6: the central system assigns the transactionId)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from support import RunningServer
from support.client import RawClient

T0 = "2026-03-01T10:00:00Z"


# the storage backends, as tests/conftest.py runs its BOTH_BACKENDS modules
BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.mark.parametrize("csms_db", BACKENDS, indirect=True)
@pytest.mark.parametrize("ahead", [1, 3])
async def test_a_stop_for_a_transaction_that_never_started_does_not_block_the_next_start(
    csms_server: RunningServer, ahead: int,
) -> None:
    await csms_server.add_station("CP1")
    await csms_server.add_tag("T1")
    async with await RawClient.connect(csms_server.url, "CP1", ["ocpp1.6"]) as c:
        await c.result("BootNotification", {"chargePointVendor": "V", "chargePointModel": "M"})
        # e.g. a stop the station kept from before the central system's data was restored:
        # its id is one the central system has not assigned yet
        for n in range(ahead):
            assert await c.result("StopTransaction", {
                "transactionId": ahead + 1 + n, "meterStop": 5000,
                "timestamp": "2026-03-01T09:30:00Z"}) == {}
        # transaction messages are always acknowledged (docs/reliability.md) with a
        # transactionId the station can use; a station retries a start that got an error
        # (1.6 §4.8), here three times
        answers = []
        for _ in range(3):
            answer = await c.call("StartTransaction", {
                "connectorId": 1, "idTag": "T1", "meterStart": 1000, "timestamp": T0})
            answers.append(answer[:4])
            if answer[0] == 3:
                break
        assert answer[0] == 3, answers
        txid = answer[2]["transactionId"]
        assert await c.result("StopTransaction", {
            "transactionId": txid, "meterStop": 3000,
            "timestamp": "2026-03-01T10:30:00Z"}) == {}
    started = [s for s in await csms_server.sessions("CP1")
               if "unknown_transaction" not in s["flags"]]
    assert [(s["status"], s["energy_wh"]) for s in started] == [("completed", 2000)]


async def test_a_stop_for_an_unknown_transaction_starts_at_its_begin_reading(
    csms_server: RunningServer,
) -> None:
    """A stop whose transactionData carries the register at the start (a station that kept
    a transaction through a restore of the central system's data): the session it is
    kept as starts at that reading, not at the stop; it is held (unknown_transaction),
    and not as energy delivered in no time."""
    await csms_server.add_station("CP1")
    stop = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
    begin = stop - timedelta(hours=1)
    async with await RawClient.connect(csms_server.url, "CP1", ["ocpp1.6"]) as c:
        await c.result("BootNotification", {"chargePointVendor": "V", "chargePointModel": "M"})
        assert await c.result("StopTransaction", {
            "transactionId": 77, "meterStop": 15_000, "timestamp": stop.isoformat(),
            "transactionData": [
                {"timestamp": begin.isoformat(), "sampledValue": [
                    {"value": "10000", "context": "Transaction.Begin"}]},
                {"timestamp": stop.isoformat(), "sampledValue": [
                    {"value": "15000", "context": "Transaction.End"}]}]}) == {}
    [held] = await csms_server.sessions("CP1")
    assert datetime.fromisoformat(held["started_at"]) == begin
    assert "unknown_transaction" in held["flags"]
    assert "zero_duration_with_energy" not in held["flags"], held["flags"]


@pytest.mark.parametrize("known", [False, True], ids=["unknown", "known"])
async def test_a_retried_stop_with_an_unreadable_time_is_the_same_stop(
    csms_server: RunningServer, known: bool,
) -> None:
    """A stop whose time cannot be read is taken at its arrival, which its retry does not
    share: the retry is still the same stop (the time compared as the station sent it),
    not another held session (an unknown transaction's) nor a stop that differs."""
    await csms_server.add_station("CP1")
    await csms_server.add_tag("T1")
    async with await RawClient.connect(csms_server.url, "CP1", ["ocpp1.6"]) as c:
        await c.result("BootNotification", {"chargePointVendor": "V", "chargePointModel": "M"})
        txid = 77
        if known:
            txid = (await c.result("StartTransaction", {
                "connectorId": 1, "idTag": "T1", "meterStart": 1000,
                "timestamp": T0}))["transactionId"]
        stop = {"transactionId": txid, "meterStop": 5000, "timestamp": "2026-13-01T10:01:00Z"}
        for _ in range(2):
            assert await c.result("StopTransaction", stop) == {}
    [held] = await csms_server.sessions("CP1")
    assert "time_unreadable" in held["flags"] and "stop_differs" not in held["flags"]
