"""The admin API's bearer token as a stranger on this machine meets it: a token file that
holds no token (a crash between creating the file and writing it, an operator who emptied
it) must not open the API to an empty bearer token."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from csms.config import Settings
from support import RunningServer


async def raw_get(port: int, path: str, authorization: str) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     f"Authorization: {authorization}\r\nConnection: close\r\n\r\n".encode())
        await writer.drain()
        async with asyncio.timeout(5):
            return await reader.read()
    finally:
        writer.close()


@pytest.mark.parametrize("content", ["", "\n", "   \n"])
async def test_a_token_file_without_a_token_does_not_open_the_api(
    tmp_path: Path, content: str,
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "admin.token").write_text(content)
    (data / "admin.token").chmod(0o600)
    server = RunningServer(Settings(
        db=str(tmp_path / "c.sqlite3"), host="127.0.0.1", port=0, data_dir=str(data),
        admin_port=0, boot_get_configuration=False))
    try:
        await server.start()
    except Exception:  # refusing to serve with no token is a fix too
        return
    try:
        assert server.app is not None and server.app.admin is not None
        answer = await raw_get(server.app.admin.port, "/audit", "Bearer ")
        status = answer.split(b"\r\n", 1)[0]
        # the stranger reads the audit log (and may command every station) with no token
        assert b" 401 " in status, answer[:300]
    finally:
        await server.stop()


async def closed_by_server(reader: asyncio.StreamReader, timeout: float = 10) -> bool:
    """True when the server closed the socket (EOF or reset) within ``timeout``."""
    try:
        async with asyncio.timeout(timeout):
            while await reader.read(65536):
                pass
    except TimeoutError:  # before OSError, which it subclasses
        return False
    except (ConnectionError, OSError):
        return True
    return True


async def test_silent_and_stalled_sockets_on_the_admin_port_are_closed(
    tmp_path: Path,
) -> None:
    """The admin listener shares the station server's process (its file descriptors): a
    stranger who opens sockets and sends nothing, or half a request, keeps them as long
    as aiohttp's default allows (the station file listener closes both after the handshake
    timeout; the admin listener, with no token asked before the request is whole, did not
    within ten times that)."""
    server = RunningServer(Settings(
        db=str(tmp_path / "c.sqlite3"), host="127.0.0.1", port=0,
        data_dir=str(tmp_path / "data"), admin_port=0, boot_get_configuration=False,
        handshake_timeout=1.0))
    await server.start()
    try:
        assert server.app is not None and server.app.admin is not None
        port = server.app.admin.port
        silent = [await asyncio.open_connection("127.0.0.1", port) for _ in range(3)]
        stalled = [await asyncio.open_connection("127.0.0.1", port) for _ in range(3)]
        for _, w in stalled:
            w.write(b"GET /stations HTTP/1.1\r\nHost: x\r\n")  # never finished
        results = await asyncio.gather(*(closed_by_server(r) for r, _ in silent + stalled))
        for _, w in silent + stalled:
            w.close()
        assert results == [True] * 6
    finally:
        await server.stop()


async def test_a_body_trickled_past_the_timeout_closes_the_socket(tmp_path: Path) -> None:
    """The console's login form needs no token: a stranger who sends its headers and
    then a byte now and then held the socket and the handler reading it for ever."""
    server = RunningServer(Settings(
        db=str(tmp_path / "c.sqlite3"), host="127.0.0.1", port=0,
        data_dir=str(tmp_path / "data"), admin_port=0, boot_get_configuration=False,
        handshake_timeout=1.0))
    await server.start()
    try:
        assert server.app is not None and server.app.admin is not None
        reader, writer = await asyncio.open_connection("127.0.0.1", server.app.admin.port)
        writer.write(b"POST /console/login HTTP/1.1\r\nHost: x\r\n"
                     b"Content-Type: application/x-www-form-urlencoded\r\n"
                     b"Content-Length: 1000\r\n\r\ntoken=")

        async def trickle() -> None:
            for _ in range(40):  # 10 s of a byte every quarter second
                await asyncio.sleep(0.25)
                writer.write(b"x")

        feeding = asyncio.create_task(trickle())
        try:
            assert await closed_by_server(reader)
        finally:
            feeding.cancel()
            writer.close()
    finally:
        await server.stop()


async def answered(port: int) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        async with asyncio.timeout(5):
            return await reader.read()
    finally:
        writer.close()


@pytest.fixture
async def capped(tmp_path: Path) -> AsyncIterator[tuple[Any, list[Any]]]:
    """A server whose admin listener holds 3 sockets (long timeouts), and a list of the
    test's connections to it, closed after it."""
    server = RunningServer(Settings(
        db=str(tmp_path / "c.sqlite3"), host="127.0.0.1", port=0,
        data_dir=str(tmp_path / "data"), admin_port=0, boot_get_configuration=False,
        handshake_timeout=60.0))
    await server.start()
    held: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    try:
        assert server.app is not None and server.app.admin is not None
        server.app.admin.sockets.limit = 3
        yield server.app.admin, held
    finally:
        for _, w in held:
            w.close()
        await server.stop()


async def test_the_admin_listener_holds_a_bounded_number_of_sockets(
    capped: tuple[Any, list[Any]],
) -> None:
    """When full, the oldest silent socket gives way to a newcomer; when every socket has
    a request under way, a newcomer is closed on arrival (before the timeouts, which are
    long here)."""
    admin, held = capped
    port = admin.port
    for _ in range(3):
        held.append(await asyncio.open_connection("127.0.0.1", port))
    await until_open(admin, 3)
    # full of silent sockets: a request is answered, the oldest silent one closed
    assert b" 200 " in (await answered(port)).split(b"\r\n", 1)[0]
    assert await closed_by_server(held[0][0], timeout=5)
    assert admin.sockets.evicted >= 1 and admin.sockets.open <= 3
    # full of requests under way (bodies never finished): a newcomer is dropped
    for _, w in held[1:]:
        w.close()
    held.clear()
    for _ in range(3):
        r, w = await asyncio.open_connection("127.0.0.1", port)
        w.write(b"POST /console/login HTTP/1.1\r\nHost: x\r\n"
                b"Content-Type: application/x-www-form-urlencoded\r\n"
                b"Content-Length: 1000\r\n\r\ntoken=")
        held.append((r, w))
    await until_busy(admin, 3)
    assert await answered(port) == b""
    assert admin.sockets.dropped >= 1 and admin.sockets.open == 3


async def until_open(admin: Any, count: int) -> None:
    async with asyncio.timeout(5):
        while admin.sockets.open < count:
            await asyncio.sleep(0.01)


async def until_busy(admin: Any, count: int) -> None:
    """``count`` sockets held, none of them idle (each has started its request)."""
    async with asyncio.timeout(5):
        while admin.sockets.open < count or admin.sockets.idle:
            await asyncio.sleep(0.01)


async def test_a_socket_answered_is_idle_again(capped: tuple[Any, list[Any]]) -> None:
    """A keep-alive socket whose request was answered (a stranger's 401 included) is idle
    again: it gives way to a newcomer. Marked busy for good, a stranger sending a request
    on each of the listener's sockets now and then held them all, and the operator's
    connections were dropped."""
    admin, held = capped
    port = admin.port
    for _ in range(3):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /audit HTTP/1.1\r\nHost: x\r\n\r\n")  # no token: 401
        async with asyncio.timeout(5):
            assert b" 401 " in await reader.readline()
        held.append((reader, writer))
    await until_open(admin, 3)
    async with asyncio.timeout(5):
        while admin.sockets.idle < 3:
            await asyncio.sleep(0.01)
    assert b" 200 " in (await answered(port)).split(b"\r\n", 1)[0]
    assert admin.sockets.evicted >= 1


async def test_a_stranger_s_malformed_requests_do_not_fill_the_log(
    tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    """As on the station file listener (tests/integration/csms/test_files.py): a request
    the admin listener cannot parse is one warning line, the first time and every
    thousandth, never an ERROR with a traceback for each."""
    from tests.integration.csms.test_files import malformed_logged, send_malformed

    server = RunningServer(Settings(
        db=str(tmp_path / "c.sqlite3"), host="127.0.0.1", port=0,
        data_dir=str(tmp_path / "data"), admin_port=0, boot_get_configuration=False))
    await server.start()
    try:
        assert server.app is not None and server.app.admin is not None
        caplog.set_level(logging.INFO)
        await send_malformed(server.app.admin.port, 40)
    finally:
        await server.stop()
    logged = malformed_logged(caplog)
    assert len(logged) == 1, [r.getMessage()[:200] for r in logged]
    assert logged[0].levelno == logging.WARNING and logged[0].exc_info is None
