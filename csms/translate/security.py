"""What the version modules share for certificates, the device model and monitoring:
the use cases are reached the same way; the payloads around them differ per version
(csms/translate/v16.py, v201.py)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from csms.protocol.pnc16 import PncError, unwrap, wrap
from csms.service.certificates import SignOutcome, hash_data
from csms.service.charging import ChargingService
from csms.service.device_model import DeviceModel

__all__ = ["contract_certificate_status", "device_model", "sign"]


def _certificate_signed_answer(answer: dict[str, Any]) -> dict[str, Any]:
    """CertificateSigned's answer inside a DataTransfer answer (Plug & Charge over 1.6)."""
    try:
        return unwrap(answer, "response", "CertificateSigned")[1]
    except PncError:
        status = str(answer.get("status", "?"))
        return {"status": status if status != "Accepted" else "Unreadable"}


async def sign(svc: ChargingService, station_id: str, csr: str, kind: str,
               signed_payload: dict[str, Any], *, via_data_transfer: bool = False
               ) -> SignOutcome:
    """Check and sign a station's CSR; when accepted, CertificateSigned (``signed_payload``
    with the chain) follows the answer, in a DataTransfer when ``via_data_transfer`` (the
    OCA Plug & Charge application note for 1.6)."""
    certs = svc.certificates
    if certs is None:
        await svc.station_event(station_id, "security", {
            "type": "CsrRejected", "reason": "no CA on this central system"})
        return SignOutcome(False, "no CA on this central system")
    outcome = await certs.sign(station_id, csr, kind)
    if outcome.accepted:
        payload = {"certificateChain": outcome.chain, **signed_payload}
        if via_data_transfer:
            certs.deliver(station_id, wrap("CertificateSigned", payload), outcome.serial,
                          read=_certificate_signed_answer)
        else:
            certs.deliver(station_id, payload, outcome.serial)
    return outcome


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    if cert.issuer != issuer.subject:
        return False
    key = issuer.public_key()
    try:
        if isinstance(key, ec.EllipticCurvePublicKey):
            assert cert.signature_hash_algorithm is not None
            key.verify(cert.signature, cert.tbs_certificate_bytes,
                       ec.ECDSA(cert.signature_hash_algorithm))
        elif isinstance(key, rsa.RSAPublicKey):
            assert cert.signature_hash_algorithm is not None
            key.verify(cert.signature, cert.tbs_certificate_bytes, padding.PKCS1v15(),
                       cert.signature_hash_algorithm)
        else:
            return False
    except Exception:  # InvalidSignature, or a key/hash pair that does not fit
        return False
    return True


_STATUS_WORD = {"good": "Accepted", "expired": "CertificateExpired",
                "not_contract": "CertChainError"}


async def contract_certificate_status(svc: ChargingService, p: dict[str, Any]) -> str | None:
    """2.0.1 C07 AuthorizeResponse.certificateStatus for an Authorize carrying a contract
    certificate (``certificate``, PEM) or its OCSP data (``iso15118CertificateHashData``);
    None when it carries neither. Only this central system's CA is known (the local ISO
    15118 provider): a certificate it did not issue, or one that is no contract for this
    eMAID (a station's own certificate, another CN), is CertChainError; one it issued as
    the eMAID's contract is Accepted while valid and CertificateExpired after."""
    pem, hashes = p.get("certificate"), p.get("iso15118CertificateHashData")
    if pem is None and not hashes:
        return None
    certs = svc.certificates
    if certs is None:
        return "NoCertificateAvailable"
    emaid = str((p.get("idToken") or {}).get("idToken", ""))
    if pem is not None:
        try:
            leaf = x509.load_pem_x509_certificates(str(pem).encode("ascii"))[0]
        except (ValueError, UnicodeError, IndexError):
            return "CertChainError"
        if not _issued_by(leaf, certs.ca.cert):
            return "CertChainError"
        if leaf.not_valid_after_utc <= dt.datetime.now(dt.UTC):
            return "CertificateExpired"
        hashes = [hash_data(leaf, certs.ca.cert)]
    found = [await certs.contract_status(str(h.get("hashAlgorithm", "SHA256")),
                                         str(h.get("issuerNameHash", "")),
                                         str(h.get("issuerKeyHash", "")),
                                         str(h.get("serialNumber", "")), emaid)
             for h in (hashes if isinstance(hashes, list) else []) if isinstance(h, dict)]
    words = [_STATUS_WORD[f] for f in found if f is not None]
    if "CertChainError" in words:
        return "CertChainError"
    if "CertificateExpired" in words:
        return "CertificateExpired"
    return "Accepted" if words else "CertChainError"


def device_model(svc: ChargingService) -> DeviceModel:
    """The device model use cases over the service's storage, clock and quota."""
    return DeviceModel(svc.repo, svc.quota, svc.clock, metered=svc.metered_event,
                       admit=svc.admit_payload)
