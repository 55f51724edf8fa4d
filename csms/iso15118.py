"""The local ISO 15118 Plug & Charge provider (2.0.1 M01-M06), for tests and small sites.

What it does:

- GetCertificateStatus: a real OCSP response (RFC 6960, DER, base64), signed by the
  central system's CA, for certificates that CA issued: ``good`` while one is valid,
  ``revoked`` once it expired (there is no revocation list: a certificate is never
  revoked before its end), ``unknown`` for a serial this CA never issued. A request about
  another issuer is answered Failed: this provider is no OCSP responder for other CAs.
- Get15118EVCertificate: the EXI response an operator put in ``--ev-cert-dir`` as
  ``<sha256 of the exiRequest, hex>.exi`` (base64 text), or Failed with a reason. It
  does not talk to a contract certificate pool or a mobility operator, and it does not
  decode or check the EXI request.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp

from csms.service.certificates import CertificateAuthority, hash_data
from csms.service.ports import Repository, Tx

__all__ = ["LocalIso15118Provider"]

_HASHES: dict[str, hashes.HashAlgorithm] = {
    "SHA256": hashes.SHA256(), "SHA384": hashes.SHA384(), "SHA512": hashes.SHA512()}


class LocalIso15118Provider:
    def __init__(self, repo: Repository, ca: CertificateAuthority,
                 ev_cert_dir: str = "") -> None:
        self.repo = repo
        self.ca = ca
        self.ev_cert_dir = Path(ev_cert_dir).expanduser() if ev_cert_dir else None

    async def ev_certificate(self, station_id: str, schema_version: str, action: str,
                             exi_request: str) -> tuple[str, str, str]:
        if self.ev_cert_dir is None:
            return "Failed", "", "no EV certificate directory (--ev-cert-dir) configured"
        name = hashlib.sha256(exi_request.encode("utf-8")).hexdigest() + ".exi"
        path = self.ev_cert_dir / name  # a hex name: no way out of the folder
        try:
            text = path.read_text("ascii").strip()
            base64.b64decode(text, validate=True)
        except (OSError, ValueError):
            return "Failed", "", f"no EV certificate answer for this request ({name})"
        if len(text) > 7500:
            return "Failed", "", "the stored EXI answer is over 7500 characters"
        return "Accepted", text, ""

    async def certificate_status(self, station_id: str,
                                 request: dict[str, Any]) -> tuple[str, str, str]:
        algorithm = str(request.get("hashAlgorithm", "SHA256"))
        mine = hash_data(self.ca.cert, None, algorithm)
        if (str(request.get("issuerNameHash", "")).lower(),
                str(request.get("issuerKeyHash", "")).lower()) != (
                mine["issuerNameHash"], mine["issuerKeyHash"]):
            return "Failed", "", "not issued by this central system's CA"
        serial = str(request.get("serialNumber", "")).lower().lstrip("0") or "0"

        async def work(tx: Tx) -> dict[str, Any] | None:
            return await tx.get_issued_certificate(serial)

        row = await self.repo.read(work)
        now = dt.datetime.now(dt.UTC)
        try:
            serial_int = int(serial, 16)
        except ValueError:
            return "Failed", "", "the serial number is not hexadecimal"
        builder = ocsp.OCSPResponseBuilder()
        if row is None:
            builder = builder.add_response_by_hash(
                bytes.fromhex(mine["issuerNameHash"]), bytes.fromhex(mine["issuerKeyHash"]),
                serial_int, _HASHES[algorithm], ocsp.OCSPCertStatus.UNKNOWN, now, None,
                None, None)
        else:
            cert = x509.load_pem_x509_certificate(row["pem"].encode())
            expired = row["not_after"] <= now
            builder = builder.add_response(
                cert, self.ca.cert, _HASHES[algorithm],
                ocsp.OCSPCertStatus.REVOKED if expired else ocsp.OCSPCertStatus.GOOD,
                now, None, row["not_after"] if expired else None,
                x509.ReasonFlags.superseded if expired else None)
        response = builder.responder_id(ocsp.OCSPResponderEncoding.HASH, self.ca.cert).sign(
            self.ca.key, hashes.SHA256())
        der = response.public_bytes(serialization.Encoding.DER)
        return "Accepted", base64.b64encode(der).decode(), ""
