"""Bounded memory per connection: the listener side of :mod:`csms.server`.

Theory of operation. An attacker needs no password to open TCP connections,
send pings or stop reading, so what a connection may cost is bounded here, below
the OCPP layer, in every state of its life:

* **Accepted, handshake not finished** (TLS and HTTP upgrade). Each listener
  counts these in a :class:`HandshakeGate`; beyond ``max_handshakes`` a new
  connection waits, its first bytes unparsed, in a queue of at most
  ``handshake_queue`` sockets until a handshake ends (a fleet reconnecting after
  an outage gets in a little later instead of being refused and retrying);
  beyond the queue it is dropped at once, before anything else is allocated for it,
  unless its address holds fewer of the gate's sockets than another address would
  after it took a place: then that address's newest queued socket gives way (one
  address cannot hold the gate against everyone else; a NAT'd fleet alone still
  may). Strangers with an address per socket (a botnet, the /64s of one IPv6 /48) each
  hold no more than a station, so that rule never makes them give way to one: a
  registered station arriving while they keep the gate full would wait behind them
  until its timeout, since a socket cannot be told from a stranger's before its
  upgrade is read. So the gate has a lane for *known* clients, those a registered
  station completed a login from that proved a secret (its password, its certificate;
  remembered across restarts, bounded: :mod:`csms.service.known_clients`): a known
  client's socket may take one of a reserve of ``max_handshakes // 4`` (at least 1)
  more slots, which strangers never take; it queues ahead of strangers and, with the
  queue full, takes the place of a stranger's queued socket (the stranger's address
  holding the most, else the newest). A stranger never takes a place of the known lane.
  Any station with a password makes its addresses known, a hostile one too: in the known
  lane a socket counts under the station its client is known from, and each station
  holds at most a share of the lane (a quarter of the reserve, at least 1); its client's
  sockets beyond it are a stranger's, under the fair share per client above. So a known
  address that fills the gate with silent sockets locks out neither other known stations
  nor those it does not know (no password, a new address): they take its places as they
  would take any address's. A station without a password makes no address known: anyone
  who knows its id may log in as it.
  Each connection has ``handshake_timeout`` seconds from its accept, queued time
  included. Until its first byte a socket gets no handler task, timers or TLS
  state (:class:`_OnFirstByte`), so a silent wss:// socket costs what a silent
  ws:// one does. asyncio's own TLS layer allocated a 256 KiB read buffer per
  connection on accept and read up to 256 KiB at a time, which made an idle TCP
  connection to the wss:// port cost ~200-320 KB and left the heap fragmented
  after they closed;
  :class:`LeanSSLProtocol` shares one read buffer per listener (reads are
  synchronous: the transport fills the buffer and hands it over before anything
  else runs) and reads one TLS record (16 KiB) at a time.
* **Open.** The keepalive pings a peer only after ``ping_interval`` seconds in
  which nothing came from it: a station that sends meter values or heartbeats is
  known to be alive, and pinging it anyway cost a timer, a ping and a pong per
  station and interval. Pongs and close frames are written by websockets as data
  arrives, without flow control, so a peer that sends pings and never reads made the
  server's write buffer grow without end. :class:`GuardedConnection` closes a
  connection whose automatic answers find more than ``write_buffer_limit`` bytes
  still unread, closes one that sends control frames faster than a token bucket
  allows (1008), and gives every wait for the peer to read (``drain``) a
  deadline: websockets' keepalive waited on it forever, so a peer that stopped
  reading was never closed by the ping timeout.
* **Large frames.** A frame may be up to ``max_frame_bytes`` (a 1.6 StopTransaction's
  transactionData of a long session is ~90 KB): websockets refuses a bigger one by its
  header, before its payload arrives (1009). What a connection holds in messages of at
  most :data:`LARGE_FRAME_BYTES` is bounded per connection as before (its queue of
  received frames, ``max_queued_frames`` in :mod:`csms.server`); every byte it holds in a
  larger message (a frame still arriving, one queued, the one handed to the connection's
  loop until the loop reads the next) is taken from one budget for the whole node,
  :class:`LargeFrames` (``large_frame_budget``), as it arrives. Many connections that each
  send big frames (a stranger with auto-registration, or one trickling a frame it never
  finishes) hold at most the budget together. A connection whose next bytes do not fit
  is closed with 1013 (try again later), unless another client holds more than the
  connection's client would after taking them (shares are fair per client under
  pressure, an IPv4 address or an IPv6 /64 as in the handshake gate): then the client
  holding the most gives way, its connection with the most bytes in a message still
  arriving is closed with 1013 and dropped at once, and those bytes are given back,
  until the newcomer's fit. Before, connections from one address (strangers, or one
  station reconnecting under its id) that held the whole budget with frames never
  finished kept an honest station's big stop out (closed with 1013 at every try) for as
  long as they held; now the stop gets in while some other address holds more than the
  station would with it. Only a message still arriving gives way, never a complete one
  the loop will handle. While there is room nobody gives way, so a fleet behind one NAT
  address may take the whole budget, and gives way only while it holds more than the
  address asking would. Strangers spread over many addresses, each holding less than a
  stop weighs (~30 for a 300 KB stop in 8 MiB), kept it out all the same: fairness per
  address never made one of them give way. A stranger sends large frames only on a
  WebSocket that opened, under a station id that logged in (auto-registration, a station
  without a password, a stolen password); so a connection whose login proved a secret (a
  password checked, a profile-3 certificate: :meth:`GuardedConnection.prove`, a flag
  set by :mod:`csms.server`) is *proven*, and its bytes that do not fit first make the
  messages still arriving of unproven connections give way (1013, the address holding
  the most of theirs first, however little each holds), then fairness per address applies
  among proven connections; among unproven ones it applies as before, and a proven
  connection never gives way to an unproven one. The node keeps the bytes and the
  connections with a message arriving per kind and address; a small frame costs nothing
  more. The connection's loop (:class:`csms.link.Link`) reads no further message while it
  handles a large one, so it holds one at a time.
* **Closed.** Everything above is released; :class:`MemoryTrimmer` hands the
  freed heap back to the operating system after many connections have closed
  (glibc keeps it otherwise, and RSS never shrinks). A socket whose WebSocket never
  opened (silent, refused, a failed or timed-out TLS or HTTP handshake, dropped by the
  gate) is freed by reference counting as it closes: the cycles websockets', asyncio's
  and a TLS error's objects made are broken (:func:`unlink`, :func:`clear_frames`,
  :func:`drop_read_callback`), so nothing of it waits in the heap the collector's
  policy froze (:mod:`csms.gcpolicy`).

Refusals are counted per reason (``voltledger_connections_cut_total``) and the
pending handshakes are a gauge, so an attack is visible in ``/metrics``.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ctypes
import ctypes.util
import logging
import socket
import ssl
import struct
import sys
import time
import traceback
from asyncio import sslproto
from collections.abc import AsyncIterable, Callable, Iterable
from typing import Any, cast

from websockets.asyncio.server import Server, ServerConnection
from websockets.datastructures import Headers
from websockets.frames import CloseCode, Frame, Opcode

try:
    from websockets.speedups import apply_mask
except ImportError:  # websockets built without its C extension
    from websockets.utils import apply_mask
from websockets.protocol import State
from websockets.server import ServerProtocol
from websockets.streams import StreamReader
from websockets.typing import DataLike

from csms.metrics import Metrics
from csms.service.repeats import worth_logging

__all__ = [
    "CONTROL_FRAME_BURST",
    "CONTROL_FRAME_RATE",
    "LARGE_FRAME_BYTES",
    "TLS_READ_SIZE",
    "DroppedConnection",
    "FrameSummary",
    "GuardedConnection",
    "HandshakeGate",
    "LargeFrames",
    "LeanSSLProtocol",
    "MemoryTrimmer",
    "SharedBufferSSLProtocol",
    "Tally",
    "connection_factory",
    "malloc_trim",
    "source_of",
]

log = logging.getLogger("csms.server")

# A station pings every WebSocketPingInterval seconds (OCPP-J 1.6 §5 / 2.0.1 Part 4
# §5.3) and answers our pings: a handful of control frames a minute. The bucket lets
# a burst of 20 through and refills 2 a second; a peer beyond it is closed (1008).
CONTROL_FRAME_BURST = 20.0
CONTROL_FRAME_RATE = 2.0
# the header of a server's text frame of 126-65,535 and of more payload bytes (RFC 6455 §5.2)
_HEADER_16 = struct.Struct("!BBH")
_HEADER_64 = struct.Struct("!BBQ")
# One TLS record carries at most 16 KiB of plaintext (RFC 8446 §5.1).
TLS_READ_SIZE = 16 * 1024
# A message over this many bytes is held within the node's LargeFrames budget (the frame
# limit before large frames were allowed: what a connection holds below it is bounded per
# connection).
LARGE_FRAME_BYTES = 64 * 1024
_DATA_FRAMES = (Opcode.TEXT, Opcode.BINARY, Opcode.CONT)
# where websockets' frame parser waits between two frames (Protocol.parse); anywhere else
# it is within a frame, even with its reader's buffer empty (the header read, the rest not)
_BETWEEN_FRAMES = StreamReader.at_eof.__code__


class FrameSummary(logging.Filter):
    """websockets logs every frame's payload at debug level (``< TEXT '[2,...'``); an
    OCPP message may carry a password (a ChangeConfiguration of AuthorizationKey).
    Only the kind and size of a frame are logged; ``csms.server`` logs the messages
    themselves, with credentials redacted."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and any(isinstance(a, Frame) for a in args):
            record.args = tuple(f"{a.opcode.name} [{len(a.data)} bytes]"
                                if isinstance(a, Frame) else a for a in args)
        return True


# the first 12 bytes of an IPv4-mapped IPv6 address (RFC 4291 §2.5.5.2)
_V4_MAPPED = bytes(10) + b"\xff\xff"


def source_of(peer: Any) -> str:
    """The client a socket is counted under in a :class:`HandshakeGate`: its IPv4
    address, or the /64 of its IPv6 address (one subscriber's prefix: a host picks any
    of its 2^64 addresses). An IPv4-mapped IPv6 address counts as the IPv4 one."""
    if not isinstance(peer, tuple) or not peer or not isinstance(peer[0], str):
        return ""  # no address (a Unix socket): one client
    host: str = peer[0]
    if ":" not in host:
        return host
    try:
        packed = socket.inet_pton(socket.AF_INET6, host.partition("%")[0])
    except OSError:
        return host
    if packed[:12] == _V4_MAPPED:
        return socket.inet_ntop(socket.AF_INET, packed[12:])
    return socket.inet_ntop(socket.AF_INET6, packed[:8] + bytes(8)) + "/64"


class Tally:
    """Counts per client, and a client with the highest count, in O(1) for a change
    of one: clients are kept by count, and the highest count moves by at most one."""

    def __init__(self) -> None:
        self.count: dict[str, int] = {}
        self._by_count: dict[int, dict[str, None]] = {}
        self.top = 0

    def add(self, key: str, delta: int) -> None:
        """``delta`` is 1 or -1."""
        before = self.count.get(key, 0)
        after = before + delta
        if before:
            same = self._by_count[before]
            del same[key]
            if not same:
                del self._by_count[before]
                if before == self.top and delta < 0:
                    self.top = after
        if after:
            self.count[key] = after
            self._by_count.setdefault(after, {})[key] = None
            self.top = max(self.top, after)
        else:
            del self.count[key]

    def most(self) -> str | None:
        """A client with the highest count (the first to reach it), None when empty."""
        if not self.top:
            return None
        return next(iter(self._by_count[self.top]))

    def evens_out(self, newcomer: str, holder: str) -> bool:
        """Whether ``newcomer`` taking one of ``holder``'s places leaves it holding no
        more than ``holder`` (the rule of a fair share under pressure: an exchange that
        only swaps who holds more is none)."""
        return self.count.get(newcomer, 0) + 1 < self.count.get(holder, 0)


class _Lane:
    """The sockets of one lane of a :class:`HandshakeGate` (strangers, or known clients)
    per client (of the known lane: per station, :meth:`HandshakeGate.lane_of`): those it
    holds (slots and queued), its queued ones (oldest first) and how many of those; and
    the lane's queue, oldest first."""

    __slots__ = ("held", "queued_by", "queued_of", "waiting")

    def __init__(self) -> None:
        self.waiting: collections.OrderedDict[_OnFirstByte, None] = collections.OrderedDict()
        self.held = Tally()
        self.queued_of: dict[str, collections.OrderedDict[_OnFirstByte, None]] = {}
        self.queued_by = Tally()

    @property
    def queued(self) -> int:
        return len(self.waiting)

    def enqueue(self, waiter: _OnFirstByte) -> None:
        key = waiter.key
        self.waiting[waiter] = None
        self.queued_of.setdefault(key, collections.OrderedDict())[waiter] = None
        self.queued_by.add(key, 1)
        self.held.add(key, 1)

    def unqueue(self, waiter: _OnFirstByte) -> None:
        """Out of the queue; it keeps its place in ``held`` (queued -> slot, or gone:
        then the caller takes it out)."""
        key = waiter.key
        del self.waiting[waiter]
        mine = self.queued_of[key]
        del mine[waiter]
        if not mine:
            del self.queued_of[key]
        self.queued_by.add(key, -1)

    def most_queued(self) -> str | None:
        """The client holding the most with a queued socket: the one holding the most
        of all, or, when that one is all in handshake slots, the one with the most
        queued sockets."""
        victim = self.held.most()
        if victim is None or victim not in self.queued_of:
            victim = self.queued_by.most()
        return victim

    def give_way(self, waiter: _OnFirstByte) -> None:
        """Close a queued socket for a newcomer's sake."""
        self.unqueue(waiter)
        self.held.add(waiter.key, -1)
        waiter.evict()


class HandshakeGate:
    """Connections of one listener that have not completed their opening handshake,
    and those queued for a turn.

    Under pressure, shares are fair per client (an IPv4 address, an IPv6 /64): when
    every slot and the whole queue are taken, a socket from a client that holds fewer
    of them than another would after taking a place takes the place of that client's
    newest queued socket, which is closed. Only queued sockets give way: a slot's
    handshake is under way or its peer had the first turn, and the socket that gets a
    freed slot is the queue's oldest, not the newcomer. While there is room nobody is
    evicted, so a fleet behind one NAT address may take the whole gate.

    With ``known`` (the clients registered stations logged in from:
    :class:`csms.service.known_clients.KnownClients`), a socket from a known client is in
    a lane of its own: beyond ``limit`` it may take one of ``reserve`` more slots, which
    strangers never take (a stranger gets a slot only while fewer than ``limit`` are
    taken); queued, it gets the next free slot before any stranger; with the queue full
    it takes the place of a stranger's queued socket (the client holding the most
    strangers' places, else the newest). A stranger never takes a place of the known lane.

    The lane is shared per station (the one that logged in from the client last), each
    holding at most ``share`` of its places (slots and queued, a quarter of the reserve,
    at least 1), fairly as above: any station with a password is known from where it
    logs in, a hostile one too (from up to four clients). Its sockets beyond its share are
    a stranger's, its client's like any other: they never lock out a station it does not
    know (no password, a new address), which takes their places as it would a stranger's.
    """

    def __init__(self, listener: str, limit: int, metrics: Metrics,
                 queue_limit: int = 0,
                 known: Callable[[str], str | None] | None = None) -> None:
        self.listener = listener
        self.limit = limit
        self.queue_limit = queue_limit
        # the station a client is known from (KnownClients.station_of), None: a stranger
        self.known = known
        # slots beyond the limit only known clients take, and a station's places in the lane
        self.reserve = max(1, limit // 4) if known is not None else 0
        self.share = max(1, self.reserve // 4)
        self.pending = 0
        self.peak = 0
        self.refused = 0
        self.evicted = 0
        # accepted sockets that have not sent a byte yet (closed when the server stops)
        self.silent: set[asyncio.Transport] = set()
        # accepted sockets waiting for a turn (_OnFirstByte.admitted), per lane: strangers'
        # (False) and known clients' (True)
        self.lanes = {False: _Lane(), True: _Lane()}
        self.metrics = metrics
        metrics.handshakes_pending.labels(listener).set_function(lambda: self.pending)

    @property
    def queued(self) -> int:
        return self.lanes[False].queued + self.lanes[True].queued

    def lane_of(self, source: str) -> tuple[bool, str]:
        """The lane a socket from ``source`` arriving now is in, and what it counts under
        there: the known lane and the station it is known from, while that station holds
        fewer than ``share`` places of the lane; else the strangers' and the client."""
        station = self.known(source) if self.known is not None else None
        if station is not None and self.lanes[True].held.count.get(station, 0) < self.share:
            return True, station
        return False, source

    def admit(self, source: str, known: bool = False) -> bool:
        """Take a handshake slot now, if one is free (the reserve too for a known
        client) and nobody of the lane, or before it, waits for one. ``source``: what the
        socket counts under in its lane (:meth:`lane_of`)."""
        if known:
            if self.pending >= self.limit + self.reserve or self.lanes[True].waiting:
                return False
        elif self.pending >= self.limit or self.queued:
            return False
        self._take_slot()
        self.lanes[known].held.add(source, 1)
        return True

    def _take_slot(self) -> None:
        if self.pending >= self.limit:
            self.metrics.handshakes_reserved.labels(self.listener).inc()
        self.pending += 1
        self.peak = max(self.peak, self.pending)

    def can_queue(self) -> bool:
        return self.queued < self.queue_limit

    def enqueue(self, waiter: _OnFirstByte) -> None:
        self.lanes[waiter.known].enqueue(waiter)
        self.metrics.handshakes_queued.labels(self.listener).inc()

    def leave(self, waiter: _OnFirstByte) -> None:
        """A queued socket closed before its turn."""
        lane = self.lanes[waiter.known]
        if waiter in lane.waiting:
            lane.unqueue(waiter)
            lane.held.add(waiter.key, -1)

    def make_room(self, source: str, known: bool = False) -> bool:
        """The gate and its queue are full and a socket counted under ``source`` in its
        lane (:meth:`lane_of`) arrived: close
        the newest queued socket of the client of its lane holding the most, if
        ``source`` would still hold fewer after taking its place; a known client's
        socket takes a stranger's place first. True when a place was freed."""
        strangers = self.lanes[False]
        if known and strangers.waiting:
            if strangers.held.top > 1:  # the stranger holding the most gives way
                victim = strangers.most_queued()
                assert victim is not None
                waiter = next(reversed(strangers.queued_of[victim]))
            else:  # an address per socket: the newest queued one
                waiter = next(reversed(strangers.waiting))
            strangers.give_way(waiter)
            self._evicted("handshake_evicted_for_known", waiter.key, strangers, source)
            return True
        lane = self.lanes[known]
        victim = lane.most_queued()
        if victim is None or not lane.held.evens_out(source, victim):
            return False
        waiter = next(reversed(lane.queued_of[victim]))
        lane.give_way(waiter)
        self._evicted("handshake_evicted", victim, lane, source)
        return True

    def _evicted(self, reason: str, victim: str, lane: _Lane, source: str) -> None:
        self.evicted += 1
        self.metrics.connections_cut.labels(reason).inc()
        if worth_logging(self.evicted):
            log.warning("! %s: handshake slots and queue full, a queued connection from %s"
                        " (holding %d) closed for one from %s%s (%d closed so far)",
                        self.listener, victim, lane.held.count.get(victim, 0) + 1,
                        source or "?", " (known)" if reason.endswith("known") else "",
                        self.evicted)

    def refuse(self) -> None:
        self.refused += 1
        self.metrics.connections_cut.labels("handshake_limit").inc()
        if worth_logging(self.refused):
            log.warning("! %s: %d handshakes in progress and %d queued, connection dropped"
                        " (%d dropped so far)", self.listener, self.pending,
                        self.queued, self.refused)

    def release(self, source: str, known: bool = False) -> None:
        self.pending -= 1
        self.lanes[known].held.add(source, -1)
        # a waiter that closed has left the queue (_OnFirstByte.connection_lost)
        for lane, limit in ((self.lanes[True], self.limit + self.reserve),
                            (self.lanes[False], self.limit)):
            while lane.waiting and self.pending < limit:
                waiter = next(iter(lane.waiting))
                lane.unqueue(waiter)  # it keeps its place in held: queued -> slot
                self._take_slot()
                waiter.admitted(self)

    def close(self) -> None:
        """Drop the sockets still waiting for their first byte or for a turn."""
        for lane in self.lanes.values():
            for waiter in list(lane.waiting):
                self.leave(waiter)
                waiter.evict()
        for transport in list(self.silent):
            transport.abort()
        self.silent.clear()


class LargeFrames:
    """The bytes all connections of the node hold in messages over ``above`` bytes, at
    most ``limit`` (see the module docstring). A connection takes what a large message
    holds as its bytes arrive and gives it back once its loop is done with the message
    or the connection is gone; one that cannot take is closed (1013).

    Under pressure, a connection whose login proved a secret (``proven``: its password,
    its certificate; :meth:`GuardedConnection.prove`) comes first: its bytes make the
    messages still arriving of connections that proved nothing give way, the client
    holding the most of theirs first, however little each holds. Then shares are fair
    per client (:func:`source_of`) among the connections of its kind, as in the
    :class:`HandshakeGate`: when bytes from a client do not fit, the client holding the
    most gives way if it holds more than the newcomer would after taking them. Its
    connection with the most bytes in a message still arriving is closed (1013) and
    those bytes are given back at once, until the newcomer's fit. A proven connection
    never gives way to one that proved nothing. Only a message still arriving gives way
    (what an attacker can hold for as long as it likes); a complete one is the loop's
    and is given back once handled. Who gives way is planned first: nobody does unless
    the newcomer's bytes then fit. While the budget has room nobody gives way, so a
    fleet behind one NAT address may take all of it."""

    def __init__(self, limit: int, metrics: Metrics, above: int = LARGE_FRAME_BYTES) -> None:
        self.limit = limit
        self.above = above
        self.held = 0
        self.peak = 0
        self.refused = 0
        self.evicted = 0
        # per kind of connection (True: proven) and client: the bytes it holds, and its
        # connections with bytes in a message still arriving
        # (GuardedConnection.arriving_bytes); at most limit / above of either
        self.of: dict[bool, dict[str, int]] = {False: {}, True: {}}
        self._arriving: dict[bool, dict[str, dict[GuardedConnection, None]]] = {
            False: {}, True: {}}
        self.metrics = metrics

    def take(self, conn: GuardedConnection, n: int) -> bool:
        if self.held + n > self.limit and not self._make_room(conn, n):
            return False
        self.held += n
        of = self.of[conn.proven]
        of[conn.source] = of.get(conn.source, 0) + n
        self.peak = max(self.peak, self.held)
        return True

    def give(self, conn: GuardedConnection, n: int) -> None:
        if not n:
            return
        self.held -= n
        self._count(conn.proven, conn.source, -n)

    def _count(self, proven: bool, source: str, delta: int) -> None:
        of = self.of[proven]
        left = of.get(source, 0) + delta
        if left:
            of[source] = left
        else:
            del of[source]

    def arriving(self, conn: GuardedConnection, yes: bool) -> None:
        """Whether ``conn`` holds bytes in a message still arriving (it may give way)."""
        source = conn.source
        by_source = self._arriving[conn.proven]
        mine = by_source.get(source)
        if yes:
            if mine is None:
                mine = by_source[source] = {}
            mine[conn] = None
        elif mine is not None and conn in mine:
            del mine[conn]
            if not mine:
                del by_source[source]

    def prove(self, conn: GuardedConnection, n: int) -> None:
        """``conn`` was proven just now (:meth:`GuardedConnection.prove`) while holding
        ``n`` bytes (what a peer sent right after its request): they, and its place among
        connections with a message arriving, move to the proven."""
        source = conn.source
        if n:
            self._count(False, source, -n)
            self._count(True, source, n)
        mine = self._arriving[False].get(source)
        if mine is not None and conn in mine:
            del mine[conn]
            if not mine:
                del self._arriving[False][source]
            self.arriving(conn, True)

    def _make_room(self, conn: GuardedConnection, n: int) -> bool:
        """``n`` bytes from ``conn`` do not fit: close connections with a message still
        arriving until they do. For a proven ``conn``, those of connections that proved
        nothing, the client holding the most first; then those of clients of its kind
        holding more than its client would after taking them, the one holding the most
        first. True when they fit; when they would not fit all the same, nobody gives way
        (a message closed for nothing). A scan of the clients with a message arriving (at
        most limit / above), on this path only."""
        source, proven = conn.source, conn.proven
        need = self.held + n - self.limit
        after = self.of[proven].get(source, 0) + n
        # who would give way, planned before anyone does
        plan: list[tuple[GuardedConnection, str, int, str]] = []
        if proven:
            need = self._plan(False, 0, need, plan, "large_frames_evicted_for_proven")
        if need > 0:
            need = self._plan(proven, after, need, plan, "large_frames_evicted")
        if need > 0:
            return False
        for victim_conn, victim, most, reason in plan:
            freed = victim_conn.give_way(self, reason)
            self.evicted += 1
            self.metrics.connections_cut.labels(reason).inc()
            if worth_logging(self.evicted):
                log.warning("! %s: closed (1013), its %d bytes arriving given back: large"
                            " frames full, %s holds %d bytes of them and %s %d%s (%d closed"
                            " so far)", victim_conn._peer(), freed, victim or "?", most,
                            source or "?", after - n,
                            " with a login that proved a secret" if victim_conn.proven
                            != proven else "", self.evicted)
        return True

    def _plan(self, proven: bool, above: int, need: int,
              plan: list[tuple[GuardedConnection, str, int, str]], reason: str) -> int:
        """Add to ``plan`` the connections of clients of a kind (``proven``) holding more
        than ``above`` that give way, the client holding the most first, its connection
        with the most bytes arriving first, until ``need`` bytes are freed; what is still
        needed then."""
        of = self.of[proven]
        arriving = self._arriving[proven]
        held = {other: of.get(other, 0) for other in arriving}
        left = {other: sorted(conns, key=GuardedConnection.arriving_bytes, reverse=True)
                for other, conns in arriving.items()}
        while need > 0:
            victim: str | None = None
            most = above
            for other, holds in held.items():
                if holds > most:
                    victim, most = other, holds
            if victim is None:
                break
            conn = left[victim].pop(0)
            plan.append((conn, victim, most, reason))
            need -= conn.arriving_bytes()
            held[victim] -= conn.arriving_bytes()
            if not left[victim]:
                del held[victim]
        return need

    def refuse(self, peer: str, size: int) -> None:
        self.refused += 1
        self.metrics.connections_cut.labels("large_frames").inc()
        if worth_logging(self.refused):
            log.warning("! %s: a message of %d bytes and more does not fit in the %d bytes"
                        " of large frames the node holds (%d held); closing (1013), %d so"
                        " far", peer, size, self.limit, self.held, self.refused)


class DroppedConnection(asyncio.Protocol):
    """The protocol of a connection over a listener's limit: closed on arrival."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport: duck-typed
        cast(asyncio.Transport, transport).abort()


class GuardedConnection(ServerConnection):
    """A websockets server connection whose buffers and waits are bounded."""

    def __init__(
        self, protocol: ServerProtocol, server: Server, *, gate: HandshakeGate | None,
        metrics: Metrics, write_buffer_limit: int, drain_timeout: float | None,
        on_gone: Callable[[float | None], None] | None = None, source: str = "",
        large: LargeFrames | None = None, known: bool = False, key: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(protocol, server, **kwargs)
        # the node's budget of bytes in large messages, and what this connection holds of
        # it: the frame still arriving (in the protocol's reader), the complete frames of
        # the message being received, the complete messages not handed to the loop yet
        # ((number of the message, bytes), oldest first) and the one handed over
        self._large = large
        self._partial = 0
        self._message = 0
        self._message_size = 0
        self._queued_large: list[tuple[int, int]] | None = None  # made at the first
        self._handed = 0
        self._completed = 0  # messages received (counted while large frames are held)
        self._returned = 0  # messages handed to the loop
        # the client it counts under in the gate (source_of), the gate's lane it is in (a
        # client registered stations logged in from) and what it counts under there (its
        # client, its station's in the known lane: HandshakeGate.lane_of)
        self.source = source
        self.known = known
        self.key = source if key is None else key
        # the station whose secret (password, certificate) the login proved (prove()):
        # it comes first in the large frames' budget, and its client is known (csms.server)
        self.proved: str | None = None
        # when the WebSocket opened (time.monotonic()), None before; handed to on_gone
        self.opened_at: float | None = None
        self._gate: HandshakeGate | None = gate
        self._on_gone = on_gone
        self._metrics = metrics
        self.write_buffer_limit = write_buffer_limit
        self.drain_timeout = drain_timeout
        self._tokens = CONTROL_FRAME_BURST
        self._refilled = self.loop.time()
        # when something last came from the peer (the keepalive pings only after silence)
        self.heard = self._refilled
        # why this side cut the connection (a metric label), None while all is well
        self.cut_reason: str | None = None
        # the keepalive's next look at the peer (start_keepalive), None when not armed
        self._keepalive_timer: asyncio.TimerHandle | None = None
        # connection_made() ran: websockets' handler task uses the protocol until
        # connection_lost() (see unlink)
        self._made = False
        # the longest payload _whole_text_frame() takes: websockets' own limits
        limits = [n for n in (self.protocol.max_message_size,
                              getattr(self.protocol, "max_fragment_size", None))
                  if n is not None]
        self._whole_max = min([65535, *limits])

    # -- handshake accounting -------------------------------------------------------
    def admitted(self, gate: HandshakeGate) -> None:
        """A queued connection got its handshake slot."""
        self._gate = gate

    def websocket_open(self) -> None:
        """The WebSocket handshake succeeded. Its headers have served (credentials,
        subprotocol, compression): an open connection keeps none of them (~4 KiB a
        connection), only the request's path and the response's status."""
        self.opened_at = time.monotonic()
        self.handshake_finished()
        if self.request is not None:
            self.request.headers = Headers()
        if self.response is not None:
            self.response.headers = Headers()

    @property
    def proven(self) -> bool:
        """Its login proved a secret (:meth:`prove`)."""
        return self.proved is not None

    def prove(self, station: str) -> None:
        """Its login proved ``station``'s secret (its password, its certificate:
        :mod:`csms.server`): under pressure its large messages come before those of
        connections that proved nothing (:class:`LargeFrames`). What it holds already
        (frames sent right after its request, read while the login was checked) moves
        with it."""
        if self.proven:
            return
        self.proved = station
        if self._large is not None:
            self._large.prove(self, self._large_held())

    def handshake_finished(self) -> None:
        """Leave the listener's count of pending handshakes (once)."""
        gate, self._gate = self._gate, None
        if gate is not None:
            gate.release(self.key, self.known)

    def gone(self) -> None:
        """The socket is closed (called once, whether or not the handshake finished)."""
        self.handshake_finished()
        on_gone, self._on_gone = self._on_gone, None
        if on_gone is not None:
            on_gone(self.opened_at)
        if not self._made:
            unlink(self.protocol)  # it never got the socket: nothing else will use it

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._made = True
        super().connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self._release_large()
        self.gone()
        timer, self._keepalive_timer = self._keepalive_timer, None
        if timer is not None:
            timer.cancel()
        super().connection_lost(exc)
        unlink(self.protocol)
        drop_read_callback(self.transport)

    # -- what the peer makes us write ------------------------------------------------
    def data_received(self, data: bytes) -> None:
        self.heard = self.loop.time()
        if self._whole_text_frame(data):
            return
        before = self.transport.get_write_buffer_size()
        super().data_received(data)
        if self.cut_reason is not None:
            return
        after = self.transport.get_write_buffer_size()
        # Only pongs and close frames are written here (answers to what just came
        # in). Growing a buffer the peer does not read is what a ping flood without
        # reading looks like; our own messages wait in drain() instead.
        if after > before and after > self.write_buffer_limit:
            self._cut("write_buffer", f"{after} bytes unread by the peer")
            return
        if self._large is not None:
            self._hold_partial(self._large)

    def _whole_text_frame(self, data: bytes) -> bool:
        """One read that is exactly one whole masked text frame (FIN, no RSV bit, a 7- or
        16-bit length within websockets' limits: what a station waiting for each answer
        sends), on an open connection whose parser waits between two frames: its message
        is handed on as websockets' parser would hand it, without the parser (a reader
        buffer, generators, a struct, an enum and a check a frame). True when handled.
        Anything else (a frame split over reads, two frames in one read, control frames,
        a bad header, a limit exceeded, an extension negotiated) goes to websockets'
        parser, which answers it as ever (RFC 6455 §5.2, §7.4.1: 1002, 1009). The text's
        UTF-8 is checked where websockets checks it, as the message is decoded (1007)."""
        n = len(data)
        if n < 6 or data[0] != 0x81:
            return False
        length = data[1] ^ 0x80  # 128 and above when the mask bit is not set
        if length < 126:
            start = 6
        elif length == 126 and n >= 8:
            length, start = (data[2] << 8) | data[3], 8
        else:
            return False
        protocol = self.protocol
        if (n != start + length or length > self._whole_max
                or protocol.state is not State.OPEN or protocol.extensions
                or protocol.current_size is not None or protocol.reader.buffer
                or protocol.debug or self.cut_reason is not None):
            return False
        waiting: Any = protocol.parser  # the server's parser yields from the frames'
        while (inner := waiting.gi_yieldfrom) is not None:
            waiting = inner
        if waiting.gi_code is not _BETWEEN_FRAMES:
            return False
        self.process_event(Frame(Opcode.TEXT, apply_mask(data[start:], data[start - 4:start])))
        return True

    # -- large messages within the node's budget ----------------------------------------
    def _hold_partial(self, large: LargeFrames) -> None:
        """The frame still arriving (its bytes in the protocol's reader) holds its bytes
        of the budget once it is over ``large.above``."""
        buffered = len(self.protocol.reader.buffer)
        charge = buffered if buffered > large.above else 0
        delta = charge - self._partial
        if not delta:
            return
        if delta > 0 and not large.take(self, delta):
            self._refuse_large(large, buffered)
            return
        if delta < 0:
            large.give(self, -delta)
        was = self.arriving_bytes()
        self._partial = charge
        if bool(was) != bool(charge or self._message):
            large.arriving(self, not was)

    def _hold_frame(self, large: LargeFrames, frame: Frame) -> bool:
        """A complete data frame: its message holds its bytes of the budget once over
        ``large.above`` (the bytes the frame held while arriving are now the frame's).
        False when they do not fit (the connection is being closed)."""
        was = self.arriving_bytes()
        if self._partial:
            large.give(self, self._partial)
            self._partial = 0
        size = self._message_size + len(frame.data)
        charge = size if size > large.above else 0
        delta = charge - self._message
        if delta > 0 and not large.take(self, delta):
            self._refuse_large(large, size)
            return False
        self._message, self._message_size = charge, size
        if frame.fin:
            self._completed += 1
            if charge:
                if self._queued_large is None:
                    self._queued_large = []
                self._queued_large.append((self._completed, charge))
            self._message = self._message_size = 0
        if bool(was) != bool(self._message):  # a message over large.above began or ended
            large.arriving(self, not was)
        return True

    def arriving_bytes(self) -> int:
        """What this connection holds of the budget in a message still arriving."""
        return self._partial + self._message

    def _refuse_large(self, large: LargeFrames, size: int) -> None:
        large.refuse(self._peer(), size)
        self._close_for_policy("large_frames", "the node holds too many large frames",
                               CloseCode.TRY_AGAIN_LATER, count=False)
        # the protocol discarded the frame still arriving; nothing more arrives
        large.give(self, self._partial)
        self._partial = 0
        large.arriving(self, False)

    def give_way(self, large: LargeFrames, reason: str = "large_frames_evicted") -> int:
        """Closed (1013) for a client holding less, or for a proven connection
        (:meth:`LargeFrames.take`; ``reason`` tells which): what it holds in a message
        still arriving is given back now (returned). The socket is dropped at once (after
        the close frame, if the peer takes it), so the frames of that message are freed
        with the connection; the rest is given back by connection_lost() as ever."""
        freed = self.arriving_bytes()
        large.give(self, freed)
        large.arriving(self, False)
        self._partial = self._message = 0
        self._close_for_policy(reason, "another client needs large frames",
                               CloseCode.TRY_AGAIN_LATER, count=False)
        self.transport.abort()
        return freed

    def _large_held(self) -> int:
        """All this connection holds of the budget."""
        return (self._partial + self._message + self._handed
                + sum(n for _, n in self._queued_large or ()))

    def _release_large(self) -> None:
        large, self._large = self._large, None
        if large is not None:
            large.give(self, self._large_held())
            if self.arriving_bytes():
                large.arriving(self, False)
            self._partial = self._message = self._handed = 0
            self._queued_large = None

    async def recv(self, decode: bool | None = None) -> Any:
        """The next message; the large message handed over before it gives its bytes back
        (the connection's loop reads the next one only once done with it)."""
        large = self._large
        if self._handed and large is not None:
            large.give(self, self._handed)
            self._handed = 0
        message = await super().recv(decode)
        large = self._large  # gone meanwhile: all given back
        if large is not None:
            self._returned += 1
            queued = self._queued_large
            if queued and queued[0][0] == self._returned:
                self._handed = queued.pop(0)[1]
        return message

    def process_event(self, event: Any) -> None:
        large = self._large
        if (large is not None and isinstance(event, Frame) and event.opcode in _DATA_FRAMES
                and (self.cut_reason is not None or not self._hold_frame(large, event))):
            return  # being closed: nothing more reaches the loop
        if isinstance(event, Frame) and event.opcode in (Opcode.PING, Opcode.PONG):
            now = self.loop.time()
            self._tokens = min(CONTROL_FRAME_BURST,
                               self._tokens + (now - self._refilled) * CONTROL_FRAME_RATE)
            self._refilled = now
            self._tokens -= 1
            if self._tokens < 0 and self.cut_reason is None:
                self._close_for_policy("ping_flood", "too many control frames")
                return
        super().process_event(event)

    def start_keepalive(self) -> None:
        """Arm the keepalive with a timer. websockets runs it as a task that sleeps
        between pings: a task and its frames on every idle connection (~1.3 KiB); here
        a task exists only while a ping waits for its pong."""
        if self.ping_interval is not None:
            self._keepalive_timer = self.loop.call_at(self.heard + self.ping_interval,
                                                      self._keepalive_due)

    def _keepalive_due(self) -> None:
        self._keepalive_timer = None
        if self.protocol.state is not State.OPEN:
            return  # closing: nothing more to ping, connection_lost() follows
        assert self.ping_interval is not None
        due = self.heard + self.ping_interval
        if due > self.loop.time():
            self._keepalive_timer = self.loop.call_at(due, self._keepalive_due)
        else:
            # connection_lost() cancels keepalive_task, as it does websockets' own
            self.keepalive_task = self.loop.create_task(self.keepalive())

    async def keepalive(self) -> None:
        """One ping to a peer silent for ``ping_interval``; the timer is armed again
        once its pong is in.

        Whatever arrives from the peer (a message, its own ping, a pong) shows that
        the connection is alive, as an answered ping would. A peer that sends but
        never reads is cut by the drain deadline, not by this."""
        try:
            pong_received = await self.ping()
            if self.ping_timeout is not None:
                try:
                    async with asyncio.timeout(self.ping_timeout):
                        await pong_received
                except TimeoutError:
                    async with self.send_context():
                        self.protocol.fail(CloseCode.INTERNAL_ERROR,
                                           "keepalive ping timeout")
                    # send_context() waits for connection_lost(), which cancels
                    # this task: nothing runs past it
                    raise AssertionError("keepalive outlived its connection") from None
            else:
                self.heard = self.loop.time()
        except Exception:
            log.error("! %s: keepalive failed", self._peer(), exc_info=True)
            return
        self.keepalive_task = None
        self.start_keepalive()

    # -- what we write ------------------------------------------------------------------
    async def send(self, message: DataLike | Iterable[DataLike] | AsyncIterable[DataLike],
                   *, text: bool | None = None) -> None:
        """A message as websockets sends it, with the path of every answer and CALL made
        short: a ``str`` on an open connection, nothing fragmented in progress and no
        extension negotiated is written as one unmasked text frame (RFC 6455 §5.2) at
        once, then drained. websockets' own path (an async context manager, a
        ``Frame`` and its serialization, the protocol's write list) cost 3.7 us a
        message, this one 0.2 us. Anything else takes websockets' path, and an error
        ends as it does there: the connection dropped, ``ConnectionClosed`` raised."""
        protocol = self.protocol
        if (type(message) is not str or text is not None or self.send_in_progress is not None
                or protocol.state is not State.OPEN or protocol.extensions
                or protocol.expect_continuation_frame or protocol.writes):
            await super().send(message, text=text)
            return
        data = message.encode()
        n = len(data)
        if n < 126:
            header = bytes((0x81, n))
        elif n < 65536:
            header = _HEADER_16.pack(0x81, 126, n)
        else:
            header = _HEADER_64.pack(0x81, 127, n)
        try:
            self.transport.write(header + data)
            await self.drain()
        except Exception as exc:
            # as websockets' send_context(): the connection is dropped, the sender
            # learns that it is closed
            self.set_connection_exc(exc)
            self.transport.abort()
            await asyncio.shield(self.connection_lost_waiter)
            raise self.close_exc from exc

    async def drain(self) -> None:
        if not self.paused and not self.transport.is_closing():
            # Below the high-water mark: websockets' drain would return at once too,
            # so no deadline (a timer per message sent) is armed for it.
            return
        if self.drain_timeout is None:
            await super().drain()
            return
        try:
            async with asyncio.timeout(self.drain_timeout):
                await super().drain()
        except TimeoutError:
            # send_context() turns this into ConnectionClosed for the sender.
            self._cut("write_timeout", f"peer read nothing for {self.drain_timeout:g} s")
            raise

    # -- closing -----------------------------------------------------------------------
    def _cut(self, reason: str, detail: str) -> None:
        """Drop the connection now: the peer does not read, a close frame would wait."""
        self.cut_reason = reason
        self._metrics.connections_cut.labels(reason).inc()
        log.warning("! %s: %s, connection closed", self._peer(), detail)
        self.transport.abort()

    def _close_for_policy(self, reason: str, detail: str,
                          code: CloseCode = CloseCode.POLICY_VIOLATION, *,
                          count: bool = True) -> None:
        """Close with ``code``, 1008 by default (RFC 6455 §7.4.1): the peer reads, so it
        can learn why. ``count``: counted and logged here (else by the caller)."""
        self.cut_reason = reason
        if count:
            self._metrics.connections_cut.labels(reason).inc()
            log.warning("! %s: %s, closing (%d)", self._peer(), detail, code)
        if self.protocol.state is State.OPEN:
            self.protocol.fail(code, detail)
            with contextlib.suppress(Exception):
                self.send_data()
        # Nothing more of what it sends is parsed (a flood costs CPU); it gets a
        # moment to read the close frame, then the socket is closed.
        self.transport.pause_reading()
        self.loop.call_later(min(self.close_timeout or 1.0, 1.0), self.transport.abort)

    def _peer(self) -> str:
        request = self.request
        where = self.remote_address
        return f"{request.path if request is not None else '?'} from {where}"


class _OnFirstByte(asyncio.Protocol):
    """An accepted socket before its first byte: nothing but this object allocated.

    When the socket is made, the gate gives it a handshake slot, a place in the
    queue, or neither (it is closed at once, nothing more allocated for it). Until
    a peer sends something, its connection gets no websockets handler task,
    futures or timers (ws://) and no TLS state (wss://: OpenSSL's ``SSL_new``
    alone costs ~35 KB). They are created when the first bytes arrive, and fed
    with them; a socket that stays silent is closed after ``timeout``.

    A socket accepted while every handshake slot is taken is *queued* until
    :meth:`admitted` (the gate calls it when a slot frees): its first read is kept
    and reading pauses until then. Its ``timeout`` runs from the accept all the same.
    """

    def __init__(self, gate: HandshakeGate, protocol: ServerProtocol,
                 connection: Callable[[bool, str, bool, str], GuardedConnection],
                 tls: Callable[[GuardedConnection, float], LeanSSLProtocol] | None,
                 timeout: float) -> None:
        self._gate = gate
        # websockets' factory closure looks for it
        self.protocol = protocol
        self._connection: Callable[[bool, str, bool, str], GuardedConnection] | None = \
            connection
        self._app: GuardedConnection | None = None
        self._tls = tls
        self._timeout = timeout
        self.source = ""
        self.known = False  # in the lane of clients registered stations logged in from
        self.key = ""  # what it counts under in its lane (HandshakeGate.lane_of)
        self._transport: asyncio.Transport | None = None
        self._deadline: asyncio.TimerHandle | None = None
        self._queued = False
        # what a queued peer sent while it waited (one read: reading pauses then)
        self._early = b""
        self._paused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport: duck-typed
        transport = cast(asyncio.Transport, transport)
        gate, connection, self._connection = self._gate, self._connection, None
        assert connection is not None
        self._transport = transport
        self.source = source = source_of(transport.get_extra_info("peername"))
        self.known, self.key = known, key = gate.lane_of(source)
        if gate.admit(key, known):
            self._queued = False
        elif gate.can_queue() or gate.make_room(key, known):
            self._queued = True
        else:
            gate.refuse()
            transport.abort()
            return
        self._app = connection(self._queued, source, known, key)
        loop = asyncio.get_running_loop()
        self._deadline = loop.call_at(loop.time() + self._timeout, transport.abort)
        gate.silent.add(transport)
        if self._queued:
            # Read on while it waits: a peer that gives up (EOF, reset) leaves the
            # queue at once. Its first bytes are kept and reading pauses then.
            gate.enqueue(self)

    def evict(self) -> None:
        """Closed while queued (the gate has taken it out of its queue)."""
        self._queued = False
        if self._transport is not None:
            self._transport.abort()

    def admitted(self, gate: HandshakeGate) -> None:
        """A handshake slot is ours: read what the peer sent meanwhile."""
        self._queued = False
        assert self._app is not None
        self._app.admitted(gate)
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        early, self._early = self._early, b""
        if early:
            self.data_received(early)
        else:
            self._paused = False
            transport.resume_reading()

    def data_received(self, data: bytes) -> None:
        transport, deadline, app = self._transport, self._deadline, self._app
        assert transport is not None and deadline is not None and app is not None
        if self._queued:
            self._early += data
            transport.pause_reading()
            self._paused = True
            return
        deadline.cancel()
        self._gate.silent.discard(transport)
        protocol: asyncio.Protocol | asyncio.BufferedProtocol
        if self._tls is None:
            protocol = app
        else:
            # the TLS handshake gets what is left of the handshake timeout
            remaining = max(0.1, deadline.when() - asyncio.get_running_loop().time())
            protocol = self._tls(app, remaining)
        protocol.connection_made(transport)
        transport.set_protocol(protocol)
        if isinstance(protocol, asyncio.BufferedProtocol):
            view = memoryview(data)
            while view and not transport.is_closing():
                buf = protocol.get_buffer(len(view))
                n = min(len(buf), len(view))
                buf[:n] = view[:n]
                protocol.buffer_updated(n)
                view = view[n:]
        else:
            protocol.data_received(data)
        if self._paused and not transport.is_closing():
            self._paused = False
            transport.resume_reading()  # paused while it waited for a turn

    def eof_received(self) -> bool | None:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._early = b""
        if self._queued:  # leaves the queue (its place counts against the queue's size)
            self._queued = False
            self._gate.leave(self)
        deadline, self._deadline = self._deadline, None
        if deadline is not None:
            deadline.cancel()
        transport, self._transport = self._transport, None
        if transport is not None:
            self._gate.silent.discard(transport)
            drop_read_callback(transport)
        app, self._app = self._app, None
        if app is not None:
            app.gone()
        else:  # dropped on arrival: no connection was made for it
            unlink(self.protocol)


class _TLSTransport(sslproto._SSLProtocolTransport):
    """asyncio's TLS transport, whose ``close()`` does nothing once it is closed, as any
    other asyncio transport's.

    asyncio's (CPython 3.11, 3.12) drops its TLS layer when closed a second time, so that
    every later call (``pause_reading``, ``get_extra_info``, ``write``; ``abort`` too in
    the 3.11 releases before python/cpython#104474, 3.11.2 among them) raises
    AttributeError. It is closed already (aborted, or its socket gone) a loop step before
    its protocol's ``connection_lost``; a close in between (websockets sends its end of
    stream by closing a TLS transport: a connection giving way to large frames, a
    keepalive timing out) made the next call raise, within another connection's read
    (which dropped that connection) or at the end of the handler. Keeping the layer keeps
    nothing alive for longer: the layer lets go of the transport and the protocol in its
    ``connection_lost``."""

    def close(self) -> None:
        if not self._closed:
            super().close()


class SharedBufferSSLProtocol(sslproto.SSLProtocol):
    """asyncio's TLS layer (server side) without a read buffer of its own per connection:
    ``shared`` serves every connection of a listener. ``on_lost`` runs when the socket
    closes, whether or not the TLS handshake finished (one that failed or timed out
    never reaches the application protocol's ``connection_lost``). Its transport is a
    :class:`_TLSTransport`."""

    max_size = TLS_READ_SIZE
    _app_transport_created: bool  # asyncio's (not in typeshed)

    def __init__(self, loop: asyncio.AbstractEventLoop, app: asyncio.BaseProtocol,
                 context: ssl.SSLContext, shared: bytearray, *, handshake_timeout: float,
                 shutdown_timeout: float, on_lost: Callable[[], None] | None = None) -> None:
        # no waiter: nothing awaits the handshake but the application protocol
        super().__init__(loop, app, context, None,  # type: ignore[arg-type]
                         server_side=True,
                         ssl_handshake_timeout=handshake_timeout,  # type: ignore[arg-type]
                         ssl_shutdown_timeout=shutdown_timeout)
        # get_buffer() / buffer_updated() run back to back in the transport's read
        # callback, so one buffer serves every connection of the loop.
        self._ssl_buffer = shared
        self._ssl_buffer_view = memoryview(shared)
        self._on_lost = on_lost

    def _get_app_transport(self) -> sslproto._SSLProtocolTransport:
        # asyncio's, with our transport: made when the handshake completes (one made
        # earlier would warn of being unclosed after a failed handshake); None until
        # then, and after connection_lost() (typeshed has it never None)
        transport = cast("sslproto._SSLProtocolTransport | None", self._app_transport)
        if transport is None:
            if self._app_transport_created:
                raise RuntimeError("Creating _SSLProtocolTransport twice")
            transport = self._app_transport = _TLSTransport(self._loop, self)
            self._app_transport_created = True
        return transport

    def connection_lost(self, exc: BaseException | None) -> None:
        on_lost, self._on_lost = self._on_lost, None
        if on_lost is not None:
            on_lost()
        transport = self._transport
        super().connection_lost(exc)
        drop_read_callback(transport)
        # a failed TLS handshake: the error's traceback holds asyncio's frame that holds
        # the error (and this protocol, with OpenSSL's state for the socket)
        clear_frames(exc)


class LeanSSLProtocol(SharedBufferSSLProtocol):
    """The TLS layer of a WebSocket connection (see :class:`_OnFirstByte`)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, app: GuardedConnection,
                 context: ssl.SSLContext, shared: bytearray, *, handshake_timeout: float,
                 shutdown_timeout: float) -> None:
        # the connection leaves the pending count when its socket closes
        super().__init__(loop, app, context, shared, handshake_timeout=handshake_timeout,
                         shutdown_timeout=shutdown_timeout, on_lost=app.gone)


def unlink(protocol: ServerProtocol) -> None:
    """Break the reference cycles websockets' protocol object of a closed socket is in,
    so that it and what it holds are freed by reference counting.

    Its parser is a generator whose frame holds the protocol, the ``select_subprotocol``
    it was given is a method bound to it (whose closure holds the asyncio protocol
    websockets' factory returned, :class:`_OnFirstByte`), and why a request or a frame
    was not read (EOF in its middle, not HTTP) is an exception whose traceback holds
    the parser's frame. A cycle is freed only by a collection, and the collector's
    policy freezes what survives one (:mod:`csms.gcpolicy`): every socket that came
    and went left these in the frozen heap until the next thaw.

    Called once the socket is closed: nothing parses after connection_lost() (its
    ``receive_eof`` is the last step, later ones return at once), and a handshake
    still running learns that the socket closed and responds nothing (the default
    ``select_subprotocol`` would serve a late ``accept``).
    """
    vars(protocol).pop("select_subprotocol", None)
    protocol.parser.close()
    clear_frames(protocol.handshake_exc)
    clear_frames(protocol.parser_exc)


def clear_frames(exc: BaseException | None) -> None:
    """Clear the locals of the frames in the tracebacks of ``exc`` and of the exceptions
    it was raised from or during: an exception kept after its handler ran is in a cycle
    when one of its frames refers to it or to what holds it. The tracebacks still tell
    where it was raised."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        traceback.clear_frames(exc.__traceback__)
        exc = exc.__cause__ or exc.__context__


def drop_read_callback(transport: asyncio.BaseTransport | None) -> None:
    """Break the cycle a closed socket transport of asyncio is in (CPython 3.11).

    Its ``_read_ready_cb`` is a method bound to itself, kept after it closed, so the
    transport, its socket object and its extra info waited for a collection (frozen
    with the rest: :mod:`csms.gcpolicy`); CPython 3.12 drops it on close
    (python/cpython#100348). Called from its protocol's connection_lost(), when the
    transport reads no more; uvloop's transports have no such attribute."""
    if sys.version_info < (3, 12) and getattr(transport, "_read_ready_cb", None) is not None:
        cast(Any, transport)._read_ready_cb = None


def connection_factory(
    gate: HandshakeGate, metrics: Metrics, *, tls: ssl.SSLContext | None,
    handshake_timeout: float, close_timeout: float, write_buffer_limit: int,
    drain_timeout: float | None, on_gone: Callable[[float | None], None] | None = None,
    large: LargeFrames | None = None,
) -> Callable[..., asyncio.BaseProtocol]:
    """websockets' ``create_connection``: the asyncio protocol of an accepted socket."""
    shared = bytearray(TLS_READ_SIZE)

    start_tls: Callable[[GuardedConnection, float], LeanSSLProtocol] | None = None
    if tls is not None:
        context = tls

        def start(conn: GuardedConnection, timeout: float) -> LeanSSLProtocol:
            return LeanSSLProtocol(asyncio.get_running_loop(), conn, context, shared,
                                   handshake_timeout=timeout,
                                   shutdown_timeout=close_timeout or 1.0)

        start_tls = start

    def create(protocol: ServerProtocol, server: Server, **kwargs: Any) -> asyncio.BaseProtocol:
        def connection(queued: bool, source: str, known: bool, key: str) -> GuardedConnection:
            return GuardedConnection(protocol, server, gate=None if queued else gate,
                                     metrics=metrics, write_buffer_limit=write_buffer_limit,
                                     drain_timeout=drain_timeout, on_gone=on_gone,
                                     source=source, large=large, known=known, key=key,
                                     **kwargs)

        # the gate decides in connection_made(), where the peer's address is known
        return _OnFirstByte(gate, protocol, connection, start_tls, handshake_timeout)

    return create


class MemoryTrimmer:
    """Give freed heap memory back to the system after connections closed.

    glibc returns memory to the system only from the top of the heap; after
    thousands of connections come and go, the free pages in the middle stay
    mapped and RSS never shrinks. ``malloc_trim(0)`` releases them. It takes
    milliseconds and runs in a thread, ``interval`` seconds after a connection
    closed (so after a burst rather than in its middle), at most once per interval.
    """

    def __init__(self, interval: float = 10.0) -> None:
        self.interval = interval
        self.trims = 0
        self._trim: Callable[[int], int] | None = malloc_trim()
        self._task: asyncio.Task[None] | None = None

    def closed_one(self) -> None:
        if self._trim is None or (self._task is not None and not self._task.done()):
            return
        with contextlib.suppress(RuntimeError):  # no running loop: the server is gone
            self._task = asyncio.get_running_loop().create_task(self._later(),
                                                                name="memory-trim")
            self._task.add_done_callback(_log_failure)

    async def _later(self) -> None:
        await asyncio.sleep(self.interval)
        await self.trim_now()

    async def trim_now(self) -> None:
        if self._trim is None:
            return
        self.trims += 1
        await asyncio.to_thread(self._trim, 0)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("! memory trim failed", exc_info=task.exception())


def malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim`` (None elsewhere: other platforms, musl)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim: Callable[[int], int] = libc.malloc_trim
    except (OSError, AttributeError):  # not glibc (musl has no malloc_trim)
        return None
    return trim
