"""Soak: idle TLS sockets and a ping flood against one server; its memory and a station's latency.

A ``csms serve`` process listens on ws:// and wss://. A well-behaved station sends
a Heartbeat every 50 ms for the whole run. Then:

1. ``--sockets`` TCP connections to the wss:// port that never start TLS are
   opened, held ``--hold`` seconds and closed, ``--rounds`` times;
2. for ``--flood`` seconds a station floods 125-byte pings and never reads
   (reconnecting whenever the server closes it), while a second one floods pings
   and does read its pongs.

It prints JSON: the server's RSS at the start, at its peak and at the end (after
``--settle`` seconds), the heartbeat p50/p99 of each phase and of the whole run,
and what the server counted (queued and dropped handshakes, connections cut).

    python -m bench.soak                       # 5,000 sockets twice, 30 s flood
    python -m bench.soak --sockets 500 --flood 5 --settle 12   # the quick variant
    python -m bench.soak --idle-cost           # bytes per idle socket, ws:// vs wss://
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import datetime as dt
import ipaddress
import json
import os
import resource
import socket
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson
from websockets.asyncio.client import connect

from bench.common import free_port, rss_kib, server
from chargers_sim.load import percentile

__all__ = ["main", "run", "write_tls_pair"]

UPGRADE = ("GET /{sid} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
           "Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
           "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: ocpp1.6\r\n\r\n")


def write_tls_pair(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key (PEM files)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = folder / "server.pem", folder / "server.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def ping_frame(size: int = 125) -> bytes:
    """A masked client ping frame (RFC 6455 §5.5.2) with a ``size``-byte payload."""
    mask = os.urandom(4)
    payload = bytes(b ^ mask[i % 4] for i, b in enumerate(b"p" * size))
    return bytes([0x89, 0x80 | size]) + mask + payload


class Heartbeats:
    """One station sending a Heartbeat every ``every`` seconds; latencies by phase."""

    def __init__(self, url: str, every: float = 0.05) -> None:
        self.url = url
        self.every = every
        self.phase = "start"
        self.latencies: dict[str, list[float]] = {}
        self.failures = 0
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        n = 0
        while True:
            try:
                async with connect(f"{self.url}/SOAK-GOOD", subprotocols=["ocpp1.6"],  # type: ignore[list-item]
                                   open_timeout=10, ping_interval=None) as ws:
                    while True:
                        n += 1
                        started = time.perf_counter()
                        await ws.send(f'[2,"h{n}","Heartbeat",{{}}]')
                        async with asyncio.timeout(10):
                            answer = orjson.loads(await ws.recv())
                        assert answer[0] == 3, answer
                        self.latencies.setdefault(self.phase, []).append(
                            time.perf_counter() - started)
                        await asyncio.sleep(self.every)
            except asyncio.CancelledError:
                raise
            except Exception:
                self.failures += 1
                await asyncio.sleep(0.2)

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        every = sorted(x for xs in self.latencies.values() for x in xs)
        for name, xs in [*self.latencies.items(), ("all", every)]:
            xs = sorted(xs)
            out[name] = {"n": len(xs), "p50_ms": round(percentile(xs, 0.5) * 1000, 2),
                         "p99_ms": round(percentile(xs, 0.99) * 1000, 2),
                         "max_ms": round(xs[-1] * 1000, 2) if xs else None}
        out["failures"] = self.failures
        return out

    async def close(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


async def idle_sockets(port: int, n: int) -> list[socket.socket]:
    """``n`` TCP connections that never send a byte."""
    loop = asyncio.get_running_loop()
    out = []
    for i in range(n):
        s = socket.socket()
        s.setblocking(False)
        with contextlib.suppress(OSError):
            await loop.sock_connect(s, ("127.0.0.1", port))
        out.append(s)
        if i % 200 == 199:
            await asyncio.sleep(0)
    return out


async def _upgrade(port: int, sid: str, rcvbuf: int | None) -> socket.socket | None:
    loop = asyncio.get_running_loop()
    s = socket.socket()
    if rcvbuf is not None:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.setblocking(False)
    try:
        await loop.sock_connect(s, ("127.0.0.1", port))
        key = base64.b64encode(os.urandom(16)).decode()
        await loop.sock_sendall(s, UPGRADE.format(sid=sid, key=key).encode())
        head = b""
        async with asyncio.timeout(10):
            while b"\r\n\r\n" not in head:
                chunk = await loop.sock_recv(s, 4096)
                if not chunk:
                    raise ConnectionError("closed during the handshake")
                head += chunk
        if b" 101 " not in head.split(b"\r\n", 1)[0]:
            raise ConnectionError(head.split(b"\r\n", 1)[0].decode())
    except (OSError, TimeoutError):
        s.close()
        return None
    return s


async def flood(port: int, seconds: float, *, read: bool, sid: str) -> dict[str, int]:
    """Pings as fast as the socket takes them; reconnect whenever the server closes."""
    loop = asyncio.get_running_loop()
    frames = ping_frame() * 64
    deadline = loop.time() + seconds
    connections = sent = 0
    while loop.time() < deadline:
        s = await _upgrade(port, sid, None if read else 4096)
        if s is None:
            await asyncio.sleep(0.1)
            continue
        connections += 1
        drain: asyncio.Task[None] | None = None
        if read:
            async def reader(sock: socket.socket = s) -> None:
                with contextlib.suppress(OSError):
                    while await loop.sock_recv(sock, 65536):
                        pass
            drain = asyncio.create_task(reader())
        try:
            while loop.time() < deadline:
                async with asyncio.timeout(max(0.1, deadline - loop.time())):
                    await loop.sock_sendall(s, frames)
                sent += 64
        except (OSError, TimeoutError):
            pass
        finally:
            if drain is not None:
                drain.cancel()
            s.close()
    return {"connections": connections, "pings_sent": sent}


async def _metrics(admin_port: int, token: str) -> dict[str, float]:
    import aiohttp

    async with aiohttp.ClientSession() as http, http.get(
            f"http://127.0.0.1:{admin_port}/metrics",
            headers={"Authorization": f"Bearer {token}"}) as r:
        text = await r.text()
    out = {}
    for line in text.splitlines():
        if line.startswith(("voltledger_connections_cut_total", "voltledger_handshakes_pending",
                            "voltledger_handshakes_queued_total")):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


async def run(sockets: int, rounds: int, hold: float, flood_s: float, settle: float,
              extra: list[str]) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as folder:
        cert, key = write_tls_pair(Path(folder))
        tls_port, admin_port = free_port(), free_port()
        with server("voltledger", extra=[
                "--tls-cert", str(cert), "--tls-key", str(key), "--tls-port", str(tls_port),
                "--admin-port", str(admin_port), "--data-dir", folder, *extra]) as (port, proc):
            token = (Path(folder) / "admin.token")
            url = f"ws://127.0.0.1:{port}"
            beats = Heartbeats(url)
            await asyncio.sleep(3)  # connected, warm
            start = rss_kib(proc.pid)
            peak = start
            phases: dict[str, int] = {}
            beats.phase = "idle_tls_sockets"
            for _ in range(rounds):
                held = await idle_sockets(tls_port, sockets)
                await asyncio.sleep(hold)
                peak = max(peak, rss_kib(proc.pid))
                for s in held:
                    s.close()
                await asyncio.sleep(1)
            phases["after_idle_sockets"] = rss_kib(proc.pid)
            beats.phase = "ping_flood"
            watch = True

            async def watch_rss() -> None:
                nonlocal peak
                while watch:
                    peak = max(peak, rss_kib(proc.pid))
                    await asyncio.sleep(0.25)

            watcher = asyncio.create_task(watch_rss())
            silent, reading = await asyncio.gather(
                flood(port, flood_s, read=False, sid="SOAK-FLOOD"),
                flood(port, flood_s, read=True, sid="SOAK-FLOOD2"))
            watch = False
            await watcher
            phases["after_flood"] = rss_kib(proc.pid)
            beats.phase = "after"
            await asyncio.sleep(settle)
            end = rss_kib(proc.pid)
            counted = await _metrics(admin_port, token.read_text().strip())
            await beats.close()
    return {"benchmark": "soak", "idle_tls_sockets": sockets, "rounds": rounds,
            "flood_seconds": flood_s, "rss_start_kib": start, "rss_peak_kib": peak,
            "rss_end_kib": end, "rss_end_vs_start": round(end / start, 3),
            "rss_phases_kib": phases,
            "heartbeat": beats.summary(), "flood_not_reading": silent,
            "flood_reading": reading, "server_counted": counted}


async def idle_cost(n: int) -> dict[str, Any]:
    """RSS per idle socket on each port (a fresh server each), with the handshake limit
    out of the way."""
    out: dict[str, Any] = {"benchmark": "idle_socket_cost", "sockets": n}
    os.environ["CSMS_MAX_HANDSHAKES"] = str(n + 100)
    os.environ["CSMS_HANDSHAKE_TIMEOUT"] = "120"
    try:
        for name in ("ws", "wss"):
            with tempfile.TemporaryDirectory() as folder:
                cert, key = write_tls_pair(Path(folder))
                tls_port = free_port()
                with server("voltledger", extra=[
                        "--tls-cert", str(cert), "--tls-key", str(key),
                        "--tls-port", str(tls_port)]) as (port, proc):
                    await asyncio.sleep(2)
                    before = rss_kib(proc.pid)
                    held = await idle_sockets(port if name == "ws" else tls_port, n)
                    await asyncio.sleep(3)
                    during = rss_kib(proc.pid)
                    for s in held:
                        s.close()
                    await asyncio.sleep(13)  # the server trims its heap 10 s after closes
                    out[name] = {"rss_before_kib": before, "rss_held_kib": during,
                                 "bytes_per_socket": round((during - before) * 1024 / n),
                                 "rss_after_close_kib": rss_kib(proc.pid)}
    finally:
        del os.environ["CSMS_MAX_HANDSHAKES"], os.environ["CSMS_HANDSHAKE_TIMEOUT"]
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sockets", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--hold", type=float, default=3.0, help="seconds the sockets stay open")
    parser.add_argument("--flood", type=float, default=30.0, help="seconds of ping flood")
    parser.add_argument("--settle", type=float, default=15.0,
                        help="seconds between the flood and the last RSS reading")
    parser.add_argument("--idle-cost", action="store_true",
                        help="measure the RSS of idle sockets on each port instead")
    parser.add_argument("server_args", nargs="*", help="extra `csms serve` arguments")
    args = parser.parse_args(argv)
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if args.idle_cost:
        result = asyncio.run(idle_cost(args.sockets))
    else:
        result = asyncio.run(run(args.sockets, args.rounds, args.hold, args.flood, args.settle,
                                 args.server_args))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
