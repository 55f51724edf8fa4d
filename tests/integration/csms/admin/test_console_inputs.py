"""The console against ids that only look like numbers, and the live stream against a
station's strings with carriage returns."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator

import aiohttp
import pytest
from integration.csms.admin.test_console import Browser
from yarl import URL

from support import RunningServer
from support.client import RawClient

SUPERSCRIPT_TWO = "%C2%B2"  # "²": str.isdigit() says yes, int() says no


@pytest.fixture
async def browser(csms_server: RunningServer) -> AsyncIterator[Browser]:
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        yield Browser(csms_server, http)


@pytest.mark.parametrize("path", [
    f"/sessions/{SUPERSCRIPT_TWO}",
    f"/sessions/{SUPERSCRIPT_TWO}/receipt",
    f"/settlement/{SUPERSCRIPT_TWO}",
    f"/sessions?before={SUPERSCRIPT_TWO}",
    f"/audit?before={SUPERSCRIPT_TWO}",
    f"/settlement?before={SUPERSCRIPT_TWO}",
    f"/events?view=session&key={SUPERSCRIPT_TWO}",
])
async def test_an_id_that_is_not_a_whole_number_is_400(browser: Browser, path: str) -> None:
    await browser.login()
    r = await browser.http.get(URL(browser.base + path, encoded=True), allow_redirects=False)
    assert r.status == 400, (r.status, (await r.text())[:120])


ARABIC_INDIC_12 = "%D9%A1%D9%A2"  # "١٢": digits to str.isdigit() and int(), not ASCII


@pytest.mark.parametrize("raw", ["0", "-1", str(2**63), "9" * 30, ARABIC_INDIC_12, "1e3"])
@pytest.mark.parametrize("path", ["/sessions/{}", "/settlement/{}", "/sessions?before={}",
                                  "/audit?before={}"])
async def test_an_id_beyond_the_database_s_range_is_400(
    browser: Browser, path: str, raw: str,
) -> None:
    """The same range as the admin API's ids: 1 to 2**63-1, ASCII digits."""
    await browser.login()
    r = await browser.http.get(URL(browser.base + path.format(raw), encoded=True),
                               allow_redirects=False)
    text = await r.text()
    assert r.status == 400, (r.status, text[:120])
    assert "must be a whole number from 1 to 9223372036854775807" in text


@pytest.mark.parametrize(("path", "status"), [
    (f"/sessions/{2**63 - 1}", 404), (f"/settlement/{2**63 - 1}", 404),
    (f"/sessions?before={2**63 - 1}", 200), (f"/audit?before={2**63 - 1}", 200),
])
async def test_the_largest_id_the_database_holds_is_an_id(
    browser: Browser, path: str, status: int,
) -> None:
    await browser.login()
    r = await browser.http.get(browser.base + path, allow_redirects=False)
    assert r.status == status, (r.status, (await r.text())[:120])


async def test_a_decision_on_a_session_id_that_is_not_a_number_is_400(
    browser: Browser,
) -> None:
    await browser.login()
    r = await browser.post(f"/sessions/{SUPERSCRIPT_TWO}/release")
    assert r.status == 400, r.status


async def test_a_connector_that_is_not_a_whole_number_is_400(
    browser: Browser, csms_server: RunningServer,
) -> None:
    await browser.login()
    await csms_server.add_station("C1")
    r = await browser.post("/stations/C1/commands/unlock", {"connector": "\u00b2"})
    assert r.status == 400, (r.status, (await r.text())[:120])


def sse_events(stream: str) -> list[tuple[str, str]]:
    """(event, data) of each event, as a browser's EventSource reads the stream (WHATWG
    HTML, server-sent events: a line ends at CRLF, LF or a lone CR)."""
    events: list[tuple[str, str]] = []
    name, data = "message", []
    for line in re.split(r"\r\n|\r|\n", stream):
        if line == "":
            if data:
                events.append((name, "\n".join(data)))
            name, data = "message", []
        elif line.startswith("event:"):
            name = line[6:].removeprefix(" ")
        elif line.startswith("data:"):
            data.append(line[5:].removeprefix(" "))
    return events


async def test_a_station_s_carriage_returns_do_not_cut_the_live_fragment(
    browser: Browser, csms_server: RunningServer,
) -> None:
    """A station's vendor with CRs ends the live event early in a browser: the station
    page's live table loses the rows after it (connectors, active sessions), and the
    station can name events and set retry/id fields of the stream."""
    await csms_server.add_station("CR1")
    async with await RawClient.connect(csms_server.url, "CR1", ["ocpp1.6"]) as c:
        await c.result("BootNotification", {"chargePointVendor": "V\r\revent: x\rdata: y",
                                            "chargePointModel": "M"})
    await browser.login()
    r = await browser.http.get(browser.base + "/events?view=station&key=CR1")
    assert r.status == 200
    first = (await asyncio.wait_for(r.content.readuntil(b"\n\n"), 5)).decode()
    r.close()
    events = sse_events(first)
    assert [name for name, _ in events] == ["station"], events
    assert "Active sessions" in events[0][1]
