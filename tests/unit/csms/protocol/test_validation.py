from __future__ import annotations

from typing import Any

import pytest

from csms.protocol import Fault, OcppError, OcppVersion, Validator

V16, V201 = OcppVersion.V16, OcppVersion.V201

METER_16 = {
    "connectorId": 1,
    "transactionId": 5,
    "meterValue": [{"timestamp": "2026-01-01T00:00:00Z", "sampledValue": [{"value": "10"}]}],
}
EVENT_201 = {
    "eventType": "Updated",
    "timestamp": "2026-01-01T00:00:00Z",
    "triggerReason": "MeterValuePeriodic",
    "seqNo": 1,
    "transactionInfo": {"transactionId": "t1"},
}


@pytest.mark.parametrize(
    ("version", "action", "payload"),
    [
        (V16, "Heartbeat", {}),
        (V16, "MeterValues", METER_16),
        (V16, "BootNotification", {"chargePointVendor": "V", "chargePointModel": "M"}),
        (V201, "TransactionEvent", EVENT_201),
        (V201, "Heartbeat", {}),
    ],
)
def test_valid(version: OcppVersion, action: str, payload: dict[str, Any]) -> None:
    Validator(version).validate(action, payload)


@pytest.mark.parametrize(
    ("version", "action", "payload", "fault"),
    [
        (V16, "MeterValues", {**METER_16, "connectorId": "1"}, Fault.TYPE_CONSTRAINT),
        (V16, "MeterValues", {"connectorId": 1}, Fault.OCCURRENCE_CONSTRAINT),
        (V16, "Heartbeat", {"extra": 1}, Fault.FORMAT),
        (V16, "BootNotification",
         {"chargePointVendor": "V" * 21, "chargePointModel": "M"}, Fault.TYPE_CONSTRAINT),
        (V16, "StatusNotification",
         {"connectorId": 1, "errorCode": "Bad", "status": "Available"},
         Fault.PROPERTY_CONSTRAINT),
        (V201, "TransactionEvent", {**EVENT_201, "seqNo": "1"}, Fault.TYPE_CONSTRAINT),
        (V201, "TransactionEvent", {**EVENT_201, "eventType": "Paused"},
         Fault.PROPERTY_CONSTRAINT),
        (V201, "Heartbeat", {"x": 1}, Fault.FORMAT),
        (V201, "Authorize", {}, Fault.OCCURRENCE_CONSTRAINT),
        (V201, "Nope", {}, Fault.NOT_IMPLEMENTED),
    ],
)
def test_invalid(
    version: OcppVersion, action: str, payload: dict[str, Any], fault: Fault
) -> None:
    with pytest.raises(OcppError) as info:
        Validator(version).validate(action, payload)
    assert info.value.fault is fault


def test_responses_are_validated_against_response_schemas() -> None:
    v = Validator(V16)
    v.validate("Heartbeat", {"currentTime": "2026-01-01T00:00:00Z"}, "response")
    with pytest.raises(OcppError):
        v.validate("Heartbeat", {}, "response")


def test_disabled_validator_accepts_anything() -> None:
    Validator(V16, enabled=False).validate("MeterValues", {"connectorId": "x"})


def test_known_actions_per_version() -> None:
    assert Validator(V16).is_known("StartTransaction")
    assert not Validator(V201).is_known("StartTransaction")
    assert Validator(V201).is_known("TransactionEvent")
    assert not Validator(V16).is_known("TransactionEvent")
