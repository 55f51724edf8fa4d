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
import json
import sys
from typing import Any

from bench.common import load, server

__all__ = ["main", "measure"]


def measure(stations: int, ocpp: str, duration: float, procs: int) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for kind in ("voltledger", "baseline"):
        with server(kind) as (port, _proc):
            r = load(port, stations, ocpp, duration, procs, prefix=f"B{kind[0]}")
        results[kind] = {k: r[k] for k in ("messages_per_s", "p50_ms", "p99_ms", "messages",
                                          "errors")}
    a, c = results["voltledger"], results["baseline"]
    return {
        "benchmark": "throughput", "stations": stations, "ocpp": ocpp, "duration_s": duration,
        "voltledger_sqlite": a, "baseline_ocpp_lib": c,
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
    args = parser.parse_args(argv)
    for n in args.stations:
        for version in args.ocpp:
            print(json.dumps(measure(n, version, args.duration, args.procs)))
            sys.stdout.flush()


if __name__ == "__main__":
    main()
