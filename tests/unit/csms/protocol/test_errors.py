from __future__ import annotations

import pytest

from csms.protocol import Fault, OcppVersion, error_code
from support.codes import V16_CODES, V201_CODES

V16, V201 = OcppVersion.V16, OcppVersion.V201


@pytest.mark.parametrize(
    ("version", "fault", "code"),
    [
        (V16, Fault.FORMAT, "FormationViolation"),
        (V201, Fault.FORMAT, "FormatViolation"),
        (V16, Fault.RPC_FRAMEWORK, "FormationViolation"),
        (V201, Fault.RPC_FRAMEWORK, "RpcFrameworkError"),
        (V16, Fault.OCCURRENCE_CONSTRAINT, "OccurenceConstraintViolation"),
        (V201, Fault.OCCURRENCE_CONSTRAINT, "OccurrenceConstraintViolation"),
        (V16, Fault.NOT_IMPLEMENTED, "NotImplemented"),
        (V16, Fault.NOT_SUPPORTED, "NotSupported"),
        (V201, Fault.NOT_IMPLEMENTED, "NotImplemented"),
        (V201, Fault.NOT_SUPPORTED, "NotSupported"),
        (V201, Fault.MESSAGE_TYPE_NOT_SUPPORTED, "MessageTypeNotSupported"),
        (V16, Fault.TYPE_CONSTRAINT, "TypeConstraintViolation"),
        (V201, Fault.PROPERTY_CONSTRAINT, "PropertyConstraintViolation"),
        (V16, Fault.SECURITY, "SecurityError"),
        (V201, Fault.INTERNAL, "InternalError"),
    ],
)
def test_codes(version: OcppVersion, fault: Fault, code: str) -> None:
    assert error_code(version, fault) == code


@pytest.mark.parametrize(("version", "allowed"), [(V16, V16_CODES), (V201, V201_CODES)])
def test_every_code_is_defined_by_its_version(version: OcppVersion, allowed: set[str]) -> None:
    assert {error_code(version, f) for f in Fault} <= allowed
