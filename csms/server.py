"""The WebSocket server: handshake, station authentication, one loop per connection.

Theory of operation. ``process_request`` runs before the upgrade: it reads the
station id from the path (400 if invalid), looks the station up (404 if
unknown, unless auto-registration is on: then 429 once the client, an address or IPv6
/64, registered ``auto_register_per_hour`` stations in the last hour), checks the
transport against the station's security profile (403) and HTTP Basic credentials
for stations that have a password (401; 400 for more than one Authorization header), through the
login guard of :mod:`csms.service.ratelimit` (429 for an address out of attempts; while
the station's check runs a login waits in the station's line, 503 when the line is full
of logins that rank before it or it waited 5 s).
What a connection may cost before and after the upgrade is bounded in
:mod:`csms.transport`. ``select_subprotocol`` picks the first
OCPP version in the *client's* order; with none shared the handshake completes
without the header and the connection is closed at once (OCPP-J 1.6 §4.1.2;
websockets' default would answer HTTP 400 and prefer the server's order).

Each connection then runs a :class:`~csms.link.Link` (the OCPP-J loop shared with
the simulator): a reader that feeds every received message to the sans-I/O
:class:`~csms.protocol.Endpoint` and a worker that handles the station's CALLs in
order, so the central system can send a CALL (one at a time, with a timeout) while a
station's CALL is still being handled. A station's transaction messages are charged to its
byte budget (:mod:`csms.service.throttle`): beyond it, each is stored and its answer
held back a while, which slows a flooding station without refusing anything.
:meth:`CentralSystem.attach` serves a station over any :class:`~csms.link.Channel`, a
WebSocket or an in-memory pair. A second connection for a station replaces the first
only once it has authenticated and completed the handshake; the old connection's
teardown never unregisters the new one.

Across nodes (several ``csms serve`` on one database) the same holds: when the station's
row named a connection on another live node, the new node stores a ``ConnectionReplaced``
security event naming both nodes and asks the other node over the command bus
(:data:`CLOSE_REPLACED`, signed like the operators' commands) to close its connection,
in the background: the new connection is served at once. The other node closes only the
connection the row named, or an older one (:meth:`CentralSystem.close_replaced`), never
one recorded after it: two devices with one identity that keep reconnecting replace each
other one connection at a time, as on one node, and two requests crossing on the bus
never close both.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import logging
import math
import socket
import ssl
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from datetime import datetime
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.extensions.permessage_deflate import ServerPerMessageDeflateFactory
from websockets.http11 import Request, Response
from websockets.typing import Subprotocol

from csms.config import COMPRESSION_MODES, Settings, cannot_listen
from csms.domain.model import Station
from csms.gcpolicy import POLICY as GC_POLICY
from csms.link import (
    CallFailed,
    CallTimeout,
    Channel,
    Link,
    LinkClosed,
    TransientError,
    WebSocketChannel,
)
from csms.logsafe import protect
from csms.metrics import Metrics
from csms.protocol import (
    Endpoint,
    Fault,
    IncomingCall,
    InvalidStationId,
    OcppError,
    OcppVersion,
    SendNow,
    choose_subprotocol,
    station_id_from_path,
)
from csms.service import defaults
from csms.service.auth import verify_password
from csms.service.certificates import Payload
from csms.service.charging import ChargingService, UnknownStation, new_station
from csms.service.known_clients import KnownClients
from csms.service.ports import Repository, StorageError, Tx
from csms.service.ratelimit import AttemptLimiter, LoginGuard, LoginOutcome
from csms.service.repeats import worth_logging
from csms.service.stations import Opened, connection_replaced
from csms.service.throttle import TRANSACTION_ACTIONS, Delay, TransactionThrottle
from csms.translate import BootGate, Handler, boot_gate_for, routes_for
from csms.transport import (
    LARGE_FRAME_BYTES,
    FrameSummary,
    GuardedConnection,
    HandshakeGate,
    LargeFrames,
    MemoryTrimmer,
    connection_factory,
    source_of,
)

if TYPE_CHECKING:
    from csms.bus.commands import CommandBus

__all__ = [
    "CLOSE_REPLACED", "CallFailed", "CallTimeout", "CentralSystem", "StationConnection",
    "StationOffline", "compression_options",
]

log = protect(logging.getLogger("csms.server"))
# The logger websockets gets: frames shown by kind and size, credentials redacted
# (it logs each handshake header at debug level, Authorization included).
ws_log = logging.getLogger("websockets.server")
if not any(isinstance(f, FrameSummary) for f in ws_log.filters):
    ws_log.addFilter(FrameSummary())
protect(ws_log)

# A station sends its CALLs one at a time (OCPP-J §4.1.1); a few queued ones are
# tolerated, more make the reader wait (back-pressure on a flooding station). With
# websockets' queue of received frames this bounds what a connection holds in messages
# of at most LARGE_FRAME_BYTES: MAX_QUEUED_FRAMES frames, plus MAX_QUEUED_CALLS parsed.
# Every byte in larger messages (up to max_frame_bytes) comes from the node's budget,
# large_frame_budget (csms.transport LargeFrames), and a connection handles one at a time.
MAX_QUEUED_CALLS = 4
MAX_QUEUED_FRAMES = 4
# why a connection closed with 1013 for the node's large frames: refused, gave way to
# another address's message, to a proven connection's (csms.transport LargeFrames)
LARGE_FRAMES_CUT = ("large_frames", "large_frames_evicted", "large_frames_evicted_for_proven")
# CALLs of the central system queued on a connection to follow an answer (after_reply:
# a boot's GetConfiguration, a stop's FinalCost, CertificateSigned...; the accepted
# boot's queued requests), pending or in flight: beyond these, one is not sent (each
# waits at most call_timeout, the wait for the connection's one CALL slot included).
MAX_FOLLOWUPS = 8
# listen(2)'s backlog; the kernel caps it at net.core.somaxconn (4096 on Linux >= 5.4)
LISTEN_BACKLOG = 65535
# What a binary frame gets, per OCPP version: the close code and reason (see
# StationConnection._refuse_binary).
BINARY_FRAME_CLOSE: dict[OcppVersion, tuple[int, str]] = {
    OcppVersion.V16: (1003, "OCPP-J 1.6 messages are text frames"),
    OcppVersion.V201: (1003, "OCPP-J 2.0.1 messages are text frames"),
}


# Errors of :meth:`StationConnection.call`, in the central system's words.
StationOffline = LinkClosed

# The bus command a node sends the node that held a station's connection before it
# (csms.bus.commands): args {"node": the new node, "connected_at": when the row recorded
# the connection it replaced}; answered by CentralSystem.close_replaced.
CLOSE_REPLACED = "close-replaced"
# s to wait for an answer to it beyond the close timeout (a node that does not answer:
# the event is stored all the same, and a warning logged)
CLOSE_REPLACED_MARGIN = 5.0
# s a CLOSE_REPLACED waits for a connection of the station that is being recorded
RECORDING_WAIT = 5.0


class StationConnection:
    """One station's connection: its :class:`~csms.link.Link` and the handlers of its
    CALLs (OCPP payloads to the charging service)."""

    def __init__(
        self,
        channel: Channel,
        station_id: str,
        version: OcppVersion,
        service: ChargingService,
        routes: Mapping[str, Handler],
        *,
        call_timeout: float,
        validate: bool = True,
        metrics: Metrics | None = None,
        on_booted: Callable[[StationConnection], None] | None = None,
        gate: BootGate | None = None,
        on_heard: Callable[[StationConnection], None] | None = None,
        throttle: TransactionThrottle | None = None,
    ) -> None:
        self.channel = channel
        # the byte budget of its transaction messages, and the answers it delayed here
        self.throttle = throttle if throttle is not None and throttle.enabled else None
        self.delayed = 0
        # the answer to the latest BootNotification on this connection, or the stored
        # one when that was Pending or Rejected (boot_stored); None: it has not booted
        # here (a reconnect) and was last Accepted, or never booted: it is served.
        # booted: that answer was Accepted (2.0.1 B01/B02: before it, the central system
        # sends a station nothing but what it asks for)
        self.boot_status: str | None = None
        self.booted = False
        # heard: a CALL other than BootNotification was handled on this connection (a
        # station that reconnects without booting: its queued requests may follow, see
        # may_send_queued); on_heard runs once, after the answer to the first one
        self.heard = False
        self.on_heard = on_heard
        # its send of queued requests asked for again while one ran (CentralSystem._booted)
        self.booted_again = False
        # what a station whose boot is not Accepted may send (per version); asked: the
        # actions the central system asked a Pending station for (TriggerMessage...)
        self.gate = gate or boot_gate_for(version)
        self._asked: frozenset[str] = frozenset()
        # after_reply CALLs queued or in flight on this connection, and the actions of
        # those queued "once"
        self._followups = 0
        self._followup_keys: frozenset[str] = frozenset()
        self.on_booted = on_booted
        # when the station's row recorded this connection (None: not recorded, or not
        # yet); recorded: set once that was tried (csms.server CentralSystem.attach)
        self.since: datetime | None = None
        self.recorded = asyncio.Event()
        self.station_id = station_id
        self.version = version
        self.service = service
        self.routes = routes
        self.call_timeout = call_timeout
        self.metrics = metrics or Metrics()
        self.link = Link(
            channel, Endpoint(version, handles=routes.keys(), validate=validate),
            self._handle, name=station_id, call_timeout=call_timeout,
            max_queued_calls=MAX_QUEUED_CALLS, log=log, on_binary=self._refuse_binary,
            on_send_now=self._rejected, hold_above=LARGE_FRAME_BYTES,
            log_every=worth_logging,  # a station decides how many it causes
        )

    @property
    def endpoint(self) -> Endpoint:
        return self.link.endpoint

    @property
    def messages_in(self) -> int:
        return self.link.stats.messages_in

    @property
    def errors_sent(self) -> int:
        return self.link.stats.errors_sent

    async def run(self) -> None:
        await self.link.run()

    def _rejected(self, event: SendNow) -> None:
        self.metrics.calls.count("-", "rejected")

    async def _refuse_binary(self, data: bytes) -> None:
        """OCPP-J messages are JSON text in text frames (1.6 OCPP-J §4 / 2.0.1 Part 4 §4);
        neither version defines a binary message, so one is not read as OCPP: the
        connection is closed with 1003 (RFC 6455 §7.4.1, data it cannot accept), and the
        station's reconnect starts clean."""
        code, reason = BINARY_FRAME_CLOSE[self.version]
        size = len(data)
        log.warning("! %s sent a binary frame (%d bytes); closing (%d)", self.station_id,
                    size, code)
        self.metrics.connections_cut.labels("binary_frame").inc()
        with contextlib.suppress(StorageError):
            await self.service.station_event(self.station_id, "security", {
                "type": "BinaryFrame", "bytes": size})
        await self.channel.close(code, reason)

    async def _handle(self, call: IncomingCall) -> dict[str, Any]:
        """One station CALL through its route; failures become the CALLERROR to send.
        The answer to a transaction message stored beyond the station's byte budget
        waits (:meth:`_pace`)."""
        handler = self.routes[call.action]
        started = time.perf_counter()
        result = "error"
        try:
            status = self.boot_status
            if status is not None and self.gate.refused(call.action, status, self._asked):
                # not acted on, and not remembered: the same message once accepted is
                # handled anew
                result = "not_accepted"
                raise TransientError(Fault.SECURITY, f"BootNotification answered {status}:"
                                     " nothing but BootNotification is handled")
            response = await handler(self.service, self.station_id, call.payload)
            result = "ok"
            if call.action == "BootNotification":
                self._boot_answered(str(response.get("status")))
            elif not self.heard:
                self._first_heard()
        except OcppError:
            raise
        except StorageError as exc:
            # Nothing was stored: the station gets an error and retries later, and the
            # retry, even with the same message id, is stored.
            log.error("! %s %s not stored: %s", self.station_id, call.action, exc)
            raise TransientError(Fault.INTERNAL, "temporarily unable to store") from None
        except UnknownStation:
            raise OcppError(Fault.SECURITY, "station is not registered") from None
        except Exception:
            log.exception("! %s %s handler failed", self.station_id, call.action)
            raise OcppError(Fault.INTERNAL, "internal error") from None
        finally:
            self.metrics.handled(call.action, result, time.perf_counter() - started)
        throttle = self.throttle
        if throttle is not None and call.action in TRANSACTION_ACTIONS:
            delay = throttle.charge(self.station_id, call.size)
            if delay.seconds > 0:
                await self._pace(call.action, delay)
        return response

    async def _pace(self, action: str, delay: Delay) -> None:
        """Hold the answer to a transaction message that took the station beyond its
        byte budget: stored, acknowledged later. The station waits for it before it sends
        more (OCPP-J §4.1.1), so a flood slows to the budget and nothing is refused."""
        self.delayed += 1
        self.metrics.answers_delayed.labels(action).inc()
        self.metrics.answers_delayed_seconds.labels(action).inc(delay.seconds)
        if delay.first:
            # once per station until its bucket is full again (csms.service.throttle)
            assert self.throttle is not None
            log.warning("! %s sends transaction data beyond its budget (%d bytes/s, burst"
                        " %d); its answers are delayed", self.station_id,
                        self.throttle.rate, self.throttle.burst)
            with contextlib.suppress(StorageError):
                await self.service.station_event(self.station_id, "quota", {
                    "type": "TransactionDataDelayed", "action": action,
                    "bytes_per_s": int(self.throttle.rate),
                    "burst_bytes": int(self.throttle.burst)})
        await asyncio.sleep(delay.seconds)

    def _boot_answered(self, status: str) -> None:
        """A BootNotification was answered ``status``: the connection's state from now on
        (what was asked of it before is forgotten)."""
        self.boot_status = status
        self.booted = status == "Accepted"
        self._asked = frozenset()
        if self.booted and self.on_booted is not None:
            hook = self.on_booted
            self.link.defer(lambda: hook(self))  # once the answer is out

    def boot_stored(self, status: str | None) -> None:
        """The answer to the station's latest BootNotification as stored, read when this
        connection was recorded: a station last answered Pending or Rejected (on another
        connection, or node) is on this one as if answered so here, until it boots and is
        accepted. 2.0.1 B02.FR.09 / B03.FR.07 are about the central system's verdict on the
        station, not on a connection: a Rejected station that reconnected without booting
        was served in full. A station never booted, or last Accepted, is served."""
        if status in ("Pending", "Rejected") and self.boot_status is None:
            self.boot_status = status

    def _first_heard(self) -> None:
        """The first CALL other than BootNotification was handled: :attr:`on_heard` runs
        once its answer is out, when the station has not booted on this connection."""
        self.heard = True
        if self.boot_status is None and self.on_heard is not None:
            hook = self.on_heard
            self.link.defer(lambda: hook(self))

    @property
    def may_send_queued(self) -> bool:
        """Whether requests queued for the station while it was offline may go over this
        connection, as far as the connection tells: its BootNotification was accepted,
        or it sent none and was heard (then only if the station's last boot, as stored,
        was accepted: csms.admin.operator.OperatorCommands.send_queued asks)."""
        return self.booted or (self.boot_status is None and self.heard)

    async def call(
        self, action: str, payload: dict[str, Any], timeout: float | None = None,
        *, secret: bool = False,
    ) -> dict[str, Any]:
        """Send one CALL to the station and wait for its answer (one at a time; the
        timeout counts from here, the wait for the CALL slot included).

        A CALL that asks a Pending station for messages (2.0.1 TriggerMessage...) lets
        them through from when it is sent; when the station does not accept it, they are
        refused again. ``secret``: the payload holds a credential and is not logged.
        """
        asked: frozenset[str] = frozenset()
        if self.boot_status == "Pending":
            asked = frozenset(self.gate.asked_for(action, payload)) - self._asked
            self._asked |= asked
        if not asked:
            return await self.link.call(action, payload, timeout, secret=secret)
        accepted = False
        try:
            answer = await self.link.call(action, payload, timeout, secret=secret)
            accepted = answer.get("status") == "Accepted"
            return answer
        finally:
            if not accepted:
                self._asked -= asked

    def reserve_followup(self, key: str | None = None) -> bool:
        """Whether one more CALL may be queued to follow an answer: fewer than
        MAX_FOLLOWUPS are, and none of ``key`` (when given); if so it is counted until
        :meth:`release_followup`."""
        if self._followups >= MAX_FOLLOWUPS or key in self._followup_keys:
            return False
        self._followups += 1
        if key is not None:
            self._followup_keys |= {key}
        return True

    def followup_pending(self, key: str) -> bool:
        return key in self._followup_keys

    def release_followup(self, key: str | None = None) -> None:
        self._followups -= 1
        if key is not None:
            self._followup_keys -= {key}

    async def close(self, code: int = 1000, reason: str = "") -> None:
        await self.channel.close(code, reason)


def compression_options(mode: str) -> dict[str, Any]:
    """websockets options for a ``ws_compression`` mode (see :class:`Settings`)."""
    if mode == "off":
        return {"compression": None}
    if mode == "context":
        return {"compression": "deflate"}  # websockets' defaults: window 2^12, memLevel 5
    if mode == "stateless":
        # Both sides reset their zlib contexts after each message (RFC 7692
        # no_context_takeover): a connection holds no compressor between messages.
        # OCPP messages are small JSON objects, so little ratio is lost.
        return {"compression": None, "extensions": [ServerPerMessageDeflateFactory(
            server_no_context_takeover=True, client_no_context_takeover=True,
            server_max_window_bits=12, client_max_window_bits=12,
            compress_settings={"memLevel": 5})]}
    raise ValueError(f"ws_compression must be one of {', '.join(COMPRESSION_MODES)}: {mode!r}")


def _basic_credentials(headers: Headers) -> tuple[str, str] | None:
    """The (user, password) of the one Authorization header, if it is valid Basic."""
    values = headers.get_all("Authorization")
    value = values[0] if len(values) == 1 else None
    if not value or not value.lower().startswith("basic "):
        return None
    try:
        decoded = base64.b64decode(value[6:].strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, sep, password = decoded.partition(":")
    return (user, password) if sep else None


class CentralSystem:
    """The OCPP server: accepts stations and routes their messages to the service."""

    def __init__(
        self, settings: Settings, repo: Repository, service: ChargingService,
        metrics: Metrics | None = None,
    ) -> None:
        self.settings = settings
        self.repo = repo
        self.service = service
        self.metrics = metrics or Metrics()
        self.metrics.connected.set_function(lambda: len(self.connections))
        self.node_id = settings.node_id or f"{socket.gethostname()}:{settings.port}"
        self.connections: dict[str, StationConnection] = {}
        self.logins = LoginGuard(self._verify, limit=settings.auth_failure_limit, window=60.0,
                                 concurrency=settings.auth_concurrency)
        # Stations each client (csms.transport.source_of) auto-registered in the last
        # hour: a stranger inventing ids would otherwise make a row, events and fresh
        # per-station quotas and budgets for each (0: no limit). The stations registered,
        # and the registrations refused, for the log lines (the first and every 1000th).
        self.registrations = AttemptLimiter(max(1, settings.auto_register_per_hour), 3600.0)
        self._registered = self._registrations_refused = 0
        self._refusals: Counter[str] = Counter()  # refused logins by kind (their log)
        # each station's budget of transaction message bytes (csms.service.throttle)
        self.throttle = TransactionThrottle(settings.transaction_bytes_per_s,
                                            settings.transaction_burst_bytes,
                                            min_charge=defaults.TRANSACTION_MIN_CHARGE)
        self._server: Server | None = None
        self._tls_server: Server | None = None
        self._conn_tasks: set[asyncio.Task[None]] = set()
        self._after_reply: set[asyncio.Task[None]] = set()  # CALLs that follow an answer
        # the command bus, when the node has one (csms.bootstrap): where a station's
        # connection on another node is asked to close; and those requests under way
        self.bus: CommandBus | None = None
        self._closing_elsewhere: set[asyncio.Task[None]] = set()
        # what runs once a station's BootNotification is accepted here, or it is first
        # heard on a connection opened without one (the requests kept for it while it was
        # offline: csms.admin.operator.OperatorCommands.send_queued)
        self.on_boot: Callable[[str], Coroutine[Any, Any, None]] | None = None
        # the clients registered stations logged in from: a reserve of handshake slots
        # and a queue of their own (csms.service.known_clients)
        self.known = KnownClients(repo, settings.known_clients)
        self.gates = {name: HandshakeGate(name, settings.max_handshakes, self.metrics,
                                          queue_limit=settings.handshake_queue,
                                          known=(self.known.station_of
                                                 if settings.known_clients else None))
                      for name in ("ws", "wss")}
        self.trimmer = MemoryTrimmer()
        # the bytes all connections hold in messages over LARGE_FRAME_BYTES
        self.large_frames = LargeFrames(settings.large_frame_budget, self.metrics)
        # the collector's policy, installed while this server runs (csms/gcpolicy.py)
        self._young_gc: asyncio.Task[None] | None = None

    def _verify(self, password: str, stored: str) -> bool:
        """One scrypt check (in a thread of the login guard), counted for /metrics."""
        ok = verify_password(password, stored)
        self.metrics.password_checks.labels("ok" if ok else "wrong").inc()
        return ok

    @property
    def port(self) -> int:
        """The plain (ws://) port, or the TLS port when only TLS is served."""
        server = self._server or self._tls_server
        assert server is not None
        return int(next(iter(server.sockets)).getsockname()[1])

    @property
    def tls_port(self) -> int | None:
        if self._tls_server is None:
            return None
        return int(next(iter(self._tls_server.sockets)).getsockname()[1])

    def _ssl_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2  # security profiles 2 and 3
        ctx.load_cert_chain(self.settings.tls_cert, self.settings.tls_key or None)
        if self.settings.client_ca:
            ctx.load_verify_locations(self.settings.client_ca)
            # Optional at the TLS layer: profile 2 stations share the port and
            # present no certificate; profile 3 is enforced per station below.
            ctx.verify_mode = ssl.CERT_OPTIONAL
        return ctx

    def _create_connection(self, listener: str, tls: ssl.SSLContext | None) -> Any:
        s = self.settings
        return connection_factory(
            self.gates[listener], self.metrics, tls=tls, handshake_timeout=s.handshake_timeout,
            close_timeout=s.close_timeout, write_buffer_limit=s.write_buffer_limit,
            # A peer that takes no data for as long as it may take to answer a ping
            # is treated like one that does not answer it.
            drain_timeout=s.ping_timeout or s.call_timeout, on_gone=self._socket_gone,
            large=self.large_frames)

    def _socket_gone(self, opened_at: float | None) -> None:
        self.trimmer.closed_one()
        GC_POLICY.connection_closed(len(self.connections), opened_at)

    async def start(self) -> None:
        options: dict[str, Any] = {
            "process_request": self._process_request,
            "select_subprotocol": self._select_subprotocol,
            "subprotocols": [Subprotocol(v.value) for v in OcppVersion],
            "max_size": self.settings.max_frame_bytes,
            "max_queue": MAX_QUEUED_FRAMES,
            "ping_interval": self.settings.ping_interval or None,
            "ping_timeout": self.settings.ping_timeout or None,
            "server_header": None,
            "logger": ws_log,
            # the HTTP upgrade; the TLS handshake has its own (LeanSSLProtocol)
            "open_timeout": self.settings.handshake_timeout,
            # A dead peer never answers the closing handshake: do not wait long.
            "close_timeout": self.settings.close_timeout,
            # asyncio listens with a backlog of 100: a fleet reconnecting at once
            # overflowed it and the kernel dropped SYNs (a retry after 1, 3, 7 s).
            # The kernel caps this at net.core.somaxconn.
            "backlog": LISTEN_BACKLOG,
            **compression_options(self.settings.ws_compression),
        }
        if self.settings.reuse_port:
            # one of csms serve --workers: the kernel spreads connections over them
            options["reuse_port"] = True
        host = self.settings.host
        if self.settings.port >= 0:
            try:
                self._server = await serve(
                    self._handle, host, self.settings.port,
                    create_connection=self._create_connection("ws", None), **options
                )
            except OSError as exc:  # a port in use: the flag to change
                raise cannot_listen("port", "host", host, self.settings.port, exc) from None
        if self.settings.tls_cert:
            # TLS is layered by our connection factory, not by asyncio (see csms.transport).
            tls_port = max(self.settings.tls_port, 0)
            create_connection = self._create_connection("wss", self._ssl_context())
            try:
                self._tls_server = await serve(
                    self._handle, host, tls_port, create_connection=create_connection,
                    **options,
                )
            except OSError as exc:
                raise cannot_listen("tls_port", "host", host, tls_port, exc) from None
        if self._server is None and self._tls_server is None:
            raise ValueError("nothing to listen on: give --port and/or --tls-cert")
        if not self.settings.node_id and self.settings.port == 0:
            self.node_id = f"{socket.gethostname()}:{self.port}"

        async def forget(tx: Tx) -> int:
            # Stations this node held before a crash are not connected any more.
            return await tx.clear_node_connections(self.node_id)

        await self.repo.unit(forget)
        await self.known.load()
        if self._server is not None:
            log.info("= listening on ws://%s:%d as node %s", self.settings.host, self.port,
                     self.node_id)
        if self._tls_server is not None:
            log.info("= listening on wss://%s:%s (TLS)", self.settings.host, self.tls_port)
        if self._young_gc is None:
            GC_POLICY.install()  # no full-heap walks while thousands of stations wait
            self._young_gc = asyncio.get_running_loop().create_task(
                GC_POLICY.young_collections(), name="young-collections")

    async def stop(self) -> None:
        for task in (*self._after_reply, *self._closing_elsewhere):
            task.cancel()
        for server in (self._server, self._tls_server):
            if server is not None:
                server.close()
                await server.wait_closed()
        self._server = self._tls_server = None
        for gate in self.gates.values():
            gate.close()
        self.logins.close()
        await self.known.close()
        await self.trimmer.close()
        if self._young_gc is not None:
            self._young_gc.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._young_gc
            self._young_gc = None
            GC_POLICY.uninstall()

    # -- handshake -----------------------------------------------------------
    def _refuse(self, connection: ServerConnection, status: HTTPStatus, text: str,
                reason: str, retry_after: float | None = None) -> Response:
        self.metrics.logins_refused.labels(reason).inc()
        response = connection.respond(status, text)
        if status is HTTPStatus.UNAUTHORIZED:
            response.headers["WWW-Authenticate"] = 'Basic realm="ocpp", charset="UTF-8"'
        elif status is HTTPStatus.TOO_MANY_REQUESTS:
            wait = self.logins.attempts.window if retry_after is None else retry_after
            response.headers["Retry-After"] = str(max(1, math.ceil(wait)))
        elif status is HTTPStatus.SERVICE_UNAVAILABLE:
            response.headers["Retry-After"] = "1"
        return response

    def _log_refusal(self, level: int, kind: str, message: str, *args: Any) -> None:
        """A refused login's log line, the first of its ``kind`` and every thousandth
        (:func:`worth_logging`): whoever asks again and again would decide how fast the
        log grows. Every refusal is counted (``voltledger_logins_refused``)."""
        self._refusals[kind] += 1
        count = self._refusals[kind]
        if worth_logging(count):
            log.log(level, message + " (%d such refusals since the start)", *args, count)

    async def _process_request(
        self, connection: ServerConnection, request: Request
    ) -> Response | None:
        try:
            station_id = station_id_from_path(request.path)
        except InvalidStationId as exc:
            return self._refuse(connection, HTTPStatus.BAD_REQUEST, f"{exc}\n", "bad_request")
        remote = connection.remote_address[0] if connection.remote_address else "?"

        async def lookup(tx: Tx) -> Station | None:
            return await tx.get_station(station_id)

        station = await self.repo.read(lookup)
        if station is None:
            if not self.settings.auto_register:
                self._log_refusal(logging.INFO, "unknown", "! refused unknown station %r"
                                  " from %s", station_id, remote)
                return self._refuse(connection, HTTPStatus.NOT_FOUND, "unknown station\n",
                                    "unknown_station")
            return await self._auto_register(connection, station_id, remote)
        refusal = self._transport_refusal(connection, station)
        if refusal is not None:
            self._log_refusal(logging.WARNING, "transport", "! refused station %r from %s:"
                              " %s", station_id, remote, refusal)
            return self._refuse(connection, HTTPStatus.FORBIDDEN, "forbidden\n", "forbidden")
        if station.password_hash is None and station.security_profile in (1, 2):
            self._log_refusal(logging.WARNING, "no_password", "! refused station %r from"
                              " %s: station has no password set", station_id, remote)
            return self._refuse(connection, HTTPStatus.UNAUTHORIZED, "unauthorized\n",
                                "unauthorized")
        if station.password_hash is None or station.security_profile == 3:
            # Nothing to check beyond the transport: never rate limited (a profile-0
            # station is not refused because others failed from its address).
            if station.security_profile == 3:  # its certificate proved who it is
                self._known_login(connection, station)
            return None
        if len(request.headers.get_all("Authorization")) > 1:
            # which one to check? (websockets' Headers.get raised on them: a 500 and a
            # traceback for any stranger's request)
            self._log_refusal(logging.WARNING, "headers", "! refused station %r from %s:"
                              " more than one Authorization header", station_id, remote)
            return self._refuse(connection, HTTPStatus.BAD_REQUEST,
                                "one Authorization header expected\n", "bad_request")
        creds = _basic_credentials(request.headers)
        if creds is None or creds[0] != station.id:
            self._log_refusal(logging.WARNING, "credentials", "! refused station %r from"
                              " %s: missing or mismatched Basic credentials", station_id,
                              remote)
            return self._refuse(connection, HTTPStatus.UNAUTHORIZED, "unauthorized\n",
                                "unauthorized")
        outcome = await self.logins.check(remote, station.id, station.password_hash, creds[1])
        if outcome is LoginOutcome.ACCEPTED:
            self._known_login(connection, station)
            return None
        if outcome is LoginOutcome.WRONG_PASSWORD:
            self._log_refusal(logging.WARNING, "password", "! refused station %r from %s:"
                              " wrong password", station_id, remote)
            return self._refuse(connection, HTTPStatus.UNAUTHORIZED, "unauthorized\n",
                                "unauthorized")
        if outcome is LoginOutcome.RATE_LIMITED:
            self._log_refusal(logging.WARNING, "attempts", "! %s from %s: too many password"
                              " attempts, refused", station_id, remote)
            return self._refuse(connection, HTTPStatus.TOO_MANY_REQUESTS,
                                "too many attempts\n", "rate_limited")
        self._log_refusal(logging.INFO, "busy", "! %s from %s: the station's password"
                          " checks are busy, come back", station_id, remote)
        return self._refuse(connection, HTTPStatus.SERVICE_UNAVAILABLE, "busy\n", "busy")

    @staticmethod
    def _known_login(connection: ServerConnection, station: Station) -> None:
        """The station's login proved a secret (its password, its certificate) and passed
        our checks: once the WebSocket opens with an OCPP subprotocol (websockets checks
        the upgrade's own headers after ours: a request refused there is no login), its
        client gets the known clients' lane at the handshake gate (:meth:`_handle`). A
        login without one (no password) makes nobody known: anyone who knows the id may
        log in so (csms.service.known_clients). Its connection is proven at once: under
        pressure its large messages come first (csms.transport LargeFrames; frames may
        arrive before the WebSocket opens)."""
        if isinstance(connection, GuardedConnection):
            connection.prove(station.id)

    async def _auto_register(self, connection: ServerConnection, station_id: str,
                             remote: str) -> Response | None:
        """Register the unknown station ``station_id`` (auto-registration is on), unless
        its client registered its share of stations in the last hour."""
        limited = self.settings.auto_register_per_hour > 0
        client = source_of(connection.remote_address)
        if limited and not self.registrations.take(client):
            self._registrations_refused += 1
            if worth_logging(self._registrations_refused):
                log.warning("! refused unknown station %r from %s: %d stations auto-registered"
                            " from there in the last hour (--auto-register-per-hour; %d"
                            " refused in all)", station_id, remote,
                            self.registrations.count(client), self._registrations_refused)
            return self._refuse(connection, HTTPStatus.TOO_MANY_REQUESTS,
                                "too many new stations\n", "auto_register_limit",
                                self.registrations.retry_after(client))

        async def register(tx: Tx) -> bool:
            if await tx.get_station(station_id) is not None:
                return False
            await tx.insert_station(new_station(station_id))
            return True

        try:
            added = await self.repo.unit(register)
        except BaseException:
            if limited:
                self.registrations.give_back(client)
            raise
        if not added:  # registered meanwhile, by another handshake
            if limited:
                self.registrations.give_back(client)
            return None
        self._registered += 1
        if worth_logging(self._registered):
            log.warning("! AUTO-REGISTERING unknown station %r from %s (--auto-register is"
                        " on; %d registered since the start)", station_id, remote,
                        self._registered)
        return None

    def _transport_refusal(self, connection: ServerConnection, station: Station) -> str | None:
        """Why the connection's transport is below the station's profile, or None."""
        tls = connection.transport.get_extra_info("ssl_object")
        profile = station.security_profile
        if profile >= 2 and tls is None:
            return f"TLS required (security profile {profile})"
        if profile == 3:
            cert = tls.getpeercert() if tls is not None else None
            if not cert:
                return "TLS client certificate required (security profile 3)"
            names = [v for rdn in cert.get("subject", ()) for k, v in rdn if k == "commonName"]
            # 2.0.1 A00.FR.413 / 1.6 security whitepaper: the CN is exactly the identity
            # (no substring or case-insensitive match).
            if names != [station.id]:
                return f"TLS certificate CN {names!r} is not the station id"
            return None
        return None

    @staticmethod
    def _select_subprotocol(
        connection: ServerConnection, offered: Sequence[Subprotocol]
    ) -> Subprotocol | None:
        version = choose_subprotocol(offered)
        return None if version is None else Subprotocol(version.value)

    # -- connections ---------------------------------------------------------
    async def _handle(self, ws: ServerConnection) -> None:
        if isinstance(ws, GuardedConnection):
            ws.websocket_open()
        if ws.subprotocol is None:
            # OCPP-J 1.6 §4.1.2: complete the handshake without the header, then close.
            await ws.close(1002, "no supported OCPP subprotocol offered")
            return
        if isinstance(ws, GuardedConnection) and ws.proved is not None:
            self.known.login(ws.source, ws.proved)
        version = OcppVersion(ws.subprotocol)
        station_id = station_id_from_path(ws.request.path if ws.request else "/")
        try:
            await self.attach(WebSocketChannel(ws), station_id, version, str(ws.remote_address))
        finally:
            sent = ws.protocol.close_sent
            if sent is not None and sent.code == 1009:
                log.warning("! %s sent a frame over %d bytes; connection closed", station_id,
                            self.settings.max_frame_bytes)
                with contextlib.suppress(StorageError):
                    await self.service.station_event(
                        station_id, "security",
                        {"type": "FrameTooLarge", "limit": self.settings.max_frame_bytes},
                    )
            elif sent is not None and sent.code == 1013 and isinstance(ws, GuardedConnection) \
                    and ws.cut_reason in LARGE_FRAMES_CUT:
                # refused, or gave way to another address's message or to a proven
                # connection's (csms.transport)
                with contextlib.suppress(StorageError):
                    await self.service.station_event(station_id, "security", {
                        "type": "LargeFramesBusy",
                        "budget": self.settings.large_frame_budget,
                        "gave_way": ws.cut_reason != "large_frames"})
            if not self.service.connections_over_quota(station_id):
                log.info("x %s disconnected (%s)", station_id, ws.close_code)

    async def attach(self, channel: Channel, station_id: str, version: OcppVersion,
                     remote: str) -> None:
        """Serve one authenticated station over ``channel`` until it closes: it becomes
        the station's connection (replacing an older one), is recorded as connected,
        and is forgotten at the end unless a newer one replaced it."""
        conn = StationConnection(
            channel, station_id, version, self.service, routes_for(version),
            call_timeout=self.settings.call_timeout, validate=self.settings.validate,
            metrics=self.metrics, on_booted=self._booted, on_heard=self._booted,
            throttle=self.throttle,
        )
        old = self.connections.get(station_id)
        self.connections[station_id] = conn
        since = None  # when this connection was recorded: its teardown clears only it
        try:
            # from here on the station's connection is this one: whatever ends it (an
            # error, a cancel) ends it as the station's, never leaving it registered
            # a station over its hourly quota of connection events (reconnecting in a
            # loop) writes no more log lines about its connections either
            quiet = self.service.connections_over_quota(station_id)
            if old is not None:
                if not quiet:
                    log.warning("! %s connected again; closing the previous connection",
                                station_id)
                try:
                    await self.service.station_event(
                        station_id, "security",
                        connection_replaced(remote, self.node_id, self.node_id, old.since),
                    )
                except StorageError as exc:  # lost, as every write while it fails
                    log.error("! %s: its ConnectionReplaced event not stored: %s",
                              station_id, exc)
                await old.close(1000, "replaced by a new connection")
            if not quiet:
                log.info("= %s connected (%s) from %s", station_id, version.value, remote)
            opened = None
            try:
                opened = await self.service.connection_opened(
                    station_id, version.value, self.node_id, remote)
            except StorageError:
                pass
            finally:
                conn.recorded.set()
            if opened is not None:
                since = conn.since = opened.since
                conn.boot_stored(opened.boot_status)
                if opened.replaced_node is not None:
                    self._replaced_elsewhere(station_id, opened)
            await conn.run()
        finally:
            if self.connections.get(station_id) is conn:
                del self.connections[station_id]
                self.throttle.left(station_id)  # its budget is forgotten once full
                # the station's close frame came first: its connection was alive to its
                # end (a start it dates back into it is judged by that, csms.service.core)
                closed_by_station = isinstance(channel, WebSocketChannel) \
                    and channel.ws.protocol.close_rcvd_then_sent is True
                with contextlib.suppress(StorageError):
                    await self.service.connection_changed(
                        station_id, False, version.value, self.node_id, since,
                        closed_by_station=closed_by_station,
                    )

    def _replaced_elsewhere(self, station_id: str, opened: Opened) -> None:
        """The station connected here while its row named a connection on another live
        node (its ConnectionReplaced event is stored with this connection): ask that node
        to close it, in the background (the connection here is served meanwhile)."""
        node, at = opened.replaced_node, opened.replaced_at
        assert node is not None
        log.warning("! %s connected here while node %s held it (recorded %s): a second"
                    " device with its identity, or a reconnection; asking node %s to close"
                    " its connection", station_id, node, at, node)
        bus = self.bus
        if bus is None or at is None:
            log.warning("! %s: node %s cannot be asked to close its connection (%s): the"
                        " station may still be connected there", station_id, node,
                        "no command bus on this node (--mqtt)" if bus is None
                        else "the row gave no time for it")
            return
        task = asyncio.get_running_loop().create_task(
            self._ask_to_close(bus, station_id, node, at), name=f"{station_id}:replaced")
        self._closing_elsewhere.add(task)
        task.add_done_callback(self._closing_elsewhere.discard)

    async def _ask_to_close(self, bus: CommandBus, station_id: str, node: str,
                            at: datetime) -> None:
        from csms.bus.commands import NodeUnavailable

        wait = self.settings.close_timeout + CLOSE_REPLACED_MARGIN
        try:
            status, result = await bus.request(
                node, station_id, CLOSE_REPLACED,
                {"node": self.node_id, "connected_at": at.isoformat()}, None, wait)
        except NodeUnavailable as exc:
            log.warning("! %s: node %s was not reached to close its connection (%s): the"
                        " station may still be connected there", station_id, node, exc)
            return
        except Exception:  # a task of its own: logged, never raised into nothing
            log.exception("! %s: asking node %s to close its connection failed",
                          station_id, node)
            return
        if status != 200:
            log.warning("! %s: node %s did not close its connection (%d: %s): the station"
                        " may still be connected there", station_id, node, status,
                        str(result.get("error"))[:200])
        elif result.get("closed"):
            log.info("- %s: node %s closed its connection", station_id, node)
        else:
            log.info("- %s: node %s holds no connection older than this one", station_id,
                     node)

    async def close_replaced(self, station_id: str,
                             args: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """Another node (``args["node"]``) recorded a new connection of the station over
        the one this node's connection recorded at ``args["connected_at"]`` (a
        :data:`CLOSE_REPLACED` on the bus): close the station's connection here if it is
        that one or older. A connection recorded later (the station, or its twin, came
        back here since) is newer than the one that asked, and is kept; so is one still
        being recorded, once its recording tells (within RECORDING_WAIT)."""
        by = args.get("node")
        try:
            replaced_at = datetime.fromisoformat(str(args.get("connected_at")))
        except ValueError:
            replaced_at = None
        if not isinstance(by, str) or replaced_at is None or replaced_at.tzinfo is None:
            return 400, {"error": f"{CLOSE_REPLACED} needs node and connected_at"}
        conn = self.connections.get(station_id)
        if conn is not None and not conn.recorded.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(conn.recorded.wait(), RECORDING_WAIT)
        if conn is None or self.connections.get(station_id) is not conn:
            return 200, {"closed": False, "connected": conn is not None}
        if conn.since is None or conn.since > replaced_at:
            log.info("- %s: node %s asked to close a connection recorded at %s; the one"
                     " here is newer (%s), kept", station_id, by, replaced_at.isoformat(),
                     conn.since.isoformat() if conn.since else "not recorded")
            return 200, {"closed": False, "connected": True}
        log.warning("! %s connected again on node %s; closing its connection here"
                    " (recorded %s)", station_id, by, conn.since.isoformat())
        await conn.close(1000, "replaced by a new connection")
        return 200, {"closed": True}

    def after_reply(self, station_id: str, action: str, payload: Payload,
                    then: Callable[[dict[str, Any] | None], Awaitable[None]],
                    *, once: bool = False) -> None:
        """Send a CALL to the station once the answer it is waiting for is sent; ``then``
        gets the station's answer (None: offline, no answer, or a CALLERROR). A payload
        given as a function is built then; when it builds None, nothing is sent.

        A connection has at most MAX_FOLLOWUPS of these pending or in flight, and with
        ``once`` at most one of ``action``: beyond that nothing is sent (nor built) and
        ``then`` is not called."""
        conn = self.connections.get(station_id)
        if conn is None:
            return
        key = action if once else None
        if not conn.reserve_followup(key):
            if once and conn.followup_pending(action):
                log.info("- %s %s already pending; not queued again", station_id, action)
            else:
                log.warning("! %s: %d CALLs pending after answers; %s not sent", station_id,
                            MAX_FOLLOWUPS, action)
            return

        async def send() -> None:
            built = await payload() if callable(payload) else payload
            if built is None:
                return
            answer: dict[str, Any] | None = None
            try:
                answer = await conn.call(action, built)
            except (StationOffline, CallTimeout, CallFailed, OcppError) as exc:
                log.warning("! %s %s not answered: %r", station_id, action, exc)
            await then(answer)

        def start() -> None:
            task = asyncio.get_running_loop().create_task(send(), name=f"{station_id}:{action}")
            self._after_reply.add(task)
            task.add_done_callback(self._after_reply_done)
            task.add_done_callback(lambda _: conn.release_followup(key))

        conn.link.defer(start)

    def _booted(self, conn: StationConnection) -> None:
        """A station's BootNotification was accepted and answered, or its first message
        on a connection it opened without one was: run :attr:`on_boot` (which sends
        only what the connection may get)."""
        hook = self.on_boot
        if hook is None or self.connections.get(conn.station_id) is not conn:
            return
        # one at a time per connection; one asked for while another runs (a boot accepted
        # while the first message's look at the queue runs, on what was stored before it)
        # runs once that one is done
        if not conn.reserve_followup(":booted"):
            conn.booted_again = True
            return
        conn.booted_again = False
        task = asyncio.get_running_loop().create_task(
            hook(conn.station_id), name=f"{conn.station_id}:booted")
        self._after_reply.add(task)
        task.add_done_callback(self._after_reply_done)

        def done(_: asyncio.Task[None]) -> None:
            conn.release_followup(":booted")
            if conn.booted_again:
                self._booted(conn)

        task.add_done_callback(done)

    def _after_reply_done(self, task: asyncio.Task[None]) -> None:
        self._after_reply.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("! %s failed: %r", task.get_name(), task.exception())

    async def call(
        self, station_id: str, action: str, payload: dict[str, Any],
        timeout: float | None = None,
    ) -> dict[str, Any]:
        conn = self.connections.get(station_id)
        if conn is None:
            raise StationOffline(station_id)
        return await conn.call(action, payload, timeout)
