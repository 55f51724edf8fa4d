"""A realistic fleet: how many stations one node serves with p99 < 100 ms and no error.

Every station boots, then charges without pause: Authorize and a start, a MeterValues
(1.6) or TransactionEvent Updated (2.0.1) of four samples every ``--meter-interval``
seconds (60), a stop after ``--session-meters`` of them (60: an hour), and a Heartbeat
every ``--heartbeat-interval`` seconds (300); each station's schedule starts at a random
phase. The fleet grows in steps on one running server; after each step the load settles
for one meter interval, then every answer inside a window of ``--window`` seconds is
timed. The largest step with p99 under the bound and no error is the server's figure.

Stations connect at ``--connect-rate`` and, like real ones, retry a failed connection a
few times after a random pause (the retries are counted); a station that never gets in is
a connect failure. Stations are spread over worker processes and over several loopback
source addresses (127.0.0.2, 127.0.0.3, ...). The load generator is ``bench.loadgen``'s
station (not the project's simulator); the servers are those of ``bench.throughput``. One
process can hold no more file descriptors than its limit (``ulimit -n``), so that limit
bounds the steps: the run says so.

    python -m bench.fleet --fleet 2000 5000 10000 19000 --servers voltledger ocpp-rpc
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import random
import resource
import shlex
import subprocess
import sys
import time
from collections import Counter
from typing import Any

from bench import loadgen
from bench.common import children, node_peer_ready, rss_kib, server, tree_cpu_s
from bench.loadgen import Station, _percentile, timed
from csms.gcpolicy import GcPolicy

__all__ = ["main", "run"]

P99_BOUND_MS = 100.0
CONNECT_ATTEMPTS = 5


class Paced:
    """One station on a realistic schedule, timing its answers inside the window."""

    def __init__(self, station: Station, meter_interval: float, heartbeat_interval: float,
                 session_meters: int, source: str) -> None:
        self.station = station
        self.meter_interval, self.heartbeat_interval = meter_interval, heartbeat_interval
        self.session_meters, self.source = session_meters, source
        self.transaction: Any = None
        self.meters = 0

    async def connect(self) -> None:
        st = self.station
        await st.connect(local_addr=(self.source, 0), open_timeout=120)
        await st.call(*st.boot())

    async def run(self, window: Window) -> None:
        st = self.station
        loop = asyncio.get_running_loop()
        now = loop.time()
        next_meter = now + random.uniform(0, self.meter_interval)
        next_beat = now + random.uniform(0, self.heartbeat_interval)
        while True:
            await asyncio.sleep(max(0.0, min(next_meter, next_beat) - loop.time()))
            try:
                if loop.time() >= next_beat:
                    next_beat += self.heartbeat_interval
                    await timed(st, window, ("Heartbeat", {}))
                if loop.time() >= next_meter:
                    next_meter += self.meter_interval
                    await self._meter(window)
            except Exception:
                if st.ws is None or st.ws.state.name != "OPEN":
                    window.dropped += 1
                    return

    async def _meter(self, window: Window) -> None:
        st = self.station
        if self.transaction is None:
            await timed(st, window, st.authorize())
            self.transaction = st.transaction_of(await timed(st, window, st.start()))
            self.meters = 0
        await timed(st, window, st.meter(self.transaction))
        self.meters += 1
        if self.meters >= self.session_meters:
            transaction, self.transaction = self.transaction, None
            await timed(st, window, st.stop(transaction))


class Window(loadgen.Window):
    """The load generator's window, opened anew for each step; stations whose
    connection dropped are counted too."""

    def __init__(self) -> None:
        super().__init__(0.0, 0.0)
        self.dropped = 0

    def open(self, begin: float, end: float) -> None:
        self.begin, self.end = begin, end
        self.latencies.clear()
        self.errors = 0


class PauseMeter:
    """The longest collection of the load generator's own garbage collector since
    ``longest`` was last reset (it is reported per window)."""

    def __init__(self) -> None:
        self.longest = 0.0
        self._began = 0.0
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._began = time.perf_counter()
        else:
            self.longest = max(self.longest, time.perf_counter() - self._began)


async def _worker(args: argparse.Namespace) -> None:
    """Hold stations; obey commands on stdin, one JSON object a line, answer each."""
    # The load generator's own collections kept out of the figures: the server's policy
    # (survivors of every collection frozen, the youngest generation collected every
    # 0.1 s). Without it each worker process (12,500 stations at 50,000) paused 0.1-0.5 s
    # in young collections and 4-5 s in full ones, and every answer that came in
    # meanwhile was timed that much late, whatever the server.
    policy = GcPolicy()
    policy.install()
    pauses = PauseMeter()
    window = Window()
    tasks: list[asyncio.Task[None]] = [asyncio.create_task(policy.young_collections())]
    sources = [f"127.0.0.{2 + i}" for i in range(args.sources)]
    reader = asyncio.StreamReader()
    loop = asyncio.get_running_loop()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    next_index = args.first
    retries = [0]

    def reply(obj: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()

    while line := await reader.readline():
        command = json.loads(line)
        if "add" in command:
            n, rate = int(command["add"]), float(command["rate"])
            began, failed = loop.time(), 0
            pending: list[asyncio.Task[None]] = []
            for i in range(n):
                station = Station(args.url, f"{args.prefix}{next_index:06d}", args.ocpp)
                paced = Paced(station, args.meter_interval, args.heartbeat_interval,
                              args.session_meters, sources[next_index % len(sources)])
                next_index += 1

                async def start(p: Paced = paced) -> None:
                    # as a real station does: retry a refused or failed connection after
                    # a random pause, a few times
                    for attempt in range(CONNECT_ATTEMPTS):
                        try:
                            await p.connect()
                            break
                        except Exception:
                            if attempt == CONNECT_ATTEMPTS - 1:
                                raise
                            retries[0] += 1
                            if p.station.ws is not None:
                                with contextlib.suppress(Exception):
                                    await p.station.ws.close()
                            p.station.ws = None
                            await asyncio.sleep(random.uniform(1.0, 5.0) * (attempt + 1))
                    tasks.append(asyncio.create_task(p.run(window)))

                pending.append(asyncio.create_task(start()))
                await asyncio.sleep(max(0.0, began + (i + 1) / rate - loop.time()))
            for result in await asyncio.gather(*pending, return_exceptions=True):
                failed += isinstance(result, BaseException)
            reply({"connected": n - failed, "failed": failed, "retries": retries[0]})
            retries[0] = 0
        elif "window" in command:
            begin, end = command["window"]
            window.open(begin, end)
            await asyncio.sleep(max(0.0, begin - time.time()))
            pauses.longest = 0.0
            await asyncio.sleep(max(0.0, end - time.time()) + 1.0)
            reply({"latencies": {str(k): v for k, v in window.latencies.items()},
                   "errors": window.errors, "dropped": window.dropped,
                   "gc_pause_ms": round(pauses.longest * 1000, 1)})


class Fleet:
    """The worker processes of one run against one server."""

    def __init__(self, url: str, ocpp: str, procs: int, prefix: str,
                 args: argparse.Namespace) -> None:
        self.procs = [subprocess.Popen(
            [sys.executable, "-m", "bench.fleet", "--worker", "--url", url, "--ocpp", ocpp,
             "--prefix", f"{prefix}{i}", "--first", "1", "--sources", str(args.sources),
             "--meter-interval", str(args.meter_interval),
             "--heartbeat-interval", str(args.heartbeat_interval),
             "--session-meters", str(args.session_meters)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
            env={**os.environ, "PYTHONWARNINGS": "ignore"}) for i in range(procs)]

    def ask(self, commands: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for proc, command in zip(self.procs, commands, strict=True):
            assert proc.stdin is not None
            proc.stdin.write(json.dumps(command) + "\n")
            proc.stdin.flush()
        answers = []
        for proc in self.procs:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            if not line:
                raise RuntimeError("a fleet worker died")
            answers.append(json.loads(line))
        return answers

    def close(self) -> None:
        for proc in self.procs:
            with contextlib.suppress(Exception):
                proc.kill()
            proc.wait()


def _split(n: int, parts: int) -> list[int]:
    return [n // parts + (1 if i < n % parts else 0) for i in range(parts)]


def measure(kind: str, args: argparse.Namespace, db: str | None = None,
            label: str | None = None, serve_args: list[str] | None = None,
            settings: dict[str, str] | None = None, cwd: str | None = None) -> dict[str, Any]:
    """Grow a fleet step by step on one server of ``kind``; the figures of every step."""
    steps: list[dict[str, Any]] = []
    workers = args.workers if kind in ("voltledger", "ocpp-rpc") else 1
    extra: list[str] = list(serve_args or [])
    if workers > 1:
        extra += ["--workers", str(workers)] if kind == "voltledger" else [str(workers)]
    with server(kind, db=db, extra=extra, settings=settings, cwd=cwd) as (port, proc):
        fleet = Fleet(f"ws://127.0.0.1:{port}", args.ocpp, args.procs, f"F{kind[:2]}", args)
        try:
            held = 0
            for size in args.fleet:
                add = size - held
                began = time.monotonic()
                answers = fleet.ask([{"add": n, "rate": args.connect_rate / args.procs}
                                     for n in _split(add, args.procs)])
                connect_s = time.monotonic() - began
                held = size
                connected_now = sum(a["connected"] for a in answers)
                retried = sum(a["retries"] for a in answers)
                time.sleep(args.meter_interval)  # the new stations reach their rhythm
                begin = time.time() + 0.5
                server_cpu = tree_cpu_s(proc.pid)
                load_cpu = sum(tree_cpu_s(p.pid) for p in fleet.procs)
                answers = fleet.ask([{"window": [begin, begin + args.window]}] * args.procs)
                # CPU over the window (and the second the workers wait after it)
                spent = time.time() - begin + 0.5
                server_cpu = (tree_cpu_s(proc.pid) - server_cpu) / spent
                load_cpu = (sum(tree_cpu_s(p.pid) for p in fleet.procs) - load_cpu) / spent
                hist: Counter[int] = Counter()
                for a in answers:
                    hist.update({int(k): v for k, v in a["latencies"].items()})
                errors = sum(a["errors"] for a in answers)
                dropped = sum(a["dropped"] for a in answers)
                failed = add - connected_now
                step = {"stations": size, "connect_failures": failed,
                        "connect_retries": retried, "dropped": dropped,
                        "messages_per_s": round(sum(hist.values()) / args.window, 1),
                        "p50_ms": _percentile(hist, 0.50), "p99_ms": _percentile(hist, 0.99),
                        "errors": errors, "rss_mib": round(_tree_rss_kib(proc.pid) / 1024, 1),
                        "connect_s": round(connect_s, 1),
                        "server_cpu_cores": round(server_cpu, 3),
                        "generator_cpu_cores": round(load_cpu, 3),
                        "generator_gc_pause_ms": max(a["gc_pause_ms"] for a in answers),
                        "load_avg_1m": round(os.getloadavg()[0], 2)}
                step["ok"] = (step["p99_ms"] < P99_BOUND_MS and errors == 0 and failed == 0
                              and dropped == 0)
                steps.append(step)
                print(json.dumps({"server": label or kind, **step}), file=sys.stderr)
                if not step["ok"] and not args.keep_going:
                    break
        finally:
            fleet.close()
    passed = [s["stations"] for s in steps if s["ok"]]
    return {"largest_ok": max(passed, default=0), "server_processes": workers, "steps": steps}


def _tree_rss_kib(pid: int) -> int:
    """RSS of a server and of its worker processes (csms serve --workers)."""
    total = rss_kib(pid)
    for child in children(pid):
        with contextlib.suppress(OSError, RuntimeError):
            total += rss_kib(child)
    return total


def run(args: argparse.Namespace) -> dict[str, Any]:
    limit = resource.getrlimit(resource.RLIMIT_NOFILE)
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit[1], limit[1]))
    fd_limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    out: dict[str, Any] = {
        "benchmark": "fleet", "ocpp": args.ocpp, "meter_interval_s": args.meter_interval,
        "heartbeat_interval_s": args.heartbeat_interval, "window_s": args.window,
        "p99_bound_ms": P99_BOUND_MS, "process_fd_limit": fd_limit, "servers": {}}
    for kind in args.servers:
        if kind == "ocpp-rpc" and not node_peer_ready():
            out["servers"][kind] = {"skipped": "node or ocpp-rpc missing (make install)"}
            continue
        if kind == "postgres":
            from bench.throughput import postgres_schema

            with postgres_schema(args.postgres) as url:
                if url is None:
                    out["servers"][kind] = {"skipped": f"no PostgreSQL at {args.postgres}"}
                    continue
                out["servers"][kind] = measure("voltledger", args, db=url, label=kind)
            continue
        out["servers"][kind] = measure(kind, args)
    for variant in args.variant:
        name, _, spec = variant.partition("=")
        words = shlex.split(spec)
        settings = dict(w.split("=", 1) for w in words if w.startswith("CSMS_") and "=" in w)
        roots = [w[1:] for w in words if w.startswith("@")]
        serve_args = [w for w in words
                      if not (w.startswith("CSMS_") and "=" in w) and not w.startswith("@")]
        out["servers"][name] = {**measure("voltledger", args, label=name,
                                          serve_args=serve_args, settings=settings,
                                          cwd=roots[0] if roots else None),
                                "variant": spec}
    if max(args.fleet) >= fd_limit - 100 and args.workers < 2:
        out["note"] = (f"one process holds at most {fd_limit} sockets here (ulimit -n); "
                       "steps beyond it cannot be served by one server process")
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fleet", type=int, nargs="+", default=[2000, 5000, 10000, 19000],
                        help="fleet sizes, in increasing order")
    parser.add_argument("--servers", nargs="+", default=["voltledger", "postgres", "ocpp-rpc",
                                                         "baseline"],
                        choices=("voltledger", "postgres", "ocpp-rpc", "baseline"))
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--ocpp", choices=("1.6", "2.0.1"), default="1.6")
    parser.add_argument("--meter-interval", type=float, default=60.0)
    parser.add_argument("--heartbeat-interval", type=float, default=300.0)
    parser.add_argument("--session-meters", type=int, default=60)
    parser.add_argument("--window", type=float, default=60.0)
    parser.add_argument("--procs", type=int, default=4)
    parser.add_argument("--workers", type=int, default=1,
                        help="server processes sharing the port: csms serve --workers for"
                             " voltledger on SQLite and PostgreSQL (each a node), Node's"
                             " cluster module for ocpp-rpc")
    parser.add_argument("--sources", type=int, default=4, help="loopback source addresses")
    parser.add_argument("--connect-rate", type=float, default=500.0,
                        help="new connections per second, in all")
    parser.add_argument("--variant", action="append", default=[], metavar="NAME=ARGS",
                        help="also measure voltledger (SQLite) run with these `csms serve`"
                             " arguments and CSMS_* settings (and @DIR: the csms of another"
                             " checkout), e.g. 'queue0=CSMS_HANDSHAKE_QUEUE=0 --workers 2';"
                             " repeatable")
    parser.add_argument("--keep-going", action="store_true",
                        help="measure every step, also after one that failed")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--prefix", default="F", help=argparse.SUPPRESS)
    parser.add_argument("--first", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(_worker(args))
        return
    if args.fleet != sorted(args.fleet):
        parser.error("--fleet sizes must increase")
    print(json.dumps(run(args)))


if __name__ == "__main__":
    main()
