"""The operator console against what lands in its pages and forms: an audit entry the
admin API keeps exactly (an integer beyond 64 bits) and a form beyond the console's own
size limit."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from csms.admin.console.app import MAX_FORM
from support import RunningServer
from support.admin import api
from support.client import RawClient


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
        yield session


async def login(server: RunningServer, http: aiohttp.ClientSession) -> None:
    r = await http.post(server.admin_url + "/console/login", allow_redirects=False,
                        data={"token": server.admin_token})
    assert r.status == 303


async def test_an_audited_argument_beyond_64_bits_does_not_break_the_audit_page(
    csms_server: RunningServer, http: aiohttp.ClientSession,
) -> None:
    """The API audits a refused stop's body exactly (2**70 stays an integer); the console's
    audit page then answered 500 for as long as the entry was among the newest."""
    await csms_server.add_station("CP1")
    async with await RawClient.connect(csms_server.url, "CP1", ["ocpp1.6"]) as c:
        await c.result("BootNotification", {"chargePointVendor": "V",
                                            "chargePointModel": "M"})
        await csms_server.wait_connected("CP1")
        status, _ = await api(csms_server, "POST", "/stations/CP1/commands/stop",
                              {"session": 2**70})
    assert status == 400
    await login(csms_server, http)
    r = await http.get(csms_server.admin_url + "/console/audit", allow_redirects=False)
    text = await r.text()
    assert r.status == 200, text[:300]
    assert "1180591620717411303424" in text


async def test_a_form_beyond_the_console_s_limit_is_refused(
    csms_server: RunningServer, http: aiohttp.ClientSession,
) -> None:
    """MAX_FORM (64 KiB) is the console's limit; the sub-application's client_max_size is
    not the one aiohttp applies, so an unauthenticated login form of 4 times that is read
    and checked."""
    r = await http.post(csms_server.admin_url + "/console/login", allow_redirects=False,
                        data={"token": "x" * (4 * MAX_FORM)})
    assert r.status == 413, r.status


@pytest.mark.parametrize("tag", [".", ".."])
async def test_every_listed_tag_can_be_blocked_from_the_console(
    csms_server: RunningServer, http: aiohttp.ClientSession, tag: str,
) -> None:
    """The tags page offers a Block button for every tag; for "." and ".." its form posts
    to /console/tags/./block and /console/tags/../block, which the URL's dot segments turn
    into another path (404): the card stays accepted."""
    import html
    import re

    await csms_server.add_tag(tag)
    await login(csms_server, http)
    page = await (await http.get(csms_server.admin_url + "/console/tags")).text()
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page)
    [action] = re.findall(r'action="(/console/tags[^"]*block[^"]*)"', page)
    assert csrf is not None
    r = await http.post(csms_server.admin_url + html.unescape(action), allow_redirects=False,
                        data={"csrf_token": csrf.group(1)})
    assert r.status == 303, r.status

    async def status(tx: Any) -> str | None:
        record = await tx.get_tag(tag)
        return None if record is None else str(record.status)

    assert await csms_server.repo.read(status) == "blocked"


@pytest.mark.parametrize("tag", ["B\nERROR csms: forged", "\x1b[2JPAY", "x" * 37, " "])
async def test_a_tag_the_cli_refuses_is_refused_by_the_console_too(
    csms_server: RunningServer, http: aiohttp.ClientSession, tag: str,
) -> None:
    """The console's tag form took a tag with a line break or an ESC (shown in every list
    of tags, a terminal's and a log's, a tag nobody can read or type) that `csms tags add`
    refuses: one check for both (id_tag_problem), 400 and nothing stored."""
    import re

    await login(csms_server, http)
    page = await (await http.get(csms_server.admin_url + "/console/tags")).text()
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert csrf is not None
    r = await http.post(csms_server.admin_url + "/console/tags", allow_redirects=False,
                        data={"csrf_token": csrf.group(1), "tag": tag})
    assert r.status == 400, r.status
    assert "36 printable characters" in await r.text()

    async def tags(tx: Any) -> list[str]:
        return [t.tag for t in await tx.list_tags()]

    assert tag.strip() not in await csms_server.repo.read(tags)


async def test_a_chunked_form_beyond_the_console_s_limit_is_refused(
    csms_server: RunningServer, http: aiohttp.ClientSession,
) -> None:
    """No Content-Length to check first: the limit holds as the body is read."""

    async def body() -> AsyncIterator[bytes]:
        yield b"token="
        for _ in range(4):
            yield b"x" * MAX_FORM

    r = await http.post(csms_server.admin_url + "/console/login", allow_redirects=False,
                        data=body(),
                        headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status == 413, r.status


@pytest.mark.parametrize("station", [".", ".."])
async def test_a_station_named_by_a_dot_segment_is_reached_and_commanded(
    csms_server: RunningServer, http: aiohttp.ClientSession, station: str,
) -> None:
    """The stations page links each station, and its page posts each command, to URLs
    a browser does not resolve into another path (it resolves "%2E" too)."""
    import html
    import re

    await csms_server.add_station(station)
    await login(csms_server, http)
    page = await (await http.get(csms_server.admin_url + "/console/stations")).text()
    links = [html.unescape(h) for h in re.findall(r'href="(/console/stations/[^"]*)"', page)]
    assert links and all(f"/{station}/" not in h and not h.endswith(f"/{station}")
                         for h in links), links
    r = await http.get(csms_server.admin_url + links[0])
    text = await r.text()
    assert r.status == 200, text[:300]
    assert f"Station {station}<" in text
    csrf = re.search(r'name="csrf-token" content="([^"]+)"', text) or re.search(
        r'name="csrf_token" value="([^"]+)"', text)
    assert csrf is not None
    [reset] = [html.unescape(a) for a in re.findall(r'hx-post="([^"]*/reset[^"]*)"', text)]
    r = await http.post(csms_server.admin_url + reset, data={"type": "soft"},
                        headers={"X-CSRF-Token": csrf.group(1), "HX-Request": "true"})
    assert r.status == 200, await r.text()

    async def audited(tx: Any) -> list[tuple[str, str]]:
        return [(e["action"], e["target"]) for e in await tx.list_audit(10)]

    assert ("reset", station) in await csms_server.repo.read(audited)
