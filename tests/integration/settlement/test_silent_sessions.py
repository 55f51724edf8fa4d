"""A card session whose station falls silent holds its driver's escrow for a grace period,
not for ever, through real sockets, a real chain (py-evm) and both storage backends: a
station that stopped reporting (broken, offline for good, or a hostile host's station that
started a session on a card's idTag it saw once and never sends the stop) no longer gets
the driver refused everywhere else; one that reports keeps its session counted; and one
heard of again after the grace is billed as usual."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from conftest import BACKENDS

from csms.storage.settlement_sql import SILENT_GRACE_S
from csms.storage.sql import dt_to_db
from support import RunningServer
from support.client import RawClient

from .test_card_payer import PRICE, settled
from .test_credit import BOOT16, authorize, link, settling

pytestmark = pytest.mark.parametrize("csms_db", BACKENDS, indirect=True)


@pytest.fixture
async def server(csms_server: RunningServer) -> RunningServer:
    return await settling(csms_server, "CP16", "CP16B")


async def start(server: RunningServer, tag: str) -> tuple[int, int]:
    """A session of ``tag`` started on CP16, whose station then goes away: its id and its
    transactionId."""
    async with await RawClient.connect(server.url, "CP16", ["ocpp1.6"]) as c:
        await c.result("BootNotification", BOOT16)
        started = await c.result("StartTransaction", {
            "connectorId": 1, "idTag": tag, "meterStart": 0,
            "timestamp": (datetime.now(UTC) - timedelta(minutes=30)).isoformat()})
        assert started["idTagInfo"]["status"] == "Accepted", started
    [session] = [s for s in await server.sessions("CP16") if s["id_tag"] == tag]
    return int(session["id"]), int(started["transactionId"])


async def silent(server: RunningServer, sid: int) -> None:
    """Nothing heard of the session for longer than the grace (its last update that long
    ago: the database's clock cannot be moved)."""
    at = datetime.now(UTC) - timedelta(seconds=SILENT_GRACE_S + 60)

    async def work(tx: Any) -> None:
        await tx.execute("UPDATE sessions SET updated_at = ? WHERE id = ?", dt_to_db(at), sid)

    await server.repo.unit(work)


async def test_a_silent_stations_session_frees_the_escrow_and_is_billed_when_it_ends(
    server: RunningServer,
) -> None:
    kit, driver = await link(server, "CARD", deposit=3_000)  # one session's reserve (20.00)
    sid, txid = await start(server, "CARD")
    # within the grace the session is at stake: no second one anywhere
    assert await authorize(server, "1.6", "CARD") == "Blocked"
    await silent(server, sid)
    # its station has sent nothing for it since the grace: the driver charges elsewhere
    assert await authorize(server, "1.6", "CARD") == "Accepted"
    # the station comes back with its queued stop: the session is billed as any other
    async with await RawClient.connect(server.url, "CP16", ["ocpp1.6"]) as c:
        await c.result("BootNotification", BOOT16)
        await c.result("StopTransaction", {
            "transactionId": txid, "meterStop": 5000,
            "timestamp": datetime.now(UTC).isoformat(), "reason": "Local"})
    row = await settled(server, sid)
    assert row["settlement_state"] == "paid", row
    assert row["price_minor"] == PRICE
    assert kit.balance(driver) == 3_000 - PRICE


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
