"""Load mode: many stations sending transaction messages back-to-back, latency recorded.

Each station boots, starts one session and then sends 1.6 MeterValues or 2.0.1
TransactionEvent(Updated) as fast as it gets answers, for ``duration`` seconds.
Every CALL's latency (send to answer) is recorded; the result has messages per
second and p50/p99 in milliseconds.
"""

from __future__ import annotations

import asyncio
import json
import random
import subprocess
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from chargers_sim.connection import UNREACHABLE_GRACE
from chargers_sim.fleet import start_all
from chargers_sim.station import Station
from csms.protocol import OcppVersion

__all__ = ["load_command", "percentile", "run_json_processes", "run_load", "run_load_procs"]

RESERVOIR = 50_000


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return 0.0
    k = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[k]


async def _drive(st: Station, deadline: float, counts: list[int]) -> None:
    register = st.meters[1].register_wh
    txid = await st.rules.load_start(st, register)
    st.latencies.clear()
    seq = 1
    loop = asyncio.get_running_loop()
    while loop.time() < deadline:
        register += 7
        await st.rules.load_update(st, txid, seq, register)
        seq += 1
        counts[0] += 1


async def run_load(
    url: str, count: int, version: str = "1.6", *, duration: float = 20.0,
    connect_rate: float = 500.0, prefix: str = "LOAD", mix: bool = False,
    password: str | None = None, seed: int = 1,
    unreachable_grace: float = UNREACHABLE_GRACE,
) -> dict[str, Any]:
    base = OcppVersion.parse(version)
    stations = [
        Station(url, f"{prefix}{i:05d}",
                (OcppVersion.V201 if i % 2 == 0 else OcppVersion.V16) if mix else base,
                password=password, seed=seed + i, call_timeout=30)
        for i in range(1, count + 1)
    ]
    try:
        await start_all(stations, connect_rate, 120, fail_fast=True,
                        unreachable_grace=unreachable_grace)
        loop = asyncio.get_running_loop()
        counts = [0]
        started = loop.time()
        deadline = started + duration
        async with asyncio.TaskGroup() as tg:
            for st in stations:
                tg.create_task(_drive(st, deadline, counts))
        elapsed = loop.time() - started
    finally:
        await asyncio.gather(*(st.close() for st in stations), return_exceptions=True)
    latencies = sorted(x for st in stations for x in st.latencies)
    sample = latencies if len(latencies) <= RESERVOIR else sorted(
        random.Random(seed).sample(latencies, RESERVOIR))
    return {
        "stations": count, "ocpp": "mix" if mix else base.short, "messages": counts[0],
        "seconds": round(elapsed, 3), "messages_per_s": round(counts[0] / elapsed, 1),
        "p50_ms": round(percentile(latencies, 0.50) * 1000, 3),
        "p99_ms": round(percentile(latencies, 0.99) * 1000, 3),
        "errors": sum(st.errors for st in stations),
        "latencies_ms": [round(x * 1000, 3) for x in sample],
    }


def load_command(url: str, count: int, ocpp: str, *, duration: float, prefix: str,
                 procs: int = 1, extra: Sequence[str] = ()) -> list[str]:
    """The command line of one load generator process printing its result as JSON."""
    return [sys.executable, "-m", "chargers_sim", "load", "--url", url, "--count", str(count),
            "--ocpp", ocpp, "--duration", str(duration), "--procs", str(procs),
            "--id-prefix", prefix, "--json", *extra]


def run_json_processes(commands: Sequence[Sequence[str]], *, quiet: bool = False,
                       env: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
    """Run the commands at once, each printing one JSON object; their results in order.

    Raises RuntimeError when one fails (once every process has ended), with the last
    line it wrote on stderr; ``quiet``: that line is all that is kept of their stderr.
    """
    children = [subprocess.Popen(list(cmd), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 text=True, env=None if env is None else dict(env))
                for cmd in commands]
    done = [child.communicate() for child in children]
    for child, (_, err) in zip(children, done, strict=True):
        if err and not quiet and child.returncode == 0:
            sys.stderr.write(err)
    for child, (_, err) in zip(children, done, strict=True):
        if child.returncode != 0:
            last = err.strip().splitlines()[-1] if err.strip() else ""
            raise RuntimeError(last.removeprefix("error: ") or
                               f"a load process failed with exit code {child.returncode}")
    return [json.loads(out) for out, _ in done]


def run_load_procs(args: list[str], procs: int, count: int, prefix: str) -> dict[str, Any]:
    """Split ``count`` stations over ``procs`` processes and merge their results."""
    per = [count // procs + (1 if i < count % procs else 0) for i in range(procs)]
    results = run_json_processes([
        [sys.executable, "-m", "chargers_sim", "load", *args, "--count", str(n),
         "--id-prefix", f"{prefix}{p}-", "--json", "--procs", "1", "--keep-latencies"]
        for p, n in enumerate(per) if n])
    latencies = sorted(x for r in results for x in r["latencies_ms"])
    seconds = max(r["seconds"] for r in results)
    messages = sum(r["messages"] for r in results)
    return {
        "stations": count, "ocpp": results[0]["ocpp"], "messages": messages,
        "seconds": seconds, "messages_per_s": round(messages / seconds, 1),
        "p50_ms": percentile(latencies, 0.50), "p99_ms": percentile(latencies, 0.99),
        "errors": sum(r["errors"] for r in results), "procs": len(results),
        "latencies_ms": latencies,
    }
