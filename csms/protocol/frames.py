"""OCPP-J RPC frames: parse text into frames and encode frames into text.

OCPP-J 1.6 §4.2 / 2.0.1 §4.2: every message is a JSON array whose first element
is the message type: 2 CALL ``[2, id, action, payload]``, 3 CALLRESULT
``[3, id, payload]``, 4 CALLERROR ``[4, id, code, description, details]``
(2.0.1 also reserves 5/6, CALLRESULTERROR and SEND, in 2.1; we refuse them).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import date, datetime, time
from typing import Any

import orjson

from csms.protocol.errors import Fault

__all__ = [
    "CALL",
    "CALLERROR",
    "CALLRESULT",
    "MAX_DESCRIPTION_LENGTH",
    "MAX_ERROR_CODE_LENGTH",
    "MAX_FRAME_DEPTH",
    "MAX_JSON_DEPTH",
    "MAX_MESSAGE_ID_LENGTH",
    "Call",
    "CallError",
    "CallResult",
    "Frame",
    "FrameError",
    "dumps",
    "encode",
    "encode_result",
    "frame_of",
    "has_long_digit_run",
    "loads",
    "nested_beyond",
    "parse_frame",
    "split_frame",
]

CALL = 2
CALLRESULT = 3
CALLERROR = 4

# OCPP-J 1.6 §4.1.3 / 2.0.1 §4.1.4: message ids are strings of at most 36 characters.
MAX_MESSAGE_ID_LENGTH = 36
# 2.0.1 §4.2.3: a CALLERROR's description is at most 255 characters.
MAX_DESCRIPTION_LENGTH = 255
# The standard error codes have at most 29 characters; a received code is cut to this.
MAX_ERROR_CODE_LENGTH = 50
UNKNOWN_MESSAGE_ID = "-1"


@dataclass(frozen=True, slots=True)
class Call:
    message_id: str
    action: str
    payload: dict[str, Any]


@dataclass(frozen=True, slots=True)
class CallResult:
    message_id: str
    payload: dict[str, Any]


@dataclass(frozen=True, slots=True)
class CallError:
    message_id: str
    code: str
    description: str = ""
    details: dict[str, Any] = field(default_factory=dict)


Frame = Call | CallResult | CallError


class FrameError(Exception):
    """A frame that cannot be processed.

    ``message_id`` is the id to answer with (``"-1"`` when it could not be read,
    2.0.1 §4.2.3); ``answerable`` is False for results and errors, which are never
    answered.
    """

    def __init__(
        self, fault: Fault, description: str, message_id: str = UNKNOWN_MESSAGE_ID,
        answerable: bool = True,
    ) -> None:
        super().__init__(description)
        self.fault = fault
        self.description = description
        self.message_id = message_id
        self.answerable = answerable


# 19 digits in a row: maybe an integer beyond 64 bits, which orjson turns into a float
# (2**70 -> 1.18e21; -2**63 - 1, 19 digits, -> -9.22e18), silently changing the value a
# station sent. Found by mapping every ASCII digit to "0" and every other byte to " ",
# then looking for nineteen "0"s: ~1 us for a MeterValues frame, where the regular
# expression \d{20} took ~15 us (more than parsing it). Digits of other scripts can only
# stand in strings, which orjson reads exactly.
_DIGITS_AS_ZEROS = bytes(0x30 if 0x30 <= b <= 0x39 else 0x20 for b in range(256))
_LONG_RUN = b"0" * 19


def has_long_digit_run(text: str | bytes) -> bool:
    """Whether ``text`` holds 19 or more ASCII digits in a row."""
    raw = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else bytes(text)
    return _LONG_RUN in raw.translate(_DIGITS_AS_ZEROS)


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


# Nesting the standard library's parser is given at most. Its C parser recurses once per
# level up to the interpreter's recursion limit, which libraries raise (py_ecc, imported
# with the in-process chain, sets 100,000): deeper input then overflows the C stack and
# kills the process instead of raising. orjson stops at 1024 levels by itself.
MAX_JSON_DEPTH = 1024
# Nesting a frame may have (its array counts as one level). What orjson reads is beyond the
# interpreter's recursion limit (1,000 frames, the stack below a handler included): a 2.0.1
# payload nested ~950 levels deep (any JSON may stand in DataTransfer's data and in every
# object's customData) made the standard library's encoder, measuring it against the
# station's quota, raise RecursionError: an InternalError and a logged traceback for every
# 2 KB message. The deepest payload the 1.6 and 2.0.1 schemas describe nests 12 levels
# (2.0.1 ReportChargingProfiles); ten times that leaves room for vendors' customData.
MAX_FRAME_DEPTH = 128


def nested_beyond(text: str | bytes, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether JSON ``text`` nests arrays/objects deeper than ``limit`` (strings skipped)."""
    chars = text.decode("utf-8", "replace") if isinstance(text, bytes) else text
    if chars.count("[") + chars.count("{") <= limit:
        return False
    depth, in_string, escaped = 0, False, False
    for ch in chars:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            if depth > limit:
                return True
        elif ch in "]}":
            depth -= 1
    return False


def _deeper_than(text: str | bytes, data: Any, limit: int) -> bool:
    """Whether the parsed ``data`` of ``text`` nests arrays/objects deeper than ``limit``.
    A text with no more brackets than ``limit`` cannot (two counts in C: most frames);
    otherwise the value is walked without recursion, ~as long as orjson took to read it."""
    if isinstance(text, str):
        if text.count("[") + text.count("{") <= limit:
            return False
    elif text.count(b"[") + text.count(b"{") <= limit:
        return False
    stack: list[tuple[Any, int]] = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        for item in value.values() if type(value) is dict else value:
            kind = type(item)
            if kind is dict or kind is list:
                if depth == limit:
                    return True
                stack.append((item, depth + 1))
    return False


# Characters no backend stores. A NUL reaches a JSON string only through the escape
# \u0000 (the grammar forbids a raw control character there); PostgreSQL's text and jsonb
# cannot hold it. A lone surrogate (an escaped \ud800 without its pair) reaches one only
# through the standard library's parser, as orjson refuses it; it is not UTF-8, so
# neither SQLite nor PostgreSQL takes it. A station that sent either in a transaction
# message got an error for ever (SQLite: "internal error"; PostgreSQL: "temporarily
# unable to store"), and its session was never completed. Both are read as U+FFFD, the
# replacement character, on every backend alike: an idTag holding one matches no tag,
# a reading holding one is unreadable, and both are handled as such (the session held).
_NUL_ESCAPE = "\\u0000"
_NUL_ESCAPE_BYTES = b"\\u0000"
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def _storable(value: Any) -> Any:
    kind = type(value)
    if kind is str:
        return _UNSTORABLE.sub("\ufffd", value)
    if kind is list:
        return [_storable(item) for item in value]
    if kind is dict:
        return {_storable(key): _storable(item) for key, item in value.items()}
    return value


def loads(text: str | bytes) -> Any:
    """JSON as sent: orjson (fast), or the standard library where orjson would lose or
    refuse a number the JSON grammar allows (integers beyond 64 bits, 1e400); never
    nested beyond :data:`MAX_JSON_DEPTH`; a NUL or a lone surrogate in a string read as
    U+FFFD. Raises ValueError."""
    data, read_by_orjson = _loads_json(text)
    escape = _NUL_ESCAPE if isinstance(text, str) else _NUL_ESCAPE_BYTES
    if not read_by_orjson or escape in text:  # type: ignore[operator]
        try:
            return _storable(data)
        except RecursionError:
            raise ValueError("nested too deep") from None
    return data


def _loads_json(text: str | bytes) -> tuple[Any, bool]:
    """The JSON value, and whether orjson read it (then it holds no lone surrogate)."""
    try:
        data = orjson.loads(text)
    except orjson.JSONDecodeError:
        if nested_beyond(text):
            raise ValueError(f"nested deeper than {MAX_JSON_DEPTH} levels") from None
        try:
            return json.loads(text, parse_constant=_no_constants), False
        except RecursionError:
            raise ValueError("nested too deep") from None
    if has_long_digit_run(text):
        try:
            return json.loads(text), True  # integers exactly, however long
        except RecursionError:
            raise ValueError("nested too deep") from None
    return data, True


def _standard(value: Any) -> Any:
    """What the standard library's encoder cannot write, as orjson writes it."""
    if isinstance(value, (datetime, date, time)):
        return value.isoformat()
    return str(value)


def dumps(data: Any, *, indent: bool = False, sort_keys: bool = False) -> str:
    """JSON text of a value read back (an audit entry, a stored payload, a bus message, a
    receipt): orjson (fast), or the standard library for what orjson refuses, an integer
    beyond 64 bits that :func:`loads` kept exactly on purpose (orjson raised TypeError on
    2**70). Either way the same text: UTF-8 as it is (no ``\\u`` escapes), no spaces but
    the indent's."""
    option = (orjson.OPT_INDENT_2 if indent else 0) | (orjson.OPT_SORT_KEYS if sort_keys else 0)
    try:
        return orjson.dumps(data, option=option).decode()
    except TypeError:
        return json.dumps(data, indent=2 if indent else None, ensure_ascii=False,
                          separators=None if indent else (",", ":"), default=_standard,
                          sort_keys=sort_keys)


def _loads(text: str | bytes) -> Any:
    try:
        return loads(text)
    except ValueError as exc:
        raise FrameError(Fault.RPC_FRAMEWORK, f"invalid JSON: {exc}") from None


def parse_frame(text: str | bytes) -> Frame:
    """Parse one WebSocket text message into a frame, or raise :class:`FrameError`."""
    return frame_of(*split_frame(text))


def split_frame(text: str | bytes) -> tuple[int, list[Any]]:
    """The checks of :func:`parse_frame` without building its frame: the message type and
    the frame's array, as :func:`frame_of` reads them (the endpoint takes a CALL's three
    fields from the array: no :class:`Call` made per message). Raises :class:`FrameError`."""
    data = _loads(text)
    if not isinstance(data, list) or not data:
        raise FrameError(Fault.RPC_FRAMEWORK, "a message must be a non-empty JSON array")
    mtype = data[0]
    # A CALLRESULT or CALLERROR is never answered (OCPP-J §4.2: a CALLERROR answers a
    # CALL), whatever is wrong with its message id either
    answer = mtype in (CALLRESULT, CALLERROR) and not isinstance(mtype, bool)
    if len(data) < 2 or not isinstance(data[1], str):
        raise FrameError(Fault.RPC_FRAMEWORK, "message id missing or not a string",
                         answerable=not answer)
    message_id = data[1]
    if not message_id or len(message_id) > MAX_MESSAGE_ID_LENGTH:
        raise FrameError(
            Fault.RPC_FRAMEWORK,
            f"message id must be 1 to {MAX_MESSAGE_ID_LENGTH} characters",
            answerable=not answer,
        )
    # bool is an int subclass: [true, ...] is not a message type.
    if not isinstance(mtype, int) or isinstance(mtype, bool):
        raise FrameError(Fault.RPC_FRAMEWORK, "message type must be an integer", message_id)
    if _deeper_than(text, data, MAX_FRAME_DEPTH):
        raise FrameError(Fault.FORMAT, f"nested deeper than {MAX_FRAME_DEPTH} levels",
                         message_id, answerable=not answer)
    if mtype == CALL:
        if len(data) != 4:
            raise FrameError(Fault.RPC_FRAMEWORK, "a CALL has 4 elements", message_id)
        action, payload = data[2], data[3]
        if not isinstance(action, str) or not action:
            raise FrameError(Fault.RPC_FRAMEWORK, "action must be a non-empty string", message_id)
        if not isinstance(payload, dict):
            raise FrameError(Fault.FORMAT, "payload must be a JSON object", message_id)
        return CALL, data
    if mtype == CALLRESULT:
        if len(data) != 3 or not isinstance(data[2], dict):
            raise FrameError(
                Fault.FORMAT, "a CALLRESULT is [3, id, {payload}]", message_id, answerable=False
            )
        return CALLRESULT, data
    if mtype == CALLERROR:
        if (
            len(data) != 5
            or not isinstance(data[2], str)
            or not isinstance(data[3], str)
            or not isinstance(data[4], dict)
        ):
            raise FrameError(
                Fault.FORMAT,
                "a CALLERROR is [4, id, code, description, {details}]",
                message_id,
                answerable=False,
            )
        return CALLERROR, data
    raise FrameError(
        Fault.MESSAGE_TYPE_NOT_SUPPORTED, f"message type {mtype} is not supported", message_id
    )


def frame_of(mtype: int, data: list[Any]) -> Frame:
    """The frame of an array :func:`split_frame` checked."""
    if mtype == CALL:
        return Call(data[1], data[2], data[3])
    if mtype == CALLRESULT:
        return CallResult(data[1], data[2])
    # What a station sent is kept (then logged, stored as a command's status) within
    # the limits: one frame-long description was one frame-long log line to redact.
    return CallError(data[1], data[2][:MAX_ERROR_CODE_LENGTH],
                     data[3][:MAX_DESCRIPTION_LENGTH], data[4])


def encode(frame: Frame) -> str:
    """Serialize a frame to the compact JSON text sent on the wire."""
    if isinstance(frame, Call):
        arr: list[Any] = [CALL, frame.message_id, frame.action, frame.payload]
    elif isinstance(frame, CallResult):
        arr = [CALLRESULT, frame.message_id, frame.payload]
    else:
        arr = [
            CALLERROR,
            frame.message_id,
            frame.code,
            frame.description[:MAX_DESCRIPTION_LENGTH],
            frame.details,
        ]
    return orjson.dumps(arr).decode()


def encode_result(message_id: str, payload: dict[str, Any]) -> str:
    """``encode(CallResult(message_id, payload))``, without the frame (every answer)."""
    return orjson.dumps([CALLRESULT, message_id, payload]).decode()
