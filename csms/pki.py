"""The central system's CA on disk: an operator's own (``--ca-cert`` / ``--ca-key``), or the
built-in one made at first start under ``<data dir>/ca/`` (key mode 0600, like the admin
token). The built-in CA is what profile 3 stations' client certificates are checked
against unless the operator names a ``--client-ca``; with both, the server trusts both
(a bundle in the data folder), so a station keeps working with either certificate."""

from __future__ import annotations

import logging
import os
from dataclasses import replace
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from csms.config import Named, Settings, SettingsError
from csms.service.certificates import CertificateAuthority, new_ca

__all__ = ["BUILTIN_CA_NAME", "ca_folder", "load_ca", "load_or_create_ca", "trusting_settings"]

log = logging.getLogger("csms.pki")

BUILTIN_CA_NAME = "voltledger station CA"


def ca_folder(settings: Settings) -> Path:
    return Path(settings.data_dir).expanduser() / "ca"


def _unreadable(what: str | Named, exc: OSError) -> SettingsError:
    return SettingsError(what, f": cannot read {exc.filename}: {exc.strerror}")


def load_ca(settings: Settings) -> CertificateAuthority | None:
    """The CA of the settings without creating anything: the operator's, or the built-in
    one if it exists; None when there is none yet."""
    if settings.ca_cert:
        cert_path, key_path, builtin = Path(settings.ca_cert), Path(settings.ca_key), False
    else:
        folder = ca_folder(settings)
        cert_path, key_path, builtin = folder / "ca.pem", folder / "ca.key", True
        if not cert_path.exists():
            return None
    # each setting named by the flag of the command run where it takes one (csms serve),
    # else by its variable (csms ca show: CSMS_CA_CERT)
    both = (Named("ca_cert"), " / ", Named("ca_key"))
    try:
        cert = x509.load_pem_x509_certificate(cert_path.expanduser().read_bytes())
    except OSError as exc:
        raise _unreadable(Named("ca_cert") if settings.ca_cert else str(cert_path),
                          exc) from None
    except ValueError as exc:
        raise SettingsError(Named("ca_cert") if settings.ca_cert else str(cert_path),
                            f": not a PEM certificate: {exc}") from None
    try:
        key = serialization.load_pem_private_key(key_path.expanduser().read_bytes(), None)
    except OSError as exc:
        raise _unreadable(Named("ca_key") if settings.ca_cert else str(key_path),
                          exc) from None
    except (ValueError, TypeError) as exc:
        raise SettingsError(Named("ca_key") if settings.ca_cert else str(key_path),
                            f": not an unencrypted PEM private key: {exc}") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise SettingsError(Named("ca_key") if settings.ca_cert else str(key_path),
                            ": an EC or RSA key is needed")
    if key.public_key().public_numbers() != cert.public_key().public_numbers():  # type: ignore[union-attr]
        raise SettingsError(*both, ": the key is not the certificate's")
    return CertificateAuthority(key, cert, builtin=builtin)


def load_or_create_ca(settings: Settings) -> CertificateAuthority:
    """The CA of the settings, making the built-in one on first use."""
    found = load_ca(settings)
    if found is not None:
        return found
    folder = ca_folder(settings)
    folder.mkdir(parents=True, exist_ok=True)
    ca = new_ca(BUILTIN_CA_NAME, settings.ca_organisation)
    key_pem = ca.key.private_bytes(serialization.Encoding.PEM,
                                   serialization.PrivateFormat.PKCS8,
                                   serialization.NoEncryption())
    fd = os.open(folder / "ca.key", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key_pem)
    (folder / "ca.pem").write_text(ca.cert_pem, "ascii")
    log.info("= created the built-in station CA in %s", folder)
    return ca


def trusting_settings(settings: Settings, ca: CertificateAuthority) -> Settings:
    """The settings with the CA among the client CAs of the TLS listener (profile 3)."""
    if not settings.tls_cert:
        return settings
    if settings.client_ca:
        if settings.ca_cert and Path(settings.client_ca).resolve() == Path(
                settings.ca_cert).resolve():
            return settings
        bundle = ca_folder(settings) / "client-cas.pem"
        bundle.parent.mkdir(parents=True, exist_ok=True)
        # written whole, then renamed: sibling workers (serve --workers) write it too
        part = bundle.with_name(f"{bundle.name}.{os.getpid()}")
        part.write_text(Path(settings.client_ca).read_text("ascii").rstrip("\n") + "\n"
                        + ca.cert_pem, "ascii")
        os.replace(part, bundle)
        return replace(settings, client_ca=str(bundle))
    if settings.ca_cert:
        return replace(settings, client_ca=settings.ca_cert)
    return replace(settings, client_ca=str(ca_folder(settings) / "ca.pem"))
