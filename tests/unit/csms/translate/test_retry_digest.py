"""The digest of a 2.0.1 TransactionEvent as the station wrote it (csms.translate.v201
``retry_digest``): a copy sent again under its seqNo gives the same one, a copy that says
something else names what differs."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from csms.service.retries import APART, parts_differing
from csms.translate.v201 import retry_digest

T0 = "2026-03-01T10:00:00.000Z"


def updated() -> dict[str, Any]:
    return {
        "eventType": "Updated", "timestamp": T0, "triggerReason": "MeterValuePeriodic",
        "seqNo": 1, "transactionInfo": {"transactionId": "tx-1", "chargingState": "Charging"},
        "evse": {"id": 1, "connectorId": 1},
        "idToken": {"idToken": "T1", "type": "ISO14443"},
        "meterValue": [{"timestamp": T0, "sampledValue": [
            {"value": 1500, "context": "Sample.Periodic"},
            {"value": 7000, "measurand": "Power.Active.Import",
             "unitOfMeasure": {"unit": "W"}}]}],
    }


def changed(path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    p = copy.deepcopy(updated())
    here: Any = p
    for key in path[:-1]:
        here = here[key]
    if value is None:
        del here[path[-1]]
    else:
        here[path[-1]] = value
    return p


@pytest.mark.parametrize(("path", "value", "parts"), [
    # a retry: the same message, whatever its offline flag, key order or customData
    (("offline",), True, []),
    (("customData",), {"vendorId": "x"}, []),
    (("seqNo",), 9, []),  # its key: never compared
    (("transactionInfo", "transactionId"), "other", []),
    (("triggerReason",), "ChargingStateChanged", ["event"]),
    (("transactionInfo", "chargingState"), "SuspendedEV", ["event"]),
    (("eventType",), "Ended", ["event"]),
    (("numberOfPhasesUsed",), 3, ["event"]),
    (("timestamp",), "2026-03-01T10:00:01.000Z", ["timestamp"]),
    (("timestamp",), "2026-03-01T10:00:00Z", ["timestamp"]),  # written otherwise
    (("idToken", "idToken"), "T2", ["id_token"]),
    (("idToken",), None, ["id_token"]),
    (("evse", "id"), 2, ["evse"]),
    (("meterValue", 0, "sampledValue", 0, "value"), 1501, ["meter_value"]),
    (("meterValue", 0, "sampledValue", 0, "value"), 1500.0, ["meter_value"]),
    (("meterValue", 0, "timestamp"), "2026-03-01T10:00:05.000Z", ["meter_value"]),
], ids=["offline", "customData", "seqNo", "transactionId", "trigger", "charging state",
        "type", "phases", "time", "time written otherwise", "token", "no token", "evse",
        "reading", "reading written otherwise", "reading's time"])
def test_the_parts_a_copy_differs_in(path: tuple[Any, ...], value: Any,
                                     parts: list[str]) -> None:
    first = retry_digest(updated())
    assert parts_differing(first, retry_digest(changed(path, value))) == parts


def test_key_order_is_no_difference() -> None:
    p = updated()
    reordered = dict(reversed(list(p.items())))
    reordered["evse"] = {"connectorId": 1, "id": 1}
    assert retry_digest(reordered) == retry_digest(p)


def test_an_integer_beyond_64_bits_is_written_out_too() -> None:
    """The frame's parser reads long integers exactly (csms.protocol.frames); orjson
    writes none beyond 64 bits: the standard library's writer does."""
    big = changed(("meterValue", 0, "sampledValue", 0, "value"), 10**30)
    bigger = changed(("meterValue", 0, "sampledValue", 0, "value"), 10**30 + 1)
    assert 0 <= retry_digest(big) < APART
    assert parts_differing(retry_digest(big), retry_digest(bigger)) == ["meter_value"]
