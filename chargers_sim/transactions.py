"""A simulated station's charging sessions and its queue of transaction messages.

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
import contextlib
from collections import deque
from datetime import UTC, datetime
from typing import Any

from chargers_sim.connection import CallRejected, StationCore, log
from chargers_sim.meter import power_curve_w
from chargers_sim.session import CompletedSession, Session, TxMessage


class StartRefused(RuntimeError):
    """The station would not start a transaction for the tag (e.g. 2.0.1 C16: a master
    pass starts none)."""

__all__ = ["TransactionQueue"]


class TransactionQueue(StationCore):
    """Sessions and the transaction message queue of a simulated station."""

    def _setup(self) -> None:
        super()._setup()
        self.limit_w: dict[int, float] = {}  # charging profile caps per connector (0 = all)
        self.available = True
        self.completed: list[CompletedSession] = []
        self._queue: deque[TxMessage] = deque()
        self._queue_changed = asyncio.Event()
        self._sessions: dict[int, Session] = {}
        self._last_start: dict[str, Any] | None = None
        self.shown_cost: dict[str, float] = {}  # transaction -> the cost on the display

    @property
    def pending_messages(self) -> int:
        return len(self._queue)

    async def drain(self, timeout: float = 60.0) -> None:
        """Wait until every queued transaction message was delivered."""
        async with asyncio.timeout(timeout):
            while self._queue:
                self._queue_changed.clear()
                await self._queue_changed.wait()

    async def _before_close(self) -> None:
        for s in list(self._sessions.values()):
            if s.task is not None:
                s.task.cancel()

    # -- the transaction message queue ---------------------------------------------
    def _enqueue(self, action: str, payload: dict[str, Any], session: Session) -> None:
        self._queue.append(TxMessage(action, payload, session))
        self._queue_changed.set()

    async def _send_queue(self) -> None:
        while True:
            while not self._queue:
                self._queue_changed.clear()
                await self._queue_changed.wait()
            await self._online.wait()
            msg = self._queue[0]
            self.rules.before_sending(msg)
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
            self.rules.delivered(self, msg, answer)

    # -- sessions ---------------------------------------------------------------------
    def _signed_reading(self, s: Session, context: str) -> dict[str, str] | None:
        """The meter's signed OCMF reading at the begin and end of a session, if it signs."""
        if self.signer is None or context not in ("Transaction.Begin", "Transaction.End"):
            return None
        s.pagination += 1
        # a meter per connector (an Eichrecht meter measures one), each its own serial and
        # register, signing with the station's one key: the central system tells a
        # connector's readings from another's by the serial
        serial = self.signer.serial if s.connector == 1 \
            else f"{self.signer.serial}-{s.connector}"
        container = self.signer.container(
            station_id=self.station_id, id_tag=s.id_tag,
            register_wh=self.meters[s.connector].register_wh, at=datetime.now(UTC),
            kind="B" if context == "Transaction.Begin" else "E", pagination=s.pagination,
            serial=serial)
        return self.signer.signed_meter_value(container)

    def _sampled(self, s: Session, context: str, *, extra: bool) -> list[dict[str, Any]]:
        return self.rules.sampled(self.meters[s.connector], context, extra=extra,
                                  signed=self._signed_reading(s, context))

    async def start_session(self, connector: int = 1, id_tag: str = "SIMTAG",
                            *, authorize: bool = True, remote_start_id: int | None = None,
                            reservation_id: int | None = None) -> None:
        """Plug in, authorize, start charging; meter values follow every interval."""
        if connector in self._sessions:
            raise RuntimeError(f"connector {connector} is already charging")
        if authorize and self.online:
            with contextlib.suppress(CallRejected, TimeoutError, ConnectionError):
                await self.authorize(id_tag)
            if self.refuses_start(id_tag):
                raise StartRefused(f"{id_tag} may not start a transaction here")
        loop = asyncio.get_running_loop()
        meter = self.meters[connector]
        s = Session(connector, id_tag, meter.register_wh, loop.time(),
                    reservation_id=reservation_id, token_type=self._token_type(id_tag))
        self._sessions[connector] = s
        await self._status(connector, "Preparing")
        self.rules.start_transaction(self, s, remote_start_id)
        await self._status(connector, "Charging")
        s.task = self._spawn(self._meter_loop(s), f"meter-{connector}")

    async def _meter_loop(self, s: Session) -> None:
        loop = asyncio.get_running_loop()
        last = loop.time()
        while True:
            await asyncio.sleep(self.meter_interval)
            now = loop.time()
            self._advance(s, now - last)
            last = now
            self._enqueue_meter(s)

    def _advance(self, s: Session, seconds: float) -> None:
        loop_elapsed = asyncio.get_running_loop().time() - s.started
        limit = self.cap_w(s.connector)
        # compressed time: one real second of a test counts as one minute of charging
        power = power_curve_w(loop_elapsed * 60, self.power_w, limit)
        self.meters[s.connector].advance(power, seconds * 60)

    def cap_w(self, connector: int) -> float | None:
        """The cap on the connector's charging power: its charging profile's (or the
        station's, connector 0), None without one."""
        return self.limit_w.get(connector, self.limit_w.get(0))

    def _enqueue_meter(self, s: Session) -> None:
        self.rules.meter_values(self, s)

    def _token_type(self, id_tag: str) -> str:
        """How the tag was presented (2.0.1 IdTokenEnumType)."""
        return "ISO14443"

    def refuses_start(self, id_tag: str) -> bool:
        """Whether the station starts no transaction for this (authorized) tag."""
        return False

    async def stop_session(self, connector: int = 1, reason: str = "Local",
                           stop_tag: str | None = None) -> CompletedSession:
        s = self._sessions.pop(connector)
        s.stop_tag = stop_tag
        if s.task is not None:
            s.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await s.task
        loop = asyncio.get_running_loop()
        self._advance(s, min(self.meter_interval, loop.time() - s.started))
        meter = self.meters[connector]
        await self._status(connector, "Finishing")
        self.rules.stop_transaction(self, s, reason)
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
