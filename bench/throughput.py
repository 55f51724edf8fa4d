"""Message throughput and latency: voltledger against its peers, in the same run.

The peers: (b) a central system written the way the ``ocpp`` library's example is
(``bench/baseline_ocpp_lib.py``: validation by the library, nothing stored) and (n) the
Node ``ocpp-rpc`` server in strict mode (``bench/peers/ocpp_rpc_server.js``, nothing
stored). voltledger (a) validates every message against the official schemas and commits
it before answering (SQLite; PostgreSQL with ``--postgres``). One load generator drives
them all (``bench/loadgen.py``, independent of the project's simulator: every station
waits for each answer; sessions of Authorize, start, 10 meter values of 4 samples, stop;
``--phases``: the stations' first sessions spread over a session's points, the default, or
all whole at once), over several rounds with the servers interleaved; each figure is the
median round, its latencies per message too (a 2.0.1 TransactionEvent per eventType). The
ratios a/b (``ratio``) and a/n (``ratio_vs_fastest_peer``) are what count: absolute
figures drift with the machine. Each server's CPU time per message is read from /proc over
the measured window; on PostgreSQL running on the same machine, the database's processes'
time is measured apart (``db_cpu_us_per_message``: its backends, WAL writer and the rest).

    python -m bench.throughput --stations 1000 --duration 20 --ocpp 1.6 2.0.1 --rounds 3

``--against <checkout>`` measures a change to the server instead, whole, under the same
load: this checkout's ``csms serve`` and the other's (its ``csms`` package, run with this
interpreter and its packages), one after the other in each round, the order alternated,
no peer. ``ratio_vs_against`` is the geometric mean of the rounds' ratios (this code's
messages a second over the other's, the pair run back to back), ``pairs`` each round's,
and ``spread`` their range: the machine drifts by several percent between runs a minute
apart, so a change of a few percent needs many pairs to be told from it.

    python -m bench.throughput --stations 200 --ocpp 1.6 --workers 2 --rounds 10 \
        --duration 15 --against ../before
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import secrets
import statistics
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench import loadgen
from bench.common import cpu_used_s, node_peer_ready, parent, server, tree_cpu_by_pid

__all__ = ["main", "measure", "measure_against"]


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


KEYS = ("messages_per_s", "p50_ms", "p99_ms", "messages", "errors", "connected",
        "p99_ms_by_action")


def _server_args(kind: str, workers: int) -> list[str] | None:
    """``workers`` processes for voltledger (``csms serve --workers``) and the Node peer
    (its cluster); the baseline is one process, as the ``ocpp`` library's example is."""
    if workers <= 1 or kind == "baseline":
        return None
    return [str(workers)] if kind == "ocpp-rpc" else ["--workers", str(workers)]


def postgres_postmaster(url: str) -> int | None:
    """The PostgreSQL server's main process, when it runs on this machine (its processes
    are then the children of it): the parent of the backend serving a connection."""
    import asyncpg

    async def parent_of_backend() -> int:
        conn = await asyncpg.connect(url, timeout=5)
        try:  # read while the backend lives: it ends with the connection
            return parent(int(await conn.fetchval("SELECT pg_backend_pid()")))
        finally:
            await conn.close()

    try:
        return asyncio.run(parent_of_backend())
    except (OSError, ValueError, IndexError, asyncpg.PostgresError):
        return None  # another machine's server (or no /proc): not measured


class CpuWindow:
    """The CPU time a server (its process and their children: the workers) used over the
    load generator's measured window, read from /proc at the window's start and end;
    ``db``: the PostgreSQL server's main process, whose processes' time (its backends,
    the WAL writer, ...) is measured over the same window, apart."""

    def __init__(self, pid: int, db: int | None = None) -> None:
        self.pid = pid
        self.db = db
        self.cores: float | None = None
        self.db_cores: float | None = None
        self._thread: threading.Thread | None = None

    def arm(self, start: float, end: float) -> None:
        self._thread = threading.Thread(target=self._measure, args=(start, end), daemon=True)
        self._thread.start()

    def _measure(self, start: float, end: float) -> None:
        time.sleep(max(0.0, start - time.time()))
        try:
            before, at = tree_cpu_by_pid(self.pid), time.time()
            db_before = tree_cpu_by_pid(self.db) if self.db else {}
            time.sleep(max(0.0, end - at))
            used = cpu_used_s(before, tree_cpu_by_pid(self.pid))
            db_used = cpu_used_s(db_before, tree_cpu_by_pid(self.db)) if self.db else 0.0
            elapsed = time.time() - at
            self.cores = used / elapsed
            if self.db:
                self.db_cores = db_used / elapsed
        except OSError:  # no /proc: not measured
            self.cores = None

    def figures(self, messages_per_s: float) -> dict[str, float | None]:
        """The server's cores in use and its CPU microseconds per message."""
        if self._thread is not None:
            self._thread.join()
        if self.cores is None:
            return {"server_cpu_cores": None, "cpu_us_per_message": None}
        figures = {"server_cpu_cores": round(self.cores, 3),
                   "cpu_us_per_message": (round(self.cores / messages_per_s * 1e6, 1)
                                          if messages_per_s else None)}
        if self.db:
            db = self.db_cores
            figures["db_cpu_us_per_message"] = (round(db / messages_per_s * 1e6, 1)
                                                if db is not None and messages_per_s
                                                else None)
        return figures


def _once(kind: str, stations: int, ocpp: str, duration: float, warmup: float, procs: int,
          prefix: str, db: str | None = None, workers: int = 1,
          cwd: str | None = None, phases: str = "spread") -> dict[str, Any]:
    """One server under the load generator; ``cwd``: voltledger from another checkout."""
    with server("voltledger" if kind == "postgres" else kind, db=db,
                extra=_server_args(kind, workers), cwd=cwd) as (port, proc):
        cpu = CpuWindow(proc.pid, postgres_postmaster(db) if kind == "postgres" and db
                        else None)
        r = loadgen.run(f"ws://127.0.0.1:{port}", stations, ocpp, duration, warmup, procs,
                        prefix, on_window=cpu.arm, phases=phases)
        # read before the server stops: its workers are gone after
        measured = cpu.figures(float(r["messages_per_s"]))
    return {**{k: r[k] for k in KEYS}, **measured}


def _median(runs: list[dict[str, Any]]) -> dict[str, Any]:
    ordered = sorted(runs, key=lambda r: float(r["messages_per_s"]))
    chosen = dict(ordered[len(ordered) // 2])
    chosen["rounds_messages_per_s"] = [r["messages_per_s"] for r in runs]
    chosen["rounds_cpu_us_per_message"] = [r.get("cpu_us_per_message") for r in runs]
    return chosen


def measure(stations: int, ocpp: str, duration: float, procs: int = 2,
            postgres: str | None = None, rounds: int = 1,
            warmup: float = 5.0, peers: bool = True, workers: int = 1,
            phases: str = "spread") -> dict[str, Any]:
    """``peers=False``: voltledger on SQLite and the Node peer are left out (the baseline
    always runs: every ratio is against it), for measuring the PostgreSQL side alone.
    ``workers``: server processes for voltledger and the Node peer."""
    kinds = ["voltledger", "baseline"] + (["ocpp-rpc"] if peers and node_peer_ready() else [])
    runs: dict[str, list[dict[str, Any]]] = {k: [] for k in kinds}
    with contextlib.ExitStack() as stack:
        dsn = stack.enter_context(postgres_schema(postgres)) if postgres else None
        if dsn:
            kinds.append("postgres")
            runs["postgres"] = []
        if dsn and not peers:
            kinds.remove("voltledger")
            del runs["voltledger"]
        for n in range(rounds):
            for kind in kinds[n % len(kinds):] + kinds[:n % len(kinds)]:  # interleaved
                runs[kind].append(_once(kind, stations, ocpp, duration, warmup, procs,
                                        f"R{n}{kind[:2].upper()}",
                                        dsn if kind == "postgres" else None, workers,
                                        phases=phases))
    res = {k: _median(v) for k, v in runs.items()}
    a, b = res.get("voltledger"), res["baseline"]
    n_ = res.get("ocpp-rpc")

    def ratio(x: dict[str, Any] | None, y: dict[str, Any] | None, key: str) -> float | None:
        if not x or not y or x.get(key) is None or not y.get(key):
            return None
        return round(float(x[key]) / float(y[key]), 3)

    return {
        "benchmark": "throughput", "stations": stations, "ocpp": ocpp, "duration_s": duration,
        "rounds": rounds, "workers": workers, "phases": phases,
        "voltledger_sqlite": a or "not measured (--postgres-only)",
        "baseline_ocpp_lib": b,
        **({"peer_ocpp_rpc": n_} if n_ else {"peer_ocpp_rpc": "node or ocpp-rpc missing"
                                             if peers else "not measured (--postgres-only)"}),
        **({"voltledger_postgres": res["postgres"]} if "postgres" in res else {}),
        **({} if not postgres or dsn else
           {"voltledger_postgres": {"error": f"PostgreSQL not reachable at {postgres}"}}),
        "ratio": ratio(a, b, "messages_per_s"),
        "p99_ratio": ratio(a, b, "p99_ms"),
        "ratio_vs_fastest_peer": ratio(a, n_, "messages_per_s"),
        "p99_ratio_vs_fastest_peer": ratio(a, n_, "p99_ms"),
        # the server's CPU time per message against the peers': machine-independent where
        # the rates are not (the load generator shares the cores; it bounds the Node peer)
        "cpu_ratio": ratio(a, b, "cpu_us_per_message"),
        "cpu_ratio_vs_fastest_peer": ratio(a, n_, "cpu_us_per_message"),
        **({"postgres_ratio": ratio(res["postgres"], b, "messages_per_s")}
           if "postgres" in res else {}),
    }


def measure_against(stations: int, ocpp: str, duration: float, against: str,
                    procs: int = 2, rounds: int = 3, warmup: float = 5.0,
                    workers: int = 1, phases: str = "spread") -> dict[str, Any]:
    """This checkout's server and ``against``'s, back to back in each of ``rounds``
    rounds (the order alternated: the one that runs second in a round runs first in the
    next), on SQLite under the same load."""
    runs: dict[str, list[dict[str, Any]]] = {"this": [], "other": []}
    for n in range(rounds):
        for side in (("this", "other") if n % 2 == 0 else ("other", "this")):
            runs[side].append(_once("voltledger", stations, ocpp, duration, warmup, procs,
                                    f"A{n}{side[0].upper()}", workers=workers,
                                    cwd=against if side == "other" else None,
                                    phases=phases))

    def ratios(key: str) -> list[float] | None:
        values = []
        for a, b in zip(runs["this"], runs["other"], strict=True):
            x, y = a.get(key), b.get(key)
            if x is None or not y:
                return None
            values.append(float(x) / float(y))
        return values

    def geometric_mean(values: list[float] | None) -> float | None:
        if not values or min(values) <= 0:
            return None
        return round(statistics.geometric_mean(values), 3)

    rate = ratios("messages_per_s")
    return {
        "benchmark": "throughput", "stations": stations, "ocpp": ocpp,
        "duration_s": duration, "rounds": rounds, "workers": workers, "phases": phases,
        "against": against,
        "voltledger_sqlite": _median(runs["this"]),
        "voltledger_against": _median(runs["other"]),
        "pairs": [round(r, 3) for r in rate or []],
        "ratio_vs_against": geometric_mean(rate),
        "spread": [round(min(rate), 3), round(max(rate), 3)] if rate else None,
        "p99_ratio_vs_against": geometric_mean(ratios("p99_ms")),
        "cpu_ratio_vs_against": geometric_mean(ratios("cpu_us_per_message")),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stations", type=int, nargs="+", default=[1000])
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--ocpp", nargs="+", default=["1.6", "2.0.1"])
    parser.add_argument("--procs", type=int, default=2, help="load generator processes")
    parser.add_argument("--rounds", type=int, default=1,
                        help="rounds with the servers interleaved; the median is reported")
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds before measuring")
    parser.add_argument("--postgres", default=None,
                        help="also measure PostgreSQL, e.g. postgresql://postgres@127.0.0.1/test")
    parser.add_argument("--postgres-only", action="store_true",
                        help="with --postgres: only voltledger on PostgreSQL and the baseline")
    parser.add_argument("--workers", type=int, default=1,
                        help="server processes sharing the port, for voltledger (csms serve"
                             " --workers) and the Node peer (its cluster); the baseline is one")
    parser.add_argument("--against", default=None,
                        help="another checkout: its csms serve against this one's, in turn,"
                             " on SQLite, no peers (ratio_vs_against)")
    parser.add_argument("--phases", choices=loadgen.PHASES, default="spread",
                        help="the stations' first sessions: spread over a session's points"
                             " (a fleet's), or every station's whole at once (bench.loadgen)")
    args = parser.parse_args(argv)
    if args.postgres_only and not args.postgres:
        parser.error("--postgres-only needs --postgres URL")
    for name in ("workers", "rounds", "procs"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1")
    if args.against is not None:
        if not (Path(args.against) / "csms").is_dir():
            parser.error(f"--against {args.against}: no csms package there")
        if args.postgres:
            parser.error("--against measures SQLite only: leave out --postgres")
    for n in args.stations:
        for version in args.ocpp:
            if args.against is not None:
                print(json.dumps(measure_against(
                    n, version, args.duration, str(Path(args.against).resolve()),
                    args.procs, args.rounds, args.warmup, args.workers, args.phases)))
                sys.stdout.flush()
                continue
            print(json.dumps(measure(n, version, args.duration, args.procs, args.postgres,
                                     args.rounds, args.warmup, peers=not args.postgres_only,
                                     workers=args.workers, phases=args.phases)))
            sys.stdout.flush()


if __name__ == "__main__":
    main()
