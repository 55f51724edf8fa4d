"""Group commit on both backends: many units per commit, each one isolated in its savepoint."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest

from csms.domain.model import IdTag, Station
from csms.service.ports import Repository, StorageError, Tx

T0 = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)


def commits(repo: Repository) -> int:
    return int(getattr(repo, "commits"))  # noqa: B009 - both adapters count, the port does not


async def count(repo: Repository, sql: str, *params: Any) -> int:
    row = await repo.read(lambda tx: tx.fetchone(sql, *params))
    assert row is not None
    return int(row["n"])


async def test_concurrent_units_share_commits_and_get_their_own_results(
    repo: Repository,
) -> None:
    before = commits(repo)

    def add_event(i: int) -> Any:
        async def work(tx: Tx) -> tuple[int, int]:
            row_id = await tx.insert_id(
                "INSERT INTO station_events (station_id, kind, ts, payload) VALUES (?, ?, ?, ?)"
                " RETURNING id", f"CP{i % 7}", "k", str(i), "{}")
            return i, row_id

        return work

    n = 400
    results = await asyncio.gather(*(repo.unit(add_event(i)) for i in range(n)))
    assert [i for i, _ in results] == list(range(n))
    assert len({row_id for _, row_id in results}) == n
    # every caller got the id of its own row
    rows = await repo.read(lambda tx: tx.fetchall("SELECT id, ts FROM station_events"))
    assert {r["id"]: int(r["ts"]) for r in rows} == {row_id: i for i, row_id in results}
    assert commits(repo) - before < n / 10  # grouped, not one commit per unit


async def test_failing_units_do_not_spoil_the_batch(repo: Repository) -> None:
    async def setup(tx: Tx) -> None:
        await tx.insert_station(Station("CP1", created_at=T0))

    await repo.unit(setup)
    before = commits(repo)

    async def ok(tx: Tx) -> str:
        await tx.put_tag(IdTag("GOOD1"))
        return "ok"

    async def raises(tx: Tx) -> None:
        await tx.put_tag(IdTag("BAD1"))
        raise ValueError("the unit's own error")

    async def duplicate(tx: Tx) -> None:
        await tx.put_tag(IdTag("BAD2"))
        await tx.insert_station(Station("CP1", created_at=T0))  # primary key violation

    async def ok2(tx: Tx) -> str:
        await tx.put_tag(IdTag("GOOD2"))
        return "ok2"

    results = await asyncio.gather(
        repo.unit(ok), repo.unit(raises), repo.unit(duplicate), repo.unit(ok2),
        return_exceptions=True,
    )
    assert results[0] == "ok"
    assert isinstance(results[1], ValueError)  # the unit's own exception, unchanged
    assert isinstance(results[2], StorageError)  # a database error, in the port's terms
    assert results[3] == "ok2"
    tags = [t.tag for t in await repo.read(lambda tx: tx.list_tags())]
    assert tags == ["GOOD1", "GOOD2"]
    assert commits(repo) - before == 1


async def test_a_failing_commit_fails_every_unit_of_the_batch(repo: Repository) -> None:
    # A deferred foreign key is checked at COMMIT: the whole transaction fails there.
    async def setup(tx: Tx) -> None:
        await tx.execute("CREATE TABLE t_parent (id INTEGER PRIMARY KEY)")
        await tx.execute(
            "CREATE TABLE t_child (id INTEGER PRIMARY KEY, parent INTEGER"
            " REFERENCES t_parent(id) DEFERRABLE INITIALLY DEFERRED)"
        )

    await repo.unit(setup)

    async def tag(tx: Tx) -> None:
        await tx.put_tag(IdTag("LOST"))

    async def orphan(tx: Tx) -> None:
        await tx.execute("INSERT INTO t_child (id, parent) VALUES (?, ?)", 1, 42)

    async def event(tx: Tx) -> None:
        await tx.add_station_event("CP1", "DataTransfer", {}, T0)

    results = await asyncio.gather(repo.unit(tag), repo.unit(orphan), repo.unit(event),
                                   return_exceptions=True)
    assert all(isinstance(r, StorageError) for r in results), results
    assert await repo.read(lambda tx: tx.list_tags()) == []
    assert await count(repo, "SELECT count(*) AS n FROM station_events") == 0
    assert await count(repo, "SELECT count(*) AS n FROM t_child") == 0
    # the repository carries on
    await repo.unit(tag)
    assert [t.tag for t in await repo.read(lambda tx: tx.list_tags())] == ["LOST"]


async def test_a_cancelled_caller_does_not_cancel_its_unit(repo: Repository) -> None:
    started = asyncio.Event()
    go_on = asyncio.Event()

    async def slow(tx: Tx) -> None:
        started.set()
        await go_on.wait()
        await tx.put_tag(IdTag("KEPT"))

    caller = asyncio.create_task(repo.unit(slow))
    await started.wait()
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller
    go_on.set()
    # The cancelled caller's unit still commits. On SQLite the next unit's batch runs
    # after it; PostgreSQL runs batches on parallel committers, so the next one may commit
    # first: wait for the kept tag rather than count on the order.
    await repo.unit(lambda tx: tx.put_tag(IdTag("NEXT")))
    tags: list[str] = []
    for _ in range(200):
        tags = sorted(t.tag for t in await repo.read(lambda tx: tx.list_tags()))
        if "KEPT" in tags:
            break
        await asyncio.sleep(0.05)
    assert tags == ["KEPT", "NEXT"]


async def test_units_queued_while_a_batch_runs_form_the_next_batch(repo: Repository) -> None:
    gate = asyncio.Event()

    async def first(tx: Tx) -> int:
        await gate.wait()
        await tx.put_tag(IdTag("FIRST"))
        return 0

    def later(i: int) -> Any:
        async def work(tx: Tx) -> int:
            await tx.put_tag(IdTag(f"L{i:03d}"))
            return i

        return work

    before = commits(repo)
    head = asyncio.create_task(repo.unit(first))
    await asyncio.sleep(0.05)  # the committer is now inside `first`
    rest = [asyncio.create_task(repo.unit(later(i))) for i in range(1, 51)]
    gate.set()
    assert await head == 0
    assert await asyncio.gather(*rest) == list(range(1, 51))
    assert commits(repo) - before == 2
    assert len(await repo.read(lambda tx: tx.list_tags())) == 51


async def test_an_unforeseen_engine_fault_fails_its_batch_and_the_queue_goes_on(
    repo: Repository, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A batch that fails with an error no engine maps (asyncpg's "cannot switch to
    state", a bug) fails its units with StorageError; the units queued behind it are
    committed without waiting for another caller to start a committer."""
    entered = asyncio.Event()
    release = asyncio.Event()
    real = repo._run_batch  # type: ignore[attr-defined]
    faults = [RuntimeError("cannot switch to state 15; another operation (2) in progress")]

    async def faulty(batch: Any) -> Any:
        if faults:
            fault = faults.pop()  # the first batch only, whichever committer runs it
            entered.set()
            await release.wait()
            raise fault
        return await real(batch)

    monkeypatch.setattr(repo, "_run_batch", faulty)
    first = asyncio.create_task(repo.unit(lambda tx: tx.put_tag(IdTag("LOST"))))
    await entered.wait()
    # queued while the failing batch runs: no caller comes after them
    queued = [asyncio.create_task(repo.unit(lambda tx, i=i: tx.put_tag(IdTag(f"Q{i}"))))
              for i in range(5)]
    await asyncio.sleep(0.05)
    release.set()
    with pytest.raises(StorageError, match="batch failed: RuntimeError"):
        await first
    async with asyncio.timeout(10):
        await asyncio.gather(*queued)
    tags = [t.tag for t in await repo.read(lambda tx: tx.list_tags())]
    assert sorted(tags) == [f"Q{i}" for i in range(5)]


async def test_closed_repository_refuses_units(db: str) -> None:
    from csms.storage import open_repository

    repo = await open_repository(db)
    await repo.unit(lambda tx: tx.put_tag(IdTag("T1")))
    await repo.close()
    with pytest.raises(StorageError):
        await repo.unit(lambda tx: tx.put_tag(IdTag("T2")))
