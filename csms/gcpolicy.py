"""The garbage collector's policy for a server that holds thousands of connections.

CPython's full collection walks every tracked object. With 10,000 connected stations that
is millions of objects and ~1 s during which no station is answered; it comes every minute
or two under load and finds nothing to free (what a connection holds is alive while it is
connected). So every object that survives a full collection is frozen (``gc.freeze()``):
later collections walk only what was made since, and take tens of milliseconds.

What frozen objects still cost: reference counting frees them as usual; only a *cycle*
among them that becomes garbage waits. Connections that close leave such cycles (asyncio
and websockets objects refer to each other), so after enough closed connections
(``churn_floor``, and at least ``churn_fraction`` of those open) and at least every
``thaw_interval`` seconds everything is thawed: the next full collection walks and frees
it all (one long pause), then freezes what survived again.

One policy per process: servers in the same process (tests) share it, counted by
:meth:`GcPolicy.install` / :meth:`GcPolicy.uninstall`.
"""

from __future__ import annotations

import gc
import time
from typing import Any

__all__ = ["POLICY", "GcPolicy"]


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

    @property
    def active(self) -> bool:
        return self._users > 0

    def install(self) -> None:
        self._users += 1
        if self._users == 1:
            gc.callbacks.append(self._after_collection)
            self._thawed_at = time.monotonic()
            gc.freeze()  # what the process holds after starting up

    def uninstall(self) -> None:
        if self._users == 0:
            return
        self._users -= 1
        if self._users == 0:
            gc.callbacks.remove(self._after_collection)
            gc.unfreeze()
            self._closed = 0

    def _after_collection(self, phase: str, info: dict[str, Any]) -> None:
        if phase != "stop" or info.get("generation") != 2:
            return
        if time.monotonic() - self._thawed_at >= self.thaw_interval:
            self.thaw()  # the next full collection walks everything once more
            return
        gc.freeze()
        self.freezes += 1

    def connection_closed(self, open_now: int) -> None:
        """A connection went away; ``open_now`` are still open."""
        if not self.active:
            return
        self._closed += 1
        if self._closed >= max(self.churn_floor, int(open_now * self.churn_fraction)):
            self.thaw()

    def thaw(self) -> None:
        """Let the next full collection walk (and free) everything again."""
        self._closed = 0
        self._thawed_at = time.monotonic()
        gc.unfreeze()
        self.thaws += 1


POLICY = GcPolicy()
