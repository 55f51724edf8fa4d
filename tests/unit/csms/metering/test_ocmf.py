"""OCMF signed meter data: public test vectors, wrappings, keys, comparison with billing."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from chargers_sim.ocmf import MeterSigner
from csms.metering.ocmf import (
    INVALID,
    MALFORMED,
    NO_KEY,
    VERIFIED,
    OcmfError,
    SignedReading,
    check_container,
    compare_with_billed,
    normalize_key,
    unwrap,
)
from support.ocmf_vectors import ISKRA, ISKRA_KEY, KEBA, KEBA_KEY


def v16(value: str) -> dict[str, str]:
    return {"signedData": value}


def test_public_vector_keba_verifies_with_its_readings() -> None:
    checked = check_container(v16(KEBA), normalize_key(KEBA_KEY))
    assert (checked.status, checked.detail) == (VERIFIED, "signature verified")
    assert [(r.tx, r.wh, r.resolution_wh) for r in checked.readings] == [
        ("B", Decimal("259.6"), Decimal("0.1")), ("E", Decimal("259.7"), Decimal("0.1"))]
    assert checked.readings[0].pagination == "T32"
    assert checked.readings[0].time == "2019-08-13T10:03:15+00:00"


def test_public_vector_iskra_verifies() -> None:
    checked = check_container(v16(ISKRA), ISKRA_KEY)
    assert checked.status == VERIFIED
    assert [r.wh for r in checked.readings] == [Decimal("80770"), Decimal("80970")]
    assert checked.readings[0].meter_serial == "W4155775"


@pytest.mark.parametrize("change", [("0.2597", "0.2598"), ('"TX":"B"', '"TX":"C"'),
                                    ("T32", "T33"), ("17619300", "17619301")])
def test_one_altered_character_fails(change: tuple[str, str]) -> None:
    altered = KEBA.replace(*change, 1)
    assert altered != KEBA
    assert check_container(v16(altered), KEBA_KEY).status == INVALID


def test_another_meters_key_fails() -> None:
    assert check_container(v16(KEBA), ISKRA_KEY).status == INVALID


def test_without_any_key_it_cannot_be_checked() -> None:
    checked = check_container(v16(KEBA), None)
    assert checked.status == NO_KEY
    assert len(checked.readings) == 2  # still read, for the record


@pytest.mark.parametrize("value", ["OCMF|{not json|{}", "OCMF|{}", "hello", "{\"x\": 1}",
                                   "OCMF|{\"FV\":\"1.0\"}|{\"SD\":\"zz\"}", "{]"])
def test_unreadable_data_is_malformed_not_an_exception(value: str) -> None:
    assert check_container(v16(value), KEBA_KEY).status == MALFORMED


def test_wrappings_of_both_versions() -> None:
    b64 = base64.b64encode(KEBA.encode()).decode()
    key_b64 = base64.b64encode(bytes.fromhex(KEBA_KEY)).decode()
    # 2.0.1 SignedMeterValueType
    w = unwrap({"signedMeterData": b64, "signingMethod": "ECDSA-secp256r1-SHA256",
                "encodingMethod": "OCMF", "publicKey": key_b64})
    assert (w.container, w.public_key) == (KEBA, KEBA_KEY.lower())
    # 1.6, OCA application note: the 2.0.1 object as JSON in the value
    w = unwrap(v16(json.dumps({"signedMeterValue": b64, "encodingMethod": "OCMF",
                               "publicKey": KEBA_KEY})))
    assert (w.container, w.public_key) == (KEBA, KEBA_KEY.lower())
    # 1.6: the bare container, or the container in base64
    assert unwrap(v16(KEBA)).container == KEBA
    assert unwrap(v16(b64)).container == KEBA
    # the key the message carries is used when none is pinned
    assert check_container({"signedMeterData": b64, "publicKey": key_b64}, None).status \
        == VERIFIED
    with pytest.raises(OcmfError, match="EDL"):
        unwrap({"signedMeterData": b64, "encodingMethod": "EDL"})


def test_key_formats_agree_and_non_ec_keys_are_refused() -> None:
    der = bytes.fromhex(KEBA_KEY)
    pem = serialization.load_der_public_key(der).public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    forms = [KEBA_KEY, KEBA_KEY.lower(), base64.b64encode(der).decode(), pem,
             " ".join(KEBA_KEY[i:i + 8] for i in range(0, len(KEBA_KEY), 8))]
    assert {normalize_key(f) for f in forms} == {KEBA_KEY.lower()}
    rsa_pem = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key() \
        .public_bytes(serialization.Encoding.PEM,
                      serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    for bad in [rsa_pem, "not a key", "00ff", ""]:
        with pytest.raises(OcmfError):
            normalize_key(bad)


def test_brainpool_keys_verify() -> None:
    key = ec.generate_private_key(ec.BrainpoolP256R1())
    der = key.public_key().public_bytes(serialization.Encoding.DER,
                                        serialization.PublicFormat.SubjectPublicKeyInfo)
    payload = json.loads(KEBA.split("|")[1])
    text = json.dumps(payload, separators=(",", ":"))
    from cryptography.hazmat.primitives import hashes

    sig = key.sign(text.encode(), ec.ECDSA(hashes.SHA256())).hex()
    container = f'OCMF|{text}|{{"SA":"ECDSA-brainpool256r1-SHA256","SD":"{sig}"}}'
    assert check_container(v16(container), der.hex()).status == VERIFIED
    assert check_container(v16(container.replace("0.2597", "0.2599")), der.hex()).status \
        == INVALID


def test_simulated_meter_containers_verify() -> None:
    signer = MeterSigner.generate("SIM-1")
    container = signer.container(station_id="CP-1", id_tag="04A2B3C4", register_wh=12345,
                                 at=datetime.now(UTC), kind="E", pagination=2)
    checked = check_container(signer.signed_meter_value(container), None)
    assert checked.status == VERIFIED and checked.message_key == signer.public_key_der.hex()
    assert [(r.tx, r.wh) for r in checked.readings] == [("E", Decimal("12345.000"))]


def reading(tx: str, wh: str, res: str = "0.1") -> SignedReading:
    return SignedReading(tx, None, Decimal(wh), Decimal(res), None, None)


def test_signed_readings_against_billed_ones() -> None:
    signed = [reading("B", "259.6"), reading("E", "259.7")]
    # a station reporting whole Wh next to a meter signing 0.1 Wh: within the coarser step
    assert compare_with_billed(signed, Decimal(260), Decimal(260)) == ([], [])
    mismatches, missing = compare_with_billed(signed, Decimal(260), Decimal(262))
    assert missing == [] and mismatches == ["stop: billed 262 Wh, meter signed 259.7 Wh"]
    assert compare_with_billed(signed, Decimal("259.6"), Decimal("259.8"))[0]
    assert compare_with_billed([reading("E", "259.7")], Decimal(1), Decimal(260)) == (
        [], ["start"])
    assert compare_with_billed(signed, None, Decimal(260))[0] == [
        "start: signed 259.6 Wh, nothing billed"]
