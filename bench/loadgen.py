"""An OCPP load generator independent of the project's simulator, for every server alike.

Each station connects with one OCPP version, boots, then charges session after
session: Authorize, a start (1.6 StartTransaction / 2.0.1 TransactionEvent Started),
ten meter values of four samples each (1.6 MeterValues / 2.0.1 TransactionEvent
Updated), a stop; every call waits for its answer. Stations are spread over worker
processes that, once every worker's stations are connected, start charging together and
measuring together after a warm-up; each answer's
latency inside the window is counted, in all and per message (a 2.0.1 TransactionEvent
per eventType: ``TransactionEvent.Started``). Incoming calls from the server are answered
with a CALLERROR (NotSupported): the load is the stations' own.

``--phases spread`` (the default): each station's first session has between 0 and 10
meter values (drawn from the station's id, the same in every run), its later sessions
the full ten, so that the stations are at different points of their sessions, as a fleet's
are. ``--phases together``: every station begins with a whole session at the same
instant. Against a server that commits in batches and answers a batch's messages
together, stations that start together stay together: the batches then hold the starts
of most stations at once, then their meter values, then their stops, and a start or a
stop waits for a batch of starts or stops (each several times a meter value's work)
rather than for a mixed one (docs/benchmarks.md). A server that answers each message on
its own is not affected.

    python -m bench.loadgen --url ws://127.0.0.1:9000 --stations 1000 --ocpp 1.6 \\
        --duration 20 --warmup 5 --procs 2
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import subprocess
import sys
import threading
import time
import zlib
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import websockets

__all__ = ["PHASES", "Station", "Window", "action_key", "first_meters", "main", "now_text",
           "run", "timed"]

METERS_PER_SESSION = 10
CALL_TIMEOUT = 30.0
PHASES = ("spread", "together")


def first_meters(ident: str, phases: str = "spread") -> int:
    """The meter values of a station's first session: its later ones have ten. Spread, a
    number from 0 to 10 drawn from the station's id (CRC-32: the same in every run and
    process); together, ten."""
    if phases == "together":
        return METERS_PER_SESSION
    return zlib.crc32(ident.encode()) % (METERS_PER_SESSION + 1)


def action_key(action: str, payload: dict[str, Any]) -> str:
    """What a call's latency is counted under: its action, a 2.0.1 TransactionEvent's
    with its eventType (a start, a meter value and a stop are different work)."""
    if action == "TransactionEvent":
        return f"{action}.{payload.get('eventType')}"
    return action


def now_text() -> str:
    """The time now as the generated stations write it (UTC, milliseconds, "Z")."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Station:
    """One simulated station: its socket and the calls of its sessions."""

    def __init__(self, url: str, ident: str, ocpp: str) -> None:
        self.url, self.ident, self.ocpp = f"{url}/{ident}", ident, ocpp
        self.ids = itertools.count(1)
        self.pending: dict[str, asyncio.Future[list[Any]]] = {}
        self.ws: Any = None
        self.energy = 1_000_000
        self.tx = 0

    async def connect(self, local_addr: tuple[str, int] | None = None,
                      open_timeout: float = 60) -> None:
        self.ws = await websockets.connect(
            self.url, subprotocols=[f"ocpp{self.ocpp}"],  # type: ignore[list-item]
            open_timeout=open_timeout, ping_interval=None, max_size=2**20, compression=None,
            local_addr=local_addr)
        asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        with contextlib.suppress(websockets.ConnectionClosed):
            async for text in self.ws:
                frame = json.loads(text)
                if frame[0] == 2:  # the server's own call: not part of the load
                    await self.ws.send(json.dumps([4, frame[1], "NotSupported", "", {}]))
                    continue
                future = self.pending.pop(frame[1], None)
                if future is not None and not future.done():
                    future.set_result(frame)
        for future in self.pending.values():
            if not future.done():
                future.set_exception(ConnectionError("closed"))

    async def call(self, action: str, payload: dict[str, Any]) -> dict[str, Any]:
        mid = str(next(self.ids))
        future: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        self.pending[mid] = future
        await self.ws.send(json.dumps([2, mid, action, payload], separators=(",", ":")))
        frame = await asyncio.wait_for(future, CALL_TIMEOUT)
        if frame[0] != 3:
            raise RuntimeError(f"{action}: {frame[2]} {frame[3]}")
        result: dict[str, Any] = frame[2]
        return result

    # -- the messages, per version -------------------------------------------------------
    def boot(self) -> tuple[str, dict[str, Any]]:
        if self.ocpp == "1.6":
            return "BootNotification", {"chargePointVendor": "Load", "chargePointModel": "Gen"}
        return "BootNotification", {"reason": "PowerUp", "chargingStation": {
            "vendorName": "Load", "model": "Gen"}}

    def authorize(self) -> tuple[str, dict[str, Any]]:
        if self.ocpp == "1.6":
            return "Authorize", {"idTag": "LOADTAG"}
        return "Authorize", {"idToken": {"idToken": "LOADTAG", "type": "ISO14443"}}

    def _samples(self) -> list[dict[str, Any]]:
        self.energy += 37
        if self.ocpp == "1.6":
            return [
                {"value": str(self.energy), "measurand": "Energy.Active.Import.Register",
                 "unit": "Wh", "context": "Sample.Periodic"},
                {"value": "11000", "measurand": "Power.Active.Import", "unit": "W"},
                {"value": "16.0", "measurand": "Current.Import", "unit": "A", "phase": "L1"},
                {"value": "230.0", "measurand": "Voltage", "unit": "V", "phase": "L1-N"}]
        return [
            {"value": self.energy, "measurand": "Energy.Active.Import.Register",
             "unitOfMeasure": {"unit": "Wh"}, "context": "Sample.Periodic"},
            {"value": 11000, "measurand": "Power.Active.Import", "unitOfMeasure": {"unit": "W"}},
            {"value": 16.0, "measurand": "Current.Import", "phase": "L1",
             "unitOfMeasure": {"unit": "A"}},
            {"value": 230.0, "measurand": "Voltage", "phase": "L1-N",
             "unitOfMeasure": {"unit": "V"}}]

    def start(self) -> tuple[str, dict[str, Any]]:
        if self.ocpp == "1.6":
            return "StartTransaction", {"connectorId": 1, "idTag": "LOADTAG",
                                        "meterStart": self.energy, "timestamp": now_text()}
        self.tx += 1
        self.seq = 0
        return "TransactionEvent", {
            "eventType": "Started", "timestamp": now_text(), "triggerReason": "Authorized",
            "seqNo": 0, "transactionInfo": {"transactionId": f"{self.ident}-{self.tx}"},
            "idToken": {"idToken": "LOADTAG", "type": "ISO14443"},
            "evse": {"id": 1, "connectorId": 1},
            "meterValue": [{"timestamp": now_text(), "sampledValue": [
                {"value": self.energy, "measurand": "Energy.Active.Import.Register",
                 "context": "Transaction.Begin", "unitOfMeasure": {"unit": "Wh"}}]}]}

    def transaction_of(self, started: dict[str, Any]) -> Any:
        """The transaction a start opened: 1.6's from the answer, 2.0.1's our own."""
        return started.get("transactionId") if self.ocpp == "1.6" else f"{self.ident}-{self.tx}"

    def meter(self, transaction: Any) -> tuple[str, dict[str, Any]]:
        if self.ocpp == "1.6":
            return "MeterValues", {"connectorId": 1, "transactionId": transaction,
                                   "meterValue": [{"timestamp": now_text(),
                                                   "sampledValue": self._samples()}]}
        self.seq += 1
        return "TransactionEvent", {
            "eventType": "Updated", "timestamp": now_text(), "triggerReason": "MeterValuePeriodic",
            "seqNo": self.seq, "transactionInfo": {"transactionId": transaction},
            "meterValue": [{"timestamp": now_text(), "sampledValue": self._samples()}]}

    def stop(self, transaction: Any) -> tuple[str, dict[str, Any]]:
        if self.ocpp == "1.6":
            return "StopTransaction", {"transactionId": transaction, "meterStop": self.energy,
                                       "timestamp": now_text(), "reason": "Local"}
        self.seq += 1
        return "TransactionEvent", {
            "eventType": "Ended", "timestamp": now_text(), "triggerReason": "StopAuthorized",
            "seqNo": self.seq, "transactionInfo": {"transactionId": transaction,
                                                   "stoppedReason": "Local"},
            "meterValue": [{"timestamp": now_text(), "sampledValue": [
                {"value": self.energy, "measurand": "Energy.Active.Import.Register",
                 "context": "Transaction.End", "unitOfMeasure": {"unit": "Wh"}}]}]}


class Window:
    """Latencies of the answers that arrive inside the measured window."""

    def __init__(self, begin: float, end: float) -> None:
        self.begin, self.end = begin, end
        self.latencies: Counter[int] = Counter()  # in units of 0.1 ms
        self.by_action: dict[str, Counter[int]] = {}
        self.errors = 0

    def record(self, sent: float, done: float, action: str = "") -> None:
        if self.begin <= done < self.end:
            tenths = round((done - sent) * 10_000)
            self.latencies[tenths] += 1
            if action:
                self.by_action.setdefault(action, Counter())[tenths] += 1

    def error(self) -> None:
        if self.begin <= time.time() < self.end:
            self.errors += 1


async def timed(station: Station, window: Window,
                message: tuple[str, dict[str, Any]]) -> dict[str, Any]:
    """One call, its answer's latency (or its failure) counted in the window."""
    sent = time.time()
    try:
        result = await station.call(*message)
    except Exception:
        window.error()
        raise
    window.record(sent, time.time(), action_key(*message))
    return result


async def _charge(station: Station, window: Window, first: int = METERS_PER_SESSION) -> None:
    """Sessions until the window ends: the first with ``first`` meter values."""
    meters = first
    while time.time() < window.end:
        await timed(station, window, station.authorize())
        transaction = station.transaction_of(
            await timed(station, window, station.start()))
        for _ in range(meters):
            await timed(station, window, station.meter(transaction))
        await timed(station, window, station.stop(transaction))
        meters = METERS_PER_SESSION


async def _worker(url: str, idents: list[str], ocpp: str, warmup: float,
                  duration: float, connect_rate: float,
                  phases: str = "spread") -> dict[str, Any]:
    """Connects and boots its stations, says ``ready`` on stdout, then charges from the
    instant (``time.time()``) read from stdin: the same for every worker."""
    stations = [Station(url, ident, ocpp) for ident in idents]
    connected: list[Station] = []
    failed = 0
    began = time.monotonic()
    for i, station in enumerate(stations):
        try:
            await station.connect()
            await station.call(*station.boot())
            connected.append(station)
        except Exception:
            failed += 1
        await asyncio.sleep(max(0.0, began + (i + 1) / connect_rate - time.monotonic()))
    print("ready", flush=True)
    t0 = float(await asyncio.to_thread(sys.stdin.readline))
    window = Window(t0 + warmup, t0 + warmup + duration)
    await asyncio.sleep(max(0.0, t0 - time.time()))

    async def loop(station: Station) -> None:
        first = first_meters(station.ident, phases)
        while time.time() < window.end:
            try:
                await _charge(station, window, first)
            except Exception:
                await asyncio.sleep(0.5)  # a failed call: the next session after a pause
            first = METERS_PER_SESSION

    tasks = [asyncio.create_task(loop(s)) for s in connected]
    await asyncio.sleep(max(0.0, window.end - time.time()))
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for station in connected:
        with contextlib.suppress(Exception):
            await station.ws.close()
    return {"latencies": {str(k): v for k, v in window.latencies.items()},
            "by_action": {a: {str(k): v for k, v in h.items()}
                          for a, h in window.by_action.items()},
            "errors": window.errors + failed, "connected": len(connected)}


def _percentile(hist: Counter[int], q: float) -> float:
    total = sum(hist.values())
    if not total:
        return 0.0
    rank, seen = q * total, 0
    for value in sorted(hist):
        seen += hist[value]
        if seen >= rank:
            return value / 10
    return max(hist) / 10


def _line_within(worker: subprocess.Popen[str], seconds: float) -> str | None:
    """The worker's next line on stdout ("": it ended; None: nothing for ``seconds``)."""
    stdout = worker.stdout
    assert stdout is not None
    got: list[str] = []
    reader = threading.Thread(target=lambda: got.append(stdout.readline()), daemon=True)
    reader.start()
    reader.join(seconds)
    return got[0] if got else None


def run(url: str, stations: int, ocpp: str, duration: float, warmup: float = 5.0,
        procs: int = 2, prefix: str = "LG", connect_rate: float = 500.0,
        on_window: Callable[[float, float], None] | None = None,
        phases: str = "spread") -> dict[str, Any]:
    """Drive ``stations`` stations against ``url``; the measured figures as a dict.
    ``on_window``: told the measured window's start and end (``time.time()``) once every
    station connected, before the warm-up begins, e.g. to read the server's CPU time over
    the same window."""
    procs = max(1, min(procs, stations))
    per = [stations // procs + (1 if i < stations % procs else 0) for i in range(procs)]
    setup = max(per) / (connect_rate / procs) + 60.0  # the workers' start and connections
    workers, first = [], 1
    for i, n in enumerate(per):
        workers.append(subprocess.Popen(
            [sys.executable, "-m", "bench.loadgen", "--worker", "--url", url,
             "--first", str(first), "--stations", str(n), "--ocpp", ocpp,
             "--duration", str(duration), "--warmup", str(warmup),
             "--prefix", f"{prefix}{i}", "--connect-rate", str(connect_rate / procs),
             "--phases", phases],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
            env={**os.environ, "PYTHONWARNINGS": "ignore"}))
        first += n
    try:
        for worker in workers:  # every station connected (or failed to), in every worker
            line = _line_within(worker, setup)
            if line is None:
                raise RuntimeError(f"a load worker did not connect its stations in {setup:.0f} s")
            if not line.startswith("ready"):
                raise RuntimeError(f"load worker failed ({worker.wait(30)})")
    except BaseException:
        for worker in workers:
            worker.kill()
            worker.wait()
        raise
    t0 = time.time() + 0.2  # each worker reads it by then
    if on_window is not None:
        on_window(t0 + warmup, t0 + warmup + duration)
    for worker in workers:
        assert worker.stdin is not None
        worker.stdin.write(f"{t0!r}\n")
        worker.stdin.flush()
    hist: Counter[int] = Counter()
    by_action: dict[str, Counter[int]] = {}
    errors = connected = 0
    for worker in workers:
        out, _ = worker.communicate(timeout=warmup + duration + 120)
        if worker.returncode != 0:
            raise RuntimeError(f"load worker failed ({worker.returncode})")
        part = json.loads(out)
        hist.update({int(k): v for k, v in part["latencies"].items()})
        for action, h in part["by_action"].items():
            by_action.setdefault(action, Counter()).update({int(k): v for k, v in h.items()})
        errors += part["errors"]
        connected += part["connected"]
    messages = sum(hist.values())
    return {"stations": stations, "connected": connected, "ocpp": ocpp, "phases": phases,
            "duration_s": duration, "messages": messages,
            "messages_per_s": round(messages / duration, 1),
            "p50_ms": _percentile(hist, 0.50), "p99_ms": _percentile(hist, 0.99),
            "p50_ms_by_action": {a: _percentile(h, 0.50) for a, h in sorted(by_action.items())},
            "p99_ms_by_action": {a: _percentile(h, 0.99) for a, h in sorted(by_action.items())},
            "errors": errors}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--stations", type=int, default=100)
    parser.add_argument("--ocpp", choices=("1.6", "2.0.1"), default="1.6")
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument("--procs", type=int, default=2)
    parser.add_argument("--prefix", default="LG")
    parser.add_argument("--connect-rate", type=float, default=500.0,
                        help="new connections per second, in all")
    parser.add_argument("--phases", choices=PHASES, default="spread",
                        help="spread: the stations' first sessions of 0-10 meter values,"
                             " each at its own point of a session; together: every station"
                             " starts a whole session at once")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--first", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        idents = [f"{args.prefix}{i:06d}" for i in range(args.first, args.first + args.stations)]
        result = asyncio.run(_worker(args.url, idents, args.ocpp, args.warmup,
                                     args.duration, args.connect_rate, args.phases))
        print(json.dumps(result))
        return
    print(json.dumps(run(args.url, args.stations, args.ocpp, args.duration, args.warmup,
                         args.procs, args.prefix, args.connect_rate,
                         phases=args.phases)))


if __name__ == "__main__":
    main()
