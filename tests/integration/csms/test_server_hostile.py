"""What a stranger or a hostile station can make the OCPP listener do, over real sockets
(csms/server.py, csms/service/ratelimit.py, csms/link.py): handshakes refused cleanly,
a station's login under strangers' wrong passwords, log lines a station writes."""

from __future__ import annotations

import asyncio
import base64
import logging
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from support import RunningServer, until
from support.client import RawClient
from support.wire import upgrade_request

PASSWORD = "s3cret-station-passw0rd"


async def handshake(server: RunningServer, path: str, headers: list[tuple[str, str]]) -> bytes:
    """The status line the server answers a raw upgrade request with."""
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        lines = [f"GET {path} HTTP/1.1", "Host: x", "Upgrade: websocket",
                 "Connection: Upgrade", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
                 "Sec-WebSocket-Version: 13", "Sec-WebSocket-Protocol: ocpp1.6",
                 *(f"{k}: {v}" for k, v in headers)]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        return await asyncio.wait_for(reader.readline(), 5)
    finally:
        writer.close()


async def test_two_authorization_headers_are_refused_without_an_error(
        csms_server: RunningServer, caplog: pytest.LogCaptureFixture) -> None:
    """A stranger sends two Authorization headers for a station that has a password:
    websockets' Headers.get raises MultipleValuesError (a LookupError, not a KeyError),
    process_request fails, the server answers 500 and logs an error with a traceback
    for every such request, before any attempt is counted against the address."""
    await csms_server.add_station("CP1", password=PASSWORD)
    token = base64.b64encode(f"CP1:{PASSWORD}x".encode()).decode()
    caplog.set_level(logging.ERROR)
    status = await handshake(csms_server, "/CP1", [("Authorization", f"Basic {token}"),
                                                   ("Authorization", f"Basic {token}")])
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == []
    assert status.split()[1] in (b"400", b"401"), status
    refused = csms_server.central.metrics.logins_refused.labels("bad_request")._value.get()
    assert refused == 1


def loopback(n: int) -> str:
    """The n-th loopback address other than 127.0.0.1: another client."""
    return f"127.0.{(n + 2) // 250}.{(n + 2) % 250 + 2}"


async def upgrade_status(port: int, station: str, password: str,
                         address: str | None = None) -> int:
    """The HTTP status a raw upgrade request with Basic credentials is answered with."""
    token = base64.b64encode(f"{station}:{password}".encode()).decode()
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", port, local_addr=(address, 0) if address else None)
    try:
        writer.write(upgrade_request(station, f"Authorization: Basic {token}\r\n"))
        line = await asyncio.wait_for(reader.readline(), 10)
        return int(line.split()[1])
    finally:
        writer.close()


async def upgrade_answer(port: int, station: str, address: str) -> tuple[int, dict[str, str]]:
    """The HTTP status and headers a raw upgrade request from ``address`` is answered
    with."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port,
                                                   local_addr=(address, 0))
    try:
        writer.write(upgrade_request(station))
        status = int((await asyncio.wait_for(reader.readline(), 10)).split()[1])
        headers: dict[str, str] = {}
        while (line := await asyncio.wait_for(reader.readline(), 10)).strip():
            name, _, value = line.decode().partition(":")
            headers[name.strip().lower()] = value.strip()
        return status, headers
    finally:
        writer.close()


async def test_a_stranger_auto_registers_at_most_its_hourly_share(
        csms_server: RunningServer, caplog: pytest.LogCaptureFixture) -> None:
    """With auto-registration on, a stranger invented station ids without end: each one a
    station row, its events and a warning in the log, and fresh per-station quotas (every
    per-station limit void). One client (an address) registers at most
    ``auto_register_per_hour`` stations: the next is refused 429 and not stored; another
    address still registers, and stations already registered still connect from it."""
    await csms_server.stop()
    csms_server.settings = replace(csms_server.settings, auto_register=True,
                                   auto_register_per_hour=3)
    await csms_server.start()
    await csms_server.add_station("KNOWN")
    caplog.set_level(logging.INFO, logger="csms.server")
    port, stranger = csms_server.port, "127.0.0.2"

    async def stored(station: str) -> bool:
        async def read(tx: Any) -> bool:
            return await tx.get_station(station) is not None

        return bool(await csms_server.repo.read(read))

    for i in range(3):
        assert (await upgrade_answer(port, f"INVENTED{i}", stranger))[0] == 101
    status, headers = await upgrade_answer(port, "INVENTED3", stranger)
    assert status == 429
    assert 0 < int(headers["retry-after"]) <= 3600
    assert not await stored("INVENTED3")
    assert (await upgrade_answer(port, "INVENTED4", stranger))[0] == 429
    refused = csms_server.central.metrics.logins_refused.labels("auto_register_limit")
    assert refused._value.get() == 2
    # the first registration and the first refusal are logged, not each one
    lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert [line.split()[1:5] for line in lines] == [
        ["AUTO-REGISTERING", "unknown", "station", "'INVENTED0'"],
        ["refused", "unknown", "station", "'INVENTED3'"]], lines
    # stations already registered connect from the stranger's address
    assert (await upgrade_answer(port, "KNOWN", stranger))[0] == 101
    assert (await upgrade_answer(port, "INVENTED0", stranger))[0] == 101
    # another client has its own share
    assert (await upgrade_answer(port, "OTHER0", "127.0.0.3"))[0] == 101
    assert await stored("OTHER0")


def test_strangers_cannot_keep_a_station_out_with_wrong_passwords(tmp_path: Path) -> None:
    """The real `csms serve`. Strangers from 80 addresses send wrong passwords for a
    station that has not logged in since the server started (after a restart, a deploy),
    each asking again at once when told busy: a refusal for being busy gives the attempt
    back, so an address pays only for the checks that run (5 a minute), and a check of
    the station is always running. The station, coming back every 0.1 s for 3 s, is
    answered 503 every time."""
    from bench.common import free_port, wait_port

    db, data = tmp_path / "s.sqlite3", tmp_path / "data"
    subprocess.run([sys.executable, "-m", "csms", "stations", "add", "CP1", "--password",
                    PASSWORD, "--db", str(db)], check=True, capture_output=True)
    port, admin = free_port(), free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "csms", "serve", "--port", str(port), "--db", str(db),
         "--admin-port", str(admin), "--data-dir", str(data)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port)

        async def attack() -> list[int]:
            stop = asyncio.Event()

            async def stranger(n: int) -> None:
                while not stop.is_set():
                    code = await upgrade_status(port, "CP1", f"wrong-password-{n:04d}",
                                                loopback(n))
                    if code == 429:  # this address used its attempts
                        return

            strangers = [asyncio.create_task(stranger(n)) for n in range(80) for _ in range(2)]
            await asyncio.sleep(0.5)  # the strangers' checks are running
            seen: list[int] = []
            until = time.monotonic() + 3
            try:
                while time.monotonic() < until:
                    seen.append(await upgrade_status(port, "CP1", PASSWORD))
                    if seen[-1] == 101:
                        break
                    await asyncio.sleep(0.1)
            finally:
                stop.set()
                await asyncio.gather(*strangers)
            return seen

        seen = asyncio.run(attack())
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    assert seen[-1] == 101, f"the station's {len(seen)} logins were answered {sorted(set(seen))}"


async def test_an_answer_to_no_call_writes_one_log_line(
        csms_server: RunningServer, caplog: pytest.LogCaptureFixture) -> None:
    """A station answers a CALL it never got, its message id holding a line break (a JSON
    escape): the line that notes the drop quotes the id as sent, so a station writes
    log lines of its own making (station ids may hold no control character; message ids
    may)."""
    await csms_server.add_station("CP1")
    caplog.set_level(logging.INFO, logger="csms.server")
    forged = "x)\\nERROR csms.admin: forged line"
    async with await RawClient.connect(csms_server.url, "CP1") as c:
        await c.send_raw(f'[3,"{forged}",{{}}]')
        assert "currentTime" in await c.result("Heartbeat", {})
    dropped = [r.getMessage() for r in caplog.records if "dropped" in r.getMessage()]
    assert dropped, "the drop was not logged"
    assert not any("\n" in m for m in dropped), dropped


async def test_answers_to_no_call_and_bad_frames_write_a_bounded_number_of_log_lines(
        csms_server: RunningServer, caplog: pytest.LogCaptureFixture) -> None:
    """A station sends answers to CALLs it never got (or answers ours twice, or late),
    and frames the endpoint answers by itself (an unknown action, a repeated message
    id): each wrote an info line, so a station sending 12-byte frames decided how fast
    the node's log grew (~80 bytes a frame). Now the first and every thousandth, with
    the count so far."""
    await csms_server.add_station("CP1")
    caplog.set_level(logging.INFO, logger="csms.server")
    frames = 2500
    async with await RawClient.connect(csms_server.url, "CP1") as c:
        for n in range(frames):
            await c.ws.send(f'[3,"never-sent-{n}",{{}}]')
            await c.ws.send(f'[2,"bad-{n}","NoSuchAction",{{}}]')
        assert "currentTime" in await c.result("Heartbeat", {})
        await csms_server.wait_connected("CP1")
        # the errors the endpoint sent came back, one for each bad frame
        await until(lambda: _true(len(c.unmatched) >= frames), "the CALLERRORs")
    lines = [r.getMessage() for r in caplog.records if "CP1" in r.getMessage()
             and ("dropped" in r.getMessage() or "unknown action" in r.getMessage())]
    assert 2 <= len(lines) <= 10, f"{len(lines)} lines: {lines[:3]}"
    assert any("so far" in line for line in lines), lines[:3]


async def _true(value: bool) -> bool:
    return value


async def test_refused_logins_write_a_bounded_number_of_log_lines(
        csms_server: RunningServer, caplog: pytest.LogCaptureFixture) -> None:
    """A stranger asks again and again for a station with a wrong password (refused, then
    429 once its address is out of attempts), for an unknown station and without
    credentials: nothing is stored, but each refusal wrote a log line, as fast as the
    stranger asked. The refusals are counted (metrics); their lines are thinned per
    reason (the first, then every thousandth)."""
    await csms_server.add_station("CP1", password=PASSWORD)
    caplog.set_level(logging.INFO, logger="csms.server")
    tries, stranger = 60, loopback(0)
    statuses = [await upgrade_status(csms_server.port, "CP1", "wrong", stranger)
                for _ in range(tries)]
    statuses += [await upgrade_status(csms_server.port, f"NOPE{i}", "x", stranger)
                 for i in range(tries)]
    statuses += [(await upgrade_answer(csms_server.port, "CP1", stranger))[0]
                 for _ in range(tries)]
    lines = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    refused = csms_server.central.metrics.logins_refused
    counted = sum(int(refused.labels(reason)._value.get()) for reason in
                  ("unauthorized", "rate_limited", "unknown_station"))
    print(f"\n{3 * tries} refused logins: {len(lines)} log lines, {counted} counted")
    assert set(statuses) == {401, 404, 429}
    assert counted == 3 * tries
    assert len(lines) <= 4, lines  # a line per reason
    # the station itself still logs in
    async with await RawClient.connect(csms_server.url, "CP1", password=PASSWORD) as c:
        assert "currentTime" in await c.result("Heartbeat", {})


async def test_spellings_of_a_stations_id_never_replace_its_connection(
        csms_server: RunningServer) -> None:
    """A stranger connects under spellings of a connected station's id, with
    auto-registration on: the ones that decode to the id (percent-encoded, a trailing
    slash, a longer path) need its password (401); the ones that differ (case, a Cyrillic
    look-alike, decomposed Unicode) are other stations. None replaces the station's
    connection."""
    await csms_server.stop()
    csms_server.settings = replace(csms_server.settings, auto_register=True)
    await csms_server.start()
    await csms_server.add_station("CPÉ1", password=PASSWORD)
    port, stranger = csms_server.port, "127.0.0.2"
    async with await RawClient.connect(csms_server.url, "CPÉ1", password=PASSWORD) as c:
        assert "currentTime" in await c.result("Heartbeat", {})
        held = csms_server.central.connections["CPÉ1"]
        for same in ("CP%C3%891", "%43P%C3%891", "CP%C3%891/", "ocpp/x/CP%C3%891"):
            assert (await upgrade_answer(port, same, stranger))[0] == 401, same
        for other in ("cp%C3%a91", "%D0%A1P%C3%891", "CPE%CC%811"):  # lower case, U+0421, U+0301
            assert (await upgrade_answer(port, other, stranger))[0] == 101, other
        assert csms_server.central.connections["CPÉ1"] is held
        assert "currentTime" in await c.result("Heartbeat", {})
