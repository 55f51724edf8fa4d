"""`csms remote` pointed at a port where something else answers (a typo in --admin-port,
a proxy's page, another service): one line on stderr and a non-zero exit, never a
traceback."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from support import RunningServer
from support.client import RawClient

from ..test_admin import answer_next, run_cli


@pytest.fixture
async def other_service() -> AsyncIterator[int]:
    """An HTTP service that answers every request 200 with a page, not JSON."""

    async def page(_: web.Request) -> web.Response:
        return web.Response(text="<html><body>welcome</body></html>",
                            content_type="text/html")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", page)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield int(runner.addresses[0][1])
    finally:
        await runner.cleanup()


@pytest.mark.parametrize("args", [["remote", "reset", "CP1"],
                                  ["remote", "reset", "CP1", "--json"]])
async def test_an_answer_that_is_not_json_is_one_line(
    tmp_path: Path, other_service: int, args: list[str],
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "admin.token").write_text("some-token\n")
    r = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "csms", *args, "--admin-port", str(other_service),
         "--data-dir", str(data)],
        capture_output=True, text=True, timeout=60, env={**os.environ, "COLUMNS": "200"})
    assert "Traceback" not in r.stderr, r.stderr[-400:]
    assert r.returncode != 0
    assert len(r.stderr.strip().splitlines()) == 1 and r.stderr.startswith("error:"), r.stderr


@pytest.mark.parametrize("station", ["CP[/]", "CP[red]1"])
async def test_a_queued_request_names_the_station_as_it_is(
    csms_server: RunningServer, station: str,
) -> None:
    """OCPP allows '[' and ']' in a station id; the line for a request queued for an
    offline station printed the id as Rich markup: "CP[/]" was a MarkupError traceback
    (after the request was queued and audited), "CP[red]1" printed as "CP1"."""
    await csms_server.add_station(station)
    assert csms_server.app is not None and csms_server.app.admin is not None
    r = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "csms", "logs", "request", station,
         "--admin-port", str(csms_server.app.admin.port),
         "--data-dir", csms_server.settings.data_dir],
        capture_output=True, text=True, timeout=60, env={**os.environ, "COLUMNS": "200"})
    assert "Traceback" not in r.stderr, r.stderr[-400:]
    assert r.returncode == 0, r.stderr[-400:]
    assert r.stdout.startswith(f"{station}: queued"), r.stdout


# What a terminal obeys rather than shows, beyond the C0 controls JSON escapes anyway:
# DEL, a C1 CSI (0x9b: "CSI 2 J" clears the screen where C1 controls are read), a
# right-to-left override (reorders the rest of the line) and a zero-width space.
UNSHOWN = "\x7f\x9b2J\u202eevil\u200b"


@pytest.mark.parametrize("json_flag", [[], ["--json"]])
async def test_a_stations_answer_prints_nothing_the_terminal_obeys(
    csms_server: RunningServer, json_flag: list[str],
) -> None:
    """A station answers DataTransfer with data a terminal would obey: `csms remote`
    printed the answer's JSON with those characters as they are (JSON escapes the C0
    controls only). Printed escaped, the JSON reads back to the same data."""
    await csms_server.add_station("CP1")
    async with await RawClient.connect(csms_server.url, "CP1") as c:
        await csms_server.wait_connected("CP1")
        cli = asyncio.create_task(run_cli(csms_server, "remote", "data-transfer", "CP1",
                                          "Vendor", *json_flag))
        call = await answer_next(c, {"status": "Accepted", "data": UNSHOWN})
        code, out, err = await cli
    assert call[2] == "DataTransfer"
    assert code == 0, err
    assert not any(ch in out for ch in UNSHOWN if not ch.isalnum()), repr(out)
    # the answer's JSON (after the status line without --json) reads back as sent
    answer = json.loads(out if json_flag else out[out.index("{"):])
    assert (answer["response"] if json_flag else answer)["data"] == UNSHOWN
