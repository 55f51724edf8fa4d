"""Attacks on a ``csms serve`` process, as a stranger or a hostile station would run them.

* ``logins``: ``--attempts`` wrong passwords for one station at once, each from
  another loopback address, while the real station logs in; how many password
  checks (scrypt) the server ran, what the attackers got, how long the station
  took to get in (it comes back after a 503, as stations do).
* ``datatransfer``: one station sends 60 kB DataTransfers as fast as it is
  answered for ``--seconds``; how much the database grew, against what was sent.
* ``meterflood``: one station starts a transaction and sends 1.6 MeterValues just under
  64 KiB (the largest frames bounded per connection, the former frame limit) as fast as
  it is answered for ``--seconds`` (transaction data:
  never dropped, only its answers delayed by the station's byte budget); how much the
  database grew, how many answers were delayed and for how long. ``--serve-args`` are
  passed to ``csms serve`` as they are (another budget: ``--transaction-bytes-per-s``).
* ``handshakes``: one address holds every handshake slot and the whole queue of the
  OCPP port with silent sockets (``--sockets``, the default limits' 500 + 2,000), each
  opened again as soon as the server closes it, while ``--stations`` stations, each
  from its own address, reconnect at once (a dropped attempt is tried again after
  1 s); how many got in (BootNotification answered) within ``--seconds``, how long
  they took, how many attempts were dropped.

    python -m bench.attacks logins --attempts 300
    python -m bench.attacks datatransfer --seconds 20
    python -m bench.attacks meterflood --seconds 20
    python -m bench.attacks handshakes --stations 200
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from bench.common import launch, stop

__all__ = ["main"]

PASSWORD = "the-stations-real-password-1"


class Server:
    """``csms serve`` in a subprocess with its admin API, on a fresh SQLite file."""

    def __init__(self, folder: Path, extra: list[str] | None = None) -> None:
        self.folder = folder
        self.db = folder / "attack.sqlite3"
        self.port = self.admin = 0  # chosen when it starts
        self.extra = extra or []
        self.proc: subprocess.Popen[bytes] | None = None

    def csms(self, *args: str) -> None:
        subprocess.run([sys.executable, "-m", "csms", *args, "--db", str(self.db)],
                       check=True, capture_output=True)

    def __enter__(self) -> Server:
        def command(ports: list[int]) -> list[str]:
            return [sys.executable, "-m", "csms", "serve", "--port", str(ports[0]), "--db",
                    str(self.db), "--admin-port", str(ports[1]), "--data-dir",
                    str(self.folder), "--log-level", "error", *self.extra]

        self.proc, (self.port, self.admin) = launch(command, 2, self.folder / "serve.err")
        return self

    def __exit__(self, *exc: object) -> None:
        assert self.proc is not None
        stop(self.proc)

    async def metrics(self) -> dict[str, float]:
        token = (self.folder / "admin.token").read_text().strip()
        async with aiohttp.ClientSession() as http, http.get(
                f"http://127.0.0.1:{self.admin}/metrics",
                headers={"Authorization": f"Bearer {token}"}) as r:
            text = await r.text()
        return {name: float(value) for name, value in
                (line.rsplit(" ", 1) for line in text.splitlines()
                 if line.startswith("voltledger_") and "_created" not in line)}


async def login(port: int, password: str, address: str) -> int:
    token = base64.b64encode(f"CP1:{password}".encode()).decode()
    try:
        async with connect(f"ws://127.0.0.1:{port}/CP1", subprotocols=["ocpp1.6"],  # type: ignore[list-item]
                           additional_headers={"Authorization": f"Basic {token}"},
                           open_timeout=30, local_addr=(address, 0)):
            return 101
    except InvalidStatus as exc:
        return int(exc.response.status_code)


async def logins(attempts: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as folder:
        server = Server(Path(folder))
        server.csms("stations", "add", "CP1", "--password", PASSWORD)
        with server:
            flood = [login(server.port, f"wrong-password-{i:05d}",
                           f"127.0.{(i + 2) // 250}.{(i + 2) % 250 + 2}")
                     for i in range(attempts)]
            started = time.perf_counter()
            attack = asyncio.gather(*flood)

            async def station() -> tuple[list[int], float]:
                tries = []
                while True:
                    tries.append(await login(server.port, PASSWORD, "127.0.0.1"))
                    if tries[-1] != 503:
                        return tries, time.perf_counter() - started
                    await asyncio.sleep(0.2)

            codes, (tries, took) = await asyncio.gather(attack, station())
            attack_s = time.perf_counter() - started
            counted = await server.metrics()
    return {"benchmark": "login_flood", "attempts": attempts, "addresses": attempts,
            "attack_seconds": round(attack_s, 2),
            "answers": {str(c): codes.count(c) for c in sorted(set(codes))},
            "password_checks": {k.split('"')[1]: v for k, v in counted.items()
                                if k.startswith("voltledger_password_checks_total")},
            "station_tries": tries, "station_in_after_s": round(took, 3)}


def db_bytes(folder: Path) -> int:
    """The database and its WAL."""
    return sum(p.stat().st_size for p in folder.glob("attack.sqlite3*"))


async def datatransfer(seconds: float) -> dict[str, Any]:
    payload = json.dumps({"vendorId": "acme", "data": "x" * 60_000})
    with tempfile.TemporaryDirectory() as folder:
        server = Server(Path(folder))
        server.csms("stations", "add", "FLOOD")
        with server:
            await asyncio.sleep(1)
            before = db_bytes(Path(folder))
            sent = 0
            async with connect(f"ws://127.0.0.1:{server.port}/FLOOD",
                               subprotocols=["ocpp1.6"]) as ws:  # type: ignore[list-item]
                deadline = time.monotonic() + seconds
                while time.monotonic() < deadline:
                    await ws.send(f'[2,"d{sent}","DataTransfer",{payload}]')
                    await ws.recv()
                    sent += 1
            await asyncio.sleep(1)
            after = db_bytes(Path(folder))
            counted = await server.metrics()
    return {"benchmark": "datatransfer_flood", "seconds": seconds, "messages": sent,
            "bytes_sent": sent * len(payload), "db_growth_bytes": after - before,
            "db_growth_bytes_per_s": round((after - before) / seconds),
            "dropped": {k: v for k, v in counted.items()
                        if k.startswith("voltledger_payloads_dropped_total")}}


def flood_meter_values(transaction_id: int, size: int = 64_000) -> dict[str, Any]:
    """A 1.6 MeterValues of periodic samples that, framed, is just under ``size`` bytes."""
    sample = {"value": "230.10", "context": "Sample.Periodic", "measurand": "Voltage",
              "phase": "L1-N", "location": "Outlet", "unit": "V"}
    per = len(json.dumps(sample)) + 2
    values = [sample] * ((size - 200) // per)
    return {"connectorId": 1, "transactionId": transaction_id,
            "meterValue": [{"timestamp": "2026-01-01T00:00:00Z", "sampledValue": values}]}


async def meterflood(seconds: float, serve_args: list[str]) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as folder:
        server = Server(Path(folder), serve_args)
        server.csms("stations", "add", "FLOOD")
        with server:
            await asyncio.sleep(1)
            sent = 0
            async with connect(f"ws://127.0.0.1:{server.port}/FLOOD",
                               subprotocols=["ocpp1.6"],  # type: ignore[list-item]
                               max_size=2**20) as ws:
                await ws.send(json.dumps([2, "s", "StartTransaction", {
                    "connectorId": 1, "idTag": "FLOODTAG", "meterStart": 0,
                    "timestamp": "2026-01-01T00:00:00Z"}]))
                started = json.loads(await ws.recv())
                frame = json.dumps(flood_meter_values(started[2]["transactionId"]))
                await asyncio.sleep(1)
                before = db_bytes(Path(folder))
                start = time.monotonic()
                half, deadline = start + seconds / 2, start + seconds
                size = late = 0  # bytes answered: in all, in the second half
                while (now := time.monotonic()) < deadline:
                    text = f'[2,"m{sent}","MeterValues",{frame}]'
                    await ws.send(text)
                    await ws.recv()
                    sent += 1
                    size += len(text)
                    late += len(text) if now >= half else 0
            await asyncio.sleep(1)
            after = db_bytes(Path(folder))
            counted = await server.metrics()
    return {"benchmark": "meter_values_flood", "seconds": seconds, "messages": sent,
            "frame_bytes": size // max(sent, 1), "bytes_answered": size,
            "bytes_answered_per_s": round(size / seconds),
            "second_half_bytes_answered_per_s": round(late / (seconds / 2)),
            "db_growth_bytes": after - before,
            "db_growth_bytes_per_s": round((after - before) / seconds),
            "delayed": {k: v for k, v in counted.items()
                        if k.startswith("voltledger_answers_delayed")}}


async def hold_a_socket(port: int, stop: asyncio.Event) -> int:
    """A silent socket from 127.0.0.1, opened again whenever the server closes it (after
    0.1 s); how many times it was opened."""
    opened = 0
    while not stop.is_set():
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port,
                                                          local_addr=("127.0.0.1", 0))
        except OSError:
            await asyncio.sleep(0.1)
            continue
        opened += 1
        closed = asyncio.ensure_future(reader.read())
        with contextlib.suppress(OSError):
            await asyncio.wait([closed, asyncio.ensure_future(stop.wait())],
                               return_when=asyncio.FIRST_COMPLETED)
        closed.cancel()
        writer.close()
        await asyncio.sleep(0.1)
    return opened


async def reconnect(port: int, station: str, address: str, deadline: float,
                    ) -> tuple[float | None, int]:
    """A station connecting until its BootNotification is answered (a dropped attempt
    is tried again after 1 s): when it got in (None: not before ``deadline``), and
    how many attempts failed."""
    started = time.perf_counter()
    failed = 0
    while time.perf_counter() < deadline:
        try:
            async with connect(f"ws://127.0.0.1:{port}/{station}",
                               subprotocols=["ocpp1.6"],  # type: ignore[list-item]
                               open_timeout=30, local_addr=(address, 0)) as ws:
                await ws.send(json.dumps([2, "b", "BootNotification",
                                          {"chargePointVendor": "V", "chargePointModel": "M"}]))
                await ws.recv()
                return time.perf_counter() - started, failed
        except (OSError, TimeoutError, InvalidHandshake, ConnectionClosed):
            failed += 1
            await asyncio.sleep(1)
    return None, failed


async def handshakes(sockets: int, stations: int, seconds: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as folder:
        server = Server(Path(folder), ["--auto-register", "--auto-register-per-hour", "0"])
        with server:
            stop = asyncio.Event()
            holders = [asyncio.create_task(hold_a_socket(server.port, stop))
                       for _ in range(sockets)]
            pending = 'voltledger_handshakes_pending{listener="ws"}'
            while (await server.metrics()).get(pending, 0) < 1:
                await asyncio.sleep(0.2)
            await asyncio.sleep(3)  # every slot and the queue taken
            before = await server.metrics()
            deadline = time.perf_counter() + seconds
            results = await asyncio.gather(*(
                reconnect(server.port, f"ST{i:04d}", f"127.0.{1 + i // 250}.{i % 250 + 2}",
                          deadline) for i in range(stations)))
            counted = await server.metrics()
            stop.set()
            opened = sum(await asyncio.gather(*holders))
    took = sorted(t for t, _ in results if t is not None)

    def cut(reason: str) -> float:
        key = f'voltledger_connections_cut_total{{reason="{reason}"}}'
        return counted.get(key, 0) - before.get(key, 0)

    return {"benchmark": "handshake_hog", "sockets": sockets, "stations": stations,
            "seconds": seconds, "stations_in": len(took),
            "in_after_s": {"p50": round(took[len(took) // 2], 2) if took else None,
                           "max": round(took[-1], 2) if took else None},
            "station_attempts_dropped": sum(f for _, f in results),
            "hog_sockets_opened": opened,
            "during": {"dropped": cut("handshake_limit"),
                       "evicted": cut("handshake_evicted")}}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="attack", required=True)
    sub.add_parser("logins").add_argument("--attempts", type=int, default=300)
    sub.add_parser("datatransfer").add_argument("--seconds", type=float, default=20.0)
    meters = sub.add_parser("meterflood")
    meters.add_argument("--seconds", type=float, default=20.0)
    meters.add_argument("--serve-args", default="",
                        help="more options of csms serve, as one string")
    hog = sub.add_parser("handshakes")
    hog.add_argument("--sockets", type=int, default=2500)
    hog.add_argument("--stations", type=int, default=200)
    hog.add_argument("--seconds", type=float, default=30.0)
    args = parser.parse_args(argv)
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if args.attack == "logins":
        result = asyncio.run(logins(args.attempts))
    elif args.attack == "meterflood":
        result = asyncio.run(meterflood(args.seconds, args.serve_args.split()))
    elif args.attack == "handshakes":
        result = asyncio.run(handshakes(args.sockets, args.stations, args.seconds))
    else:
        result = asyncio.run(datatransfer(args.seconds))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
