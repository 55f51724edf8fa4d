"""Reservation, firmware and log commands built per version, each checked against the
official schema of its CALL (build_call validates)."""

from __future__ import annotations

from typing import Any

import pytest

from csms.protocol import OcppVersion
from csms.translate.commands import CommandError, build_call, carries_secret, redacted_args

V16, V201 = OcppVersion.V16, OcppVersion.V201
URL = "https://csms.example:9002/logs/" + "t" * 43
WHEN = "2026-03-01T12:00:00.000Z"
LATER = "2026-03-01T13:00:00.000Z"
PEM = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----"


@pytest.mark.parametrize(("version", "command", "args", "action", "payload"), [
    (V16, "reserve", {"reservation_id": 7, "tag": "T", "connector": 1, "expiry": WHEN},
     "ReserveNow", {"connectorId": 1, "expiryDate": WHEN, "idTag": "T", "reservationId": 7}),
    (V16, "reserve", {"reservation_id": 7, "tag": "T", "connector": 0, "expiry": WHEN,
                      "parent_tag": "G"},
     "ReserveNow", {"connectorId": 0, "expiryDate": WHEN, "idTag": "T", "reservationId": 7,
                    "parentIdTag": "G"}),
    (V201, "reserve", {"reservation_id": 7, "tag": "T", "connector": 2, "expiry": WHEN},
     "ReserveNow", {"id": 7, "expiryDateTime": WHEN, "evseId": 2,
                    "idToken": {"idToken": "T", "type": "ISO14443"}}),
    (V201, "reserve", {"reservation_id": 7, "tag": "T", "connector": 0, "expiry": WHEN},
     "ReserveNow", {"id": 7, "expiryDateTime": WHEN,
                    "idToken": {"idToken": "T", "type": "ISO14443"}}),
    (V16, "cancel-reservation", {"reservation_id": 7}, "CancelReservation",
     {"reservationId": 7}),
    (V201, "cancel-reservation", {"reservation_id": 7}, "CancelReservation",
     {"reservationId": 7}),
    (V16, "update-firmware", {"request_id": 3, "location": URL, "retrieve": WHEN,
                              "retries": 2, "retry_interval": 60},
     "UpdateFirmware", {"location": URL, "retrieveDate": WHEN, "retries": 2,
                        "retryInterval": 60}),
    (V16, "update-firmware", {"request_id": 3, "location": URL, "retrieve": WHEN,
                              "signature": "c2ln", "signing_cert": PEM},
     "SignedUpdateFirmware", {"requestId": 3, "firmware": {
         "location": URL, "retrieveDateTime": WHEN, "signingCertificate": PEM,
         "signature": "c2ln"}}),
    (V201, "update-firmware", {"request_id": 3, "location": URL, "retrieve": WHEN},
     "UpdateFirmware", {"requestId": 3, "firmware": {"location": URL,
                                                     "retrieveDateTime": WHEN}}),
    (V201, "update-firmware", {"request_id": 3, "location": URL, "retrieve": WHEN,
                               "signature": "c2ln", "signing_cert": PEM, "retries": 0},
     "UpdateFirmware", {"requestId": 3, "retries": 0, "firmware": {
         "location": URL, "retrieveDateTime": WHEN, "signature": "c2ln",
         "signingCertificate": PEM}}),
    (V16, "get-log", {"request_id": 4, "log_type": "Diagnostics", "location": URL,
                      "since": WHEN, "until": LATER},
     "GetDiagnostics", {"location": URL, "startTime": WHEN, "stopTime": LATER}),
    (V16, "get-log", {"request_id": 4, "log_type": "SecurityLog", "location": URL},
     "GetLog", {"logType": "SecurityLog", "requestId": 4, "log": {"remoteLocation": URL}}),
    (V201, "get-log", {"request_id": 4, "log_type": "Diagnostics", "location": URL,
                       "since": WHEN},
     "GetLog", {"logType": "DiagnosticsLog", "requestId": 4,
                "log": {"remoteLocation": URL, "oldestTimestamp": WHEN}}),
    (V201, "get-log", {"request_id": 4, "log_type": "SecurityLog", "location": URL},
     "GetLog", {"logType": "SecurityLog", "requestId": 4, "log": {"remoteLocation": URL}}),
])
def test_calls(version: OcppVersion, command: str, args: dict[str, Any], action: str,
               payload: dict[str, Any]) -> None:
    call = build_call(version, command, args)
    assert (call.action, call.payload) == (action, payload)


@pytest.mark.parametrize(("version", "command", "args"), [
    (V16, "reserve", {"reservation_id": 7, "tag": "T" * 21, "expiry": WHEN}),
    (V201, "reserve", {"reservation_id": 7, "tag": "T", "expiry": "soon"}),
    (V16, "cancel-reservation", {}),
    (V201, "update-firmware", {"request_id": 3, "location": "x" * 513, "retrieve": WHEN}),
    (V201, "get-log", {"request_id": 4, "log_type": "Everything", "location": URL}),
])
def test_invalid_calls(version: OcppVersion, command: str, args: dict[str, Any]) -> None:
    with pytest.raises(CommandError):
        build_call(version, command, args)


@pytest.mark.parametrize("command", ["update-firmware", "get-log"])
def test_transfer_urls_are_secrets(command: str) -> None:
    """A firmware or upload URL opens its request: not logged, not audited."""
    args = {"location": URL, "request_id": 1}
    assert carries_secret(command, args)
    assert URL not in str(redacted_args(command, args))
