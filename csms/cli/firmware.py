"""``csms firmware``: firmware images the central system serves to stations, updates sent
to one or many stations, publications by a local controller (2.0.1 L03/L04), and each
request's status as the stations report it. A request for a station that is not
connected is queued and sent when it is back: after its next accepted BootNotification,
or once it is heard on a connection it opened without one if its last boot was accepted
(``cancel`` while it waits).

Images are kept under the data folder (``<data-dir>/firmware``), which the serving node's
file listener reads: add them with the same ``--data-dir`` as ``csms serve``.
"""

from __future__ import annotations

import base64
import hashlib
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import quote

import typer

from csms.cli.common import (
    FIRMWARE_FILE,
    MAX_ID,
    SMALL_FILE,
    DataDirOption,
    DbOption,
    JsonOption,
    console,
    fail,
    group,
    in_read,
    in_unit,
    known_station,
    load_settings,
    print_json,
    print_table,
    read_limited,
    run,
    say,
)
from csms.cli.remote import AdminHost, AdminPort, Timeout, _check_time, admin_request

if TYPE_CHECKING:
    from csms.domain.maintenance import FirmwareImage
    from csms.service.ports import Tx

__all__ = ["firmware_app", "sign_image"]

firmware_app = group("Firmware images and updates of stations.")

# 1.6 security extension / 2.0.1 FirmwareType: signingCertificate and signature lengths
MAX_CERT_CHARS = 5500
MAX_SIGNATURE_CHARS = 800


def sign_image(blob: bytes, key_pem: bytes, cert_pem: bytes) -> str:
    """The base64 signature of an image (ECDSA or RSA PKCS#1 v1.5, SHA-256) with a key
    whose certificate is ``cert_pem``; ValueError when they do not belong together."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"--sign-with: not an unencrypted PEM private key ({exc})") from None
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
    except ValueError as exc:
        raise ValueError(f"--cert: not a PEM certificate ({exc})") from None
    public = serialization.PublicFormat.SubjectPublicKeyInfo
    der = serialization.Encoding.DER
    if cert.public_key().public_bytes(der, public) != key.public_key().public_bytes(der, public):
        raise ValueError("--cert is not the certificate of the --sign-with key")
    if isinstance(key, ec.EllipticCurvePrivateKey):
        signature = key.sign(blob, ec.ECDSA(hashes.SHA256()))
    elif isinstance(key, rsa.RSAPrivateKey):
        signature = key.sign(blob, padding.PKCS1v15(), hashes.SHA256())
    else:
        raise ValueError("--sign-with: an EC or RSA key")
    return base64.b64encode(signature).decode()


@firmware_app.command("add")
def firmware_add(
    file: Annotated[Path, typer.Argument(help="The firmware image")],
    version: Annotated[str | None, typer.Option(
        help="Its version, as stations report it after installing",
        show_default="the file name")] = None,
    sign_with: Annotated[Path | None, typer.Option(
        help="PEM private key to sign the image with (signed updates)",
        show_default="unsigned")] = None,
    cert: Annotated[Path | None, typer.Option(
        help="PEM certificate of the --sign-with key, sent to the stations",
        show_default="none")] = None,
    json: JsonOption = False, db: DbOption = None, data_dir: DataDirOption = None,
) -> None:
    """Add a firmware image for stations to download (copied into the data folder)."""
    from csms.domain.maintenance import FirmwareImage
    from csms.filestore import display_name, firmware_path
    from csms.service.maintenance_views import firmware_json

    if (sign_with is None) != (cert is None):
        fail("--sign-with and --cert go together")
    try:
        blob = read_limited(file, FIRMWARE_FILE)
    except OSError as exc:
        fail(f"cannot read {file}: {exc.strerror or exc}")
    if not blob:
        fail(f"{file} is empty")
    name = version or file.name
    if not 0 < len(name) <= 50 or not name.isprintable():
        fail("--version: 1 to 50 printable characters")
    signature = cert_text = None
    if sign_with is not None and cert is not None:
        try:
            key_pem, cert_pem = (read_limited(sign_with, SMALL_FILE),
                                 read_limited(cert, SMALL_FILE))
        except OSError as exc:
            fail(f"cannot read {exc.filename}: {exc.strerror or exc}")
        try:
            signature = sign_image(blob, key_pem, cert_pem)
        except ValueError as exc:
            fail(str(exc))
        cert_text = cert_pem.decode("ascii", "replace").strip()
        if len(cert_text) > MAX_CERT_CHARS or len(signature) > MAX_SIGNATURE_CHARS:
            fail(f"the certificate (at most {MAX_CERT_CHARS} characters) or signature"
                 f" (at most {MAX_SIGNATURE_CHARS}) is too long for OCPP")
    settings = load_settings(db=db, data_dir=data_dir)
    digest = hashlib.sha256(blob).hexdigest()
    image = FirmwareImage(name, display_name(file.name, "firmware.bin"), len(blob), digest,
                          datetime.now(UTC), signature, cert_text,
                          md5=hashlib.md5(blob, usedforsecurity=False).hexdigest())
    path = firmware_path(settings.data_folder(), digest)
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_suffix(".part")
    part.write_bytes(blob)
    os.replace(part, path)

    async def work(tx: Tx) -> FirmwareImage:
        if await tx.get_firmware(name) is not None:
            raise ValueError(f"firmware {name} exists already (csms firmware list)")
        await tx.add_firmware(image)
        return image

    added = run(in_unit(settings, work))
    if json:
        print_json(firmware_json(added))
        return
    console.print(f"firmware {added.version}: {added.size} bytes, sha256 {added.sha256}"
                  f"{', signed' if signature else ''}", markup=False)


@firmware_app.command("list")
def firmware_list(json: JsonOption = False, db: DbOption = None,
                  data_dir: DataDirOption = None) -> None:
    """List the firmware images stations can be updated to."""
    from csms.service.maintenance_views import firmware_json

    async def work(tx: Tx) -> list[FirmwareImage]:
        return await tx.list_firmware()

    rows = [firmware_json(f) for f in run(in_read(load_settings(db=db, data_dir=data_dir),
                                                  work))]
    if json:
        print_json(rows)
        return
    print_table("Firmware", ["version", "file", "bytes", "sha256", "signed", "added"],
                [[r["version"], r["file_name"], r["size"], r["sha256"][:16],
                  "yes" if r["signed"] else "no", (r["created_at"] or "")[:19]] for r in rows])


@firmware_app.command("update")
def firmware_update(
    stations: Annotated[list[str], typer.Argument(help="The stations' ids")],
    version: Annotated[str, typer.Option(help="The firmware version (csms firmware list)")],
    retries: Annotated[int | None, typer.Option(
        min=0, max=100, help="Download attempts the station makes",
        show_default="the station's")] = None,
    retry_interval: Annotated[int | None, typer.Option(
        min=0, max=86400, help="Seconds between attempts", show_default="the station's")]
    = None,
    window_start: Annotated[str, typer.Option(
        help="When the stations fetch the image (RFC 3339 or +2h)")] = "now",
    window_end: Annotated[str | None, typer.Option(
        help="When its download URL stops working (RFC 3339 or +2h)",
        show_default="start + 1 day")] = None,
    json: JsonOption = False, timeout: Timeout = 30, admin_host: AdminHost = None,
    admin_port: AdminPort = None, data_dir: DataDirOption = None,
) -> None:
    """Update the firmware of one or many stations (UpdateFirmware; SignedUpdateFirmware
    for a signed image on 1.6). Each station downloads the image from this central
    system's file listener, installs it and reboots; csms firmware status follows it."""
    from csms.cli.remote import target

    to = target(json, timeout, admin_host, admin_port, data_dir)
    args: dict[str, Any] = {"version": version,
                            "window_start": _check_time(window_start, "--window-start")}
    if window_end is not None:
        args["window_end"] = _check_time(window_end, "--window-end")
    if retries is not None:
        args["retries"] = retries
    if retry_interval is not None:
        args["retry_interval"] = retry_interval
    results: list[dict[str, Any]] = []
    for station in stations:
        status, result = admin_request(
            to.settings, "POST",
            f"/stations/{quote(station, safe='')}/commands/update-firmware",
            {**args, "timeout": timeout}, timeout=timeout + 5)
        if status == 400 and len(stations) == 1:
            fail(result.get("error", "bad request"))
        results.append({"station": station, "ok": status in (200, 202),
                        "status": result.get("status"), "request_id": result.get("request_id"),
                        "error": result.get("error")})
    if json:
        print_json(results)
    else:
        print_table("Firmware update", ["station", "answer", "request", "error"],
                    [[r["station"], r["status"], r["request_id"], r["error"]]
                     for r in results])
    if not all(r["ok"] for r in results):
        raise typer.Exit(1)


def _one_request(station: str, command: str, args: dict[str, Any], json: bool,
                 timeout: float, admin_host: str | None, admin_port: int | None,
                 data_dir: str | None) -> None:

    from csms.cli.remote import target

    to = target(json, timeout, admin_host, admin_port, data_dir)
    status, result = admin_request(
        to.settings, "POST", f"/stations/{quote(station, safe='')}/commands/{command}",
        {**args, "timeout": timeout}, timeout=timeout + 5)
    if status == 400:
        fail(result.get("error", "bad request"))
    if json:
        print_json(result)
    elif status == 202:
        say(station, ": ", ("queued", "bold"), f" (request {result.get('request_id')}):"
            " sent when it is back (after an accepted BootNotification, or once it is"
            " heard if its last boot was accepted)")
    elif status == 200:  # the status is the station's word: never markup
        say(station, ": ", (str(result.get("status")), "bold"),
            f" ({result.get('action')}, request {result.get('request_id')})")
    if status not in (200, 202):
        fail(result.get("error", f"admin API answered HTTP {status}"), 1)


@firmware_app.command("publish")
def firmware_publish(
    station: Annotated[str, typer.Argument(help="The local controller's station id")],
    version: Annotated[str, typer.Option(help="The firmware version (csms firmware list)")],
    retries: Annotated[int | None, typer.Option(
        min=0, max=100, help="Download attempts the local controller makes",
        show_default="the station's")] = None,
    retry_interval: Annotated[int | None, typer.Option(
        min=0, max=86400, help="Seconds between attempts", show_default="the station's")]
    = None,
    json: JsonOption = False, timeout: Timeout = 30, admin_host: AdminHost = None,
    admin_port: AdminPort = None, data_dir: DataDirOption = None,
) -> None:
    """Have a local controller publish an image to the stations behind it (2.0.1
    PublishFirmware): it downloads the image from this central system's file listener,
    checks its MD5 and serves it on URLs of its own, shown by csms firmware status."""
    args: dict[str, Any] = {"version": version}
    if retries is not None:
        args["retries"] = retries
    if retry_interval is not None:
        args["retry_interval"] = retry_interval
    _one_request(station, "publish-firmware", args, json, timeout, admin_host, admin_port,
                 data_dir)


@firmware_app.command("unpublish")
def firmware_unpublish(
    station: Annotated[str, typer.Argument(help="The local controller's station id")],
    version: Annotated[str, typer.Option(help="The firmware version (csms firmware list)")],
    json: JsonOption = False, timeout: Timeout = 30, admin_host: AdminHost = None,
    admin_port: AdminPort = None, data_dir: DataDirOption = None,
) -> None:
    """Have a local controller stop publishing an image (2.0.1 UnpublishFirmware); its
    answer is Unpublished, NoFirmware or DownloadOngoing."""
    _one_request(station, "unpublish-firmware", {"version": version}, json, timeout,
                 admin_host, admin_port, data_dir)


@firmware_app.command("cancel")
def firmware_cancel(
    request: Annotated[int, typer.Argument(
        min=1, max=MAX_ID, help="The queued request's id (csms firmware status)")],
    json: JsonOption = False, admin_host: AdminHost = None, admin_port: AdminPort = None,
    data_dir: DataDirOption = None,
) -> None:
    """Cancel a firmware update or publication still queued for a station that is
    offline (one being sent, or sent, cannot be called back)."""
    cancel_queued(request, ["firmware", "publish"], json, admin_host, admin_port, data_dir)


def cancel_queued(request: int, kinds: list[str], json: bool, admin_host: str | None,
                  admin_port: int | None, data_dir: str | None) -> None:
    """``csms firmware cancel`` / ``csms logs cancel``: through the admin API (audited)."""
    settings = load_settings(admin_host=admin_host, admin_port=admin_port, data_dir=data_dir)
    status, result = admin_request(settings, "POST", f"/transfers/{request}/cancel",
                                   {"kinds": kinds})
    if status != 200:
        fail(result.get("error", f"admin API answered HTTP {status}"))
    if json:
        print_json(result)
        return
    console.print(f"request {request}: cancelled", markup=False)


@firmware_app.command("status")
def firmware_status(
    json: JsonOption = False,
    station: Annotated[str | None, typer.Option(help="Only this station")] = None,
    limit: Annotated[int, typer.Option(min=1, max=MAX_ID,
                                       help="At most this many, newest first")] = 1000,
    db: DbOption = None, data_dir: DataDirOption = None,
) -> None:
    """Firmware updates and publications per station, newest first, with the last status
    the station reported (Downloading, Installed, Published, ...; queued while waiting
    for a station that is offline) and the URLs a local controller published on."""
    from csms.domain.maintenance import TransferKind
    from csms.service.maintenance_views import transfer_json

    async def work(tx: Tx) -> list[dict[str, Any]]:
        await known_station(tx, station)
        now = datetime.now(UTC)
        versions = {f.id: f.version for f in await tx.list_firmware()}
        found = [t for kind in (TransferKind.FIRMWARE, TransferKind.PUBLISH,
                                TransferKind.UNPUBLISH)
                 for t in await tx.list_transfers(kind, station, limit)]
        found.sort(key=lambda t: t.id or 0, reverse=True)
        return [transfer_json(t, now, versions.get(t.firmware_id)) for t in found[:limit]]

    rows = run(in_read(load_settings(db=db, data_dir=data_dir), work))
    if json:
        print_json(rows)
        return
    what = {"firmware": "update", "publish": "publish", "unpublish": "unpublish"}
    print_table("Firmware requests",
                ["request", "station", "kind", "version", "status", "published at", "updated"],
                [[r["id"], r["station_id"], what.get(r["kind"], r["kind"]), r.get("version"),
                  r["status"], r.get("locations") or [],
                  (r["updated_at"] or "")[:19]] for r in rows])
