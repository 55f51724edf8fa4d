"""How the reconciliation pairs a session's signed readings: every end code, one register
(signed with a test key)."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from csms.metering.ocmf import VERIFIED, check_container, reconcile

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
