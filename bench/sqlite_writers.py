"""Several processes writing one SQLite file (``csms serve --workers`` on SQLite): how long
a unit waits for its commit when the processes take turns on the write lock
(``csms.storage.sqlite``: a ``flock`` handed on by the committing thread) against SQLite's
own busy handler alone (the baseline, measured in the same run, interleaved in pairs).

Each of ``--processes`` processes opens the repository and submits small units (one
upsert) at ``--rate`` a second, Poisson arrivals, for ``--seconds``; a unit's time is
from submission to its durable commit. The ratio is the baseline's p99 over the turns' p99,
per pair (the median over the processes of a round), and the median of the pairs.

    python -m bench.sqlite_writers --pairs 3
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from csms.service.ports import Tx
from csms.storage.sql import SqlTx

__all__ = ["main"]


async def _writer(path: str, rate: float, seconds: float, busy: bool) -> dict[str, Any]:
    from csms.storage import sqlite

    if busy:  # the baseline: SQLite's busy handler alone
        sqlite._WriteTurn.take = lambda self: None  # type: ignore[method-assign]
        sqlite._WriteTurn.give = lambda self: None  # type: ignore[method-assign]
    repo = sqlite.SqliteRepository(path)
    waits: list[float] = []

    async def one() -> None:
        began = time.perf_counter()

        async def work(tx: Tx) -> None:
            assert isinstance(tx, SqlTx)
            await tx.execute(
                "INSERT INTO nodes (id, started_at, last_seen) VALUES (?, ?, ?)"
                " ON CONFLICT (id) DO UPDATE SET last_seen = excluded.last_seen",
                f"bench-{random.randrange(1000)}", "2026-01-01T00:00:00+00:00",
                "2026-01-01T00:00:00+00:00")

        await repo.unit(work)
        waits.append(time.perf_counter() - began)

    tasks = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        tasks.append(asyncio.create_task(one()))
        await asyncio.sleep(random.expovariate(rate))
    await asyncio.gather(*tasks)
    await repo.close()
    waits.sort()
    return {"units": len(waits), "commits": repo.commits,
            "p50_ms": round(waits[len(waits) // 2] * 1000, 2),
            "p99_ms": round(waits[int(len(waits) * 0.99)] * 1000, 2)}


def _round(folder: Path, n: int, args: argparse.Namespace, busy: bool) -> dict[str, Any]:
    from csms.storage.sqlite import SqliteRepository

    path = folder / f"round-{n}.sqlite3"
    asyncio.run(SqliteRepository(path).close())  # the schema, before the writers start
    procs = [subprocess.Popen(
        [sys.executable, "-m", "bench.sqlite_writers", "--writer", str(path),
         "--rate", str(args.rate), "--seconds", str(args.seconds),
         *(["--busy"] if busy else [])], stdout=subprocess.PIPE, text=True)
        for _ in range(args.processes)]
    results = [json.loads(p.communicate()[0]) for p in procs]
    return {"p99_ms": statistics.median(r["p99_ms"] for r in results),
            "p50_ms": statistics.median(r["p50_ms"] for r in results),
            "units": sum(r["units"] for r in results)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, default=3)
    parser.add_argument("--rate", type=float, default=300.0, help="units a second each")
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--writer", help=argparse.SUPPRESS)
    parser.add_argument("--busy", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.writer:
        print(json.dumps(asyncio.run(_writer(args.writer, args.rate, args.seconds,
                                             args.busy))))
        return
    pairs = []
    with tempfile.TemporaryDirectory() as folder:
        for i in range(args.pairs):
            turns = _round(Path(folder), 2 * i, args, busy=False)
            busy = _round(Path(folder), 2 * i + 1, args, busy=True)
            pairs.append({"turns": turns, "busy_handler": busy,
                          "p99_ratio": round(busy["p99_ms"] / max(turns["p99_ms"], 0.01), 2)})
            print(json.dumps(pairs[-1]), file=sys.stderr)
    print(json.dumps({"benchmark": "sqlite_writers", "processes": args.processes,
                      "rate_per_process": args.rate, "pairs": pairs,
                      "median_p99_ratio": statistics.median(p["p99_ratio"] for p in pairs)}))


if __name__ == "__main__":
    main()
