"""The station file listener under attack: uploads beyond the limit, wrong, expired, reused
or another station's tokens, names that try to leave the data folder, over real HTTP; silent
and stalled sockets from strangers, on http:// and https://."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import socket
import ssl
import tracemalloc
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from yarl import URL

from bench.soak import write_tls_pair
from csms.config import Settings
from csms.domain.maintenance import FirmwareImage
from csms.filestore import firmware_path, log_path
from csms.service.ports import Tx
from support import RunningServer, until
from support.admin import api
from support.client import RawClient

from .test_transport import closed_by_server

LIMIT = 4096


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[RunningServer]:
    settings = Settings(db=str(tmp_path / "csms.sqlite3"), port=0, admin_port=0,
                        data_dir=str(tmp_path / "data"), call_timeout=5,
                        max_upload_bytes=LIMIT, transfer_hours=1.0)
    running = RunningServer(settings)
    await running.start()
    for sid in ("A1", "B1"):
        await running.add_station(sid)
    try:
        yield running
    finally:
        await running.stop()


async def request_log(server: RunningServer, client: RawClient, station: str,
                      log_type: str = "SecurityLog") -> tuple[int, str]:
    """A log request answered by ``client``: (request id, upload URL)."""
    task = asyncio.create_task(api(server, "POST", f"/stations/{station}/commands/get-log",
                                   {"type": log_type}))
    call = await asyncio.wait_for(client.calls.get(), 5)
    await client.answer(call[1], {"fileName": "x.log"} if call[2] == "GetDiagnostics"
                        else {"status": "Accepted", "filename": "x.log"})
    status, result = await task
    assert status == 200, result
    url = call[3].get("location") or call[3]["log"]["remoteLocation"]
    return result["request_id"], url


async def upload(url: str, body: bytes, method: str = "PUT", *,
                 chunked: bool = False) -> int:
    """An upload's HTTP status; ``chunked``: no Content-Length announced."""

    async def pieces() -> AsyncIterator[bytes]:
        for i in range(0, len(body), 1000):
            yield body[i:i + 1000]

    async with aiohttp.ClientSession() as http:
        if method == "POST":
            form = aiohttp.FormData()
            form.add_field("file", body, filename="../../admin.token")
            async with http.post(url, data=form) as r:
                return r.status
        async with http.request(method, url, data=pieces() if chunked else body) as r:
            return r.status


async def stored(server: RunningServer, rid: int) -> Any:
    async def work(tx: Tx) -> Any:
        return await tx.get_transfer(rid)

    return await server.repo.read(work)


async def test_upload_once_within_the_limit(server: RunningServer) -> None:
    data = Path(server.settings.data_dir)
    async with await RawClient.connect(server.url, "A1", ["ocpp2.0.1"]) as a:
        await server.wait_connected("A1")
        rid, url = await request_log(server, a, "A1")
        # beyond the limit, announced or not: refused, nothing kept
        assert await upload(url, b"x" * (LIMIT + 1)) == 413
        assert await upload(url, b"x" * (LIMIT + 1), chunked=True) == 413
        assert not log_path(data, rid).exists()
        assert not list((data / "logs").iterdir())
        assert (await stored(server, rid)).uploaded_at is None
        # the first upload within the limit is kept; the token works once
        assert await upload(url + "/..%2F..%2Fadmin.token", b"line\n" * 10) == 201
        assert log_path(data, rid).read_bytes() == b"line\n" * 10
        t = await stored(server, rid)
        assert t.size == 50 and t.file_name == "admin.token"
        assert await upload(url, b"again") == 404
        assert log_path(data, rid).read_bytes() == b"line\n" * 10
        assert (data / "admin.token").read_text().strip() == server.admin_token


async def test_multipart_post_keeps_a_safe_name(server: RunningServer) -> None:
    async with await RawClient.connect(server.url, "A1", ["ocpp1.6"]) as a:
        await server.wait_connected("A1")
        rid, url = await request_log(server, a, "A1", "Diagnostics")
        assert await upload(url, b"diag", method="POST") == 201
        t = await stored(server, rid)
        assert t.file_name == "admin.token" and t.size == 4
        assert sorted(p.name for p in (Path(server.settings.data_dir) / "logs").iterdir()) \
            == [f"{rid}.log"]


async def test_tokens_are_per_station_and_request(server: RunningServer) -> None:
    async with await RawClient.connect(server.url, "A1", ["ocpp2.0.1"]) as a, \
            await RawClient.connect(server.url, "B1", ["ocpp2.0.1"]) as b:
        await server.wait_connected("A1")
        await server.wait_connected("B1")
        rid_a, url_a = await request_log(server, a, "A1")
        rid_b, url_b = await request_log(server, b, "B1")
        base = url_a.rsplit("/", 1)[0]
        for wrong in (base + "/" + "A" * 43, base + "/", base + "/%2e%2e",
                      url_a[:-1], base + f"/{rid_b}"):
            assert await upload(wrong, b"forged") in (404, 405)
        # A's token writes A's log only
        assert await upload(url_a, b"from A") == 201
        assert (await stored(server, rid_b)).uploaded_at is None
        assert not log_path(server.settings.data_dir, rid_b).exists()
        # a firmware URL's token is no upload token, and the other way round
        async with aiohttp.ClientSession() as http, http.get(
                url_b.replace("/logs/", "/firmware/")) as r:
            assert r.status == 404
        # status for A's request from B changes nothing of A's request
        assert await b.result("LogStatusNotification", {
            "status": "UploadFailure", "requestId": rid_a}) == {}
        assert (await stored(server, rid_a)).status == "Accepted"
        assert await a.result("LogStatusNotification", {
            "status": "Uploaded", "requestId": rid_a}) == {}
        assert (await stored(server, rid_a)).status == "Uploaded"


async def test_expired_token(server: RunningServer) -> None:
    async with await RawClient.connect(server.url, "A1", ["ocpp2.0.1"]) as a:
        await server.wait_connected("A1")
        assert server.app is not None
        server.app.service.transfer_hours = 0.5 / 3600  # half a second
        rid, url = await request_log(server, a, "A1")
        await asyncio.sleep(0.6)
        assert await upload(url, b"late") == 404
        assert (await stored(server, rid)).uploaded_at is None


async def test_files_off(tmp_path: Path) -> None:
    settings = Settings(db=str(tmp_path / "csms.sqlite3"), port=0, admin_port=0,
                        data_dir=str(tmp_path / "data"), files_port=-1)
    running = RunningServer(replace(settings))
    await running.start()
    try:
        await running.add_station("A1")
        async with await RawClient.connect(running.url, "A1", ["ocpp1.6"]) as a:
            await running.wait_connected("A1")
            status, result = await api(running, "POST", "/stations/A1/commands/get-log", {})
            assert status == 400 and "--files-port" in result["error"]
            assert a.calls.empty()
    finally:
        await running.stop()


# -- what a stranger's sockets may cost ------------------------------------------------------
def files_settings(tmp_path: Path, scheme: str, **more: Any) -> Settings:
    """Settings of a server whose file listener speaks ``scheme`` (http or https)."""
    tls: dict[str, Any] = {}
    if scheme == "https":
        cert, key = write_tls_pair(tmp_path)
        tls = {"tls_cert": str(cert), "tls_key": str(key), "tls_port": 0}
    return Settings(db=str(tmp_path / "csms.sqlite3"), port=0, admin_port=0,
                    data_dir=str(tmp_path / "data"), call_timeout=5, **tls, **more)


async def serving(settings: Settings, station: str | None = "A1"
                  ) -> AsyncIterator[RunningServer]:
    """A server of ``settings`` running, with ``station`` added, stopped after."""
    running = RunningServer(settings)
    await running.start()
    try:
        if station is not None:
            await running.add_station(station)
        yield running
    finally:
        await running.stop()


@pytest.fixture(params=["http", "https"])
async def guarded_files(request: pytest.FixtureRequest,
                        tmp_path: Path) -> AsyncIterator[RunningServer]:
    """A server whose file listener speaks http:// or https://, with a short handshake
    timeout so that a test reaches it."""
    async for running in serving(files_settings(tmp_path, request.param,
                                                handshake_timeout=1.0), station=None):
        yield running


@pytest.fixture(params=["http", "https"])
async def shared_files(request: pytest.FixtureRequest,
                       tmp_path: Path) -> AsyncIterator[RunningServer]:
    """A server whose file listener speaks http:// or https://, with station A1 and the
    default handshake timeout (silent sockets stay for the length of a test)."""
    async for running in serving(files_settings(tmp_path, request.param)):
        yield running


def files_port(server: RunningServer) -> int:
    assert server.app is not None and server.app.files is not None
    return server.app.files.port


def client_tls() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


async def test_silent_and_stalled_sockets_are_closed(guarded_files: RunningServer) -> None:
    """A socket that sends nothing, or half a request, is closed after the handshake
    timeout (aiohttp's own default kept both for an hour; asyncio's TLS handshake waited
    60 s)."""
    port = files_port(guarded_files)
    tls = guarded_files.settings.tls_cert != ""
    silent = [await asyncio.open_connection("127.0.0.1", port) for _ in range(3)]
    stalled = [await asyncio.open_connection("127.0.0.1", port,
                                             ssl=client_tls() if tls else None)
               for _ in range(3)]
    for _, w in stalled:
        w.write(b"GET /firmware/x HTTP/1.1\r\nHost: x\r\n")  # never finished
    results = await asyncio.gather(*(closed_by_server(r) for r, _ in silent + stalled))
    assert results == [True] * 6
    for _, w in silent + stalled:
        w.close()
    # the listener still serves
    scheme = "https" if tls else "http"
    async with aiohttp.ClientSession() as http, http.get(
            f"{scheme}://127.0.0.1:{port}/firmware/nothing", ssl=client_tls()) as r:
        assert r.status == 404


def cut(server: RunningServer, reason: str) -> float:
    """``voltledger_connections_cut_total{reason}`` of the server's metrics."""
    value = server.central.metrics.connections_cut.labels(reason)._value.get()
    return float(value)


async def test_connections_beyond_the_limit_are_dropped(guarded_files: RunningServer) -> None:
    """The listener holds at most ``max_connections`` sockets: one more is closed on
    arrival, and once the others are gone a station is served again."""
    assert guarded_files.app is not None and guarded_files.app.files is not None
    files = guarded_files.app.files
    files.max_connections = 4
    port = files_port(guarded_files)
    held = [await asyncio.open_connection("127.0.0.1", port) for _ in range(4)]
    async with asyncio.timeout(5):
        while files.open_connections < 4:
            await asyncio.sleep(0.02)
    extra, extra_w = await asyncio.open_connection("127.0.0.1", port)
    assert await closed_by_server(extra, timeout=1)
    assert files.dropped == 1
    assert cut(guarded_files, "files_limit") == 1  # what an operator's /metrics shows
    for _, w in held:
        w.close()
    extra_w.close()
    async with asyncio.timeout(5):
        while files.open_connections:
            await asyncio.sleep(0.02)
    scheme = "https" if guarded_files.settings.tls_cert else "http"
    async with aiohttp.ClientSession() as http, http.get(
            f"{scheme}://127.0.0.1:{port}/firmware/nothing", ssl=client_tls()) as r:
        assert r.status == 404


async def test_silent_sockets_cost_no_read_buffer_each(guarded_files: RunningServer) -> None:
    """asyncio's TLS layer gave every accepted socket a 256 KiB read buffer of its own
    (~310 KB a silent socket to the https:// listener); the file listener shares one."""
    port = files_port(guarded_files)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        socks = [await asyncio.open_connection("127.0.0.1", port) for _ in range(40)]
        await asyncio.sleep(0.3)  # every accept handled
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    for _, w in socks:
        w.close()
    assert grown / 40 < 32 * 1024, f"{grown / 40:.0f} bytes a silent socket"


async def test_one_request_per_connection(guarded_files: RunningServer) -> None:
    """A connection is closed once its request is answered: a stranger cannot keep one
    by asking again before the timeout (each answer started the keep-alive anew)."""
    port = files_port(guarded_files)
    tls = guarded_files.settings.tls_cert != ""
    # a wrong token, a path the listener does not serve, a method it does not take
    for request in (b"GET /firmware/a", b"GET /nothing", b"DELETE /logs/a"):
        reader, writer = await asyncio.open_connection("127.0.0.1", port,
                                                       ssl=client_tls() if tls else None)
        writer.write((request + b" HTTP/1.1\r\nHost: x\r\n\r\n") * 3)
        received = b""
        async with asyncio.timeout(5):
            while chunk := await reader.read(65536):
                received += chunk
        writer.close()
        assert received.count(b"HTTP/1.1 4") == 1, (request, received)


async def firmware_url(server: RunningServer, client: RawClient, blob: bytes) -> str:
    """The download URL of a firmware update ``client`` (2.0.1) accepted."""
    digest = hashlib.sha256(blob).hexdigest()
    path = firmware_path(server.settings.data_dir, digest)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(blob)

    async def add(tx: Tx) -> None:
        await tx.add_firmware(FirmwareImage("big-1.0", "fw.bin", len(blob), digest,
                                            datetime.now(UTC)))

    await server.repo.unit(add)
    task = asyncio.create_task(api(server, "POST", "/stations/A1/commands/update-firmware",
                                   {"version": "big-1.0", "window_end": "+1h"}))
    call = await asyncio.wait_for(client.calls.get(), 5)
    await client.answer(call[1], {"status": "Accepted"})
    status, result = await task
    assert status == 200, result
    return str(call[3]["firmware"]["location"])


async def stalled_download(url: str, local: tuple[str, int] | None = None) -> socket.socket:
    """A download whose client reads nothing after asking (from ``local``)."""
    host, _, rest = url.removeprefix("http://").partition("/")
    name, _, port = host.partition(":")
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    if local is not None:
        s.bind(local)
    s.setblocking(False)
    loop = asyncio.get_running_loop()
    await loop.sock_connect(s, (name, int(port)))
    await loop.sock_sendall(s, f"GET /{rest} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    return s


async def test_a_station_cannot_hold_the_listener_with_its_download(
        server: RunningServer) -> None:
    """A station given a download URL that asks for it again and again, reading nothing,
    holds at most MAX_DOWNLOADS_PER_REQUEST connections; others are answered 409 at once,
    and another station's download still gets through."""
    from csms.files import MAX_DOWNLOADS_PER_REQUEST

    assert server.app is not None and server.app.files is not None
    server.app.files.max_connections = 6
    blob = os.urandom(16 * 1024 * 1024)  # more than the socket buffers take
    async with await RawClient.connect(server.url, "A1", ["ocpp2.0.1"]) as a:
        await server.wait_connected("A1")
        url = await firmware_url(server, a, blob)
        stalled = [await stalled_download(url) for _ in range(MAX_DOWNLOADS_PER_REQUEST)]
        await asyncio.sleep(0.3)  # their answers started
        async with aiohttp.ClientSession() as http:
            for _ in range(6):
                async with http.get(url) as r:
                    assert r.status == 409
            for s in stalled:
                s.close()
            async with asyncio.timeout(5):
                while True:
                    async with http.get(url) as r:
                        if r.status == 200:
                            assert await r.read() == blob
                            break
                    await asyncio.sleep(0.05)


async def test_a_download_is_answered_once(server: RunningServer,
                                           caplog: pytest.LogCaptureFixture) -> None:
    """A download, whole or a range of it, gets the file and leaves no error behind
    (aiohttp prepared the handler's response a second time, after it was sent: an
    "Unhandled exception" logged after every download)."""
    blob = os.urandom(200 * 1024)
    async with await RawClient.connect(server.url, "A1", ["ocpp2.0.1"]) as a:
        await server.wait_connected("A1")
        url = await firmware_url(server, a, blob)
        caplog.set_level("ERROR", logger="aiohttp")
        async with aiohttp.ClientSession() as http:
            async with http.get(url) as r:
                assert r.status == 200
                assert await r.read() == blob
            async with http.get(url, headers={"Range": "bytes=1000-4999"}) as r:
                assert r.status == 206
                assert await r.read() == blob[1000:5000]
        await asyncio.sleep(0.2)  # the handler's task is over
        assert server.app is not None and server.app.files is not None
        assert not server.app.files._sending
    errors = [(r.name, r.getMessage()) for r in caplog.records if r.levelname == "ERROR"]
    assert errors == []


# -- a fair share per address when the listener is full -------------------------------------
STRANGER = ("127.0.0.2", 0)  # a second loopback address: another client than 127.0.0.1


async def hold(port: int, count: int, local: tuple[str, int] | None = None
               ) -> list[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    """``count`` silent sockets to the listener, from ``local``."""
    return [await asyncio.open_connection("127.0.0.1", port, local_addr=local)
            for _ in range(count)]


async def until_open(server: RunningServer, count: int) -> None:
    assert server.app is not None and server.app.files is not None
    files = server.app.files
    async with asyncio.timeout(5):
        while files.open_connections != count:
            await asyncio.sleep(0.02)


async def test_a_stranger_filling_the_listener_gives_way_to_a_station(
        shared_files: RunningServer) -> None:
    """One address holding every socket of a full listener with silent ones (each
    reopened as it times out) dropped every station's download on arrival. Now a station
    from another address takes the place of the stranger's newest silent socket, and the
    others stay."""
    assert shared_files.app is not None and shared_files.app.files is not None
    files = shared_files.app.files
    files.max_connections = 4
    port = files_port(shared_files)
    blob = os.urandom(256 * 1024)
    async with await RawClient.connect(shared_files.url, "A1", ["ocpp2.0.1"]) as a:
        await shared_files.wait_connected("A1")
        url = await firmware_url(shared_files, a, blob)
        stranger = await hold(port, 4, STRANGER)
        await until_open(shared_files, 4)
        async with aiohttp.ClientSession() as http, http.get(url, ssl=client_tls()) as r:
            assert r.status == 200
            assert await r.read() == blob
        closed = await asyncio.gather(*(closed_by_server(r, timeout=0.5)
                                        for r, _ in stranger))
        assert closed == [False, False, False, True]  # the newest gave way
        assert files.dropped == 0
        assert (cut(shared_files, "files_evicted"), cut(shared_files, "files_limit")) == (1, 0)
        await until_open(shared_files, 3)
        for _, w in stranger:
            w.close()


async def test_one_address_alone_may_take_the_whole_listener(
        shared_files: RunningServer) -> None:
    """While there is room nothing changes: one address (a fleet behind one NAT address)
    may hold every socket; one more from it is dropped, and none of its own gives way."""
    assert shared_files.app is not None and shared_files.app.files is not None
    files = shared_files.app.files
    files.max_connections = 4
    port = files_port(shared_files)
    held = await hold(port, 4, STRANGER)
    await until_open(shared_files, 4)
    extra, extra_w = await asyncio.open_connection("127.0.0.1", port, local_addr=STRANGER)
    assert await closed_by_server(extra, timeout=1)
    assert files.dropped == 1
    assert await asyncio.gather(*(closed_by_server(r, timeout=0.2) for r, _ in held)) \
        == [False] * 4
    for _, w in [*held, (extra, extra_w)]:
        w.close()


async def test_sockets_with_a_request_under_way_do_not_give_way(
        server: RunningServer) -> None:
    """Only sockets that have not sent a request give way: when the address holding the
    most is downloading on every socket it holds, a newcomer is dropped as before."""
    from csms.files import MAX_DOWNLOADS_PER_REQUEST

    assert server.app is not None and server.app.files is not None
    files = server.app.files
    files.max_connections = MAX_DOWNLOADS_PER_REQUEST
    port = files_port(server)
    blob = os.urandom(16 * 1024 * 1024)  # more than the socket buffers take
    async with await RawClient.connect(server.url, "A1", ["ocpp2.0.1"]) as a:
        await server.wait_connected("A1")
        url = await firmware_url(server, a, blob)
        stalled = [await stalled_download(url, STRANGER)
                   for _ in range(MAX_DOWNLOADS_PER_REQUEST)]
        async with asyncio.timeout(5):
            while sum(files._sending.values()) < MAX_DOWNLOADS_PER_REQUEST:
                await asyncio.sleep(0.02)
        newcomer, w = await asyncio.open_connection("127.0.0.1", port)
        assert await closed_by_server(newcomer, timeout=1)
        assert files.dropped == 1
        assert sum(files._sending.values()) == MAX_DOWNLOADS_PER_REQUEST
        w.close()
        for s in stalled:
            s.close()


# Requests aiohttp cannot parse: a control character in a header, in the path, a
# Content-Length twice or not a number
MALFORMED = (b"GET /firmware/a HTTP/1.1\r\nHost: x\r\nX: \x1b[31mred\r\n\r\n",
             b"GET /firmware/\x1b[2J HTTP/1.1\r\nHost: x\r\n\r\n",
             b"PUT /logs/a HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
             b"PUT /logs/a HTTP/1.1\r\nHost: x\r\nContent-Length: \xe2\x80\xae9\r\n\r\n")


async def send_malformed(port: int, times: int, tls: ssl.SSLContext | None = None) -> None:
    """``times`` malformed requests, one a connection, each answered 400."""
    for i in range(times):
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=tls)
        writer.write(MALFORMED[i % len(MALFORMED)])
        async with asyncio.timeout(5):
            answer = await reader.read()
        writer.close()
        assert answer.startswith(b"HTTP/1.0 400 "), answer[:100]


def malformed_logged(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records
            if r.name.startswith(("aiohttp", "csms")) and r.levelno >= logging.WARNING]


async def test_a_stranger_s_malformed_requests_do_not_fill_the_log(
    guarded_files: RunningServer, caplog: pytest.LogCaptureFixture,
) -> None:
    """aiohttp logged each request it could not parse as an ERROR with its traceback (11
    lines): whoever reaches the public port decided how fast the node's log grows (1.1 MB
    for 2,000 requests, sent in 0.6 s). Now the first is one warning line, and then every
    thousandth, as other repeated warnings."""
    caplog.set_level(logging.INFO)
    tls = client_tls() if guarded_files.settings.tls_cert else None
    await send_malformed(files_port(guarded_files), 40, tls)
    logged = malformed_logged(caplog)
    assert len(logged) == 1, [r.getMessage()[:200] for r in logged]
    line = logged[0]
    assert line.levelno == logging.WARNING and line.exc_info is None
    assert "\n" not in line.getMessage() and "\x1b" not in line.getMessage()
    assert "malformed request" in line.getMessage()


async def test_a_station_dropping_its_upload_again_and_again_does_not_fill_the_log(
    server: RunningServer, caplog: pytest.LogCaptureFixture,
) -> None:
    """An upload cut off half way keeps its URL (the station may try again), and each one
    was an ERROR with a traceback: a station with one upload URL wrote as many as it
    liked. Now one warning line, then every thousandth; the URL still takes the whole
    file."""
    caplog.set_level(logging.INFO)
    async with await RawClient.connect(server.url, "A1", ["ocpp1.6"]) as a:
        await server.wait_connected("A1")
        rid, url = await request_log(server, a, "A1", "Diagnostics")
        target = URL(url)
        assert target.host is not None and target.port is not None
        for _ in range(20):
            _, writer = await asyncio.open_connection(target.host, target.port)
            writer.write(f"PUT {target.raw_path} HTTP/1.1\r\nHost: x\r\n"
                         "Content-Length: 1000\r\n\r\nhalf".encode())
            await writer.drain()
            writer.close()
            await writer.wait_closed()

            async def settled() -> bool:
                return not server.app.files._receiving  # type: ignore[union-attr]

            await until(settled, "the cut off upload to end")
        assert await upload(url, b"whole\n") == 201
    assert log_path(server.settings.data_dir, rid).read_bytes() == b"whole\n"
    logged = malformed_logged(caplog)
    assert len(logged) == 1, [r.getMessage()[:200] for r in logged]
    assert logged[0].levelno == logging.WARNING and logged[0].exc_info is None
    assert "cut off by its client" in logged[0].getMessage()


@pytest.fixture
async def hurried(tmp_path: Path) -> AsyncIterator[RunningServer]:
    """A server with station A1 whose file listener gives a request 1 s (the handshake
    timeout) before its body must keep pace."""
    async for running in serving(files_settings(
            tmp_path, "http", max_upload_bytes=LIMIT, transfer_hours=1.0,
            handshake_timeout=1.0)):
        yield running


async def trickle(url: str, head: str, piece: bytes, every: float,
                  times: int) -> tuple[asyncio.StreamReader, asyncio.Task[None]]:
    """Send ``head`` to the upload ``url``, then ``piece`` every ``every`` seconds."""
    target = URL(url)
    assert target.host is not None and target.port is not None
    reader, writer = await asyncio.open_connection(target.host, target.port)
    writer.write(f"PUT {target.raw_path} HTTP/1.1\r\nHost: {target.host}\r\n{head}"
                 "\r\n".encode())

    async def feed() -> None:
        try:
            for _ in range(times):
                await asyncio.sleep(every)
                writer.write(piece)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    return reader, asyncio.create_task(feed())


async def test_an_upload_that_trickles_is_cut_and_its_url_still_works(
    hurried: RunningServer,
) -> None:
    """A station (or whoever holds its upload URL) that sends a byte now and then held the
    socket, the upload's place (a second attempt is refused while one is under way) and a
    temporary file for ever: the body had no time limit. A body that falls behind a floor
    rate once the handshake timeout has passed is now cut (408), the temporary file
    removed, and the URL takes the whole file afterwards."""
    data = Path(hurried.settings.data_dir)
    async with await RawClient.connect(hurried.url, "A1", ["ocpp2.0.1"]) as a:
        await hurried.wait_connected("A1")
        rid, url = await request_log(hurried, a, "A1")
        reader, feeding = await trickle(url, "Content-Length: 1000\r\n", b"x", 0.2, 50)
        try:
            started = asyncio.get_running_loop().time()
            answer = b""
            async with asyncio.timeout(8):
                with contextlib.suppress(ConnectionResetError):  # bytes sent after the close
                    while chunk := await reader.read(65536):
                        answer += chunk
            took = asyncio.get_running_loop().time() - started
        finally:
            feeding.cancel()
        assert b" 408 " in answer.split(b"\r\n", 1)[0], answer[:200]
        assert took < 4, took
        assert not list((data / "logs").iterdir())  # no temporary file left
        assert await upload(url, b"whole\n") == 201
    assert log_path(data, rid).read_bytes() == b"whole\n"


async def test_the_size_limit_holds_for_a_body_that_trickles(hurried: RunningServer) -> None:
    """A chunked body (no length announced) sent fast enough to keep pace, beyond the
    limit: refused once it passes it, nothing kept."""
    data = Path(hurried.settings.data_dir)
    async with await RawClient.connect(hurried.url, "A1", ["ocpp2.0.1"]) as a:
        await hurried.wait_connected("A1")
        rid, url = await request_log(hurried, a, "A1")
        piece = b"200\r\n" + b"y" * 512 + b"\r\n"
        reader, feeding = await trickle(url, "Transfer-Encoding: chunked\r\n", piece, 0.1,
                                        4 * LIMIT // 512)
        try:
            answer = b""
            async with asyncio.timeout(8):
                with contextlib.suppress(ConnectionResetError):
                    while chunk := await reader.read(65536):
                        answer += chunk
        finally:
            feeding.cancel()
        assert b" 413 " in answer.split(b"\r\n", 1)[0], answer[:200]
        assert not list((data / "logs").iterdir())
        assert (await stored(hurried, rid)).uploaded_at is None
