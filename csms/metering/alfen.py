"""Signed meter data in Alfen's format (``AP;...``): read and verify (pure).

Alfen chargers with an Eichrecht meter (the Eve series) sign each begin and end reading in
their adapter and send it, in a 1.6 ``SampledValue`` with ``format: "SignedData"``, as

    AP;{type};{blob version};{public key};{dataset};{signature};

(the trailing ``;`` may be missing), the last three in base32 (RFC 4648, padded):

- type: ``0`` the begin reading, ``1`` the end reading, ``2`` an intermediate one;
- public key: the meter's secp192r1 point, compressed (25 bytes) or not (49 bytes);
- dataset (82 bytes, integers little-endian): adapter id (10), adapter firmware version (4),
  firmware checksum (2), meter id (10, a DLMS server id), status word (4), second index (4),
  time (4, Unix seconds, UTC), OBIS code (6), unit (1, DLMS: 30 = Wh), scalar (1, signed:
  the value times 10^scalar), value (8), card UID (20, text padded with NUL), session id (4),
  page (4);
- signature: ECDSA secp192r1 over SHA-256 of the dataset bytes, ``r || s`` (24 bytes each).

The type is outside the signed dataset: the begin/end classification is the station's word.
What the signature binds (meter, time, register, value, card, session, page) is what the
reconciliation and ``ocmf.foreign`` rely on: a reading relabelled from begin to end still
has to fit the session's time, its page order, its value order and its session id.

The status word's error bits, as the S.A.F.E. transparency software reads them: bits 1 and
2 a meter error, bits 16, 30 and 31 an adapter error, bit 26 a meter reading mismatch (the
register at the start is not what the adapter kept from the session before); a reading with
any of them is faulty (status other than ``G``), the others (bit 28/29, start/stop) are
information.

The results are ``csms.metering.ocmf``'s (``CheckedContainer`` with ``SignedReading``), so a
station's Alfen data is pinned, stored, reconciled and checked for belonging exactly as OCMF.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from csms.metering import ocmf

__all__ = ["PREFIX", "AlfenRecord", "check_record", "is_alfen", "parse", "record_text"]

PREFIX = "AP;"
DATASET_LENGTH = 82
SIGNATURE_LENGTH = 48  # r || s on secp192r1
_TYPES = {"0": "B", "1": "E", "2": "C"}  # begin, end, intermediate (OCMF TX codes)
_WH = 30  # DLMS unit code of the watt-hour
# meter error (1, 2), adapter error (16, 30, 31), meter reading mismatch (26)
_ERROR_BITS = (1, 2, 16, 26, 30, 31)


@dataclass(frozen=True, slots=True)
class AlfenRecord:
    """One signed record, read but not verified."""

    text: str
    tx: str  # B | E | C
    key: bytes  # the secp192r1 point the record carries
    dataset: bytes
    signature: bytes
    meter_id: str  # hex, as the meter's DLMS server id
    status_word: int
    time: str  # ISO 8601, UTC
    obis: str  # e.g. 1-0:1.8.0*255
    unit: int
    scalar: int
    value: int
    uid: str | None
    session_id: int
    page: int


def record_text(signed: Any) -> str | None:
    """The Alfen record a stored sample's ``signed`` object carries, or None when it carries
    none (then it is OCMF or unreadable): a 1.6 ``SignedData`` value, or a 2.0.1
    ``signedMeterData`` that is the record itself or base64 of it."""
    if not isinstance(signed, dict):
        return None
    value = signed.get("signedData", signed.get("signedMeterData"))
    if not isinstance(value, str):
        return None
    text = ocmf.strip_blanks(value)
    if is_alfen(text):
        return text
    if "signedMeterData" in signed and "signedData" not in signed:
        try:
            decoded = ocmf.strip_blanks(base64.b64decode(text, validate=True).decode("ascii"))
        except (binascii.Error, ValueError, UnicodeDecodeError):
            return None
        return decoded if is_alfen(decoded) else None
    return None


def is_alfen(text: str) -> bool:
    return text.startswith(PREFIX)


def _base32(text: str, name: str) -> bytes:
    try:
        return base64.b32decode(text, casefold=False)
    except (binascii.Error, ValueError):
        raise ocmf.OcmfError(f"the {name} is not base32") from None


def _le(data: bytes) -> int:
    return int.from_bytes(data, "little")


def parse(text: str) -> AlfenRecord:
    """Read a record; :class:`ocmf.OcmfError` when it is not one."""
    fields = ocmf.strip_blanks(text).split(";")
    if len(fields) == 7 and fields[6] == "":
        fields = fields[:6]
    if len(fields) != 6:
        raise ocmf.OcmfError(f"an Alfen record has 6 fields separated by ';', not {len(fields)}")
    ident, kind, version, key_text, data_text, sig_text = fields
    if ident != "AP":
        raise ocmf.OcmfError("an Alfen record starts with AP")
    if kind not in _TYPES:
        raise ocmf.OcmfError(f"the record type {kind!r} is not 0 (begin), 1 (end) or 2")
    if len(version) != 1 or not (version.isascii() and version.isdigit()):
        raise ocmf.OcmfError(f"the blob version {version!r} is not one digit")
    key = _base32(key_text, "public key")
    data = _base32(data_text, "dataset")
    signature = _base32(sig_text, "signature")
    if len(data) != DATASET_LENGTH:
        raise ocmf.OcmfError(f"the dataset has {len(data)} bytes, not {DATASET_LENGTH}")
    if len(signature) != SIGNATURE_LENGTH:
        raise ocmf.OcmfError(f"the signature has {len(signature)} bytes, not {SIGNATURE_LENGTH}")
    a, b, c, d, e, f = data[38:44]
    uid = data[54:74].rstrip(b"\x00")
    try:
        uid_text = uid.decode("ascii") if uid else None
    except UnicodeDecodeError:
        uid_text = uid.hex().upper()
    if uid_text is not None and not uid_text.isprintable():
        uid_text = uid.hex().upper()
    return AlfenRecord(
        text=ocmf.strip_blanks(text), tx=_TYPES[kind], key=key, dataset=data, signature=signature,
        meter_id=data[16:26].hex().upper(), status_word=_le(data[26:30]),
        time=datetime.fromtimestamp(_le(data[34:38]), UTC).isoformat(),
        obis=f"{a}-{b}:{c}.{d}.{e}*{f}", unit=data[44],
        scalar=int.from_bytes(data[45:46], "little", signed=True), value=_le(data[46:54]),
        uid=uid_text, session_id=_le(data[74:78]), page=_le(data[78:82]))


def _faulty_bits(word: int) -> list[int]:
    return [bit for bit in _ERROR_BITS if word >> bit & 1]


def _reading(record: AlfenRecord) -> ocmf.SignedReading | None:
    """The record's energy reading; None for a register that is no energy register."""
    kind = ocmf.register_kind(record.obis)
    if record.unit != _WH:
        if kind == ocmf.IMPORT:
            raise ocmf.OcmfError(f"the import register's unit {record.unit} is not Wh (30)")
        return None
    factor = Decimal(1).scaleb(record.scalar)
    wh = ocmf.energy_wh(Decimal(record.value), factor)
    bits = _faulty_bits(record.status_word)
    return ocmf.SignedReading(
        tx=record.tx, time=record.time, wh=wh, resolution_wh=factor,
        meter_serial=record.meter_id, pagination=str(record.page), register=record.obis,
        kind=kind, identification=record.uid,
        status="G" if not bits else f"{record.status_word:08X}",
        error_flags="E" if bits else None, session=str(record.session_id))


def key_der(point: bytes) -> str:
    """The record's key as lowercase hex DER (SubjectPublicKeyInfo), as keys are pinned."""
    try:
        public = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP192R1(), point)
    except ValueError:
        raise ocmf.OcmfError("the record's public key is no point of secp192r1") from None
    return public.public_bytes(serialization.Encoding.DER,
                               serialization.PublicFormat.SubjectPublicKeyInfo).hex()


def check_record(text: str, pinned_key: str | None) -> ocmf.CheckedContainer:
    """Verify one record against the station's pinned meter key (else the record's own,
    which the caller pins), as ``ocmf.check_container`` does for OCMF."""
    result = ocmf.CheckedContainer(ocmf.MALFORMED, "", ocmf.strip_blanks(text), pinned_key)
    try:
        record = parse(text)
        reading = _reading(record)
    except (ocmf.OcmfError, ValueError, OverflowError, ArithmeticError) as exc:
        result.detail = f"unreadable Alfen record: {exc}"
        return result
    result.readings = [reading] if reading is not None else []
    try:
        result.message_key = key_der(record.key)
    except ocmf.OcmfError as exc:
        result.status, result.detail = ocmf.INVALID, str(exc)
        return result
    key = pinned_key or result.message_key
    result.key_used = key
    try:
        public = serialization.load_der_public_key(bytes.fromhex(key))
    except Exception as exc:  # not hex, not DER, an unsupported key
        result.status, result.detail = ocmf.INVALID, f"the meter key cannot be read: {exc}"
        return result
    if not isinstance(public, ec.EllipticCurvePublicKey) or \
            not isinstance(public.curve, ec.SECP192R1):
        result.status = ocmf.INVALID
        result.detail = "the meter key is not on secp192r1, the curve Alfen records use"
        return result
    signature = encode_dss_signature(int.from_bytes(record.signature[:24], "big"),
                                     int.from_bytes(record.signature[24:], "big"))
    try:
        public.verify(signature, record.dataset, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        result.status, result.detail = ocmf.INVALID, "signature does not match the signed data"
        return result
    result.status, result.detail = ocmf.VERIFIED, "signature verified"
    return result
