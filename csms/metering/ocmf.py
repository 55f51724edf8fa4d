"""Signed meter data in OCMF (Open Charge Metering Format): unwrap, verify, reconcile (pure).

An Eichrecht meter signs its readings; the station passes the signed container
``OCMF|{payload}|{signature}`` through OCPP in one of these wrappings:

- 2.0.1 ``signedMeterValue``: ``signedMeterData`` (the container, base64),
  ``signingMethod``, ``encodingMethod`` ("OCMF"), ``publicKey`` (optional);
- 1.6 ``SampledValue`` with ``format: "SignedData"`` (the OCA "Signed Meter Values in
  OCPP 1.6" convention): ``value`` holds the 2.0.1 object as JSON (``signedMeterData`` or
  ``signedMeterValue``), or the bare container, or the container in base64.

The container is parsed and validated by ``pyocmf`` (which also applies the OCMF rule
that a reading without ``TM``/``TX`` inherits them from the reading before it); the ECDSA
signature (the secp and brainpool curves OCMF allows, SHA-256 or SHA-512) is checked with
``cryptography`` over the payload bytes exactly as sent. (pyocmf 0.6's own check refuses
the spec's spelling ``ECDSA-brainpool256r1-SHA256`` for a brainpoolP256r1 key, so the
check is done here.)

Real chargers write keys and signatures in several ways, all accepted here: keys as hex
or base64 DER (SubjectPublicKeyInfo), PEM, a raw EC point (``04 || x || y``, ``x || y``
or compressed) in hex or base64, or any of these inside a JSON object (KEBA sends
base64 of ``{"UK": "<hex DER>"}``); signatures as DER or as raw ``r || s``, in hex or
base64 (``SE``).

Readings are evidence per register: only the active import register (OBIS
``1-x:1.8.x``, DESIGN.md "Signed meter data as evidence") is compared with billed
energy; export (``2.8.x``) and other registers are stored, not compared.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import orjson
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

__all__ = [
    "END_CODES",
    "HOLD_STATUSES",
    "INVALID",
    "MALFORMED",
    "MAX_PLAUSIBLE_POWER_W",
    "NO_KEY",
    "POWER_SLACK_RATIO",
    "POWER_SLACK_SECONDS",
    "READING_MARGIN",
    "READING_TOLERANCE_WH",
    "VERIFIED",
    "CheckedContainer",
    "OcmfError",
    "Reconciled",
    "SignedReading",
    "check_container",
    "energy_wh",
    "faulty",
    "foreign",
    "normalize_key",
    "reconcile",
    "register_kind",
    "reused",
    "strip_blanks",
    "unsigned_beyond_signed",
    "unwrap",
]

# per signed reading: the signature verified with the station's meter key ...
VERIFIED = "verified"
INVALID = "invalid"  # ... did not verify (altered data, wrong key)
NO_KEY = "no_key"  # ... could not be checked: no key registered, none in the message
MALFORMED = "malformed"  # ... is not a readable OCMF container
HOLD_STATUSES = frozenset({INVALID, MALFORMED, NO_KEY})

# OCMF's energy units (RU), read in any case ("KWH" is a kilowatt-hour; "mWh" and "MWh",
# which differ only in case, are no OCMF unit and are not read)
_ENERGY_UNITS = {"kwh": Decimal(1000), "wh": Decimal(1)}
IMPORT, EXPORT, OTHER = "import", "export", "other"
# OCMF TX codes that end a transaction (pyocmf MeterReadingReason.is_end_reading)
END_CODES = frozenset({"E", "L", "R", "A", "P"})
# a meter's clock and the station's may differ: signed readings count as a session's within
# this margin around its start and stop
READING_MARGIN = timedelta(minutes=5)
# a billed reading matches a signed one within the coarser of their resolutions, but never
# beyond this: a reading's resolution is read from how its number is written, and a meter's
# 12.00 kWh may be written 12 (a JSON serializer drops the zeros), which is no licence to bill
# up to 12.99 kWh; 0.01 kWh is the coarsest resolution an Eichrecht meter signs
READING_TOLERANCE_WH = Decimal(10)
# no energy register shows more (this module stands alone, for receipts' verifiers: the
# same bound as csms.domain.energy.MAX_REGISTER_WH, which a test keeps equal)
MAX_REGISTER_WH = Decimal(10) ** 15
# no charger delivers more power, nor does a power check count less slack (a receipt's
# verifiers bound an unsigned start or stop with these: csms.domain.energy's
# MAX_PLAUSIBLE_POWER_W, POWER_SLACK_SECONDS and POWER_SLACK_RATIO, which a test keeps equal)
MAX_PLAUSIBLE_POWER_W = Decimal(4_000_000)
POWER_SLACK_SECONDS = 60
POWER_SLACK_RATIO = Decimal("1.01")
# nor is a reading written with a figure beyond 10^-30 or 10^30 (its adjusted exponent):
# csms.domain.tariff.MAX_EXPONENT, which the same test keeps equal
MAX_EXPONENT = 30


def _json(text: str) -> Any:
    """JSON a station sent: orjson (nesting bounded at 1024), the standard library only for
    what orjson refuses (integers beyond 64 bits) and never for deep nesting: its C parser
    recurses to the interpreter's recursion limit, which libraries raise (py_ecc: 100,000),
    and deeper input would then end the process instead of raising."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        if text.count("[") + text.count("{") > 1024:
            raise ValueError("JSON nested too deep") from None
        return json.loads(text)


class OcmfError(ValueError):
    """Signed meter data or a meter key that cannot be read."""


@dataclass(frozen=True, slots=True)
class Unwrapped:
    container: str  # "OCMF|{payload}|{signature}"
    public_key: str | None  # the key text the message carried, not yet read
    signing_method: str | None


@dataclass(frozen=True, slots=True)
class SignedReading:
    """One energy reading (an OCMF ``RD`` entry) of a signed container."""

    # OCMF TX: B(egin), C(harging), X(exception), S(uspended), T(ariff change); the end of
    # a transaction: E(nd), or the terminations L(ocal), R(emote), A(bort), P(ower failure)
    # (END_CODES: any of these is the signed end reading)
    tx: str | None
    time: str | None
    wh: Decimal
    resolution_wh: Decimal  # one unit of the last digit the meter signed
    meter_serial: str | None
    pagination: str | None
    register: str | None = None  # RI, the OBIS code as the meter wrote it
    kind: str = IMPORT  # import | export | other (see register_kind)
    identification: str | None = None  # the payload's ID (a card UID, an EMAID...)
    status: str | None = None  # ST, the meter status: "G" (good) is the only billable one
    error_flags: str | None = None  # EF: "E" an energy error, "t" a time error
    # the meter's own transaction number, where the format signs one (Alfen's session id;
    # OCMF has none): readings of one session all carry the same
    session: str | None = None


@dataclass(slots=True)
class CheckedContainer:
    status: str  # verified | invalid | no_key | malformed
    detail: str
    container: str | None = None
    key_used: str | None = None  # hex DER
    message_key: str | None = None  # hex DER carried by the message, if any
    readings: list[SignedReading] = field(default_factory=list)


# -- keys ----------------------------------------------------------------------------------
_CURVE_BY_COORD: dict[int, Callable[[], ec.EllipticCurve]] = {
    32: ec.SECP256R1, 48: ec.SECP384R1, 66: ec.SECP521R1, 24: ec.SECP192R1}
# What surrounds a record, a key or a signature and is no part of it: space, tab, CR and LF
# only. str.strip() takes more characters for whitespace (\x1c-\x1f, \x85, ...) and the
# receipt page's JavaScript others (\ufeff), which a station could put outside the signed
# bytes to have its records verify under one verifier and fail under the other.
BLANKS = " \t\r\n"
_HEX = re.compile(r"(?:[0-9a-fA-F]{2})*")
_PEM = re.compile(r"-----BEGIN [^-]+-----[A-Za-z0-9+/= \t\r\n]*-----END [^-]+-----")


def strip_blanks(text: str) -> str:
    """``text`` without the space, tab, CR and LF around it (nothing else)."""
    return text.strip(BLANKS)


def _hex(text: str) -> bytes:
    """Hex digits in pairs, nothing else (bytes.fromhex would skip whitespace)."""
    if _HEX.fullmatch(text) is None:
        raise ValueError("not hex")
    return bytes.fromhex(text)


_KEY_FIELDS = ("UK", "publicKey", "PublicKey", "public_key", "key", "PK")


def _der(key: ec.EllipticCurvePublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.DER,
                            serialization.PublicFormat.SubjectPublicKeyInfo)


def _point(raw: bytes, curve: ec.EllipticCurve | None) -> ec.EllipticCurvePublicKey | None:
    """A raw EC point: 04 || x || y, compressed 02/03 || x, or x || y without a prefix."""
    if raw[:1] == b"\x04" and len(raw) % 2 == 1:
        size, encoded = (len(raw) - 1) // 2, raw
    elif raw[:1] in (b"\x02", b"\x03") and len(raw) % 2 == 1:
        size, encoded = len(raw) - 1, raw
    elif raw and len(raw) % 2 == 0:
        size, encoded = len(raw) // 2, b"\x04" + raw
    else:
        return None
    if curve is None or (curve.key_size + 7) // 8 != size:
        kind = _CURVE_BY_COORD.get(size)
        if kind is None:
            return None
        curve = kind()
    try:
        return ec.EllipticCurvePublicKey.from_encoded_point(curve, encoded)
    except ValueError:
        return None


_BASE32 = re.compile(r"[A-Z2-7]+=*")


def _base32_point(text: str) -> str | None:
    """The hex DER of a secp192r1 point written in base32, as an Alfen record and its
    charger's label carry the meter key; None for any other text (hex never is base32: a DER
    key or a point starts with 0)."""
    if not _BASE32.fullmatch(text) or len(text) % 8:
        return None
    try:
        raw = base64.b32decode(text)
    except (binascii.Error, ValueError):
        return None
    if len(raw) not in (25, 49):
        return None
    try:
        return _der(ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP192R1(), raw)).hex()
    except ValueError:
        return None


def normalize_key(text: str, curve: ec.EllipticCurve | None = None) -> str:
    """A meter public key as lowercase hex DER (SubjectPublicKeyInfo).

    Accepts every encoding of the module docstring; ``curve`` says which curve a raw point
    is on (the container's ``SA``), else its size decides (32-byte coordinates: P-256).
    Raises :class:`OcmfError` when it is not an EC key.
    """
    raw = strip_blanks(text)
    if raw.startswith("{"):
        try:
            obj = _json(raw)
        except ValueError:
            raise OcmfError("a meter key in JSON must be an object with the key") from None
        inner = next((obj[k] for k in _KEY_FIELDS if isinstance(obj, dict)
                      and isinstance(obj.get(k), str)), None)
        if inner is None:
            raise OcmfError("no key field (UK, publicKey...) in the JSON meter key")
        return normalize_key(inner, curve)
    if raw.startswith("-----BEGIN"):
        if _PEM.fullmatch(raw) is None:  # other characters OpenSSL would skip, or not
            raise OcmfError("not a PEM public key: only base64 between its lines")
        try:
            key = serialization.load_pem_public_key(raw.encode())
        except ValueError as exc:
            raise OcmfError(f"not a PEM public key: {exc}") from None
        if not isinstance(key, ec.EllipticCurvePublicKey):
            raise OcmfError("OCMF meter keys are elliptic-curve keys")
        return _der(key).hex()
    compact = re.sub("[" + BLANKS + "]+", "", raw)
    if not compact:
        raise OcmfError("a meter key is hex or base64 DER, PEM or a raw EC point")
    alfen_key = _base32_point(compact)
    if alfen_key is not None:
        return alfen_key
    data: bytes
    try:
        data = _hex(compact)
    except ValueError:
        try:
            data = base64.b64decode(compact, validate=True)
        except (binascii.Error, ValueError):
            raise OcmfError("a meter key is hex or base64 DER, PEM or a raw EC point") from None
        if data[:1] in (b"{", b"-"):  # base64 of a JSON wrapper or of a PEM text
            try:
                return normalize_key(data.decode("utf-8"), curve)
            except UnicodeDecodeError:
                pass
    try:
        key = serialization.load_der_public_key(data)
    except (ValueError, TypeError, IndexError):
        point = _point(data, curve)
        if point is None:
            raise OcmfError("not a DER public key nor a raw EC point") from None
        return _der(point).hex()
    except Exception as exc:  # cryptography raises UnsupportedAlgorithm for odd DER
        raise OcmfError(f"not a supported public key: {exc}") from None
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise OcmfError("OCMF meter keys are elliptic-curve keys")
    return data.hex()


# -- containers ----------------------------------------------------------------------------
def _container_text(data: str) -> str:
    text = strip_blanks(data)
    if not text.startswith("OCMF|"):
        try:
            text = base64.b64decode(text, validate=True).decode("utf-8")
        except (binascii.Error, ValueError, UnicodeDecodeError):
            raise OcmfError("signed meter data is neither an OCMF container nor base64 of"
                            " one") from None
        if not text.startswith("OCMF|"):
            raise OcmfError("signed meter data is not an OCMF container")
    if strip_blanks(text) != text.strip():  # pyocmf would strip them, the page would not
        raise OcmfError("the OCMF container ends in a character that is no part of it")
    return text


def unwrap(signed: dict[str, Any]) -> Unwrapped:
    """The container and the key text from a stored sample's ``signed`` object (either
    version)."""
    obj: dict[str, Any]
    if not isinstance(signed, dict):
        raise OcmfError("signed meter data is not an object")
    if "signedData" in signed:  # 1.6: the SampledValue's value, kept verbatim
        value = strip_blanks(str(signed["signedData"]))
        if value.startswith("{"):
            try:
                obj = _json(value)
            except ValueError:
                raise OcmfError("SignedData value is neither JSON nor OCMF") from None
            if not isinstance(obj, dict):
                raise OcmfError("SignedData JSON is not an object")
        else:
            return Unwrapped(_container_text(value), None, None)
    else:
        obj = signed
    data = obj.get("signedMeterData", obj.get("signedMeterValue"))
    if not isinstance(data, str):
        raise OcmfError("no signedMeterData in the signed meter value")
    encoding = obj.get("encodingMethod")
    if encoding is not None and str(encoding).upper() != "OCMF":
        raise OcmfError(f"encoding {encoding!r} is not supported (OCMF only)")
    key = obj.get("publicKey")
    method = obj.get("signingMethod")
    return Unwrapped(
        _container_text(data),
        strip_blanks(key) if isinstance(key, str) and strip_blanks(key) else None,
        method if isinstance(method, str) else None,
    )


def _resolution(value: Decimal, factor: Decimal) -> Decimal:
    exponent = value.as_tuple().exponent
    step = Decimal(1).scaleb(exponent) if isinstance(exponent, int) and exponent < 0 \
        else Decimal(1)
    return step * factor


_OBIS = re.compile(r"[ \t\r\n]*(\w+)-(\w+):(\w+)\.(\w+)(?:\.(\w+))?(?:[.*]\w+)*[ \t\r\n]*")


def register_kind(register: str | None) -> str:
    """``import`` for the active import energy register (OBIS 1-x:1.8.x), ``export`` for
    active export (1-x:2.8.x), else ``other`` (e.g. loss-compensated 98.8.x, durations).

    OBIS groups may carry leading zeros ("01-00:01.08.00.FF") or the OCMF placeholders
    ``b``/``e`` ("1-b:1.8.e"); the value group F or a ``*suffix`` does not matter here.
    A reading without RI is taken as the import register (OCMF 1.0 meters that sign only
    that one).
    """
    if register is None:
        return IMPORT
    m = _OBIS.fullmatch(register)
    if m is None:
        return OTHER

    def number(group: str | None) -> int | None:
        return int(group) if group is not None and group.isascii() and group.isdigit() else None

    medium, c, d = number(m.group(1)), number(m.group(3)), number(m.group(4))
    if medium != 1 or d != 8:
        return OTHER
    return {1: IMPORT, 2: EXPORT}.get(c if c is not None else -1, OTHER)


def energy_wh(value: Decimal, factor: Decimal) -> Decimal:
    """A reading in Wh; :class:`OcmfError` for a number no energy register shows (negative,
    beyond any meter, not finite, a figure beyond 10^-MAX_EXPONENT)."""
    try:
        wh = value * factor
        readable = wh.is_finite() and 0 <= wh <= MAX_REGISTER_WH \
            and -MAX_EXPONENT <= wh.adjusted() <= MAX_EXPONENT
    except ArithmeticError:  # Overflow (1e999999 kWh)
        readable = False
    if not readable:
        raise OcmfError(f"the reading {value} is no energy register reading")
    return wh


def _readings(parsed: Any) -> list[SignedReading]:
    payload = parsed.payload
    out = []
    identification = getattr(payload, "ID", None)
    for rd in payload.RD or []:
        if rd.RV is None:
            continue  # an event without a reading (an error, a time status)
        unit = str(getattr(rd.RU, "value", rd.RU) or "")
        register = None if rd.RI is None else str(rd.RI)
        factor = _ENERGY_UNITS.get(unit.lower())
        if factor is None:
            if register_kind(register) == IMPORT and (
                    register is not None or unit.lower().endswith("wh")):
                # skipping it would leave the session no signed reading to compare
                raise OcmfError(f"the import register's unit {unit!r} is not kWh or Wh")
            continue  # not an energy register (a duration, a cable loss resistance)
        value = Decimal(str(rd.RV).strip())
        tx = getattr(rd.TX, "value", rd.TX)
        time = rd.TM.timestamp.isoformat() if rd.TM is not None else None
        status = getattr(rd.ST, "value", rd.ST)
        out.append(SignedReading(
            tx=None if tx is None else str(tx), time=time, wh=energy_wh(value, factor),
            resolution_wh=_resolution(value, factor),
            meter_serial=payload.MS, pagination=payload.PG, register=register,
            kind=register_kind(register),
            identification=None if identification in (None, "") else str(identification),
            status=None if status is None else str(status),
            error_flags=None if rd.EF is None else str(rd.EF),
        ))
    return out


# OCMF signature algorithms (SA) name the curve; brainpool is written with or without "P".
_CURVES: dict[str, type[ec.EllipticCurve]] = {
    "secp192r1": ec.SECP192R1, "secp256r1": ec.SECP256R1, "secp384r1": ec.SECP384R1,
    "secp521r1": ec.SECP521R1, "secp256k1": ec.SECP256K1,
    "brainpool256r1": ec.BrainpoolP256R1, "brainpoolp256r1": ec.BrainpoolP256R1,
    "brainpool384r1": ec.BrainpoolP384R1, "brainpoolp384r1": ec.BrainpoolP384R1,
}
_HASHES: dict[str, type[hashes.HashAlgorithm]] = {"SHA256": hashes.SHA256,
                                                  "SHA512": hashes.SHA512}
DEFAULT_ALGORITHM = "ECDSA-secp256r1-SHA256"  # OCMF: SA may be omitted


def _algorithm(name: str) -> tuple[type[ec.EllipticCurve], type[hashes.HashAlgorithm]]:
    parts = name.split("-")
    if len(parts) != 3 or parts[0] != "ECDSA" or parts[1].lower() not in _CURVES \
            or parts[2].upper() not in _HASHES:
        raise OcmfError(f"signature algorithm {name!r} is not supported")
    return _CURVES[parts[1].lower()], _HASHES[parts[2].upper()]


def _signature_algorithm(signature: Any, signing_method: str | None) -> str:
    """The container's SA; else a 2.0.1 signingMethod that names an OCMF algorithm (some
    stations write "ECC256" there, which names none); else the OCMF default."""
    sa = getattr(signature.SA, "value", signature.SA)
    if sa:
        return str(sa)
    if signing_method and signing_method.startswith("ECDSA-"):
        return signing_method
    return DEFAULT_ALGORITHM


def check_container(signed: dict[str, Any], pinned_key: str | None) -> CheckedContainer:
    """Verify one stored signed sample against the station's pinned meter key.

    Without a pinned key, the key the message carries is used (the caller pins it).
    Alfen's own format (``AP;...``) is read and verified by ``csms.metering.alfen``, with
    the same results.
    """
    import pyocmf
    from pydantic import ValidationError

    from csms.metering import alfen

    record = alfen.record_text(signed)
    if record is not None:
        return alfen.check_record(record, pinned_key)
    try:
        unwrapped = unwrap(signed)
    except OcmfError as exc:
        return CheckedContainer(MALFORMED, str(exc))
    result = CheckedContainer(MALFORMED, "", unwrapped.container, pinned_key)
    try:
        payload = _payload_section(unwrapped.container)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # spec notes (e.g. id formats) are not failures
            parsed = pyocmf.OCMF.from_string(unwrapped.container)
        _plain_payload(payload)
        result.readings = _readings(parsed)
        algorithm = _signature_algorithm(parsed.signature, unwrapped.signing_method)
    except (pyocmf.PyOCMFError, ValidationError, ValueError, ArithmeticError, TypeError,
            AttributeError, LookupError) as exc:  # pyocmf lets the last three out (wrong types)
        result.detail = f"unreadable OCMF: {str(exc).splitlines()[0]}"
        return result
    try:
        curve, digest = _algorithm(algorithm)
        if unwrapped.public_key is not None:
            result.message_key = normalize_key(unwrapped.public_key, curve())
    except OcmfError as exc:
        result.status, result.detail = INVALID, str(exc)
        return result
    key = pinned_key or result.message_key
    result.key_used = key
    if key is None:
        result.status, result.detail = NO_KEY, "no meter key registered and none in the message"
        return result
    try:
        ok = _verify(payload, parsed.signature, key, curve, digest)
    except OcmfError as exc:
        result.status, result.detail = INVALID, str(exc)
        return result
    if ok:
        result.status, result.detail = VERIFIED, "signature verified"
    else:
        result.status, result.detail = INVALID, "signature does not match the signed data"
    return result


def _payload_section(container: str) -> str:
    """The payload section of a container, cut as OCMF cuts it: at every '|' (the
    specification allows none inside a section, so a payload with a '|' in a text is no
    JSON and not OCMF), the way pyocmf and the Transparenzsoftware cut it too. A fourth
    section, the meter's public key appended as the Transparenzsoftware reads it, is
    allowed and not used: the key is the pinned one or the OCPP message's. The receipt page
    cuts containers the same way."""
    sections = container.split("|")
    if sections[0] != "OCMF" or len(sections) not in (3, 4):
        raise OcmfError("an OCMF container is OCMF|payload|signature (and at most the meter's"
                        f" key after them), not {len(sections)} sections: no section may"
                        " hold a '|'")
    return sections[1]


def _plain_payload(payload: str) -> None:
    """:class:`OcmfError` when an object of the payload has a key twice (which of the two
    values counts is up to each parser: the meter's, the Transparenzsoftware, a receipt's
    verifier; so the reading is none of them), or a reading's value is text that is not
    ASCII (pyocmf reads other scripts' digits, the receipt page does not)."""
    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        keys = [k for k, _ in items]
        if len(set(keys)) != len(keys):
            twice = next(k for k in keys if keys.count(k) > 1)
            raise OcmfError(f"duplicate key {twice!r} in the OCMF payload")
        return dict(items)

    data = json.loads(payload, object_pairs_hook=pairs)
    readings = data.get("RD") if isinstance(data, dict) else None
    for reading in readings if isinstance(readings, list) else []:
        value = reading.get("RV") if isinstance(reading, dict) else None
        if isinstance(value, str) and not value.isascii():
            raise OcmfError(f"the reading {value!r} is not a number in ASCII digits")


def _signature_bytes(signature: Any, public: ec.EllipticCurvePublicKey) -> bytes:
    """The DER signature: SD as hex (default) or base64 (SE), DER or raw r || s."""
    encoding = str(getattr(signature.SE, "value", signature.SE) or "hex").lower()
    try:
        sd = strip_blanks(str(signature.SD))
        raw = base64.b64decode(sd, validate=True) if encoding == "base64" else _hex(sd)
    except (binascii.Error, ValueError):
        raise OcmfError(f"signature data is not {encoding}") from None
    size = (public.curve.key_size + 7) // 8
    if len(raw) == 2 * size and not _is_der(raw):
        # raw r || s (some meters write the two integers without the DER wrapping)
        return encode_dss_signature(int.from_bytes(raw[:size], "big"),
                                    int.from_bytes(raw[size:], "big"))
    return raw


def _is_der(raw: bytes) -> bool:
    return len(raw) >= 8 and raw[0] == 0x30 and raw[1] + 2 == len(raw)


def _verify(payload: str, signature: Any, key_hex: str, curve: type[ec.EllipticCurve],
            digest: type[hashes.HashAlgorithm]) -> bool:
    """ECDSA over the payload section exactly as sent, with the curve and hash the SA
    names."""
    try:
        public = serialization.load_der_public_key(bytes.fromhex(key_hex))
    except Exception as exc:  # not hex, not DER, an unsupported key: the receipt's key is bad
        raise OcmfError(f"the meter key cannot be read: {exc}") from None
    if not isinstance(public, ec.EllipticCurvePublicKey) or \
            not isinstance(public.curve, curve):
        raise OcmfError(f"the meter key is not on the curve {curve.name} the signature names")
    raw = _signature_bytes(signature, public)
    try:
        public.verify(raw, payload.encode("utf-8"), ec.ECDSA(digest()))
    except InvalidSignature:
        return False
    return True


# -- signed readings against billed ones ---------------------------------------------------
@dataclass(slots=True)
class Reconciled:
    """The billed start/stop readings after comparing them with the meter's signed ones.

    ``start_wh``/``stop_wh`` are what to bill from: the station's readings when they agree
    with the signed ones, the signed readings when the station sent none or the two differ
    by a unit factor (1000: kWh written as Wh, or the reverse) - the calibrated meter wins.
    """

    start_wh: Decimal | None
    stop_wh: Decimal | None
    flags: list[str] = field(default_factory=list)
    mismatches: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    faults: list[str] = field(default_factory=list)  # begin/end readings the meter marks faulty
    signed_begin: SignedReading | None = None
    signed_end: SignedReading | None = None
    readings: list[SignedReading] = field(default_factory=list)  # the verified ones compared


def _billed_resolution(value: Decimal) -> Decimal:
    return _resolution(value, Decimal(1))


def _close(a: Decimal, b: Decimal, tolerance: Decimal) -> bool:
    return abs(a - b) < tolerance


def _step(resolution: Decimal) -> Decimal:
    """A resolution as a tolerance: at most ``READING_TOLERANCE_WH``."""
    return min(resolution, READING_TOLERANCE_WH)


def reconcile(readings: list[SignedReading], billed_start: Decimal | None,
              billed_stop: Decimal | None) -> Reconciled:
    """Compare the verified signed readings of the import register with the billed ones.

    Two readings match when they differ by less than the coarser of the two resolutions
    (a meter signing 0.2596 kWh next to a station reporting 260 Wh), at most
    ``READING_TOLERANCE_WH`` (a whole 12 kWh does not match 12,990 Wh). When neither end
    matches but the energy between them does (a transaction register that starts at 0,
    or a station meter beside the Eichrecht one), the session is consistent: flagged
    ``signed_register_offset``, not held.
    """
    begin, end = _pair(readings)
    out = Reconciled(billed_start, billed_stop, signed_begin=begin, signed_end=end,
                     readings=list(readings))
    outcomes: dict[str, str] = {}
    for name, signed, billed in (("start", begin, billed_start), ("stop", end, billed_stop)):
        if signed is None:
            out.missing.append(name)
            continue
        value, outcome = billed, "match"
        if billed is None:
            value, outcome = signed.wh, "from_signed"
        elif not _close(billed, signed.wh,
                        _step(max(signed.resolution_wh, _billed_resolution(billed)))):
            scaled_up = max(_step(signed.resolution_wh), _billed_resolution(billed) * 1000)
            scaled_down = max(_step(signed.resolution_wh), _billed_resolution(billed) / 1000)
            if _close(billed * 1000, signed.wh, scaled_up) or \
                    _close(billed / 1000, signed.wh, scaled_down):
                value, outcome = signed.wh, "unit"
                out.notes.append(f"{name}: the station reported {billed} Wh, the meter signed"
                                 f" {signed.wh} Wh (a unit factor of 1000): billed as signed")
            else:
                outcome = "differs"
        elif name == "start" and billed < signed.wh - _step(
                max(signed.resolution_wh, _billed_resolution(billed))) / 2:
            # within a step, but more than half a step below the signed begin: no rounding
            # of the meter's reading gives it (csms.domain.energy allows an unsigned start
            # half a step below a reading, no more): the driver is not billed for energy the
            # meter signed was on the register before the start
            value = signed.wh
            out.notes.append(f"start: the station reported {billed} Wh, below what the meter's"
                             f" signed {signed.wh} Wh allows: billed as signed")
        outcomes[name] = outcome
        if name == "start":
            out.start_wh = value
        else:
            out.stop_wh = value
    if "from_signed" in outcomes.values():
        out.flags.extend(f"meter_{n}_from_signed" for n, o in outcomes.items()
                         if o == "from_signed")
    if "unit" in outcomes.values():
        out.flags.append("unit_discrepancy")
    if "differs" in outcomes.values():
        consistent = False
        if begin is not None and end is not None and out.start_wh is not None \
                and out.stop_wh is not None and outcomes.get("start") == "differs" \
                and outcomes.get("stop") == "differs":
            tolerance = _step(begin.resolution_wh) + _step(end.resolution_wh) + _step(max(
                _billed_resolution(out.start_wh), _billed_resolution(out.stop_wh)))
            consistent = _close(out.stop_wh - out.start_wh, end.wh - begin.wh, tolerance)
        if consistent:
            out.flags.append("signed_register_offset")
            out.notes.append("the signed readings are offset from the billed ones by a"
                             " constant; the energy between them is the same")
        else:
            out.flags.append("signed_energy_mismatch")
            for name, signed, billed in (("start", begin, out.start_wh),
                                         ("stop", end, out.stop_wh)):
                if outcomes.get(name) == "differs" and signed is not None:
                    out.mismatches.append(
                        f"{name}: billed {billed} Wh, meter signed {signed.wh} Wh")
    if out.missing:
        out.flags.append("signed_reading_missing")
    out.faults = [f"the meter marked its {r.tx} reading as faulty (ST {r.status!r},"
                  f" EF {r.error_flags!r})" for r in (begin, end)
                  if r is not None and faulty(r)]
    if out.faults:
        out.flags.append("signed_reading_faulty")
        out.notes.extend(out.faults)
    return out


def faulty(reading: SignedReading) -> bool:
    """The meter itself says the reading is not billable: a status (ST) other than "G"
    (OK), or the energy error flag "E" in EF (OCMF; pyocmf's Eichrecht compliance check and
    the Transparenzsoftware). The time error flag "t" alone does not make the energy wrong.
    A reading without ST (which OCMF requires) is not taken as faulty here."""
    return (reading.status is not None and reading.status != "G") \
        or "E" in (reading.error_flags or "")


def _register_key(register: str | None) -> tuple[Any, ...]:
    """A register's identity for pairing begin and end: its OBIS groups as numbers (so
    "01-00:01.08.00" is "1-0:1.8.0"), the text when it is no OBIS code."""
    if register is None:
        return (None,)
    m = _OBIS.fullmatch(register)
    if m is None:
        return ("text", strip_blanks(register))
    groups = tuple(int(g) if g is not None and g.isascii() and g.isdigit() else g
                   for g in m.groups())
    suffix = strip_blanks(register)[m.end(5) if m.group(5) is not None else m.end(4):]
    return ("obis", *groups, suffix)


def _is_total_import(register: str | None) -> bool:
    """The total active import register 1-x:1.8.0 (no tariff, no transaction register)."""
    if register is None:
        return False
    m = _OBIS.fullmatch(register)
    if m is None or register_kind(register) != IMPORT:
        return False
    e = m.group(5)
    suffix = strip_blanks(register)[m.end(5):] if e is not None else ""
    return e is not None and e.isdigit() and int(e) == 0 \
        and suffix.lstrip(".*").upper() in ("", "255", "FF")


def _pair(readings: list[SignedReading]) -> tuple[SignedReading | None, SignedReading | None]:
    """The signed begin and end import readings, from one register: the total import
    register 1-x:1.8.0 when both sides have it, else the first register both sides have;
    when no register is on both sides, each side's total import reading (else its first
    begin, its last end): a pair of two registers, which :func:`foreign` refuses (their
    difference is no energy the meter measured)."""
    imports = [r for r in readings if r.kind == IMPORT]
    begins = [r for r in imports if r.tx == "B"]
    ends = [r for r in imports if r.tx in END_CODES]
    end_keys = {_register_key(r.register) for r in ends}
    common = [r for r in begins if _register_key(r.register) in end_keys]
    if common:
        chosen = next((r for r in common if _is_total_import(r.register)), common[0])
        key = _register_key(chosen.register)
        return chosen, next(r for r in reversed(ends) if _register_key(r.register) == key)
    begin = next((r for r in begins if _is_total_import(r.register)),
                 begins[0] if begins else None)
    end = next((r for r in reversed(ends) if _is_total_import(r.register)),
               ends[-1] if ends else None)
    return begin, end


def _page(pagination: str | None) -> int | None:
    m = re.fullmatch(r"[A-Za-z]?(\d+)", pagination or "")
    return int(m.group(1)) if m else None


def _at(text: str) -> datetime | None:
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None


def foreign(readings: Iterable[SignedReading], begin: SignedReading | None,
            end: SignedReading | None, started: datetime, stopped: datetime | None,
            id_tag: str | None, margin: timedelta = READING_MARGIN) -> list[str]:
    """Why signed readings do not belong to a session (empty when they do): a begin or end
    reading outside the session's time (with ``margin`` for the meter's clock), a begin
    later than its end or pages going backwards, a begin and an end of two registers,
    several different begin (or end) readings of the register, readings of several meters,
    readings the meter signed for another token than the session's, readings of several of
    the meter's own sessions (where the format signs one), a begin reading larger than its
    end. The central system holds such a
    session (``signed_reading_foreign``); a receipt's verifier calls it INVALID.

    ``readings`` are all the session's verified readings, ``begin``/``end`` the pair
    reconciled (``Reconciled.signed_begin``/``signed_end``)."""
    readings = list(readings)
    problems: list[str] = []
    last = stopped if stopped is not None else started
    for r in (begin, end):
        if r is None or r.time is None:
            continue
        at = _at(r.time)
        try:  # differences, not started - margin: no overflow at the ends of the calendar
            inside = at is not None and -margin <= at - started and at - last <= margin
        except TypeError:  # a naive time against an aware one
            inside = False
        if not inside:
            problems.append(f"the {r.tx} reading ({r.time}) is outside the session")
    if begin is not None and end is not None:
        tb, te = _at(begin.time or ""), _at(end.time or "")
        if tb is not None and te is not None:
            try:
                later = tb > te
            except TypeError:
                later = False
            if later:
                problems.append("the begin reading is later than the end reading")
        pb, pe = _page(begin.pagination), _page(end.pagination)
        if pb is not None and pe is not None and not pb <= pe:
            problems.append(f"pages go backwards ({begin.pagination} -> {end.pagination})")
        if _register_key(begin.register) != _register_key(end.register):
            # a tariff register's begin and the total's end: each the meter's, their
            # difference no energy it measured
            problems.append(f"the begin reading ({begin.register or '(unnamed)'}) and the end"
                            f" reading ({end.register or '(unnamed)'}) are of two registers")
        elif begin.wh > end.wh:
            # an energy register only counts up: these are not one transaction's readings
            problems.append(f"the begin reading ({begin.wh} Wh) is larger than the end"
                            f" reading ({end.wh} Wh)")
    for name, chosen, codes in (("begin", begin, {"B"}), ("end", end, END_CODES)):
        # a meter signs one begin and one end per transaction (a container the station sent
        # twice, or in two records, is the same reading): another one is of another session
        if chosen is not None and len({
                (r.wh, r.time) for r in readings if r.kind == IMPORT and r.tx in codes
                and _register_key(r.register) == _register_key(chosen.register)}) > 1:
            problems.append(f"several {name} readings of the register"
                            f" {chosen.register or '(unnamed)'}")
    sessions = {r.session for r in readings if r.session}
    if len(sessions) > 1:
        problems.append(f"readings of several meter sessions ({', '.join(sorted(sessions))})")
    serials = {r.meter_serial for r in readings if r.meter_serial}
    if len(serials) > 1:
        problems.append(f"readings of several meters ({', '.join(sorted(serials))})")
    tag = str(id_tag or "")
    ids = {r.identification for r in readings if r.identification}
    if tag and ids and any(i.upper() != tag.upper() for i in ids):
        problems.append(f"the meter signed them for {', '.join(sorted(ids))}, not {tag}")
    return problems


def _same_record(a: SignedReading, b: SignedReading) -> bool:
    """One signed reading of one meter: the same meter, register, page, time and value
    (whatever code a station labels it with: Alfen's type is not signed)."""
    return (a.meter_serial, a.pagination, _register_key(a.register), a.time, a.wh) \
        == (b.meter_serial, b.pagination, _register_key(b.register), b.time, b.wh)


def _before(a: SignedReading, b: SignedReading) -> bool:
    """Whether the meter signed ``a`` before ``b`` (readings of one register): a smaller
    value (the register only counts up) or an earlier time."""
    if a.wh < b.wh:
        return True
    ta, tb = _at(a.time or ""), _at(b.time or "")
    try:
        return ta is not None and tb is not None and ta < tb
    except TypeError:  # a naive time against an aware one
        return False


def reused(begin: SignedReading | None, end: SignedReading | None,
           others: Iterable[tuple[str, bool, SignedReading]]) -> list[str]:
    """Why a session's signed begin and end are not its own, by the signed readings of the
    station's other sessions (empty when they are): the same record as another session's
    reading (one reading billed twice), or, on the same meter's register, a begin before the
    end of a session that started before this one, or an end after the begin of one that
    started after it (the meter counted that energy once).

    ``others``: (a name for the other session, whether it started before this one, one of
    its verified signed readings)."""
    problems: list[str] = []
    for name, earlier, other in others:
        if other.kind != IMPORT:
            continue
        for side, mine in (("begin", begin), ("end", end)):
            if mine is not None and _same_record(mine, other):
                problems.append(f"the {side} reading is {name}'s too")
        for side, mine in (("begin", begin), ("end", end)):
            if mine is None or mine.meter_serial != other.meter_serial \
                    or _register_key(mine.register) != _register_key(other.register) \
                    or _same_record(mine, other):
                continue
            if side == "begin" and earlier and other.tx in END_CODES \
                    and _before(mine, other):
                problems.append(f"the begin reading ({mine.wh} Wh, {mine.time}) is before"
                                f" {name}'s end reading ({other.wh} Wh, {other.time})")
            elif side == "end" and not earlier and other.tx == "B" and _before(other, mine):
                problems.append(f"the end reading ({mine.wh} Wh, {mine.time}) is after"
                                f" {name}'s begin reading ({other.wh} Wh, {other.time})")
    return list(dict.fromkeys(problems))


def _seconds(a: datetime | None, b: datetime | None) -> Decimal | None:
    """Seconds from ``a`` to ``b``, exact (whole microseconds); None when either is missing
    or one is naive."""
    try:
        return None if a is None or b is None \
            else Decimal((b - a) // timedelta(microseconds=1)) / 1_000_000
    except TypeError:
        return None


def unsigned_beyond_signed(readings: Iterable[SignedReading], begin: SignedReading | None,
                           end: SignedReading | None, start_wh: Decimal | None,
                           stop_wh: Decimal | None, started: datetime,
                           stopped: datetime | None, max_power_w: Decimal) -> list[str]:
    """Why an unsigned start or stop is beyond what the meter's signed readings allow (empty
    when it is not): where the meter signed no end reading, a stop above a signed reading of
    the begin's register (the begin, an intermediate C reading...) by more than
    ``max_power_w`` delivers from that reading's time to the stop; where it signed no begin
    reading, a start below a signed reading of the end's register by more than the power
    delivers from the start to that reading's time. Where it signed neither, its signed
    readings of the total import register (an intermediate C reading, OBIS 1-x:1.8.0 or no
    RI) bound both sides the same way: what an offset register signs (a transaction register
    counting from 0, BAUER's 1-0:1.8.0*198) bounds no lifetime reading, and is not
    compared. The slack (POWER_SLACK_SECONDS and
    _RATIO) is csms.domain.energy's power check's; a reading without a time (or one
    naive against the session's) counts from the session's start (to its stop). The central
    system gives the station's power limit, a receipt's verifiers MAX_PLAUSIBLE_POWER_W."""
    imports = [r for r in readings if r.kind == IMPORT]
    problems: list[str] = []

    def allowed(seconds: Decimal | None) -> Decimal:
        return max_power_w * (max(seconds or Decimal(0), Decimal(0)) + POWER_SLACK_SECONDS) \
            / 3600 * POWER_SLACK_RATIO

    def seconds(a: datetime | None, b: datetime | None,
                fallback: Decimal | None) -> Decimal | None:
        gap = _seconds(a, b)
        return fallback if gap is None else gap

    session = _seconds(started, stopped)
    # neither begin nor end signed: the meter's readings of its total import register (the
    # first one's) bound both sides, as a begin's register bounds the stop
    total = None if begin is not None or end is not None else next(
        (r for r in imports if r.register is None or _is_total_import(r.register)), None)
    above, below = begin or total, end or total
    if end is None and above is not None and stop_wh is not None:
        # each signed reading of the register bounds the stop: at most the reading and what
        # the power delivers from its time to the stop (a reading after the stop: the
        # reading); the tightest bound counts (a later session's reading among them only
        # loosens its own)
        key = _register_key(above.register)
        bounds = [(r.wh + allowed(seconds(_at(r.time or ""), stopped, session)), r)
                  for r in imports if _register_key(r.register) == key] or \
            [(above.wh + allowed(seconds(_at(above.time or ""), stopped, session)), above)]
        most, last = min(bounds, key=lambda b: b[0])
        if stop_wh > most:
            problems.append(f"the unsigned stop ({stop_wh} Wh) is beyond the meter's signed"
                            f" reading ({last.wh} Wh at {last.time}) and {max_power_w} W"
                            " since")
    if begin is None and below is not None and start_wh is not None:
        key = _register_key(below.register)
        bounds = [(r.wh - allowed(seconds(started, _at(r.time or ""), session)), r)
                  for r in imports if _register_key(r.register) == key] or \
            [(below.wh - allowed(seconds(started, _at(below.time or ""), session)), below)]
        least, first = max(bounds, key=lambda b: b[0])
        if start_wh < least:
            problems.append(f"the unsigned start ({start_wh} Wh) is below the meter's signed"
                            f" reading ({first.wh} Wh at {first.time}) by more than"
                            f" {max_power_w} W delivers before it")
    return problems
