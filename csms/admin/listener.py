"""What a stranger's sockets may cost on the admin listener.

The admin API and the console share the node's process (its file descriptors) with the
OCPP and station file listeners, and no token is asked before a request is whole. So:

* a socket has ``handshake_timeout`` seconds from its accept, or its last answer, to send
  a whole request line and headers (aiohttp's ``keepalive_timeout``: it closes a socket
  still waiting for one; the default kept one for an hour), and then as long again for
  the request's body (:meth:`AdminSockets.body_deadline`);
* at most :data:`MAX_CONNECTIONS` sockets are held at once. When full, the oldest socket
  that has not started a request gives way to the newcomer (a flood of silent sockets
  closes its own oldest, never a request under way); with none idle, the newcomer is
  closed on arrival. Over loopback every client has the same address, so there is no fair
  share per client as on the station listeners (:mod:`csms.files`).
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Callable
from typing import Any, cast

from aiohttp import web

from csms.logsafe import protect
from csms.metrics import Metrics
from csms.service.repeats import worth_logging
from csms.sockets import CountedSocket

__all__ = ["MAX_CONNECTIONS", "AdminSockets"]

log = protect(logging.getLogger("csms.admin"))

# Sockets the admin listener holds at once: an operator's browser and scripts need a
# few; beyond, a silent one gives way or the newcomer is closed.
MAX_CONNECTIONS = 64


class AdminSockets:
    """The admin listener's sockets (see the module's docstring)."""

    def __init__(self, timeout: float, limit: int = MAX_CONNECTIONS,
                 metrics: Metrics | None = None) -> None:
        self.timeout = timeout
        self.limit = limit
        self.metrics = metrics  # voltledger_connections_cut_total: admin_limit, admin_evicted
        self.open = 0
        self.dropped = 0  # closed on arrival: full, none idle
        self.evicted = 0  # idle ones closed for a newcomer
        self._idle: collections.OrderedDict[CountedSocket, None] = collections.OrderedDict()
        self._of: dict[asyncio.BaseProtocol, CountedSocket] = {}

    @property
    def idle(self) -> int:
        """Sockets held that have not started a request."""
        return len(self._idle)

    def protocol(self, make: Callable[[], asyncio.Protocol]) -> asyncio.Protocol:
        """The protocol of an accepted socket; ``make`` gives aiohttp's."""

        def admitted(sock: CountedSocket) -> tuple[asyncio.Protocol, asyncio.BaseProtocol]:
            app = make()
            self._of[app] = sock
            return app, app

        return CountedSocket(self, admitted)

    def _admit(self, sock: CountedSocket) -> bool:
        if self.open >= self.limit:
            if not self._idle:
                self._cut("admin_limit")
                return False
            next(iter(self._idle)).evict()  # the oldest idle one
            self._cut("admin_evicted")
        self.open += 1
        self._idle[sock] = None
        return True

    def _cut(self, reason: str) -> None:
        if reason == "admin_limit":
            self.dropped += 1
            count = self.dropped
        else:
            self.evicted += 1
            count = self.evicted
        if self.metrics is not None:
            self.metrics.connections_cut.labels(reason).inc()
        if worth_logging(count):
            log.warning("! admin listener: %d connections open, %s (%d so far)", self.open,
                        "a new one dropped" if reason == "admin_limit"
                        else "an idle one closed for a new one", count)

    def _gone(self, sock: CountedSocket, app: asyncio.BaseProtocol | None) -> None:
        self._idle.pop(sock, None)
        self.open -= 1
        if app is not None:
            self._of.pop(app, None)

    @web.middleware
    async def started(self, request: web.Request, handler: Any) -> web.StreamResponse:
        """Mark the request's socket as busy: aiohttp calls this once the request's line
        and headers are in (before its body is read); once answered, it is idle again,
        the newest (a keep-alive socket kept busy for good, a stranger's request now and
        then on each socket held them all)."""
        sock = self._of.get(request.protocol)
        if sock is not None:
            self._idle.pop(sock, None)
        try:
            return cast(web.StreamResponse, await handler(request))
        finally:
            if sock is not None and self._of.get(request.protocol) is sock:
                self._idle[sock] = None

    @web.middleware
    async def body_deadline(self, request: web.Request, handler: Any) -> web.StreamResponse:
        """A body not whole within ``timeout`` of the headers closes the socket (a peer
        that trickles one would hold its socket, and the handler reading it, for ever)."""
        if request.content.is_eof():  # no body, or all of it is in
            return cast(web.StreamResponse, await handler(request))
        cut = False

        def deadline() -> None:
            nonlocal cut
            transport = request.transport
            if not request.content.is_eof() and transport is not None:
                cut = True
                log.warning("! admin listener: a request body from %s not whole within"
                            " %g s: connection closed", request.remote, self.timeout)
                transport.abort()

        timer = asyncio.get_running_loop().call_later(self.timeout, deadline)
        try:
            return cast(web.StreamResponse, await handler(request))
        except Exception:
            if cut:  # the read the abort broke: nobody is there to answer
                return web.Response(status=408)
            raise
        finally:
            timer.cancel()
