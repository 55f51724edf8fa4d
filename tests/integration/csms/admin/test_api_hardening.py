"""The admin API's bearer token as a stranger on this machine meets it: a token file that
holds no token (a crash between creating the file and writing it, an operator who emptied
it) must not open the API to an empty bearer token."""

from __future__ import annotations

import asyncio
import contextlib
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
        writer.write(b"POST /console/login HTTP/1.1\r\nHost: 127.0.0.1\r\n"
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
        writer.write(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
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
    a whole request under way, a newcomer is closed on arrival (before the timeouts, which
    are long here)."""
    admin, held = capped
    port = admin.port
    for _ in range(3):
        held.append(await asyncio.open_connection("127.0.0.1", port))
    await until_open(admin, 3)
    # full of silent sockets: a request is answered, the oldest silent one closed
    assert b" 200 " in (await answered(port)).split(b"\r\n", 1)[0]
    assert await closed_by_server(held[0][0], timeout=5)
    assert admin.sockets.evicted >= 1 and admin.sockets.open <= 3
    # full of whole requests being answered (the other workers' metrics are slow to
    # read): a newcomer is dropped
    for _, w in held[1:]:
        w.close()
    held.clear()

    read = asyncio.Event()  # the slow reads end when the test is done with them

    async def slow_workers() -> list[str | None]:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(30):
                await read.wait()
        return []

    admin.other_workers = slow_workers
    for _ in range(3):
        r, w = await asyncio.open_connection("127.0.0.1", port)
        w.write(f"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                f"Authorization: Bearer {admin.token}\r\n\r\n".encode())
        held.append((r, w))
    await until_busy(admin, 3)
    try:
        assert await answered(port) == b""
        assert admin.sockets.dropped >= 1 and admin.sockets.open == 3
    finally:
        # else the server's stop waits for the three answers (its shutdown_timeout)
        read.set()


async def operator_wait(port: int) -> float:
    """Seconds until the operator's GET /health is answered 200, retried every 0.1 s when
    its connection is closed on arrival (as ``curl --retry`` would)."""
    started = asyncio.get_running_loop().time()
    async with asyncio.timeout(30):
        while b" 200 " not in (await answered_or_nothing(port)).split(b"\r\n", 1)[0]:
            await asyncio.sleep(0.1)
    return asyncio.get_running_loop().time() - started


async def answered_or_nothing(port: int) -> bytes:
    try:
        return await answered(port)
    except (ConnectionError, OSError):
        return b""


async def test_requests_whose_body_trickles_give_way_to_the_operator(
    capped: tuple[Any, list[Any]],
) -> None:
    """A stranger who sends a request's headers and then its body a byte now and then, on
    every socket the listener holds (and opens a new one as each is cut), held the
    operator out: the operator's requests were closed on arrival, for as long as the
    stranger kept at it (64 such sockets on the default listener: the operator's GET,
    retried, waited 9.5 to 27 s). The oldest of them now gives way to a newcomer."""
    admin, held = capped
    port = admin.port
    for _ in range(3):
        r, w = await asyncio.open_connection("127.0.0.1", port)
        w.write(b"POST /console/login HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                b"Content-Type: application/x-www-form-urlencoded\r\n"
                b"Content-Length: 1000\r\n\r\ntoken=")
        held.append((r, w))
    await until_busy(admin, 3)
    assert await answered(port) != b""  # not closed on arrival: answered at once
    assert await closed_by_server(held[0][0], timeout=5)  # the oldest trickle gave way
    assert admin.sockets.evicted >= 1 and admin.sockets.open <= 3


async def test_requests_waiting_out_wrong_tokens_give_way_to_the_operator(
    capped: tuple[Any, list[Any]],
) -> None:
    """Wrong tokens make the next checks from their address wait (up to 4 s each): a
    stranger's guesses sent on every socket of the listener, each waiting its turn, held
    them all and the operator's requests were closed on arrival."""
    from csms.service.ratelimit import address_key

    admin, held = capped
    port = admin.port
    for _ in range(20):
        admin.guessing.failed(address_key("127.0.0.1"))
    assert admin.guessing.wait(address_key("127.0.0.1")) >= 4
    for _ in range(3):
        r, w = await asyncio.open_connection("127.0.0.1", port)
        w.write(b"GET /audit HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                b"Authorization: Bearer guessed\r\n\r\n")
        held.append((r, w))
    await until_busy(admin, 3)
    assert await operator_wait(port) < 1.0


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
        writer.write(b"GET /audit HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")  # no token: 401
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


# -- DNS rebinding: a page of another site whose name now resolves to this machine ----------
async def status_for_host(port: int, path: str, host: str | None) -> tuple[bytes, bytes]:
    """(status line, body) of a GET ``path`` whose Host header is ``host`` (None: none
    sent, over HTTP/1.0)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        if host is None:
            writer.write(f"GET {path} HTTP/1.0\r\n\r\n".encode())
        else:
            writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n"
                         "Connection: close\r\n\r\n".encode())
        async with asyncio.timeout(5):
            answer = await reader.read()
    finally:
        writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    return head.split(b"\r\n", 1)[0], body


@pytest.fixture
async def admin_port(tmp_path: Path) -> AsyncIterator[int]:
    """The admin port of a server on loopback that also serves the name
    csms.example.org (as behind a reverse proxy)."""
    server = RunningServer(Settings(
        db=str(tmp_path / "c.sqlite3"), host="127.0.0.1", port=0,
        data_dir=str(tmp_path / "data"), admin_port=0, boot_get_configuration=False,
        admin_hosts="csms.example.org, Other.Example.org."))
    await server.start()
    try:
        assert server.app is not None and server.app.admin is not None
        yield server.app.admin.port
    finally:
        await server.stop()


@pytest.mark.parametrize("path", ["/health", "/console/login", "/openapi.json"])
@pytest.mark.parametrize("host", ["evil.example", "evil.example:{port}", "127.0.0.1.nip.io",
                                  "localhost.evil.example:{port}", "EVIL.example"])
async def test_a_host_the_operator_does_not_serve_is_refused(
    admin_port: int, path: str, host: str,
) -> None:
    """A page of evil.example whose name re-resolves to 127.0.0.1 talks to the admin
    listener as its own origin: it read /health and the console's login page, and could
    drive whatever trusts the browser. Its requests carry Host: evil.example."""
    status, body = await status_for_host(admin_port, path, host.format(port=admin_port))
    assert b" 421 " in status, (status, body[:200])
    assert body.count(b"\n") == 1 and b"Host" in body, body


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.1:{port}", "localhost",
                                  "LOCALHOST:{port}", "[::1]:{port}", "127.0.0.2",
                                  "csms.example.org", "csms.example.org:443",
                                  "other.example.org", None])
async def test_the_hosts_the_operator_serves_are_answered(
    admin_port: int, host: str | None,
) -> None:
    status, body = await status_for_host(
        admin_port, "/health", None if host is None else host.format(port=admin_port))
    assert b" 200 " in status, (status, body[:200])


async def test_a_stranger_s_new_sockets_never_close_the_operator_s(
    capped: tuple[Any, list[Any]],
) -> None:
    """A stranger on another address (the listener public, --admin-public) fills the
    listener with trickled bodies and keeps opening more: each newcomer of the stranger
    closes one of the stranger's own, never the operator's keep-alive socket, older and
    idle between its requests (the oldest idle socket gave way first, whoever held it)."""
    admin, held = capped
    port = admin.port
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    held.append((reader, writer))

    async def health() -> bytes:
        writer.write(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        async with asyncio.timeout(5):
            status = await reader.readline()
            length = 0
            while (line := await reader.readline()) not in (b"\r\n", b""):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            await reader.readexactly(length)
        return status

    assert b" 200 " in await health()
    for _ in range(4):  # two fill the listener, each further one closes an older one
        r, w = await asyncio.open_connection("127.0.0.1", port, local_addr=("127.0.0.2", 0))
        w.write(b"POST /console/login HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                b"Content-Type: application/x-www-form-urlencoded\r\n"
                b"Content-Length: 1000\r\n\r\ntoken=")
        held.append((r, w))
        async with asyncio.timeout(5):
            while admin.sockets.idle > 1 or admin.sockets.open < min(3, len(held)):
                await asyncio.sleep(0.01)
    assert admin.sockets.evicted >= 2
    assert b" 200 " in await health()
