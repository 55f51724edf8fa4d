"""Connections: memory per connected station and heartbeat latency under that load.

N simulated stations connect (at a bounded rate) and send heartbeats at the
interval the server gives them; the server's RSS growth divided by N is the
memory per connection. Measured for voltledger and for the ``ocpp`` library's
example loop in the same run. With ``--tls`` the same stations connect to voltledger
over ws:// and over wss:// (a self-signed certificate, TLS 1.3), each on a fresh
server, for the cost of TLS per connected station (the ``ocpp`` library's example has
no TLS of its own).

    python -m bench.connections --stations 10000
    python -m bench.connections --stations 5000 --tls
    python -m bench.connections --stations 3000 --interval 2 --hold 40

``--hold`` keeps the stations connected that long (default: 2.2 heartbeat intervals):
with a short interval, the connections have exchanged many messages, as a station's
does after hours of heartbeats and meter values, before memory is measured.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import tempfile
from pathlib import Path
from typing import Any

from bench.common import free_port, rss_kib, server
from bench.soak import write_tls_pair
from chargers_sim.load import percentile
from chargers_sim.station import Station

__all__ = ["main", "measure"]


async def _connect(port: int, n: int, rate: float, prefix: str,
                   scheme: str = "ws") -> list[Station]:
    stations = [Station(f"{scheme}://127.0.0.1:{port}", f"{prefix}{i:05d}", "1.6", seed=i,
                        call_timeout=60, backoff_cap=2.0) for i in range(1, n + 1)]
    async with asyncio.TaskGroup() as tg:
        for st in stations:
            tg.create_task(st.start(300))
            await asyncio.sleep(1.0 / rate)
    return stations


async def measure_one(kind: str, n: int, rate: float, interval: int,
                      tls: bool = False, hold: float | None = None) -> dict[str, Any]:
    os.environ["CSMS_HEARTBEAT_INTERVAL"] = str(interval)
    with tempfile.TemporaryDirectory() as folder:
        extra: list[str] = []
        if tls:
            cert, key = write_tls_pair(Path(folder))
            tls_port = free_port()
            extra = ["--tls-cert", str(cert), "--tls-key", str(key), "--tls-port", str(tls_port)]
            # the stations trust the self-signed certificate (OpenSSL reads this variable
            # when a client context loads its default trust store)
            os.environ["SSL_CERT_FILE"] = str(cert)
        try:
            return await _measure_on(kind, n, rate, interval, extra,
                                     tls_port if tls else None, hold)
        finally:
            os.environ.pop("SSL_CERT_FILE", None)


async def _measure_on(kind: str, n: int, rate: float, interval: int, extra: list[str],
                      tls_port: int | None, hold: float | None) -> dict[str, Any]:
    with server(kind, extra=extra) as (port, proc):
        await asyncio.sleep(1.0)
        before = rss_kib(proc.pid)
        stations = await _connect(tls_port or port, n, rate, f"C{kind[0]}",
                                  "ws" if tls_port is None else "wss")
        for st in stations:
            st.latencies.clear()
        await asyncio.sleep(interval * 2.2 if hold is None else hold)
        after = rss_kib(proc.pid)
        latencies = sorted(x for st in stations for x in st.latencies)
        connected = sum(1 for st in stations if st.online)
        await asyncio.gather(*(st.close() for st in stations))
    return {"connected": connected, "rss_before_kib": before, "rss_after_kib": after,
            "kib_per_connection": round((after - before) / n, 2),
            "heartbeats": len(latencies), "heartbeats_per_station": round(len(latencies) / n, 1),
            "heartbeat_p50_ms": round(percentile(latencies, 0.5) * 1000, 2),
            "heartbeat_p99_ms": round(percentile(latencies, 0.99) * 1000, 2)}


async def measure(n: int, rate: float, interval: int,
                  hold: float | None = None) -> dict[str, Any]:
    a = await measure_one("voltledger", n, rate, interval, hold=hold)
    c = await measure_one("baseline", n, rate, interval, hold=hold)
    return {"benchmark": "connections", "stations": n, "voltledger": a, "baseline_ocpp_lib": c,
            "ratio": round(c["kib_per_connection"] / a["kib_per_connection"], 3)
            if a["kib_per_connection"] > 0 else None}


async def measure_tls(n: int, rate: float, interval: int,
                      hold: float | None = None) -> dict[str, Any]:
    plain = await measure_one("voltledger", n, rate, interval, hold=hold)
    tls = await measure_one("voltledger", n, rate, interval, tls=True, hold=hold)
    return {"benchmark": "connections_tls", "stations": n, "voltledger_ws": plain,
            "voltledger_wss": tls,
            "tls_kib_per_connection": round(tls["kib_per_connection"]
                                            - plain["kib_per_connection"], 2)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stations", type=int, default=10000)
    parser.add_argument("--connect-rate", type=float, default=500.0)
    parser.add_argument("--interval", type=int, default=10, help="heartbeat interval, s")
    parser.add_argument("--hold", type=float, default=None,
                        help="seconds the stations stay connected before the measurement"
                             " (default: 2.2 heartbeat intervals)")
    parser.add_argument("--tls", action="store_true",
                        help="voltledger over ws:// and wss:// instead of against the baseline")
    args = parser.parse_args(argv)
    if args.stations < 1 or args.interval < 1 or (args.hold is not None and args.hold <= 0):
        parser.error("--stations and --interval must be at least 1, --hold above 0")
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    run = measure_tls if args.tls else measure
    print(json.dumps(asyncio.run(run(args.stations, args.connect_rate, args.interval,
                                     args.hold))))


if __name__ == "__main__":
    main()
