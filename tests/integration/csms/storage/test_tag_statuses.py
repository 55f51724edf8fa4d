"""A tag's registry entry keeps each status it replaced with the times it held
(``Tx.tag_status_at``), on every backend: who pays for a session is judged by the card's
status at the session's start (tests/integration/settlement/test_blocked_card_payer.py)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from csms.domain.model import IdTag
from csms.service.ports import Repository


async def _put(repo: Repository, record: IdTag) -> None:
    async def work(tx: Any) -> None:
        await tx.put_tag(record)

    await repo.unit(work)


async def _entry(repo: Repository, tag: str, at: datetime) -> tuple[Any, Any]:
    async def work(tx: Any) -> tuple[Any, Any]:
        return await tx.get_tag(tag), await tx.tag_status_at(tag, at)

    return await repo.read(work)


async def test_the_registry_keeps_each_status_with_the_times_it_held(repo: Repository) -> None:
    """Every change of status keeps the one it replaced; the same status written again
    (an expiry or group changed) changes no time; a status never replaced has no time."""
    await _put(repo, IdTag("T"))
    first = datetime.now(UTC)
    entry, then = await _entry(repo, "T", first)
    assert entry.status_since is None and then is None  # accepted since registered
    await asyncio.sleep(0.002)
    await _put(repo, IdTag("T", "blocked"))
    blocked, _ = await _entry(repo, "T", first)
    assert blocked.status_since > first
    await _put(repo, IdTag("T", "blocked", expires_at=datetime(2030, 1, 1, tzinfo=UTC)))
    again, _ = await _entry(repo, "T", first)
    assert again.status_since == blocked.status_since  # not a new status
    await asyncio.sleep(0.002)
    await _put(repo, IdTag("T", "accepted"))
    now, _ = await _entry(repo, "T", first)
    assert now.status_since > blocked.status_since
    middle = blocked.status_since + (now.status_since - blocked.status_since) / 2
    assert (await _entry(repo, "T", first))[1] == "accepted"
    assert (await _entry(repo, "T", blocked.status_since))[1] == "blocked"
    assert (await _entry(repo, "T", middle))[1] == "blocked"
    assert (await _entry(repo, "T", now.status_since))[1] is None  # its status now
    assert (await _entry(repo, "OTHER", middle)) == (None, None)
