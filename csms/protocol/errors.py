"""CALLERROR codes per OCPP version.

The two versions name their error codes differently (OCPP-J 1.6 §4.2.3,
OCPP-J 2.0.1 §4.3): 1.6 has ``FormationViolation`` and the misspelt
``OccurenceConstraintViolation``; 2.0.1 has ``FormatViolation``,
``OccurrenceConstraintViolation``, ``RpcFrameworkError`` and
``MessageTypeNotSupported``. Code here raises a version-neutral :class:`Fault`
and the code sent on the wire is looked up for the connection's version.
"""

from __future__ import annotations

import enum
from typing import Any

from csms.protocol.versions import OcppVersion

__all__ = ["Fault", "OcppError", "error_code"]


class Fault(enum.Enum):
    NOT_IMPLEMENTED = "not_implemented"  # action not known
    NOT_SUPPORTED = "not_supported"  # action known but not supported by the receiver
    INTERNAL = "internal"
    PROTOCOL = "protocol"  # payload incomplete
    SECURITY = "security"
    FORMAT = "format"  # payload syntactically incorrect / not the PDU structure
    RPC_FRAMEWORK = "rpc_framework"  # not a valid RPC frame (message id unreadable)
    MESSAGE_TYPE_NOT_SUPPORTED = "message_type_not_supported"
    PROPERTY_CONSTRAINT = "property_constraint"  # a field has an invalid value
    OCCURRENCE_CONSTRAINT = "occurrence_constraint"  # a required field missing
    TYPE_CONSTRAINT = "type_constraint"  # a field has the wrong data type
    GENERIC = "generic"


_V16 = {
    Fault.NOT_IMPLEMENTED: "NotImplemented",
    Fault.NOT_SUPPORTED: "NotSupported",
    Fault.INTERNAL: "InternalError",
    Fault.PROTOCOL: "ProtocolError",
    Fault.SECURITY: "SecurityError",
    # 1.6 has one code for every structural problem of a frame or payload.
    Fault.FORMAT: "FormationViolation",
    Fault.RPC_FRAMEWORK: "FormationViolation",
    Fault.MESSAGE_TYPE_NOT_SUPPORTED: "FormationViolation",
    Fault.PROPERTY_CONSTRAINT: "PropertyConstraintViolation",
    Fault.OCCURRENCE_CONSTRAINT: "OccurenceConstraintViolation",  # sic, 1.6 spelling
    Fault.TYPE_CONSTRAINT: "TypeConstraintViolation",
    Fault.GENERIC: "GenericError",
}

_V201 = {
    Fault.NOT_IMPLEMENTED: "NotImplemented",
    Fault.NOT_SUPPORTED: "NotSupported",
    Fault.INTERNAL: "InternalError",
    Fault.PROTOCOL: "ProtocolError",
    Fault.SECURITY: "SecurityError",
    Fault.FORMAT: "FormatViolation",
    Fault.RPC_FRAMEWORK: "RpcFrameworkError",
    Fault.MESSAGE_TYPE_NOT_SUPPORTED: "MessageTypeNotSupported",
    Fault.PROPERTY_CONSTRAINT: "PropertyConstraintViolation",
    Fault.OCCURRENCE_CONSTRAINT: "OccurrenceConstraintViolation",
    Fault.TYPE_CONSTRAINT: "TypeConstraintViolation",
    Fault.GENERIC: "GenericError",
}

_CODES = {OcppVersion.V16: _V16, OcppVersion.V201: _V201}


def error_code(version: OcppVersion, fault: Fault) -> str:
    """The CALLERROR code string for ``fault`` in ``version``."""
    return _CODES[version][fault]


class OcppError(Exception):
    """An error to be answered with a CALLERROR.

    Raise it from a handler; the connection loop turns it into a CALLERROR frame
    with the code of the connection's OCPP version.
    """

    def __init__(
        self, fault: Fault, description: str = "", details: dict[str, Any] | None = None
    ) -> None:
        super().__init__(description or fault.value)
        self.fault = fault
        self.description = description
        self.details = details or {}
