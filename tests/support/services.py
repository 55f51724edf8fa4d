"""Private servers a test can stop and start: a Mosquitto broker and a PostgreSQL cluster.

The shared services of the machine (SERVICES.md) must stay up for every other
test; a test that takes a service down in the middle of a run starts its own,
on a free loopback port, in a folder of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import os
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import aiomqtt
import orjson
import pytest

from settlement.chain import free_local_port
from support import IN_CI
from support.tls import ServerTls

__all__ = ["Broker", "PrivatePostgres", "Subscriber", "alive", "free_port", "require_binary"]


def alive(pid: int) -> bool:
    """Whether a process runs (a zombie does not; it may end while we look)."""
    try:
        os.kill(pid, 0)
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (ProcessLookupError, FileNotFoundError):
        return False
    except PermissionError:  # someone else's process
        return True
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def free_port() -> int:
    return free_local_port()  # below the ephemeral range (see there)


def _wait_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port}")


def require_binary(name: str, path: str | None) -> str:
    """The binary's path; skip the test when it is missing (fail under CI)."""
    if path and Path(path).exists():
        return path
    if IN_CI:
        pytest.fail(f"{name} is required")
    pytest.skip(f"{name} is not installed")


class Broker:
    """A Mosquitto process of the test's own, on a free loopback port: open to anyone, or
    only to ``users`` (name -> password); over TLS with ``tls`` (its certificate and key)."""

    def __init__(self, folder: Path, *, users: dict[str, str] | None = None,
                 tls: ServerTls | None = None) -> None:
        self.port = free_port()
        self.conf = folder / "mosquitto.conf"
        self.tls = tls
        # Persistence keeps the subscriber's durable session (clean_session=False)
        # across the restart, so events published before it resubscribes are queued
        # for it rather than dropped.
        lines = [f"listener {self.port} 127.0.0.1",
                 f"allow_anonymous {'false' if users is not None else 'true'}",
                 "persistence true", f"persistence_location {folder}/"]
        if users is not None:
            passwd = folder / "mosquitto.passwd"
            passwd.touch(0o600)
            tool = require_binary("mosquitto_passwd", shutil.which("mosquitto_passwd")
                                  or "/usr/bin/mosquitto_passwd")
            for name, password in users.items():
                subprocess.run([tool, "-b", str(passwd), name, password], check=True,
                               capture_output=True, timeout=30)
            lines.append(f"password_file {passwd}")
        if tls is not None:
            lines += [f"certfile {tls.cert}", f"keyfile {tls.key}", "tls_version tlsv1.2"]
        if (users is not None or tls is not None) and os.geteuid() == 0:
            # as root Mosquitto becomes the user mosquitto, who cannot read the test's
            # folder (mode 0700): stay root to read the password file and the key
            lines.append("user root")
        self.conf.write_text("\n".join(lines) + "\n")
        self.binary = require_binary(
            "mosquitto", shutil.which("mosquitto") or "/usr/sbin/mosquitto")
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"{'mqtts' if self.tls else 'mqtt'}://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.proc = subprocess.Popen([self.binary, "-c", str(self.conf)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait_port(self.port, 5)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(5)
            self.proc = None


class PrivatePostgres:
    """A PostgreSQL cluster of the test's own (``initdb`` + ``pg_ctl``), trust auth.

    Run as the ``postgres`` user when the tests run as root (PostgreSQL refuses
    to run as root); the cluster lives in a folder that user owns.
    """

    def __init__(self) -> None:
        found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
        initdb = found[-1] if found else shutil.which("initdb")
        self.bin = Path(require_binary("initdb", initdb)).parent
        self.port = free_port()
        self.folder = Path(tempfile.mkdtemp(prefix="voltledger-pg-"))
        self.data = self.folder / "data"
        self._as: list[str] = []
        if os.geteuid() == 0:
            shutil.chown(self.folder, "postgres", "postgres")
            self._as = ["runuser", "-u", "postgres", "--"]

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str) -> None:
        subprocess.run([*self._as, *args], check=True, capture_output=True, timeout=120)

    def init(self) -> None:
        self._run(str(self.bin / "initdb"), "-D", str(self.data), "-A", "trust",
                  "-U", "postgres", "-E", "UTF8", "--no-sync")

    def start(self) -> None:
        options = (f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1"
                   " -c fsync=off -c full_page_writes=off")
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-l",
                  str(self.folder / "log"), "-o", options, "-w", "start")
        _wait_port(self.port)

    def stop(self, mode: str = "fast") -> None:
        """``fast`` disconnects every client at once, as a crash of the server would."""
        with contextlib.suppress(subprocess.CalledProcessError):
            self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w",
                      "stop")

    def remove(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.folder, ignore_errors=True)


class Subscriber:
    """Every event under ``voltledger/`` on the broker at ``port``; with ``login`` (user,
    password) and ``tls`` (a context trusting the broker) where the broker asks for them."""

    def __init__(self, port: int, *, login: tuple[str, str] | None = None,
                 tls: ssl.SSLContext | None = None) -> None:
        self.port = port
        self.login = login
        self.tls = tls
        self.events: list[dict[str, Any]] = []
        self.topics: list[str] = []
        self.ready = asyncio.Event()
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            try:
                async with aiomqtt.Client(
                        "127.0.0.1", self.port, identifier="test-sub", clean_session=False,
                        username=self.login[0] if self.login else None,
                        password=self.login[1] if self.login else None,
                        tls_context=self.tls) as client:
                    await client.subscribe("voltledger/#", qos=1)
                    self.ready.set()
                    async for message in client.messages:
                        self.topics.append(str(message.topic))
                        self.events.append(orjson.loads(message.payload))  # type: ignore[arg-type]
            except aiomqtt.MqttError:
                self.ready.clear()
                await asyncio.sleep(0.2)

    async def wait_for(self, predicate: Any, timeout: float = 10) -> None:
        async with asyncio.timeout(timeout):
            while not predicate(self):
                await asyncio.sleep(0.05)

    async def close(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
