"""Test support: a real central system on a loopback port, service checks."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from csms.bootstrap import App, build
from csms.config import Settings
from csms.domain.model import BootPolicy, IdTag
from csms.service.auth import hash_password
from csms.service.charging import new_station
from csms.service.ports import Tx
from csms.service.views import session_json

__all__ = [
    "IN_CI", "LONG_AGO", "RunningServer", "csms_cli", "is_queued", "later",
    "periodic_readings", "require_service", "service_reachable", "station_events", "until",
]

# When test stations were registered, unless a test says otherwise: long before the fixed
# dates the tests replay (the central system holds sessions older than a station's
# registration less 30 days, see csms.domain.energy.implausible_times).
LONG_AGO = datetime(2019, 1, 1, tzinfo=UTC)

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


async def until(check: Callable[[], Awaitable[Any]], what: str = "the condition",
                timeout: float = 10) -> Any:
    """Poll ``check`` every 20 ms until it returns something true, and return that; an
    AssertionError naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


def service_reachable(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=1).close()
    except OSError:
        return False
    return True


def require_service(name: str, host: str, port: int) -> None:
    """Skip when a service is down on a developer machine; fail under CI."""
    if service_reachable(host, port):
        return
    message = f"{name} is not reachable on {host}:{port}"
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)


def require_anvil() -> None:
    """Skip when Anvil is not installed on a developer machine; fail under CI."""
    from settlement.chain import find_anvil

    if find_anvil() is not None:
        return
    if IN_CI:
        pytest.fail("anvil is required (make install)")
    pytest.skip("anvil not installed: make install")


class RunningServer:
    """A central system serving on 127.0.0.1 for the duration of a test."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.app: App | None = None

    @property
    def central(self) -> Any:
        assert self.app is not None
        return self.app.central

    @property
    def repo(self) -> Any:
        assert self.app is not None
        return self.app.repo

    @property
    def port(self) -> int:
        return self.settings.port

    @property
    def admin_url(self) -> str:
        assert self.app is not None and self.app.admin is not None
        return f"http://127.0.0.1:{self.app.admin.port}"

    @property
    def admin_token(self) -> str:
        assert self.app is not None and self.app.admin is not None
        return self.app.admin.token

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self.app = await build(self.settings)
        await self.app.start()
        if self.settings.port == 0:
            self.settings = replace(self.settings, port=self.app.central.port)
            self.app.settings = self.settings

    async def stop(self) -> None:
        """Close the listener and every station connection (the database too)."""
        if self.app is None:
            return
        for conn in list(self.app.central.connections.values()):
            await conn.close(1001, "server going away")
        await self.app.close()
        self.app = None

    async def restart(self) -> None:
        await self.stop()
        await self.start()

    async def add_station(
        self, station_id: str, password: str | None = None, boot: str = "accepted",
        profile: int | None = None, registered_at: datetime | None = LONG_AGO,
    ) -> None:
        pw_hash = hash_password(password) if password else None

        async def work(tx: Tx) -> None:
            station = new_station(
                station_id, boot_policy=BootPolicy(boot),
                security_profile=profile if profile is not None else (1 if password else 0),
                password_hash=pw_hash,
            )
            if registered_at is not None:
                station.created_at = registered_at
            await tx.insert_station(station)

        await self.repo.unit(work)

    async def add_tariff(self, per_kwh: str = "0.39", station_id: str = "*") -> None:
        """A tariff valid since long ago (sessions without one are held, not settled)."""
        from decimal import Decimal

        from csms.domain.tariff import Tariff

        async def work(tx: Tx) -> None:
            await tx.add_tariff(Tariff(station_id, Decimal(per_kwh), "EUR", 2,
                                       valid_from=LONG_AGO))

        await self.repo.unit(work)

    async def set_boot(self, station_id: str, boot: str) -> None:
        async def work(tx: Tx) -> None:
            st = await tx.get_station(station_id)
            assert st is not None
            st.boot_policy = BootPolicy(boot)
            await tx.update_station(st)

        await self.repo.unit(work)

    async def add_tag(
        self, tag: str, status: str = "accepted", expires: datetime | None = None
    ) -> None:
        async def work(tx: Tx) -> None:
            await tx.put_tag(IdTag(tag, status, expires))

        await self.repo.unit(work)

    async def sessions(self, station_id: str | None = None) -> list[dict[str, Any]]:
        async def work(tx: Tx) -> list[dict[str, Any]]:
            return [session_json(s) for s in await tx.list_sessions(station_id)]

        return list(reversed(await self.repo.read(work)))

    async def call(
        self, station_id: str, action: str, payload: dict[str, Any], timeout: float = 10
    ) -> dict[str, Any]:
        result: dict[str, Any] = await self.central.call(station_id, action, payload, timeout)
        return result

    async def wait_connected(self, station_id: str, timeout: float = 5) -> None:
        async with asyncio.timeout(timeout):
            while station_id not in self.central.connections:
                await asyncio.sleep(0.01)


def csms_cli(server: RunningServer, *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``csms ARGS --db <the server's database>`` as a process."""
    return subprocess.run(
        [sys.executable, "-m", "csms", *args, "--db", server.settings.db],
        capture_output=True, text=True, timeout=60, env={**os.environ, "COLUMNS": "200"})


async def is_queued(server: RunningServer, session_id: int) -> bool:
    """Whether a completed session waits for settlement (not held)."""

    async def work(tx: Tx) -> bool:
        return await tx.fetchone(
            "SELECT 1 AS x FROM settlement_queue WHERE session_id = ?", session_id) is not None

    return bool(await server.repo.read(work))


@contextmanager
def later(server: RunningServer, by: timedelta) -> Iterator[None]:
    """The central system's clock ``by`` ahead of the real one meanwhile: what the server
    handles then arrives, by its clock, ``by`` later than now (a station's message sent
    later, without waiting). Where the storage stamps a row with the real time (a
    session's ``created_at``), that time is not moved."""
    assert server.app is not None
    service = server.app.service
    real: Callable[[], datetime] = service.clock
    service.clock = lambda: datetime.now(UTC) + by
    try:
        yield
    finally:
        service.clock = real


async def station_events(server: RunningServer, station_id: str,
                         kind: str) -> list[dict[str, Any]]:
    """The payloads of a station's recorded events of one kind, newest first."""

    async def work(tx: Tx) -> list[dict[str, Any]]:
        return await tx.list_station_events(station_id, kind)

    return [e["payload"] for e in await server.repo.read(work)]


def periodic_readings(begin: datetime, minutes: int) -> list[dict[str, Any]]:
    """A 1.6 StopTransaction's transactionData (§9.1 StopTxnSampledData) of a session
    sampled once a minute from ``begin``, one measurand: what a station without a
    MaxMessageSize key sends whole (~150 bytes of JSON a reading)."""
    return [{
        "timestamp": (begin + timedelta(minutes=m)).strftime("%Y-%m-%dT%H:%M:%S.000Z"),
        "sampledValue": [{"value": f"{1_000_000 + m * 120}.000", "context": "Sample.Periodic",
                          "measurand": "Energy.Active.Import.Register", "unit": "Wh",
                          "location": "Outlet"}],
    } for m in range(1, minutes)]
