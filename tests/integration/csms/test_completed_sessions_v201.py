"""A 2.0.1 TransactionEvent for a transaction that has ended, over real sockets: a
completed session's billed data (its times, its energy) does not change afterwards
(docs/reliability.md: sessions completed with exactly the energy reported; E01-E15: a
transactionId is one transaction)."""

from __future__ import annotations

from typing import Any

from support import RunningServer, is_queued
from support.client import RawClient

from .test_sessions_v201 import EVSE, TOKEN, event, reading


async def test_a_started_event_after_the_end_does_not_move_the_billed_start(
    csms_server: RunningServer,
) -> None:
    await csms_server.add_station("EV1")
    await csms_server.add_tag("T1")
    await csms_server.add_tariff()
    async with await RawClient.connect(csms_server.url, "EV1", ["ocpp2.0.1"]) as c:
        await c.result("BootNotification", {
            "chargingStation": {"vendorName": "V", "model": "M"}, "reason": "PowerUp"})
        await c.result("TransactionEvent", event(
            "Started", 0, "2026-03-01T10:00:00Z", idToken=TOKEN, evse=EVSE,
            meterValue=[reading("2026-03-01T10:00:00Z", 1000, "Transaction.Begin")]))
        await c.result("TransactionEvent", event(
            "Ended", 1, "2026-03-01T10:30:00Z",
            meterValue=[reading("2026-03-01T10:30:00Z", 6000, "Transaction.End")]))
        [done] = await csms_server.sessions("EV1")
        assert done["status"] == "completed" and await is_queued(csms_server, done["id"])
        # a station that reuses the transaction id (its counter restarted), or a hostile
        # one: a Started with a new seqNo, hours later
        answer: Any = await c.call("TransactionEvent", event(
            "Started", 2, "2026-03-01T14:00:00Z", idToken=TOKEN, evse=EVSE))
        assert answer[0] == 3  # acknowledged, as every transaction message
    sessions = await csms_server.sessions("EV1")
    [after] = [s for s in sessions if s["id"] == done["id"]]
    assert (after["started_at"], after["stopped_at"], after["energy_wh"]) == (
        done["started_at"], done["stopped_at"], done["energy_wh"]), (done, after)
    # the Started is a transaction of its own (test_transaction_ids_v201), held
    [new] = [s for s in sessions if s["id"] != done["id"]]
    assert new["started_at"] != done["started_at"] and "reused_transaction_id" in new["flags"]
