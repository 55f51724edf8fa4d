"""Signed meter data in OCMF (Open Charge Metering Format): unwrap, verify, compare (pure).

An Eichrecht meter signs its readings; the station passes the signed container
``OCMF|{payload}|{signature}`` through OCPP in one of these wrappings:

- 2.0.1 ``signedMeterValue``: ``signedMeterData`` (the container, base64),
  ``signingMethod``, ``encodingMethod`` ("OCMF"), ``publicKey`` (base64 DER, optional);
- 1.6 ``SampledValue`` with ``format: "SignedData"`` (the OCA "Signed Meter Values in
  OCPP 1.6" convention): ``value`` holds the 2.0.1 object as JSON (``signedMeterData`` or
  ``signedMeterValue``), or the bare container, or the container in base64.

The container is parsed and validated by ``pyocmf``; the ECDSA signature (the secp and
brainpool curves OCMF allows, SHA-256 or SHA-512) is checked with ``cryptography`` over the
payload bytes exactly as sent. (pyocmf 0.6's own check refuses the spec's spelling
``ECDSA-brainpool256r1-SHA256`` for a brainpoolP256r1 key, so the check is done here.)
"""

from __future__ import annotations

import base64
import binascii
import json
import warnings
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

__all__ = [
    "HOLD_STATUSES",
    "INVALID",
    "MALFORMED",
    "NO_KEY",
    "VERIFIED",
    "CheckedContainer",
    "OcmfError",
    "SignedReading",
    "check_container",
    "compare_with_billed",
    "normalize_key",
    "unwrap",
]

# per signed reading: the signature verified with the station's meter key ...
VERIFIED = "verified"
INVALID = "invalid"  # ... did not verify (altered data, wrong key)
NO_KEY = "no_key"  # ... could not be checked: no key registered, none in the message
MALFORMED = "malformed"  # ... is not a readable OCMF container
HOLD_STATUSES = frozenset({INVALID, MALFORMED, NO_KEY})

_ENERGY_UNITS = {"kWh": Decimal(1000), "Wh": Decimal(1)}


class OcmfError(ValueError):
    """Signed meter data or a meter key that cannot be read."""


@dataclass(frozen=True, slots=True)
class Unwrapped:
    container: str  # "OCMF|{payload}|{signature}"
    public_key: str | None  # hex DER, when the message carried one
    signing_method: str | None


@dataclass(frozen=True, slots=True)
class SignedReading:
    """One energy reading (an OCMF ``RD`` entry) of a signed container."""

    tx: str | None  # OCMF TX: B(egin), C(harging), X, E(nd), L, R, S, T
    time: str | None
    wh: Decimal
    resolution_wh: Decimal  # one unit of the last digit the meter signed
    meter_serial: str | None
    pagination: str | None


@dataclass(slots=True)
class CheckedContainer:
    status: str  # verified | invalid | no_key | malformed
    detail: str
    container: str | None = None
    key_used: str | None = None  # hex DER
    message_key: str | None = None  # hex DER carried by the message, if any
    readings: list[SignedReading] = field(default_factory=list)


def normalize_key(text: str) -> str:
    """A meter public key as lowercase hex DER (SubjectPublicKeyInfo).

    Accepts hex DER (how OCMF and the transparency software write it), base64 DER
    (2.0.1 ``publicKey``) or PEM; raises :class:`OcmfError` when it is not an EC key.
    """
    raw = text.strip()
    der: bytes
    if raw.startswith("-----BEGIN"):
        try:
            key = serialization.load_pem_public_key(raw.encode())
        except ValueError as exc:
            raise OcmfError(f"not a PEM public key: {exc}") from None
        der = key.public_bytes(serialization.Encoding.DER,
                               serialization.PublicFormat.SubjectPublicKeyInfo)
    else:
        compact = "".join(raw.split())
        try:
            der = bytes.fromhex(compact)
        except ValueError:
            try:
                der = base64.b64decode(compact, validate=True)
            except (binascii.Error, ValueError):
                raise OcmfError("a meter key is hex or base64 DER, or PEM") from None
        try:
            key = serialization.load_der_public_key(der)
        except (ValueError, TypeError) as exc:
            raise OcmfError(f"not a DER public key: {exc}") from None
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise OcmfError("OCMF meter keys are elliptic-curve keys")
    return der.hex()


def _container_text(data: str) -> str:
    text = data.strip()
    if text.startswith("OCMF|"):
        return text
    try:
        decoded = base64.b64decode(text, validate=True).decode("utf-8")
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise OcmfError("signed meter data is neither an OCMF container nor base64 of one")\
            from None
    if not decoded.startswith("OCMF|"):
        raise OcmfError("signed meter data is not an OCMF container")
    return decoded


def unwrap(signed: dict[str, Any]) -> Unwrapped:
    """The container and the key from a stored sample's ``signed`` object (either version)."""
    obj: dict[str, Any]
    if "signedData" in signed:  # 1.6: the SampledValue's value, kept verbatim
        value = str(signed["signedData"]).strip()
        if value.startswith("{"):
            try:
                obj = json.loads(value)
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
    return Unwrapped(
        _container_text(data),
        normalize_key(key) if isinstance(key, str) and key.strip() else None,
        obj.get("signingMethod") if isinstance(obj.get("signingMethod"), str) else None,
    )


def _resolution(value: Decimal, factor: Decimal) -> Decimal:
    exponent = value.as_tuple().exponent
    step = Decimal(1).scaleb(exponent) if isinstance(exponent, int) and exponent < 0 \
        else Decimal(1)
    return step * factor


def _readings(parsed: Any) -> list[SignedReading]:
    payload = parsed.payload
    out = []
    for rd in payload.RD or []:
        unit = getattr(rd.RU, "value", rd.RU)
        factor = _ENERGY_UNITS.get(str(unit))
        if factor is None or rd.RV is None:
            continue  # not an energy register (e.g. cable loss resistance)
        value = Decimal(str(rd.RV))
        tx = getattr(rd.TX, "value", rd.TX)
        time = rd.TM.timestamp.isoformat() if rd.TM is not None else None
        out.append(SignedReading(
            tx=None if tx is None else str(tx), time=time, wh=value * factor,
            resolution_wh=_resolution(value, factor),
            meter_serial=payload.MS, pagination=payload.PG,
        ))
    return out


def check_container(signed: dict[str, Any], pinned_key: str | None) -> CheckedContainer:
    """Verify one stored signed sample against the station's pinned meter key.

    Without a pinned key, the key the message carries is used (the caller pins it).
    """
    import pyocmf
    from pydantic import ValidationError

    try:
        unwrapped = unwrap(signed)
    except OcmfError as exc:
        return CheckedContainer(MALFORMED, str(exc))
    key = pinned_key or unwrapped.public_key
    result = CheckedContainer(MALFORMED, "", unwrapped.container, key, unwrapped.public_key)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # spec notes (e.g. id formats) are not failures
            parsed = pyocmf.OCMF.from_string(unwrapped.container)
        result.readings = _readings(parsed)
    except (pyocmf.PyOCMFError, ValidationError, ValueError, InvalidOperation) as exc:
        result.detail = f"unreadable OCMF: {str(exc).splitlines()[0]}"
        return result
    if key is None:
        result.status, result.detail = NO_KEY, "no meter key registered and none in the message"
        return result
    try:
        ok = _verify(unwrapped.container, parsed.signature, key)
    except OcmfError as exc:
        result.status, result.detail = INVALID, str(exc)
        return result
    if ok:
        result.status, result.detail = VERIFIED, "signature verified"
    else:
        result.status, result.detail = INVALID, "signature does not match the signed data"
    return result


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


def _verify(container: str, signature: Any, key_hex: str) -> bool:
    """ECDSA over the payload exactly as sent, with the curve and hash the SA names."""
    payload = container[len("OCMF|"):].rpartition("|")[0]
    algorithm = str(getattr(signature.SA, "value", signature.SA) or DEFAULT_ALGORITHM)
    parts = algorithm.split("-")
    if len(parts) != 3 or parts[0] != "ECDSA" or parts[1].lower() not in _CURVES \
            or parts[2].upper() not in _HASHES:
        raise OcmfError(f"signature algorithm {algorithm!r} is not supported")
    curve, digest = _CURVES[parts[1].lower()], _HASHES[parts[2].upper()]
    public = serialization.load_der_public_key(bytes.fromhex(key_hex))
    if not isinstance(public, ec.EllipticCurvePublicKey) or \
            not isinstance(public.curve, curve):
        raise OcmfError(f"the meter key is not on the curve {algorithm!r} names")
    encoding = str(getattr(signature.SE, "value", signature.SE) or "hex").lower()
    try:
        sd = str(signature.SD)
        raw = base64.b64decode(sd, validate=True) if encoding == "base64" else bytes.fromhex(sd)
    except (binascii.Error, ValueError):
        raise OcmfError(f"signature data is not {encoding}") from None
    try:
        public.verify(raw, payload.encode("utf-8"), ec.ECDSA(digest()))
    except InvalidSignature:
        return False
    return True


def _billed_resolution(value: Decimal) -> Decimal:
    return _resolution(value, Decimal(1))


def compare_with_billed(
    readings: list[SignedReading], meter_start_wh: Decimal | None,
    meter_stop_wh: Decimal | None,
) -> tuple[list[str], list[str]]:
    """(mismatches, missing): the signed begin/end readings against the billed readings.

    Two readings match when they differ by less than the coarser of the two
    resolutions (a meter signing 0.2596 kWh next to a station reporting 260 Wh).
    """
    mismatches: list[str] = []
    missing: list[str] = []
    begins = [r for r in readings if r.tx == "B"]
    ends = [r for r in readings if r.tx == "E"]
    for name, signed_list, billed in (("start", begins[:1], meter_start_wh),
                                      ("stop", ends[-1:], meter_stop_wh)):
        if not signed_list:
            missing.append(name)
            continue
        reading = signed_list[0]
        if billed is None:
            mismatches.append(f"{name}: signed {reading.wh} Wh, nothing billed")
            continue
        tolerance = max(reading.resolution_wh, _billed_resolution(billed))
        if abs(billed - reading.wh) >= tolerance:
            mismatches.append(f"{name}: billed {billed} Wh, meter signed {reading.wh} Wh")
    return mismatches, missing
