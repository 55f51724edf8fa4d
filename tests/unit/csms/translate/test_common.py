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
