"""The driver-facing and remaining commands: each builds a CALL the official schema of its
version accepts, or is refused with the reason; hostile display text never reaches a
station; secrets of a network profile are redacted; the running cost never delays nor
fails a TransactionEvent answer."""

from __future__ import annotations

import json
from typing import Any

import pytest

from csms.protocol import OcppVersion
from csms.translate.commands import (
    REDACTED,
    CommandError,
    build_call,
    carries_secret,
    redacted_args,
)
from csms.translate.more_args import message_content
from csms.translate.v201 import cost_answer

V16, V201 = OcppVersion.V16, OcppVersion.V201
COST = {"transaction_id": "17", "total_cost": "1.56", "meter_wh": 4000,
        "timestamp": "2026-03-01T10:10:00Z", "text": "Cost so far: 1.56 EUR",
        "kwh_price": "0.39", "hour_price": "0", "flat_fee": "0.50"}

# command, args, 1.6 action (None: refused), 2.0.1 action
CASES: list[tuple[str, dict[str, Any], str | None, str]] = [
    ("clear-cache", {}, "ClearCache", "ClearCache"),
    ("get-composite-schedule", {"connector": 1, "duration": 60, "unit": "a"},
     "GetCompositeSchedule", "GetCompositeSchedule"),
    ("get-charging-profiles", {"purpose": "TxProfile", "profile_id": 3, "connector": 1},
     None, "GetChargingProfiles"),
    ("get-transaction-status", {"transaction_id": "T"}, None, "GetTransactionStatus"),
    ("customer-information", {"tag": "T1", "clear": True}, None, "CustomerInformation"),
    ("customer-information", {"customer": "C-9"}, None, "CustomerInformation"),
    ("set-network-profile", {"url": "wss://x/ocpp", "apn": "a", "apn_password": "p"}, None,
     "SetNetworkProfile"),
    ("set-display-message", {"message_id": 1, "text": "hi", "state": "Charging",
                             "transaction_id": "T", "priority": "InFront"}, None,
     "SetDisplayMessage"),
    ("get-display-messages", {"message_id": 1, "state": "Idle"}, None, "GetDisplayMessages"),
    ("clear-display-message", {"message_id": 1}, None, "ClearDisplayMessage"),
    ("cost-updated", {**COST, "running_cost": True}, "DataTransfer", "CostUpdated"),
    ("trigger", {"message": "LogStatusNotification"}, "ExtendedTriggerMessage",
     "TriggerMessage"),
    ("trigger", {"message": "Heartbeat", "extended": True}, "ExtendedTriggerMessage",
     "TriggerMessage"),
]


@pytest.mark.parametrize(("command", "args", "v16", "v201"), CASES)
def test_schema_valid_calls_or_a_reason(command: str, args: dict[str, Any],
                                        v16: str | None, v201: str) -> None:
    assert build_call(V201, command, args).action == v201  # validated inside build_call
    if v16 is None:
        with pytest.raises(CommandError, match=r"2\.0\.1 only"):
            build_call(V16, command, args)
    else:
        assert build_call(V16, command, args).action == v16


def test_1_6_running_cost_only_when_announced() -> None:
    with pytest.raises(CommandError, match="has not announced"):
        build_call(V16, "cost-updated", COST)
    call = build_call(V16, "cost-updated", {**COST, "running_cost": True})
    assert (call.payload["vendorId"], call.payload["messageId"]) == (
        "org.openchargealliance.costmsg", "RunningCost")
    assert json.loads(call.payload["data"]) == {
        "transactionId": 17, "cost": 1.56, "timestamp": "2026-03-01T10:10:00Z",
        "meterValue": 4000, "state": "Charging", "priceText": "Cost so far: 1.56 EUR",
        "chargingPrice": {"kWhPrice": 0.39, "hourPrice": 0.0, "flatFee": 0.5}}
    final = build_call(V16, "cost-updated", {**COST, "running_cost": True, "final": True})
    assert final.payload["messageId"] == "FinalCost"
    assert json.loads(final.payload["data"]) == {
        "transactionId": 17, "cost": 1.56, "priceText": "Cost so far: 1.56 EUR",
        "qrCodeText": ""}
    assert build_call(V201, "cost-updated", COST).payload == {"totalCost": 1.56,
                                                              "transactionId": "17"}


@pytest.mark.parametrize(("text", "extra", "why"), [
    ("x" * 513, {}, "at most 512"),
    ("x" * 10_000, {}, "at most 512"),
    ("a\x00b", {}, "control characters"),
    ("\x1b[31mred", {}, "control characters"),
    ("rtl\u202eevil", {}, "control characters"),  # a bidi override: text shown reversed
    ("tab\there", {}, "control characters"),
    ("", {}, "missing"),
    (None, {}, "missing"),
    (42, {}, "missing"),
    ("ok", {"language": "english-please"}, "RFC 5646"),
    ("ok", {"language": "en;drop"}, "RFC 5646"),
    ("ok", {"fmt": "PDF"}, "format is one of"),
    ("Grüße", {"fmt": "ASCII"}, "ASCII characters only"),
])
def test_hostile_display_text_is_refused(text: Any, extra: dict[str, Any], why: str) -> None:
    with pytest.raises(CommandError, match=why):
        message_content(text, extra.get("language"), extra.get("fmt", "UTF8"))


def test_display_text_kept_as_given() -> None:
    assert message_content("Zwei Zeilen\nÜber 0,39 €", "de-DE") == {
        "format": "UTF8", "language": "de-DE", "content": "Zwei Zeilen\nÜber 0,39 €"}
    assert len(message_content("€" * 512)["content"]) == 512


@pytest.mark.parametrize(("args", "why"), [
    ({"url": "http://x"}, "ws:// or wss://"),
    ({}, "missing argument 'url'"),
    ({"url": "ws://x", "slot": "one"}, "slot must be an integer"),
])
def test_bad_network_profiles(args: dict[str, Any], why: str) -> None:
    with pytest.raises(CommandError, match=why):
        build_call(V201, "set-network-profile", args)


def test_network_profile_secret_is_redacted() -> None:
    args = {"url": "wss://x", "apn": "internet", "apn_password": "hunter2-secret"}
    assert carries_secret("set-network-profile", args)
    assert redacted_args("set-network-profile", args) == {**args, "apn_password": REDACTED}


@pytest.mark.parametrize(("args", "why"), [
    ({"tag": "T", "report": False, "clear": False}, "a report, a clear, or both"),
    ({}, "name the customer"),
])
def test_bad_customer_information(args: dict[str, Any], why: str) -> None:
    with pytest.raises(CommandError, match=why):
        build_call(V201, "customer-information", args)


@pytest.mark.parametrize("command", ["get-charging-profiles", "get-display-messages",
                                     "set-display-message"])
def test_bad_choices(command: str) -> None:
    with pytest.raises(CommandError, match="is one of"):
        build_call(V201, command, {"message_id": 1, "text": "x", "priority": "Loud",
                                   "purpose": "Anything"})


def test_no_cost_is_left_out_of_the_answer() -> None:
    # the cost is read with the event (csms.service.sessions); one that could not be
    # computed is None, and the answer then carries neither totalCost nor a message
    assert cost_answer(None) == {}


def test_publish_and_unpublish_firmware_per_version() -> None:
    from csms.translate.commands import version_refusal

    url = "https://csms.example:9002/firmware/" + "t" * 43
    call = build_call(OcppVersion.V201, "publish-firmware", {
        "location": url, "checksum": "0" * 32, "request_id": 5, "retries": 2,
        "retry_interval": 30})
    assert (call.action, call.payload) == ("PublishFirmware", {
        "location": url, "checksum": "0" * 32, "requestId": 5, "retries": 2,
        "retryInterval": 30})
    call = build_call(OcppVersion.V201, "unpublish-firmware", {"checksum": "0" * 32})
    assert (call.action, call.payload) == ("UnpublishFirmware", {"checksum": "0" * 32})
    # the schema bounds the checksum (an MD5 in hex is 32 characters)
    with pytest.raises(CommandError, match="UnpublishFirmware"):
        build_call(OcppVersion.V201, "unpublish-firmware", {"checksum": "0" * 64})
    for command in ("publish-firmware", "unpublish-firmware"):
        with pytest.raises(CommandError, match=r"2\.0\.1 only"):
            build_call(OcppVersion.V16, command, {"checksum": "0" * 32})
        assert "2.0.1" in (version_refusal(OcppVersion.V16, command) or "")
        assert version_refusal(OcppVersion.V201, command) is None
    assert version_refusal(OcppVersion.V16, "update-firmware") is None
    assert version_refusal(OcppVersion.V16, "get-variables") is not None
    assert carries_secret("publish-firmware", {"location": url})


# a command naming a connector (1.6) or an EVSE (2.0.1), with the arguments it needs
CONNECTOR_COMMANDS: list[tuple[str, dict[str, Any], int]] = [
    ("start", {"tag": "T1"}, 1),
    ("availability", {"state": "inoperative"}, 0),
    ("trigger", {"message": "StatusNotification"}, 0),
    ("set-profile", {"limit": 11000}, 0),
    ("reserve", {"tag": "T1", "expiry": "2030-01-01T00:00:00Z", "reservation_id": 1}, 0),
    ("unlock", {}, 1),
]


@pytest.mark.parametrize("version", [V16, V201])
@pytest.mark.parametrize(("command", "args", "low"), CONNECTOR_COMMANDS)
@pytest.mark.parametrize("connector", [-1, 2**31, 10**30])
def test_a_connector_no_station_has_is_refused(version: OcppVersion, command: str,
                                               args: dict[str, Any], low: int,
                                               connector: int) -> None:
    """OCPP's connector and EVSE ids are 32-bit and never negative: an operator's -1 or
    2^31 is refused with the range, never sent."""
    with pytest.raises(CommandError, match="connector must be an integer from"):
        build_call(version, command, {**args, "connector": connector})


@pytest.mark.parametrize("version", [V16, V201])
@pytest.mark.parametrize(("command", "args", "low"), CONNECTOR_COMMANDS)
def test_the_connectors_in_range_are_taken(version: OcppVersion, command: str,
                                           args: dict[str, Any], low: int) -> None:
    for connector in (max(low, 1), 2**31 - 1):
        build_call(version, command, {**args, "connector": connector})
