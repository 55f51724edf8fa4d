"""A simulated station's certificates (security profile 3): its key, the CSR it sends when
asked (SignCertificate), the chain it installs (CertificateSigned) and then connects with,
and the root certificates the central system installs, lists and deletes.

The station checks a chain before it takes it, as firmware does (2.0.1 A02.FR.06-10):
the leaf's key must be the key of its pending CSR and its CN the station's id; otherwise
it answers Rejected and keeps its old certificate.
"""

from __future__ import annotations

import datetime as dt
import ssl
import tempfile
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

__all__ = ["StationPki", "contract_chain", "hash_data", "root_hash_data"]


def root_hash_data(cert: x509.Certificate, algorithm: str = "SHA256") -> dict[str, str]:
    """CertificateHashDataType of a root certificate (its own issuer)."""
    return hash_data(cert, cert, algorithm)


def hash_data(cert: x509.Certificate, issuer: x509.Certificate,
              algorithm: str = "SHA256") -> dict[str, str]:
    """CertificateHashDataType / OCSPRequestDataType of ``cert`` without the responder:
    hashes of its issuer's DER name and of the issuer's public key, and its serial
    (RFC 6960 CertID, as 2.0.1 M06 asks)."""
    digest: hashes.HashAlgorithm = {"SHA256": hashes.SHA256(), "SHA384": hashes.SHA384(),
                                    "SHA512": hashes.SHA512()}[algorithm]
    name = hashes.Hash(digest)
    name.update(cert.issuer.public_bytes())
    public = issuer.public_key()
    raw = public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.PKCS1) \
        if isinstance(public, rsa.RSAPublicKey) else public.public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    key = hashes.Hash(digest)
    key.update(raw)
    return {"hashAlgorithm": algorithm, "issuerNameHash": name.finalize().hex(),
            "issuerKeyHash": key.finalize().hex(),
            "serialNumber": format(cert.serial_number, "x")}


def contract_chain(emaid: str, days: int) -> tuple[x509.Certificate, x509.Certificate]:
    """(contract certificate, its issuer) of an EV's ISO 15118 contract: a mobility
    operator's root made here signs a certificate for the eMAID (CN), valid ``days``."""
    now = dt.datetime.now(dt.UTC)
    root_key = ec.generate_private_key(ec.SECP256R1())
    root_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sim mobility operator"),
                           x509.NameAttribute(NameOID.ORGANIZATION_NAME, "chargers_sim")])
    root = (x509.CertificateBuilder().subject_name(root_name).issuer_name(root_name)
            .public_key(root_key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(root_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, emaid)]))
            .issuer_name(root_name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .sign(root_key, hashes.SHA256()))
    return leaf, root


class StationPki:
    """Key, certificate and trusted roots of one simulated station."""

    def __init__(self, station_id: str, organisation: str = "",
                 folder: str | Path | None = None) -> None:
        self.station_id = station_id
        self.organisation = organisation
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._folder = Path(folder) if folder is not None else None  # made when needed
        self.cert_file: Path | None = None
        self.key_file: Path | None = None
        self._pending: Any = None  # the key of the CSR sent last
        self.csrs_sent = 0
        self.installed_chains = 0
        # installed root certificates: certificate type -> PEM certificates
        self.roots: dict[str, list[x509.Certificate]] = {}
        # ISO 15118: the SECC (V2G) key of the CSR sent last, and the chain installed
        self._v2g_pending: Any = None
        self.v2g_chain: str | None = None

    @property
    def folder(self) -> Path:
        """Where installed certificates and keys are written (a temporary folder unless
        one was given)."""
        if self._folder is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="sim-pki-")
            self._folder = Path(self._tmp.name)
        return self._folder

    def use(self, cert_file: str, key_file: str) -> None:
        """Connect with this certificate and key (e.g. one made for the test)."""
        self.cert_file, self.key_file = Path(cert_file), Path(key_file)

    def csr(self, common_name: str | None = None) -> str:
        """A new key and a PEM CSR for it (CN = the station id unless told otherwise)."""
        self._pending = ec.generate_private_key(ec.SECP256R1())
        attrs = [x509.NameAttribute(NameOID.COMMON_NAME, common_name or self.station_id)]
        if self.organisation:
            attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, self.organisation))
        request = x509.CertificateSigningRequestBuilder().subject_name(
            x509.Name(attrs)).sign(self._pending, hashes.SHA256())
        self.csrs_sent += 1
        return request.public_bytes(serialization.Encoding.PEM).decode()

    def v2g_csr(self, common_name: str | None = None) -> str:
        """A new SECC key and a PEM CSR for an ISO 15118 V2GCertificate."""
        self._v2g_pending = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME,
                                             common_name or self.station_id)])
        request = x509.CertificateSigningRequestBuilder().subject_name(name).sign(
            self._v2g_pending, hashes.SHA256())
        self.csrs_sent += 1
        return request.public_bytes(serialization.Encoding.PEM).decode()

    def install_v2g_chain(self, chain_pem: str) -> str:
        """Take a V2GCertificate chain (it must be for the pending SECC key)."""
        if not self._fits(chain_pem, self._v2g_pending):
            return "Rejected"
        self.v2g_chain = chain_pem
        self._v2g_pending = None
        return "Accepted"

    def _fits(self, chain_pem: str, pending: Any) -> bool:
        """The chain's leaf is for this station and for ``pending``'s key."""
        try:
            chain = x509.load_pem_x509_certificates(chain_pem.encode())
        except ValueError:
            return False
        leaf = chain[0]
        names = [a.value for a in leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
        return pending is not None and names == [self.station_id] and leaf.public_key() \
            .public_bytes(serialization.Encoding.DER,
                          serialization.PublicFormat.SubjectPublicKeyInfo) == \
            pending.public_key().public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)

    def install_chain(self, chain_pem: str) -> str:
        """Take a CertificateSigned chain: Accepted, or Rejected with the old one kept."""
        if not self._fits(chain_pem, self._pending):
            return "Rejected"
        n = self.installed_chains + 1
        cert_file, key_file = self.folder / f"station-{n}.pem", self.folder / f"station-{n}.key"
        cert_file.write_text(chain_pem, "ascii")
        key_file.touch(0o600)
        key_file.write_bytes(self._pending.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption()))
        self.cert_file, self.key_file = cert_file, key_file
        self._pending = None
        self.installed_chains = n
        return "Accepted"

    @property
    def certificate(self) -> x509.Certificate | None:
        if self.cert_file is None:
            return None
        return x509.load_pem_x509_certificates(self.cert_file.read_bytes())[0]

    def ssl_context(self, trusted_ca: str | None) -> ssl.SSLContext:
        """TLS towards the central system: its CA trusted, this station's certificate shown."""
        ctx = ssl.create_default_context(cafile=trusted_ca)
        if self.cert_file is not None and self.key_file is not None:
            ctx.load_cert_chain(self.cert_file, self.key_file)
        return ctx

    # -- root certificates the central system manages ------------------------------------
    def install_root(self, use: str, pem: str) -> str:
        try:
            cert = x509.load_pem_x509_certificate(pem.encode())
        except ValueError:
            return "Rejected"
        self.roots.setdefault(use, []).append(cert)
        return "Accepted"

    def installed(self, uses: list[str]) -> list[tuple[str, dict[str, str]]]:
        return [(use, root_hash_data(c)) for use, certs in self.roots.items()
                if not uses or use in uses for c in certs]

    def delete_root(self, wanted: dict[str, Any]) -> str:
        for certs in self.roots.values():
            for c in certs:
                data = root_hash_data(c, str(wanted.get("hashAlgorithm", "SHA256")))
                if all(str(wanted.get(k, "")).lower() == v.lower() for k, v in data.items()):
                    certs.remove(c)
                    return "Accepted"
        return "NotFound"

    def close(self) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None
