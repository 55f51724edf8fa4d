"""Repositories on one SQLite file (the workers of ``csms serve --workers``) take turns
writing; one that keeps its turn fails the others' batches after the busy timeout, as
SQLite's own lock would, instead of hanging them, and they write again once it is done."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from csms.service.charging import new_station
from csms.service.ports import StorageError, Tx
from csms.storage import sqlite
from csms.storage.sqlite import SqliteRepository


def add(sid: str) -> Callable[[Tx], Awaitable[None]]:
    """A unit that adds the station ``sid``."""
    async def work(tx: Tx) -> None:
        await tx.insert_station(new_station(sid))
    return work


async def station_ids(repo: SqliteRepository) -> list[str]:
    async def ids(tx: Tx) -> list[str]:
        return [s.id for s in await tx.list_stations()]
    return await repo.read(ids)


@contextlib.asynccontextmanager
async def turn_held(repo: SqliteRepository) -> AsyncIterator[asyncio.Event]:
    """``repo`` holds the write turn (a unit adding CP-A that waits) until the event
    yielded is set, or the block ends; then its batch commits."""
    started, release = asyncio.Event(), asyncio.Event()

    async def slow(tx: Tx) -> None:
        await tx.insert_station(new_station("CP-A"))
        started.set()
        await release.wait()

    holding = asyncio.ensure_future(repo.unit(slow))
    try:
        await started.wait()
        yield release
    finally:
        release.set()
        await holding


async def test_a_writer_that_keeps_its_turn_fails_the_others_then_lets_them_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite, "BUSY_SECONDS", 0.5)
    a = SqliteRepository(tmp_path / "shared.sqlite3")
    b = SqliteRepository(tmp_path / "shared.sqlite3")
    try:
        async with turn_held(a):
            with pytest.raises(StorageError, match="write turn"):
                await b.unit(add("CP-B"))
        await b.unit(add("CP-B"))  # the abandoned wait gave its turn back
        assert await station_ids(a) == ["CP-A", "CP-B"]
    finally:
        await a.close()
        await b.close()


async def test_writers_of_one_file_interleave_their_batches(tmp_path: Path) -> None:
    repos = [SqliteRepository(tmp_path / "shared.sqlite3") for _ in range(3)]
    try:
        await asyncio.gather(*(repo.unit(add(f"CP-{i}-{k}"))
                               for k in range(50) for i, repo in enumerate(repos)))
        assert len(await station_ids(repos[0])) == 150
    finally:
        for repo in repos:
            await repo.close()


async def test_units_that_queue_while_a_batch_waits_for_the_turn_share_its_commit(
    tmp_path: Path,
) -> None:
    """While another process writes, a batch waits for the turn; the units that arrive
    meanwhile go in with it when it gets the turn (one commit), instead of each wait
    leaving a batch of one and the next units to wait for a turn of their own."""
    a = SqliteRepository(tmp_path / "shared.sqlite3")
    b = SqliteRepository(tmp_path / "shared.sqlite3")
    try:
        async with turn_held(a):
            first = asyncio.ensure_future(b.unit(add("CP-B0")))
            await asyncio.sleep(0.05)  # b's first batch (of one) now waits for the turn
            rest = [asyncio.ensure_future(b.unit(add(f"CP-B{i}"))) for i in range(1, 6)]
            await asyncio.sleep(0.05)
            assert b.commits == 0
        await asyncio.gather(first, *rest)
        assert (b.commits, b.units) == (1, 6)
        assert len(await station_ids(a)) == 7
    finally:
        await a.close()
        await b.close()



async def test_the_write_turn_counts_the_time_held_and_the_time_waited(
    tmp_path: Path,
) -> None:
    """What ``bench.units`` reads: a repository counts the seconds it held the write
    turn (BEGIN to the end of COMMIT) and waited for it (another process writing)."""
    a = SqliteRepository(tmp_path / "shared.sqlite3")
    b = SqliteRepository(tmp_path / "shared.sqlite3")
    try:
        assert a.write_turn_seconds() == b.write_turn_seconds() == (0.0, 0.0, 0.0)
        async with turn_held(a) as release:
            waiting = asyncio.ensure_future(b.unit(add("CP-B")))
            await asyncio.sleep(0.3)
            assert not waiting.done()
            release.set()
        await waiting
        held_a, waited_a, before_a = a.write_turn_seconds()
        held_b, waited_b, before_b = b.write_turn_seconds()
        # a wrote at once and held its turn over the 0.3 s; b's wait began a moment
        # after the sleep did (its batch asks for the turn from the commit thread)
        assert held_a >= 0.3 and waited_a < 0.1
        assert waited_b >= 0.15 and 0 < held_b < held_a  # b waited for it, then wrote
        # the loops were free when the turns came: their batches ran at once
        assert before_a < 0.1 and before_b < 0.1
    finally:
        await a.close()
        await b.close()


async def test_the_turn_held_before_the_batch_runs_is_counted(tmp_path: Path) -> None:
    """The turn comes in the commit thread; a batch runs when the event loop gets to it.
    A loop busy with other work meanwhile holds the turn writing nothing: counted apart,
    as part of the seconds held."""
    repo = SqliteRepository(tmp_path / "one.sqlite3")
    try:
        async def busy_loop() -> None:
            await asyncio.sleep(0)  # after the batch has asked for the turn
            time.sleep(0.3)  # the loop's other work, while the thread holds the turn

        await asyncio.gather(repo.unit(add("CP-1")), busy_loop())
        held, _, before_batch = repo.write_turn_seconds()
        assert 0.25 <= before_batch <= held
    finally:
        await repo.close()


def test_a_process_that_gave_up_waiting_for_the_turn_closes_and_exits(tmp_path: Path) -> None:
    """Another process keeps the turn (stopped, not dead): this one's batch is refused
    after the busy timeout, and then the repository closes and the process exits at once
    (its thread, still waiting for the turn, cannot be interrupted; a ``csms`` command
    hung there). When the turn comes free, that thread hands it on: a third process
    writes."""
    script = f"""
import asyncio, sys
from csms.service.charging import new_station
from csms.storage import sqlite
sqlite.BUSY_SECONDS = 0.5
db = {str(tmp_path / "csms.sqlite3")!r}
keeper, given_up = sqlite.SqliteRepository(db), sqlite.SqliteRepository(db)
keeper._turn.take()

async def main():
    try:
        await given_up.unit(lambda tx: tx.insert_station(new_station("X")))
    except sqlite.StorageError as exc:
        print("refused", exc)
    await given_up.close()
    print("closed")
    keeper._turn.give()
    third = sqlite.SqliteRepository(db)
    await third.unit(lambda tx: tx.insert_station(new_station("Y")))
    await third.close()
    await keeper.close()
    print("third wrote")

asyncio.run(main())
"""
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split("\n")[:3] == [
        "refused cannot begin a transaction: another process has held the database's"
        " write turn for 0.5 s", "closed", "third wrote"], r.stdout
