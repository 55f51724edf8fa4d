"""Message throughput and latency: voltledger vs the ``ocpp`` library's example loop.

Stations send 1.6 MeterValues or 2.0.1 TransactionEvent(Updated) as fast as
they get answers. (a) voltledger validates every message against the official
schemas and commits it to SQLite before answering; (c) the baseline validates
with the library's defaults and stores nothing. Both run in the same run, one
after the other, under the same load generator; the ratio a/c is what counts
(absolute figures drift with the machine).

    python -m bench.throughput --stations 1000 --duration 20 --ocpp 1.6 2.0.1
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import secrets
import sys
from collections.abc import Iterator
from typing import Any

from bench.common import load, server

__all__ = ["main", "measure"]


@contextlib.contextmanager
def postgres_schema(url: str) -> Iterator[str | None]:
    """A fresh schema on the PostgreSQL server (None when it is not reachable)."""
    import asyncpg

    schema = f"vl_bench_{secrets.token_hex(4)}"

    async def run(sql: str) -> None:
        conn = await asyncpg.connect(url, timeout=5)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    try:
        asyncio.run(run(f'CREATE SCHEMA "{schema}"'))
    except (OSError, asyncpg.PostgresError):
        yield None
        return
    try:
        yield f"{url}?search_path={schema}"
    finally:
        asyncio.run(run(f'DROP SCHEMA "{schema}" CASCADE'))


def measure(stations: int, ocpp: str, duration: float, procs: int,
            postgres: str | None = None) -> dict[str, Any]:
    results: dict[str, Any] = {}
    keys = ("messages_per_s", "p50_ms", "p99_ms", "messages", "errors")
    for kind in ("voltledger", "baseline"):
        with server(kind) as (port, _proc):
            r = load(port, stations, ocpp, duration, procs, prefix=f"B{kind[0]}")
        results[kind] = {k: r[k] for k in keys}
    if postgres:
        with postgres_schema(postgres) as dsn:
            if dsn is None:
                results["postgres"] = {"error": f"PostgreSQL not reachable at {postgres}"}
            else:
                with server("voltledger", db=dsn) as (port, _proc):
                    r = load(port, stations, ocpp, duration, procs, prefix="BP")
                results["postgres"] = {k: r[k] for k in keys}
    a, c = results["voltledger"], results["baseline"]
    return {
        "benchmark": "throughput", "stations": stations, "ocpp": ocpp, "duration_s": duration,
        "voltledger_sqlite": a, "baseline_ocpp_lib": c,
        **({"voltledger_postgres": results["postgres"]} if postgres else {}),
        "ratio": round(a["messages_per_s"] / c["messages_per_s"], 3) if c["messages_per_s"]
        else None,
        "p99_ratio": round(a["p99_ms"] / c["p99_ms"], 3) if c["p99_ms"] else None,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stations", type=int, nargs="+", default=[1000])
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--ocpp", nargs="+", default=["1.6", "2.0.1"])
    parser.add_argument("--procs", type=int, default=1, help="load generator processes")
    parser.add_argument("--postgres", default=None,
                        help="also measure PostgreSQL, e.g. postgresql://postgres@127.0.0.1/test")
    args = parser.parse_args(argv)
    for n in args.stations:
        for version in args.ocpp:
            print(json.dumps(measure(n, version, args.duration, args.procs, args.postgres)))
            sys.stdout.flush()


if __name__ == "__main__":
    main()
