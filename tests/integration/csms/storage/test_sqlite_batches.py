"""A SQLite batch runs its units without a savepoint each (SAVEPOINT and RELEASE were ~4 us
of a unit's ~60-100 on the write turn), and still undoes a failing unit alone: a unit that
fails having written nothing has nothing to undo; one that wrote and then failed sends its
batch back to the start, run again unit by unit in savepoints, and the batches after it
too (``SAVEPOINT_BATCHES``), so that a station whose messages fail costs its neighbours at
most one run more now and then. A unit that ends the transaction itself fails the batch:
nothing of it may be written outside the batch's transaction."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from csms.domain.model import IdTag
from csms.service.ports import StorageError, Tx
from csms.storage import sqlite
from csms.storage.sqlite import SqliteRepository


@pytest.fixture
async def repo(tmp_path: Path) -> AsyncIterator[SqliteRepository]:
    repository = SqliteRepository(tmp_path / "csms.sqlite3")
    try:
        yield repository
    finally:
        await repository.close()


class Statements:
    """The statements the repository's write connection runs."""

    def __init__(self, repo: SqliteRepository) -> None:
        self.seen: list[str] = []
        repo._write.set_trace_callback(self.seen.append)

    def count(self, prefix: str) -> int:
        return sum(s.startswith(prefix) for s in self.seen)


def tag(name: str, runs: list[str] | None = None) -> Callable[[Tx], Awaitable[str]]:
    async def work(tx: Tx) -> str:
        if runs is not None:
            runs.append(name)
        await tx.put_tag(IdTag(name))
        return name
    return work


async def tags(repo: SqliteRepository) -> list[str]:
    return sorted(t.tag for t in await repo.read(lambda tx: tx.list_tags()))


async def batch(repo: SqliteRepository, *units: Callable[[Tx], Awaitable[Any]]) -> list[Any]:
    """The units in one batch (queued before its committer runs)."""
    return await asyncio.gather(*(repo.unit(u) for u in units), return_exceptions=True)


async def test_a_batch_of_units_that_succeed_has_one_savepoint(
        repo: SqliteRepository) -> None:
    statements = Statements(repo)
    assert await batch(repo, *(tag(f"T{i}") for i in range(20))) == [
        f"T{i}" for i in range(20)]
    assert statements.count("SAVEPOINT") == 1
    assert statements.count("ROLLBACK") == 0
    assert await tags(repo) == sorted(f"T{i}" for i in range(20))


async def test_a_unit_that_fails_before_writing_costs_no_run_again(
        repo: SqliteRepository) -> None:
    statements = Statements(repo)
    runs: list[str] = []

    async def refuses(tx: Tx) -> None:
        runs.append("refuses")
        await tx.get_tag("A")  # reads, then refuses: nothing to undo
        raise ValueError("refused")

    async def collides(tx: Tx) -> None:
        runs.append("collides")
        await tx.put_tag(IdTag("A"))
        await tx.execute("INSERT INTO id_tags (tag) VALUES ('A')")  # the same key again

    results = await batch(repo, tag("A", runs), refuses, tag("B", runs))
    assert results[0] == "A" and isinstance(results[1], ValueError) and results[2] == "B"
    assert runs == ["A", "refuses", "B"]  # each once
    assert statements.count("SAVEPOINT") == 1
    assert await tags(repo) == ["A", "B"]
    # a unit whose only write fails (a constraint) wrote nothing either
    runs.clear()

    async def duplicate(tx: Tx) -> None:
        runs.append("duplicate")
        await tx.execute("INSERT INTO id_tags (tag) VALUES ('A')")

    results = await batch(repo, tag("C", runs), duplicate, tag("D", runs))
    assert results[0] == "C" and isinstance(results[1], StorageError) and results[2] == "D"
    assert runs == ["C", "duplicate", "D"]
    assert await tags(repo) == ["A", "B", "C", "D"]


async def test_a_unit_that_wrote_then_failed_is_undone_alone(repo: SqliteRepository) -> None:
    statements = Statements(repo)
    runs: list[str] = []

    async def half(tx: Tx) -> None:
        runs.append("half")
        await tx.put_tag(IdTag("HALF"))
        await tx.execute("INSERT INTO id_tags (tag) VALUES ('HALF')")  # fails: undo HALF

    async def raises(tx: Tx) -> None:
        runs.append("raises")
        await tx.put_tag(IdTag("LOST"))
        raise ValueError("the unit's own error")

    results = await batch(repo, tag("A", runs), half, tag("B", runs), raises, tag("C", runs))
    assert results[0] == "A" and results[2] == "B" and results[4] == "C"
    assert isinstance(results[1], StorageError)
    assert isinstance(results[3], ValueError)
    assert await tags(repo) == ["A", "B", "C"]
    # the batch ran again from its start, each unit in its own savepoint: A and half twice
    assert runs == ["A", "half", "A", "half", "B", "raises", "C"]
    assert statements.count("SAVEPOINT unit") == 5


async def test_after_a_run_again_the_next_batches_keep_savepoints(
        repo: SqliteRepository, monkeypatch: pytest.MonkeyPatch) -> None:
    """A station whose messages keep failing after a write costs its batch one run more,
    then no more for ``SAVEPOINT_BATCHES`` batches: the units pay for a savepoint each."""
    monkeypatch.setattr(sqlite, "SAVEPOINT_BATCHES", 3)
    statements = Statements(repo)
    runs: list[str] = []

    def hostile(n: int) -> Callable[[Tx], Awaitable[None]]:
        async def work(tx: Tx) -> None:
            runs.append(f"hostile{n}")
            await tx.put_tag(IdTag(f"X{n}"))
            raise ValueError("hostile")
        return work

    for n in range(4):
        await batch(repo, tag(f"A{n}", runs), hostile(n))
    # the first batch ran twice; the next ones in savepoints, once each, and each
    # failure after a write keeps the savepoints on for three more
    assert runs == ["A0", "hostile0", "A0", "hostile0", "A1", "hostile1", "A2", "hostile2",
                    "A3", "hostile3"]
    assert await tags(repo) == ["A0", "A1", "A2", "A3"]
    for n in range(3):
        statements.seen.clear()
        await batch(repo, tag(f"Z{n}"))
        assert statements.count("SAVEPOINT unit") == 1, n
    statements.seen.clear()
    await batch(repo, tag("Y"))  # three batches without a failure: none again
    assert statements.count("SAVEPOINT") == 1 and statements.count("SAVEPOINT unit") == 0


@pytest.mark.parametrize("ending", ["ROLLBACK", "COMMIT"])
async def test_a_unit_that_ends_the_transaction_fails_its_batch(
        repo: SqliteRepository, ending: str) -> None:
    """Nothing after it may be written outside the batch's transaction (each statement
    would commit on its own, before the callers are told anything)."""
    async def ends(tx: Tx) -> None:
        await tx.execute(ending)

    results = await batch(repo, tag("A"), ends, tag("B"))
    assert all(isinstance(r, StorageError) for r in results), results
    assert "B" not in await tags(repo)
    assert await repo.unit(tag("C")) == "C"  # the repository carries on
    assert "C" in await tags(repo)


async def test_units_keep_their_temporary_tables_in_memory(repo: SqliteRepository) -> None:
    # 2 = MEMORY: a unit's INSERT ... RETURNING or materialized WITH does not set up a
    # temporary file's pager per statement (~100 us of a session's insert)
    assert repo._write.execute("PRAGMA temp_store").fetchone()[0] == 2
    # the read connection's listings and exports may sort more than memory should hold
    assert repo._read.execute("PRAGMA temp_store").fetchone()[0] == 0

