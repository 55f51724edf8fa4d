"""JSON-schema validation of OCPP payloads with the official schemas.

The schemas are the OCA JSON schemas shipped by the ``ocpp`` package (1.6:
``X.json``/``XResponse.json``; 2.0.1: ``XRequest.json``/``XResponse.json``).
They are compiled to Python code by ``fastjsonschema``, which validates a 2.0.1
TransactionEvent in ~13 us instead of the ~310 us ``jsonschema`` takes inside the
``ocpp`` library. A valid payload is let
through sooner by an acceptor compiled from the same schema
(:mod:`csms.protocol.acceptor`, ~4x faster, and ~15x faster to compile); a payload
it refuses goes through ``fastjsonschema``, whose verdict and error stand. Each is
compiled on first need: the acceptor on an action's first message, ``fastjsonschema``
on the first payload the acceptor refuses.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import cache
from importlib import resources
from typing import Any, Literal

import fastjsonschema

from csms.protocol.acceptor import Acceptor, Unsupported, compile_acceptor
from csms.protocol.errors import Fault, OcppError
from csms.protocol.timestamps import is_readable
from csms.protocol.versions import OcppVersion

__all__ = ["TRANSACTION_ACTIONS", "Validator", "known_actions"]

# Messages that carry transaction data. DESIGN.md: they are always acknowledged once
# stored, even with odd data, or the station retries and finally drops the data. Their
# dateTime fields are therefore not refused by the schema: the central system reads them
# under the timestamp policy (csms.protocol.timestamps) and holds a session whose times it
# cannot read, instead of refusing the message.
TRANSACTION_ACTIONS = frozenset(
    {"StartTransaction", "StopTransaction", "MeterValues", "TransactionEvent"})

# JSON-schema "date-time": the one timestamp policy, not fastjsonschema's own regex (which
# accepts "+0000" but refuses a time without an offset).
_STRICT_FORMATS = {"date-time": is_readable}
_LENIENT_FORMATS = {"date-time": lambda value: isinstance(value, str)}

Kind = Literal["request", "response"]
# A fast acceptor (None where the schema has no compiled one) and the full validator,
# which names the rule a refused payload broke (csms.protocol.acceptor).
_Checks = tuple[Acceptor | None, Callable[[Any], Any]]

_PACKAGE_DIR = {OcppVersion.V16: "v16", OcppVersion.V201: "v201"}
# A request's schema file: 1.6 names it after the action, 2.0.1 adds "Request".
_REQUEST_SUFFIX = {OcppVersion.V16: "", OcppVersion.V201: "Request"}

# Which fault a failed JSON-schema keyword means (OCPP-J 1.6 §4.2.3, 2.0.1 §4.3).
_RULE_FAULT = {
    "type": Fault.TYPE_CONSTRAINT,
    # CiStringNType: the length is part of the data type.
    "maxLength": Fault.TYPE_CONSTRAINT,
    "minLength": Fault.TYPE_CONSTRAINT,
    "required": Fault.OCCURRENCE_CONSTRAINT,
    "minItems": Fault.OCCURRENCE_CONSTRAINT,
    "maxItems": Fault.OCCURRENCE_CONSTRAINT,
    "enum": Fault.PROPERTY_CONSTRAINT,
    "minimum": Fault.PROPERTY_CONSTRAINT,
    "maximum": Fault.PROPERTY_CONSTRAINT,
    "exclusiveMinimum": Fault.PROPERTY_CONSTRAINT,
    "exclusiveMaximum": Fault.PROPERTY_CONSTRAINT,
    "multipleOf": Fault.PROPERTY_CONSTRAINT,
    "pattern": Fault.PROPERTY_CONSTRAINT,
    "format": Fault.PROPERTY_CONSTRAINT,
    "additionalProperties": Fault.FORMAT,
}


def _schema_file(version: OcppVersion, action: str, kind: Kind) -> str:
    if kind == "response":
        return f"{action}Response.json"
    return f"{action}{_REQUEST_SUFFIX[version]}.json"


def _schemas_dir(version: OcppVersion) -> Any:
    return resources.files("ocpp").joinpath(_PACKAGE_DIR[version], "schemas")


@cache
def known_actions(version: OcppVersion) -> frozenset[str]:
    """Every action the version defines (either direction)."""
    names = set()
    for entry in _schemas_dir(version).iterdir():
        name = entry.name
        if not name.endswith(".json") or name.endswith("Response.json"):
            continue
        stem, suffix = name[: -len(".json")], _REQUEST_SUFFIX[version]
        if stem.endswith(suffix):
            names.add(stem[: len(stem) - len(suffix)])
    return frozenset(names)


def _schema(version: OcppVersion, action: str, kind: Kind) -> dict[str, Any]:
    text = _schemas_dir(version).joinpath(_schema_file(version, action, kind)).read_text("utf-8")
    schema: dict[str, Any] = json.loads(text)
    # The 2.0.1 schemas carry a "$id" URN that fastjsonschema would try to resolve.
    schema.pop("$id", None)
    return schema


def _lenient(action: str, kind: Kind) -> bool:
    return kind == "request" and action in TRANSACTION_ACTIONS


@cache
def _acceptor(version: OcppVersion, action: str, kind: Kind) -> Acceptor | None:
    """The fast yes for the schema (None where the schema has none): compiled on an
    action's first message, in ~3 ms at most (2.0.1 TransactionEvent)."""
    try:
        return compile_acceptor(_schema(version, action, kind),
                                None if _lenient(action, kind) else is_readable)
    except Unsupported:
        return None


# The full validators by (version, action, kind). Compiled on the first payload the
# acceptor refuses, not on an action's first message: fastjsonschema takes up to ~50 ms
# for one 2.0.1 schema (1.1 s for all 206), the event loop blocked, and a restarted
# worker would take that once per action while thousands of stations reconnect.
_FULL: dict[tuple[OcppVersion, str, Kind], Callable[[Any], Any]] = {}


def _full(version: OcppVersion, action: str, kind: Kind) -> Callable[[Any], Any]:
    key = (version, action, kind)
    validate = _FULL.get(key)
    if validate is None:
        validate = _FULL[key] = fastjsonschema.compile(
            _schema(version, action, kind),
            formats=_LENIENT_FORMATS if _lenient(action, kind) else _STRICT_FORMATS)
    return validate


def _compiled(version: OcppVersion, action: str, kind: Kind) -> _Checks:
    """Both checks of a schema (the tests compare them)."""
    return _acceptor(version, action, kind), _full(version, action, kind)


class Validator:
    """Validate payloads of one OCPP version against the official schemas."""

    def __init__(self, version: OcppVersion, *, enabled: bool = True) -> None:
        self.version = version
        self.enabled = enabled
        self._known = known_actions(version)

    def is_known(self, action: str) -> bool:
        return action in self._known

    def validate(self, action: str, payload: dict[str, Any], kind: Kind = "request") -> None:
        """Raise :class:`OcppError` with the matching fault if ``payload`` is invalid."""
        if not self.enabled:
            return
        if action not in self._known:
            raise OcppError(Fault.NOT_IMPLEMENTED, f"unknown action {action!r}")
        accept = _acceptor(self.version, action, kind)
        if accept is None or not accept(payload):
            try:
                _full(self.version, action, kind)(payload)
            except fastjsonschema.JsonSchemaValueException as exc:
                fault = _RULE_FAULT.get(str(exc.rule), Fault.FORMAT)
                where = str(exc.name).removeprefix("data").lstrip(".") or "payload"
                raise OcppError(fault, f"{where}: {exc.message}"[:255]) from None
        if kind == "response" or action not in TRANSACTION_ACTIONS:
            path = beyond_int64(payload)
            if path is not None:
                raise OcppError(Fault.TYPE_CONSTRAINT,
                                f"{path or 'payload'}: an integer beyond 64 bits"[:255])


_INT64 = range(-(2**63), 2**63)


def beyond_int64(value: Any) -> str | None:
    """Where ``value`` holds an integer no 64-bit column can store (None: nowhere).

    The schemas set no bound on their integers (the OCPP data type is 32 bits), so
    fastjsonschema takes 2**70, and from draft 6 on also ``1e300``, as an integer. A
    message outside transactions carrying one is refused with TypeConstraintViolation
    before it reaches storage, which cannot hold it (SQLite raised OverflowError: an
    InternalError and a logged traceback for every such message). Transaction messages
    are never refused for their values: their translation notes such a number and
    holds the session (``Notes.int64``, DESIGN.md). A float counts when it is integral:
    no quantity a station reports outside transactions comes near 9.2e18."""
    # Neither walk is recursive: DataTransfer's data may nest 1,024 levels. The first
    # makes no path (a fourth of the time on a 50-entry NotifyReport); the second, for
    # the error text only, names the first offender in the text's order.
    if not _holds_beyond_int64(value):
        return None
    stack: list[tuple[Any, str]] = [(value, "")]
    while stack:
        item, where = stack.pop()
        if _beyond(item):
            return where
        if type(item) is dict:
            stack.extend((sub, f"{where}.{key}" if where else key)
                         for key, sub in reversed(item.items()))
        elif type(item) is list:
            stack.extend((sub, f"{where}[{i}]") for i, sub in reversed(list(enumerate(item))))
    return None  # not reached: the first walk found one


def _beyond(item: Any) -> bool:
    kind = type(item)
    if kind is int:
        return item not in _INT64
    return kind is float and item.is_integer() and not -(2.0**63) <= item < 2.0**63


def _holds_beyond_int64(value: Any) -> bool:
    stack = [value]
    while stack:
        item = stack.pop()
        kind = type(item)
        if kind is dict:
            stack.extend(item.values())
        elif kind is list:
            stack.extend(item)
        elif (kind is int or kind is float) and _beyond(item):
            return True
    return False
