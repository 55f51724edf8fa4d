"""CSRs a hostile station sends, the CA's signature, rate limits, and what is stored."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from csms.service.certificates import (
    CertificateUseCases,
    CsrLimiter,
    CsrRefused,
    check_csr,
    hash_data,
    new_ca,
)
from support.memory import MemoryRepository

NOW = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)
EC_KEY = ec.generate_private_key(ec.SECP256R1())


def csr(cn: str = "CP-1", *, key: Any = None, ca: bool = False, org: str | None = None,
        extra_cn: str | None = None) -> str:
    key = key or EC_KEY
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    if extra_cn:
        attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, extra_cn))
    if org:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
    builder = x509.CertificateSigningRequestBuilder().subject_name(x509.Name(attrs))
    if ca:
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=None),
                                        critical=True)
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM).decode()


def test_a_good_csr_passes() -> None:
    assert check_csr(csr("CP-1"), "CP-1").subject.rfc4514_string() == "CN=CP-1"
    p384 = ec.generate_private_key(ec.SECP384R1())
    check_csr(csr("CP-1", key=p384), "CP-1")


@pytest.mark.parametrize(("pem", "why"), [
    (csr("CP-2"), "is not the station id"),          # a certificate for another station
    (csr("cp-1"), "is not the station id"),          # no case-insensitive match
    (csr("CP-1", extra_cn="CP-2"), "is not the station id"),  # two names
    (csr("CP-1", ca=True), "CA:true"),
    (csr("CP-1", key=rsa.generate_private_key(65537, 1024)), "1024 bits"),
    (csr("CP-1", key=ec.generate_private_key(ec.SECP256K1())), "secp256k1"),
    ("-----BEGIN CERTIFICATE REQUEST-----\ngarbage\n-----END CERTIFICATE REQUEST-----\n",
     "not a PEM"),
    ("not pem at all", "not a PEM"),
    ("A" * (1024 * 1024), "larger than"),            # a 1 MB CSR is not parsed
    ("\u00e9" * 100, "not a PEM"),
])
def test_hostile_csrs_are_refused(pem: str, why: str) -> None:
    with pytest.raises(CsrRefused, match=why):
        check_csr(pem, "CP-1")


def test_a_csr_whose_signature_does_not_verify_is_refused() -> None:
    good = x509.load_pem_x509_csr(csr("CP-1").encode())
    der = bytearray(good.public_bytes(serialization.Encoding.DER))
    der[-3] ^= 0xFF  # the signature's last bytes
    import base64

    body = base64.encodebytes(bytes(der)).decode()
    pem = f"-----BEGIN CERTIFICATE REQUEST-----\n{body}-----END CERTIFICATE REQUEST-----\n"
    with pytest.raises(CsrRefused):
        check_csr(pem, "CP-1")


def test_the_organisation_is_checked_when_configured() -> None:
    check_csr(csr("CP-1", org="ACME"), "CP-1", "ACME")
    with pytest.raises(CsrRefused, match="organisation"):
        check_csr(csr("CP-1", org="EVIL"), "CP-1", "ACME")
    with pytest.raises(CsrRefused, match="organisation"):
        check_csr(csr("CP-1"), "CP-1", "ACME")


def test_the_limiter_counts_per_station_in_a_sliding_hour() -> None:
    now = [0.0]
    limiter = CsrLimiter(3, clock=lambda: now[0])
    assert [limiter.admit("A") for _ in range(4)] == [True, True, True, False]
    assert limiter.admit("B")  # another station is not held back
    now[0] = 3601
    assert limiter.admit("A")


def test_the_ca_signs_a_client_certificate_within_its_own_validity() -> None:
    ca = new_ca("test CA", now=NOW)
    request = check_csr(csr("CP-1"), "CP-1")
    cert = ca.sign(request, 365, NOW)
    cert.verify_directly_issued_by(ca.cert)
    assert cert.subject == request.subject
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert cert.not_valid_after_utc == NOW + dt.timedelta(days=365)
    assert ca.sign(request, 100 * 365, NOW).not_valid_after_utc == ca.cert.not_valid_after_utc
    chain = x509.load_pem_x509_certificates(ca.chain_pem(cert).encode())
    assert [c.subject for c in chain] == [cert.subject, ca.cert.subject]


def test_hash_data_is_that_of_the_issuer() -> None:
    ca = new_ca("test CA", now=NOW)
    cert = ca.sign(check_csr(csr("CP-1"), "CP-1"), 10, NOW)
    root, leaf = hash_data(ca.cert), hash_data(cert, ca.cert)
    assert (root["issuerNameHash"], root["issuerKeyHash"]) == (
        leaf["issuerNameHash"], leaf["issuerKeyHash"])
    assert leaf["serialNumber"] == format(cert.serial_number, "x")
    assert len(hash_data(cert, ca.cert, "SHA512")["issuerKeyHash"]) == 128


async def test_signing_stores_the_certificate_and_a_refusal_is_audited() -> None:
    repo = MemoryRepository()
    certs = CertificateUseCases(repo, new_ca("test CA", now=NOW), days=30,
                                renew_before=dt.timedelta(days=7),
                                limiter=CsrLimiter(2), clock=lambda: NOW)
    outcome = await certs.sign("CP-1", csr("CP-1"), "ChargingStationCertificate")
    assert outcome.accepted and outcome.chain.count("BEGIN CERTIFICATE") == 2
    [row] = repo.state.certificates.values()
    assert (row["serial"], row["station_id"]) == (outcome.serial, "CP-1")
    refused = await certs.sign("CP-1", csr("CP-9"), "ChargingStationCertificate")
    assert not refused.accepted and "not the station id" in refused.reason
    flood = await certs.sign("CP-1", csr("CP-1"), "ChargingStationCertificate")
    assert not flood.accepted and "too many" in flood.reason
    v2g = await certs.sign("CP-2", csr("CP-2"), "V2GCertificate")
    assert not v2g.accepted and "V2GCertificate" in v2g.reason
    events = [e["payload"] for e in repo.state.station_events]
    assert [e["type"] for e in events] == ["CsrRejected"] * 3
    assert len(repo.state.certificates) == 1


async def test_renewal_is_due_once_per_certificate_and_skips_refused_ones() -> None:
    repo = MemoryRepository()
    clock = [NOW]
    certs = CertificateUseCases(repo, new_ca("test CA", now=NOW), days=30,
                                renew_before=dt.timedelta(days=7),
                                limiter=CsrLimiter(10), clock=lambda: clock[0])
    first = await certs.sign("CP-1", csr("CP-1"), "ChargingStationCertificate")
    assert await certs.due_for_renewal() == []
    clock[0] = NOW + dt.timedelta(days=24)
    [due] = await certs.due_for_renewal()
    assert due["serial"] == first.serial
    await certs.renewal_requested(first.serial)
    assert await certs.due_for_renewal() == []  # asked once
    second = await certs.sign("CP-1", csr("CP-1"), "ChargingStationCertificate")
    await certs.delivered("CP-1", second.serial, "Rejected")  # the station refused it
    clock[0] = NOW + dt.timedelta(days=50)
    # the refused one does not count as the newest: the first one is still the one due,
    # and it was asked for already
    assert await certs.due_for_renewal() == []
    assert repo.state.station_events[-1]["payload"]["type"] == "CertificateSignedRejected"
