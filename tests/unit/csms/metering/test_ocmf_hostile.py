"""Signed meter data as a hostile station would present it: readings spelled to widen the
match, units, numbers no meter signs, ambiguous JSON, readings of another moment (signed
with a test key; real meters' records for what must still pass)."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from csms.metering.ocmf import (
    INVALID,
    MALFORMED,
    VERIFIED,
    OcmfError,
    SignedReading,
    check_container,
    foreign,
    normalize_key,
    reconcile,
    strip_blanks,
)
from support.alfen_vectors import SIM_BEGIN, SIM_KEY
from support.ocmf_vectors import DZG_BEGIN, DZG_END, DZG_KEY, ISKRA, ISKRA_KEY, KEBA, KEBA_KEY

KEY = ec.generate_private_key(ec.SECP256R1())
KEY_HEX = KEY.public_key().public_bytes(
    serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo).hex()
T_BEGIN, T_END = "2024-05-02T10:00:00,000+0000 S", "2024-05-02T11:00:00,000+0000 S"
STARTED, STOPPED = datetime(2024, 5, 2, 10, 0, tzinfo=UTC), datetime(2024, 5, 2, 11, 0,
                                                                     tzinfo=UTC)


def signed(text: str) -> str:
    sig = KEY.sign(text.encode(), ec.ECDSA(hashes.SHA256())).hex()
    return f'OCMF|{text}|{{"SA":"ECDSA-secp256r1-SHA256","SD":"{sig}"}}'


def payload(rd: str, pg: str = "T1") -> str:
    """An OCMF payload as a meter writes it, the readings ``rd`` spliced in as JSON text
    (so a number's spelling is the test's own)."""
    return ('{"FV":"1.0","GI":"ACME","GS":"CP1","GV":"1","PG":"' + pg + '","MV":"ACME",'
            '"MS":"SN-1","IS":true,"IT":"ISO14443","ID":"04A2B3C4","RD":[' + rd + "]}")


def rd(tx: str, rv: str, tm: str = T_BEGIN, ru: str = "kWh", ri: str = "1-0:1.8.0") -> str:
    return (f'{{"TM":"{tm}","TX":"{tx}","RV":{rv},"RI":"{ri}","RU":"{ru}","RT":"AC",'
            '"EF":"","ST":"G"}')


def check(container: str, key: str = KEY_HEX) -> Any:
    return check_container({"signedData": container}, key)


def verified(*containers: str) -> list[SignedReading]:
    out: list[SignedReading] = []
    for c in containers:
        checked = check(c)
        assert checked.status == VERIFIED, checked.detail
        out.extend(checked.readings)
    return out


# -- 1. the match between billed and signed readings is not widened by a number's spelling
@pytest.mark.parametrize("over_wh", [11, 500, 990])
@pytest.mark.parametrize(("begin", "end"), [("12", "15"), ("12.0", "15.0"), ("1.2e1", "1.5e1")])
def test_a_station_billing_up_to_a_unit_over_a_whole_kwh_reading_is_caught(
        begin: str, end: str, over_wh: int) -> None:
    readings = verified(signed(payload(rd("B", begin))), signed(payload(
        rd("E", end, tm=T_END), pg="T2")))
    assert [r.wh for r in readings] == [Decimal(12000), Decimal(15000)]
    rec = reconcile(readings, Decimal(12000), Decimal(15000 + over_wh))
    assert rec.flags == ["signed_energy_mismatch"], rec.flags
    assert rec.mismatches == [f"stop: billed {15000 + over_wh} Wh, meter signed"
                              f" {readings[1].wh} Wh"]
    # and a begin reported under the signed one (more energy between them) as well
    rec = reconcile(readings, Decimal(12000 - over_wh), Decimal(15000))
    assert rec.flags == ["signed_energy_mismatch"], rec.flags


def test_a_register_offset_is_not_widened_by_a_whole_kwh_reading_either() -> None:
    # both ends differ (a register starting at 0): the energy between must still agree
    readings = verified(signed(payload(rd("B", "0") + "," + rd("E", "3", tm=T_END))))
    assert reconcile(readings, Decimal(76040), Decimal(79040)).flags == [
        "signed_register_offset"]
    rec = reconcile(readings, Decimal(76040), Decimal(79900))  # 860 Wh more than signed
    assert rec.flags == ["signed_energy_mismatch"], rec.flags


def test_an_honest_station_beside_a_whole_kwh_reading_matches() -> None:
    readings = verified(signed(payload(rd("B", "12") + "," + rd("E", "15", tm=T_END))))
    for start, stop in [(12000, 15000), (12004, 15009), (11999, 15000)]:
        rec = reconcile(readings, Decimal(start), Decimal(stop))
        assert (rec.flags, rec.mismatches) == ([], []), (start, stop)


@pytest.mark.parametrize(("container", "key", "start", "stop"), [
    (KEBA, KEBA_KEY, "260", "260"),  # 0.2596 / 0.2597 kWh beside whole Wh
    (ISKRA, ISKRA_KEY, "80770", "80979"),  # 0.01 kWh: the station's Wh within the last digit
    (ISKRA, ISKRA_KEY, "80.77", "80.97"),  # the kWh figures written as Wh: billed as signed
])
def test_real_meters_honest_records_still_pass(container: str, key: str, start: str,
                                               stop: str) -> None:
    checked = check(container, normalize_key(key))
    assert checked.status == VERIFIED
    rec = reconcile(checked.readings, Decimal(start), Decimal(stop))
    assert not rec.mismatches and "signed_energy_mismatch" not in rec.flags, rec.flags


def test_a_real_meters_reading_with_few_decimals_still_catches_a_station_over_it() -> None:
    checked = check(ISKRA, ISKRA_KEY)
    rec = reconcile(checked.readings, Decimal(80770), Decimal(80970 + 500))
    assert rec.flags == ["signed_energy_mismatch"]


def test_a_real_meters_readings_from_two_containers_pass() -> None:
    readings = [r for c in (DZG_BEGIN, DZG_END)
                for r in check(c, normalize_key(DZG_KEY)).readings]
    assert reconcile(readings, Decimal(9038), Decimal(9038)).flags == []
    assert "signed_energy_mismatch" in reconcile(readings, Decimal(9038), Decimal(9500)).flags


# -- 2. units --------------------------------------------------------------------------------
@pytest.mark.parametrize(("unit", "wh"), [("kWh", "12000"), ("KWH", "12000"),
                                          ("kwh", "12000"), ("Wh", "12"), ("WH", "12")])
def test_energy_units_in_any_case_are_read(unit: str, wh: str) -> None:
    [reading] = verified(signed(payload(rd("B", "12", ru=unit))))
    assert reading.wh == Decimal(wh)


@pytest.mark.parametrize("unit", ["mWh", "MWh", "kvarh", "", "Ws"])
def test_an_import_reading_in_a_unit_that_cannot_be_read_is_not_dropped(unit: str) -> None:
    # dropped, the session would bill the station's own figure with no signed one to compare
    checked = check(signed(payload(rd("B", "12", ru=unit))))
    assert checked.status == MALFORMED
    assert "unit" in checked.detail


def test_a_register_that_is_not_energy_is_still_skipped() -> None:
    # the DZG's seconds register beside its energy register (RU "sec", OBIS 0.8.6)
    checked = check(signed(payload(rd("E", "9.038") + "," + rd(
        "E", "30", ru="sec", ri="01-00:00.08.06.FF"))))
    assert checked.status == VERIFIED and [r.wh for r in checked.readings] == [
        Decimal("9038.000")]


# -- numbers no meter signs ------------------------------------------------------------------
@pytest.mark.parametrize("rv", ["-5", "-0.001", "1e999999", "1" + "0" * 400, "2e12",
                                '"-5"', '"1e999999"'])
def test_a_reading_no_meter_signs_is_unreadable_not_billed(rv: str) -> None:
    checked = check(signed(payload(rd("B", rv))))
    assert checked.status == MALFORMED, (checked.status, checked.detail)


@pytest.mark.parametrize("rv", ["NaN", "Infinity", "-Infinity", '"NaN"', '"Infinity"'])
def test_a_reading_that_is_not_a_number_is_malformed(rv: str) -> None:
    assert check(signed(payload(rd("B", rv)))).status == MALFORMED


def test_exponent_notation_is_the_same_number() -> None:
    readings = verified(signed(payload(rd("B", "1.2e1") + "," + rd("E", '"15E0"', tm=T_END))))
    assert [r.wh for r in readings] == [Decimal(12000), Decimal(15000)]


# -- ambiguous or re-written JSON -------------------------------------------------------------
@pytest.mark.parametrize("text", [
    payload(rd("B", "12")).replace('"RV":12,', '"RV":12,"RV":13,'),
    payload(rd("B", "12")).replace('"RU":"kWh"', '"RU":"Wh","RU":"kWh"'),
    payload(rd("B", "12")).replace('"RD":[', '"RD":[],"RD":['),
    payload(rd("B", "12")).replace('"PG":"T1"', '"PG":"T9","PG":"T1"'),
])
def test_duplicate_keys_are_malformed(text: str) -> None:
    # which of two values counts is up to each parser (the meter's, the Transparenzsoftware,
    # the receipt page's): none of them is billed
    checked = check(signed(text))
    assert checked.status == MALFORMED and "duplicate" in checked.detail, checked.detail


@pytest.mark.parametrize("rv", ['"\\u0661\\u0662"', '"\\uff11\\uff12.0"', '"\\u00a012"'])
def test_a_reading_in_other_digits_than_ascii_is_malformed(rv: str) -> None:
    # pyocmf reads other scripts' digits and spaces; the receipt page reads ASCII only
    checked = check(signed(payload(rd("B", rv))))
    assert checked.status == MALFORMED and "ASCII" in checked.detail, checked.detail


# -- the container's sections: OCMF cuts at every '|' (pyocmf and the Transparenzsoftware too)
def test_a_pipe_inside_a_text_of_the_payload_is_malformed() -> None:
    # the specification allows no '|' inside a section: cut there, the payload is no JSON
    # (the receipt page cut at the last '|' and read it)
    checked = check(signed(payload(rd("B", "12")).replace('"GI":"ACME"', '"GI":"AC|ME"')))
    assert checked.status == MALFORMED, checked.detail


def test_the_meters_key_as_a_fourth_section_is_read_and_not_used() -> None:
    # as the Transparenzsoftware takes a key: the signature is over the payload section
    # (not "payload|signature"), and the key checked with is the pinned one
    container = signed(payload(rd("B", "12")))
    checked = check(container + "|" + KEY_HEX)
    assert (checked.status, checked.detail) == (VERIFIED, "signature verified")
    assert [r.wh for r in checked.readings] == [Decimal(12000)]
    other = ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo).hex()
    assert check(container + "|" + other).status == VERIFIED
    assert check(container + "|" + KEY_HEX, other).status == INVALID


@pytest.mark.parametrize("tail", ["|" + KEY_HEX + "|" + KEY_HEX, "||", "|a|b|c"])
def test_more_than_four_sections_are_malformed(tail: str) -> None:
    checked = check(signed(payload(rd("B", "12"))) + tail)
    assert checked.status == MALFORMED and "sections" in checked.detail, checked.detail


@pytest.mark.parametrize("change", [
    lambda t: t.replace(",", ", "),
    lambda t: json.dumps(json.loads(t), separators=(",", ":"), sort_keys=True),
    lambda t: " " + t,
])
def test_a_signature_over_other_bytes_than_the_payload_fails(change: Any) -> None:
    text = payload(rd("B", "12"))
    sig = KEY.sign(text.encode(), ec.ECDSA(hashes.SHA256())).hex()
    container = f'OCMF|{change(text)}|{{"SA":"ECDSA-secp256r1-SHA256","SD":"{sig}"}}'
    assert check(container).status in (INVALID, MALFORMED)


# -- readings of another moment ----------------------------------------------------------------
def _foreign(readings: list[SignedReading]) -> list[str]:
    rec = reconcile(readings, None, None)
    return foreign(readings, rec.signed_begin, rec.signed_end, STARTED, STOPPED, "04A2B3C4")


def test_two_different_begin_readings_of_one_register_do_not_belong_to_one_session() -> None:
    # a short session's begin, signed within the clock margin of this one's start: with it
    # the station would bill the energy of both sessions
    earlier = signed(payload(rd("B", "11", tm="2024-05-02T09:57:00,000+0000 S"), pg="T1"))
    begin = signed(payload(rd("B", "12"), pg="T3"))
    end = signed(payload(rd("E", "15", tm=T_END), pg="T4"))
    problems = _foreign(verified(earlier, begin, end))
    assert any("several begin readings" in p for p in problems), problems
    later = signed(payload(rd("E", "16", tm="2024-05-02T11:03:00,000+0000 S"), pg="T5"))
    problems = _foreign(verified(begin, end, later))
    assert any("several end readings" in p for p in problems), problems


def test_the_same_container_sent_twice_is_one_reading() -> None:
    # a 1.6 station sends the end record in MeterValues and again in StopTransaction
    begin = signed(payload(rd("B", "12"), pg="T3"))
    end = signed(payload(rd("E", "15", tm=T_END), pg="T4"))
    assert _foreign(verified(begin, end, end, begin)) == []


def test_a_begin_replayed_from_an_earlier_session_does_not_belong() -> None:
    old = signed(payload(rd("B", "5", tm="2024-05-01T08:00:00,000+0000 S"), pg="T1"))
    end = signed(payload(rd("E", "15", tm=T_END), pg="T4"))
    assert any("outside the session" in p for p in _foreign(verified(old, end)))


@pytest.mark.parametrize(("tm", "inside"), [
    ("2024-05-02T15:30:00,000+0530 S", True),  # 10:00 UTC, an odd offset
    ("2024-05-02T09:15:00,000-0045 S", True),  # 10:00 UTC
    ("2024-05-02T10:00:00,000+0530 S", False),  # 04:30 UTC
    ("2024-05-02T10:00:00,000 S", False),  # no offset: not comparable, not taken
])
def test_reading_times_with_odd_offsets(tm: str, inside: bool) -> None:
    begin = signed(payload(rd("B", "12", tm=tm), pg="T3"))
    end = signed(payload(rd("E", "15", tm=T_END), pg="T4"))
    problems = _foreign(verified(begin, end))
    assert (not problems) == inside, problems


def test_an_offset_beyond_a_day_is_malformed() -> None:
    assert check(signed(payload(rd("B", "12", tm="2024-05-02T10:00:00,000+2500 S")))).status \
        == MALFORMED


def test_the_largest_reading_is_the_energy_modules() -> None:
    from csms.domain.energy import MAX_REGISTER_WH
    from csms.metering import ocmf

    assert ocmf.MAX_REGISTER_WH == MAX_REGISTER_WH


def test_the_power_bounds_are_the_energy_modules() -> None:
    from csms.domain import energy
    from csms.metering import ocmf

    assert (ocmf.MAX_PLAUSIBLE_POWER_W, ocmf.POWER_SLACK_SECONDS, ocmf.POWER_SLACK_RATIO) \
        == (energy.MAX_PLAUSIBLE_POWER_W, energy.POWER_SLACK_SECONDS, energy.POWER_SLACK_RATIO)


@pytest.mark.parametrize(("value", "readable"), [
    ("1e-10000000", False), ("1e-34", False), ("0E-34", False), ("1e-33", True),
    ("0E-30", True), ("0E-31", False), ("12.5", True),  # 0 x 1000 keeps its exponent
])
def test_a_reading_written_beyond_1e_30_wh_is_no_reading(value: str, readable: bool) -> None:
    """A kWh reading whose Wh is a figure beyond 10^-30 (no meter's step; the receipt page
    computes exactly, and 1e-10000000 beside a reading is ten million digits)."""
    from csms.metering import ocmf

    if readable:
        assert ocmf.energy_wh(Decimal(value), Decimal(1000)) == Decimal(value) * 1000
    else:
        with pytest.raises(ocmf.OcmfError, match="no energy register reading"):
            ocmf.energy_wh(Decimal(value), Decimal(1000))


def test_the_farthest_exponent_is_the_tariff_modules() -> None:
    from csms.domain.tariff import MAX_EXPONENT
    from csms.metering import ocmf

    assert ocmf.MAX_EXPONENT == MAX_EXPONENT


# Around a record, a key or a signature (outside what the meter signed) space, tab, CR and
# LF are no part of it; any other character is, though str.strip() takes some of them for
# whitespace and the receipt page's JavaScript others: a station would have its records
# verify under one verifier and fail under the other.
BLANK_AROUND = [" ", "\t", "\r\n", " \t\r\n "]
ODD_AROUND = ["\x1c", "\x1d", "\x1e", "\x1f", "\x0b", "\x0c", "\x85", "\xa0", "\u2028",
              "\u3000", "\ufeff"]


def _wrapped_forms(container: str, around: str) -> list[dict[str, Any]]:
    """The container as a 1.6 SignedData value and a 2.0.1 signedMeterData (its base64)
    with ``around`` on either side."""
    b64 = base64.b64encode(container.encode()).decode()
    return [{"signedData": around + container}, {"signedData": container + around},
            {"signedMeterData": around + b64}, {"signedMeterData": b64 + around}]


def _alfen_forms(record: str, around: str) -> list[dict[str, Any]]:
    forms = _wrapped_forms(record, around)
    if around.isascii():  # inside the base64 of a 2.0.1 signedMeterData too
        forms += [{"signedMeterData": base64.b64encode((around + record).encode()).decode()},
                  {"signedMeterData": base64.b64encode((record + around).encode()).decode()}]
    return forms


@pytest.mark.parametrize("around", BLANK_AROUND)
def test_space_tab_cr_and_lf_around_signed_data_are_no_part_of_it(around: str) -> None:
    container = signed(payload(rd("B", "12")))
    for form in _wrapped_forms(container, around):
        assert check_container(form, KEY_HEX).status == VERIFIED, form
    for form in _alfen_forms(SIM_BEGIN, around):
        assert check_container(form, normalize_key(SIM_KEY)).status == VERIFIED, form
    b64 = base64.b64encode(container.encode()).decode()
    in_message = {"signedMeterData": b64, "publicKey": around + KEY_HEX + around}
    assert check_container(in_message, None).status == VERIFIED
    assert normalize_key(around + KEY_HEX + around) == KEY_HEX
    assert strip_blanks(around + "AP;x" + around) == "AP;x"


@pytest.mark.parametrize("around", ODD_AROUND)
def test_any_other_character_around_signed_data_makes_it_unreadable(around: str) -> None:
    container = signed(payload(rd("B", "12")))
    for form in _wrapped_forms(container, around):
        assert check_container(form, KEY_HEX).status == MALFORMED, form
    for form in _alfen_forms(SIM_BEGIN, around):
        assert check_container(form, normalize_key(SIM_KEY)).status == MALFORMED, form
    b64 = base64.b64encode(container.encode()).decode()
    for key in (around + KEY_HEX, KEY_HEX + around):
        assert check_container({"signedMeterData": b64, "publicKey": key}, None).status \
            != VERIFIED, repr(key)
        with pytest.raises(OcmfError):
            normalize_key(key)
    assert strip_blanks(around + "AP;x" + around) == around + "AP;x" + around


@pytest.mark.parametrize("inside", [" ", "\x0b", "\x1c", "\ufeff"])
def test_a_hex_signature_or_key_is_hex_digits_only(inside: str) -> None:
    """bytes.fromhex() skips whitespace between the bytes, the page's hex reader does not."""
    container = signed(payload(rd("B", "12")))
    sd = container.index('"SD":"') + len('"SD":"') + 8
    spaced = container[:sd] + json.dumps(inside)[1:-1] + container[sd:]
    assert check(spaced).status == INVALID
    if inside != " ":  # a space between the bytes of a key is a blank, as in its lines
        with pytest.raises(OcmfError):
            normalize_key(KEY_HEX[:8] + inside + KEY_HEX[8:])


@pytest.mark.parametrize(("after", "status"), [("\n", VERIFIED), (" \t\r\n", VERIFIED),
                                               ("\x1c", MALFORMED), ("\n\x85", MALFORMED),
                                               ("\u3000", MALFORMED)])
def test_what_follows_a_container_in_its_base64(after: str, status: str) -> None:
    """pyocmf strips a container with str.strip(), the page reads its last section as JSON
    (which allows space, tab, CR and LF after it): only those may follow it."""
    container = signed(payload(rd("B", "12")))
    b64 = base64.b64encode((container + after).encode()).decode()
    assert check_container({"signedMeterData": b64}, KEY_HEX).status == status
