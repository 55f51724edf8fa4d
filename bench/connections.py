"""Connections: memory per connected station and heartbeat latency under that load.

N simulated stations connect (at a bounded rate) and send heartbeats at the
interval the server gives them; the server's RSS growth divided by N is the
memory per connection. Measured for voltledger and for the ``ocpp`` library's
example loop in the same run.

    python -m bench.connections --stations 10000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
from typing import Any

from bench.common import rss_kib, server
from chargers_sim.load import percentile
from chargers_sim.station import Station

__all__ = ["main", "measure"]


async def _connect(port: int, n: int, rate: float, prefix: str) -> list[Station]:
    stations = [Station(f"ws://127.0.0.1:{port}", f"{prefix}{i:05d}", "1.6", seed=i,
                        call_timeout=60, backoff_cap=2.0) for i in range(1, n + 1)]
    async with asyncio.TaskGroup() as tg:
        for st in stations:
            tg.create_task(st.start(300))
            await asyncio.sleep(1.0 / rate)
    return stations


async def measure_one(kind: str, n: int, rate: float, interval: int) -> dict[str, Any]:
    os.environ["CSMS_HEARTBEAT_INTERVAL"] = str(interval)
    with server(kind) as (port, proc):
        await asyncio.sleep(1.0)
        before = rss_kib(proc.pid)
        stations = await _connect(port, n, rate, f"C{kind[0]}")
        for st in stations:
            st.latencies.clear()
        await asyncio.sleep(interval * 2.2)
        after = rss_kib(proc.pid)
        latencies = sorted(x for st in stations for x in st.latencies)
        connected = sum(1 for st in stations if st.online)
        await asyncio.gather(*(st.close() for st in stations))
    return {"connected": connected, "rss_before_kib": before, "rss_after_kib": after,
            "kib_per_connection": round((after - before) / n, 2),
            "heartbeats": len(latencies),
            "heartbeat_p50_ms": round(percentile(latencies, 0.5) * 1000, 2),
            "heartbeat_p99_ms": round(percentile(latencies, 0.99) * 1000, 2)}


async def measure(n: int, rate: float, interval: int) -> dict[str, Any]:
    a = await measure_one("voltledger", n, rate, interval)
    c = await measure_one("baseline", n, rate, interval)
    return {"benchmark": "connections", "stations": n, "voltledger": a, "baseline_ocpp_lib": c,
            "ratio": round(c["kib_per_connection"] / a["kib_per_connection"], 3)
            if a["kib_per_connection"] > 0 else None}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stations", type=int, default=10000)
    parser.add_argument("--connect-rate", type=float, default=500.0)
    parser.add_argument("--interval", type=int, default=10, help="heartbeat interval, s")
    args = parser.parse_args(argv)
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    print(json.dumps(asyncio.run(measure(args.stations, args.connect_rate, args.interval))))


if __name__ == "__main__":
    main()
