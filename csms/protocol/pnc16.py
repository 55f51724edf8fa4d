"""ISO 15118 Plug & Charge over OCPP 1.6: 2.0.1 messages wrapped in DataTransfer.

The Open Charge Alliance application note "Using ISO 15118 Plug & Charge with OCPP 1.6"
(v1.0, 2020-09-16, §2 "Generic DataTransfer fields") carries a handful of 2.0.1 messages
inside a 1.6 DataTransfer: ``vendorId`` is ``org.openchargealliance.iso15118pnc``,
``messageId`` the 2.0.1 action name and ``data`` the 2.0.1 payload as a JSON string. The
answer's ``data`` is the 2.0.1 response, again as a JSON string.

Pure: :func:`wrap` builds the DataTransfer payload of a 2.0.1 message and
:func:`unwrap` reads one back, both checked against the official 2.0.1 schemas. What
cannot be read raises :class:`PncError` with a one-line reason that fits the ``data`` of
a Rejected DataTransfer answer.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from csms.protocol.errors import OcppError
from csms.protocol.frames import loads
from csms.protocol.validation import Validator
from csms.protocol.versions import OcppVersion

__all__ = [
    "CSMS_TO_STATION",
    "PNC_VENDOR_ID",
    "STATION_TO_CSMS",
    "PncError",
    "answer_data",
    "is_pnc",
    "unwrap",
    "wrap",
]

PNC_VENDOR_ID = "org.openchargealliance.iso15118pnc"
# Application note §3: what a charge point sends, and what the central system sends.
STATION_TO_CSMS = ("Authorize", "Get15118EVCertificate", "GetCertificateStatus",
                   "SignCertificate")
CSMS_TO_STATION = ("CertificateSigned", "InstallCertificate", "DeleteCertificate",
                   "GetInstalledCertificateIds", "TriggerMessage")
# a 1.6 DataTransfer's messageId is at most 50 characters (1.6 §6.15)
MAX_MESSAGE_ID = 50

Kind = Literal["request", "response"]
_V201 = Validator(OcppVersion.V201)


class PncError(ValueError):
    """A wrapped message that cannot be read (one line)."""


def is_pnc(payload: dict[str, Any]) -> bool:
    """A 1.6 DataTransfer of the Plug & Charge application note."""
    return payload.get("vendorId") == PNC_VENDOR_ID


def _check(action: str, inner: dict[str, Any], kind: Kind) -> None:
    try:
        _V201.validate(action, inner, kind)
    except OcppError as exc:
        raise PncError(f"{action} {kind}: {exc.description or exc.fault.value}"[:300]) from None


def wrap(action: str, inner: dict[str, Any]) -> dict[str, Any]:
    """The DataTransfer request carrying the 2.0.1 ``action`` request ``inner``."""
    _check(action, inner, "request")
    return {"vendorId": PNC_VENDOR_ID, "messageId": action,
            "data": json.dumps(inner, separators=(",", ":"), ensure_ascii=False)}


def answer_data(action: str, inner: dict[str, Any]) -> str:
    """The ``data`` of an Accepted DataTransfer answer: the 2.0.1 ``action`` response."""
    _check(action, inner, "response")
    return json.dumps(inner, separators=(",", ":"), ensure_ascii=False)


def _read(action: str, data: Any, kind: Kind) -> dict[str, Any]:
    if not isinstance(data, str):
        raise PncError(f"{action}: data must be the 2.0.1 {kind} as a JSON string")
    try:
        inner = loads(data)  # bounded nesting: never the C stack's end
    except ValueError:
        raise PncError(f"{action}: data is not JSON") from None
    if not isinstance(inner, dict):
        raise PncError(f"{action}: data is not a JSON object")
    _check(action, inner, kind)
    return inner


def unwrap(payload: dict[str, Any], kind: Kind = "request",
           action: str | None = None) -> tuple[str, dict[str, Any]]:
    """(action, 2.0.1 payload) of a DataTransfer request (``kind`` "request"), or of a
    DataTransfer answer to a wrapped ``action`` (``kind`` "response"; the answer must be
    Accepted)."""
    if kind == "response":
        assert action is not None
        status = payload.get("status")
        if status != "Accepted":
            detail = payload.get("data")
            raise PncError(f"{action}: the station answered the DataTransfer {status}"
                           + (f" ({str(detail)[:200]})" if detail else ""))
        return action, _read(action, payload.get("data"), "response")
    message_id = payload.get("messageId")
    if not isinstance(message_id, str) or not message_id:
        raise PncError("messageId missing: it names the 2.0.1 message")
    return message_id, _read(message_id, payload.get("data"), "request")
