"""OCMF signed meter data: real meters' records, wrappings, every key and signature encoding,
registers, reconciliation with billed readings."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from chargers_sim.ocmf import MeterSigner
from csms.metering.ocmf import (
    INVALID,
    MALFORMED,
    NO_KEY,
    VERIFIED,
    OcmfError,
    SignedReading,
    check_container,
    normalize_key,
    reconcile,
    register_kind,
    unwrap,
)
from support.ocmf_vectors import (
    BAUER_BEGIN,
    BAUER_END,
    BAUER_KEY,
    DZG_BEGIN,
    DZG_END,
    DZG_KEY,
    ISKRA,
    ISKRA_KEY,
    KEBA,
    KEBA_KEY,
    KEBA_P30_CONTAINER,
    KEBA_P30_KEY,
    KEBA_P30_PUBLIC_KEY,
    LEM_PAYLOAD,
)


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


@pytest.mark.parametrize("value", [
    "OCMF|{not json|{}", "OCMF|{}", "hello", "{\"x\": 1}", "OCMF|{\"FV\":\"1.0\"}|{\"SD\":\"zz\"}",
    "{]",
    # wrong types that pyocmf raises TypeError, AttributeError and KeyError for
    'OCMF|{"FV":"1.0","PG":"T1","RD":[{"TM":"2026-03-01T10:00:00,000+0000 S","TX":"B",'
    '"RV":1,"RU":"kWh","EF":5}]}|{"SD":"00"}',
    'OCMF|{"FV":"1.0","PG":"T1","RD":["x"]}|{"SD":"00"}',
    'OCMF|{"FV":"1.0","PG":"T1","RD":{"a":1}}|{"SD":"00"}',
])
def test_unreadable_data_is_malformed_not_an_exception(value: str) -> None:
    assert check_container(v16(value), KEBA_KEY).status == MALFORMED


@pytest.mark.parametrize("signed", ["OCMF|{}|{}", ["signedData"], 1])
def test_signed_data_that_is_not_an_object_is_malformed_not_an_exception(signed: Any) -> None:
    # a receipt's sample can carry anything under "signed": the receipt page calls this
    # malformed too (web/verify/src/ocmf.js unwrap)
    checked = check_container(signed, KEBA_KEY)
    assert (checked.status, checked.detail) == (MALFORMED, "signed meter data is not an object")


def test_wrappings_of_both_versions() -> None:
    b64 = base64.b64encode(KEBA.encode()).decode()
    key_b64 = base64.b64encode(bytes.fromhex(KEBA_KEY)).decode()
    # 2.0.1 SignedMeterValueType
    w = unwrap({"signedMeterData": b64, "signingMethod": "ECDSA-secp256r1-SHA256",
                "encodingMethod": "OCMF", "publicKey": key_b64})
    assert (w.container, w.public_key) == (KEBA, key_b64)  # read later, with the curve
    # 1.6, OCA application note: the 2.0.1 object as JSON in the value
    w = unwrap(v16(json.dumps({"signedMeterValue": b64, "encodingMethod": "OCMF",
                               "publicKey": KEBA_KEY})))
    assert (w.container, w.public_key) == (KEBA, KEBA_KEY)
    assert check_container(v16(json.dumps({"signedMeterValue": b64, "publicKey": KEBA_KEY})),
                           None).message_key == KEBA_KEY.lower()
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


def reading(tx: str, wh: str, res: str = "0.1", kind: str = "import") -> SignedReading:
    return SignedReading(tx, None, Decimal(wh), Decimal(res), None, None, kind=kind)


@pytest.mark.parametrize(("container", "key", "readings", "change"), [
    (KEBA_P30_CONTAINER, KEBA_P30_PUBLIC_KEY,
     [("B", "2114135.6000", "1-b:1.8.0"), ("E", "2133854.3000", "1-b:1.8.0")],
     ("2133.8543", "2133.8544")),
    (DZG_BEGIN, DZG_KEY, [("B", "9038.000", "01-00:01.08.00.FF")], ("9.038", "9.039")),
    # the end container's second register counts seconds: not an energy reading
    (DZG_END, DZG_KEY, [("E", "9038.000", "01-00:01.08.00.FF")], ("9.038", "9.039")),
    (BAUER_BEGIN, BAUER_KEY, [("B", "0", "1-0:1.8.0*198")], ('"RV":0', '"RV":1')),
    (BAUER_END, BAUER_KEY, [("E", "0", "1-0:1.8.0*198")], ('"RV":0', '"RV":1')),
])
def test_real_meters_records_verify(container: str, key: str,
                                    readings: list[tuple[str, str, str]],
                                    change: tuple[str, str]) -> None:
    checked = check_container(v16(container), normalize_key(key))
    assert (checked.status, checked.detail) == (VERIFIED, "signature verified")
    assert [(r.tx, str(r.wh), r.register) for r in checked.readings] == readings
    assert {r.kind for r in checked.readings} == {"import"}
    altered = container.replace(*change)
    assert altered != container
    assert check_container(v16(altered), normalize_key(key)).status == INVALID


def test_keba_sends_its_key_as_base64_of_a_json_object() -> None:
    assert normalize_key(KEBA_P30_PUBLIC_KEY) == KEBA_P30_KEY
    inner = json.loads(base64.b64decode(KEBA_P30_PUBLIC_KEY))
    assert normalize_key(json.dumps(inner)) == KEBA_P30_KEY
    # the 2.0.1 signedMeterValue as the KEBA P30 sends it: no pinned key needed
    signed = {"signedMeterData": base64.b64encode(KEBA_P30_CONTAINER.encode()).decode(),
              "signingMethod": "ECC256", "encodingMethod": "OCMF",
              "publicKey": KEBA_P30_PUBLIC_KEY}
    checked = check_container(signed, None)
    assert checked.status == VERIFIED and checked.message_key == KEBA_P30_KEY


def _point_forms(key: ec.EllipticCurvePrivateKey) -> list[str]:
    public = key.public_key()
    der = public.public_bytes(serialization.Encoding.DER,
                              serialization.PublicFormat.SubjectPublicKeyInfo)
    pem = public.public_bytes(serialization.Encoding.PEM,
                              serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    point = public.public_bytes(serialization.Encoding.X962,
                                serialization.PublicFormat.UncompressedPoint)
    compressed = public.public_bytes(serialization.Encoding.X962,
                                     serialization.PublicFormat.CompressedPoint)
    return [der.hex(), der.hex().upper(), base64.b64encode(der).decode(), pem,
            base64.b64encode(pem.encode()).decode(),  # base64 of the PEM text
            point.hex(), point[1:].hex().upper(),  # 04 || x || y and x || y (Isabellenhuette)
            base64.b64encode(point).decode(), compressed.hex(),
            json.dumps({"UK": der.hex()}), json.dumps({"publicKey": point.hex()}),
            base64.b64encode(json.dumps({"UK": der.hex()}).encode()).decode()]


@pytest.mark.parametrize("curve", [ec.SECP256R1(), ec.SECP384R1(), ec.SECP521R1()])
def test_every_key_encoding_real_chargers_send_gives_the_same_key(
        curve: ec.EllipticCurve) -> None:
    key = ec.generate_private_key(curve)
    der = key.public_key().public_bytes(serialization.Encoding.DER,
                                        serialization.PublicFormat.SubjectPublicKeyInfo)
    forms = _point_forms(key)
    assert {normalize_key(f) for f in forms} == {der.hex()}


def test_a_raw_point_on_another_curve_follows_the_signature_algorithm() -> None:
    key = ec.generate_private_key(ec.SECP256K1())
    point = key.public_key().public_bytes(serialization.Encoding.X962,
                                          serialization.PublicFormat.UncompressedPoint)
    der = key.public_key().public_bytes(serialization.Encoding.DER,
                                        serialization.PublicFormat.SubjectPublicKeyInfo)
    assert normalize_key(point[1:].hex(), ec.SECP256K1()) == der.hex()
    payload = json.loads(KEBA.split("|")[1])
    text = json.dumps(payload, separators=(",", ":"))
    sig = key.sign(text.encode(), ec.ECDSA(hashes.SHA256())).hex()
    container = f'OCMF|{text}|{{"SA":"ECDSA-secp256k1-SHA256","SD":"{sig}"}}'
    wrapped = {"signedMeterData": base64.b64encode(container.encode()).decode(),
               "publicKey": point[1:].hex()}
    checked = check_container(wrapped, None)
    assert checked.status == VERIFIED and checked.message_key == der.hex()


@pytest.mark.parametrize("encoding", ["hex", "base64"])
def test_signatures_as_raw_r_and_s_verify(encoding: str) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    der = key.public_key().public_bytes(serialization.Encoding.DER,
                                        serialization.PublicFormat.SubjectPublicKeyInfo)
    text = json.dumps(json.loads(KEBA.split("|")[1]), separators=(",", ":"))
    r, s_ = decode_dss_signature(key.sign(text.encode(), ec.ECDSA(hashes.SHA256())))
    raw = r.to_bytes(32, "big") + s_.to_bytes(32, "big")
    sd = raw.hex().upper() if encoding == "hex" else base64.b64encode(raw).decode()
    se = "" if encoding == "hex" else ',"SE":"base64"'
    container = f'OCMF|{text}|{{"SA":"ECDSA-secp256r1-SHA256","SD":"{sd}"{se}}}'
    assert check_container(v16(container), der.hex()).status == VERIFIED
    assert check_container(v16(container.replace("0.2597", "0.2598")), der.hex()).status \
        == INVALID


@pytest.mark.parametrize(("code", "kind"), [
    ("1-b:1.8.0", "import"), ("1-0:1.8.0", "import"), ("01-00:01.08.00.FF", "import"),
    ("1-0:1.8.0*198", "import"), ("1-b:1.8.e", "import"), (None, "import"),
    ("1-0:2.8.0", "export"), ("1-0:2.8.0.FF", "export"), ("1-b:2.8.e", "export"),
    ("1-0:98.8.0.FF", "other"), ("01-00:00.08.06.FF", "other"), ("7-0:1.8.0", "other"),
    ("garbage", "other"),
])
def test_register_kinds(code: str | None, kind: str) -> None:
    assert register_kind(code) == kind


def lem_container() -> tuple[str, str]:
    """The LEM DCBM payload (two registers, inherited TM/TX), signed with a test key."""
    key = ec.generate_private_key(ec.SECP256R1())
    sig = key.sign(LEM_PAYLOAD.encode(), ec.ECDSA(hashes.SHA256())).hex().upper()
    der = key.public_key().public_bytes(serialization.Encoding.DER,
                                        serialization.PublicFormat.SubjectPublicKeyInfo)
    return f'OCMF|{LEM_PAYLOAD}|{{"SA":"ECDSA-secp256r1-SHA256","SD":"{sig}"}}', der.hex()


def test_a_dc_meter_with_two_registers_is_read_per_register() -> None:
    container, key = lem_container()
    checked = check_container(v16(container), key)
    assert checked.status == VERIFIED
    assert [(r.tx, str(r.wh), r.kind, r.time) for r in checked.readings] == [
        ("B", "57584.000", "import", "2021-10-06T13:13:56+02:00"),
        ("B", "4405.000", "export", "2021-10-06T13:13:56+02:00"),  # TM, TX inherited
        ("E", "58685.000", "import", "2021-10-06T13:15:13+02:00"),
        ("E", "4405.000", "export", "2021-10-06T13:15:13+02:00"),
    ]
    # only the import register is compared: the last entry (export) is not the end reading
    rec = reconcile(checked.readings, Decimal(57584), Decimal(58685))
    assert (rec.flags, rec.mismatches, rec.start_wh, rec.stop_wh) == (
        [], [], Decimal(57584), Decimal(58685))
    assert rec.signed_end is not None and rec.signed_end.wh == Decimal("58685.000")


def test_reconcile_signed_readings_with_billed_ones() -> None:
    signed = [reading("B", "259.6"), reading("E", "259.7")]
    # a station reporting whole Wh next to a meter signing 0.1 Wh: within the coarser step
    rec = reconcile(signed, Decimal(260), Decimal(260))
    assert (rec.flags, rec.start_wh, rec.stop_wh) == ([], Decimal(260), Decimal(260))
    rec = reconcile(signed, Decimal(260), Decimal(262))
    assert rec.flags == ["signed_energy_mismatch"]
    assert rec.mismatches == ["stop: billed 262 Wh, meter signed 259.7 Wh"]
    assert reconcile(signed, Decimal("259.6"), Decimal("259.8")).mismatches
    rec = reconcile([reading("E", "259.7")], Decimal(260), Decimal(260))
    assert (rec.flags, rec.missing) == (["signed_reading_missing"], ["start"])
    # nothing billed: the meter's reading is the billed one
    rec = reconcile(signed, None, Decimal(260))
    assert (rec.flags, rec.start_wh) == (["meter_start_from_signed"], Decimal("259.6"))
    # export readings are never compared
    rec = reconcile([*signed, reading("E", "99999", kind="export")], Decimal(260), Decimal(260))
    assert rec.flags == []


def test_a_unit_factor_between_station_and_meter_is_billed_as_the_meter_signed() -> None:
    # the KEBA P30 case: a bare value 2114.1356 "Wh" beside the signed 2114.1356 kWh
    signed = [reading("B", "2114135.6"), reading("E", "2133854.3")]
    rec = reconcile(signed, Decimal("2114.1356"), Decimal("2133.8543"))
    assert (rec.start_wh, rec.stop_wh) == (Decimal("2114135.6"), Decimal("2133854.3"))
    assert rec.flags == ["unit_discrepancy"] and rec.notes and not rec.mismatches
    # and the other way round: Wh written where kWh was meant
    rec = reconcile([reading("B", "2.5", "0.1"), reading("E", "3.5", "0.1")],
                    Decimal(2500), Decimal(3500))
    assert (rec.start_wh, rec.stop_wh, rec.flags) == (
        Decimal("2.5"), Decimal("3.5"), ["unit_discrepancy"])


def test_a_transaction_register_offset_from_the_billed_readings_is_consistent() -> None:
    # the BAUER meter's "*198" register starts at 0 while the station bills 76,040 Wh ->
    signed = [reading("B", "0", "1"), reading("E", "1500", "1")]
    rec = reconcile(signed, Decimal(76040), Decimal(77540))
    assert rec.flags == ["signed_register_offset"] and not rec.mismatches
    rec = reconcile(signed, Decimal(76040), Decimal(77600))  # 60 Wh more than the meter
    assert rec.flags == ["signed_energy_mismatch"] and len(rec.mismatches) == 2


@pytest.mark.parametrize("key", ["not hex", "3059", KEBA_KEY[:-2]])
def test_a_pinned_key_that_cannot_be_read_fails_the_signature_not_the_verifier(key: str) -> None:
    checked = check_container(v16(KEBA), key)
    assert checked.status == INVALID
    assert checked.detail.startswith("the meter key cannot be read")
