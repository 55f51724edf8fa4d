"""Faults a test injects into a simulated station: a dropped network, a station that
stays offline, raw frames, repeated message ids and resent StartTransactions."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import orjson

from chargers_sim.connection import CallRejected
from chargers_sim.transactions import TransactionQueue
from csms.link import ChannelClosed

__all__ = ["FaultInjection", "frame_id"]


def frame_id(text: str | bytes) -> str | None:
    """The message id of an OCPP-J frame, if one can be read."""
    try:
        frame = orjson.loads(text)
    except orjson.JSONDecodeError:
        return None
    if isinstance(frame, list) and len(frame) > 1 and isinstance(frame[1], str):
        return frame[1]
    return None


class FaultInjection(TransactionQueue):
    """What a test can do to a station beyond what firmware does by itself."""

    def _setup(self) -> None:
        super()._setup()
        self._raw_waiters: dict[str, asyncio.Future[str]] = {}

    def _tap(self, text: str | bytes) -> bool:
        """The answer to a raw frame goes to its :meth:`send_raw`, not to the endpoint."""
        if not self._raw_waiters:
            return False
        waiter = self._raw_waiters.get(frame_id(text) or "")
        if waiter is None or waiter.done():
            return False
        waiter.set_result(text if isinstance(text, str) else text.decode())
        return True

    async def drop_connection(self) -> None:
        """The network drops: the socket closes; the station reconnects by itself."""
        if self._link is not None:
            await self._link.close(1011, "dropped")

    async def go_offline(self) -> None:
        """Stay offline until :meth:`go_online`: transaction messages are queued."""
        self._offline_until = asyncio.Event()
        self._online.clear()
        if self._link is not None:
            await self._link.close(1001, "going offline")

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
        link = self._link
        if link is None:
            raise ConnectionError("not connected")
        if answer_id is None:
            answer_id = frame_id(text) or "-1"
        got: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._raw_waiters[answer_id] = got
        try:
            try:
                await link.channel.send(text)
            except ChannelClosed:
                raise ConnectionError("connection lost") from None
            self._raw_sent += 1
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
