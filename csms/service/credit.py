"""Whether a driver's escrow covers a charge: the port the charging service asks.

A tag linked to a driver (``csms drivers link``) is charged from that driver's escrow on
chain, under the terms the driver set there. Before a station starts charging such a tag
(Authorize, a start without one, a remote start), the central system asks whether the
escrow and the terms cover another session, and answers 1.6 ``Blocked`` / 2.0.1
``NoCredit`` when they do not (issue: a charge the driver cannot be billed for is a host
unpaid). Tags linked to no driver get no opinion here (``None``): they are billed
off-chain as before. The adapter lives in ``settlement.credit`` (it reads the chain).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Protocol

__all__ = ["CreditCheck", "CreditDecision", "DriverLocks"]


@dataclass(frozen=True, slots=True)
class CreditDecision:
    ok: bool
    reason: str = ""
    driver: str | None = None


class CreditCheck(Protocol):
    async def check(self, station_id: str, tag: str) -> CreditDecision | None:
        """None when ``tag`` belongs to no driver; else whether a new session is covered."""
        ...

    async def driver_of(self, tag: str) -> str | None:
        """The driver (lower-case address) who linked ``tag``, or None."""
        ...

    async def check_authorization(self, station_id: str,
                                  authorization: dict[str, Any]) -> CreditDecision:
        """Whether a driver's signed app-session authorization is good for this station."""
        ...


class DriverLocks:
    """One lock per driver on this node, held from a coverage check through the unit that
    stores what it covered (a session, an authorization): two starts of one driver at
    the same moment are judged one after the other, the second seeing the first's
    session. Bounded: a driver's lock is dropped when no one holds or awaits it. Across
    nodes nothing is serialized (each node has its own locks)."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    def __len__(self) -> int:
        return len(self._locks)

    @asynccontextmanager
    async def hold(self, driver: str) -> AsyncIterator[None]:
        key = driver.lower()
        lock, users = self._locks.get(key, (asyncio.Lock(), 0))
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users <= 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)
