"""The service and its storage alone, without sockets: how much of a message's time holds
the database's write turn, and what a second process on the same SQLite file adds.

The load generator's sessions (``bench.loadgen``: Authorize, a start, ten meter values of
four samples, a stop) go through the translation handlers, as ``csms serve`` calls them,
into a SQLite file: ``--stations`` stations a process, each waiting for its answer, in one
process and then in ``--processes`` processes on one file (``csms serve --workers`` on
SQLite: the processes take turns writing, ``csms.storage.sqlite``), in the same run.
Each prints messages a second, the CPU time per message, the CPU time spent inside units
of work per unit (what runs while the write turn is held: the service's reads and
decisions and the SQL), and ``turn_share``: the seconds all processes held the write
turn over the seconds measured. Near 1.0 the file's writes never pause: another process
cannot add a message a second, however many cores are free; only a cheaper unit can.
``ratio``: the processes' messages a second over one process's.

``--against <checkout>`` measures a change instead: one process of this checkout's ``csms``
and one of the other's, in turn (``--rounds`` pairs), the same stations and messages, each
unit of work's wall time by the message it stores (a 2.0.1 TransactionEvent by its
eventType). ``ratio_vs_against``, per action and in all: the median of this code's time
over the other's in each pair.

    python -m bench.units --stations 500 --messages 40000 --processes 2 --ocpp 1.6 2.0.1
    python -m bench.units --stations 200 --messages 20000 --ocpp 1.6 --against ../old --rounds 5
"""

from __future__ import annotations

import argparse
import asyncio
import contextvars
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from bench.loadgen import Station, action_key

__all__ = ["main", "measure"]

T = TypeVar("T")
_ACTION: contextvars.ContextVar[str] = contextvars.ContextVar("action", default="?")


async def _worker(db: str, prefix: str, stations: int, messages: int, ocpp: str,
                  processes: int, start_at: float) -> dict[str, Any]:
    """One process: its stations' sessions until ``messages`` answers (a quarter of them
    first, unmeasured), from the wall-clock time ``start_at`` (the processes together)."""
    import csms
    from csms.service.charging import ChargingService
    from csms.service.ports import Tx
    from csms.storage.sqlite import SqliteRepository
    from csms.translate import v16, v201

    repo = SqliteRepository(db)
    service = ChargingService(repo)
    routes = v16.ROUTES if ocpp == "1.6" else v201.ROUTES
    fleet = [Station("", f"{prefix}{i}", ocpp) for i in range(stations)]
    inside = [0.0, 0]  # CPU seconds inside units, units

    by_action: dict[str, list[float]] = {}  # the message a unit stores: wall s, units
    unit = repo.unit

    async def timed_unit(fn: Callable[[Tx], Awaitable[T]]) -> T:
        action = by_action.setdefault(_ACTION.get(), [0.0, 0])  # the caller's message

        async def timed(tx: Tx) -> T:
            began, wall = time.thread_time(), time.perf_counter()
            try:
                return await fn(tx)
            finally:
                inside[0] += time.thread_time() - began
                inside[1] += 1
                action[0] += time.perf_counter() - wall
                action[1] += 1
        return await unit(timed)

    repo.unit = timed_unit  # type: ignore[method-assign]
    answered = 0
    goal = messages // 4

    async def call(station: Station, message: tuple[str, dict[str, Any]]) -> dict[str, Any]:
        nonlocal answered
        _ACTION.set(action_key(*message))
        answer = await routes[message[0]](service, station.ident, message[1])
        answered += 1
        return answer

    async def charge(station: Station) -> None:
        while answered < goal:
            await call(station, station.authorize())
            transaction = station.transaction_of(await call(station, station.start()))
            for _ in range(10):
                await call(station, station.meter(transaction))
            await call(station, station.stop(transaction))

    try:
        for station in fleet:
            await call(station, station.boot())
        await asyncio.sleep(max(0.0, start_at - time.time()))
        await asyncio.gather(*(charge(s) for s in fleet))  # warm-up
        answered, goal, inside[:] = 0, messages, [0.0, 0]
        by_action.clear()
        held0 = repo.write_turn_seconds().held
        cpu0, t0 = time.process_time(), time.perf_counter()
        await asyncio.gather(*(charge(s) for s in fleet))
        elapsed, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        held = repo.write_turn_seconds().held - held0
    finally:
        await repo.close()
    return {"messages": answered, "elapsed_s": elapsed, "cpu_s": cpu, "held_s": held,
            "unit_cpu_s": inside[0], "units": inside[1], "processes": processes,
            "by_action": by_action, "csms": str(Path(csms.__file__).parent)}


def _registered(db: str, idents: list[str]) -> None:
    """The file made (migrations) and the stations registered, before the processes."""
    from csms.service.charging import new_station
    from csms.service.ports import Tx
    from csms.storage.sqlite import SqliteRepository

    async def run() -> None:
        repo = SqliteRepository(db)

        async def register(tx: Tx) -> None:
            for ident in idents:
                await tx.insert_station(new_station(ident))
        try:
            await repo.unit(register)
        finally:
            await repo.close()

    asyncio.run(run())


def _run(processes: int, stations: int, messages: int, ocpp: str,
         against: str | None = None) -> dict[str, Any]:
    """``processes`` workers on one new file; with ``against``, of that checkout's csms."""
    with tempfile.TemporaryDirectory() as folder:
        db = str(Path(folder) / "units.sqlite3")
        prefixes = [f"U{p}-" for p in range(processes)]
        env, cwd = None, None
        if against is not None:
            # this benchmark's own modules, the other checkout's csms (and nothing of
            # this checkout's beside them on the path)
            cwd = str(Path(folder) / "bench-only")
            Path(cwd).mkdir()
            (Path(cwd) / "bench").symlink_to(Path(__file__).resolve().parent)
            env = {**os.environ, "PYTHONPATH": str(Path(against).resolve())}
        subprocess.run([sys.executable, "-m", "bench.units", "--register", "--db", db,
                        "--prefix", ",".join(prefixes), "--stations", str(stations)],
                       check=True, cwd=cwd, env=env)
        start_at = time.time() + 1.5 + 0.5 * processes  # after every process has started
        procs = [subprocess.Popen(
            [sys.executable, "-m", "bench.units", "--worker", "--db", db, "--prefix", prefix,
             "--stations", str(stations), "--messages", str(messages // processes),
             "--ocpp", ocpp, "--processes", str(processes), "--start-at", repr(start_at)],
            stdout=subprocess.PIPE, cwd=cwd, env=env) for prefix in prefixes]
        parts = []
        for proc in procs:
            out, _ = proc.communicate()
            if proc.returncode != 0:
                raise SystemExit(f"a worker process failed (exit {proc.returncode})")
            parts.append(json.loads(out))
    n = sum(p["messages"] for p in parts)
    span = max(p["elapsed_s"] for p in parts)
    units = sum(p["units"] for p in parts)
    actions: dict[str, list[float]] = {}
    for part in parts:
        for name, (wall, count) in part["by_action"].items():
            total = actions.setdefault(name, [0.0, 0])
            total[0] += wall
            total[1] += count
    return {"processes": processes, "messages": n,
            "messages_per_s": round(n / span),
            "cpu_us_per_message": round(sum(p["cpu_s"] for p in parts) / n * 1e6, 1),
            "unit_cpu_us": round(sum(p["unit_cpu_s"] for p in parts) / units * 1e6, 1),
            "turn_share": round(sum(p["held_s"] for p in parts) / span, 3),
            "csms": parts[0]["csms"],
            "unit_us_by_action": {name: round(wall / count * 1e6, 1)
                                  for name, (wall, count) in sorted(actions.items())}}


def measure(stations: int, messages: int, processes: int, ocpp: str) -> dict[str, Any]:
    one = _run(1, stations, messages, ocpp)
    several = _run(processes, stations, messages, ocpp)
    return {"benchmark": "units", "ocpp": ocpp, "stations_per_process": stations,
            "one_process": one, f"{processes}_processes": several,
            "ratio": round(several["messages_per_s"] / one["messages_per_s"], 3)}


def measure_against(stations: int, messages: int, ocpp: str, against: str,
                    rounds: int) -> dict[str, Any]:
    """One process of this code and one of ``against``'s, in turn, ``rounds`` times."""
    pairs = []
    for _ in range(rounds):
        pairs.append((_run(1, stations, messages, ocpp), _run(1, stations, messages, ocpp,
                                                              against)))

    def ratios(mine: dict[str, Any], theirs: dict[str, Any]) -> dict[str, float]:
        """This code's unit time over the other's, by action and for all units (each action
        weighted by its units in the other's run)."""
        a, b = mine["unit_us_by_action"], theirs["unit_us_by_action"]
        out = {name: a[name] / b[name] for name in a if name in b and b[name] > 0}
        out["all"] = mine["unit_cpu_us"] / theirs["unit_cpu_us"]
        return out

    each = [ratios(m, t) for m, t in pairs]
    return {"benchmark": "units", "ocpp": ocpp, "stations_per_process": stations,
            "against": against, "rounds": rounds,
            "this": [m for m, _ in pairs], "other": [t for _, t in pairs],
            "ratio_vs_against": {name: round(statistics.median(r[name] for r in each), 3)
                                 for name in each[0]},
            "rate_ratio_vs_against": round(statistics.median(
                m["messages_per_s"] / t["messages_per_s"] for m, t in pairs), 3)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stations", type=int, default=500,
                        help="stations of each process")
    parser.add_argument("--messages", type=int, default=40000,
                        help="messages measured in all (after a quarter as many unmeasured)")
    parser.add_argument("--processes", type=int, default=2,
                        help="processes on one file, against one")
    parser.add_argument("--ocpp", nargs="+", default=["1.6", "2.0.1"],
                        choices=["1.6", "2.0.1"])
    parser.add_argument("--against", default=None,
                        help="another checkout: its csms against this one's, one process each")
    parser.add_argument("--rounds", type=int, default=3, help="pairs, with --against")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--register", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--db", help=argparse.SUPPRESS)
    parser.add_argument("--prefix", help=argparse.SUPPRESS)
    parser.add_argument("--start-at", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    for name in ("stations", "messages", "processes", "rounds"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1")
    if args.against is not None and not (Path(args.against) / "csms").is_dir():
        parser.error(f"--against {args.against}: no csms package there")
    if args.register:
        _registered(args.db, [f"{prefix}{i}" for prefix in args.prefix.split(",")
                              for i in range(args.stations)])
        return
    if args.worker:
        print(json.dumps(asyncio.run(_worker(
            args.db, args.prefix, args.stations, args.messages, args.ocpp[0],
            args.processes, args.start_at))))
        return
    for version in args.ocpp:
        if args.against is not None:
            print(json.dumps(measure_against(args.stations, args.messages, version,
                                             args.against, args.rounds)))
        else:
            print(json.dumps(measure(args.stations, args.messages, args.processes, version)))
        sys.stdout.flush()


if __name__ == "__main__":
    main()
