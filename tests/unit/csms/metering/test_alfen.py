"""Alfen's signed meter data format (``AP;...``): real records read as the S.A.F.E.
transparency software reads them, verified, and hostile ones refused."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from csms.metering.alfen import key_der, parse
from csms.metering.ocmf import (
    INVALID,
    MALFORMED,
    VERIFIED,
    CheckedContainer,
    SignedReading,
    check_container,
    faulty,
    foreign,
    normalize_key,
    reconcile,
)
from support.alfen_vectors import (
    REFERENCE_BEGIN,
    REFERENCE_END,
    REFERENCE_TAMPERED,
    SIM_BEGIN,
    SIM_END,
    SIM_KEY,
    SIM_UID,
    signed_record,
)


def v16(value: str) -> dict[str, str]:
    return {"signedData": value}


def check(record: str, key: str | None = None) -> CheckedContainer:
    return check_container(v16(record), key)


# -- real records, against the reference's expected results --------------------------------
def test_the_reference_records_read_as_the_reference_reads_them() -> None:
    # AlfenReaderTest: the end record's fields
    end = parse(REFERENCE_END)
    assert (end.tx, end.meter_id, end.status_word, end.obis, end.unit, end.scalar) == (
        "E", "0A01445A470033000140", 0x00010000, "1-0:1.8.0*255", 30, 0)
    assert (end.value, end.session_id, end.page, end.uid) == (15764, 18, 18, "1")
    assert end.time == "2018-11-23T14:41:01+00:00"
    assert end.signature.hex().upper() == (
        "16D3B62C1DBACBF86307072204D7F0586D4EB83B66C7450A9389090EC1D1273A3652005E02446B0E"
        "5B6FF1E0B1B1978A")
    # AlfenVerificationParserTest: the begin record, 15.762 kWh at 2018-11-23T14:41:01Z
    begin = check(REFERENCE_BEGIN)
    assert (begin.status, begin.detail) == (VERIFIED, "signature verified")
    (r,) = begin.readings
    assert (r.tx, r.wh, r.resolution_wh, r.time, r.meter_serial, r.pagination, r.session) == (
        "B", Decimal(15762), Decimal(1), "2018-11-23T14:41:01+00:00", "0A01445A470033000140",
        "17", "18")
    assert (r.register, r.kind, r.identification, r.status) == ("1-0:1.8.0*255", "import",
                                                                  "1", "G")


def test_a_record_the_reference_accepts_verifies_and_the_one_it_refuses_fails() -> None:
    # AlfenSignatureVerifierTest: examples 1 and 2 verify, 3 (altered) does not
    assert check(REFERENCE_BEGIN).status == VERIFIED
    assert check(REFERENCE_END).status == VERIFIED
    assert check(REFERENCE_TAMPERED).status == INVALID


def test_an_adapter_error_in_the_status_word_makes_the_reading_faulty() -> None:
    # the reference reports "Meter error happened" for its end record (status bit 16)
    (end,) = check(REFERENCE_END).readings
    assert (end.status, end.error_flags) == ("00010000", "E") and faulty(end)
    (begin,) = check(REFERENCE_BEGIN).readings
    assert not faulty(begin)


@pytest.mark.parametrize(("status", "bad"), [
    # bit 26: the adapter's "meter reading mismatch" (the meter's reading at the start is not
    # the one the adapter kept from the session before: energy counted outside a session),
    # which the S.A.F.E. transparency software reports as an error
    # (AlfenVerifiedData.meterStartMismatch, MESSAGE_CODE_METER_ERROR); not billed either
    (0x10000000 | 1 << 26, True), (1 << 26, True),
    # bits 28 and 29 (start, stop) are information
    (0x10000000, False), (0x20000000, False),
])
def test_a_meter_reading_mismatch_in_the_status_word_makes_the_reading_faulty(
        status: int, bad: bool) -> None:
    [reading] = _readings(make_record(kind="0", status=status))
    assert faulty(reading) == bad, reading


def test_the_simulator_pair_verifies_and_reconciles_with_the_station_readings() -> None:
    begin, end = check(SIM_BEGIN), check(SIM_END)
    assert begin.status == end.status == VERIFIED
    assert begin.message_key == end.message_key == normalize_key(SIM_KEY)
    readings = begin.readings + end.readings
    assert [(r.tx, r.wh, r.time, r.pagination, r.identification, r.status) for r in readings] == [
        ("B", Decimal(111133), "2020-01-02T09:37:16+00:00", "171", SIM_UID, "G"),
        ("E", Decimal(111271), "2020-01-02T09:40:35+00:00", "172", SIM_UID, "G")]
    rec = reconcile(readings, Decimal(111133), Decimal(111271))
    assert (rec.flags, rec.start_wh, rec.stop_wh) == ([], Decimal(111133), Decimal(111271))
    started = datetime(2020, 1, 2, 9, 37, 10, tzinfo=UTC)
    stopped = datetime(2020, 1, 2, 9, 40, 40, tzinfo=UTC)
    assert foreign(readings, rec.signed_begin, rec.signed_end, started, stopped, SIM_UID) == []
    # a session without readings from the station is billed from the signed ones
    assert reconcile(readings, None, None).stop_wh == Decimal(111271)


def test_the_pinned_key_is_the_records_key_in_any_spelling() -> None:
    pinned = normalize_key(SIM_KEY)
    assert pinned == key_der(base64.b32decode(SIM_KEY))
    assert check(SIM_BEGIN, pinned).status == VERIFIED
    assert check(SIM_BEGIN, normalize_key(pinned)).status == VERIFIED


def test_2_0_1_signed_meter_data_carrying_a_record_is_read_too() -> None:
    encoded = base64.b64encode(SIM_END.encode()).decode()
    for signed in ({"signedMeterData": SIM_END}, {"signedMeterData": encoded}):
        assert check_container(signed, None).status == VERIFIED


# -- hostile records ------------------------------------------------------------------------
def b32(data: bytes) -> str:
    return base64.b32encode(data).decode()


def flip_base32(text: str, at: int) -> str:
    """``text`` (base32) with one byte of what it encodes changed."""
    raw = bytearray(base64.b32decode(text))
    raw[at] ^= 0x01
    return b32(bytes(raw))


def fields(record: str) -> list[str]:
    return record.split(";")


@pytest.mark.parametrize("at", [0, 16, 26, 34, 46, 54, 74, 78, 81])
def test_one_changed_byte_of_the_dataset_fails(at: int) -> None:
    f = fields(SIM_END)
    f[4] = flip_base32(f[4], at)
    assert check(";".join(f)).status == INVALID


@pytest.mark.parametrize("at", [0, 23, 24, 47])
def test_one_changed_byte_of_the_signature_fails(at: int) -> None:
    f = fields(SIM_END)
    f[5] = flip_base32(f[5], at)
    assert check(";".join(f), normalize_key(SIM_KEY)).status == INVALID


@pytest.mark.parametrize("record", [
    SIM_END[:-20],  # truncated inside the signature
    SIM_END[:60],  # truncated inside the dataset
    ";".join(fields(SIM_END)[:5]),  # no signature
    "AP;1;3",
    "AP;",
    SIM_END.replace("AP;1;", "AP;7;"),  # no such type
    SIM_END.replace(";3;", ";33;"),
    SIM_END.replace(";3;", ";\u0663;"),  # a digit of another script (the page reads none)
    SIM_END.replace("====;", ";"),  # base32 without its padding
    SIM_END + "AAAA;",  # a seventh field
])
def test_a_truncated_or_misshapen_record_is_malformed_not_an_exception(record: str) -> None:
    assert check(record).status == MALFORMED


def test_a_record_cut_short_to_the_reference_datasets_length_is_malformed() -> None:
    f = fields(SIM_END)
    f[4] = b32(base64.b32decode(f[4])[:81])
    assert check(";".join(f)).status == MALFORMED


TEST_KEY = ec.generate_private_key(ec.SECP192R1())


def make_record(kind: str = "1", wh: int = 111271, at: int = 1577958035, page: int = 172,
                session: int = 87, uid: bytes = SIM_UID.encode(), status: int = 0x10000000,
                unit: int = 30, scalar: int = 0,
                key: ec.EllipticCurvePrivateKey = TEST_KEY) -> str:
    return signed_record(key, kind, wh, at, page, session=session, uid=uid, status=status,
                         unit=unit, scalar=scalar)


def test_a_record_signed_with_another_key_fails_against_the_pinned_one() -> None:
    other = make_record()
    assert check(other).status == VERIFIED  # a well-formed record, with its own key
    checked = check(other, normalize_key(SIM_KEY))
    assert checked.status == INVALID
    assert checked.message_key != normalize_key(SIM_KEY)  # the caller sees a changed key


def test_a_pinned_key_on_another_curve_fails_the_signature() -> None:
    p256 = ec.generate_private_key(ec.SECP256R1()).public_key()
    der = p256.public_bytes(serialization.Encoding.DER,
                            serialization.PublicFormat.SubjectPublicKeyInfo).hex()
    assert check(SIM_END, der).status == INVALID


def _readings(*records: str) -> list[SignedReading]:
    out: list[SignedReading] = []
    for record in records:
        checked = check(record)
        assert checked.status == VERIFIED, checked.detail
        out.extend(checked.readings)
    return out


def _foreign(readings: list[SignedReading]) -> list[str]:
    rec = reconcile(readings, None, None)
    return foreign(readings, rec.signed_begin, rec.signed_end,
                   datetime(2020, 1, 2, 9, 30, tzinfo=UTC),
                   datetime(2020, 1, 2, 9, 50, tzinfo=UTC), SIM_UID)


def test_an_honest_pair_signed_with_the_test_key_belongs() -> None:
    pair = _readings(make_record("0", 111133, 1577957836, 171), make_record())
    assert _foreign(pair) == []


def test_a_begin_later_than_its_end_does_not_belong() -> None:
    # the type is not signed: a station relabelling the end as the begin and the reverse
    swapped = _readings(make_record("0", 111271, 1577958035, 172),
                        make_record("1", 111133, 1577957836, 171))
    problems = _foreign(swapped)
    assert "the begin reading is later than the end reading" in problems
    assert any("pages go backwards" in p for p in problems)
    assert any("larger than the end" in p for p in problems)


def test_readings_of_two_meter_sessions_do_not_belong() -> None:
    mixed = _readings(make_record("0", 111133, 1577957836, 171, session=86), make_record())
    assert any("several meter sessions" in p for p in _foreign(mixed))


def test_readings_signed_for_another_card_do_not_belong() -> None:
    other = _readings(make_record("0", 111133, 1577957836, 171, uid=b"DEADBEEF"),
                      make_record(uid=b"DEADBEEF"))
    assert any("DEADBEEF" in p for p in _foreign(other))


@pytest.mark.parametrize("wh,scalar", [(2 ** 64 - 1, 0), (10 ** 12, 4), (1, 127)])
def test_a_reading_beyond_any_register_is_malformed(wh: int, scalar: int) -> None:
    checked = check(make_record(wh=wh, scalar=scalar))
    assert checked.status == MALFORMED and "no energy register reading" in checked.detail


def test_an_import_reading_in_another_unit_is_malformed() -> None:
    assert check(make_record(unit=31)).status == MALFORMED  # varh


def test_a_scalar_gives_the_resolution() -> None:
    (r,) = check(make_record(wh=1112710, scalar=-1)).readings
    assert (r.wh, r.resolution_wh) == (Decimal("111271.0"), Decimal("0.1"))
