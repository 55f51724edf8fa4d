"""A card's registry status is judged at the session's start, not when the station sends it,
through real sockets and a real chain (py-evm).

A station offline for hours sends its sessions when it reconnects. The operator may have
blocked the card meanwhile (its driver reported it stolen) or unblocked it (found): who pays
is what the registry said at the session's start. A greedy driver who charges at an
offline station and then has the card blocked does not charge for free; a thief's session
started while the card was blocked is not charged to its driver once the card is unblocked.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from support import RunningServer

from .test_card_payer import settled
from .test_credit import settling
from .test_refused_card_payer import linked_card, payer, session_between


@pytest.fixture
async def server(csms_server: RunningServer) -> RunningServer:
    return await settling(csms_server, "CP16", "CP201")


async def tag_history(server: RunningServer, tag: str, at: datetime) -> tuple[Any, Any]:
    """The tag's entry now and its status at ``at``."""
    async def work(tx: Any) -> tuple[Any, Any]:
        return await tx.get_tag(tag), await tx.tag_status_at(tag, at)

    return await server.repo.read(work)


@pytest.mark.parametrize("version", ["1.6", "2.0.1"])
async def test_a_card_blocked_after_its_offline_session_started_pays(
    server: RunningServer, version: str,
) -> None:
    """The driver charges at an offline station, then has the operator block the card
    (reported stolen) before the station reconnects: the session is still the driver's."""
    kit, driver = await linked_card(server, "CARD")
    await server.add_tag("CARD")
    start = datetime.now(UTC) - timedelta(hours=3)
    await server.add_tag("CARD", status="blocked")
    sid, answer = await session_between(server, version, "CARD", start,
                                        start + timedelta(minutes=30))
    assert answer == "Blocked", answer  # the card is blocked now
    assert await payer(server, sid) == driver.address.lower()
    assert (await settled(server, sid))["settlement_state"] == "paid"
    assert kit.balance(driver) < 10_000


@pytest.mark.parametrize("version", ["1.6", "2.0.1"])
async def test_a_thiefs_session_on_a_blocked_card_is_not_charged_once_it_is_unblocked(
    server: RunningServer, version: str,
) -> None:
    """The card is blocked (reported stolen); a thief charges at an offline station; the
    card is found and unblocked before the station reconnects. The start is accepted now,
    but the session started while the card was blocked: charged to nobody."""
    kit, driver = await linked_card(server, "CARD")
    await server.add_tag("CARD")
    await server.add_tag("CARD", status="blocked")
    await asyncio.sleep(0.01)
    start = datetime.now(UTC)
    await asyncio.sleep(0.01)
    await server.add_tag("CARD")  # found: unblocked
    entry, then = await tag_history(server, "CARD", start)
    assert (entry.status, then) == ("accepted", "blocked")
    await asyncio.sleep(1.1)  # the stop in the past too
    sid, answer = await session_between(server, version, "CARD", start,
                                        start + timedelta(seconds=1))
    assert answer == "Accepted", answer
    assert await payer(server, sid) == ""
    [session] = [s for s in await server.sessions() if s["id"] == sid]
    assert "blocked_at_start" in session["flags"], session
    assert (await settled(server, sid))["settlement_state"] == "unpaid"
    assert kit.balance(driver) == 10_000


@pytest.mark.parametrize("version", ["1.6", "2.0.1"])
async def test_a_session_started_after_the_card_was_unblocked_pays(
    server: RunningServer, version: str,
) -> None:
    """Blocked, then unblocked, then the driver charges: the driver's, as any session on
    an accepted card (the history is read only for a start before the last change)."""
    _, driver = await linked_card(server, "CARD")
    await server.add_tag("CARD", status="blocked")
    await server.add_tag("CARD")
    await asyncio.sleep(1.1)
    start = datetime.now(UTC) - timedelta(seconds=1)
    assert start > (await tag_history(server, "CARD", start))[0].status_since
    sid, answer = await session_between(server, version, "CARD", start,
                                        start + timedelta(seconds=1))
    assert answer == "Accepted", answer
    assert await payer(server, sid) == driver.address.lower()
