"""The clients registered stations log in from: a lane of their own at the handshake gate.

The handshake gate (:class:`csms.transport.HandshakeGate`) rations its slots before it
reads a byte, so a registered station cannot be told from a stranger there; strangers
from many addresses, each holding no more than the station, could keep it waiting until
its handshake timeout. What the gate knows is the client a socket comes from (an IPv4
address, an IPv6 /64: :func:`csms.transport.source_of`). :class:`KnownClients` remembers
the clients from which a registered station completed a login that proved a secret (its
password, or its certificate for security profile 3), after every check of the upgrade
passed; the gate gives their sockets a reserve of slots strangers never take and a queue
ahead of theirs.

Only a login that proved a secret counts: a station without a password (profile 0, an
auto-registered one) lets anyone who knows its id log in, so its logins would let anyone
buy priority. What a password buys, stolen or not, is bounded: a station makes at most
:data:`PER_STATION` clients known at once (a newer one replaces its least recently seen
one), the set holds at most ``cap`` clients (the least recently seen gives way), and a
client not seen for :data:`FORGET_AFTER` is forgotten. A password is no proof of good
faith (a hostile station has its own): within the lane the gate counts a socket under the
station its client is known from, each station holding at most a small share of the lane,
and a station's sockets beyond it are a stranger's, so a known client can lock neither
other known stations nor stations it does not know out.

The set is kept in memory (a look-up per accepted socket, no I/O) and in the database
(``known_clients``, so a station arriving after a restart is known): a client is written
when it is new, names another station, or its stored time is :data:`REFRESH` old, in the
background and in batches, never on a connection's path. The table is pruned at the start
(older than :data:`FORGET_AFTER`, beyond the cap) and loses each client the set forgets.
Each server process (``--workers``) keeps its own set: what one learns, the others read
at their next start.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from csms.service.ports import Repository, StorageError, Tx

__all__ = ["FORGET_AFTER", "PER_STATION", "REFRESH", "KnownClients"]

log = logging.getLogger("csms.server")

# clients one station makes known at once
PER_STATION = 4
# s after which a client's stored time is written again on its next login
REFRESH = 3600.0
# s after its last login a client is forgotten
FORGET_AFTER = 30 * 86400.0


class _Seen:
    __slots__ = ("at", "station", "stored")

    def __init__(self, station: str, at: float, stored: float | None) -> None:
        self.station = station
        self.at = at  # the last login (time.time())
        self.stored = stored  # the time written to the table (or being written), None: none


def _saver(rows: list[tuple[str, str, datetime]],
           forgotten: list[str]) -> Callable[[Tx], Awaitable[None]]:
    async def work(tx: Tx) -> None:
        await tx.save_known_clients(rows, forgotten)

    return work


class KnownClients:
    """The clients registered stations logged in from (see the module docstring), for
    :class:`csms.transport.HandshakeGate` (:meth:`station_of`). ``cap`` 0: none is ever
    known."""

    def __init__(self, repo: Repository, cap: int, *,
                 clock: Callable[[], float] = time.time) -> None:
        self.repo = repo
        self.cap = cap
        self._clock = clock
        # client -> its station and times, the least recently seen first
        self._seen: collections.OrderedDict[str, _Seen] = collections.OrderedDict()
        # station -> its clients, the least recently seen first (at most PER_STATION)
        self._of: dict[str, list[str]] = {}
        # what the next write stores, and deletes
        self._dirty: dict[str, tuple[str, float]] = {}
        self._forgotten: set[str] = set()
        self._writing: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    def __contains__(self, client: object) -> bool:
        return isinstance(client, str) and self.station_of(client) is not None

    def station_of(self, client: str) -> str | None:
        """The station that logged in from ``client`` last, None when it is not known
        (the handshake gate's look-up: :meth:`csms.transport.HandshakeGate.lane_of`)."""
        seen = self._seen.get(client)
        if seen is None or self._clock() - seen.at >= FORGET_AFTER:
            return None
        return seen.station

    def __len__(self) -> int:
        return len(self._seen)

    def pending(self) -> bool:
        """Whether something is still to be written."""
        return bool(self._dirty or self._forgotten)

    async def load(self) -> None:
        """Prune the table and read it (at the start)."""
        if not self.cap:
            return
        since = datetime.fromtimestamp(self._clock() - FORGET_AFTER, UTC)

        async def work(tx: Tx) -> list[tuple[str, str, datetime]]:
            await tx.prune_known_clients(since, self.cap)
            return await tx.known_clients(since, self.cap)

        try:
            rows = await self.repo.unit(work)
        except StorageError as exc:  # the lane starts empty: stations fill it again
            log.error("! the known clients were not read: %s", exc)
            return
        for client, station, at in reversed(rows):  # the least recently seen first
            stamp = at.timestamp()
            self._add(client, station, stamp, stamp)
        if rows:
            log.info("= %d known clients (addresses registered stations logged in from)",
                     len(self._seen))

    def login(self, client: str, station: str) -> None:
        """``station`` completed a login that proved a secret from ``client``."""
        if not self.cap:
            return
        seen = self._add(client, station, self._clock(), None)
        if seen.stored is None or seen.at - seen.stored >= REFRESH:
            seen.stored = seen.at
            self._dirty[client] = (station, seen.at)
            if self._writing is None or self._writing.done():
                self._writing = asyncio.get_running_loop().create_task(
                    self.flush(), name="known-clients")

    def _add(self, client: str, station: str, at: float, stored: float | None) -> _Seen:
        seen = self._seen.get(client)
        if seen is None:
            seen = self._seen[client] = _Seen(station, at, stored)
            self._forgotten.discard(client)
        else:
            self._seen.move_to_end(client)
            if seen.station != station:  # a NAT: the row names the last station
                self._unlink(client, seen.station)
                seen.station, seen.stored = station, stored
            seen.at = at
        mine = self._of.setdefault(station, [])
        if client in mine:
            mine.remove(client)
        mine.append(client)
        if len(mine) > PER_STATION:
            self._forget(mine[0])
        while len(self._seen) > self.cap:
            self._forget(next(iter(self._seen)))
        return seen

    def _unlink(self, client: str, station: str) -> None:
        mine = self._of.get(station)
        if mine is not None and client in mine:
            mine.remove(client)
            if not mine:
                del self._of[station]

    def _forget(self, client: str) -> None:
        seen = self._seen.pop(client)
        self._unlink(client, seen.station)
        self._dirty.pop(client, None)
        self._forgotten.add(client)

    async def flush(self) -> None:
        """Write what changed (one unit of work at a time, each taking what piled up
        while the one before ran)."""
        async with self._lock:
            while self._dirty or self._forgotten:
                rows = [(client, station, datetime.fromtimestamp(at, UTC))
                        for client, (station, at) in self._dirty.items()]
                forgotten = sorted(self._forgotten)
                self._dirty, self._forgotten = {}, set()

                try:
                    await self.repo.unit(_saver(rows, forgotten))
                except StorageError as exc:
                    # written again on their next login; forgotten ones wait for a start
                    log.warning("! %d known clients not stored: %s", len(rows), exc)
                    for client, _, _ in rows:
                        seen = self._seen.get(client)
                        if seen is not None:
                            seen.stored = None
                    return

    async def close(self) -> None:
        """Write what is left (when the server stops)."""
        task, self._writing = self._writing, None
        if task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.flush()
