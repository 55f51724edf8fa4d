"""The station file listener: firmware downloads and log uploads over HTTP(S).

Stations need a URL they can reach for UpdateFirmware and GetDiagnostics / GetLog. The
OCPP listener is a WebSocket server with its own transport (csms.transport) and the admin
API stays on loopback with a bearer token, so files get a listener of their own, public
like the OCPP port (``--files-host``/``--files-port``) and served over TLS with the OCPP
certificate when one is configured. Every URL holds a per-request token (32 random
bytes); nothing else is served:

* ``GET /firmware/<token>[/<name>]``: the image of one firmware update, until the end of
  its window, or of one publication by a local controller (2.0.1 L03);
* ``PUT /logs/<token>[/<name>]`` (the body is the file) or ``POST`` of a
  ``multipart/form-data`` form (the first file in it; 1.6 diagnostics uploads are
  usually so): one upload per request, at most ``max_upload_bytes``, until the
  request's URL expires.

A wrong, expired or used token gets 404 and learns nothing else; an upload beyond the
limit gets 413 and nothing of it is kept. Files are stored under the data folder by
request id (:mod:`csms.filestore`), whatever name the station gave.
"""

from __future__ import annotations

import contextlib
import logging
import os
import ssl
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from aiohttp import BodyPartReader, web

from csms.config import Settings
from csms.filestore import display_name, firmware_path, log_path
from csms.logsafe import protect
from csms.service.charging import ChargingService

__all__ = ["FileServer"]

log = protect(logging.getLogger("csms.files"))

_CHUNK = 65536


class _TooLarge(Exception):
    pass


class FileServer:
    def __init__(self, settings: Settings, service: ChargingService) -> None:
        self.settings = settings
        self.service = service
        self.host = settings.files_host or settings.host
        self.port = settings.files_port
        self.limit = settings.max_upload_bytes
        self.data_dir = Path(settings.data_dir).expanduser()
        self._receiving: set[int] = set()  # requests with an upload under way
        self._runner: web.AppRunner | None = None
        self._tls = bool(settings.tls_cert)
        self.app = web.Application(client_max_size=1024)
        self.app.add_routes([
            web.get("/firmware/{token}", self.download),
            web.get("/firmware/{token}/{name}", self.download),
            web.put("/logs/{token}", self.upload),
            web.put("/logs/{token}/{name}", self.upload),
            web.post("/logs/{token}", self.upload),
            web.post("/logs/{token}/{name}", self.upload),
        ])

    @property
    def url(self) -> str:
        """The address stations are given (``files_url`` or this listener's)."""
        if self.settings.files_url:
            return self.settings.files_url.rstrip("/")
        host = self.host if self.host not in ("", "0.0.0.0", "::") else "127.0.0.1"
        return f"{'https' if self._tls else 'http'}://{host}:{self.port}"

    def firmware_url(self, token: str) -> str:
        return f"{self.url}/firmware/{token}"

    def upload_url(self, token: str) -> str:
        return f"{self.url}/logs/{token}"

    def _ssl_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(self.settings.tls_cert, self.settings.tls_key or None)
        return ctx

    async def start(self) -> None:
        for folder in ("firmware", "logs"):
            (self.data_dir / folder).mkdir(parents=True, exist_ok=True)
        self._runner = web.AppRunner(self.app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port,
                           ssl_context=self._ssl_context() if self._tls else None)
        await site.start()
        addresses = self._runner.addresses
        if addresses:
            self.port = int(addresses[0][1])
        log.info("= station files on %s", self.url)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # -- firmware ------------------------------------------------------------------------
    async def download(self, request: web.Request) -> web.StreamResponse:
        found = await self.service.download_target(request.match_info["token"])
        if found is None:
            return web.Response(status=404, text="no such file\n")
        transfer, image = found
        path = firmware_path(self.data_dir, image.sha256)
        if not path.is_file():
            log.error("! firmware %s (%s) is missing from %s", image.version, image.sha256,
                      path.parent)
            return web.Response(status=404, text="no such file\n")
        log.info("> firmware %s to %s (request %s)", image.version, transfer.station_id,
                 transfer.id)
        return web.FileResponse(path, headers={
            "Content-Type": "application/octet-stream",
            "Content-Disposition": f'attachment; filename="{display_name(image.file_name)}"'})

    # -- logs ----------------------------------------------------------------------------
    async def upload(self, request: web.Request) -> web.Response:
        transfer = await self.service.upload_target(request.match_info["token"])
        if transfer is None or transfer.id is None:
            return web.Response(status=404, text="no such upload\n")
        if transfer.id in self._receiving:
            return web.Response(status=409, text="an upload for this request is under way\n")
        if request.content_length is not None and request.content_length > self.limit:
            return web.Response(status=413, text=f"at most {self.limit} bytes\n")
        self._receiving.add(transfer.id)
        final = log_path(self.data_dir, transfer.id)
        part = final.with_suffix(".part")
        try:
            try:
                name, size = await self._receive(request, part)
            except _TooLarge:
                log.warning("! %s: log upload for request %s beyond %d bytes: refused",
                            transfer.station_id, transfer.id, self.limit)
                return web.Response(status=413, text=f"at most {self.limit} bytes\n")
            except ValueError as exc:
                return web.Response(status=400, text=f"{exc}\n")
            os.replace(part, final)
            if not await self.service.upload_finished(transfer, name, size):
                final.unlink(missing_ok=True)
                return web.Response(status=404, text="no such upload\n")
            log.info("< log of %s for request %s: %d bytes", transfer.station_id,
                     transfer.id, size)
            return web.Response(status=201, text="stored\n")
        finally:
            with contextlib.suppress(FileNotFoundError):
                part.unlink()
            self._receiving.discard(transfer.id)

    async def _receive(self, request: web.Request, part: Path) -> tuple[str, int]:
        """Write the uploaded file to ``part``: (its name for display, its size)."""
        name = request.match_info.get("name")
        if request.method == "POST" and request.content_type.startswith("multipart/"):
            reader = await request.multipart()
            while True:
                field = await reader.next()
                if field is None:
                    raise ValueError("no file in the form")
                if isinstance(field, BodyPartReader) and (field.filename or
                                                          field.name in ("file", "uploadFile")):
                    given = unquote(field.filename) if field.filename else name
                    return display_name(given), await self._write(field, part)
                if isinstance(field, BodyPartReader):
                    await field.release()
        return display_name(name), await self._write(request.content, part)

    async def _write(self, source: Any, part: Path) -> int:
        size = 0
        with part.open("wb") as f:
            while True:
                chunk = await (source.read_chunk(_CHUNK) if isinstance(source, BodyPartReader)
                               else source.read(_CHUNK))
                if not chunk:
                    return size
                size += len(chunk)
                if size > self.limit:
                    raise _TooLarge
                f.write(chunk)
