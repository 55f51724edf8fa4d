"""A simulated station's connection: connect, boot, heartbeat, status, and its CALLs.

Theory of operation. :meth:`StationCore.start` runs the connection manager: connect
(HTTP Basic auth when a password is set), BootNotification until Accepted (Pending
and Rejected are honoured: wait the interval, boot again), then heartbeats at the
interval the central system sent, and StatusNotification for every connector. When
the socket drops, it reconnects with exponential backoff and jitter. Each
connection runs a :class:`~csms.link.Link`, the OCPP-J loop the central system uses
too; what differs between 1.6 and 2.0.1 comes from :mod:`chargers_sim.versions`.

A refusal by the central system (HTTP 401, 403, 404) or nothing listening at the
address is kept in :attr:`StationCore.failure`; ``start(fail_fast=True)`` raises it
instead of retrying until the timeout.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import random
import ssl
from collections.abc import Awaitable, Callable, Sequence
from typing import Any
from urllib.parse import quote

from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus, WebSocketException

from chargers_sim.meter import Meter
from chargers_sim.ocmf import MeterSigner
from chargers_sim.security import StationPki
from chargers_sim.versions import VersionRules, rules_for
from csms.link import CallFailed, Channel, Link, LinkStats, WebSocketChannel
from csms.protocol import Endpoint, IncomingCall, OcppVersion

__all__ = [
    "CallRejected", "ConnectFailed", "StationCore", "StationRefused", "Unreachable",
    "backoff_delay",
]

log = logging.getLogger("chargers_sim")

# A CALLERROR answer to one of the station's CALLs.
CallRejected = CallFailed

# How long nothing listening at the address is tolerated by start(fail_fast=True) unless
# told otherwise (python -m chargers_sim --unreachable-grace): a central system that is
# starting up gets some seconds: `csms serve &` followed at once by the simulator (as the
# README's walkthrough does) took 3-6 s to listen on a busy 2-core machine, so 3 s made
# the walkthrough fail there.
UNREACHABLE_GRACE = 10.0

# What the central system's HTTP refusals mean for a station (see csms.server).
_REFUSALS = {
    401: "unauthorized: wrong or missing password",
    403: "forbidden: the station's security profile needs TLS or a client certificate",
    404: "unknown station: it is not registered at the central system",
}


class ConnectFailed(Exception):
    """A connection attempt failed (the station retries unless told to give up)."""

    def __init__(self, station_id: str, url: str, reason: str) -> None:
        super().__init__(f"{station_id}: {reason}")
        self.station_id = station_id
        self.url = url
        self.reason = reason


class StationRefused(ConnectFailed):
    """The central system answered the handshake with a refusal (HTTP 401, 403, 404)."""


class Unreachable(ConnectFailed):
    """Nothing listens at the central system's address."""


def backoff_delay(attempt: int, base: float, cap: float, rng: random.Random) -> float:
    """Exponential backoff with full jitter: uniform in [0, min(cap, base * 2^attempt)]."""
    return rng.uniform(0, min(cap, base * (2 ** attempt)))


def _nothing_listening(exc: OSError) -> bool:
    # asyncio joins the errors of several addresses (localhost: ::1 and 127.0.0.1)
    return isinstance(exc, ConnectionRefusedError) or "Connect call failed" in str(exc)


class StationCore:
    """Connection, boot and heartbeat of a simulated station (see the module docstring)."""

    def __init__(
        self,
        url: str,
        station_id: str,
        version: OcppVersion | str = OcppVersion.V16,
        *,
        connectors: int = 1,
        password: str | None = None,
        power_kw: float = 11.0,
        meter_interval: float = 60.0,
        seed: int | None = None,
        signed: bool = False,
        call_timeout: float = 10.0,
        message_attempts: int = 3,
        retry_interval: float = 1.0,
        backoff_base: float = 0.2,
        backoff_cap: float = 10.0,
        fallback_urls: Sequence[str] = (),
        dial: Callable[[], Awaitable[Channel]] | None = None,
        tls_ca: str | None = None,
        client_cert: tuple[str, str] | None = None,
        organisation: str = "",
        local_controller: bool = False,
        pnc: bool = False,
        startup_event: bool = False,
        external_limit: tuple[float, str] | None = None,
        ev_contract_days: int = 365,
    ) -> None:
        """``dial``: how to open a connection (default: a WebSocket to the URL); a test
        passes one end of :func:`csms.link.memory_pair`. ``tls_ca``: the CA that signed
        the central system's certificate (wss://); ``client_cert``: a certificate and key
        file to show it (security profile 3), replaced by the one the central system signs
        (:mod:`chargers_sim.security`); ``organisation``: the O of the station's CSRs;
        ``local_controller``: a 2.0.1 local controller, which publishes firmware images
        for the stations behind it (:mod:`chargers_sim.maintenance`); ``pnc``: a 1.6
        station takes ISO 15118 Plug & Charge over DataTransfer
        (:mod:`chargers_sim.pnc_v16`), a 2.0.1 station with its own messages and an EV
        whose contract certificate is valid ``ev_contract_days`` (0: it has none)
        (:mod:`chargers_sim.pnc_v201`); ``startup_event``: report StartupOfTheDevice
        at the first boot (:mod:`chargers_sim.security_events`); ``external_limit``:
        (watts, source) an energy management system or the grid operator imposes from
        the first boot on (:mod:`chargers_sim.limits`)."""
        # the central system's address, then others to try in turn when it cannot be
        # reached (several nodes without a load balancer in front)
        self.urls = [u.rstrip("/") for u in (url, *fallback_urls)]
        self._url_index = 0
        self.station_id = station_id
        self.local_controller = local_controller
        self.version = version if isinstance(version, OcppVersion) else OcppVersion.parse(version)
        self.rules: VersionRules = rules_for(self.version)
        self.password = password
        self.power_w = power_kw * 1000
        self.meter_interval = meter_interval
        self.rng = random.Random(seed)
        self.call_timeout = call_timeout
        self.message_attempts = message_attempts
        self.retry_interval = retry_interval
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self._dial = dial or self._dial_websocket
        self.tls_ca = tls_ca
        self.pnc = pnc
        self.startup_event = startup_event
        self.initial_external_limit = external_limit
        self.ev_contract_days = ev_contract_days
        self.pki = StationPki(station_id, organisation)
        if client_cert is not None:
            self.pki.use(*client_cert)
        self.meters = {c: Meter.with_lifetime(self.rng) for c in range(1, connectors + 1)}
        self.status = dict.fromkeys(self.meters, "Available")
        self.signer = MeterSigner.generate(f"SIM-{station_id}") if signed else None
        # configuration (1.6 keys) and variables (2.0.1 component.variable)
        self.config: dict[str, str] = {
            "HeartbeatInterval": "300", "MeterValueSampleInterval": str(int(meter_interval)),
            "TransactionMessageAttempts": str(message_attempts),
            "TransactionMessageRetryInterval": str(retry_interval),
            "AuthorizeRemoteTxRequests": "true", "NumberOfConnectors": str(connectors),
        }
        self.variables: dict[str, str] = {
            "OCPPCommCtrlr.HeartbeatInterval": "300",
            "SampledDataCtrlr.TxUpdatedInterval": str(int(meter_interval)),
            "OCPPCommCtrlr.MessageAttempts": str(message_attempts),
            "OCPPCommCtrlr.MessageAttemptInterval": str(retry_interval),
            "AuthCtrlr.AuthorizeRemoteStart": "true",
        }
        # observable state for tests and the summary
        self.received_calls: list[tuple[str, dict[str, Any]]] = []
        self.errors = 0
        self.boot_status: str | None = None
        self.firmware_version = "sim-1.0"  # reported at boot; changed by an update
        self.heartbeat_interval = 300.0
        self.stats = LinkStats(latencies=[])  # over every connection
        self._raw_sent = 0
        self.failure: ConnectFailed | None = None  # of the last attempt, until connected
        # connection state
        self._link: Link | None = None
        self._online = asyncio.Event()  # connected and booted
        self._offline_until: asyncio.Event | None = None  # set while forced offline
        self._tasks: set[asyncio.Task[Any]] = set()
        self._manager: asyncio.Task[None] | None = None
        self._closing = False
        self.connections = 0
        self._setup()

    def _setup(self) -> None:
        """Each layer (transactions, faults, handlers) adds its state here."""

    @property
    def messages_sent(self) -> int:
        return self.stats.calls_sent + self._raw_sent

    @property
    def latencies(self) -> list[float]:
        """Seconds from sending each CALL to its answer."""
        assert self.stats.latencies is not None
        return self.stats.latencies

    # -- what the other layers provide ---------------------------------------------
    async def _send_queue(self) -> None:
        """Deliver queued transaction messages (chargers_sim.transactions)."""
        raise NotImplementedError

    def _handlers(self) -> dict[str, Callable[[dict[str, Any]], dict[str, Any]]]:
        """The central system's CALLs this station answers (chargers_sim.handlers)."""
        raise NotImplementedError

    async def _handle_call(self, call: IncomingCall) -> dict[str, Any]:
        raise NotImplementedError

    def _tap(self, text: str | bytes) -> bool:
        """Whether a received message was consumed before the OCPP endpoint sees it."""
        return False

    async def _before_close(self) -> None:
        """Cancel what the other layers run (sessions)."""

    async def _after_boot(self) -> None:
        """What the other layers send once booted (a firmware update's Installed)."""

    def _untrusted_server(self, url: str, reason: str) -> None:
        """The central system's TLS certificate was not trusted (a security event)."""

    # -- task ownership ---------------------------------------------------------------
    def _spawn(self, coro: Any, name: str) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro, name=f"{self.station_id}:{name}")
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self.errors += 1
            log.error("! %s task %s failed: %r", self.station_id, task.get_name(),
                      task.exception())

    # -- lifecycle ----------------------------------------------------------------------
    async def start(self, timeout: float = 30.0, *, fail_fast: bool = False,
                    unreachable_grace: float = UNREACHABLE_GRACE) -> None:
        """Connect and boot; returns once the central system accepted the boot.

        ``fail_fast``: raise :class:`StationRefused` at the first refusal and
        :class:`Unreachable` when nothing listens for ``unreachable_grace`` seconds,
        rather than retrying until ``timeout``.
        """
        if self._manager is None:
            self._manager = self._spawn(self._manage(), "manager")
            self._spawn(self._send_queue(), "tx-queue")
        loop = asyncio.get_running_loop()
        started = loop.time()
        async with asyncio.timeout(timeout):
            if not fail_fast:
                await self._online.wait()
                return
            while not self._online.is_set():
                failure = self.failure
                if isinstance(failure, StationRefused) or (
                        isinstance(failure, Unreachable)
                        and loop.time() - started >= unreachable_grace):
                    raise failure
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(0.1):
                        await self._online.wait()

    async def close(self) -> None:
        self._closing = True
        await self._before_close()
        for task in list(self._tasks):
            task.cancel()
        if self._link is not None:
            with contextlib.suppress(Exception):
                await self._link.close()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self.pki.close()

    @property
    def online(self) -> bool:
        return self._online.is_set()

    @property
    def url(self) -> str:
        """The address this station connects (or last connected) to."""
        return self.urls[self._url_index]

    def _headers(self) -> dict[str, str]:
        if self.password is None:
            return {}
        token = base64.b64encode(f"{self.station_id}:{self.password}".encode()).decode()
        return {"Authorization": f"Basic {token}"}

    async def _dial_websocket(self) -> Channel:
        url = self.url
        try:
            ws = await connect(
                f"{url}/{quote(self.station_id, safe='')}",
                subprotocols=[self.version.value],  # type: ignore[list-item]
                additional_headers=self._headers(), open_timeout=10,
                ping_interval=None, max_size=2**20,
                ssl=self.pki.ssl_context(self.tls_ca) if url.startswith("wss:") else None,
            )
        except InvalidStatus as exc:
            code = exc.response.status_code
            if code in _REFUSALS:
                # kept in self.failure (start(fail_fast=True) raises it): a station
                # retrying for a long time does not fill the log
                log.info("! %s refused: HTTP %d", self.station_id, code)
                raise StationRefused(self.station_id, url,
                                     f"refused by {url}: HTTP {code} {_REFUSALS[code]}") from None
            raise ConnectFailed(self.station_id, url, f"HTTP {code} from {url}") from None
        except ssl.SSLCertVerificationError as exc:
            reason = exc.verify_message or str(exc)
            self._untrusted_server(url, reason)
            raise ConnectFailed(self.station_id, url,
                                f"the certificate of {url} is not trusted: {reason}") from None
        except OSError as exc:
            if _nothing_listening(exc):
                raise Unreachable(self.station_id, url,
                                  f"nothing is listening at {url}") from None
            raise ConnectFailed(self.station_id, url, f"cannot reach {url}: {exc}") from None
        except (WebSocketException, TimeoutError) as exc:
            raise ConnectFailed(self.station_id, url,
                                f"no OCPP handshake with {url}: {exc!r}") from None
        return WebSocketChannel(ws)

    async def _manage(self) -> None:
        attempt = 0
        while not self._closing:
            if self._offline_until is not None:
                await self._offline_until.wait()
            try:
                channel = await self._dial()
            except ConnectFailed as exc:
                self.failure = exc
                self._url_index = (self._url_index + 1) % len(self.urls)
                await asyncio.sleep(backoff_delay(attempt, self.backoff_base, self.backoff_cap,
                                                  self.rng))
                attempt += 1
                continue
            attempt = 0
            self.failure = None
            self.connections += 1
            link = Link(channel, Endpoint(self.version, handles=self._handlers().keys()),
                        self._handle_call, name=self.station_id,
                        call_timeout=self.call_timeout, stats=self.stats, log=log,
                        tap=self._tap)
            self._link = link
            runner = self._spawn(link.run(), "link")
            heartbeat: asyncio.Task[None] | None = None
            try:
                await self._boot()
                self._online.set()
                heartbeat = self._spawn(self._heartbeat(), "heartbeat")
                for c, status in self.status.items():
                    await self._status(c, status)
                await self._after_boot()
                await runner
            except (CallRejected, TimeoutError, ConnectionError):
                pass
            finally:
                self._online.clear()
                if heartbeat is not None:
                    heartbeat.cancel()
                runner.cancel()
                with contextlib.suppress(Exception):
                    await channel.close()
                self._link = None
            if not self._closing and self._offline_until is None:
                await asyncio.sleep(backoff_delay(0, self.backoff_base, self.backoff_cap,
                                                  self.rng))

    # -- calling the central system ---------------------------------------------------
    async def call(self, action: str, payload: dict[str, Any],
                   timeout: float | None = None) -> dict[str, Any]:
        """One CALL (one at a time, OCPP-J §4.1.1); raises CallRejected on CALLERROR,
        ConnectionError when not connected, TimeoutError without an answer."""
        link = self._link
        if link is None:
            raise ConnectionError("not connected")
        try:
            return await link.call(action, payload, timeout or self.call_timeout)
        except CallRejected:
            self.errors += 1
            raise

    async def _boot(self) -> None:
        while True:
            answer = await self.call("BootNotification", self.rules.boot_payload(
                self.station_id, self.firmware_version))
            self.boot_status = answer["status"]
            interval = float(answer.get("interval") or 0)
            if answer["status"] == "Accepted":
                # 1.6 §4.2 / 2.0.1 B01.FR.04: the interval is the heartbeat interval.
                if interval > 0:
                    self.heartbeat_interval = interval
                    self.config["HeartbeatInterval"] = str(int(interval))
                    self.variables["OCPPCommCtrlr.HeartbeatInterval"] = str(int(interval))
                return
            # Pending / Rejected: send nothing else; boot again after the interval.
            await asyncio.sleep(interval if interval > 0 else 10)

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_interval)
            with contextlib.suppress(CallRejected, TimeoutError, ConnectionError):
                await self.call("Heartbeat", {})

    async def _status(self, connector: int, status: str) -> None:
        self.status[connector] = status
        if not self.online:
            return  # sent again after the next boot
        with contextlib.suppress(CallRejected, TimeoutError, ConnectionError):
            await self.call("StatusNotification", self.rules.status_payload(connector, status))

    async def authorize(self, id_tag: str) -> str:
        answer = await self.call("Authorize", self.rules.authorize_payload(id_tag))
        return self.rules.authorize_status(answer)
