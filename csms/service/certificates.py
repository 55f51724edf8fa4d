"""Station certificates (security profile 3): a certificate signing request checked, signed
by the central system's CA, sent back, stored, and renewed before it expires.

Theory of operation. A station sends SignCertificate with a PEM CSR (2.0.1 A02/A03, 1.6
security whitepaper "Installation of a client certificate"). :func:`check_csr` refuses
what no operator wants to sign: a broken signature, a CN other than the id of the
connection that sent it (a station asks only for itself, 2.0.1 A00.FR.413), another
organisation than the configured one, a weak key (RSA below 2048 bits, EC other than
P-256/P-384), a CA basic constraint, or an oversized request. An accepted CSR is answered
Accepted and the chain (station certificate, then the CA) goes out in CertificateSigned
once the answer is sent; a refused one is answered Rejected and recorded as a security
event. Issued certificates are stored (serial, station, validity); the renewal task asks a
station for a new CSR (TriggerMessage / ExtendedTriggerMessage) ``renew_before`` ahead of
the expiry of its newest certificate.

Pure apart from :class:`CertificateUseCases`, which reaches storage through the port.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, cast

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from csms.service.ports import Repository, Tx

__all__ = [
    "MAX_CSR_BYTES",
    "CertificateAuthority",
    "CertificateUseCases",
    "CsrLimiter",
    "CsrRefused",
    "Iso15118Provider",
    "Outbound",
    "SignOutcome",
    "check_csr",
    "hash_data",
    "new_ca",
    "same_emaid",
    "serial_text",
]

log = logging.getLogger("csms.certificates")

# The schema allows 5500 characters (SignCertificate.csr); a PEM CSR of a 4096-bit RSA key
# is ~1.7 KB. Anything beyond is refused before it is parsed.
MAX_CSR_BYTES = 5500
MIN_RSA_BITS = 2048
EC_CURVES = {"secp256r1": 256, "secp384r1": 384}


class CsrRefused(ValueError):
    """A CSR the central system does not sign; the message says why (one line)."""


def check_csr(pem: str, station_id: str, organisation: str = "") -> x509.CertificateSigningRequest:
    """The CSR of ``pem`` if it may be signed for ``station_id``, else :class:`CsrRefused`."""
    if not isinstance(pem, str) or len(pem) > MAX_CSR_BYTES:
        raise CsrRefused(f"CSR larger than {MAX_CSR_BYTES} characters")
    try:
        csr = x509.load_pem_x509_csr(pem.encode("ascii", "strict"))
    except (ValueError, UnicodeError):
        raise CsrRefused("not a PEM certificate signing request") from None
    try:
        valid = csr.is_signature_valid
    except (ValueError, InvalidSignature, TypeError):
        valid = False
    if not valid:
        raise CsrRefused("CSR signature does not verify")
    names = [a.value for a in csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    # 2.0.1 A00.FR.413 / 1.6 security whitepaper: the CN is the station's identity, exactly.
    if names != [station_id]:
        raise CsrRefused(f"CSR common name {names!r} is not the station id {station_id!r}")
    if organisation:
        orgs = [a.value for a in csr.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)]
        if orgs != [organisation]:
            raise CsrRefused(f"CSR organisation {orgs!r} is not {organisation!r}")
    try:
        key = csr.public_key()
    except (ValueError, TypeError):
        raise CsrRefused("CSR public key cannot be read") from None
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < MIN_RSA_BITS:
            raise CsrRefused(f"RSA key of {key.key_size} bits (at least {MIN_RSA_BITS})")
    elif isinstance(key, ec.EllipticCurvePublicKey):
        if key.curve.name not in EC_CURVES:
            raise CsrRefused(f"EC curve {key.curve.name} (P-256 or P-384 only)")
    else:
        raise CsrRefused(f"key type {type(key).__name__} (RSA or EC only)")
    try:
        constraints = csr.extensions.get_extension_for_class(x509.BasicConstraints)
    except x509.ExtensionNotFound:
        pass
    except ValueError:
        raise CsrRefused("CSR extensions cannot be read") from None
    else:
        if constraints.value.ca:
            raise CsrRefused("CSR asks for a CA certificate (basic constraints CA:true)")
    return csr


def serial_text(serial: int) -> str:
    """A serial number as OCPP's CertificateHashDataType writes it: hex, lower case, no
    leading zeroes (2.0.1 part 2 §2.6)."""
    return format(serial, "x")


def hash_data(cert: x509.Certificate, issuer: x509.Certificate | None = None,
              algorithm: str = "SHA256") -> dict[str, str]:
    """CertificateHashDataType of ``cert``: hashes of the issuer's DER name and public key
    (``issuer`` when given, else ``cert`` itself: a root) and the serial."""
    digest: hashes.HashAlgorithm = {"SHA256": hashes.SHA256(), "SHA384": hashes.SHA384(),
                                    "SHA512": hashes.SHA512()}[algorithm]
    issuer = issuer or cert
    name = hashes.Hash(digest)
    name.update(cert.issuer.public_bytes())
    key = hashes.Hash(digest)
    key.update(issuer.public_key().public_bytes(serialization.Encoding.DER,
                                                serialization.PublicFormat.PKCS1)
               if isinstance(issuer.public_key(), rsa.RSAPublicKey) else
               issuer.public_key().public_bytes(serialization.Encoding.X962,
                                                serialization.PublicFormat.UncompressedPoint))
    return {"hashAlgorithm": algorithm, "issuerNameHash": name.finalize().hex(),
            "issuerKeyHash": key.finalize().hex(), "serialNumber": serial_text(cert.serial_number)}


@dataclass
class CertificateAuthority:
    """A CA key and certificate that sign station certificates."""

    key: Any  # an ec / rsa private key
    cert: x509.Certificate
    builtin: bool = False

    @property
    def cert_pem(self) -> str:
        return self.cert.public_bytes(serialization.Encoding.PEM).decode()

    def sign(self, csr: x509.CertificateSigningRequest, days: int,
             now: dt.datetime, usage: str = "client") -> x509.Certificate:
        """A certificate for the CSR's subject and key, valid ``days`` from ``now``: for
        TLS client authentication (a station towards the central system), or ``usage``
        "server" (an ISO 15118 SECC certificate: the station is the TLS server towards
        the EV, ISO 15118-2 §7.9.2)."""
        not_after = min(now + dt.timedelta(days=days), self.cert.not_valid_after_utc)
        builder = (
            x509.CertificateBuilder()
            .subject_name(csr.subject)
            .issuer_name(self.cert.subject)
            .public_key(csr.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(
                digital_signature=True, key_encipherment=False, content_commitment=False,
                data_encipherment=False, key_agreement=True, key_cert_sign=False,
                crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH if usage == "server"
                 else ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                cast(Any, self.cert.public_key())), critical=False)
        )
        return builder.sign(self.key, hashes.SHA256())

    def chain_pem(self, cert: x509.Certificate) -> str:
        """The station certificate, then the CA (2.0.1 CertificateSigned.certificateChain)."""
        return cert.public_bytes(serialization.Encoding.PEM).decode() + self.cert_pem


def new_ca(common_name: str, organisation: str = "", years: int = 10,
           now: dt.datetime | None = None) -> CertificateAuthority:
    """A new self-signed CA (EC P-256) for the embedded default."""
    now = now or dt.datetime.now(dt.UTC)
    key = ec.generate_private_key(ec.SECP256R1())
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if organisation:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organisation))
    name = x509.Name(attrs)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=365 * years))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
            key_encipherment=False, data_encipherment=False, key_agreement=False,
            encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                       critical=False)
        .sign(key, hashes.SHA256())
    )
    return CertificateAuthority(key, cert, builtin=True)


class CsrLimiter:
    """At most ``limit`` CSRs per station in a sliding hour (a station's flood of CSRs
    costs a signature check each). Pure; time is injected."""

    def __init__(self, limit: int, window: float = 3600.0,
                 clock: Callable[[], float] = time.monotonic, max_keys: int = 100_000) -> None:
        self.limit = limit
        self.window = window
        self.clock = clock
        self.max_keys = max_keys
        self._seen: dict[str, list[float]] = {}

    def admit(self, station_id: str) -> bool:
        now = self.clock()
        times = [t for t in self._seen.get(station_id, []) if now - t < self.window]
        if len(times) >= self.limit:
            self._seen[station_id] = times
            return False
        times.append(now)
        if station_id not in self._seen and len(self._seen) >= self.max_keys:
            self._seen.pop(next(iter(self._seen)))
        self._seen[station_id] = times
        return True


# A CALL's payload, or how to build it once the answer is out (None: nothing to send)
Payload = dict[str, Any] | Callable[[], Awaitable[dict[str, Any] | None]]


class Outbound(Protocol):
    """How a use case sends a CALL to a station once the answer to the station's own CALL
    is out (the server implements it: 2.0.1 A02.FR.02, CertificateSigned follows the
    SignCertificate answer). A payload given as a function is built then, so what it
    reads waits for nothing of the answer (the 1.6 FinalCost after a StopTransaction).
    ``once``: nothing is queued while a CALL of that action queued this way is still
    pending or in flight on the station's connection (a read at every boot). What a
    connection may have queued is bounded: beyond the bound, a CALL is not sent."""

    def after_reply(self, station_id: str, action: str, payload: Payload,
                    then: Callable[[dict[str, Any] | None], Awaitable[None]],
                    *, once: bool = False) -> None: ...


class Iso15118Provider(Protocol):
    """Where ISO 15118 Plug & Charge questions go (2.0.1 M02-M06): a contract certificate
    for an EV (an EXI stream in, one out) and the OCSP status of a certificate. Each
    answers (status, payload, reason): status Accepted or Failed, payload the base64 EXI
    response / DER OCSP response, reason a one-line explanation when Failed."""

    async def ev_certificate(self, station_id: str, schema_version: str, action: str,
                             exi_request: str) -> tuple[str, str, str]: ...

    async def certificate_status(self, station_id: str,
                                 request: dict[str, Any]) -> tuple[str, str, str]: ...


@dataclass(frozen=True, slots=True)
class SignOutcome:
    accepted: bool
    reason: str = ""
    chain: str = ""
    serial: str = ""


@dataclass
class CertificateUseCases:
    """Signing stations' CSRs, the answers to CertificateSigned, renewal, and the local
    ISO 15118 provider's certificate status (see :mod:`csms.service.iso15118`)."""

    repo: Repository
    ca: CertificateAuthority
    organisation: str = ""
    days: int = 365
    renew_before: dt.timedelta = dt.timedelta(days=30)
    limiter: CsrLimiter = field(default_factory=lambda: CsrLimiter(10))
    clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC)
    outbound: Outbound | None = None
    iso15118: Iso15118Provider | None = None
    # ISO 15118 V2GCertificate (SECC) CSRs signed by this CA too (tests and small sites;
    # a public Plug & Charge ecosystem needs a CPO sub-CA under a V2G root instead)
    sign_v2g: bool = False

    def deliver(self, station_id: str, payload: dict[str, Any], serial: str,
                read: Callable[[dict[str, Any]], dict[str, Any] | None] | None = None,
                ) -> None:
        """Send CertificateSigned after the answer; its answer is kept (:meth:`delivered`).
        With ``read``, ``payload`` is a DataTransfer carrying it (a 1.6 station, the
        Plug & Charge application note) and ``read`` finds CertificateSigned's answer in
        the DataTransfer's answer."""
        if self.outbound is None:
            log.warning("! %s: certificate %s issued but nothing sends it", station_id, serial)
            return

        async def then(answer: dict[str, Any] | None) -> None:
            if answer is not None and read is not None:
                answer = read(answer)
            status = "NoAnswer" if answer is None else str(answer.get("status", "?"))
            await self.delivered(station_id, serial, status)

        if read is None:
            self.outbound.after_reply(station_id, "CertificateSigned", payload, then)
        else:
            self.outbound.after_reply(station_id, "DataTransfer", payload, then)

    async def sign(self, station_id: str, csr_pem: str, certificate_type: str) -> SignOutcome:
        """Check and sign a station's CSR; a refusal is recorded as a security event."""
        now = self.clock()
        if certificate_type == "V2GCertificate" and not self.sign_v2g:
            return await self._refuse(station_id, f"{certificate_type} is not signed here"
                                      " (no ISO 15118 V2G CA is configured)", now)
        if certificate_type not in ("ChargingStationCertificate", "V2GCertificate"):
            return await self._refuse(station_id, f"{certificate_type[:40]} is not a"
                                      " certificate type this central system signs", now)
        if not self.limiter.admit(station_id):
            return await self._refuse(station_id, "too many CSRs this hour", now)
        try:
            csr = check_csr(csr_pem, station_id, self.organisation)
        except CsrRefused as exc:
            return await self._refuse(station_id, str(exc), now)
        cert = self.ca.sign(csr, self.days, now,
                            "server" if certificate_type == "V2GCertificate" else "client")
        serial = serial_text(cert.serial_number)
        pem = cert.public_bytes(serialization.Encoding.PEM).decode()

        async def work(tx: Tx) -> None:
            await tx.add_issued_certificate(
                serial, station_id, cert.not_valid_before_utc, cert.not_valid_after_utc, pem,
                now, None if certificate_type == "ChargingStationCertificate"
                else certificate_type)

        await self.repo.unit(work)
        log.info("= %s: certificate %s issued, valid until %s", station_id, serial,
                 cert.not_valid_after_utc.isoformat())
        return SignOutcome(True, chain=self.ca.chain_pem(cert), serial=serial)

    async def _refuse(self, station_id: str, reason: str, now: dt.datetime) -> SignOutcome:
        log.warning("! %s: CSR refused: %s", station_id, reason)

        async def work(tx: Tx) -> None:
            await tx.add_station_event(station_id, "security",
                                       {"type": "CsrRejected", "reason": reason[:300]}, now)

        await self.repo.unit(work)
        return SignOutcome(False, reason)

    async def delivered(self, station_id: str, serial: str, status: str) -> None:
        """The station's answer to CertificateSigned (2.0.1 A02.FR.06: Rejected when the
        chain does not verify on its side): kept with the certificate, audited."""
        now = self.clock()

        async def work(tx: Tx) -> None:
            await tx.set_certificate_status(serial, status[:32])
            if status != "Accepted":
                await tx.add_station_event(station_id, "security", {
                    "type": "CertificateSignedRejected", "serial": serial, "status": status},
                    now)

        await self.repo.unit(work)

    async def due_for_renewal(self) -> list[dict[str, Any]]:
        """Stations whose newest accepted certificate expires within ``renew_before`` and
        that were not asked for a new CSR since it was issued."""
        now = self.clock()

        async def work(tx: Tx) -> list[dict[str, Any]]:
            return await tx.certificates_expiring(now + self.renew_before)

        return await self.repo.read(work)

    async def renewal_requested(self, serial: str) -> None:
        now = self.clock()

        async def work(tx: Tx) -> None:
            await tx.mark_renewal_requested(serial, now)

        await self.repo.unit(work)

    async def status_of(self, hash_algorithm: str, issuer_name_hash: str,
                        issuer_key_hash: str, serial: str) -> str | None:
        """"good", "revoked" (superseded is not revoked: only "good" or unknown here), or
        None when this CA did not issue it. The local provider knows only its own CA."""
        mine = hash_data(self.ca.cert, None, hash_algorithm)
        if (issuer_name_hash.lower(), issuer_key_hash.lower()) != (
                mine["issuerNameHash"], mine["issuerKeyHash"]):
            return None

        async def work(tx: Tx) -> dict[str, Any] | None:
            return await tx.get_issued_certificate(serial.lower().lstrip("0") or "0")

        row = await self.repo.read(work)
        if row is None:
            return None
        return "good" if row["not_after"] > self.clock() else "expired"

    async def contract_status(self, hash_algorithm: str, issuer_name_hash: str,
                              issuer_key_hash: str, serial: str, emaid: str) -> str | None:
        """A contract certificate's status for an Authorize of ``emaid`` (2.0.1 C07):
        :meth:`status_of`, or "not_contract" for a certificate this CA issued to a station
        (its client or SECC certificate) or whose CN is not the eMAID (ISO 15118-2: the
        contract certificate's subject CN is the eMAID): a station cannot pass its own
        certificate off as a driver's contract."""
        status = await self.status_of(hash_algorithm, issuer_name_hash, issuer_key_hash,
                                      serial)
        if status is None:
            return None

        async def work(tx: Tx) -> dict[str, Any] | None:
            return await tx.get_issued_certificate(serial.lower().lstrip("0") or "0")

        row = await self.repo.read(work)
        if row is None or row.get("certificate_type") in (None, "V2GCertificate"):
            return "not_contract"
        cert = x509.load_pem_x509_certificate(str(row["pem"]).encode())
        names = [str(a.value) for a in
                 cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
        if [same_emaid(n) for n in names] != [same_emaid(emaid)]:
            return "not_contract"
        return status


def same_emaid(text: str) -> str:
    """An eMAID as compared: ISO 15118 writes it with or without "-" separators, in any
    case (DE-MA1-234567890-1 and dema12345678901 are one contract)."""
    return text.replace("-", "").replace("*", "").upper()
