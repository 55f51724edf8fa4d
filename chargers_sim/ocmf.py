"""OCMF containers signed by a simulated meter (Open Charge Metering Format).

``OCMF|{payload}|{signature}``: the payload is JSON with the reading(s) in
``RD``; the signature object names the algorithm (``SA``) and carries the
hex-encoded DER ECDSA signature (``SD``) over the payload bytes exactly as sent.
"""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

__all__ = ["MeterSigner", "split_container"]

ALGORITHM = "ECDSA-secp256r1-SHA256"
# an ISO 14443 card UID: 4 or 7 bytes in hex; other tags were authorized centrally (OCPP)
_RFID_UID = re.compile(r"[0-9A-Fa-f]{8}|[0-9A-Fa-f]{14}")


def _ocmf_time(at: datetime) -> str:
    # OCMF: ISO 8601 with milliseconds, offset without colon, and a sync flag (S = synced)
    at = at.astimezone(UTC)
    return at.strftime("%Y-%m-%dT%H:%M:%S,") + f"{at.microsecond // 1000:03d}+0000 S"


def split_container(container: str) -> tuple[str, dict[str, str]]:
    """(payload text, signature object) of an OCMF container, cut at every '|' as the
    central system and the receipts' verifiers cut it (no section may hold one)."""
    sections = container.split("|")
    if sections[0] != "OCMF":
        raise ValueError("not an OCMF container")
    if len(sections) != 3:
        raise ValueError(f"an OCMF container is OCMF|payload|signature, not {len(sections)}"
                         " sections")
    return sections[1], json.loads(sections[2])


@dataclass
class MeterSigner:
    """A per-station meter key (secp256r1) that signs OCMF readings."""

    key: ec.EllipticCurvePrivateKey
    serial: str

    @classmethod
    def generate(cls, serial: str) -> MeterSigner:
        return cls(ec.generate_private_key(ec.SECP256R1()), serial)

    @property
    def public_key_der(self) -> bytes:
        return self.key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def signed_meter_value(self, container: str) -> dict[str, str]:
        """The 2.0.1 SignedMeterValueType of a container (also the 1.6 SignedData value,
        as JSON, in the OCA "Signed Meter Values in OCPP 1.6" convention)."""
        return {
            "signedMeterData": base64.b64encode(container.encode()).decode(),
            "signingMethod": ALGORITHM, "encodingMethod": "OCMF",
            "publicKey": base64.b64encode(self.public_key_der).decode(),
        }

    @property
    def public_key_pem(self) -> str:
        return self.key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ).decode()

    def container(
        self, *, station_id: str, id_tag: str, register_wh: int, at: datetime, kind: str,
        pagination: int, serial: str | None = None,
    ) -> str:
        """One signed reading; ``kind`` is the OCMF TX code: B (begin) or E (end);
        ``serial``: the meter's (MS), this signer's unless given."""
        payload = {
            "FV": "1.0",
            "GI": "voltledger chargers_sim",
            "GS": station_id,
            "GV": "1.0",
            "PG": f"T{pagination}",
            "MV": "voltledger",
            "MM": "sim-meter",
            "MS": serial or self.serial,
            "IS": True,
            "IL": "NONE",
            "IF": [],
            "IT": "ISO14443" if _RFID_UID.fullmatch(id_tag) else "CENTRAL",
            "ID": id_tag,
            "RD": [{
                "TM": _ocmf_time(at),
                "TX": kind,
                "RV": round(register_wh / 1000, 3),
                "RI": "1-b:1.8.0",
                "RU": "kWh",
                "RT": "AC",
                "EF": "",
                "ST": "G",
            }],
        }
        text = json.dumps(payload, separators=(",", ":"))
        signature = self.key.sign(text.encode(), ec.ECDSA(hashes.SHA256()))
        return f"OCMF|{text}|" + json.dumps({"SA": ALGORITHM, "SD": signature.hex().upper()},
                                            separators=(",", ":"))
