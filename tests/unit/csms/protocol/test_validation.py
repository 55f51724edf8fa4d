from __future__ import annotations

from typing import Any

import pytest

from csms.protocol import Fault, OcppError, OcppVersion, Validator, validation

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


STATUS_16 = {"connectorId": 1, "errorCode": "NoError", "status": "Available"}


@pytest.mark.parametrize(("stamp", "ok"), [
    ("2026-01-01T00:00:00Z", True), ("2026-01-01T00:00:00.123+0000", True),
    ("2026-01-01T00:00:00", True),  # no offset: accepted, read as UTC
    ("20260101T000000Z", False), ("2026-01-01T00:00Z", False), ("soon", False),
])
def test_date_time_follows_the_timestamp_policy(stamp: str, ok: bool) -> None:
    payload = {**STATUS_16, "timestamp": stamp}
    if ok:
        Validator(V16).validate("StatusNotification", payload)
    else:
        with pytest.raises(OcppError) as err:
            Validator(V16).validate("StatusNotification", payload)
        assert err.value.fault is Fault.PROPERTY_CONSTRAINT


@pytest.mark.parametrize(("version", "action", "payload"), [
    (V16, "MeterValues", {**METER_16, "meterValue": [
        {"timestamp": "soon", "sampledValue": [{"value": "10"}]}]}),
    (V16, "StartTransaction", {"connectorId": 1, "idTag": "T", "meterStart": 0,
                               "timestamp": "20260101T000000Z"}),
    (V201, "TransactionEvent", {**EVENT_201, "timestamp": "9999-12-31T23:59:59-14:00"}),
])
def test_transaction_messages_are_not_refused_for_their_times(
        version: OcppVersion, action: str, payload: dict[str, Any]) -> None:
    """They are always acknowledged: the service holds the session instead."""
    Validator(version).validate(action, payload)
    with pytest.raises(OcppError):  # but a time must still be a string
        bad = {**payload, "timestamp": 1} if "timestamp" in payload else {
            **payload, "meterValue": [{"timestamp": 1, "sampledValue": [{"value": "1"}]}]}
        Validator(version).validate(action, bad)


@pytest.mark.parametrize(("payload", "where"), [
    ({"a": 1, "b": [1, 2**63 - 1, -(2**63)]}, None),
    ({"a": 2**63}, "a"),
    ({"a": [{"b": -(2**63) - 1}]}, "a[0].b"),
    ({"a": 1e300}, "a"),
    ({"a": 1.5e300}, "a"),
    ({"a": 9.2e18}, None),
    ({"a": 1.5, "b": float("inf"), "c": True, "d": "99999999999999999999999"}, None),
])
def test_integers_no_64_bit_column_holds_are_found(payload: dict[str, Any],
                                                   where: str | None) -> None:
    from csms.protocol.validation import beyond_int64

    assert beyond_int64(payload) == where


def test_beyond_64_bits_is_refused_outside_transactions_only() -> None:
    status = {"connectorId": 2**70, "errorCode": "NoError", "status": "Available"}
    with pytest.raises(OcppError) as caught:
        Validator(V16).validate("StatusNotification", status)
    assert caught.value.fault is Fault.TYPE_CONSTRAINT
    Validator(V16).validate("MeterValues", {**METER_16, "transactionId": 2**70})
    answer = {"status": "Accepted", "connectorId": 2**70}  # a station's answer as well
    with pytest.raises(OcppError) as caught:
        Validator(V16).validate("GetCompositeSchedule", answer, "response")
    assert str(caught.value).startswith("connectorId: an integer beyond 64 bits")


def test_the_integer_check_walks_a_payload_nested_a_thousand_levels() -> None:
    data: Any = 2**70
    for _ in range(1000):
        data = {"a": [data]}
    with pytest.raises(OcppError) as caught:
        Validator(V201).validate("DataTransfer", {"vendorId": "v", "data": data})
    assert caught.value.fault is Fault.TYPE_CONSTRAINT


def test_the_full_validator_is_compiled_on_the_first_refused_payload_only() -> None:
    """A restarted worker does not block its loop for fastjsonschema's compilation (up to
    ~50 ms a 2.0.1 schema) on each action's first message: valid traffic needs the
    acceptor only. The first payload the acceptor refuses compiles the full validator,
    whose verdict stands."""
    key = (V201, "TransactionEvent", "request")
    validation._FULL.pop(key, None)
    v = Validator(V201)
    v.validate("TransactionEvent", dict(EVENT_201))
    assert key not in validation._FULL
    with pytest.raises(OcppError) as err:
        v.validate("TransactionEvent", {**EVENT_201, "eventType": "Paused"})
    assert err.value.fault is Fault.PROPERTY_CONSTRAINT
    assert key in validation._FULL
