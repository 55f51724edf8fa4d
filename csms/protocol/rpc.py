"""A sans-I/O OCPP-J RPC endpoint: text in, events and text out.

Theory of operation. One :class:`Endpoint` exists per WebSocket connection, on
either side (the central system and the simulated stations use the same
class). ``receive(text)`` turns one received message into one event:

* :class:`IncomingCall` -- a valid CALL the application must answer with
  :meth:`Endpoint.result` or :meth:`Endpoint.error`;
* :class:`SendNow` -- the endpoint answered by itself (a CALLERROR for a bad
  frame, an unknown or unsupported action or a schema violation, or the cached
  answer to a repeated message id) and the text must be sent as is;
* :class:`IncomingResult` / :class:`IncomingError` -- the answer to our one
  outstanding CALL (a malformed answer to it is an :class:`IncomingError` of the
  frame's fault: the CALL fails at once);
* :class:`Unmatched` -- something to log and drop (an answer to no pending
  call, a duplicate of a CALL still being handled, an unreadable answer).

OCPP-J 1.6 §4.1.1 / 2.0.1 §4.1.1: a sender has at most one CALL outstanding per
connection; :meth:`Endpoint.call` refuses a second one. A repeated message id
(a station that resent because our answer was lost) is not processed twice:
the stored answer is sent again (the ``ocpp`` library processes it twice) - but
only when the frame is the same one (same text, hence same action and payload).
A station that reuses a message id for another message gets that message
processed as new; while the first one is still being handled, a CALLERROR
(``GenericError``: the id is in use) rather than the answer of another action.

A message id is any string of 1 to 36 characters (OCPP-J §4.1.4), a line break
included: the reasons of the events, which are logged, quote it (``repr``), so a
station cannot write a log line of its own; it is answered with the id as sent.
"""

from __future__ import annotations

import secrets
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

from csms.protocol.errors import Fault, OcppError, error_code
from csms.protocol.frames import (
    CALL,
    Call,
    CallError,
    CallResult,
    Frame,
    FrameError,
    encode,
    encode_result,
    frame_of,
    split_frame,
)
from csms.protocol.validation import Validator
from csms.protocol.versions import OcppVersion

__all__ = [
    "Endpoint",
    "Event",
    "IncomingCall",
    "IncomingError",
    "IncomingResult",
    "SendNow",
    "Unmatched",
]


@dataclass(frozen=True, slots=True)
class IncomingCall:
    message_id: str
    action: str
    payload: dict[str, Any]
    # the frame's size in UTF-8 bytes, as received (what a station's budget of
    # transaction data is charged: csms.service.throttle)
    size: int = field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class IncomingResult:
    message_id: str
    action: str
    payload: dict[str, Any]


@dataclass(frozen=True, slots=True)
class IncomingError:
    message_id: str
    action: str
    code: str
    description: str
    details: dict[str, Any]


@dataclass(frozen=True, slots=True)
class SendNow:
    text: str
    reason: str


@dataclass(frozen=True, slots=True)
class Unmatched:
    reason: str
    frame: Frame | None = None


Event = IncomingCall | IncomingResult | IncomingError | SendNow | Unmatched


# Answers kept for repeated message ids. A sender has one CALL outstanding at a time
# and repeats the one it got no answer to, so the last few answers cover the repeats a
# connection sees (beyond them, transaction messages are idempotent in storage:
# docs/operator-guide.md, "Sessions and energy"). Each kept answer costs ~430 bytes
# (id, fingerprint, text): 16 of them were ~7 KiB on every connection up for a while.
ANSWERED_CACHE = 4


# The sets of handled actions in use: the connections of one version share one (each
# had its own copy, ~730 bytes). They come from the code's routes, a handful in all.
_HANDLED: dict[frozenset[str], frozenset[str]] = {}


def _utf8_size(text: str | bytes) -> int:
    """A frame's size in bytes: its length when ASCII (a flag CPython keeps on each str:
    no scan), else its UTF-8 encoding's."""
    if isinstance(text, bytes) or text.isascii():
        return len(text)
    return len(text.encode("utf-8", "surrogatepass"))


def _shared(handles: frozenset[str]) -> frozenset[str]:
    return _HANDLED.setdefault(handles, handles)


class Endpoint:
    """OCPP-J RPC state of one connection (see the module docstring)."""

    def __init__(
        self,
        version: OcppVersion,
        *,
        handles: Collection[str] | None = None,
        validate: bool = True,
        answered_cache: int = ANSWERED_CACHE,
    ) -> None:
        self.version = version
        self.validator = Validator(version, enabled=validate)
        # None: every known action is handled (a simulator decides per call).
        self._handles = _shared(frozenset(handles)) if handles is not None else None
        # message id -> fingerprint of the frame (its text): a repeated id is a retry
        # only when the frame is the same
        self._in_progress: dict[str, int] = {}
        # message id -> (fingerprint, answer), oldest first (a dict keeps its order)
        self._answered: dict[str, tuple[int, str]] = {}
        self._answered_cache = answered_cache
        self._pending: tuple[str, str] | None = None  # (message id, action)
        self._id_prefix = secrets.token_hex(4)
        self._counter = 0

    # -- receiving ---------------------------------------------------------
    def receive(self, text: str | bytes) -> Event:
        try:
            mtype, data = split_frame(text)
        except FrameError as exc:
            if not exc.answerable:
                return self._malformed_answer(exc)
            text = self._error_text(exc.message_id, exc.fault, exc.description)
            return SendNow(text, "bad frame")
        if mtype == CALL:
            return self._receive_call(data[1], data[2], data[3], hash(text), _utf8_size(text))
        frame = frame_of(mtype, data)
        assert not isinstance(frame, Call)
        return self._receive_answer(frame)

    def _receive_call(self, mid: str, action: str, payload: dict[str, Any], fingerprint: int,
                      size: int) -> Event:
        running = self._in_progress.get(mid)
        if running is not None:
            if running == fingerprint:
                return Unmatched(f"duplicate of message {mid!r} still being handled",
                                 Call(mid, action, payload))
            text = self._error_text(
                mid, Fault.GENERIC, f"message id {mid!r} is in use by a call still being handled")
            return SendNow(text, "message id reused while in use")
        cached = self._answered.get(mid)
        if cached is not None:
            if cached[0] == fingerprint:
                return SendNow(cached[1], f"repeated message id {mid!r}: answer sent again")
            del self._answered[mid]  # the id was reused for another message: a new one
        if not self.validator.is_known(action):
            text = self._error_text(mid, Fault.NOT_IMPLEMENTED, f"unknown action {action!r}")
            self._remember(mid, fingerprint, text)
            return SendNow(text, "unknown action")
        if self._handles is not None and action not in self._handles:
            text = self._error_text(
                mid, Fault.NOT_SUPPORTED, f"{action} is not supported by this receiver"
            )
            self._remember(mid, fingerprint, text)
            return SendNow(text, "unsupported action")
        try:
            self.validator.validate(action, payload, "request")
        except OcppError as exc:
            text = self._error_text(mid, exc.fault, exc.description)
            self._remember(mid, fingerprint, text)
            return SendNow(text, "schema violation")
        self._in_progress[mid] = fingerprint
        return IncomingCall(mid, action, payload, size)

    def _malformed_answer(self, exc: FrameError) -> Event:
        """A CALLRESULT or CALLERROR that is not well formed (a CALLERROR without its
        details, a CALLRESULT whose payload is null...). It is never answered (OCPP-J
        §4.2); when its id is our pending CALL's, that CALL fails now with the frame's
        fault, rather than waiting for its timeout for an answer that came."""
        pending = self._pending
        if pending is None or pending[0] != exc.message_id:
            return Unmatched(f"malformed answer: {exc.description}")
        self._pending = None
        mid, action = pending
        return IncomingError(mid, action, error_code(self.version, exc.fault),
                             f"malformed answer: {exc.description}", {})

    def _receive_answer(self, frame: CallResult | CallError) -> Event:
        pending = self._pending
        if pending is None or pending[0] != frame.message_id:
            return Unmatched(f"answer to no pending call ({frame.message_id!r})", frame)
        self._pending = None
        mid, action = pending
        if isinstance(frame, CallError):
            return IncomingError(mid, action, frame.code, frame.description, frame.details)
        try:
            self.validator.validate(action, frame.payload, "response")
        except OcppError as exc:
            code = error_code(self.version, exc.fault)
            return IncomingError(mid, action, code, f"invalid response: {exc.description}", {})
        return IncomingResult(mid, action, frame.payload)

    # -- answering ---------------------------------------------------------
    def result(self, message_id: str, payload: dict[str, Any]) -> str:
        text = encode_result(message_id, payload)
        self._finish(message_id, text)
        return text

    def error(self, message_id: str, exc: OcppError, *, remember: bool = True) -> str:
        """A CALLERROR for a call; ``remember=False`` for a transient failure (nothing was
        stored): a repeat of the message is then handled anew, not answered from memory."""
        text = self._error_text(message_id, exc.fault, exc.description, exc.details)
        if remember:
            self._finish(message_id, text)
        else:
            self._in_progress.pop(message_id, None)
        return text

    def _finish(self, message_id: str, text: str) -> None:
        fingerprint = self._in_progress.pop(message_id, None)
        if fingerprint is not None:
            self._remember(message_id, fingerprint, text)

    def _remember(self, message_id: str, fingerprint: int, text: str) -> None:
        self._answered[message_id] = (fingerprint, text)
        if len(self._answered) > self._answered_cache:
            del self._answered[next(iter(self._answered))]

    def _error_text(
        self, message_id: str, fault: Fault, description: str,
        details: dict[str, Any] | None = None,
    ) -> str:
        code = error_code(self.version, fault)
        return encode(CallError(message_id, code, description, details or {}))

    # -- calling -----------------------------------------------------------
    @property
    def pending(self) -> tuple[str, str] | None:
        """(message id, action) of our outstanding CALL, if any."""
        return self._pending

    def call(self, action: str, payload: dict[str, Any]) -> tuple[str, str]:
        """Start a CALL: returns (message id, text to send).

        Raises RuntimeError while another CALL is outstanding and
        :class:`OcppError` if ``payload`` violates the schema (we never send
        what the other side would have to reject).
        """
        if self._pending is not None:
            raise RuntimeError(f"a CALL is already outstanding ({self._pending[1]})")
        self.validator.validate(action, payload, "request")
        self._counter += 1
        mid = f"{self._id_prefix}-{self._counter}"
        self._pending = (mid, action)
        return mid, encode(Call(mid, action, payload))

    def abandon(self, message_id: str) -> None:
        """Forget an outstanding CALL whose answer did not come in time."""
        if self._pending is not None and self._pending[0] == message_id:
            self._pending = None
