"""SQLite keeps the tariffs its write transactions looked up (``_Tariffs`` in
``csms/storage/sqlite.py``: every 2.0.1 TransactionEvent asks for its session's tariff).
What is kept must never price a session with a tariff the table no longer says: one
another process wrote (a second repository on the file is what ``csms tariffs set`` or
another worker is), one an operator changed by hand in SQL, one written earlier in the
same batch, or one a unit wrote and then rolled back."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from csms.domain.tariff import Tariff
from csms.service.ports import Tx
from csms.storage.sqlite import SqliteRepository, _Tariffs

from .test_tx import T0

STARTED = T0 + timedelta(hours=1)  # the session's start: what its lookups ask about


@pytest.fixture
async def pair(tmp_path: Path) -> AsyncIterator[tuple[SqliteRepository, SqliteRepository]]:
    """Two repositories on one file: this process and another one."""
    db = tmp_path / "csms.sqlite3"
    ours, theirs = SqliteRepository(db), SqliteRepository(db)
    try:
        yield ours, theirs
    finally:
        await ours.close()
        await theirs.close()


def lookup(station: str = "CP1") -> Callable[[Tx], Awaitable[Decimal | None]]:
    async def work(tx: Tx) -> Decimal | None:
        tariff = await tx.find_tariff(station, STARTED)
        return None if tariff is None else tariff.per_kwh
    return work


def add(station: str, per_kwh: str, valid_from: Any = T0) -> Callable[[Tx], Awaitable[int]]:
    async def work(tx: Tx) -> int:
        return await tx.add_tariff(Tariff(station, Decimal(per_kwh), valid_from=valid_from))
    return work


async def test_a_tariff_another_process_writes_prices_the_next_lookup(
        pair: tuple[SqliteRepository, SqliteRepository]) -> None:
    ours, theirs = pair
    await theirs.unit(add("*", "0.30"))
    assert await ours.unit(lookup()) == Decimal("0.30")
    assert await ours.unit(lookup()) == Decimal("0.30")  # kept
    # a new version for the station, valid from before the session started
    await theirs.unit(add("CP1", "0.45"))
    assert await ours.unit(lookup()) == Decimal("0.45")
    # a version valid only after the start changes nothing
    await theirs.unit(add("CP1", "0.99", valid_from=STARTED + timedelta(seconds=1)))
    assert await ours.unit(lookup()) == Decimal("0.45")


async def test_a_tariff_changed_by_hand_prices_the_next_lookup(tmp_path: Path) -> None:
    """Not through the build: an operator's UPDATE and DELETE in the sqlite3 shell."""
    db = tmp_path / "csms.sqlite3"
    repo = SqliteRepository(db)
    try:
        await repo.unit(add("*", "0.30"))
        assert await repo.unit(lookup()) == Decimal("0.30")
        with sqlite3.connect(db) as shell:
            shell.execute("UPDATE tariffs SET per_kwh = '0.31'")
        assert await repo.unit(lookup()) == Decimal("0.31")
        with sqlite3.connect(db) as shell:
            shell.execute("DELETE FROM tariffs")
        assert await repo.unit(lookup()) is None
    finally:
        await repo.close()


async def one_batch(repo: SqliteRepository, *units: Callable[[Tx], Awaitable[Any]]
                    ) -> list[Any]:
    """The units in one transaction (queued before the committer runs), their results or
    exceptions in order."""
    commits = repo.commits
    results = await asyncio.gather(*(repo.unit(u) for u in units), return_exceptions=True)
    assert repo.commits == commits + 1, "the units did not share a batch"
    return results


async def test_a_tariff_written_earlier_in_the_batch_prices_the_lookups_after_it(
        tmp_path: Path) -> None:
    repo = SqliteRepository(tmp_path / "csms.sqlite3")
    try:
        await repo.unit(add("*", "0.30"))
        assert await one_batch(repo, lookup(), add("CP1", "0.45"), lookup()) == [
            Decimal("0.30"), 1, Decimal("0.45")]
        assert await repo.unit(lookup()) == Decimal("0.45")
    finally:
        await repo.close()


async def test_a_tariff_of_a_unit_that_rolled_back_prices_nothing(tmp_path: Path) -> None:
    """The unit's write is undone, and with it the counter's move: what was looked up
    after it must not be kept, neither for the rest of the batch nor after."""
    repo = SqliteRepository(tmp_path / "csms.sqlite3")

    async def add_look_and_fail(tx: Tx) -> None:
        await add("CP1", "9.99")(tx)
        assert await lookup()(tx) == Decimal("9.99")
        raise RuntimeError("the unit fails after its lookup")

    try:
        await repo.unit(add("*", "0.30"))
        results = await one_batch(repo, lookup(), add_look_and_fail, lookup())
        assert results[0] == Decimal("0.30") and results[2] == Decimal("0.30")
        assert isinstance(results[1], RuntimeError)
        assert await repo.unit(lookup()) == Decimal("0.30")
        assert await repo.read(lambda tx: tx.find_tariff("CP1", STARTED)) is not None
        assert (await repo.read(lambda tx: tx.list_tariffs()))[0].per_kwh == Decimal("0.30")
    finally:
        await repo.close()


def test_the_lookups_kept_are_bounded_and_dropped_when_the_counter_moves() -> None:
    tariffs = _Tariffs()
    tariff = Tariff("*", Decimal("0.30"))
    tariffs.sync(0)
    for n in range(_Tariffs.LIMIT + 10):
        tariffs.keep((f"CP{n}", T0), tariff)
    assert 0 < len(tariffs.found) <= _Tariffs.LIMIT
    tariffs.sync(0)
    assert tariffs.found  # the same counter: kept
    tariffs.sync(1)
    assert not tariffs.found
    tariffs.keep(("CP1", T0), tariff)
    tariffs.stop()  # the batch wrote tariffs
    tariffs.keep(("CP2", T0), tariff)
    assert not tariffs.found
    tariffs.sync(1)  # the same counter as before the write, and still nothing kept
    assert not tariffs.found and tariffs.generation == 1
