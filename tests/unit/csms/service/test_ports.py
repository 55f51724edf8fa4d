"""The storage port's in-memory fake never answers for an operation it lacks."""

from __future__ import annotations

from typing import Any

import pytest

from csms.service.ports import Repository, Tx
from support.memory import MemoryRepository, MemoryState, MemoryTx, fill_gaps


def _operations(port: type) -> list[str]:
    return [n for n, v in vars(port).items() if not n.startswith("_") and callable(v)]


@pytest.mark.parametrize(("fake", "port"), [(MemoryTx, Tx), (MemoryRepository, Repository)])
def test_no_operation_falls_through_to_the_ports_empty_body(fake: type, port: type) -> None:
    for name in _operations(port):
        assert getattr(fake, name) is not vars(port)[name], name


async def test_an_operation_the_fake_lacks_raises() -> None:
    class Wider(Tx):  # the port grew an operation the fake does not know yet
        async def count_unicorns(self) -> int: ...

    class Fake(MemoryTx, Wider):
        pass

    assert await Fake(MemoryState()).count_unicorns() is None  # the empty body's answer
    fill_gaps(Fake, Wider)
    with pytest.raises(NotImplementedError, match="count_unicorns"):
        await Fake(MemoryState()).count_unicorns()
    assert await Fake(MemoryState()).get_station("CP1") is None  # the fake's own stays


def test_fill_gaps_keeps_what_is_implemented() -> None:
    before: dict[str, Any] = dict(vars(MemoryTx))
    fill_gaps(MemoryTx, Tx)
    assert dict(vars(MemoryTx)) == before
