"""What a stranger's sockets may cost on the admin listener.

The admin API and the console share the node's process (its file descriptors) with the
OCPP and station file listeners, and no token is asked before a request is whole. So:

* a socket has ``handshake_timeout`` seconds from its accept, or its last answer, to send
  a whole request line and headers (aiohttp's ``keepalive_timeout``: it closes a socket
  still waiting for one; the default kept one for an hour), and then as long again for
  the request's body (:meth:`AdminSockets.body_deadline`);
* at most :data:`MAX_CONNECTIONS` sockets are held at once. When full, the socket idle
  (no request started) or stalled the longest gives way to the newcomer (a flood of
  silent sockets closes its own oldest). Stalled: a request whose body is not whole yet,
  or one waiting out the delay wrong tokens earned (:meth:`AdminApi.slowed`). Neither is
  an operator's: a browser or a script sends a request's small body with its headers,
  and a rightful token waits only when a guesser shares its address. Only with every
  socket answering a whole request is the newcomer closed on arrival. Before, a stranger
  who trickled bodies on 64 sockets (and opened a new one as each was cut) kept the
  operator's requests out: closed on arrival, a GET retried every 0.1 s was answered after
  9.5 to 27 s (with wrong tokens waiting their delay instead, up to 75 s). The socket
  that gives way is one of the client (IPv4 address, IPv6 /64) holding the most, as on
  the station file listener (:mod:`csms.files`), when the newcomer's holds fewer: a
  stranger on another address never closes the operator's sockets; over loopback every
  client has the same address, and the oldest of all gives way;
* a request is answered only when its Host header names this listener
  (:class:`AdminHosts`).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ipaddress
import logging
from collections.abc import Callable, Iterable, Iterator
from typing import Any, cast

from aiohttp import hdrs, web

from csms.config import host_name
from csms.logsafe import protect, visible
from csms.metrics import Metrics
from csms.service.repeats import worth_logging
from csms.sockets import CountedSocket
from csms.transport import Tally

__all__ = ["MAX_CONNECTIONS", "AdminHosts", "AdminSockets"]

log = protect(logging.getLogger("csms.admin"))

# Sockets the admin listener holds at once: an operator's browser and scripts need a
# few; beyond, a silent one gives way or the newcomer is closed.
MAX_CONNECTIONS = 64


class _Client:
    """The sockets of one client (:func:`csms.transport.source_of`) that may give way."""

    __slots__ = ("idle", "stalled")

    def __init__(self) -> None:
        # sockets that have not started a request, oldest first, each with when it
        # became idle (its arrival or its last answer)
        self.idle: collections.OrderedDict[CountedSocket, float] = collections.OrderedDict()
        # sockets whose request is stalled, oldest first, each with when it stalled and
        # whether it still is: a body not whole yet, or a wait for wrong tokens
        self.stalled: collections.OrderedDict[
            CountedSocket, tuple[float, Callable[[], bool]]] = collections.OrderedDict()

    def oldest(self) -> CountedSocket | None:
        """The socket idle or stalled the longest. The longest, not idle ones first:
        under a flood of a guesser's new connections, each stalled in its wait, the one
        idle socket was most often the operator's, just arrived, its request not yet
        read."""
        idle = next(iter(self.idle.items()), None)
        for sock, (since, still) in list(self.stalled.items()):
            if not still():
                del self.stalled[sock]  # its body came whole
                continue
            if idle is None or since < idle[1]:
                return sock
            break
        return idle[0] if idle is not None else None


class AdminSockets:
    """The admin listener's sockets (see the module's docstring)."""

    def __init__(self, timeout: float, limit: int = MAX_CONNECTIONS,
                 metrics: Metrics | None = None) -> None:
        self.timeout = timeout
        self.limit = limit
        self.metrics = metrics  # voltledger_connections_cut_total: admin_limit, admin_evicted
        self.open = 0
        self.dropped = 0  # closed on arrival: full, none idle or stalled
        self.evicted = 0  # idle or stalled ones closed for a newcomer
        self._held = Tally()  # sockets per client
        self._clients: dict[str, _Client] = {}
        self._of: dict[asyncio.BaseProtocol, CountedSocket] = {}

    @property
    def idle(self) -> int:
        """Sockets held that have not started a request."""
        return sum(len(c.idle) for c in self._clients.values())

    def protocol(self, make: Callable[[], asyncio.Protocol]) -> asyncio.Protocol:
        """The protocol of an accepted socket; ``make`` gives aiohttp's."""

        def admitted(sock: CountedSocket) -> tuple[asyncio.Protocol, asyncio.BaseProtocol]:
            app = make()
            self._of[app] = sock
            return app, app

        return CountedSocket(self, admitted)

    def _admit(self, sock: CountedSocket) -> bool:
        if self.open >= self.limit:
            victim = self._victim(sock.source)
            if victim is None:
                self._cut("admin_limit")
                return False
            victim.evict()
            self._cut("admin_evicted")
        self.open += 1
        self._held.add(sock.source, 1)
        self._client(sock).idle[sock] = _now()
        return True

    def _client(self, sock: CountedSocket) -> _Client:
        client = self._clients.get(sock.source)
        if client is None:
            client = self._clients[sock.source] = _Client()
        return client

    def _victim(self, source: str) -> CountedSocket | None:
        """The socket that gives way to a newcomer from ``source``: one of the client
        holding the most, if ``source`` would still hold fewer after the exchange (a
        stranger's flood never closes the operator's sockets from another address);
        otherwise one of its own."""
        top = self._held.most()
        if top is not None and top != source and self._held.evens_out(source, top):
            victim = self._clients[top].oldest() if top in self._clients else None
            if victim is not None:
                return victim
        own = self._clients.get(source)
        return own.oldest() if own is not None else None

    @contextlib.contextmanager
    def stalled(self, request: web.BaseRequest,
                still: Callable[[], bool] = lambda: True) -> Iterator[None]:
        """While in it, the request's socket is stalled (while ``still()``): it may give
        way to a newcomer when the listener is full."""
        sock = self._of.get(request.protocol)
        if sock is not None:
            self._client(sock).stalled[sock] = (_now(), still)
        try:
            yield
        finally:
            if sock is not None and (client := self._clients.get(sock.source)) is not None:
                client.stalled.pop(sock, None)

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
                        else "an idle or stalled one closed for a new one", count)

    def _gone(self, sock: CountedSocket, app: asyncio.BaseProtocol | None) -> None:
        self.open -= 1
        self._held.add(sock.source, -1)
        client = self._clients.get(sock.source)
        if client is not None:
            client.idle.pop(sock, None)
            client.stalled.pop(sock, None)
            if sock.source not in self._held.count:
                del self._clients[sock.source]
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
            self._client(sock).idle.pop(sock, None)
        try:
            return cast(web.StreamResponse, await handler(request))
        finally:
            if sock is not None and self._of.get(request.protocol) is sock:
                self._client(sock).idle[sock] = _now()

    @web.middleware
    async def body_deadline(self, request: web.Request, handler: Any) -> web.StreamResponse:
        """A body not whole within ``timeout`` of the headers closes the socket (a peer
        that trickles one would hold its socket, and the handler reading it, for ever);
        until whole, its socket is stalled (:meth:`stalled`)."""
        content = request.content
        if content.is_eof():  # no body, or all of it is in
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
            with self.stalled(request, lambda: not content.is_eof()):
                return cast(web.StreamResponse, await handler(request))
        except Exception as exc:
            transport = request.transport
            if cut or (isinstance(exc, ConnectionError) and (
                    transport is None or transport.is_closing())):
                # the read the abort broke (the deadline's, or the socket gave way to a
                # newcomer): nobody is there to answer
                return web.Response(status=408)
            raise
        finally:
            timer.cancel()


class AdminHosts:
    """The Host headers the admin listener answers (RFC 9110 §7.2): ``localhost``, an
    address of loopback, ``bound`` (the listener's host) and the address a request reached,
    and the names the operator gave (``admin_hosts``: a reverse proxy's public name).

    Why: a page of another site whose name its owner makes resolve to 127.0.0.1 once
    loaded (DNS rebinding) is, to the browser, of the same origin as this listener, and its
    requests carry its own name: without this check it read /health, the console's login
    page and whatever else answers without the token, and could drive what trusts the
    browser. An address in the Host header is no such name (nobody's page has that
    origin), nor a request without the header (no browser sends one). ``*`` among the
    names turns the check off."""

    def __init__(self, bound: str, names: Iterable[str] = ()) -> None:
        given = {n.strip() for n in names if n.strip()}
        self.any = "*" in given
        self.names = {h for h in (host_name(n) for n in given - {"*"}) if h is not None}
        self.names.add("localhost")
        bound_name = host_name(bound) if bound not in ("", "0.0.0.0", "::") else None
        if bound_name is not None:
            self.names.add(bound_name)
        self.refused = 0

    def serves(self, header: str | None, local: str | None) -> bool:
        """Whether a request with this Host ``header`` that reached the address ``local``
        is answered."""
        if header is None or self.any:
            return True
        name = host_name(header)
        if name is None:
            return False
        if name in self.names:
            return True
        try:
            address = ipaddress.ip_address(name)
        except ValueError:
            return False  # a name the operator did not give
        if address.is_loopback:
            return True
        return local is not None and _same_address(address, local)

    @web.middleware
    async def check(self, request: web.Request, handler: Any) -> web.StreamResponse:
        """Refuse (421, RFC 9110 §15.5.20) a request whose Host is not served here."""
        header = request.headers.get(hdrs.HOST)
        sockname = request.transport.get_extra_info("sockname") if request.transport else None
        local = sockname[0] if isinstance(sockname, tuple) and sockname else None
        if self.serves(header, local):
            return cast(web.StreamResponse, await handler(request))
        self.refused += 1
        shown = visible(header or "")[:100]
        if worth_logging(self.refused):
            log.warning("! admin listener: a request from %s for Host %r refused (%d so"
                        " far); a name of this listener? add it to --admin-hosts",
                        request.remote, shown, self.refused)
        response = web.Response(
            status=421, text=f"Host {shown!r} is not served here (the operator lists the"
                             " names it serves in --admin-hosts, CSMS_ADMIN_HOSTS)\n")
        response.force_close()
        return response


def _now() -> float:
    return asyncio.get_running_loop().time()


def _same_address(address: ipaddress.IPv4Address | ipaddress.IPv6Address, local: str) -> bool:
    try:
        reached = ipaddress.ip_address(local.partition("%")[0])
    except ValueError:
        return False
    if isinstance(reached, ipaddress.IPv6Address) and reached.ipv4_mapped is not None:
        reached = reached.ipv4_mapped
    return address == reached
