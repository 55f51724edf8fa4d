"""Instructions per message of ``csms serve``: a measure that does not drift with the load
of a shared machine (other people's suites and benchmarks move its CPU time per message by
±40%; they do not change what the server executes).

The server runs under Valgrind's callgrind with its instrumentation off until every
station is connected, booted and through one warm-up session; it is then switched on
(``callgrind_control -i on``) for exactly ``--sessions`` sessions of each station
(``bench.loadgen``'s: Authorize, a start, ten meter values of four samples, a stop),
every call waiting for its answer, and the counts dumped (``callgrind_control -d``).
Everything the server's process executed in between (the loop, the socket, websockets,
validation, translation, the units of work, SQLite and the commit thread) over the
messages sent is ``instructions_per_message``. The stations run natively in this process.

``--against <checkout>`` runs the other checkout's ``csms`` the same way, in turn
(``--rounds`` pairs, the order alternated); ``ratio_vs_against`` is this code's
instructions per message over the other's, the median of the pairs. Without it the
baseline is this code again (a second round of the same code: the measure's own noise).

    python -m bench.instructions --stations 20 --sessions 3 --ocpp 1.6 --against /tmp/base

``--serve-args`` gives this code's server more arguments (and ``--against-serve-args`` the
other's): ``--serve-args "--event-loop uvloop"`` without ``--against`` measures a setting
against the default on the same code.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.common import launch, stop
from bench.loadgen import METERS_PER_SESSION, Station

__all__ = ["main", "measure"]

_TOTALS = re.compile(rb"^(?:summary|totals):\s*(\d+)", re.MULTILINE)


async def _sessions(stations: list[Station], count: int) -> int:
    """``count`` sessions of every station at once; the messages sent."""

    async def one(station: Station) -> int:
        sent = 0
        for _ in range(count):
            await station.call(*station.authorize())
            transaction = station.transaction_of(await station.call(*station.start()))
            for _ in range(METERS_PER_SESSION):
                await station.call(*station.meter(transaction))
            await station.call(*station.stop(transaction))
            sent += METERS_PER_SESSION + 3
        return sent

    return sum(await asyncio.gather(*(one(s) for s in stations)))


async def _drive(port: int, pid: int, stations: int, sessions: int, ocpp: str,
                 out: Path) -> tuple[int, int]:
    fleet = [Station(f"ws://127.0.0.1:{port}", f"INS{i}", ocpp) for i in range(stations)]
    for station in fleet:
        await station.connect(open_timeout=600)
        await station.call(*station.boot())
    await _sessions(fleet, 1)  # warm-up: every action's first time, caches, the file
    await asyncio.to_thread(subprocess.run, ["callgrind_control", "-i", "on", str(pid)],
                            check=True, capture_output=True)
    messages = await _sessions(fleet, sessions)
    await asyncio.to_thread(subprocess.run, ["callgrind_control", "-d", str(pid)],
                            check=True, capture_output=True)
    for station in fleet:
        with contextlib.suppress(Exception):
            await station.ws.close()
    dumps = sorted(out.parent.glob(out.name + ".*"), key=lambda p: p.stat().st_mtime)
    if not dumps:
        raise RuntimeError("callgrind wrote no dump")
    keep = os.environ.get("BENCH_KEEP_CALLGRIND")  # a folder to copy the dump to
    if keep:
        shutil.copy(dumps[-1], Path(keep) / f"callgrind.{pid}")
    found = _TOTALS.search(dumps[-1].read_bytes())
    if found is None:
        raise RuntimeError(f"no totals in {dumps[-1]}")
    return int(found.group(1)), messages


def measure(checkout: str, stations: int, sessions: int, ocpp: str,
            serve_args: list[str] | None = None) -> dict[str, Any]:
    """One server of ``checkout`` under callgrind: instructions per message (``serve_args``:
    more arguments of its ``csms serve``)."""
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "callgrind.out"

        def command(ports: list[int]) -> list[str]:
            return ["valgrind", "--tool=callgrind", "--instr-atstart=no",
                    f"--callgrind-out-file={out}", "--dump-instr=no",
                    sys.executable, "-m", "csms", "serve", "--port", str(ports[0]),
                    "--db", str(Path(folder) / "bench.sqlite3"), "--auto-register",
                    "--admin-port", "-1", "--data-dir", folder, "--log-level", "error",
                    *(serve_args or [])]

        # every station auto-registers from loopback: no hourly share (the variable, not
        # the flag: a checkout from before the setting ignores it)
        env = {**os.environ, "PYTHONPATH": checkout, "PYTHONWARNINGS": "ignore",
               "CSMS_AUTO_REGISTER_PER_HOUR": "0"}
        proc, (port,) = launch(command, 1, Path(folder) / "server.err", env=env,
                               cwd=checkout, timeout=600)
        try:
            instructions, messages = asyncio.run(
                _drive(port, proc.pid, stations, sessions, ocpp, out))
        finally:
            stop(proc)
    return {"instructions": instructions, "messages": messages,
            "instructions_per_message": round(instructions / messages)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stations", type=int, default=20)
    parser.add_argument("--sessions", type=int, default=3)
    parser.add_argument("--ocpp", default="1.6", choices=["1.6", "2.0.1"])
    parser.add_argument("--against", default=None,
                        help="another checkout to compare with (default: this one again)")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--serve-args", default="",
                        help="more arguments of this code's csms serve, e.g. '--event-loop"
                             " uvloop' (with no --against: one setting against the default)")
    parser.add_argument("--against-serve-args", default="",
                        help="the same for the checkout compared with")
    args = parser.parse_args(argv)
    serve = {"this": shlex.split(args.serve_args),
             "against": shlex.split(args.against_serve_args)}
    here = str(Path(__file__).resolve().parent.parent)
    against = str(Path(args.against).resolve()) if args.against else here
    pairs = []
    for r in range(args.rounds):
        order = [("this", here), ("against", against)]
        if r % 2:
            order.reverse()
        got = {name: measure(path, args.stations, args.sessions, args.ocpp, serve[name])
               for name, path in order}
        pairs.append(got)
        print(json.dumps({"round": r, **got}), file=sys.stderr, flush=True)
    ratios = [p["this"]["instructions_per_message"] / p["against"]["instructions_per_message"]
              for p in pairs]
    print(json.dumps({
        "ocpp": args.ocpp, "stations": args.stations, "sessions": args.sessions,
        "against": against, "serve_args": args.serve_args,
        "against_serve_args": args.against_serve_args,
        "instructions_per_message": [p["this"]["instructions_per_message"] for p in pairs],
        "against_instructions_per_message": [p["against"]["instructions_per_message"]
                                             for p in pairs],
        "ratios": [round(x, 4) for x in ratios],
        "ratio_vs_against": round(statistics.median(ratios), 4)}, indent=2))


if __name__ == "__main__":
    main()
