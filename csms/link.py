"""The OCPP-J connection loop, shared by the central system and the simulated stations.

Theory of operation. A :class:`Link` runs one connection over a :class:`Channel`
(anything that sends and receives text and can be closed: a WebSocket, or one end
of the in-memory :func:`memory_pair`). It owns two tasks under one TaskGroup:

* the reader: every received message goes to the sans-I/O
  :class:`~csms.protocol.Endpoint`; a CALL is queued for the worker, an answer the
  endpoint made by itself (:class:`~csms.protocol.SendNow`) is sent at once, an
  answer to our CALL resolves the future :meth:`Link.call` waits on, anything else
  is logged and dropped;
* the worker: handles the peer's CALLs one at a time, in the order they came, and
  sends each answer (OCPP-J 1.6 §4.1.1 / 2.0.1 §4.1.1: the peer sends its next CALL
  only once it has ours, so the order is the peer's).

:meth:`Link.call` sends our own CALL, one at a time (a lock), and waits for its
answer with a timeout that counts from the call, the wait for the lock included.
Because answers are matched by the reader, not the worker, a CALL may be sent while
a CALL of the peer is being handled: the ``ocpp`` library's ``ChargePoint.start()``
deadlocks there.

The protocol stays in :mod:`csms.protocol` (no asyncio); timeouts, tasks and
sockets live here and in the channel adapters.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from websockets.asyncio.connection import Connection
from websockets.exceptions import ConnectionClosed

from csms.protocol import (
    Endpoint,
    Fault,
    IncomingCall,
    IncomingError,
    IncomingResult,
    OcppError,
    SendNow,
    Unmatched,
)

__all__ = [
    "CallFailed",
    "CallTimeout",
    "Channel",
    "ChannelClosed",
    "Handler",
    "Link",
    "LinkClosed",
    "LinkStats",
    "MemoryChannel",
    "TransientError",
    "WebSocketChannel",
    "memory_pair",
]

_log = logging.getLogger("csms.link")


class ChannelClosed(Exception):
    """The channel is closed: nothing more can be sent or received."""


class Channel(Protocol):
    """What a :class:`Link` needs of a connection."""

    async def send(self, text: str | bytes) -> None:
        """Send one message (bytes: a binary frame); :class:`ChannelClosed` once closed."""

    async def receive(self) -> str | bytes:
        """The next message (bytes for a binary frame); :class:`ChannelClosed` at the end."""

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Close the connection (both directions); closing twice does nothing."""


class LinkClosed(ConnectionError):
    """The connection closed before our CALL could be sent or answered."""


class CallTimeout(TimeoutError):
    """The peer did not answer our CALL in time."""


class CallFailed(Exception):
    """The peer answered our CALL with a CALLERROR."""

    def __init__(self, code: str, description: str,
                 details: dict[str, Any] | None = None) -> None:
        super().__init__(f"{code}: {description}")
        self.code = code
        self.description = description
        self.details = details or {}


class TransientError(OcppError):
    """A CALLERROR for a failure that a repeat of the same message may not meet (nothing
    was stored): the endpoint does not answer the repeat from memory."""


# A handler answers one CALL with the response payload, or raises OcppError.
Handler = Callable[[IncomingCall], Awaitable[dict[str, Any]]]


@dataclass
class LinkStats:
    """Counters of one or more links (a station keeps one across its reconnections)."""

    messages_in: int = 0
    calls_sent: int = 0
    errors_sent: int = 0  # CALLERRORs the endpoint sent by itself
    dropped: int = 0  # messages dropped (an answer to no CALL of ours...)
    callerrors_in: int = 0  # CALLERRORs received for our CALLs
    latencies: list[float] | None = field(default=None)  # seconds, when kept


class WebSocketChannel:
    """A :class:`Channel` over a websockets connection (server or client side)."""

    def __init__(self, ws: Connection) -> None:
        self.ws = ws

    async def send(self, text: str | bytes) -> None:
        try:
            await self.ws.send(text)
        except ConnectionClosed:
            raise ChannelClosed from None

    async def receive(self) -> str | bytes:
        try:
            return await self.ws.recv()
        except ConnectionClosed:
            raise ChannelClosed from None

    async def close(self, code: int = 1000, reason: str = "") -> None:
        await self.ws.close(code, reason)


_CLOSED = object()


class MemoryChannel:
    """One end of an in-memory connection made by :func:`memory_pair`."""

    def __init__(self, inbox: asyncio.Queue[Any], outbox: asyncio.Queue[Any]) -> None:
        self._inbox = inbox
        self._outbox = outbox
        self.closed = False
        self.close_code: int | None = None
        self.close_reason = ""
        self.peer: MemoryChannel | None = None

    async def send(self, text: str | bytes) -> None:
        if self.closed:
            raise ChannelClosed
        await self._outbox.put(text)

    async def receive(self) -> str | bytes:
        if self.closed and self._inbox.empty():
            raise ChannelClosed
        item = await self._inbox.get()
        if item is _CLOSED:
            self._inbox.put_nowait(_CLOSED)  # every later receive ends too
            raise ChannelClosed
        assert isinstance(item, str | bytes)
        return item

    async def close(self, code: int = 1000, reason: str = "") -> None:
        for end in (self, self.peer):
            if end is not None and not end.closed:
                end.closed = True
                end.close_code, end.close_reason = code, reason
                with contextlib.suppress(asyncio.QueueFull):
                    end._inbox.put_nowait(_CLOSED)


class _Calls:
    """The peer's CALLs on their way from the reader to the worker: asyncio.Queue's
    bounded put and get for exactly one producer and one consumer, in two slots.

    An asyncio.Queue allocates four deques (its items, getters and putters, and the
    ``join()`` event's waiters) of ~760 bytes each, ~3.2 KiB on every idle connection
    for a queue that holds one CALL at a time."""

    __slots__ = ("_getter", "_items", "_limit", "_putter")

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("max_queued_calls must be at least 1")
        self._items: list[IncomingCall] = []
        self._limit = limit
        self._getter: asyncio.Future[None] | None = None
        self._putter: asyncio.Future[None] | None = None

    async def put(self, call: IncomingCall) -> None:
        """Queue ``call``; while ``limit`` are queued, wait for the worker to take one."""
        while len(self._items) >= self._limit:
            self._putter = asyncio.get_running_loop().create_future()
            try:
                await self._putter
            finally:
                self._putter = None
        self._items.append(call)
        _wake(self._getter)

    async def get(self) -> IncomingCall:
        """The oldest queued call; waits for one."""
        while not self._items:
            self._getter = asyncio.get_running_loop().create_future()
            try:
                await self._getter
            finally:
                self._getter = None
        call = self._items.pop(0)
        _wake(self._putter)
        return call


def _wake(waiter: asyncio.Future[None] | None) -> None:
    if waiter is not None and not waiter.done():
        waiter.set_result(None)


def memory_pair(max_queued: int = 0) -> tuple[MemoryChannel, MemoryChannel]:
    """Two connected channels: what one sends, the other receives, in order
    (``max_queued``: messages in flight per direction before a sender waits; 0: no
    limit)."""
    a_to_b: asyncio.Queue[Any] = asyncio.Queue(max_queued)
    b_to_a: asyncio.Queue[Any] = asyncio.Queue(max_queued)
    a, b = MemoryChannel(b_to_a, a_to_b), MemoryChannel(a_to_b, b_to_a)
    a.peer, b.peer = b, a
    return a, b


class Link:
    """One OCPP-J connection: reader, in-order worker, one CALL of ours at a time."""

    def __init__(
        self,
        channel: Channel,
        endpoint: Endpoint,
        handler: Handler,
        *,
        name: str,
        call_timeout: float,
        max_queued_calls: int = 4,
        stats: LinkStats | None = None,
        log: logging.Logger | logging.LoggerAdapter[logging.Logger] = _log,
        tap: Callable[[str | bytes], bool] | None = None,
        on_binary: Callable[[bytes], Awaitable[None]] | None = None,
        on_send_now: Callable[[SendNow], None] | None = None,
        hold_above: int | None = None,
        log_every: Callable[[int], bool] | None = None,
    ) -> None:
        """``tap`` sees each message first and may consume it (returns True);
        ``on_binary`` takes a binary frame and ends the reading (without it, a binary
        frame is read as text); ``on_send_now`` is told of each answer the endpoint
        sent by itself; ``hold_above``: a CALL of more bytes is handled and answered
        before the next message is read (the link holds one such at a time: the
        channel's budget for large messages, csms.transport.LargeFrames, counts it until
        the next read); ``log_every``: whether the n-th answer the endpoint sent by itself,
        or the n-th message dropped, is logged (None: each one; a peer decides how many
        it causes)."""
        self.channel = channel
        self.endpoint = endpoint
        self.handler = handler
        self.name = name
        self.call_timeout = call_timeout
        self.stats = stats or LinkStats()
        self.log = log
        self._tap = tap
        self._on_binary = on_binary
        self._on_send_now = on_send_now
        # A peer sends its CALLs one at a time; a few queued ones are tolerated, more
        # make the reader wait (back-pressure on a flooding peer).
        self._calls = _Calls(max_queued_calls)
        self._call_lock = asyncio.Lock()
        self._answer: asyncio.Future[IncomingResult | IncomingError] | None = None
        self._deferred: list[Callable[[], None]] = []
        self.closed = False
        self._hold_above = hold_above
        self._log_every = log_every
        # the large CALL the reader waits for the worker to be done with
        self._held: tuple[IncomingCall, asyncio.Future[None]] | None = None

    async def run(self) -> None:
        """Read and handle messages until the channel closes."""
        try:
            async with asyncio.TaskGroup() as tg:
                worker = tg.create_task(self._worker(), name=f"ocpp-worker-{self.name}")
                try:
                    await self._reader()
                finally:
                    worker.cancel()
        finally:
            self.closed = True

    async def _reader(self) -> None:
        try:
            while True:
                text = await self.channel.receive()
                if self._tap is not None and self._tap(text):
                    continue
                if isinstance(text, bytes) and self._on_binary is not None:
                    await self._on_binary(text)
                    return
                self.stats.messages_in += 1
                self.log.debug("< %s %s", self.name, text)
                event = self.endpoint.receive(text)
                if isinstance(event, IncomingCall):
                    if self._hold_above is not None and event.size > self._hold_above:
                        done = asyncio.get_running_loop().create_future()
                        self._held = (event, done)
                        await self._calls.put(event)
                        del text, event
                        await done
                        continue
                    await self._calls.put(event)
                elif isinstance(event, SendNow):
                    self.stats.errors_sent += 1
                    if self._on_send_now is not None:
                        self._on_send_now(event)
                    self._note(self.stats.errors_sent, "%s: %s", event.reason,
                               event.text[:200])
                    await self.send(event.text)
                elif isinstance(event, IncomingResult | IncomingError):
                    self._resolve(event)
                elif isinstance(event, Unmatched):
                    self.stats.dropped += 1
                    self._note(self.stats.dropped, "dropped: %s", event.reason)
                # an idle connection keeps no message while it waits for the next
                del text, event
        except ChannelClosed:
            pass
        finally:
            self.closed = True
            answer = self._answer
            if answer is not None and not answer.done():
                answer.set_exception(LinkClosed(self.name))

    async def _worker(self) -> None:
        while True:
            call = await self._calls.get()
            try:
                response = await self.handler(call)
            except TransientError as exc:
                text = self.endpoint.error(call.message_id, exc, remember=False)
            except OcppError as exc:
                text = self.endpoint.error(call.message_id, exc)
            except Exception:
                self.log.exception("! %s %s handler failed", self.name, call.action)
                text = self.endpoint.error(
                    call.message_id, OcppError(Fault.INTERNAL, "internal error"))
            else:
                text = self.endpoint.result(call.message_id, response)
                del response
            await self.send(text)
            held = self._held
            if held is not None and held[0] is call:
                self._held = None
                _wake(held[1])
            del call, text  # nothing of the last CALL is kept while waiting for the next
            if self._deferred:
                self._run_deferred()

    def _note(self, count: int, what: str, *args: object) -> None:
        """The info line of a message answered by the endpoint or dropped, the ``count``-th
        of its kind on this link: when ``log_every`` says so, with the count."""
        if self._log_every is None:
            self.log.info("! %s " + what, self.name, *args)
        elif self._log_every(count):
            self.log.info("! %s " + what + " (%d so far)", self.name, *args, count)

    def _resolve(self, event: IncomingResult | IncomingError) -> None:
        """The answer to our CALL in flight (a method: the reader's frame keeps no
        reference to it, or to its payload, while it waits for the next message)."""
        answer = self._answer
        if answer is not None and not answer.done():
            answer.set_result(event)

    def _run_deferred(self) -> None:
        deferred, self._deferred = self._deferred, []
        for action in deferred:
            action()

    def defer(self, action: Callable[[], None]) -> None:
        """Run ``action`` once the answer to the CALL being handled is sent (a CALL of
        ours that must follow it, e.g. 2.0.1 CertificateSigned after SignCertificate)."""
        self._deferred.append(action)

    async def send(self, text: str) -> None:
        """Send as is; a closed channel is not an error here (the reader ends)."""
        self.log.debug("> %s %s", self.name, text)
        # try/except, not contextlib.suppress(): no context manager object per message
        try:  # noqa: SIM105
            await self.channel.send(text)
        except ChannelClosed:
            pass

    async def call(
        self, action: str, payload: dict[str, Any], timeout: float | None = None,
        *, secret: bool = False,
    ) -> dict[str, Any]:
        """Send one CALL and wait for its answer (one at a time).

        The timeout counts from this call: the wait for the one CALL slot (CALLs of ours
        ahead of this one) and the wait for the answer share it, so a caller never waits
        for the slot and the answer longer than it asked, however many CALLs are queued
        before it. Writing the CALL is bounded by the channel (a peer that takes no data
        is cut by the transport's write timeout: :class:`LinkClosed`).

        Raises :class:`LinkClosed` when the connection is or goes away,
        :class:`CallTimeout` without an answer in time (or the CALL not sent in time),
        :class:`CallFailed` on a CALLERROR and :class:`OcppError` for a payload that
        violates the schema.
        ``secret``: the payload holds a credential and is not logged.
        """
        limit = timeout or self.call_timeout
        loop = asyncio.get_running_loop()
        deadline = loop.time() + limit
        try:
            async with asyncio.timeout_at(deadline):
                await self._call_lock.acquire()
        except TimeoutError:
            raise CallTimeout(f"{self.name}: {action} not sent within {limit:g} s (CALLs"
                              " of ours ahead of it)") from None
        try:
            if self.closed:
                raise LinkClosed(self.name)
            mid, text = self.endpoint.call(action, payload)
            answer: asyncio.Future[IncomingResult | IncomingError] = loop.create_future()
            self._answer = answer
            answered = False
            started = time.perf_counter()
            try:
                self.log.debug("> %s %s", self.name,
                               f"[2,{mid!r},{action!r},<redacted>]" if secret else text)
                try:
                    await self.channel.send(text)
                except ChannelClosed:
                    raise LinkClosed(self.name) from None
                self.stats.calls_sent += 1
                try:
                    async with asyncio.timeout_at(deadline):
                        event = await answer
                except TimeoutError:
                    raise CallTimeout(f"{self.name} did not answer {action}") from None
                answered = True
            finally:
                self._answer = None
                if not answered:
                    self.endpoint.abandon(mid)  # timed out or lost: the slot is free again
                    if answer.done() and not answer.cancelled():
                        # the reader ended (LinkClosed) while the CALL was being written:
                        # the caller learns it from the write; retrieved, or asyncio logs
                        # the answer's error as never retrieved
                        answer.exception()
            if self.stats.latencies is not None:
                self.stats.latencies.append(time.perf_counter() - started)
        finally:
            self._call_lock.release()
        if isinstance(event, IncomingError):
            self.stats.callerrors_in += 1
            raise CallFailed(event.code, event.description, event.details)
        return event.payload

    async def close(self, code: int = 1000, reason: str = "") -> None:
        await self.channel.close(code, reason)
