"""A server certificate for TLS tests (security profiles 2 and 3): a test CA, and a
certificate for 127.0.0.1 / localhost that it signed."""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

__all__ = ["ServerTls", "client_certificate", "server_tls"]


@dataclass(frozen=True)
class ServerTls:
    ca: Path  # what stations trust
    cert: Path
    key: Path


def _key_pem(key: Any) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _cert(cn: str, key: Any, issuer_key: Any, issuer: x509.Certificate | None, *,
          ca: bool = False, server: bool = False) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder().subject_name(name)
        .issuer_name(issuer.subject if issuer is not None else name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if server:
        builder = builder.add_extension(x509.SubjectAlternativeName(
            [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False)
    if ca:
        builder = builder.add_extension(x509.KeyUsage(
            digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
            key_encipherment=False, data_encipherment=False, key_agreement=False,
            encipher_only=False, decipher_only=False), critical=True)
    return builder.sign(issuer_key, hashes.SHA256())


def server_tls(folder: Path) -> ServerTls:
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _cert("voltledger test server CA", ca_key, ca_key, None, ca=True)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = _cert("localhost", key, ca_key, ca, server=True)
    (folder / "server-ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (folder / "server.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (folder / "server.key").write_bytes(_key_pem(key))
    return ServerTls(folder / "server-ca.pem", folder / "server.pem", folder / "server.key")


def client_certificate(folder: Path, cn: str) -> tuple[str, str]:
    """A self-signed client certificate (a CA nobody trusts): files (cert, key)."""
    key = ec.generate_private_key(ec.SECP256R1())
    cert = _cert(cn, key, key, None)
    cert_path, key_path = folder / f"self-{cn}.pem", folder / f"self-{cn}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(_key_pem(key))
    return str(cert_path), str(key_path)
