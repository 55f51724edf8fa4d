"""A listener's socket counted by its owner from its arrival to its close: the station
file listener (:mod:`csms.files`) and the admin listener (:mod:`csms.admin.listener`)
each cap the sockets they hold and close an idle one for a newcomer."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Protocol, cast

from csms.transport import source_of

__all__ = ["CountedSocket", "SocketOwner"]


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
