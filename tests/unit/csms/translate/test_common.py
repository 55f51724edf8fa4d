"""Helpers shared by the version modules (csms.translate.common), pure."""

from __future__ import annotations

import asyncio

import pytest

from csms.translate.common import at_once


async def test_reads_are_awaited_together_and_each_answer_keeps_its_place() -> None:
    started: list[str] = []
    release = asyncio.Event()

    async def read(name: str) -> str:
        started.append(name)
        await release.wait()
        return name.upper()

    async def go() -> list[object]:
        return await at_once(read("a"), None, read("b"), None)

    task = asyncio.create_task(go())
    while len(started) < 2:  # both under way before either could finish
        await asyncio.sleep(0)
    release.set()
    assert await task == ["A", None, "B", None]


async def test_one_read_or_none() -> None:
    async def one() -> int:
        return 1

    assert await at_once(None, one()) == [None, 1]
    assert await at_once(None, None) == [None, None]


async def test_a_failing_read_fails_the_answer() -> None:
    async def fails() -> None:
        raise LookupError("gone")

    async def fine() -> int:
        return 2

    with pytest.raises(LookupError):
        await at_once(fine(), fails())


async def test_in_turn_where_reads_do_not_wait_each_answer_in_its_place() -> None:
    """``together=False`` (SQLite): one read after the other, no task each; the answers
    in the places of their reads, as together."""
    order: list[str] = []

    async def read(name: str) -> str:
        order.append(name)
        return name.upper()

    assert await at_once(read("a"), None, read("b"), read("c"), together=False) == [
        "A", None, "B", "C"]
    assert order == ["a", "b", "c"]
    assert await at_once(None, None, together=False) == [None, None]


async def test_in_turn_a_failing_read_fails_the_answer_and_the_rest_never_run(
    recwarn: pytest.WarningsRecorder,
) -> None:
    ran: list[str] = []

    async def fails() -> None:
        raise LookupError("gone")

    async def later() -> int:
        ran.append("later")
        return 2

    with pytest.raises(LookupError):
        await at_once(fails(), later(), together=False)
    assert ran == []
    assert not [w for w in recwarn if "never awaited" in str(w.message)]
