"""A card session kept alive without energy holds its driver's escrow for the grace, not for
ever, through real sockets, a real chain (py-evm) and both storage backends: a hostile
host's station starts a session on a card's idTag it saw and keeps it in progress with
readings that never grow; the driver is no longer refused everywhere else, and a session
of the driver's charged meanwhile is settled first, its host paid."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from conftest import BACKENDS

from csms.service.holds import SILENT_GRACE_S
from support import RunningServer, later, station_events
from support.client import RawClient

from .test_card_payer import PRICE, settled
from .test_credit import BOOT16, authorize, link, settling
from .test_silent_sessions import stop16

pytestmark = pytest.mark.parametrize("csms_db", BACKENDS, indirect=True)

RESUMED = "resumed_after_silence"
PAST_GRACE = timedelta(seconds=SILENT_GRACE_S + 600)


@pytest.fixture
async def server(csms_server: RunningServer) -> RunningServer:
    return await settling(csms_server, "CP16", "CP16B")


async def start_long_ago(server: RunningServer, tag: str) -> tuple[int, int]:
    """A 1.6 session of ``tag`` at CP16 started (and stored, by the central system's clock)
    longer ago than the grace, at 0 Wh: its id and its transactionId."""
    with later(server, -PAST_GRACE):
        async with await RawClient.connect(server.url, "CP16", ["ocpp1.6"]) as c:
            await c.result("BootNotification", BOOT16)
            started = await c.result("StartTransaction", {
                "connectorId": 1, "idTag": tag, "meterStart": 0,
                "timestamp": (datetime.now(UTC) - PAST_GRACE).isoformat()})
    assert started["idTagInfo"]["status"] == "Accepted", started
    [row] = [s for s in await server.sessions("CP16") if s["id_tag"] == tag]
    return int(row["id"]), int(started["transactionId"])


async def reading(server: RunningServer, txid: int, wh: int,
                  ago: timedelta = timedelta(0)) -> None:
    """CP16 sends a reading of ``wh`` on the register for transaction ``txid``, ``ago``
    before now (by the central system's clock as well)."""
    with later(server, -ago):
        async with await RawClient.connect(server.url, "CP16", ["ocpp1.6"]) as c:
            await c.result("BootNotification", BOOT16)
            await c.result("MeterValues", {
                "connectorId": 1, "transactionId": txid, "meterValue": [{
                    "timestamp": (datetime.now(UTC) - ago).isoformat(),
                    "sampledValue": [{"value": str(wh), "unit": "Wh",
                                      "measurand": "Energy.Active.Import.Register"}]}]})


async def honest(server: RunningServer, tag: str) -> int:
    """A session of ``tag`` at CP16B, another host's station: 5,000 Wh over ten minutes;
    its id."""
    begun = datetime.now(UTC) - timedelta(minutes=10)
    async with await RawClient.connect(server.url, "CP16B", ["ocpp1.6"]) as c:
        await c.result("BootNotification", BOOT16)
        started = await c.result("StartTransaction", {
            "connectorId": 1, "idTag": tag, "meterStart": 0, "timestamp": begun.isoformat()})
        assert started["idTagInfo"]["status"] == "Accepted", started
        await c.result("StopTransaction", {
            "transactionId": started["transactionId"], "meterStop": 5000,
            "timestamp": datetime.now(UTC).isoformat(), "reason": "Local"})
    [row] = [s for s in await server.sessions("CP16B") if s["id_tag"] == tag]
    return int(row["id"])


async def session(server: RunningServer, sid: int) -> dict[str, Any]:
    [row] = [s for s in await server.sessions() if s["id"] == sid]
    return row


async def test_readings_that_never_grow_free_the_escrow_after_the_grace(
    server: RunningServer,
) -> None:
    """The hostile order: a session on a card, readings that never grow (the last one now:
    the station is anything but silent), past the grace. The driver charges elsewhere and
    that session is paid; the hostile station's energy, come late, holds its session for
    the operator."""
    kit, driver = await link(server, "CARD", deposit=3_000)  # one session's reserve
    sid, txid = await start_long_ago(server, "CARD")
    await reading(server, txid, 0, ago=PAST_GRACE / 2)
    await reading(server, txid, 0)
    assert (await session(server, sid))["status"] == "active"
    # no energy for longer than the grace: the session holds the escrow no more
    assert await authorize(server, "1.6", "CARD") == "Accepted"
    other = await honest(server, "CARD")
    # the hostile station's session delivers, or says it did, after all
    await reading(server, txid, 4000)
    await stop16(server, txid, 5000)
    late = await session(server, sid)
    assert late["status"] == "completed" and RESUMED in late["flags"], late
    [event] = await station_events(server, "CP16", RESUMED)
    assert event["session_id"] == sid and event["held"] is True, event
    assert event["accepted_meanwhile"]["id"] == other, event
    row = await settled(server, other)
    assert row["settlement_state"] == "paid", row
    assert kit.balance(driver) == 3_000 - PRICE


async def test_a_session_whose_energy_grew_within_the_grace_keeps_its_escrow(
    server: RunningServer,
) -> None:
    """Started long ago, but it delivered within the grace: it counts, whatever its age;
    an overnight session whose car is full is paid unheld when nothing was accepted of its
    driver meanwhile."""
    await link(server, "CARD", deposit=3_000)
    sid, txid = await start_long_ago(server, "CARD")
    await reading(server, txid, 3000, ago=timedelta(hours=1))
    await reading(server, txid, 3000)
    assert await authorize(server, "1.6", "CARD") == "Blocked"
    await stop16(server, txid, 3000)
    done = await session(server, sid)
    assert done["status"] == "completed" and RESUMED not in done["flags"], done
    assert await station_events(server, "CP16", RESUMED) == []


async def per_minute(server: RunningServer, cents: str) -> None:
    """CP16's own tariff: 0.39 a kWh and ``cents`` (EUR) a minute, valid since long ago."""
    from decimal import Decimal

    from csms.domain.tariff import Tariff
    from support import LONG_AGO

    async def work(tx: Any) -> None:
        await tx.add_tariff(Tariff("CP16", Decimal("0.39"), "EUR", 2,
                                   per_minute=Decimal(cents), valid_from=LONG_AGO))

    await server.repo.unit(work)


@pytest.mark.parametrize(("cents", "elsewhere"), [
    # 0.01 a minute: 7.30 of its 30.00 after the grace, its price still growing
    ("0.01", "Blocked"),
    # 0.10 a minute: its price reached its limit hours ago (its stop asked): it grows no more
    ("0.10", "Accepted"),
])
async def test_a_session_priced_by_the_minute_counts_while_its_price_grows(
    server: RunningServer, cents: str, elsewhere: str,
) -> None:
    """A car left plugged in, full, at a station that charges by the minute: its energy
    grows no more, its price does. Counted by its energy alone, it held nothing of the
    escrow after the grace: its greedy driver charged elsewhere on the escrow the parking
    was running up, and its host, whose stop came at the limit, was left to an operator
    and an escrow spent. It counts while its price grows below its limit; once there (its
    stop asked), flat readings keep it counted no longer than the grace, as any other."""
    await per_minute(server, cents)
    await link(server, "CARD", deposit=3_000, max_per_minute=10)
    sid, txid = await start_long_ago(server, "CARD")
    await reading(server, txid, 0, ago=PAST_GRACE / 2)
    await reading(server, txid, 0)
    assert (await session(server, sid))["status"] == "active"
    assert await authorize(server, "1.6", "CARD") == elsewhere
