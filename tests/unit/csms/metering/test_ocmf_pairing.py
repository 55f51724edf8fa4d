"""How the reconciliation pairs a session's signed readings: every end code, one register
(signed with a test key)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from csms.metering.ocmf import (
    VERIFIED,
    SignedReading,
    check_container,
    foreign,
    reconcile,
    reused,
    unsigned_beyond_signed,
)

KEY = ec.generate_private_key(ec.SECP256R1())
KEY_HEX = KEY.public_key().public_bytes(
    serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo).hex()


def container(rd: list[dict[str, Any]], **payload: Any) -> str:
    body = {"FV": "1.0", "GI": "ACME", "GS": "CP1", "GV": "1", "PG": "T1", "MV": "ACME",
            "MM": "M1", "MS": "SN-1", "IS": True, "IL": "NONE", "IF": [], "IT": "ISO14443",
            "ID": "04A2B3C4", **payload, "RD": rd}
    text = json.dumps(body, separators=(",", ":"))
    sig = KEY.sign(text.encode(), ec.ECDSA(hashes.SHA256())).hex()
    return f'OCMF|{text}|{{"SA":"ECDSA-secp256r1-SHA256","SD":"{sig}"}}'


def rd(tx: str, rv: Any, ri: str = "1-0:1.8.0", tm: str = "2024-05-02T10:00:00,000+0000 S",
       ru: str = "kWh") -> dict[str, Any]:
    return {"TM": tm, "TX": tx, "RV": rv, "RI": ri, "RU": ru, "RT": "AC", "EF": "", "ST": "G"}


def readings(*containers: str) -> list[Any]:
    out = []
    for c in containers:
        checked = check_container({"signedData": c}, KEY_HEX)
        assert checked.status == VERIFIED, checked.detail
        out.extend(checked.readings)
    return out


# OCMF 1.0 §"Meter readings" TX: E = end, and the terminations L (local), R (remote),
# A (abort), P (power failure) are end-of-transaction readings as well (the
# Transparenzsoftware and pyocmf's MeterReadingReason.is_end_reading take all five).
@pytest.mark.parametrize("end_code", ["L", "R", "A", "P"])
def test_a_termination_reading_is_the_signed_end(end_code: str) -> None:
    signed = readings(container([rd("B", 10.0), rd(end_code, 12.0,
                                                    tm="2024-05-02T11:00:00,000+0000 S")]))
    # the station reports a stop of 20,000 Wh; its meter signed 12.000 kWh at the end
    rec = reconcile(signed, Decimal(10000), Decimal(20000))
    assert rec.signed_end is not None and rec.signed_end.wh == Decimal("12000.0")
    assert "signed_energy_mismatch" in rec.flags, rec.flags


def test_begin_and_end_are_taken_from_the_same_register() -> None:
    # a meter signing its total import register and a tariff register (both OBIS 1-0:1.8.x)
    begin = container([rd("B", 76.040), rd("B", 50.000, ri="1-0:1.8.1")], PG="T1")
    end = container([rd("E", 77.540, tm="2024-05-02T11:00:00,000+0000 S"),
                     rd("E", 51.500, ri="1-0:1.8.1", tm="2024-05-02T11:00:00,000+0000 S")],
                    PG="T2")
    rec = reconcile(readings(begin, end), Decimal(76040), Decimal(77540))
    assert rec.signed_begin is not None and rec.signed_end is not None
    assert rec.signed_begin.register == rec.signed_end.register, (
        rec.signed_begin.register, rec.signed_end.register)
    assert rec.flags == [] and not rec.mismatches, rec.mismatches


def test_a_begin_and_an_end_of_two_registers_do_not_belong_together() -> None:
    """No register on both sides: the tariff register's begin and the total's end are
    paired for the record, and foreign() refuses the pair (each verifier the same)."""
    begin = container([rd("B", 50.000, ri="1-0:1.8.1")], PG="T1")
    end = container([rd("E", 77.540, tm="2024-05-02T11:00:00,000+0000 S")], PG="T2")
    signed = readings(begin, end)
    rec = reconcile(signed, Decimal(50000), Decimal(77540))
    started, stopped = (datetime(2024, 5, 2, 10, 0, tzinfo=UTC),
                        datetime(2024, 5, 2, 11, 0, tzinfo=UTC))
    assert foreign(signed, rec.signed_begin, rec.signed_end, started, stopped, None) == [
        "the begin reading (1-0:1.8.1) and the end reading (1-0:1.8.0) are of two registers"]


@pytest.mark.parametrize(("billed", "start"), [
    ("5000", "5000"), ("4995", "4995"), ("4994.9", "5000.00"), ("4991", "5000.00"),
    ("5009", "5009")])
def test_a_billed_start_is_at_most_half_a_step_below_the_signed_begin(
        billed: str, start: str) -> None:
    """The meter signed 5.00 kWh (10 Wh steps): rounded, the register was at least 4,995 Wh;
    a start below that is billed as signed, not as the station says (no hold: the driver
    pays no more than the signature allows). Above it, up to a step, the station's stands."""
    signed = readings(container([rd("B", "5.00"), rd(
        "E", "12.34", tm="2024-05-02T11:00:00,000+0000 S")]))
    rec = reconcile(signed, Decimal(billed), Decimal(12340))
    assert (str(rec.start_wh), rec.flags) == (start, [])


def _r(tx: str, wh: int, minute: int, page: str, serial: str = "SN-1",
       register: str = "1-0:1.8.0") -> SignedReading:
    return SignedReading(tx=tx, time=f"2024-05-02T10:{minute:02d}:00+00:00", wh=Decimal(wh),
                         resolution_wh=Decimal(1), meter_serial=serial, pagination=page,
                         register=register)


B0, E0 = _r("B", 1000, 0, "T1"), _r("E", 11000, 4, "T2")


def _at_time(tx: str, wh: int, at: datetime, page: str) -> SignedReading:
    return SignedReading(tx=tx, time=at.isoformat(), wh=Decimal(wh), resolution_wh=Decimal(1),
                         meter_serial="SN-1", pagination=page, register="1-0:1.8.0")


@pytest.mark.parametrize(("begin", "end", "others", "why"), [
    # the session before's begin record again
    (B0, _r("E", 20000, 59, "T4"), [("s1", True, B0), ("s1", True, E0)],
     ["the begin reading is s1's too",
      "the begin reading (1000 Wh, 2024-05-02T10:00:00+00:00) is before s1's end reading"
      " (11000 Wh, 2024-05-02T10:04:00+00:00)"]),
    # its end relabelled a begin (Alfen's type is not signed): the same record
    (_r("B", 11000, 4, "T2"), _r("E", 20000, 59, "T4"), [("s1", True, E0)],
     ["the begin reading is s1's too"]),
    # an end after the begin of a session that started after this one
    (B0, _r("E", 20000, 59, "T4"), [("s2", False, _r("B", 11000, 5, "T3"))],
     ["the end reading (20000 Wh, 2024-05-02T10:59:00+00:00) is after s2's begin reading"
      " (11000 Wh, 2024-05-02T10:05:00+00:00)"]),
    # consecutive sessions, another meter, another register: none of these
    (_r("B", 11000, 5, "T3"), _r("E", 20000, 59, "T4"), [("s1", True, B0), ("s1", True, E0)],
     []),
    (B0, E0, [("s2", True, _r("E", 30000, 9, "T9", serial="SN-2"))], []),
    (B0, E0, [("s2", True, _r("E", 30000, 9, "T9", register="1-0:1.8.1"))], []),
])
def test_a_signed_reading_of_another_session_is_not_this_ones(
        begin: SignedReading, end: SignedReading,
        others: list[tuple[str, bool, SignedReading]], why: list[str]) -> None:
    assert reused(begin, end, others) == why


@pytest.mark.parametrize(("start", "stop", "begin", "end", "held"), [
    # no signed end: the last signed reading (C, 11,000 Wh 30 s before) and 350 kW since
    (1000, 50000, True, False, True), (1000, 11000 + 8800, True, False, False),
    (1000, 11000 + 8900, True, False, True),
    # no signed begin: the first signed reading (C) and 350 kW before it
    (11000 - 8800, 20000, False, True, False), (11000 - 8900, 20000, False, True, True),
    # both signed: nothing to bound
    (0, 99000, True, True, False),
])
def test_an_unsigned_side_is_bounded_by_the_meters_nearest_signed_reading(
        start: int, stop: int, begin: bool, end: bool, held: bool) -> None:
    """30 s apart, 350 kW with 60 s and 1 % slack: 8,837.5 Wh."""
    t0 = datetime(2024, 5, 2, 10, 0, tzinfo=UTC)
    # the C reading is 30 s after the start (a missing begin) or before the stop (a missing
    # end)
    started, stopped = (t0, t0 + timedelta(minutes=59)) if end else (
        t0 - timedelta(minutes=59), t0 + timedelta(minutes=1))
    c = _at_time("C", 11000, t0 + timedelta(seconds=30), "T2")
    signed = [c] + ([_at_time("B", 1000, started, "T1")] if begin else []) + (
        [_at_time("E", 99000, stopped, "T3")] if end else [])
    found = unsigned_beyond_signed(
        signed, signed[1] if begin else None, signed[-1] if end else None, Decimal(start),
        Decimal(stop), started, stopped, Decimal(350_000))
    assert bool(found) == held, found


@pytest.mark.parametrize(("start", "stop", "c_after_start", "held"), [
    # the C reading 30 s before the stop bounds the stop ...
    (1000, 50000, False, True), (1000, 11000 + 8800, False, False),
    (1000, 11000 + 8900, False, True),
    # ... 30 s after the start, the start
    (11000 - 8900, 20000, True, True), (11000 - 8800, 20000, True, False),
])
def test_without_a_signed_begin_or_end_an_intermediate_reading_bounds_both_sides(
        start: int, stop: int, c_after_start: bool, held: bool) -> None:
    """A station that drops the meter's signed begin and end but sends its signed C
    reading: the reading bounds the unsigned start and stop as a begin (end) would (350 kW,
    60 s and 1 % slack: 8,837.5 Wh in 30 s). Before, nothing was compared."""
    t0 = datetime(2024, 5, 2, 10, 0, tzinfo=UTC)
    started, stopped = (t0, t0 + timedelta(minutes=59)) if c_after_start else (
        t0 - timedelta(minutes=59), t0 + timedelta(minutes=1))
    c = _at_time("C", 11000, t0 + timedelta(seconds=30), "T2")
    found = unsigned_beyond_signed([c], None, None, Decimal(start), Decimal(stop), started,
                                   stopped, Decimal(350_000))
    assert bool(found) == held, found


# A BAUER BSM-WS36A's "Signed Current Snapshot" (OCMF TX "C") and the meter's key, as the
# BSM Python support documents them (github.com/chargeITmobility/bsm-python,
# doc/examples/ocmf.md): its RV is the transaction register 1-0:1.8.0*198 (reset at each
# turn-on, 0.15 kWh here), beside the total 100.00 kWh (XV, not an RD reading).
BAUER_C = (
    'OCMF|{"FV":"1.0","GI":"BAUER Electronic BSM-WS36A-H01-1311-0000","GS":"001BZR1521070006",'
    '"GV":"1.9:32CA:AFF4, f1d3d06","PG":"T4278","MV":"BAUER Electronic","MM":"BSM-WS36A-H01-'
    '1311-0000","MS":"001BZR1521070006","IS":true,"IT":"UNDEFINED","ID":"contract-id: rfid:123'
    '45678abcdef","X2":"evse-id: DE*BDO*E8025334492*2","X3":"csc-sw-version: v1.2.34","RD":[{'
    '"TM":"2022-07-08T10:06:49,000+0200 S","TX":"C","RV":0.15,"RI":"1-0:1.8.0*198","RU":"kWh",'
    '"XV":100.00,"XI":"1-0:1.8.0*255","XU":"kWh","XT":0,"RT":"AC","EF":"","ST":"G"}]}|{"SA":"'
    'ECDSA-secp256r1-SHA256","SD":"3045022053d866c0085483057b3fb43aec935b53bf593a2eddcd1844a8'
    'e85d8a10bcebca022100ca22a89f45d7378ba1a3f48c5b5a390b3a15faf9dd3b2302e7a9b83e141ec212"}'
)
BAUER_KEY_2022 = (
    "3059301306072a8648ce3d020106082a8648ce3d030107034200044bfd02c1d85272ceea9977db26d72cc4"
    "01d9e5602faeee7ec7b6b62f9c0cce34ad8d345d5ac0e8f65deb5ff0bb402b1b87926bd1b7fc2dbc3a9774"
    "e8e70c7254"
)


def test_an_intermediate_reading_of_a_transaction_register_bounds_no_lifetime_reading() -> None:
    """The real BAUER C reading (150 Wh on the transaction register, 10:06:49+02:00) beside
    the station's lifetime readings of that session (99,840 -> 100,000 Wh, the meter's total
    as its snapshots show it): an offset register, not compared; nothing held."""
    checked = check_container({"signedData": BAUER_C}, BAUER_KEY_2022)
    assert checked.status == VERIFIED, checked.detail
    [c] = checked.readings
    assert (c.tx, c.wh, c.register) == ("C", Decimal("150.00"), "1-0:1.8.0*198")
    started = datetime(2022, 7, 8, 8, 0, 28, tzinfo=UTC)
    assert unsigned_beyond_signed([c], None, None, Decimal(99840), Decimal(100000), started,
                                  started + timedelta(minutes=7), Decimal(350_000)) == []


def test_a_later_reading_among_a_sessions_does_not_loosen_the_bound() -> None:
    """A station that lost the signed end adds a C reading the meter signed after the stop
    (29.000 kWh at 10:03, inside the 5 minutes' margin: the next session's charging): the
    stop may not be billed up to it. Every signed reading bounds the stop; the meter's
    11.000 kWh 30 s before it is the tightest (350 kW: 8,837.5 Wh more at most)."""
    t0 = datetime(2024, 5, 2, 10, 0, tzinfo=UTC)
    begin, c, after = (_at_time("B", 1000, t0 - timedelta(minutes=59), "T1"),
                       _at_time("C", 11000, t0 + timedelta(seconds=30), "T2"),
                       _at_time("C", 29000, t0 + timedelta(minutes=3), "T3"))
    for stop, held in ((29000, True), (19800, False)):
        found = unsigned_beyond_signed([begin, c, after], begin, None, Decimal(1000),
                                       Decimal(stop), t0 - timedelta(minutes=59),
                                       t0 + timedelta(minutes=1), Decimal(350_000))
        assert bool(found) == held, (stop, found)
