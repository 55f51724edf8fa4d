"""The garbage collector's policy for a server that holds thousands of connections.

CPython's full collection walks every tracked object. With 10,000 connected stations that
is millions of objects and ~1 s during which no station is answered; it comes every minute
or two under load and finds nothing to free (what a connection holds is alive while it is
connected). Its young collections do the same at a smaller scale: what a station keeps
between two of its messages (its next keepalive wait, the state its last message left)
lives for a minute, so it survives the young collections and each of them walks it again;
with 17,000 stations per process a second-generation collection walked ~100,000 objects,
100-230 ms in which nothing was answered, and freed none of them (a measured run of the
message path found no cyclic garbage at all in its young collections). So every object
that survives *any* collection is frozen (``gc.freeze()``): the next collection walks only
what was made since the one before, and takes milliseconds.

What frozen objects still cost: reference counting frees them as usual; only a *cycle*
among them that becomes garbage waits. Connections that close leave such cycles (asyncio
and websockets objects refer to each other), so after enough closed connections
(``churn_floor``, and at least ``churn_fraction`` of those open) and at least every
``thaw_interval`` seconds everything is thawed. Young collections then stop freezing, so
their survivors reach the oldest generation as usual and the next full collection comes
as it would without this policy: it walks and frees everything (one long pause), and
freezing starts again.

A connection counts as churn only when its WebSocket was open and it was opened before the
last freeze. One that came and went since was never frozen: the young collections free it.
A socket whose WebSocket never opened (silent, refused, a TLS or HTTP handshake that failed
or timed out, dropped by the handshake gate) is not counted at all: counting those made
every connect storm (stations retrying refused or timed-out handshakes) thaw the whole
heap again and again, each thaw a full walk of every connected station (seconds at 50,000
stations on one node) while new stations waited for their handshakes, failed, and
retried. Nor does it need to be: it leaves no cycle (:mod:`csms.transport` breaks those
websockets', asyncio's and a TLS error's objects made as the socket closes), so reference
counting frees all of it at once, frozen or not. Before that, each left ~7 KB frozen until
the next thaw, up to an hour: a stranger opening and closing sockets grew the server by
gigabytes an hour (``tests/integration/csms/test_transport.py::
test_sockets_that_never_open_leave_nothing_to_collect`` holds this).

Young collections come by time, not only by count. CPython starts one when the tracked
objects allocated exceed those freed by 700; the freeing of frozen objects counts too, so
on a server whose every message frees what the station's previous one left, the count
hardly grows while the youngest generation does: it held 20,000-50,000 objects when a
collection finally came (20-80 ms). :meth:`GcPolicy.young_collections` collects it every
``YOUNG_INTERVAL`` seconds instead, each walk a tenth as long; the work is the same (each
object is walked once, then frozen).

One policy per process: servers in the same process (tests) share it, counted by
:meth:`GcPolicy.install` / :meth:`GcPolicy.uninstall`.
"""

from __future__ import annotations

import asyncio
import gc
import time
from typing import Any

__all__ = ["POLICY", "YOUNG_INTERVAL", "GcPolicy"]

YOUNG_INTERVAL = 0.1  # seconds between two collections of the youngest generation


class GcPolicy:
    def __init__(self, churn_floor: int = 1000, churn_fraction: float = 0.1,
                 thaw_interval: float = 3600.0) -> None:
        self.churn_floor, self.churn_fraction = churn_floor, churn_fraction
        self.thaw_interval = thaw_interval
        self.freezes = 0
        self.thaws = 0
        self._users = 0
        self._closed = 0
        self._thawed_at = time.monotonic()
        self._walk_due = False  # thawed: the next full collection walks everything
        self.frozen_at = float("-inf")  # time.monotonic() of the last freeze

    @property
    def active(self) -> bool:
        return self._users > 0

    def install(self) -> None:
        self._users += 1
        if self._users == 1:
            gc.callbacks.append(self._after_collection)
            self._thawed_at = time.monotonic()
            self._walk_due = False
            self._freeze()  # what the process holds after starting up

    def uninstall(self) -> None:
        if self._users == 0:
            return
        self._users -= 1
        if self._users == 0:
            gc.callbacks.remove(self._after_collection)
            gc.unfreeze()
            self._closed = 0
            self._walk_due = False
            self.frozen_at = float("-inf")

    def _after_collection(self, phase: str, info: dict[str, Any]) -> None:
        if phase != "stop":
            return
        if self._walk_due:
            if info.get("generation") == 2:  # the walk after a thaw is done
                self._walk_due = False
                self._freeze()
            return
        if time.monotonic() - self._thawed_at >= self.thaw_interval:
            self.thaw()  # the next full collection walks everything once more
            return
        self._freeze()

    def _freeze(self) -> None:
        gc.freeze()
        self.freezes += 1
        self.frozen_at = time.monotonic()

    async def young_collections(self, interval: float = YOUNG_INTERVAL) -> None:
        """Collect the youngest generation every ``interval`` seconds, until cancelled."""
        while True:
            await asyncio.sleep(interval)
            gc.collect(0)

    def connection_closed(self, open_now: int, opened_at: float | None) -> None:
        """A connection went away; ``opened_at``: when its WebSocket opened
        (``time.monotonic()``), None if its handshake never finished; ``open_now`` are
        still open."""
        if not self.active or self._walk_due or opened_at is None or \
                opened_at > self.frozen_at:
            return  # not frozen, or no walk needed for it
        self._closed += 1
        if self._closed >= max(self.churn_floor, int(open_now * self.churn_fraction)):
            self.thaw()

    def thaw(self) -> None:
        """Let the next full collection walk (and free) everything again."""
        self._closed = 0
        self._thawed_at = time.monotonic()
        self._walk_due = True
        self.frozen_at = float("-inf")
        gc.unfreeze()
        self.thaws += 1


POLICY = GcPolicy()
