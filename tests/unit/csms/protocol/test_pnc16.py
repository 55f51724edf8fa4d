"""2.0.1 messages in a 1.6 DataTransfer (OCA "Using ISO 15118 Plug & Charge with OCPP 1.6"):
wrapping, reading back, and what a hostile or broken station sends instead."""

from __future__ import annotations

import json
from typing import Any

import pytest

from csms.protocol.pnc16 import PNC_VENDOR_ID, PncError, answer_data, is_pnc, unwrap, wrap

# A real frame's payload, from MaEVe's 1.6 DataTransfer handler tests
# (thoughtworks/maeve-csms, manager/handlers/ocpp16/data_transfer_test.go).
MAEVE_CERTIFICATE_STATUS: dict[str, Any] = {
    "vendorId": "org.openchargealliance.iso15118pnc",
    "messageId": "GetCertificateStatus",
    "data": "{\"ocspRequestData\":{\"hashAlgorithm\":\"SHA256\",\"issuerKeyHash\":\"key-hash\","
            "\"issuerNameHash\":\"name-hash\",\"responderURL\":\"http://ocsp-qa.example.com:8080\","
            "\"serialNumber\":\"serial-number\"}}",
}


def test_a_real_frame_reads_as_its_2_0_1_request() -> None:
    assert is_pnc(MAEVE_CERTIFICATE_STATUS)
    action, inner = unwrap(MAEVE_CERTIFICATE_STATUS)
    assert action == "GetCertificateStatus"
    assert inner["ocspRequestData"]["responderURL"] == "http://ocsp-qa.example.com:8080"


def test_wrap_then_unwrap_gives_the_payload_back() -> None:
    inner = {"idToken": {"idToken": "DEMA1234567890", "type": "eMAID"}}
    wrapped = wrap("Authorize", inner)
    assert wrapped["vendorId"] == PNC_VENDOR_ID and wrapped["messageId"] == "Authorize"
    assert isinstance(wrapped["data"], str) and json.loads(wrapped["data"]) == inner
    assert unwrap(wrapped) == ("Authorize", inner)


def test_an_answer_is_read_only_when_accepted_and_valid() -> None:
    data = answer_data("CertificateSigned", {"status": "Accepted"})
    assert unwrap({"status": "Accepted", "data": data}, "response", "CertificateSigned") == (
        "CertificateSigned", {"status": "Accepted"})
    with pytest.raises(PncError, match="answered the DataTransfer Rejected"):
        unwrap({"status": "Rejected", "data": "no"}, "response", "CertificateSigned")
    with pytest.raises(PncError, match="CertificateSigned response"):
        unwrap({"status": "Accepted", "data": '{"status": "Maybe"}'}, "response",
               "CertificateSigned")
    with pytest.raises(PncError, match="JSON string"):
        unwrap({"status": "Accepted"}, "response", "CertificateSigned")


@pytest.mark.parametrize(("payload", "reason"), [
    ({"vendorId": PNC_VENDOR_ID, "messageId": "Authorize"}, "JSON string"),
    ({"vendorId": PNC_VENDOR_ID, "messageId": "Authorize", "data": "{not json"}, "not JSON"),
    ({"vendorId": PNC_VENDOR_ID, "messageId": "Authorize", "data": "[1, 2]"},
     "not a JSON object"),
    ({"vendorId": PNC_VENDOR_ID, "messageId": "Authorize", "data": "{}"},
     "Authorize request: .*idToken"),
    # a station that sends the 1.6 Authorize inside: not the 2.0.1 payload
    ({"vendorId": PNC_VENDOR_ID, "messageId": "Authorize", "data": '{"idTag": "ABC"}'},
     "Authorize request"),
    ({"vendorId": PNC_VENDOR_ID, "messageId": "Authorize",
      "data": json.dumps({"idToken": {"idToken": "X" * 37, "type": "eMAID"}})},
     "Authorize request"),
    ({"vendorId": PNC_VENDOR_ID, "data": "{}"}, "messageId missing"),
    ({"vendorId": PNC_VENDOR_ID, "messageId": "SignCertificate",
      "data": json.dumps({"csr": "x" * 5501})}, "SignCertificate request"),
    # nested a thousand deep: refused, not a crash
    ({"vendorId": PNC_VENDOR_ID, "messageId": "Authorize", "data": "[" * 100_000},
     "not JSON"),
    ({"vendorId": PNC_VENDOR_ID, "messageId": "Authorize", "data": 42}, "JSON string"),
])
def test_what_cannot_be_read_is_refused_in_one_line(payload: dict[str, Any],
                                                     reason: str) -> None:
    with pytest.raises(PncError, match=reason) as caught:
        unwrap(payload)
    assert "\n" not in str(caught.value) and len(str(caught.value)) <= 300


def test_wrap_refuses_what_the_2_0_1_schema_refuses() -> None:
    with pytest.raises(PncError, match="TriggerMessage request"):
        wrap("TriggerMessage", {"requestedMessage": "V2GCertificate"})
    assert json.loads(wrap("TriggerMessage", {"requestedMessage": "SignV2GCertificate"})[
        "data"]) == {"requestedMessage": "SignV2GCertificate"}


def test_other_vendors_are_not_plug_and_charge() -> None:
    assert not is_pnc({"vendorId": "org.openchargealliance.costmsg", "messageId": "RunningCost"})
    assert not is_pnc({"vendorId": PNC_VENDOR_ID.upper()})


def test_deep_nesting_raises_even_where_the_recursion_limit_was_raised() -> None:
    """py_ecc (imported with the in-process chain) raises the recursion limit to 100,000:
    the standard library's JSON parser then runs off the C stack on deep input and the
    process dies. Frames, the wrapped data and OCMF JSON must refuse it instead."""
    import subprocess
    import sys

    code = """
import sys
sys.setrecursionlimit(1_000_000)
from csms.protocol import FrameError, parse_frame
from csms.protocol.pnc16 import PncError, unwrap
from csms.metering.ocmf import OcmfError, normalize_key
deep = "[" * 300_000
for attempt in (
    lambda: parse_frame('[2,"1","Heartbeat",' + deep),
    lambda: parse_frame(('[2,"1","DataTransfer",{"a":' + '[' * 2000 + '1e400').encode()),
    lambda: unwrap({"vendorId": "org.openchargealliance.iso15118pnc",
                    "messageId": "Authorize", "data": deep}),
    lambda: normalize_key("{" + '"a":[' * 300_000),
):
    try:
        attempt()
    except (FrameError, PncError, OcmfError, ValueError) as exc:
        print(type(exc).__name__)
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr[-500:]
    assert done.stdout.split() == ["FrameError", "FrameError", "PncError", "OcmfError"]


@pytest.mark.parametrize(("text", "beyond"), [
    ("[" * 1024 + "]" * 1024, False),
    ("[" * 1025, True),
    ('["' + "[" * 5000 + '"]', False),  # brackets in a string do not nest
    ('["\\"' + "[" * 5000 + '"]', False),  # nor after an escaped quote
    ('{"a":' * 1025, True),
])
def test_nesting_is_measured_outside_strings(text: str, beyond: bool) -> None:
    from csms.protocol.frames import nested_beyond

    assert nested_beyond(text) is beyond
    assert nested_beyond(text.encode()) is beyond
