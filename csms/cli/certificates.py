"""``csms certificates`` (the certificates of stations: live commands, and what the CA
issued) and ``csms ca`` (the CA that signs stations' CSRs)."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from csms.cli.common import (
    SMALL_FILE,
    DataDirOption,
    DbOption,
    JsonOption,
    fail,
    group,
    in_read,
    known_station,
    load_settings,
    print_json,
    print_table,
    read_limited,
    run,
    setting_error,
)
from csms.cli.remote import AdminHost, AdminPort, Station, Timeout, _command, target
from csms.config import SettingsError

if TYPE_CHECKING:
    from cryptography import x509

    from csms.service.ports import Tx

__all__ = ["ca_app", "certificates_app"]

certificates_app = group("Station certificates: install, list and delete roots on a station"
                         " (live), renew, and what the CA issued.")
ca_app = group("The CA that signs stations' certificate requests (security profile 3).")

CERTIFICATE_TYPES = ("CSMSRootCertificate", "ManufacturerRootCertificate",
                     "V2GRootCertificate", "MORootCertificate")
PncOption = Annotated[bool | None, typer.Option(
    "--pnc/--no-pnc", help="1.6: send it as a 2.0.1 message in a Plug & Charge DataTransfer"
    " (OCA application note) [default: when only that form can say it, or for delete when"
    " the station announced Plug & Charge]", show_default=False)]


def _with_pnc(args: dict[str, Any], pnc: bool | None) -> dict[str, Any]:
    return args if pnc is None else {**args, "pnc": pnc}


def _read_certificate(path: str) -> tuple[str, x509.Certificate]:
    from cryptography import x509

    try:
        text = read_limited(path, SMALL_FILE).decode("ascii")
        return text, x509.load_pem_x509_certificate(text.encode())
    except OSError as exc:
        fail(f"cannot read {path}: {exc.strerror or exc}")
    except (ValueError, UnicodeError):
        fail(f"{path} is not a PEM certificate")


@certificates_app.command("install")
def install(
    station: Station,
    file: Annotated[str, typer.Argument(help="PEM file of the root certificate")],
    type: Annotated[str, typer.Option(
        "--type", help=f"One of {', '.join(CERTIFICATE_TYPES)} (1.6: the first two, and"
        " the others over Plug & Charge)")] = "CSMSRootCertificate",
    pnc: PncOption = None,
    json: JsonOption = False, timeout: Timeout = 30, admin_host: AdminHost = None,
    admin_port: AdminPort = None, data_dir: DataDirOption = None,
) -> None:
    """Install a root certificate on a station (InstallCertificate)."""
    if type not in CERTIFICATE_TYPES:
        raise typer.BadParameter(f"one of {', '.join(CERTIFICATE_TYPES)}", param_hint="--type")
    pem, _ = _read_certificate(file)
    _command(station, "install-certificate",
             _with_pnc({"type": type, "certificate": pem}, pnc),
             target(json, timeout, admin_host, admin_port, data_dir))


@certificates_app.command("list-installed")
def list_installed(
    station: Station,
    type: Annotated[list[str] | None, typer.Option(
        "--type", help="Certificate types to list [default: 1.6 CSMSRootCertificate,"
        " 2.0.1 all]", show_default=False)] = None,
    pnc: PncOption = None,
    json: JsonOption = False, timeout: Timeout = 30, admin_host: AdminHost = None,
    admin_port: AdminPort = None, data_dir: DataDirOption = None,
) -> None:
    """The certificates a station has installed (GetInstalledCertificateIds)."""
    _command(station, "get-installed-certificates", _with_pnc({"types": type or []}, pnc),
             target(json, timeout, admin_host, admin_port, data_dir))


@certificates_app.command("delete")
def delete(
    station: Station,
    file: Annotated[str | None, typer.Option(
        "--file", help="PEM of the root certificate to delete (its hash data is computed)")]
    = None,
    issuer_name_hash: Annotated[str | None, typer.Option(
        help="Or the hash data, as list-installed shows it")] = None,
    issuer_key_hash: Annotated[str | None, typer.Option(help="... its issuerKeyHash")] = None,
    serial: Annotated[str | None, typer.Option(help="... its serialNumber (hex)")] = None,
    hash_algorithm: Annotated[str, typer.Option(help="SHA256, SHA384 or SHA512")] = "SHA256",
    pnc: PncOption = None,
    json: JsonOption = False, timeout: Timeout = 30, admin_host: AdminHost = None,
    admin_port: AdminPort = None, data_dir: DataDirOption = None,
) -> None:
    """Delete a certificate from a station (DeleteCertificate)."""
    if hash_algorithm not in ("SHA256", "SHA384", "SHA512"):
        raise typer.BadParameter("SHA256, SHA384 or SHA512", param_hint="--hash-algorithm")
    if file is not None:
        from csms.service.certificates import hash_data

        _, cert = _read_certificate(file)
        data = hash_data(cert, None, hash_algorithm)
    elif issuer_name_hash and issuer_key_hash and serial:
        data = {"hashAlgorithm": hash_algorithm, "issuerNameHash": issuer_name_hash,
                "issuerKeyHash": issuer_key_hash, "serialNumber": serial}
    else:
        fail("give --file, or --issuer-name-hash, --issuer-key-hash and --serial")
    _command(station, "delete-certificate", _with_pnc({"hash": data}, pnc),
             target(json, timeout, admin_host, admin_port, data_dir))


@certificates_app.command("renew")
def renew(
    station: Station, json: JsonOption = False, timeout: Timeout = 30,
    admin_host: AdminHost = None, admin_port: AdminPort = None, data_dir: DataDirOption = None,
) -> None:
    """Ask a station for a new CSR now (its new certificate follows SignCertificate)."""
    _command(station, "renew-certificate", {},
             target(json, timeout, admin_host, admin_port, data_dir))


def issued_view(row: dict[str, Any]) -> dict[str, Any]:
    now = datetime.now(UTC)
    return {"serial": row["serial"], "station_id": row["station_id"],
            "not_before": row["not_before"].isoformat(), "not_after": row["not_after"].isoformat(),
            "issued_at": row["issued_at"].isoformat(), "status": row["status"],
            "expired": row["not_after"] <= now,
            "renewal_requested_at": row["renewal_requested_at"].isoformat()
            if row["renewal_requested_at"] else None}


@certificates_app.command("issued")
def issued(
    station: Annotated[str | None, typer.Option(
        "--station", help="Only this station's [default: all]")] = None,
    json: JsonOption = False, db: DbOption = None, data_dir: DataDirOption = None,
) -> None:
    """Certificates the CA issued to stations, newest first (status: the station's
    answer to CertificateSigned)."""

    async def work(tx: Tx) -> list[dict[str, Any]]:
        await known_station(tx, station)
        return [issued_view(r) for r in await tx.list_issued_certificates(station)]

    rows = run(in_read(load_settings(db=db, data_dir=data_dir), work))
    if json:
        print_json(rows)
        return
    print_table("Issued certificates",
                ["serial", "station", "not after", "status", "renewal asked"],
                [[r["serial"], r["station_id"], r["not_after"],
                  r["status"] + (" (expired)" if r["expired"] else ""),
                  r["renewal_requested_at"]] for r in rows])


def _ca(data_dir: str | None) -> Any:
    from csms.pki import load_ca

    settings = load_settings(data_dir=data_dir)
    try:
        ca = load_ca(settings)
    except SettingsError as exc:  # named by this command's flags, or by variables
        fail(setting_error(exc))
    if ca is None:
        # this command takes no --ca-cert (csms serve does): the variables name the CA
        fail(f"no CA yet in {Path(settings.data_dir) / 'ca'}: csms serve makes the built-in"
             " one at its first start (or set CSMS_CA_CERT and CSMS_CA_KEY to your own)")
    return ca


@ca_app.command("show")
def ca_show(json: JsonOption = False, data_dir: DataDirOption = None) -> None:
    """The CA's subject, validity and fingerprint."""
    from cryptography.hazmat.primitives import hashes

    ca = _ca(data_dir)
    cert = ca.cert
    info = {"subject": cert.subject.rfc4514_string(), "builtin": ca.builtin,
            "serial": format(cert.serial_number, "x"),
            "not_before": cert.not_valid_before_utc.isoformat(),
            "not_after": cert.not_valid_after_utc.isoformat(),
            "sha256": cert.fingerprint(hashes.SHA256()).hex()}
    if json:
        print_json(info)
        return
    print_table("Station CA", ["field", "value"], [[k, v] for k, v in info.items()])


@ca_app.command("export")
def ca_export(
    output: Annotated[str | None, typer.Option(
        "-o", "--output", help="Write the PEM certificate here [default: stdout]")] = None,
    data_dir: DataDirOption = None,
) -> None:
    """The CA certificate (PEM), for stations to trust (never the key)."""
    pem = _ca(data_dir).cert_pem
    if output is None:
        sys.stdout.write(pem)
        return
    try:
        Path(output).write_text(pem, "ascii")
    except OSError as exc:
        fail(f"cannot write {output}: {exc.strerror or exc}")
