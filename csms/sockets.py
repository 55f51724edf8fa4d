"""A listener's socket counted by its owner from its arrival to its close: the station
file listener (:mod:`csms.files`) and the admin listener (:mod:`csms.admin.listener`)
each cap the sockets they hold and close an idle one for a newcomer; and what their HTTP
server logs of a request it cannot parse (:class:`ServerLog`)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, Protocol, cast

from aiohttp.http_exceptions import HttpProcessingError

from csms.logsafe import visible
from csms.service.repeats import worth_logging
from csms.transport import source_of

__all__ = ["CountedSocket", "ServerLog", "SocketOwner"]


class SocketOwner(Protocol):
    """Who counts the sockets of a listener."""

    def _admit(self, sock: CountedSocket) -> bool:
        """Count a socket that arrived; False when it is to be closed at once."""

    def _gone(self, sock: CountedSocket, app: asyncio.BaseProtocol | None) -> None:
        """A counted socket closed (or was evicted): once for each."""


# aiohttp's protocol for an admitted socket, and the one its transport is to feed (the
# same, or TLS in front of it)
MakeProtocol = Callable[["CountedSocket"], tuple[asyncio.Protocol, asyncio.BaseProtocol]]


class CountedSocket(asyncio.Protocol):
    """A socket of a listener, counted by its ``owner`` (under its client's address,
    ``source``: :func:`csms.transport.source_of`) from its arrival to its close.

    Over http:// this protocol stays the transport's and hands aiohttp what it reads (so
    that it sees the close); over https:// it hands the transport to the TLS layer, which
    tells it of the close (``on_lost``: :meth:`gone`)."""

    def __init__(self, owner: SocketOwner, make: MakeProtocol) -> None:
        self._owner: SocketOwner | None = owner
        self._make = make
        self.source = ""
        self._transport: asyncio.Transport | None = None
        self._app: asyncio.Protocol | None = None  # aiohttp's protocol
        self._inner: asyncio.Protocol | None = None  # what this one hands reads to

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport: duck-typed
        self._transport = tr = cast(asyncio.Transport, transport)
        owner = self._owner
        assert owner is not None
        self.source = source_of(tr.get_extra_info("peername"))
        if not owner._admit(self):
            self._owner = None
            tr.abort()
            return
        self._app, protocol = self._make(self)
        if protocol is self._app:
            self._inner = self._app
        else:
            tr.set_protocol(protocol)
        protocol.connection_made(tr)

    def data_received(self, data: bytes) -> None:
        if self._inner is not None:
            self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received() if self._inner is not None else None

    def pause_writing(self) -> None:
        if self._inner is not None:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        if self._inner is not None:
            self._inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self.gone()
        if self._inner is not None:
            self._inner.connection_lost(exc)

    def gone(self) -> None:
        """The socket closed: it leaves the count (once)."""
        owner, self._owner = self._owner, None
        if owner is not None:
            owner._gone(self, self._app)

    def evict(self) -> None:
        """Closed to make room for a newcomer."""
        self.gone()
        if self._transport is not None:
            self._transport.abort()


class ServerLog(logging.LoggerAdapter[logging.Logger]):
    """The logger aiohttp's server of a listener writes with (``AppRunner(logger=...)``).

    aiohttp logs each request it cannot parse (a control character in a header or the
    path, a Content-Length twice, a line too long, a form that breaks off) and each body
    its client cut off (a station that drops its upload half way, then tries again with
    the same URL) as an ERROR with its traceback, 11 lines and more: whoever reaches the
    port decided how fast the node's log grows (2,000 malformed requests, sent in 0.6 s,
    wrote 1.1 MB). Either is its client's doing, not a fault of ours: it is one warning
    line, the first time and every thousandth (:func:`csms.service.repeats.worth_logging`),
    counted in ``malformed`` or ``cut_off``. Whatever else aiohttp logs (a handler that
    failed) is logged as it was."""

    def __init__(self, logger: logging.Logger, listener: str) -> None:
        super().__init__(logger, {})
        self.listener = listener
        self.malformed = 0  # requests aiohttp could not parse
        self.cut_off = 0  # requests whose client closed the connection before their end

    def log(self, level: int, msg: object, *args: Any, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info")
        remote = args[0] if args else "?"  # aiohttp's "Error handling request from %s"
        if isinstance(exc, HttpProcessingError):
            self.malformed += 1
            if worth_logging(self.malformed):
                # aiohttp's message quotes the request's bytes over lines of their own:
                # the first line says what was wrong
                what = (exc.message or "").strip().splitlines()[:1] or [f"status {exc.code}"]
                self.logger.warning("! %s: a malformed request from %s: %s (%d so far)",
                                    self.listener, remote, visible(what[0].rstrip(":"))[:200],
                                    self.malformed)
        elif isinstance(exc, ConnectionError):
            self.cut_off += 1
            if worth_logging(self.cut_off):
                self.logger.warning("! %s: a request cut off by its client from %s"
                                    " (%d so far)", self.listener, remote, self.cut_off)
        else:
            super().log(level, msg, *args, **kwargs)
