"""What a simulated station does besides charging: reservations, firmware updates and log
uploads, as firmware does them.

* Reservations (1.6 §5.13, 2.0.1 H01): ReserveNow is Accepted on a free connector
  (Occupied while charging or reserved for another, Unavailable when out of service,
  Rejected for a connector it does not have); connector/EVSE 0 (1.6) or none (2.0.1)
  takes the first free one. The connector reports Reserved, starts only for the reserved
  tag (the start names the reservation), and is released at expiry (2.0.1 sends
  ReservationStatusUpdate Expired) or by CancelReservation.
* Firmware (1.6 §5.19 and the security extension, 2.0.1 L01/L02): the image is fetched
  over HTTP(S) at its retrieve time, its signature checked against the signing
  certificate when one is given, "installed" when it is a simulator image (a first line
  ``voltledger-sim-firmware <version>``), and the station reboots: its next
  BootNotification reports the new version, then the status Installed. Each step is a
  status notification (Downloading, Downloaded, SignatureVerified, Installing, ...).
* Logs (1.6 GetDiagnostics and the security extension's GetLog, 2.0.1 N01): a real text
  file is uploaded to the given location, by multipart POST for 1.6 diagnostics and by
  PUT otherwise, with Uploading then Uploaded / UploadFailure notifications.
* Publishing firmware (2.0.1 L03/L04), as a local controller (``local_controller=True``):
  PublishFirmware is Accepted, the image downloaded (retried as asked), its MD5 compared
  with the checksum, and the image served by a small HTTP server of the station's own on
  loopback (``GET /firmware/<md5>``); each step is a PublishFirmwareStatusNotification
  (Downloading, Downloaded, ChecksumVerified or InvalidChecksum, Published with the URL,
  or DownloadFailed / PublishFailed). UnpublishFirmware removes the image (its URL then
  answers 404): Unpublished, NoFirmware, or DownloadOngoing while it is being fetched.
  A station that is not a local controller rejects PublishFirmware.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aiohttp
from aiohttp import web

from chargers_sim.connection import CallRejected, log
from chargers_sim.faults import FaultInjection

__all__ = ["IMAGE_HEADER", "Maintenance", "SimReservation", "simulator_image"]

IMAGE_HEADER = b"voltledger-sim-firmware "


def simulator_image(version: str, size: int = 4096) -> bytes:
    """A firmware image the simulator installs as ``version``."""
    head = IMAGE_HEADER + version.encode() + b"\n"
    return head + bytes(i % 251 for i in range(max(0, size - len(head))))


def _image_version(blob: bytes) -> str | None:
    first = blob.split(b"\n", 1)[0]
    if not first.startswith(IMAGE_HEADER):
        return None
    version = first[len(IMAGE_HEADER):].decode("utf-8", "replace").strip()
    return version if 0 < len(version) <= 50 else None


def _time(text: str) -> datetime | None:
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _verify(blob: bytes, signature_b64: str, cert_pem: str) -> bool:
    """The image's signature by the signing certificate's key (ECDSA or RSA, SHA-256)."""
    from cryptography import x509
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

    try:
        key = x509.load_pem_x509_certificate(cert_pem.encode()).public_key()
        signature = base64.b64decode(signature_b64, validate=True)
        if isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(signature, blob, ec.ECDSA(hashes.SHA256()))
        elif isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, blob, padding.PKCS1v15(), hashes.SHA256())
        else:
            return False
    except (InvalidSignature, ValueError):
        return False
    return True


@dataclass
class SimReservation:
    id: int
    connector: int
    id_tag: str
    parent: str | None
    expires_at: datetime
    task: asyncio.Task[None] | None = None


class Maintenance(FaultInjection):
    """Reservations, firmware updates and log uploads of a simulated station."""

    def _setup(self) -> None:
        super()._setup()
        self.reservations: dict[int, SimReservation] = {}  # by connector
        self.firmware_statuses: list[str] = []  # every firmware status sent, in order
        self.log_statuses: list[str] = []
        self.uploads: list[tuple[str, int]] = []  # (method, bytes) of each upload made
        self._installed_pending: tuple[int | None, bool] | None = None
        # a local controller's publications: MD5 -> image; every status sent, in order
        self.published: dict[str, bytes] = {}
        self.publish_statuses: list[str] = []
        self._fetching: set[str] = set()  # checksums being downloaded
        self._publisher: web.AppRunner | None = None
        self._publisher_url = ""

    async def _before_close(self) -> None:
        await super()._before_close()
        if self._publisher is not None:
            await self._publisher.cleanup()
            self._publisher = None

    # -- reservations ------------------------------------------------------------------
    def reserved_for(self, connector: int) -> SimReservation | None:
        r = self.reservations.get(connector)
        if r is not None and r.expires_at <= datetime.now(UTC):
            return None
        return r

    def may_use(self, connector: int, id_tag: str) -> bool:
        """Whether ``id_tag`` may charge on ``connector`` (not reserved for another)."""
        r = self.reserved_for(connector)
        return r is None or r.id_tag == id_tag

    def _reserve(self, reservation_id: int, connector: int, id_tag: str, parent: str | None,
                 expiry: str) -> str:
        expires = _time(expiry)
        if expires is None or expires <= datetime.now(UTC):
            return "Rejected"
        for c, r in self.reservations.items():
            if r.id == reservation_id:  # an update of that reservation (1.6 §5.13)
                self._release(c, notify=False)
                break
        if connector == 0:
            free = [c for c in self.meters
                    if c not in self._sessions and self.reserved_for(c) is None]
            if not self.available:
                return "Unavailable"
            if not free:
                return "Occupied"
            connector = free[0]
        if connector not in self.meters:
            return "Rejected"
        if not self.available:
            return "Unavailable"
        if connector in self._sessions or self.reserved_for(connector) is not None:
            return "Occupied"
        r = SimReservation(reservation_id, connector, id_tag, parent, expires)
        self.reservations[connector] = r
        r.task = self._spawn(self._expire(r), f"reservation-{reservation_id}")
        self._spawn(self._status(connector, "Reserved"), "reserved")
        return "Accepted"

    def _cancel_reservation(self, reservation_id: int) -> str:
        for c, r in list(self.reservations.items()):
            if r.id == reservation_id:
                self._release(c)
                return "Accepted"
        return "Rejected"

    def _release(self, connector: int, *, notify: bool = True) -> SimReservation | None:
        r = self.reservations.pop(connector, None)
        if r is None:
            return None
        if r.task is not None and r.task is not asyncio.current_task():
            r.task.cancel()
        if notify and connector not in self._sessions:
            self._spawn(self._status(connector, "Available"), "released")
        return r

    async def _expire(self, r: SimReservation) -> None:
        await asyncio.sleep(max(0.0, (r.expires_at - datetime.now(UTC)).total_seconds()))
        if self.reservations.get(r.connector) is not r:
            return
        self._release(r.connector)
        message = self.rules.reservation_expired_call(r.id)
        if message is not None:
            with contextlib.suppress(CallRejected, TimeoutError, ConnectionError):
                await self.call(*message)

    async def start_session(self, connector: int = 1, id_tag: str = "SIMTAG",
                            *, authorize: bool = True, remote_start_id: int | None = None,
                            reservation_id: int | None = None) -> None:
        """As :meth:`TransactionQueue.start_session`, on a reserved connector only for
        its tag (the start then names the reservation, which ends)."""
        r = self.reserved_for(connector)
        if r is not None and r.id_tag != id_tag:
            raise RuntimeError(f"connector {connector} is reserved for another tag")
        if r is not None:
            self._release(connector, notify=False)
            reservation_id = r.id
        await super().start_session(connector, id_tag, authorize=authorize,
                                    remote_start_id=remote_start_id,
                                    reservation_id=reservation_id)

    # -- firmware ----------------------------------------------------------------------
    def _update_firmware(self, request_id: int | None, location: str, retrieve: str,
                         signature: str | None, certificate: str | None) -> None:
        self._spawn(self._install(request_id, location, retrieve, signature, certificate),
                    "firmware")

    async def _firmware_status(self, status: str, request_id: int | None,
                               signed: bool) -> None:
        self.firmware_statuses.append(status)
        action, payload = self.rules.firmware_status_call(status, request_id, signed)
        with contextlib.suppress(CallRejected, TimeoutError, ConnectionError):
            await self.call(action, payload)

    async def _install(self, request_id: int | None, location: str, retrieve: str,
                       signature: str | None, certificate: str | None) -> None:
        signed = signature is not None
        await asyncio.sleep(0.05)  # the answer to the request goes out first
        at = _time(retrieve)
        if at is not None:
            await asyncio.sleep(min(max(0.0, (at - datetime.now(UTC)).total_seconds()), 3600))
        await self._firmware_status("Downloading", request_id, signed)
        try:
            blob = await self._http("GET", location)
        except (OSError, ValueError, TimeoutError, aiohttp.ClientError) as exc:
            log.info("! %s firmware download failed: %s", self.station_id, exc)
            await self._firmware_status("DownloadFailed", request_id, signed)
            return
        await self._firmware_status("Downloaded", request_id, signed)
        if signed:
            if not _verify(blob, signature or "", certificate or ""):
                await self._firmware_status("InvalidSignature", request_id, signed)
                return
            await self._firmware_status("SignatureVerified", request_id, signed)
        version = _image_version(blob)
        if version is None:  # not an image for this station
            await self._firmware_status("InstallationFailed", request_id, signed)
            return
        await self._firmware_status("Installing", request_id, signed)
        self.firmware_version = version
        self._installed_pending = (request_id, signed)
        await asyncio.sleep(0.05)
        for c in list(self._sessions):
            await self.stop_session(c, "Reboot")
        await self.drop_connection()  # reboot: the next boot reports the new version

    async def _after_boot(self) -> None:
        await super()._after_boot()
        pending, self._installed_pending = self._installed_pending, None
        if pending is not None:
            await self._firmware_status("Installed", *pending)

    # -- logs --------------------------------------------------------------------------
    def _upload_log(self, request_id: int | None, log_type: str, location: str) -> str:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        name = f"{self.station_id}-{log_type}-{stamp}.log"
        self._spawn(self._upload(request_id, log_type, location, name), "log-upload")
        return name

    async def _log_status(self, status: str, request_id: int | None, log_type: str) -> None:
        self.log_statuses.append(status)
        action, payload = self.rules.log_status_call(status, request_id, log_type)
        with contextlib.suppress(CallRejected, TimeoutError, ConnectionError):
            await self.call(action, payload)

    def log_text(self, log_type: str) -> bytes:
        """The log a station uploads: what it received, line by line."""
        lines = [f"{self.station_id} {log_type} log, firmware {self.firmware_version}"]
        lines += [f"{action} {payload}" for action, payload in self.received_calls[-200:]]
        return ("\n".join(lines) + "\n").encode()

    async def _upload(self, request_id: int | None, log_type: str, location: str,
                      name: str) -> None:
        await asyncio.sleep(0.05)  # the answer to the request goes out first
        await self._log_status("Uploading", request_id, log_type)
        body = self.log_text(log_type)
        multipart = self.rules.uploads_by_form(log_type)
        try:
            await self._http("POST" if multipart else "PUT",
                             location if multipart else f"{location.rstrip('/')}/{name}",
                             body, file_name=name if multipart else None)
        except (OSError, ValueError, TimeoutError, aiohttp.ClientError) as exc:
            log.info("! %s log upload failed: %s", self.station_id, exc)
            await self._log_status("UploadFailure", request_id, log_type)
            return
        self.uploads.append(("POST" if multipart else "PUT", len(body)))
        await self._log_status("Uploaded", request_id, log_type)

    async def _http(self, method: str, url: str, body: bytes | None = None, *,
                    file_name: str | None = None) -> bytes:
        """One HTTP request; the body of a 2xx answer, else ValueError."""
        data: Any = body
        if file_name is not None and body is not None:
            form = aiohttp.FormData()
            form.add_field("file", body, filename=file_name,
                           content_type="application/octet-stream")
            data = form
        timeout = aiohttp.ClientTimeout(total=60)
        async with aiohttp.ClientSession(timeout=timeout) as client, \
                client.request(method, url, data=data) as response:
            payload = await response.read()
            if response.status // 100 != 2:
                raise ValueError(f"HTTP {response.status} from {method} {url.split('/')[2]}")
            return payload

    # -- publishing firmware (2.0.1 L03/L04, a local controller) ---------------------------
    def _publish_firmware(self, request_id: int, location: str, checksum: str,
                          retries: int | None, retry_interval: int | None) -> str:
        if not self.local_controller:
            return "Rejected"
        if checksum.lower() in self._fetching:
            return "Rejected"  # that image is being fetched already
        self._fetching.add(checksum.lower())
        self._spawn(self._publish(request_id, location, checksum.lower(), retries or 0,
                                  retry_interval or 0), "publish-firmware")
        return "Accepted"

    def _unpublish_firmware(self, checksum: str) -> str:
        key = checksum.lower()
        if key in self._fetching:
            return "DownloadOngoing"
        if self.published.pop(key, None) is None:
            return "NoFirmware"
        return "Unpublished"

    async def _publish_status(self, status: str, request_id: int,
                              locations: list[str] | None = None) -> None:
        self.publish_statuses.append(status)
        payload: dict[str, Any] = {"status": status, "requestId": request_id}
        if locations:
            payload["location"] = locations
        with contextlib.suppress(CallRejected, TimeoutError, ConnectionError):
            await self.call("PublishFirmwareStatusNotification", payload)

    async def _publish(self, request_id: int, location: str, checksum: str, retries: int,
                       retry_interval: int) -> None:
        try:
            await asyncio.sleep(0.05)  # the answer to the request goes out first
            blob = None
            for attempt in range(retries + 1):
                if attempt:
                    await asyncio.sleep(retry_interval)
                await self._publish_status("Downloading", request_id)
                try:
                    blob = await self._http("GET", location)
                    break
                except (OSError, ValueError, TimeoutError, aiohttp.ClientError) as exc:
                    log.info("! %s firmware download failed: %s", self.station_id, exc)
            if blob is None:
                await self._publish_status("DownloadFailed", request_id)
                return
            await self._publish_status("Downloaded", request_id)
            if hashlib.md5(blob, usedforsecurity=False).hexdigest() != checksum:
                await self._publish_status("InvalidChecksum", request_id)
                return
            await self._publish_status("ChecksumVerified", request_id)
            try:
                base = await self._publisher_base()
            except OSError as exc:
                log.info("! %s cannot publish: %s", self.station_id, exc)
                await self._publish_status("PublishFailed", request_id)
                return
            self.published[checksum] = blob
        finally:
            self._fetching.discard(checksum)
        await self._publish_status("Published", request_id, [f"{base}/firmware/{checksum}"])

    async def _publisher_base(self) -> str:
        """The address of the station's own image server (started on first use)."""
        if self._publisher is None:
            app = web.Application()
            app.add_routes([web.get("/firmware/{checksum}", self._serve_image)])
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            port = int(runner.addresses[0][1])
            self._publisher, self._publisher_url = runner, f"http://127.0.0.1:{port}"
        return self._publisher_url

    async def _serve_image(self, request: web.Request) -> web.Response:
        blob = self.published.get(request.match_info["checksum"].lower())
        if blob is None:
            return web.Response(status=404, text="no such image\n")
        return web.Response(body=blob, content_type="application/octet-stream")
