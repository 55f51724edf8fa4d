"""The operator console over real HTTP on a running central system: logins, CSRF, the
pages, the audited actions, and what a stranger, a hostile station and a dishonest
operator would try."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from yarl import URL

from csms.admin.console import COOKIE
from csms.domain.model import AuthStatus, IdTag, MeterSample, Session, SessionStatus
from csms.domain.tariff import BillingUnit, Tariff
from csms.service.ports import Tx
from csms.service.ratelimit import LoginDelay
from support import LONG_AGO, RunningServer, csms_cli
from support.client import RawClient

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


class Browser:
    """A cookie jar and the console's CSRF token, as a browser keeps them."""

    def __init__(self, server: RunningServer, http: aiohttp.ClientSession) -> None:
        self.server = server
        self.http = http
        self.csrf = ""

    @property
    def base(self) -> str:
        return self.server.admin_url + "/console"

    async def login(self, token: str | None = None) -> aiohttp.ClientResponse:
        r = await self.http.post(self.base + "/login", allow_redirects=False,
                                 data={"token": token or self.server.admin_token})
        if r.status == 303:
            page = await self.get("/")
            found = CSRF.search(await page.text())
            assert found is not None
            self.csrf = found.group(1)
        return r

    async def get(self, path: str, **kw: Any) -> aiohttp.ClientResponse:
        return await self.http.get(self.base + path, allow_redirects=False, **kw)

    async def post(self, path: str, data: dict[str, str] | None = None, *,
                   csrf: str | None = "mine", headers: dict[str, str] | None = None,
                   ) -> aiohttp.ClientResponse:
        form = dict(data or {})
        if csrf is not None:
            form["csrf_token"] = self.csrf if csrf == "mine" else csrf
        return await self.http.post(self.base + path, data=form, allow_redirects=False,
                                    headers=headers or {})


@pytest.fixture
async def browser(csms_server: RunningServer) -> AsyncIterator[Browser]:
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        yield Browser(csms_server, http)


async def audit_rows(server: RunningServer, logins: bool = False) -> list[dict[str, Any]]:
    """The audit log, newest first; without the logins and logouts unless asked."""

    async def work(tx: Tx) -> list[dict[str, Any]]:
        return await tx.list_audit(100)

    return [a for a in await server.repo.read(work)
            if logins or not a["action"].startswith("console.")]


async def test_without_a_login_pages_redirect_and_actions_are_refused(
    browser: Browser,
) -> None:
    for path in ("/", "/stations", "/sessions", "/settlement", "/tags", "/tariffs", "/audit",
                 "/sessions/1", "/stations/X"):
        r = await browser.get(path)
        assert r.status == 303 and r.headers["Location"] == "/console/login", path
    assert (await browser.get("/events")).status == 401
    r = await browser.post("/tags", {"tag": "STRANGER"}, csrf="anything")
    assert r.status == 401
    r = await browser.post("/stations/S1/commands/reset", {"type": "hard"}, csrf=None)
    assert r.status == 401
    login = await browser.get("/login")
    assert login.status == 200
    assert "script-src 'self'" in login.headers["Content-Security-Policy"]
    assert login.headers["X-Frame-Options"] == "DENY"
    # the API's bearer token is no login for the console, nor the other way round
    r = await browser.get("/", headers={"Authorization": f"Bearer {browser.server.admin_token}"})
    assert r.status == 303


async def test_login_sets_a_strict_http_only_cookie_and_logout_ends_it(
    browser: Browser,
) -> None:
    r = await browser.login()
    assert r.status == 303 and r.headers["Location"] == "/console/"
    cookie = r.headers["Set-Cookie"]
    assert cookie.startswith(f"{COOKIE}=")
    for attribute in ("HttpOnly", "SameSite=Strict", "Path=/console", "Max-Age="):
        assert attribute in cookie, cookie
    assert "Secure" not in cookie  # plain HTTP on loopback; behind TLS it is Secure
    assert browser.server.admin_token not in cookie
    assert (await browser.get("/")).status == 200
    r = await browser.post("/logout")
    assert r.status == 303
    assert (await browser.get("/")).status == 303  # the login is gone on the server too
    audit = await audit_rows(browser.server, logins=True)
    assert [(a["action"], a["ok"]) for a in audit] == [("console.logout", True),
                                                        ("console.login", True)]
    assert audit[0]["actor"] == "console@127.0.0.1"


async def test_behind_a_tls_proxy_the_cookie_is_secure_and_the_origin_https(
    browser: Browser,
) -> None:
    r = await browser.http.post(browser.base + "/login", allow_redirects=False,
                                data={"token": browser.server.admin_token},
                                headers={"X-Forwarded-Proto": "https"})
    assert r.status == 303 and "Secure" in r.headers["Set-Cookie"]
    host = browser.server.admin_url.removeprefix("http://")
    login = r.cookies[COOKIE].value
    page = await browser.http.get(browser.base + "/", cookies={COOKIE: login},
                                  allow_redirects=False)
    found = CSRF.search(await page.text())
    assert found is not None
    form = {"tag": "T-TLS", "csrf_token": found.group(1)}
    for origin, status in ((f"http://{host}", 403), (f"https://{host}", 303)):
        r = await browser.http.post(browser.base + "/tags", data=form, allow_redirects=False,
                                    cookies={COOKIE: login},
                                    headers={"X-Forwarded-Proto": "https", "Origin": origin})
        assert r.status == status, origin


def quick_delays(browser: Browser) -> LoginDelay:
    """The admin listener's answer to guessing, with short waits (the same shape)."""
    app = browser.server.app
    assert app is not None and app.admin is not None
    app.admin.guessing = LoginDelay(free=5, base=0.1, cap=0.4)
    return app.admin.guessing


async def test_a_wrong_token_is_refused_and_guessing_is_slowed(browser: Browser) -> None:
    quick_delays(browser)
    for _ in range(5):  # the first ones cost nothing
        r = await browser.login("not-the-token")
        assert r.status == 401
        assert COOKIE not in r.headers.get("Set-Cookie", "")
    waits = []
    for _ in range(4):  # then every answer waits longer, up to the cap
        started = time.monotonic()
        r = await browser.login("not-the-token")
        waits.append(time.monotonic() - started)
        assert r.status == 401
    assert waits[0] >= 0.1 and waits[1] >= 0.2 and waits[2] >= 0.4 and waits[3] >= 0.4
    assert all(w < 0.4 + 2 for w in waits)  # slack for a loaded machine
    # the API's bearer token is guessed no faster from the same address
    started = time.monotonic()
    async with aiohttp.ClientSession() as api:
        r = await api.get(browser.server.admin_url + "/stations",
                          headers={"Authorization": "Bearer not-the-token"})
    assert r.status == 401 and time.monotonic() - started >= 0.4
    audit = await audit_rows(browser.server, logins=True)
    assert [(a["action"], a["ok"]) for a in audit] == [("console.login", False)] * 9
    assert all(a["request"] == {} and "not-the-token" not in str(a) for a in audit)


async def test_a_strangers_wrong_tokens_never_keep_the_operator_out(
    browser: Browser,
) -> None:
    """Every client of a loopback listener (or behind a TLS proxy) has one address: a
    stranger guessing from it slows the operator's login by the cap at most, never
    refuses it."""
    delays = quick_delays(browser)
    async with aiohttp.ClientSession() as stranger:
        async def guess() -> int:
            r = await stranger.post(browser.base + "/login", allow_redirects=False,
                                    data={"token": "a-guess"})
            return r.status

        for _ in range(3):  # a stranger who keeps guessing, also while the operator logs in
            assert set(await asyncio.gather(*(guess() for _ in range(8)))) == {401}
        guessing = asyncio.gather(*(guess() for _ in range(8)))
        started = time.monotonic()
        r = await browser.login()
        assert r.status == 303, r.status
        assert time.monotonic() - started < delays.cap + 2  # slack for a loaded machine
        assert (await browser.get("/")).status == 200
        assert set(await guessing) == {401}
    # nor the operator's CLI, through the API with the right bearer token
    async with aiohttp.ClientSession() as api:
        r = await api.get(browser.server.admin_url + "/stations",
                          headers={"Authorization": f"Bearer {browser.server.admin_token}"})
        assert r.status == 200


async def test_a_cookie_from_another_server_or_made_up_is_refused(
    browser: Browser, csms_server: RunningServer,
) -> None:
    await browser.login()
    stolen = {COOKIE: "x" * 43}
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as other:
        r = await other.get(browser.base + "/", cookies=stolen, allow_redirects=False)
        assert r.status == 303
    # the cookie of this server after a restart (logins live in the process): refused
    cookie = next(c.value for c in browser.http.cookie_jar if c.key == COOKIE)
    await csms_server.restart()
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as other:
        r = await other.get(csms_server.admin_url + "/console/", cookies={COOKIE: cookie},
                            allow_redirects=False)
        assert r.status == 303


async def test_every_post_needs_the_csrf_token_and_this_origin(browser: Browser) -> None:
    await browser.login()
    assert (await browser.post("/tags", {"tag": "T-NOCSRF"}, csrf=None)).status == 403
    assert (await browser.post("/tags", {"tag": "T-BAD"}, csrf="x" * 43)).status == 403
    r = await browser.post("/tags", {"tag": "T-ORIGIN"},
                           headers={"Origin": "http://evil.example"})
    assert r.status == 403
    assert (await browser.post("/logout", csrf=None)).status == 403
    # the header htmx sends works as the field does
    r = await browser.http.post(browser.base + "/tags", data={"tag": "T-HEADER"},
                                headers={"X-CSRF-Token": browser.csrf},
                                allow_redirects=False)
    assert r.status == 303
    r = await browser.post("/tags", {"tag": "T-FIELD"},
                           headers={"Origin": browser.server.admin_url})
    assert r.status == 303
    tags = await (await browser.get("/tags")).text()
    assert "T-HEADER" in tags and "T-FIELD" in tags
    assert "T-NOCSRF" not in tags and "T-BAD" not in tags and "T-ORIGIN" not in tags


async def test_tags_and_tariffs_are_added_blocked_and_audited(
    browser: Browser, csms_server: RunningServer,
) -> None:
    await browser.login()
    await csms_server.add_station("TT1")
    assert (await browser.post("/tags", {"tag": "CARD-1"})).status == 303
    assert (await browser.post("/tags/CARD-1/block")).status == 303
    assert (await browser.post("/tags/NOBODY/block")).status == 404
    assert (await browser.post("/tags", {"tag": "x" * 37})).status == 400
    assert (await browser.post("/tags", {"tag": "C2", "status": "superuser"})).status == 400
    r = await browser.post("/tariffs", {"station": "TT1", "per_kwh": "0.42",
                                        "session_fee": "0.5", "currency": "EUR"})
    assert r.status == 303
    for bad in ({"station": "TT1", "per_kwh": "-1"}, {"station": "TT1", "per_kwh": "NaN"},
                {"station": "TT1", "per_kwh": "1e-31"},  # a figure no receipt's verifier reads
                {"station": "TT1", "per_kwh": "abc"}, {"station": "a:b", "per_kwh": "1"},
                {"station": "TT1", "per_kwh": "1", "currency": "€<>"}):
        assert (await browser.post("/tariffs", bad)).status == 400, bad
    assert (await browser.post("/tariffs", {"station": "NOPE", "per_kwh": "1"})).status == 404
    page = await (await browser.get("/tariffs")).text()
    assert "0.42" in page
    tag = await csms_server.repo.read(lambda tx: tx.get_tag("CARD-1"))
    assert tag.status == "blocked"
    audit = await audit_rows(csms_server)
    actions = [(a["action"], a["target"]) for a in audit]
    assert ("tags.add", "CARD-1") in actions and ("tags.block", "CARD-1") in actions
    assert ("tariffs.set", "TT1") in actions
    assert all(a["actor"].startswith("console@") for a in audit)
    assert len(audit) == 3  # refused requests changed nothing
    shown = await (await browser.get("/audit")).text()
    assert "tags.block" in shown and "console@" in shown


async def test_a_tag_set_again_in_the_console_keeps_what_its_form_does_not_show(
    browser: Browser, csms_server: RunningServer,
) -> None:
    """The console's tag form has a tag and a status only. Setting a registered card's
    status there (unblocking a found card) changes its status alone: the card's expiry,
    group and master pass stay as registered. Before, they were cleared: an expired card
    set to accepted was valid again with no end, and a card lost its group."""
    await browser.login()
    expiry = datetime(2020, 1, 31, tzinfo=UTC)

    async def registered(tx: Tx) -> None:
        await tx.put_tag(IdTag("CARD-EXP", "blocked", expiry, "FLEET-1", True))

    await csms_server.repo.unit(registered)
    assert (await browser.post("/tags", {"tag": "CARD-EXP", "status": "accepted"})).status \
        == 303
    tag = await csms_server.repo.read(lambda tx: tx.get_tag("CARD-EXP"))
    assert (tag.status, tag.expires_at, tag.parent, tag.master) == (
        "accepted", expiry, "FLEET-1", True)
    assert tag.authorize(datetime.now(UTC)) is AuthStatus.EXPIRED
    [row] = [a for a in await audit_rows(csms_server) if a["target"] == "CARD-EXP"]
    assert row["action"] == "tags.add"
    assert row["result"] == {"status": "accepted", "was": "blocked"}, row
    # a tag not registered before is added as the form says
    assert (await browser.post("/tags", {"tag": "CARD-NEW"})).status == 303
    new = await csms_server.repo.read(lambda tx: tx.get_tag("CARD-NEW"))
    assert (new.status, new.expires_at, new.parent, new.master) == (
        "accepted", None, None, False)


async def test_a_tariff_that_would_reprice_a_session_is_refused(
    browser: Browser, csms_server: RunningServer,
) -> None:
    """A station whose clock runs 5 minutes ahead (within the 10 minutes a station's clock
    may drift, ``time_future``) started a session "later" than now, priced by its tariff:
    a version valid from now would reprice it (csms.service.tariffs), so the console
    refuses it and writes nothing. (A start further ahead is no time to judge a tariff by,
    and is held as ``time_implausible``: it holds no version back.)"""
    await browser.login()
    await csms_server.add_station("TT2")

    async def priced_session(tx: Tx) -> None:
        await tx.add_tariff(Tariff("TT2", Decimal("0.30"), valid_from=LONG_AGO))
        await tx.insert_session(Session(
            station_id="TT2", ocpp_version="ocpp1.6", transaction_id="1",
            started_at=datetime.now(UTC) + timedelta(minutes=5), connector_id=1))
    await csms_server.repo.unit(priced_session)
    r = await browser.post("/tariffs", {"station": "TT2", "per_kwh": "0.99"})
    assert r.status == 409
    assert "would reprice session" in await r.text()
    tariffs = await csms_server.repo.read(lambda tx: tx.list_tariffs())
    assert [(t.station_id, t.per_kwh) for t in tariffs] == [("TT2", Decimal("0.30"))]
    assert not [a for a in await audit_rows(csms_server) if a["action"] == "tariffs.set"]


async def test_a_tariff_in_another_currency_than_the_settlements_is_refused(
    browser: Browser, csms_server: RunningServer,
) -> None:
    """The settlement contract bills in one unit (a euro cent by default: the settings'
    billing_currency and billing_decimals), and a price goes on chain in its tariff's
    minor units: a tariff in another currency is refused in one line, nothing written.
    The form offers the settlement's currency, and its tariffs get its decimals."""
    await browser.login()
    await csms_server.add_station("TT3")
    page = await (await browser.get("/tariffs")).text()
    assert 'name="currency" value="EUR"' in page and "with 2 decimals" in page
    r = await browser.post("/tariffs", {"station": "TT3", "per_kwh": "0.30",
                                        "currency": "USD"})
    assert r.status == 400
    assert "a tariff in USD with 2 decimals cannot be settled: the settlement contract bills" \
        " in EUR with 2 decimals" in await r.text()
    assert await csms_server.repo.read(lambda tx: tx.list_tariffs()) == []
    assert (await browser.post("/tariffs", {"station": "TT3", "per_kwh": "0.30"})).status == 303
    tariffs = await csms_server.repo.read(lambda tx: tx.list_tariffs())
    assert [(t.currency, t.decimals) for t in tariffs] == [("EUR", 2)]
    assert [a["action"] for a in await audit_rows(csms_server)] == ["tariffs.set"]


async def test_commands_go_through_the_audited_path(
    browser: Browser, csms_server: RunningServer,
) -> None:
    await browser.login()
    await csms_server.add_station("CMD1")
    r = await browser.post("/stations/CMD1/commands/reset", {"type": "soft"})
    assert r.status == 200
    assert "not connected" in await r.text()
    async with await RawClient.connect(csms_server.url, "CMD1", ["ocpp1.6"]) as c:
        await c.result("BootNotification", {"chargePointVendor": "V", "chargePointModel": "M"})

        async def station() -> None:
            call = await c.calls.get()
            assert call[2] == "UnlockConnector" and call[3] == {"connectorId": 1}
            await c.answer(call[1], {"status": "Unlocked"})

        task = asyncio.create_task(station())
        r = await browser.post("/stations/CMD1/commands/unlock", {"connector": "1"})
        await task
        text = await r.text()
        assert r.status == 200 and "Unlocked" in text, text
    # what the console does not offer, and arguments that are not numbers
    assert (await browser.post("/stations/CMD1/commands/set-password",
                               {"password": "x" * 20})).status == 404
    assert (await browser.post("/stations/CMD1/commands/unlock",
                               {"connector": "1; drop"})).status == 400
    for limit in ("abc", "NaN", "-1", "1e999999"):
        r = await browser.post("/stations/CMD1/commands/set-profile", {"limit": limit})
        assert r.status == 400, limit
    audit = await audit_rows(csms_server)
    assert [(a["action"], a["target"], a["ok"]) for a in audit][::-1] == [
        ("reset", "CMD1", False), ("unlock", "CMD1", True)]
    assert all(a["actor"].startswith("console@127.0.0.1") for a in audit)


async def test_a_hostile_station_s_strings_render_escaped(
    browser: Browser, csms_server: RunningServer,
) -> None:
    evil = "<script>alert(1)</script>"
    sid = "X<img src=x onerror=alert(1)>"
    await csms_server.add_station(sid)
    async with await RawClient.connect(csms_server.url, sid, ["ocpp1.6"]) as c:
        await c.result("BootNotification", {"chargePointVendor": evil[:20],
                                            "chargePointModel": "<b>m</b>",
                                            "firmwareVersion": "\"'><svg onload=x>"})
        await csms_server.add_tag("<i>tag</i>")
        await c.result("StartTransaction", {"connectorId": 1, "idTag": "<i>tag</i>",
                                            "meterStart": 0,
                                            "timestamp": datetime.now(UTC).isoformat()})
        # a fault's info and vendor code (1.6 §6.47) are shown on the station page
        await c.result("StatusNotification", {
            "connectorId": 2, "errorCode": "OtherError", "status": "Faulted",
            "info": "<u>lock</u>", "vendorId": "org.charin.uec.v1",
            "vendorErrorCode": "MREC1"})
    await browser.login()
    pages = [await (await browser.get(p)).text() for p in (
        "/stations", "/stations/" + aiohttp.helpers.quote(sid, safe=""), "/sessions",
        "/sessions/1", "/tags")]
    joined = "\n".join(pages)
    assert "<script>alert" not in joined and "<img src=x" not in joined
    assert "<svg onload" not in joined and "<i>tag</i>" not in joined
    assert "&lt;script&gt;alert" in joined and "&lt;img src=x onerror=alert(1)&gt;" in joined
    assert "<u>lock" not in joined
    assert "(OtherError: MREC1 (org.charin.uec.v1), &lt;u&gt;lock&lt;/u&gt;)" in pages[1]


async def test_pages_show_what_is_stored_and_refuse_bad_queries(
    browser: Browser, csms_server: RunningServer,
) -> None:
    await browser.login()
    await csms_server.add_station("P1")
    await csms_server.add_tag("PT")
    async with await RawClient.connect(csms_server.url, "P1", ["ocpp1.6"]) as c:
        await c.result("BootNotification", {"chargePointVendor": "V", "chargePointModel": "M"})
        start = await c.result("StartTransaction", {
            "connectorId": 1, "idTag": "PT", "meterStart": 1000,
            "timestamp": datetime.now(UTC).isoformat()})
        await c.result("MeterValues", {"connectorId": 1,
                                       "transactionId": start["transactionId"],
                                       "meterValue": [{"timestamp": datetime.now(UTC).isoformat(),
                                                       "sampledValue": [
                                                           {"value": "1500"},
                                                           {"value": "7400",
                                                            "measurand": "Power.Active.Import",
                                                            "unit": "W"}]}]})
        overview = await (await browser.get("/")).text()
        assert 'id="stations-online">1<' in overview
        assert 'id="active-sessions">1<' in overview
        assert 'id="power-now">7.40 kW<' in overview
        session = await (await browser.get("/sessions/1")).text()
        assert "500 Wh so far" in session and "data-curve=" in session, session[-3000:]
        await c.result("StopTransaction", {"transactionId": start["transactionId"],
                                           "meterStop": 2000,
                                           "timestamp": datetime.now(UTC).isoformat()})
    listed = await (await browser.get("/sessions?station=P1&status=completed")).text()
    assert 'data-session="1"' in listed
    assert 'data-session="1"' not in await (await browser.get("/sessions?tag=OTHER")).text()
    assert 'data-session="1"' not in await (await browser.get("/sessions?status=active")).text()
    for path in ("/sessions?status=bogus", "/sessions?before=-1", "/sessions?station=a:b",
                 "/sessions?x=1", "/stations?after=" + "x" * 60, "/audit?before=abc",
                 "/sessions/abc", "/events?view=nothing", "/sessions?tag=" + "t" * 40):
        r = await browser.get(path)
        assert r.status in (400, 404), path
    assert (await browser.get("/sessions/999")).status == 404
    assert (await browser.get("/sessions/1/receipt")).status == 409  # not settled yet
    for sneaky in ("/static/%2e%2e/app.py", "/static/..%2Fapp.py", "/static/%2e%2e%2fpages.py"):
        r = await browser.http.get(URL(browser.base + sneaky, encoded=True))
        assert r.status in (400, 403, 404), sneaky
        assert "Console" not in await r.text()
    assert (await browser.get("/static/console.js")).status == 200
    for path in ("/settlement", "/tariffs", "/audit", "/stations", "/stations/P1"):
        assert (await browser.get(path)).status == 200, path


async def test_held_sessions_are_released_or_rejected_once_and_audited(
    browser: Browser, csms_server: RunningServer,
) -> None:
    await browser.login()
    await csms_server.add_station("H1")
    async with await RawClient.connect(csms_server.url, "H1", ["ocpp1.6"]) as c:
        await c.result("BootNotification", {"chargePointVendor": "V", "chargePointModel": "M"})
        for n in range(2):
            # an unknown transaction's stop: recorded, held for a decision
            await c.result("StopTransaction", {"transactionId": 900 + n, "meterStop": 5000,
                                               "timestamp": datetime.now(UTC).isoformat()})
    held = [s for s in await csms_server.sessions("H1")]
    assert len(held) == 2
    listed = await (await browser.get("/sessions?status=held")).text()
    assert all(f'data-session="{s["id"]}"' in listed for s in held)
    overview = await (await browser.get("/")).text()
    assert re.search(r'id="held"><a [^>]*>2<', overview), overview
    first, second = held[0]["id"], held[1]["id"]
    assert (await browser.post(f"/sessions/{first}/release", {"reason": "checked"})).status == 303
    assert (await browser.post(f"/sessions/{first}/reject")).status == 409  # decided already
    assert (await browser.post(f"/sessions/{second}/reject", csrf=None)).status == 403
    assert (await browser.post(f"/sessions/{second}/reject")).status == 303
    audit = await audit_rows(csms_server)
    assert [(a["action"], a["target"]) for a in audit][::-1] == [
        ("sessions.release", str(first)), ("sessions.reject", str(second))]
    assert audit[-1]["request"] == {"reason": "checked"}
    assert all(a["actor"].startswith("console@") for a in audit)


async def test_an_active_session_is_closed_once_and_audited(
    browser: Browser, csms_server: RunningServer,
) -> None:
    """An active session whose stop is not coming is closed from its page (as ``csms
    sessions close``): at its last reading, held for a decision; once, and audited."""
    await browser.login()
    await csms_server.add_station("L1")
    async with await RawClient.connect(csms_server.url, "L1", ["ocpp1.6"]) as c:
        await c.result("BootNotification", {"chargePointVendor": "V", "chargePointModel": "M"})
        await c.result("StartTransaction", {"connectorId": 1, "idTag": "T1", "meterStart": 0,
                                            "timestamp": datetime.now(UTC).isoformat()})
    [active] = await csms_server.sessions("L1")
    sid = active["id"]
    page = await (await browser.get(f"/sessions/{sid}")).text()
    assert f'action="/console/sessions/{sid}/close"' in page
    assert (await browser.post(f"/sessions/{sid}/close", csrf=None)).status == 403
    assert (await browser.post(f"/sessions/{sid}/close", {"reason": "stuck"})).status == 303
    assert (await browser.post(f"/sessions/{sid}/close")).status == 409  # not active now
    assert (await browser.post("/sessions/999/close")).status == 409
    [closed] = await csms_server.sessions("L1")
    assert closed["status"] == "completed" and "stop_lost" in closed["flags"]
    page = await (await browser.get(f"/sessions/{sid}")).text()
    assert "/close" not in page and f'action="/console/sessions/{sid}/release"' in page
    audit = await audit_rows(csms_server)
    assert [(a["action"], a["target"], a["request"]) for a in audit] == [
        ("sessions.close", str(sid), {"reason": "stuck"})]
    assert audit[0]["actor"].startswith("console@")


async def test_a_held_session_s_page_says_by_when_to_decide_it(
    browser: Browser, csms_server: RunningServer, tmp_path: Path,
) -> None:
    """A held session's page says by when to decide it (its start plus the contract's
    notice period less an hour to settle it, as ``csms sessions show``): once a
    settlement worker has read the notice period, and that releasing it may leave the
    host unpaid once that time has passed."""
    from settlement.chain import open_chain
    from settlement.worker import SettlementWorker

    await browser.login()
    await csms_server.add_station("D1")
    async with await RawClient.connect(csms_server.url, "D1", ["ocpp1.6"]) as c:
        await c.result("BootNotification", {"chargePointVendor": "V", "chargePointModel": "M"})
        await c.result("StartTransaction", {"connectorId": 1, "idTag": "T1", "meterStart": 0,
                                            "timestamp": "2026-01-01T10:00:00Z"})
    [active] = await csms_server.sessions("D1")
    sid = active["id"]
    assert (await browser.post(f"/sessions/{sid}/close")).status == 303
    page = await (await browser.get(f"/sessions/{sid}")).text()
    assert re.search(r'id="decide-by"[^>]*>not known yet', page), page
    chain = open_chain("memory", tmp_path / "data")
    await SettlementWorker(csms_server.repo, chain).run_once()
    page = await (await browser.get(f"/sessions/{sid}")).text()
    found = re.search(r'id="decide-by"[^>]*>([^<]*)<', page)
    assert found is not None, page
    assert "2026-01-08 09:00:00" in found.group(1) and "unpaid" in found.group(1), found
    # the sessions list says it too, in the held filter and without one
    for query in ("?status=held", ""):
        page = await (await browser.get(f"/sessions{query}")).text()
        cell = re.search(r'<td class="decide-by deadline-passed" data-at="([^"]*)">([^<]*)<',
                         page)
        assert cell is not None, page
        assert cell.groups() == ("2026-01-08T09:00:00+00:00", "2026-01-08 09:00:00 (passed)")
    assert (await browser.post(f"/sessions/{sid}/release")).status == 303
    page = await (await browser.get(f"/sessions/{sid}")).text()
    assert 'id="decide-by"' not in page  # decided
    page = await (await browser.get("/sessions")).text()
    assert '<td class="decide-by" data-at=""></td>' in page, page


async def test_live_updates_stream_the_overview(browser: Browser) -> None:
    await browser.login()
    r = await browser.http.get(browser.base + "/events?view=overview")
    assert r.status == 200 and r.headers["Content-Type"].startswith("text/event-stream")
    line = await r.content.readline()
    assert line == b"event: overview\n"
    data = await r.content.readline()
    assert data.startswith(b"data: ")
    r.close()


async def test_an_expired_login_and_another_login_s_csrf_token_are_refused(
    browser: Browser, csms_server: RunningServer,
) -> None:
    await browser.login()
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        other = Browser(csms_server, http)
        await other.login()
        assert other.csrf != browser.csrf
        # one operator's page cannot be made to post with another's token
        assert (await browser.post("/tags", {"tag": "CROSS"}, csrf=other.csrf)).status == 403
        assert (await other.post("/tags", {"tag": "OWN"})).status == 303
    assert csms_server.app is not None and csms_server.app.admin is not None
    console = csms_server.app.admin.console
    for login in console.logins.values():
        login.expires = console.clock() - 1
    assert (await browser.get("/")).status == 303
    assert (await browser.post("/tags", {"tag": "LATE"})).status == 401
    assert len(console.logins) == 1  # this expired login is forgotten; the other one...
    await browser.login()
    assert len(console.logins) == 1  # ...when the next login is made
    assert (await browser.get("/")).status == 200


async def test_an_x_actor_header_is_kept_as_a_claim_beside_who_really_acted(
    browser: Browser, csms_server: RunningServer,
) -> None:
    """Any holder of the admin token may send X-Actor; the audit log names the token as
    the actor and the header only as what it claims, so it cannot make an entry look like
    the console's (or the CLI's, or another principal's)."""
    await browser.login()
    await csms_server.add_station("ACT1")
    r = await browser.post("/stations/ACT1/commands/reset", {"type": "soft"})
    assert r.status == 200
    async with aiohttp.ClientSession() as http:
        for claimed in ("console@127.0.0.1", "cli:root"):
            r = await http.post(csms_server.admin_url + "/stations/ACT1/commands/reset",
                                json={"type": "soft"},
                                headers={"Authorization": f"Bearer {csms_server.admin_token}",
                                         "X-Actor": claimed})
            assert r.status == 409
    by_console, by_token, by_token_as_cli = reversed(await audit_rows(csms_server))
    assert (by_console["actor"], by_console["claimed_actor"]) == ("console@127.0.0.1", None)
    assert (by_token["actor"], by_token["claimed_actor"]) == ("admin@127.0.0.1",
                                                              "console@127.0.0.1")
    assert (by_token_as_cli["actor"], by_token_as_cli["claimed_actor"]) == ("admin@127.0.0.1",
                                                                            "cli:root")
    # the console's audit page shows the claim as one, beside the actor
    page = re.sub(r"<[^>]+>", "", await (await browser.get("/audit")).text())
    assert "admin@127.0.0.1 (claims cli:root)" in page


async def test_a_priced_session_reads_the_same_in_the_console_and_the_cli(
    csms_server: RunningServer, browser: Browser, tmp_path: Path,
) -> None:
    """A session settled in a currency of three minor digits (KWD), by a tag with non-ASCII
    letters: ``csms sessions show`` and the console's session page show one price (its
    tariff's minor digits, not two), and ``csms receipt -o`` writes the very bytes the
    console's receipt download gives."""
    from settlement.chain import ContractParams, open_chain
    from settlement.worker import SettlementWorker

    start = datetime(2026, 3, 1, 10, tzinfo=UTC)

    async def work(tx: Tx) -> None:
        s = Session(station_id="KW1", ocpp_version="ocpp1.6", transaction_id="",
                    started_at=start, stopped_at=start + timedelta(minutes=30),
                    connector_id=1, evse_id=1, id_tag="TÄG-ü", meter_start_wh=Decimal(0),
                    meter_stop_wh=Decimal(700), energy_wh=700,
                    status=SessionStatus.COMPLETED, stop_reason="Local")
        sid = await tx.insert_session(s)
        await tx.add_samples("KW1", [
            MeterSample(start, "0", context="Transaction.Begin"),
            MeterSample(start + timedelta(minutes=30), "700", context="Transaction.End")],
            session_id=sid, evse_id=1, connector_id=1, transaction_id="")
        await tx.enqueue_settlement(sid, start)
        await tx.add_tariff(Tariff("*", Decimal("0.3999"), "KWD", 3, valid_from=LONG_AGO))

    await csms_server.add_station("KW1")
    await csms_server.repo.unit(work)
    chain = open_chain("memory", tmp_path / "chain", params=ContractParams(fee_bps=500))
    try:
        worker = SettlementWorker(csms_server.repo, chain, billing=BillingUnit("KWD", 3))
        assert (await worker.run_once()).sessions_batched == 1
    finally:
        chain.close()
    # 0.7 kWh x 0.3999 KWD = 0.27993 KWD: 280 fils
    shown = csms_cli(csms_server, "sessions", "show", "1")
    assert shown.returncode == 0, shown.stderr
    assert "0.280 KWD (280 minor units)" in shown.stdout, shown.stdout
    await browser.login()
    page = await (await browser.get("/sessions/1")).text()
    billing = re.search(r'<td id="billing"[^>]*>([^<]*)<', page)
    assert billing is not None and "0.280 KWD" in billing.group(1), page
    # the session list, the settlement list and the batch's page: the same digits
    for path in ("/sessions", "/settlement", "/settlement/1"):
        text = re.sub(r"<[^>]+>", " ", await (await browser.get(path)).text())
        assert "0.280 KWD" in text and "2.80 KWD" not in text, (path, text)
    written = csms_cli(csms_server, "receipt", "1", "-o", str(tmp_path / "receipt.json"))
    assert written.returncode == 0, written.stderr
    download = await (await browser.get("/sessions/1/receipt")).read()
    assert "TÄG-ü" in download.decode("utf-8")
    assert (tmp_path / "receipt.json").read_bytes() == download
