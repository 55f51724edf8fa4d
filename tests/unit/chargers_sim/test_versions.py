"""The per-version modules of the simulator: same function names, payloads that the
official schemas accept, and one OCMF signing path for both versions."""

from __future__ import annotations

import base64
import json
from typing import Any

import orjson
import pytest

from chargers_sim import Station, v16, v201
from chargers_sim.meter import Meter
from chargers_sim.ocmf import split_container
from chargers_sim.session import Session
from chargers_sim.versions import rules_for
from csms.protocol import OcppVersion, Validator

VERSIONS = [OcppVersion.V16, OcppVersion.V201]


def test_both_modules_define_the_same_functions() -> None:
    assert sorted(v16.__all__) == sorted(v201.__all__)
    for name in v16.__all__:
        assert callable(getattr(v16, name)) and callable(getattr(v201, name))


@pytest.mark.parametrize("version", VERSIONS)
def test_messages_pass_the_official_schema(version: OcppVersion) -> None:
    rules, check = rules_for(version), Validator(version)
    check.validate("BootNotification", rules.boot_payload("CP-" + "x" * 40))
    for status in ("Available", "Preparing", "Charging", "Finishing", "Unavailable"):
        check.validate("StatusNotification", rules.status_payload(2, status))
    check.validate("Authorize", rules.authorize_payload("TAG1"))


@pytest.mark.parametrize(("version", "wire"), [(OcppVersion.V16, "Charging"),
                                               (OcppVersion.V201, "Occupied")])
def test_connector_status_words(version: OcppVersion, wire: str) -> None:
    payload = rules_for(version).status_payload(1, "Charging")
    assert wire in payload.values()


def _signed_value(version: OcppVersion, sampled: list[dict[str, Any]]) -> dict[str, str]:
    if version is OcppVersion.V16:
        [signed] = [v for v in sampled if v.get("format") == "SignedData"]
        value: dict[str, str] = orjson.loads(signed["value"])
        return value
    value = sampled[0]["signedMeterValue"]
    return value


@pytest.mark.parametrize("version", VERSIONS)
async def test_signed_begin_and_end_readings_share_one_signing_path(
        version: OcppVersion) -> None:
    st = Station("ws://unused", "CP1", version, seed=1, signed=True)
    s = Session(1, "04A2B3C4", st.meters[1].register_wh, 0.0)
    readings = []
    for context, kind in (("Transaction.Begin", "B"), ("Transaction.End", "E")):
        sampled = st._sampled(s, context, extra=False)
        Validator(version).validate("MeterValues" if version is OcppVersion.V16
                                    else "TransactionEvent", _payload(version, sampled))
        signed = _signed_value(version, sampled)
        payload, _ = split_container(base64.b64decode(signed["signedMeterData"]).decode())
        data = json.loads(payload)
        readings.append((data["PG"], data["RD"][0]["TX"], data["ID"]))
        assert data["RD"][0]["RV"] == round(st.meters[1].register_wh / 1000, 3)
        assert kind == data["RD"][0]["TX"]
    assert readings == [("T1", "B", "04A2B3C4"), ("T2", "E", "04A2B3C4")]
    # periodic samples are not signed
    periodic = st._sampled(s, "Sample.Periodic", extra=True)
    assert not any("signedMeterValue" in v or v.get("format") == "SignedData"
                   for v in periodic)
    assert s.pagination == 2


def _payload(version: OcppVersion, sampled: list[dict[str, Any]]) -> dict[str, Any]:
    at = "2026-01-01T00:00:00.000Z"
    if version is OcppVersion.V16:
        return {"connectorId": 1, "transactionId": 7,
                "meterValue": [{"timestamp": at, "sampledValue": sampled}]}
    return {"eventType": "Updated", "timestamp": at, "triggerReason": "MeterValuePeriodic",
            "seqNo": 1, "transactionInfo": {"transactionId": "t1"},
            "meterValue": [{"timestamp": at, "sampledValue": sampled}]}


@pytest.mark.parametrize("version", VERSIONS)
def test_sampled_values_without_signature(version: OcppVersion) -> None:
    meter = Meter(register_wh=12_345)
    values = rules_for(version).sampled(meter, "Sample.Periodic", extra=True, signed=None)
    energy = values[0]
    assert energy["measurand"] == "Energy.Active.Import.Register"
    # 1.6 sends strings in Wh, 2.0.1 numbers with a unit of measure
    assert energy["value"] == ("12345" if version is OcppVersion.V16 else 12_345)
    assert [v.get("phase") for v in values[2:]] == ["L1", "L2", "L3"]
