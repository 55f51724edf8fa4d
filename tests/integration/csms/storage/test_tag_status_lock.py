"""Two operators change one tag at once (two nodes, PostgreSQL): each change of its status
keeps the status it replaces once (``id_tag_statuses``, migration 0265), read under the
tag's row lock. SQLite's writers take turns on the file: nothing to race there."""

from __future__ import annotations

import asyncio

import pytest

from csms.domain.model import IdTag
from csms.service.ports import Repository, Tx


@pytest.mark.postgres
async def test_one_change_of_a_tag_by_two_operators_at_once_keeps_one_history_row(
    two_nodes: tuple[Repository, Repository],
) -> None:
    a, b = two_nodes
    await a.unit(lambda tx: tx.put_tag(IdTag("RACE", "accepted")))
    changed, release = asyncio.Event(), asyncio.Event()

    async def first(tx: Tx) -> None:  # blocks the tag, commits once released
        await tx.put_tag(IdTag("RACE", "blocked"))
        changed.set()
        await release.wait()

    holder = asyncio.ensure_future(a.unit(first))
    await asyncio.wait_for(changed.wait(), 10)
    try:
        # the other operator blocks it too, reading the tag while the first holds it
        second = asyncio.ensure_future(b.unit(lambda tx: tx.put_tag(IdTag("RACE", "blocked"))))
        await asyncio.sleep(0.5)
        assert not second.done()  # waits for the first's row
    finally:
        release.set()
        await holder
    await asyncio.wait_for(second, 10)

    async def rows(tx: Tx) -> list[tuple[str, str]]:
        return [(r["status"], r["tag"]) for r in await tx.fetchall(  # type: ignore[attr-defined]
            "SELECT tag, status FROM id_tag_statuses WHERE tag = ?", "RACE")]

    assert await a.read(rows) == [("accepted", "RACE")]  # one change, one row
    tag = await a.read(lambda tx: tx.get_tag("RACE"))
    assert tag is not None and tag.status == "blocked"
