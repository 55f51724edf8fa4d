"""The station file listener under attack: uploads beyond the limit, wrong, expired, reused
or another station's tokens, names that try to leave the data folder, over real HTTP."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from csms.config import Settings
from csms.filestore import log_path
from csms.service.ports import Tx
from support import RunningServer
from support.admin import api
from support.client import RawClient

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
