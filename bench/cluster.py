"""Scale-out: throughput of two nodes against one node, on one PostgreSQL and one broker.

Every node runs as deployed in a cluster: PostgreSQL for state, MQTT on (bus events
in the outbox, command routing). The same stations and the same two load generators
run against one node, then split over two nodes, in the same run; the ratio
two/one is the figure (on a machine with few cores the nodes, the load generators
and the database share them).

    python -m bench.cluster --stations 400 --duration 20
"""

from __future__ import annotations

import argparse
import json
import secrets
from typing import Any

from bench.common import load_parallel, server
from bench.throughput import postgres_schema

__all__ = ["main", "measure"]

KEYS = ("messages_per_s", "p50_ms", "p99_ms", "messages", "errors")


def _sum(parts: list[dict[str, Any]]) -> dict[str, Any]:
    return {"messages_per_s": round(sum(p["messages_per_s"] for p in parts), 1),
            "p50_ms": round(max(p["p50_ms"] for p in parts), 2),
            "p99_ms": round(max(p["p99_ms"] for p in parts), 2),
            "messages": sum(p["messages"] for p in parts),
            "errors": sum(p["errors"] for p in parts)}


def measure(stations: int, ocpp: str, duration: float, postgres: str,
            mqtt: str) -> dict[str, Any]:
    half = stations // 2
    run = secrets.token_hex(3)
    with postgres_schema(postgres) as dsn:
        if dsn is None:
            return {"benchmark": "cluster", "error": f"PostgreSQL not reachable at {postgres}"}
        with server("voltledger", db=dsn, extra=["--mqtt", mqtt, "--node-id",
                                                 f"one-{run}"]) as (port, _):
            one = _sum(load_parallel([(port, half, "S1a"), (port, half, "S1b")], ocpp,
                                     duration))
    with postgres_schema(postgres) as dsn:
        assert dsn is not None
        with server("voltledger", db=dsn, extra=["--mqtt", mqtt, "--node-id", f"a-{run}"]) \
                as (port_a, _), \
                server("voltledger", db=dsn, extra=["--mqtt", mqtt, "--node-id", f"b-{run}"]) \
                as (port_b, _):
            two = _sum(load_parallel([(port_a, half, "S2a"), (port_b, half, "S2b")], ocpp,
                                     duration))
    return {"benchmark": "cluster", "stations": half * 2, "ocpp": ocpp,
            "duration_s": duration, "one_node": one, "two_nodes": two,
            "ratio": round(two["messages_per_s"] / one["messages_per_s"], 3)
            if one["messages_per_s"] else None}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stations", type=int, default=400)
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--ocpp", default="1.6")
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--mqtt", default="mqtt://127.0.0.1:1883")
    args = parser.parse_args(argv)
    print(json.dumps(measure(args.stations, args.ocpp, args.duration, args.postgres,
                             args.mqtt)))


if __name__ == "__main__":
    main()
