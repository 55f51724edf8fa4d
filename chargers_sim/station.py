"""A simulated charging station that behaves like firmware, for OCPP 1.6-J and 2.0.1.

Theory of operation. ``start()`` runs the connection manager: connect (HTTP
Basic auth when a password is set), BootNotification until Accepted (Pending
and Rejected are honoured: wait the interval, boot again), then heartbeats at
the interval the central system sent, and StatusNotification for every
connector. When the socket drops, it reconnects with exponential backoff and
jitter.

Transaction messages (1.6 StartTransaction / StopTransaction / transaction
MeterValues, 2.0.1 TransactionEvent) go through one FIFO queue that survives
disconnections: while offline they are queued and delivered in order after
reconnecting (2.0.1 ``offline: true``, seqNo continuous; in 1.6 a queued Stop
or MeterValues gets the real transactionId once StartTransaction is
confirmed). A message that times out or is answered with a CALLERROR is retried
with the same payload up to ``message_attempts`` times
(1.6 TransactionMessageAttempts/RetryInterval, 2.0.1 OCPPCommCtrlr
MessageAttempts/MessageAttemptInterval); each attempt uses a new message id, as
firmware does.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import random
import uuid
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus, WebSocketException

from chargers_sim.meter import Meter, power_curve_w
from chargers_sim.ocmf import MeterSigner
from csms.protocol import (
    Endpoint,
    IncomingCall,
    IncomingError,
    IncomingResult,
    OcppError,
    OcppVersion,
    SendNow,
)

__all__ = ["CallRejected", "CompletedSession", "Station", "backoff_delay"]

log = logging.getLogger("chargers_sim")


class CallRejected(Exception):
    def __init__(self, code: str, description: str) -> None:
        super().__init__(f"{code}: {description}")
        self.code = code


def backoff_delay(attempt: int, base: float, cap: float, rng: random.Random) -> float:
    """Exponential backoff with full jitter: uniform in [0, min(cap, base * 2^attempt)]."""
    return rng.uniform(0, min(cap, base * (2 ** attempt)))


def _now() -> str:
    at = datetime.now(UTC)
    return at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z"


@dataclass
class CompletedSession:
    connector: int
    id_tag: str
    transaction_id: str | None
    meter_start_wh: int
    meter_stop_wh: int
    reason: str

    @property
    def energy_wh(self) -> int:
        return self.meter_stop_wh - self.meter_start_wh


@dataclass
class _Session:
    connector: int
    id_tag: str
    meter_start_wh: int
    started: float  # loop time
    transaction_id: str | None = None  # 1.6: known once StartTransaction is answered
    seq_no: int = 0
    confirmed: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None
    stop_reason: str = "Local"
    pagination: int = 0


@dataclass
class _TxMessage:
    action: str
    payload: dict[str, Any]
    session: _Session
    attempts: int = 0


class Station:
    """One simulated station (see the module docstring)."""

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
    ) -> None:
        # the central system's address, then others to try in turn when it cannot be
        # reached (several nodes without a load balancer in front)
        self.urls = [u.rstrip("/") for u in (url, *fallback_urls)]
        self._url_index = 0
        self.station_id = station_id
        self.version = version if isinstance(version, OcppVersion) else OcppVersion.parse(version)
        self.password = password
        self.power_w = power_kw * 1000
        self.meter_interval = meter_interval
        self.rng = random.Random(seed)
        self.call_timeout = call_timeout
        self.message_attempts = message_attempts
        self.retry_interval = retry_interval
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
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
        self.limit_w: dict[int, float] = {}  # charging profile caps per connector (0 = all)
        self.local_list_version = 0
        self.local_list: dict[str, str] = {}
        self.available = True
        self.reply_delay = 0.0
        # observable state for tests and the summary
        self.completed: list[CompletedSession] = []
        self.received_calls: list[tuple[str, dict[str, Any]]] = []
        self.messages_sent = 0
        self.errors = 0
        self.boot_status: str | None = None
        self.heartbeat_interval = 300.0
        self.latencies: list[float] = []
        # connection state
        self._ws: ClientConnection | None = None
        self._endpoint: Endpoint | None = None
        self._answer: asyncio.Future[IncomingResult | IncomingError] | None = None
        self._call_lock = asyncio.Lock()
        self._online = asyncio.Event()  # connected and booted
        self._offline_until: asyncio.Event | None = None  # set while forced offline
        self._queue: deque[_TxMessage] = deque()
        self._queue_changed = asyncio.Event()
        self._sessions: dict[int, _Session] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._manager: asyncio.Task[None] | None = None
        self._closing = False
        self._raw_waiters: dict[str, asyncio.Future[str]] = {}
        self._last_start: dict[str, Any] | None = None
        self.connections = 0

    # -- task ownership ---------------------------------------------------------
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

    # -- lifecycle ----------------------------------------------------------------
    async def start(self, timeout: float = 30.0) -> None:
        """Connect and boot; returns once the central system accepted the boot."""
        if self._manager is None:
            self._manager = self._spawn(self._manage(), "manager")
            self._spawn(self._send_queue(), "tx-queue")
        async with asyncio.timeout(timeout):
            await self._online.wait()

    async def close(self) -> None:
        self._closing = True
        for s in list(self._sessions.values()):
            if s.task is not None:
                s.task.cancel()
        for task in list(self._tasks):
            task.cancel()
        if self._ws is not None:
            with contextlib.suppress(Exception):
                await self._ws.close()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    @property
    def online(self) -> bool:
        return self._online.is_set()

    @property
    def pending_messages(self) -> int:
        return len(self._queue)

    async def drain(self, timeout: float = 60.0) -> None:
        """Wait until every queued transaction message was delivered."""
        async with asyncio.timeout(timeout):
            while self._queue:
                self._queue_changed.clear()
                await self._queue_changed.wait()

    @property
    def url(self) -> str:
        """The address this station connects (or last connected) to."""
        return self.urls[self._url_index]

    def _headers(self) -> dict[str, str]:
        if self.password is None:
            return {}
        token = base64.b64encode(f"{self.station_id}:{self.password}".encode()).decode()
        return {"Authorization": f"Basic {token}"}

    async def _manage(self) -> None:
        attempt = 0
        while not self._closing:
            if self._offline_until is not None:
                await self._offline_until.wait()
            try:
                ws = await connect(
                    f"{self.url}/{quote(self.station_id, safe='')}",
                    subprotocols=[self.version.value],  # type: ignore[list-item]
                    additional_headers=self._headers(), open_timeout=10,
                    ping_interval=None, max_size=2**20,
                )
            except (OSError, WebSocketException, TimeoutError) as exc:
                if isinstance(exc, InvalidStatus) and exc.response.status_code in (401, 404):
                    log.warning("! %s refused: HTTP %d", self.station_id,
                                exc.response.status_code)
                self._url_index = (self._url_index + 1) % len(self.urls)
                await asyncio.sleep(backoff_delay(attempt, self.backoff_base, self.backoff_cap,
                                                  self.rng))
                attempt += 1
                continue
            attempt = 0
            self.connections += 1
            self._ws = ws
            self._endpoint = Endpoint(self.version, handles=self._handlers().keys())
            reader = self._spawn(self._read(ws), "reader")
            try:
                await self._boot()
                self._online.set()
                heartbeat = self._spawn(self._heartbeat(), "heartbeat")
                for c, status in self.status.items():
                    await self._status(c, status)
                await reader
                heartbeat.cancel()
            except (ConnectionClosed, CallRejected, TimeoutError, ConnectionError):
                pass
            finally:
                self._online.clear()
                reader.cancel()
                with contextlib.suppress(Exception):
                    await ws.close()
                self._ws = None
            if not self._closing and self._offline_until is None:
                await asyncio.sleep(backoff_delay(0, self.backoff_base, self.backoff_cap,
                                                  self.rng))

    async def _read(self, ws: ClientConnection) -> None:
        endpoint = self._endpoint
        assert endpoint is not None
        try:
            async for text in ws:
                if self._raw_waiters:
                    waiter = self._raw_waiters.get(_frame_id(text) or "")
                    if waiter is not None and not waiter.done():
                        waiter.set_result(text if isinstance(text, str) else text.decode())
                        continue
                event = endpoint.receive(text)
                if isinstance(event, IncomingCall):
                    self._spawn(self._answer_call(ws, endpoint, event), "answer")
                elif isinstance(event, IncomingResult | IncomingError):
                    if self._answer is not None and not self._answer.done():
                        self._answer.set_result(event)
                elif isinstance(event, SendNow):
                    await ws.send(event.text)
        except ConnectionClosed:
            pass
        finally:
            if self._answer is not None and not self._answer.done():
                self._answer.set_exception(ConnectionError("connection lost"))

    # -- calling the central system ---------------------------------------------------
    async def call(self, action: str, payload: dict[str, Any],
                   timeout: float | None = None) -> dict[str, Any]:
        """One CALL (one at a time, OCPP-J §4.1.1); raises CallRejected on CALLERROR."""
        async with self._call_lock:
            ws, endpoint = self._ws, self._endpoint
            if ws is None or endpoint is None:
                raise ConnectionError("not connected")
            mid, text = endpoint.call(action, payload)
            loop = asyncio.get_running_loop()
            self._answer = loop.create_future()
            started = loop.time()
            answered = False
            try:
                await ws.send(text)
                self.messages_sent += 1
                async with asyncio.timeout(timeout or self.call_timeout):
                    event = await self._answer
                answered = True
            except ConnectionClosed:
                raise ConnectionError("connection lost") from None
            finally:
                self._answer = None
                if not answered:
                    endpoint.abandon(mid)  # timed out or lost: the slot is free again
            self.latencies.append(loop.time() - started)
        if isinstance(event, IncomingError):
            self.errors += 1
            raise CallRejected(event.code, event.description)
        return event.payload

    async def _boot(self) -> None:
        while True:
            if self.version is OcppVersion.V16:
                payload: dict[str, Any] = {
                    "chargePointVendor": "voltledger", "chargePointModel": "sim-wallbox",
                    "firmwareVersion": "sim-1.0", "chargePointSerialNumber": self.station_id[-25:],
                }
            else:
                payload = {"reason": "PowerUp", "chargingStation": {
                    "vendorName": "voltledger", "model": "sim-wallbox",
                    "firmwareVersion": "sim-1.0",
                    "serialNumber": self.station_id[-25:]}}
            answer = await self.call("BootNotification", payload)
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
        if self.version is OcppVersion.V16:
            payload: dict[str, Any] = {"connectorId": connector, "errorCode": "NoError",
                                       "status": status, "timestamp": _now()}
        else:
            wire = {"Preparing": "Occupied", "Charging": "Occupied", "Finishing": "Occupied",
                    "SuspendedEV": "Occupied"}.get(status, status)
            payload = {"timestamp": _now(), "connectorStatus": wire, "evseId": connector,
                       "connectorId": 1}
        with contextlib.suppress(CallRejected, TimeoutError, ConnectionError):
            await self.call("StatusNotification", payload)

    async def authorize(self, id_tag: str) -> str:
        if self.version is OcppVersion.V16:
            answer = await self.call("Authorize", {"idTag": id_tag})
            return str(answer["idTagInfo"]["status"])
        answer = await self.call("Authorize", {"idToken": {"idToken": id_tag,
                                                           "type": "ISO14443"}})
        return str(answer["idTokenInfo"]["status"])

    # -- the transaction message queue ---------------------------------------------
    def _enqueue(self, action: str, payload: dict[str, Any], session: _Session) -> None:
        self._queue.append(_TxMessage(action, payload, session))
        self._queue_changed.set()

    async def _send_queue(self) -> None:
        while True:
            while not self._queue:
                self._queue_changed.clear()
                await self._queue_changed.wait()
            await self._online.wait()
            msg = self._queue[0]
            if self.version is OcppVersion.V16 and msg.action != "StartTransaction":
                # 1.6: a message queued before the Start was answered gets the real id
                msg.payload["transactionId"] = int(msg.session.transaction_id or 0)
            try:
                answer = await self.call(msg.action, msg.payload)
            except ConnectionError:
                await asyncio.sleep(0.05)
                continue  # delivered after the reconnection, same payload
            except (TimeoutError, CallRejected):
                msg.attempts += 1
                if msg.attempts >= self.message_attempts:
                    log.error("! %s dropped %s after %d attempts", self.station_id,
                              msg.action, msg.attempts)
                    self.errors += 1
                    self._queue.popleft()
                    self._queue_changed.set()
                else:
                    await asyncio.sleep(self.retry_interval * msg.attempts)
                continue
            self._queue.popleft()
            self._queue_changed.set()
            if msg.action == "StartTransaction":
                msg.session.transaction_id = str(answer["transactionId"])
                self._last_start = dict(msg.payload)
                msg.session.confirmed.set()
            elif msg.action == "TransactionEvent" and msg.payload["eventType"] == "Started":
                msg.session.confirmed.set()

    # -- sessions ---------------------------------------------------------------------
    def _sampled(self, s: _Session, context: str, *, extra: bool) -> list[dict[str, Any]]:
        meter = self.meters[s.connector]
        wh = meter.register_wh
        values: list[dict[str, Any]] = []
        if self.version is OcppVersion.V16:
            values.append({"value": str(wh), "context": context, "unit": "Wh",
                           "measurand": "Energy.Active.Import.Register", "location": "Outlet"})
            if extra:
                values.append({"value": f"{meter.last_power_w:.1f}", "context": context,
                               "unit": "W", "measurand": "Power.Active.Import"})
                for phase in ("L1", "L2", "L3"):
                    values.append({"value": f"{meter.current_a():.2f}", "context": context,
                                   "unit": "A", "measurand": "Current.Import", "phase": phase})
            if self.signer is not None and context in ("Transaction.Begin", "Transaction.End"):
                s.pagination += 1
                container = self.signer.container(
                    station_id=self.station_id, id_tag=s.id_tag, register_wh=wh,
                    at=datetime.now(UTC), kind="B" if context == "Transaction.Begin" else "E",
                    pagination=s.pagination)
                values.append({
                    "value": orjson.dumps(self.signer.signed_meter_value(container)).decode(),
                    "context": context, "format": "SignedData",
                    "measurand": "Energy.Active.Import.Register", "unit": "Wh"})
            return values
        energy: dict[str, Any] = {"value": wh, "context": context,
                                  "measurand": "Energy.Active.Import.Register",
                                  "unitOfMeasure": {"unit": "Wh", "multiplier": 0}}
        if self.signer is not None and context in ("Transaction.Begin", "Transaction.End"):
            s.pagination += 1
            container = self.signer.container(
                station_id=self.station_id, id_tag=s.id_tag, register_wh=wh,
                at=datetime.now(UTC), kind="B" if context == "Transaction.Begin" else "E",
                pagination=s.pagination)
            energy["signedMeterValue"] = self.signer.signed_meter_value(container)
        values.append(energy)
        if extra:
            values.append({"value": round(meter.last_power_w, 1), "context": context,
                           "measurand": "Power.Active.Import",
                           "unitOfMeasure": {"unit": "W"}})
            for phase in ("L1", "L2", "L3"):
                values.append({"value": round(meter.current_a(), 2), "context": context,
                               "measurand": "Current.Import", "phase": phase,
                               "unitOfMeasure": {"unit": "A"}})
        return values

    def _tx_event(self, s: _Session, event_type: str, trigger: str,
                  **extra: Any) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "eventType": event_type, "timestamp": _now(), "triggerReason": trigger,
            "seqNo": s.seq_no, "transactionInfo": {"transactionId": s.transaction_id},
            **extra,
        }
        s.seq_no += 1
        if not self.online:
            payload["offline"] = True  # 2.0.1 E04: generated while offline
        return payload

    async def start_session(self, connector: int = 1, id_tag: str = "SIMTAG",
                            *, authorize: bool = True, remote_start_id: int | None = None) -> None:
        """Plug in, authorize, start charging; meter values follow every interval."""
        if connector in self._sessions:
            raise RuntimeError(f"connector {connector} is already charging")
        if authorize and self.online:
            with contextlib.suppress(CallRejected, TimeoutError, ConnectionError):
                await self.authorize(id_tag)
        loop = asyncio.get_running_loop()
        meter = self.meters[connector]
        s = _Session(connector, id_tag, meter.register_wh, loop.time())
        self._sessions[connector] = s
        await self._status(connector, "Preparing")
        if self.version is OcppVersion.V16:
            self._enqueue("StartTransaction", {
                "connectorId": connector, "idTag": id_tag, "meterStart": meter.register_wh,
                "timestamp": _now()}, s)
            if self.signer is not None:
                # an Eichrecht meter's signed begin reading follows the start (OCA 1.6 note)
                self._enqueue("MeterValues", {
                    "connectorId": connector, "transactionId": 0,
                    "meterValue": [{"timestamp": _now(), "sampledValue": self._sampled(
                        s, "Transaction.Begin", extra=False)}]}, s)
        else:
            s.transaction_id = uuid.uuid4().hex[:20]
            info: dict[str, Any] = {"transactionId": s.transaction_id,
                                    "chargingState": "Charging"}
            if remote_start_id is not None:
                info["remoteStartId"] = remote_start_id
            self._enqueue("TransactionEvent", self._tx_event(
                s, "Started", "RemoteStart" if remote_start_id is not None else "Authorized",
                transactionInfo=info, idToken={"idToken": id_tag, "type": "ISO14443"},
                evse={"id": connector, "connectorId": 1},
                meterValue=[{"timestamp": _now(),
                             "sampledValue": self._sampled(s, "Transaction.Begin", extra=False)}],
            ), s)
        await self._status(connector, "Charging")
        s.task = self._spawn(self._meter_loop(s), f"meter-{connector}")

    async def _meter_loop(self, s: _Session) -> None:
        loop = asyncio.get_running_loop()
        last = loop.time()
        while True:
            await asyncio.sleep(self.meter_interval)
            now = loop.time()
            self._advance(s, now - last)
            last = now
            self._enqueue_meter(s)

    def _advance(self, s: _Session, seconds: float) -> None:
        loop_elapsed = asyncio.get_running_loop().time() - s.started
        limit = self.limit_w.get(s.connector, self.limit_w.get(0))
        # compressed time: one real second of a test counts as one minute of charging
        power = power_curve_w(loop_elapsed * 60, self.power_w, limit)
        self.meters[s.connector].advance(power, seconds * 60)

    def _enqueue_meter(self, s: _Session) -> None:
        sampled = self._sampled(s, "Sample.Periodic", extra=True)
        if self.version is OcppVersion.V16:
            self._enqueue("MeterValues", {
                "connectorId": s.connector, "transactionId": 0,
                "meterValue": [{"timestamp": _now(), "sampledValue": sampled}]}, s)
        else:
            self._enqueue("TransactionEvent", self._tx_event(
                s, "Updated", "MeterValuePeriodic",
                meterValue=[{"timestamp": _now(), "sampledValue": sampled}]), s)

    async def stop_session(self, connector: int = 1, reason: str = "Local") -> CompletedSession:
        s = self._sessions.pop(connector)
        if s.task is not None:
            s.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await s.task
        loop = asyncio.get_running_loop()
        self._advance(s, min(self.meter_interval, loop.time() - s.started))
        meter = self.meters[connector]
        await self._status(connector, "Finishing")
        if self.version is OcppVersion.V16:
            self._enqueue("StopTransaction", {
                "transactionId": 0, "meterStop": meter.register_wh, "timestamp": _now(),
                "idTag": s.id_tag, "reason": reason,
                "transactionData": [{"timestamp": _now(), "sampledValue": self._sampled(
                    s, "Transaction.End", extra=False)}]}, s)
        else:
            trigger = {"Remote": "RemoteStop", "EVDisconnected": "EVCommunicationLost"}.get(
                reason, "StopAuthorized")
            self._enqueue("TransactionEvent", self._tx_event(
                s, "Ended", trigger,
                transactionInfo={"transactionId": s.transaction_id, "chargingState": "Idle",
                                 "stoppedReason": reason},
                meterValue=[{"timestamp": _now(), "sampledValue": self._sampled(
                    s, "Transaction.End", extra=False)}]), s)
        done = CompletedSession(connector, s.id_tag, s.transaction_id, s.meter_start_wh,
                                meter.register_wh, reason)
        self.completed.append(done)
        await self._status(connector, "Available")
        return done

    def session_transaction_id(self, connector: int = 1) -> str | None:
        s = self._sessions.get(connector)
        return None if s is None else s.transaction_id

    async def run_sessions(self, count: int, seconds: float, id_tag: str = "SIMTAG") -> None:
        """Charge ``count`` times on the first connector, ``seconds`` each."""
        for _ in range(count):
            await self.start_session(1, id_tag)
            await asyncio.sleep(seconds)
            await self.stop_session(1)

    # -- faults -------------------------------------------------------------------------
    async def drop_connection(self) -> None:
        """The network drops: the socket closes; the station reconnects by itself."""
        if self._ws is not None:
            await self._ws.close(1011, "dropped")

    async def go_offline(self) -> None:
        """Stay offline until :meth:`go_online`: transaction messages are queued."""
        self._offline_until = asyncio.Event()
        self._online.clear()
        if self._ws is not None:
            await self._ws.close(1001, "going offline")

    def go_online(self) -> None:
        if self._offline_until is not None:
            waiter, self._offline_until = self._offline_until, None
            waiter.set()

    async def send_raw(self, text: str | bytes, answer_id: str | None = None,
                       timeout: float = 5.0) -> str | None:
        """Send any frame as is; return the central system's raw answer to it (or None).

        The answer is the message carrying ``answer_id`` (default: the frame's own
        message id, or "-1" when it has none that can be read).
        """
        ws = self._ws
        if ws is None:
            raise ConnectionError("not connected")
        if answer_id is None:
            answer_id = _frame_id(text) or "-1"
        got: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._raw_waiters[answer_id] = got
        try:
            await ws.send(text)
            self.messages_sent += 1
            async with asyncio.timeout(timeout):
                return await got
        except TimeoutError:
            return None
        finally:
            self._raw_waiters.pop(answer_id, None)

    async def send_duplicate(self, action: str, payload: dict[str, Any]) -> tuple[Any, Any]:
        """Send one CALL twice with the same message id; return both raw answers (parsed)."""
        mid = f"dup-{uuid.uuid4().hex[:12]}"
        text = orjson.dumps([2, mid, action, payload]).decode()
        first = await self.send_raw(text)
        second = await self.send_raw(text)
        return (None if first is None else orjson.loads(first),
                None if second is None else orjson.loads(second))

    async def resend_last_start(self) -> int:
        """Resend the last acknowledged 1.6 StartTransaction, as firmware does after losing
        the answer; return the transactionId the central system gives the retry."""
        if self._last_start is None:
            raise RuntimeError("no StartTransaction was acknowledged yet")
        text = orjson.dumps([2, f"retry-{uuid.uuid4().hex[:12]}", "StartTransaction",
                             self._last_start]).decode()
        answer = await self.send_raw(text)
        if answer is None:
            raise TimeoutError("no answer to the resent StartTransaction")
        frame = orjson.loads(answer)
        if frame[0] != 3:
            raise CallRejected(frame[2], frame[3])
        return int(frame[2]["transactionId"])

    # -- answering the central system ---------------------------------------------------
    def _handlers(self) -> dict[str, Any]:
        if self.version is OcppVersion.V16:
            return {
                "RemoteStartTransaction": self._remote_start_16,
                "RemoteStopTransaction": self._remote_stop_16,
                "Reset": self._reset,
                "ChangeAvailability": self._change_availability,
                "TriggerMessage": self._trigger,
                "GetConfiguration": self._get_configuration,
                "ChangeConfiguration": self._change_configuration,
                "SetChargingProfile": self._set_profile,
                "ClearChargingProfile": self._clear_profile,
                "UnlockConnector": self._unlock,
                "SendLocalList": self._send_local_list,
                "GetLocalListVersion": self._get_local_list_version,
                "DataTransfer": self._data_transfer,
            }
        return {
            "RequestStartTransaction": self._remote_start_201,
            "RequestStopTransaction": self._remote_stop_201,
            "Reset": self._reset,
            "ChangeAvailability": self._change_availability,
            "TriggerMessage": self._trigger,
            "GetVariables": self._get_variables,
            "SetVariables": self._set_variables,
            "SetChargingProfile": self._set_profile,
            "ClearChargingProfile": self._clear_profile,
            "UnlockConnector": self._unlock,
            "SendLocalList": self._send_local_list,
            "GetLocalListVersion": self._get_local_list_version,
            "DataTransfer": self._data_transfer,
        }

    async def _answer_call(self, ws: ClientConnection, endpoint: Endpoint,
                           call: IncomingCall) -> None:
        self.received_calls.append((call.action, call.payload))
        if self.reply_delay:
            await asyncio.sleep(self.reply_delay)
        handler = self._handlers()[call.action]
        try:
            response = handler(call.payload)
        except OcppError as exc:
            text = endpoint.error(call.message_id, exc)
        else:
            text = endpoint.result(call.message_id, response)
        with contextlib.suppress(ConnectionClosed):
            await ws.send(text)

    def _free_connector(self, wanted: int | None) -> int | None:
        candidates = [wanted] if wanted else list(self.meters)
        for c in candidates:
            if c in self.meters and c not in self._sessions and self.available:
                return c
        return None

    def _remote_start(self, id_tag: str, connector: int | None,
                      remote_start_id: int | None = None) -> str:
        c = self._free_connector(connector)
        if c is None:
            return "Rejected"
        key = ("AuthorizeRemoteTxRequests" if self.version is OcppVersion.V16 else "")
        authorize = self.config.get(key, "true") == "true" if key else (
            self.variables.get("AuthCtrlr.AuthorizeRemoteStart", "true") == "true")
        self._spawn(self.start_session(c, id_tag, authorize=authorize,
                                       remote_start_id=remote_start_id), "remote-start")
        return "Accepted"

    def _remote_start_16(self, p: dict[str, Any]) -> dict[str, Any]:
        return {"status": self._remote_start(p["idTag"], p.get("connectorId"))}

    def _remote_start_201(self, p: dict[str, Any]) -> dict[str, Any]:
        return {"status": self._remote_start(p["idToken"]["idToken"], p.get("evseId"),
                                             p["remoteStartId"])}

    def _remote_stop(self, transaction_id: str) -> str:
        for c, s in self._sessions.items():
            if s.transaction_id == transaction_id:
                self._spawn(self.stop_session(c, "Remote"), "remote-stop")
                return "Accepted"
        return "Rejected"

    def _remote_stop_16(self, p: dict[str, Any]) -> dict[str, Any]:
        return {"status": self._remote_stop(str(p["transactionId"]))}

    def _remote_stop_201(self, p: dict[str, Any]) -> dict[str, Any]:
        return {"status": self._remote_stop(p["transactionId"])}

    def _reset(self, p: dict[str, Any]) -> dict[str, Any]:
        hard = p["type"] in ("Hard", "Immediate")

        async def reboot() -> None:
            await asyncio.sleep(0.05)  # the answer goes out first
            for c in list(self._sessions):
                await self.stop_session(c, "HardReset" if hard else "SoftReset")
            await self.drop_connection()

        self._spawn(reboot(), "reset")
        return {"status": "Accepted"}

    def _change_availability(self, p: dict[str, Any]) -> dict[str, Any]:
        word = p.get("type") or p.get("operationalStatus")
        self.available = word == "Operative"
        status = "Available" if self.available else "Unavailable"
        if self._sessions:
            return {"status": "Scheduled"}  # 1.6 §5.2 / 2.0.1 G03: after the session
        for c in self.meters:
            self._spawn(self._status(c, status), "availability")
        return {"status": "Accepted"}

    def _trigger(self, p: dict[str, Any]) -> dict[str, Any]:
        what = p["requestedMessage"]

        async def heartbeat() -> None:
            await self.call("Heartbeat", {})

        async def statuses() -> None:
            for c, st in list(self.status.items()):
                await self._status(c, st)

        if what == "Heartbeat":
            send: Any = heartbeat
        elif what == "StatusNotification":
            send = statuses
        elif what == "MeterValues" and self._sessions:
            s = next(iter(self._sessions.values()))
            self._enqueue_meter(s)
            return {"status": "Accepted"}
        else:
            return {"status": "NotImplemented"}

        async def later() -> None:
            await asyncio.sleep(0.05)  # the answer to TriggerMessage goes out first
            with contextlib.suppress(CallRejected, TimeoutError, ConnectionError):
                await send()

        self._spawn(later(), "trigger")
        return {"status": "Accepted"}

    def _get_configuration(self, p: dict[str, Any]) -> dict[str, Any]:
        keys = p.get("key") or list(self.config)
        known = [{"key": k, "readonly": False, "value": self.config[k]}
                 for k in keys if k in self.config]
        unknown = [k for k in keys if k not in self.config]
        out: dict[str, Any] = {"configurationKey": known}
        if unknown:
            out["unknownKey"] = unknown  # AuthorizationKey is write-only: never read back
        return out

    def _change_configuration(self, p: dict[str, Any]) -> dict[str, Any]:
        key, value = p["key"], p["value"]
        if key == "AuthorizationKey":
            self.password = value  # used from the next connection on
            return {"status": "Accepted"}
        if key not in self.config:
            return {"status": "NotSupported"}
        self.config[key] = value
        if key == "HeartbeatInterval":
            self.heartbeat_interval = float(value)
        return {"status": "Accepted"}

    def _get_variables(self, p: dict[str, Any]) -> dict[str, Any]:
        results = []
        for item in p["getVariableData"]:
            name = f"{item['component']['name']}.{item['variable']['name']}"
            result: dict[str, Any] = {"component": item["component"],
                                      "variable": item["variable"]}
            if name == "SecurityCtrlr.BasicAuthPassword":
                result["attributeStatus"] = "Rejected"  # write-only
            elif name in self.variables:
                result["attributeStatus"] = "Accepted"
                result["attributeValue"] = self.variables[name]
            else:
                result["attributeStatus"] = "UnknownVariable"
            results.append(result)
        return {"getVariableResult": results}

    def _set_variables(self, p: dict[str, Any]) -> dict[str, Any]:
        results = []
        for item in p["setVariableData"]:
            name = f"{item['component']['name']}.{item['variable']['name']}"
            status = "Accepted"
            if name == "SecurityCtrlr.BasicAuthPassword":
                self.password = item["attributeValue"]
            elif name in self.variables:
                self.variables[name] = item["attributeValue"]
                if name == "OCPPCommCtrlr.HeartbeatInterval":
                    self.heartbeat_interval = float(item["attributeValue"])
            else:
                status = "UnknownVariable"
            results.append({"attributeStatus": status, "component": item["component"],
                            "variable": item["variable"]})
        return {"setVariableResult": results}

    def _set_profile(self, p: dict[str, Any]) -> dict[str, Any]:
        if self.version is OcppVersion.V16:
            connector = int(p["connectorId"])
            schedule = p["csChargingProfiles"]["chargingSchedule"]
        else:
            connector = int(p["evseId"])
            schedule = p["chargingProfile"]["chargingSchedule"][0]
        limit = float(schedule["chargingSchedulePeriod"][0]["limit"])
        if schedule["chargingRateUnit"] == "A":
            limit = limit * 230.0 * 3  # three phases at 230 V
        self.limit_w[connector] = limit
        return {"status": "Accepted"}

    def _clear_profile(self, p: dict[str, Any]) -> dict[str, Any]:
        had = bool(self.limit_w)
        self.limit_w.clear()
        return {"status": "Accepted" if had else "Unknown"}

    def _unlock(self, p: dict[str, Any]) -> dict[str, Any]:
        return {"status": "Unlocked"}

    def _send_local_list(self, p: dict[str, Any]) -> dict[str, Any]:
        self.local_list_version = int(p.get("listVersion", p.get("versionNumber", 0)))
        self.local_list = {}
        for entry in p.get("localAuthorizationList", []):
            if "idTag" in entry:
                self.local_list[entry["idTag"]] = entry.get("idTagInfo", {}).get("status", "")
            else:
                self.local_list[entry["idToken"]["idToken"]] = entry.get(
                    "idTokenInfo", {}).get("status", "")
        return {"status": "Accepted"}

    def _get_local_list_version(self, p: dict[str, Any]) -> dict[str, Any]:
        if self.version is OcppVersion.V16:
            return {"listVersion": self.local_list_version}
        return {"versionNumber": self.local_list_version}

    def _data_transfer(self, p: dict[str, Any]) -> dict[str, Any]:
        return {"status": "UnknownVendorId"}


def _frame_id(text: str | bytes) -> str | None:
    try:
        frame = orjson.loads(text)
    except orjson.JSONDecodeError:
        return None
    if isinstance(frame, list) and len(frame) > 1 and isinstance(frame[1], str):
        return frame[1]
    return None
