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
limit gets 413 and nothing of it is kept. An upload's body must keep pace: once
``handshake_timeout`` seconds have passed since its headers, it must have averaged
:data:`MIN_UPLOAD_RATE` bytes a second, or it is cut (408), its temporary file removed and
its URL free for another try. Without a time limit a station, or whoever held its upload
URL, that sent a byte now and then held the socket, the upload's place and a temporary
file for ever; the floor is below what a station on a poor cellular link sends, and it
gives the largest upload (``max_upload_bytes``) at most ``max_upload_bytes /
MIN_UPLOAD_RATE`` seconds (32 MiB: ~9 h). Files are stored under the data folder by
request id (:mod:`csms.filestore`), whatever name the station gave.

What a stranger's sockets may cost is bounded as on the OCPP port (:mod:`csms.transport`):
at most ``max_connections`` sockets at once, shared fairly per client when full (a new
socket of a client holding fewer takes the place of the newest idle one of the client
holding the most; otherwise it is closed on arrival), a TLS handshake and then a request
each within ``handshake_timeout`` (aiohttp kept a socket that sent nothing, or half a
request, for an hour; asyncio's TLS handshake waited 60 s), and
one TLS read buffer for the listener (asyncio gave each accepted socket 256 KiB of its
own: ~310 KB a silent socket).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import ssl
from collections import Counter
from pathlib import Path
from typing import Any, cast
from urllib.parse import unquote

from aiohttp import BodyPartReader, web
from aiohttp.abc import AbstractStreamWriter

from csms.config import Settings, cannot_listen
from csms.filestore import display_name, firmware_path, log_path
from csms.logsafe import protect
from csms.metrics import Metrics
from csms.service.charging import ChargingService
from csms.service.repeats import worth_logging
from csms.sockets import CountedSocket, ServerLog
from csms.transport import TLS_READ_SIZE, SharedBufferSSLProtocol, Tally

__all__ = ["FileServer"]

log = protect(logging.getLogger("csms.files"))

_CHUNK = 65536
# Bytes a second an upload's body must average once handshake_timeout has passed since its
# headers (see the module's docstring): a GPRS link moves ~4 KB/s.
MIN_UPLOAD_RATE = 1024
# Sockets the listener holds at once (requests being read, files moving, TLS handshakes):
# beyond, a new one is closed on arrival. Stations fetch a file now and then, when the
# operator asks; a fleet's firmware update is spread over its window.
MAX_CONNECTIONS = 512
# Downloads of one firmware URL at once: a station that asks again and again and reads
# nothing holds no more sockets than these (the others are answered 409).
MAX_DOWNLOADS_PER_REQUEST = 2


class _TooLarge(Exception):
    pass


class _Pace:
    """The deadline of an upload's body: ``grace`` seconds from its start, and
    1/:data:`MIN_UPLOAD_RATE` of a second more for each byte received."""

    def __init__(self, grace: float, within: asyncio.Timeout) -> None:
        self._start = asyncio.get_running_loop().time() + grace
        self._within = within
        within.reschedule(self._start)

    def received(self, size: int) -> None:
        """``size`` bytes of the body are in, in all."""
        self._within.reschedule(self._start + size / MIN_UPLOAD_RATE)


class _SentFile(web.FileResponse):
    """A file the handler sends itself (so that the download is counted while it runs).
    aiohttp prepares the handler's response once more when it returns; FileResponse
    would then open and send the file again, after its headers went out (an assertion
    failure, logged as an unhandled exception after every download): once is enough."""

    async def prepare(self, request: web.BaseRequest) -> AbstractStreamWriter | None:
        if self.prepared:
            return None
        return await super().prepare(request)


@web.middleware
async def _one_request(request: web.Request, handler: Any) -> web.StreamResponse:
    """One request per connection: a station fetches or sends one file, and a peer that
    asks again before the timeout would hold its socket for ever."""
    response: web.StreamResponse
    try:
        response = await handler(request)
    except web.HTTPException as exc:  # the router's 404 and 405
        response = web.Response(status=exc.status, text=exc.text)
    response.force_close()
    return response


class FileServer:
    def __init__(self, settings: Settings, service: ChargingService,
                 metrics: Metrics | None = None) -> None:
        self.settings = settings
        self.service = service
        self.metrics = metrics  # voltledger_connections_cut_total: files_limit, files_evicted
        self.host = settings.files_host or settings.host
        self.port = settings.files_port
        self.limit = settings.max_upload_bytes
        self.data_dir = Path(settings.data_dir).expanduser()
        self._receiving: set[int] = set()  # requests with an upload under way
        self._sending: Counter[int] = Counter()  # requests -> their downloads under way
        self._runner: web.AppRunner | None = None
        self._server: asyncio.Server | None = None
        self._tls = bool(settings.tls_cert)
        self.max_connections = MAX_CONNECTIONS
        self.dropped = 0  # sockets closed on arrival, over max_connections
        self.evicted = 0  # idle sockets closed for one of a client holding fewer
        self.slow_uploads = 0  # uploads cut for falling behind MIN_UPLOAD_RATE
        self._open = 0  # sockets held, TLS handshake finished or not
        # per client (source_of): the sockets it holds, and those of them that have not
        # started a request (oldest first): the ones that give way under pressure
        self._held = Tally()
        self._idle: dict[str, collections.OrderedDict[CountedSocket, None]] = {}
        # aiohttp's protocol of each socket -> the socket (a request knows its protocol)
        self._socket_of: dict[asyncio.BaseProtocol, CountedSocket] = {}
        self._tls_buffer = bytearray(TLS_READ_SIZE)
        self.app = web.Application(client_max_size=1024,
                                   middlewares=[self._started, _one_request])
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

    @property
    def open_connections(self) -> int:
        """The sockets the listener holds now (counted from their arrival to their close,
        TLS handshake or not)."""
        return self._open

    async def start(self) -> None:
        for folder in ("firmware", "logs"):
            (self.data_dir / folder).mkdir(parents=True, exist_ok=True)
        # keepalive_timeout: aiohttp closes a connection that has not sent a whole
        # request within it, from its start (after the TLS handshake) or its last answer
        # logger: a malformed or cut off request is a warning now and then (ServerLog)
        # lingering_time: how long aiohttp reads what is left of a body it answered
        # before (a refused or cut upload) before it closes the socket
        self._runner = web.AppRunner(self.app, access_log=None,
                                     keepalive_timeout=self.settings.handshake_timeout,
                                     lingering_time=min(10.0, self.settings.handshake_timeout),
                                     logger=ServerLog(log, "station files"))
        await self._runner.setup()
        handler = self._runner.server
        assert handler is not None
        loop = asyncio.get_running_loop()
        context = self._ssl_context() if self._tls else None

        def protocol(sock: CountedSocket) -> tuple[asyncio.Protocol, asyncio.BaseProtocol]:
            """aiohttp's protocol for an admitted socket, and the one the transport is
            to feed (the same, or TLS in front of it)."""
            app = handler()
            self._socket_of[app] = sock
            if context is None:
                return app, app
            return app, SharedBufferSSLProtocol(
                loop, app, context, self._tls_buffer,
                handshake_timeout=self.settings.handshake_timeout,
                shutdown_timeout=self.settings.close_timeout or 1.0, on_lost=sock.gone)

        try:
            self._server = await loop.create_server(lambda: CountedSocket(self, protocol),
                                                    self.host or None, self.port)
        except OSError as exc:  # a port in use: the flag to change
            raise cannot_listen("files_port", "files_host" if self.settings.files_host
                                else "host", self.host, self.port, exc) from None
        self.port = int(self._server.sockets[0].getsockname()[1])
        log.info("= station files on %s", self.url)

    # -- a fair share per client under pressure ------------------------------------------
    def _admit(self, sock: CountedSocket) -> bool:
        """Count a socket that arrived; False when it is to be closed at once."""
        source = sock.source
        if self._open >= self.max_connections and not self._make_room(source):
            self.dropped += 1
            if self.metrics is not None:
                self.metrics.connections_cut.labels("files_limit").inc()
            if worth_logging(self.dropped):
                log.warning("! station files: %d connections open, one dropped (%d"
                            " dropped so far)", self._open, self.dropped)
            return False
        self._open += 1
        self._held.add(source, 1)
        self._idle.setdefault(source, collections.OrderedDict())[sock] = None
        return True

    def _make_room(self, source: str) -> bool:
        """The listener is full and a socket from ``source`` arrived: close the newest
        socket without a request of the client holding the most, if ``source`` would
        still hold no more than it after the exchange. True when a place was freed."""
        victim = self._held.most()
        if victim is None or not self._held.evens_out(source, victim):
            return False
        idle = self._idle.get(victim)
        if not idle:
            return False  # every socket of it has a request under way
        sock = next(reversed(idle))
        sock.evict()
        self.evicted += 1
        if self.metrics is not None:
            self.metrics.connections_cut.labels("files_evicted").inc()
        if worth_logging(self.evicted):
            log.warning("! station files: %d connections open, an idle one from %s"
                        " (holding %d) closed for one from %s (%d closed so far)",
                        self._open + 1, victim, self._held.count.get(victim, 0) + 1,
                        source or "?", self.evicted)
        return True

    def _busy(self, sock: CountedSocket) -> None:
        """A request of the socket has started: it no longer gives way."""
        idle = self._idle.get(sock.source)
        if idle is not None and sock in idle:
            del idle[sock]
            if not idle:
                del self._idle[sock.source]

    def _gone(self, sock: CountedSocket, app: asyncio.BaseProtocol | None) -> None:
        """A counted socket closed (or was evicted): once for each."""
        self._busy(sock)
        self._open -= 1
        self._held.add(sock.source, -1)
        if app is not None:
            self._socket_of.pop(app, None)

    @web.middleware
    async def _started(self, request: web.Request, handler: Any) -> web.StreamResponse:
        """Mark the socket of a request as busy: aiohttp calls this once the request's
        line and headers are in, before its handler (and before any body is read), and
        the socket is found by the request's protocol (one dict look-up a request, nothing
        per read). The first byte read would be no sign: over https:// it is the TLS
        handshake's, and one byte would make a stranger's socket keep its place; so a peer
        that trickles a request it never finishes counts as idle, as a silent one, until
        its timeout."""
        sock = self._socket_of.get(request.protocol)
        if sock is not None:
            self._busy(sock)
        return cast(web.StreamResponse, await handler(request))

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
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
        request_id = transfer.id
        assert request_id is not None
        if self._sending[request_id] >= MAX_DOWNLOADS_PER_REQUEST:
            return web.Response(status=409, text="downloads of this file are under way\n")
        log.info("> firmware %s to %s (request %s)", image.version, transfer.station_id,
                 request_id)
        response = _SentFile(path, headers={
            "Content-Type": "application/octet-stream",
            "Content-Disposition": f'attachment; filename="{display_name(image.file_name)}"'})
        self._sending[request_id] += 1
        try:
            # sent here, not after the handler, so that the download is counted while
            # it runs
            await response.prepare(request)
        finally:
            self._sending[request_id] -= 1
            if not self._sending[request_id]:
                del self._sending[request_id]
        return response

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
                async with asyncio.timeout(None) as within:
                    name, size = await self._receive(
                        request, part, _Pace(self.settings.handshake_timeout, within))
            except TimeoutError:
                self.slow_uploads += 1
                if worth_logging(self.slow_uploads):
                    log.warning("! %s: log upload for request %s fell behind %d bytes a"
                                " second: cut (%d so far)", transfer.station_id,
                                transfer.id, MIN_UPLOAD_RATE, self.slow_uploads)
                return web.Response(status=408, text=f"the upload fell behind"
                                                     f" {MIN_UPLOAD_RATE} bytes a second\n")
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

    async def _receive(self, request: web.Request, part: Path,
                       pace: _Pace) -> tuple[str, int]:
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
                    return display_name(given), await self._write(field, part, pace)
                if isinstance(field, BodyPartReader):
                    await field.release()
        return display_name(name), await self._write(request.content, part, pace)

    async def _write(self, source: Any, part: Path, pace: _Pace) -> int:
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
                pace.received(size)
                f.write(chunk)
