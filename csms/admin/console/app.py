"""The operator console: HTML pages on the admin listener, under ``/console/``.

Theory of operation. The console is an aiohttp sub-application of the admin API
(:class:`csms.admin.api.AdminApi`), so it listens where the API does (loopback unless
the operator allowed more) and knows the same token. The operator enters the token once,
in a form; the console then keeps a server-side login (a random id in an HttpOnly,
SameSite=Strict cookie, Secure behind TLS, with an expiry) and a CSRF token of its own.
Every request is checked in :meth:`Console._guard`:

- without a valid login cookie: pages redirect to the login form, anything else is 401;
- every POST must carry the login's CSRF token (the ``X-CSRF-Token`` header htmx sends,
  or the ``csrf_token`` form field) and, when the browser names one, come from this
  origin; otherwise 403;
- a login from an address that gave wrong tokens waits before its check, longer with each
  one, up to a cap (:class:`csms.service.ratelimit.LoginDelay`, shared with the API's bearer
  check): never refused, since every client of a loopback listener, or of one behind a TLS
  proxy, has one address, and a stranger guessing must not keep the operator out.

Logins live in this process's memory: a restart or another node asks for the token again.

State-changing actions go through the audited paths the API and the CLI use: commands to
stations through :meth:`AdminApi.audited_command`, held sessions through
:func:`csms.service.holds.decide`, an active session closed through the node's service
(:meth:`~csms.service.sessions.SessionUseCases.close_session`); tags and tariffs are
written with an audit entry in the same unit of work. The actor of each entry is
``console@<address>``.

Live updates are server-sent events (``/console/events``): the page's live fragment,
rendered again each interval, sent when it changed.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import re
import secrets
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

import jinja2
from aiohttp import web

from csms.admin.api import record_id
from csms.admin.console import pages
from csms.admin.operator import MAX_ID
from csms.domain.model import ID_TAG_PROBLEM, IdTag, TagStatus, id_tag_problem
from csms.domain.tariff import Tariff, parse_price
from csms.logsafe import protect
from csms.protocol import InvalidStationId, station_id_from_path
from csms.protocol.frames import dumps
from csms.service.holds import HoldError, decide
from csms.service.ports import Tx
from csms.service.ratelimit import address_key
from csms.service.tariffs import TariffRefused, TariffUnitRefused, set_tariff

if TYPE_CHECKING:
    from csms.admin.api import AdminApi

__all__ = ["CONSOLE_COMMANDS", "COOKIE", "Console"]

log = protect(logging.getLogger("csms.admin.console"))

HERE = Path(__file__).parent
COOKIE = "voltledger_console"
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf_token"
LOGIN_TTL = 8 * 3600.0  # seconds a login lasts
MAX_LOGINS = 1000  # logins kept at once (the oldest go first)
MAX_FORM = 64 * 1024  # bytes of a form
# The commands the console's station page offers, and the form fields each takes.
CONSOLE_COMMANDS: dict[str, tuple[str, ...]] = {
    "start": ("tag", "connector"),
    "stop": ("session",),
    "reset": ("type",),
    "unlock": ("connector",),
    "availability": ("connector", "state"),
    "trigger": ("message", "connector"),
    "set-profile": ("connector", "limit", "unit"),
}
_INTEGER_FIELDS = {"connector", "session"}
# Where a server-sent events line ends, as a browser reads the stream (WHATWG HTML: CRLF,
# LF or a lone CR): every one in a fragment starts a data line of its own, so that a
# string a station chose (a vendor of "V\revent: x") stays in its event's data.
_LINE_END = re.compile(r"\r\n|\r|\n")
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:;"
       " connect-src 'self'; font-src 'self'; form-action 'self'; frame-ancestors 'none';"
       " base-uri 'none'")


class Refused(Exception):
    """A request the console answers with a status and one line (400, 404, 409...)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class _SeeOther(Exception):
    """A redirect (303) a check or a handler asks for."""

    def __init__(self, location: str) -> None:
        super().__init__(location)
        self.location = location


def _see_other(location: str) -> web.Response:
    return web.Response(status=303, headers={"Location": location})


@dataclass(slots=True)
class Login:
    id: str
    csrf: str
    expires: float
    address: str


LOGIN: web.RequestKey[Login] = web.RequestKey("login", Login)


def _station_arg(value: str | None) -> str | None:
    """A station id from a query or a form, checked like one in a URL (1.6 / 2.0.1 ids)."""
    if value is None or value == "":
        return None
    try:
        station_id_from_path("/" + quote(value, safe=""))
    except InvalidStationId as exc:
        raise Refused(400, f"station: {exc}") from None
    return value


def _cursor_int(value: str | None, name: str = "before") -> int | None:
    """An id: a cursor (``before``) or a record's id in a path, checked as the admin API
    checks one (:func:`csms.admin.api.record_id`)."""
    if value is None or value == "":
        return None
    checked = record_id(value)
    if checked is None:
        raise Refused(400, f"{name} must be a whole number from 1 to {MAX_ID},"
                           f" not {value[:20]!r}")
    return checked


def _text_arg(value: str | None, name: str, longest: int = 64) -> str | None:
    if value is None or value == "":
        return None
    if len(value) > longest:
        raise Refused(400, f"{name} is at most {longest} characters")
    return value


class Console:
    """The console's sub-application; ``api`` gives the repository, the audited command
    path and the token."""

    def __init__(self, api: AdminApi, *, clock: Callable[[], float] = time.monotonic,
                 live_interval: float = 1.0) -> None:
        self.api = api
        self.clock = clock
        self.live_interval = live_interval
        self.logins: OrderedDict[str, Login] = OrderedDict()
        self.closing = asyncio.Event()
        self.templates = jinja2.Environment(
            loader=jinja2.FileSystemLoader(HERE / "templates"),
            autoescape=True, undefined=jinja2.StrictUndefined,
        )
        self.templates.filters["when"] = pages.when
        self.templates.filters["kwh"] = lambda wh: "" if wh is None else f"{wh / 1000:,.3f}"
        self.templates.filters["kw"] = lambda w: "" if w is None else f"{w / 1000:,.2f}"
        self.templates.filters["money"] = _money
        self.templates.filters["q"] = lambda v: quote(str(v), safe="")
        self.templates.globals["unpaid_reason"] = _unpaid_reason
        # MAX_FORM is applied by form_limit, a middleware of the admin API's application:
        # a sub-application's client_max_size is not the one aiohttp reads bodies with
        self.app = web.Application(middlewares=[self._guard])
        self.app.add_routes([
            web.get("/", self.overview),
            web.get("/login", self.login_form),
            web.post("/login", self.login),
            web.post("/logout", self.logout),
            web.get("/events", self.events),
            web.get("/stations", self.stations),
            # a station's or a tag's id in the path (the API's URLs), or in the query: the
            # pages' own links and forms, as "." and ".." are path segments a browser
            # resolves away ("%2E" too: WHATWG URL), not ids a path can carry
            web.get("/stations/{station_id}", self.station),
            web.get("/stations/", self.station),
            web.post("/stations/{station_id}/commands/{command}", self.command),
            web.post("/stations/commands/{command}", self.command),
            web.get("/sessions", self.sessions),
            web.get("/sessions/{session_id}", self.session),
            web.get("/sessions/{session_id}/receipt", self.receipt),
            web.post("/sessions/{session_id}/{decision:release|reject}", self.decide),
            web.post("/sessions/{session_id}/close", self.close_session),
            web.get("/settlement", self.settlement),
            web.get("/settlement/{batch_id}", self.batch),
            web.get("/tags", self.tags),
            web.post("/tags", self.add_tag),
            web.post("/tags/{tag}/block", self.block_tag),
            web.post("/tags/block", self.block_tag),
            web.get("/tariffs", self.tariffs),
            web.post("/tariffs", self.add_tariff),
            web.get("/audit", self.audit),
        ])
        self.app.router.add_static("/static", HERE / "static", follow_symlinks=False)

    def close(self) -> None:
        """End the live streams (the listener is closing)."""
        self.closing.set()

    # -- logins ------------------------------------------------------------------------
    def _login_of(self, request: web.Request) -> Login | None:
        sid = request.cookies.get(COOKIE)
        if not sid:
            return None
        login = self.logins.get(sid)
        if login is None or not hmac.compare_digest(login.id, sid):
            return None
        if login.expires <= self.clock():
            del self.logins[sid]
            return None
        return login

    def _new_login(self, address: str) -> Login:
        now = self.clock()
        while self.logins:  # the oldest first: every login lasts as long
            oldest = next(iter(self.logins.values()))
            if oldest.expires > now:
                break
            del self.logins[oldest.id]
        login = Login(secrets.token_urlsafe(32), secrets.token_urlsafe(32),
                      now + LOGIN_TTL, address)
        self.logins[login.id] = login
        while len(self.logins) > MAX_LOGINS:
            self.logins.popitem(last=False)
        return login

    @staticmethod
    def _scheme(request: web.Request) -> str:
        """http or https as the browser sees it: a TLS proxy in front of the admin listener
        says https in X-Forwarded-Proto (a cross-site form cannot set that header)."""
        forwarded = request.headers.get("X-Forwarded-Proto", "").lower()
        return forwarded if forwarded in ("http", "https") else request.scheme

    def _same_origin(self, request: web.Request) -> bool:
        """A browser's Origin (sent with every POST) must be this listener's."""
        origin = request.headers.get("Origin")
        if origin is None:
            return True  # not a browser's cross-site request; the CSRF token still holds
        return origin == f"{self._scheme(request)}://{request.host}"

    @staticmethod
    @web.middleware
    async def form_limit(request: web.Request, handler: Any) -> web.StreamResponse:
        """A console request's body is at most MAX_FORM bytes (413 beyond). A middleware
        of the admin API's application: aiohttp reads a body with the client_max_size of
        the application that accepted the connection (the API's, 1 MiB), never the one of
        the sub-application that routes it."""
        if request.path.startswith("/console/"):
            if request.content_length is not None and request.content_length > MAX_FORM:
                raise web.HTTPRequestEntityTooLarge(MAX_FORM, request.content_length)
            request = request.clone(client_max_size=MAX_FORM)  # a chunked body, as read
        response: web.StreamResponse = await handler(request)
        return response

    @web.middleware
    async def _guard(self, request: web.Request, handler: Any) -> web.StreamResponse:
        started = time.perf_counter()
        path = request.path.removeprefix("/console")
        public = path in ("/login",) or path.startswith("/static/")
        login = self._login_of(request)
        try:
            if request.method not in ("GET", "HEAD", "POST"):
                raise Refused(405, "method not allowed")
            if request.method == "POST" and not self._same_origin(request):
                raise Refused(403, "a request from another site")
            if not public:
                if login is None:
                    if request.method == "GET" and path != "/events":
                        raise _SeeOther("/console/login")
                    raise Refused(401, "log in first")
                request[LOGIN] = login
                if request.method == "POST":
                    given = request.headers.get(CSRF_HEADER)
                    if given is None and request.content_type in (
                            "application/x-www-form-urlencoded", "multipart/form-data"):
                        given = (await request.post()).get(CSRF_FIELD)  # type: ignore[assignment]
                    if not isinstance(given, str) or not hmac.compare_digest(
                            given.encode(), login.csrf.encode()):
                        raise Refused(403, "missing or wrong CSRF token")
            response: web.StreamResponse = await handler(request)
        except Refused as exc:
            response = self._refusal(request, exc.status, str(exc))
        except _SeeOther as exc:
            response = _see_other(exc.location)
        except web.HTTPException as exc:  # the router's 404 and 405
            response = self._refusal(request, exc.status, exc.reason)
        if not response.prepared:
            response.headers["Content-Security-Policy"] = CSP
            response.headers["X-Content-Type-Options"] = "nosniff"
            response.headers["X-Frame-Options"] = "DENY"
            # same-origin, not no-referrer: with no-referrer a browser sends "Origin: null"
            response.headers["Referrer-Policy"] = "same-origin"
            if not path.startswith("/static/"):
                response.headers["Cache-Control"] = "no-store"
            response.headers["Server-Timing"] = \
                f"app;dur={(time.perf_counter() - started) * 1000:.2f}"
        return response

    def _refusal(self, request: web.Request, status: int, message: str) -> web.Response:
        if request.headers.get("HX-Request"):
            # htmx shows the line where the action's answer goes
            return web.Response(text=message, status=status)
        return self._page("error.html", request, status=status, message=message,
                          code=status)

    # -- rendering ---------------------------------------------------------------------
    def _page(self, name: str, request: web.Request, status: int = 200,
              **context: Any) -> web.Response:
        login = request.get(LOGIN)
        html = self.templates.get_template(name).render(
            csrf=login.csrf if login else "", logged_in=login is not None,
            nav=request.path.removeprefix("/console").split("/")[1:2] or [""], **context)
        return web.Response(text=html, status=status, content_type="text/html")

    def _fragment(self, name: str, **context: Any) -> str:
        return self.templates.get_template(name).render(**context)

    async def _read(self, fn: Callable[[Tx], Awaitable[Any]]) -> Any:
        return await self.api.repo.read(fn)

    @staticmethod
    def _actor(request: web.Request) -> str:
        return f"console@{request.remote}"

    async def _audit(self, request: web.Request, action: str, ok: bool) -> None:
        """Logins and logouts in the audit log (never the token given)."""
        actor = self._actor(request)

        async def work(tx: Tx) -> None:
            await tx.add_audit(actor, action, None, {}, {}, ok, datetime.now(UTC))

        await self.api.repo.unit(work)

    # -- login -------------------------------------------------------------------------
    async def login_form(self, request: web.Request) -> web.Response:
        if self._login_of(request) is not None:
            raise _SeeOther("/console/")
        return self._page("login.html", request, error=None)

    async def login(self, request: web.Request) -> web.StreamResponse:
        form = await request.post()
        given = form.get("token")
        # the address's wrong tokens slow every login from it, the right one too (see
        # LoginDelay): never refused
        if not await self.api.slowed(request):
            return web.Response(status=503, text="the server is closing")
        if not isinstance(given, str) or not given.strip() or not self.api.token or \
                not hmac.compare_digest(given.strip().encode(), self.api.token.encode()):
            log.warning("! console login with a wrong token from %s", request.remote)
            self.api.guessing.failed(address_key(request.remote or ""))
            await self._audit(request, "console.login", False)
            return self._page("login.html", request, status=401, error="wrong token")
        await self._audit(request, "console.login", True)
        old = self._login_of(request)
        if old is not None:
            self.logins.pop(old.id, None)
        login = self._new_login(request.remote or "")
        response = _see_other("/console/")
        response.set_cookie(COOKIE, login.id, path="/console", httponly=True,
                            samesite="Strict", secure=self._scheme(request) == "https",
                            max_age=int(LOGIN_TTL))
        return response

    async def logout(self, request: web.Request) -> web.StreamResponse:
        login = request[LOGIN]
        self.logins.pop(login.id, None)
        await self._audit(request, "console.logout", True)
        response = _see_other("/console/login")
        response.del_cookie(COOKIE, path="/console")
        return response

    # -- pages -------------------------------------------------------------------------
    async def overview(self, request: web.Request) -> web.Response:
        self._no_query(request)
        figures = await self._read(lambda tx: pages.overview(tx, datetime.now(UTC)))
        return self._page("overview.html", request, o=figures)

    async def stations(self, request: web.Request) -> web.Response:
        query = self._query(request, {"after"})
        after = _station_arg(query.get("after"))
        page = await self._read(lambda tx: pages.stations_page(tx, after))
        return self._page("stations.html", request, page=page, after=after)

    async def station(self, request: web.Request) -> web.Response:
        from csms.service.views import station_detail

        station_id = self._id_of(request, "station_id", "station")
        data = await self._read(lambda tx: station_detail(tx, station_id))
        if data is None:
            raise Refused(404, f"no station {station_id}")
        return self._page("station.html", request, s=data, commands=CONSOLE_COMMANDS)

    async def sessions(self, request: web.Request) -> web.Response:
        query = self._query(request, {"station", "tag", "status", "before"})
        station = _station_arg(query.get("station"))
        tag = _text_arg(query.get("tag"), "tag", 36)
        status = query.get("status") or None
        if status is not None and status not in pages.SESSION_STATUSES:
            raise Refused(400, f"status is one of {', '.join(pages.SESSION_STATUSES)}")
        before = _cursor_int(query.get("before"))
        page = await self._read(lambda tx: pages.sessions_page(
            tx, station=station, tag=tag, status=status, before=before))
        digits = await self._read(pages.minor_digits)
        filters = {k: v for k, v in (("station", station), ("tag", tag), ("status", status))
                   if v}
        return self._page("sessions.html", request, page=page, filters=filters, digits=digits,
                          statuses=pages.SESSION_STATUSES, more=urlencode(
                              {**filters, "before": page.next_cursor or ""}))

    async def session(self, request: web.Request) -> web.Response:
        self._no_query(request)
        data = await self._session_data(request)
        return self._page("session.html", request, d=data)

    async def _session_data(self, request: web.Request) -> dict[str, Any]:
        session_id = _cursor_int(request.match_info["session_id"], "session id")
        assert session_id is not None
        data = await self._read(lambda tx: pages.session_page(tx, session_id))
        if data is None:
            raise Refused(404, f"no session {session_id}")
        return data  # type: ignore[no-any-return]

    async def receipt(self, request: web.Request) -> web.Response:
        self._no_query(request)
        from settlement.receipts import ReceiptNotReady, load_receipt

        session_id = _cursor_int(request.match_info["session_id"], "session id")
        assert session_id is not None
        try:
            receipt = await load_receipt(self.api.repo, session_id, None)
        except ReceiptNotReady as exc:
            raise Refused(409, str(exc)) from None
        return web.Response(
            # the bytes `csms receipt -o` writes (integers beyond 64 bits exactly)
            body=(dumps(receipt, indent=True) + "\n").encode(),
            content_type="application/json",
            headers={"Content-Disposition":
                     f'attachment; filename="receipt-{session_id}.json"'})

    async def settlement(self, request: web.Request) -> web.Response:
        query = self._query(request, {"before"})
        before = _cursor_int(query.get("before"))
        page = await self._read(lambda tx: pages.batches_page(tx, before))
        return self._page("settlement.html", request, page=page,
                          digits=await self._read(pages.minor_digits))

    async def batch(self, request: web.Request) -> web.Response:
        self._no_query(request)
        batch_id = _cursor_int(request.match_info["batch_id"], "batch id")
        assert batch_id is not None
        data = await self._read(lambda tx: pages.batch_page(tx, batch_id))
        if data is None:
            raise Refused(404, f"no batch {batch_id}")
        return self._page("batch.html", request, b=data,
                          digits=await self._read(pages.minor_digits))

    async def tags(self, request: web.Request) -> web.Response:
        query = self._query(request, {"after"})
        after = _text_arg(query.get("after"), "after", 36)

        async def work(tx: Tx) -> pages.Page:
            tags = await tx.list_tags_page(after, pages.PAGE_SIZE + 1)
            more = len(tags) > pages.PAGE_SIZE
            tags = tags[:pages.PAGE_SIZE]
            now = datetime.now(UTC)
            rows = [{"tag": t.tag, "status": t.status, "answer": t.authorize(now).value,
                     "expires_at": t.expires_at} for t in tags]
            return pages.Page(rows, tags[-1].tag if more and tags else None)

        return self._page("tags.html", request, page=await self._read(work),
                          statuses=[s.value for s in TagStatus])

    async def tariffs(self, request: web.Request) -> web.Response:
        self._no_query(request)

        async def work(tx: Tx) -> list[Tariff]:
            return await tx.list_tariffs()

        return self._page("tariffs.html", request, tariffs=await self._read(work),
                          billing=self.api.central.settings.billing_unit)

    async def audit(self, request: web.Request) -> web.Response:
        query = self._query(request, {"before"})
        before = _cursor_int(query.get("before"))

        async def work(tx: Tx) -> pages.Page:
            rows = await tx.list_audit_page(before, pages.PAGE_SIZE + 1)
            more = len(rows) > pages.PAGE_SIZE
            rows = rows[:pages.PAGE_SIZE]
            for r in rows:
                r["request_text"] = dumps(r["request"])[:300]  # 2**70 kept exactly too
                r["result_text"] = dumps(r["result"])[:300]
            return pages.Page(rows, str(rows[-1]["id"]) if more and rows else None)

        return self._page("audit.html", request, page=await self._read(work))

    # -- live updates ------------------------------------------------------------------
    async def _live(self, view: str, key: str | None) -> str:
        """The live fragment of a page, rendered now."""
        if view == "overview":
            figures = await self._read(lambda tx: pages.overview(tx, datetime.now(UTC)))
            return self._fragment("_overview.html", o=figures)
        if view == "stations":
            after = _station_arg(key)
            page = await self._read(lambda tx: pages.stations_page(tx, after))
            return self._fragment("_stations.html", page=page)
        if view == "station":
            from csms.service.views import station_detail

            station_id = _station_arg(key)
            if station_id is None:
                raise Refused(400, "station: missing")
            data = await self._read(lambda tx: station_detail(tx, station_id))
            return "" if data is None else self._fragment("_station.html", s=data)
        if view == "session":
            session_id = _cursor_int(key, "key")
            if session_id is None:
                raise Refused(400, "id: missing")
            data = await self._read(lambda tx: pages.session_page(tx, session_id))
            return "" if data is None else self._fragment("_session.html", d=data)
        raise Refused(400, "view is overview, stations, station or session")

    async def events(self, request: web.Request) -> web.StreamResponse:
        """Server-sent events: ``event: <view>`` with the fragment's HTML, when it changed."""
        query = self._query(request, {"view", "key"})
        view, key = query.get("view", "overview"), query.get("key")
        first = await self._live(view, key)  # a bad view or key is refused before streaming
        response = web.StreamResponse(headers={
            "Content-Type": "text/event-stream", "Cache-Control": "no-store",
            "X-Accel-Buffering": "no", "Content-Security-Policy": CSP})
        await response.prepare(request)
        last: str | None = None
        fragment = first
        idle = 0.0
        try:
            while not self.closing.is_set():
                if self._login_of(request) is None:
                    break  # logged out, or the login expired
                if fragment != last:
                    data = "".join(f"data: {line}\n" for line in _LINE_END.split(fragment))
                    await response.write(f"event: {view}\n{data}\n".encode())
                    last, idle = fragment, 0.0
                elif idle >= 15:
                    await response.write(b": keep-alive\n\n")
                    idle = 0.0
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.closing.wait(), self.live_interval)
                idle += self.live_interval
                fragment = await self._live(view, key)
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        return response

    # -- actions -----------------------------------------------------------------------
    async def command(self, request: web.Request) -> web.Response:
        station_id = self._id_of(request, "station_id", "station")
        command = request.match_info["command"]
        fields = CONSOLE_COMMANDS.get(command)
        if fields is None:
            raise Refused(404, f"the console has no command {command!r}")
        form = await request.post()
        args: dict[str, Any] = {}
        for name in fields:
            value = form.get(name)
            if not isinstance(value, str) or value.strip() == "":
                continue
            value = value.strip()
            if len(value) > 64:
                raise Refused(400, f"{name} is at most 64 characters")
            if name == "limit":
                try:
                    limit = Decimal(value)
                except InvalidOperation:
                    raise Refused(400, "limit must be a number") from None
                if not limit.is_finite() or not 0 <= limit <= 10**7:
                    raise Refused(400, "limit must be a number from 0 to 10000000")
            if name in _INTEGER_FIELDS:
                if not (value.isascii() and value.isdigit()) or len(value) > 9:
                    raise Refused(400, f"{name} must be a whole number")
                args[name] = int(value)
            else:
                args[name] = value
        status, result = await self.api.audited_command(
            self._actor(request), station_id, command, args)
        html = self._fragment("_command_result.html", command=command, status=status,
                              result=result)
        return web.Response(text=html, status=200 if status < 500 else status,
                            content_type="text/html")

    async def decide(self, request: web.Request) -> web.Response:
        session_id = _cursor_int(request.match_info["session_id"], "session id")
        assert session_id is not None
        decision = "released" if request.match_info["decision"] == "release" else "rejected"
        form = await request.post()
        reason = _text_arg(form.get("reason") if isinstance(form.get("reason"), str)
                           else None, "reason", 200)  # type: ignore[arg-type]
        actor = self._actor(request)

        async def work(tx: Tx) -> dict[str, Any]:
            return await decide(tx, session_id, decision, actor=actor, reason=reason,
                                now=datetime.now(UTC))

        try:
            await self.api.repo.unit(work)
        except HoldError as exc:
            raise Refused(409, str(exc)) from None
        return _see_other(f"/console/sessions/{session_id}")

    async def close_session(self, request: web.Request) -> web.Response:
        """Close an active session whose stop is not coming (as ``csms sessions close``):
        held for a decision, audited."""
        session_id = _cursor_int(request.match_info["session_id"], "session id")
        assert session_id is not None
        form = await request.post()
        reason = _text_arg(form.get("reason") if isinstance(form.get("reason"), str)
                           else None, "reason", 200)  # type: ignore[arg-type]
        try:
            await self.api.central.service.close_session(
                session_id, actor=self._actor(request), reason=reason)
        except HoldError as exc:
            raise Refused(409, str(exc)) from None
        return _see_other(f"/console/sessions/{session_id}")

    async def add_tag(self, request: web.Request) -> web.Response:
        form = await request.post()
        tag = form.get("tag")
        status = form.get("status") or TagStatus.ACCEPTED.value
        if not isinstance(tag, str):
            raise Refused(400, ID_TAG_PROBLEM)
        tag = tag.strip()
        if (problem := id_tag_problem(tag)) is not None:
            raise Refused(400, problem)
        if status not in {s.value for s in TagStatus}:
            raise Refused(400, f"status is one of {', '.join(s.value for s in TagStatus)}")
        actor = self._actor(request)

        async def work(tx: Tx) -> None:
            # the form has a status only: a registered tag keeps its expiry, group and
            # master pass (cleared, an expired card set to accepted was valid for good)
            record = await tx.get_tag(tag)
            was = None if record is None else record.status
            if record is None:
                record = IdTag(tag, str(status))
            record.status = str(status)
            await tx.put_tag(record)
            await tx.add_audit(actor, "tags.add", tag, {"status": status},
                               {"status": status, "was": was}, True, datetime.now(UTC))

        await self.api.repo.unit(work)
        return _see_other("/console/tags")

    async def block_tag(self, request: web.Request) -> web.Response:
        tag = self._id_of(request, "tag", "tag")
        actor = self._actor(request)

        async def work(tx: Tx) -> bool:
            record = await tx.get_tag(tag)
            if record is None:
                return False
            record.status = TagStatus.BLOCKED.value
            await tx.put_tag(record)
            await tx.add_audit(actor, "tags.block", tag, {}, {"status": record.status}, True,
                               datetime.now(UTC))
            return True

        if not await self.api.repo.unit(work):
            raise Refused(404, f"no tag {tag}")
        return _see_other("/console/tags")

    async def add_tariff(self, request: web.Request) -> web.Response:
        form = await request.post()
        station = form.get("station")
        if not isinstance(station, str) or not station.strip():
            raise Refused(400, "station: a station id, or * for every station")
        station = station.strip()
        if station != "*":
            _station_arg(station)
        prices: dict[str, Decimal] = {}
        for name in ("per_kwh", "per_minute", "session_fee"):
            try:
                prices[name] = parse_price(str(form.get(name) or "0"))
            except ValueError as exc:
                raise Refused(400, f"{name}: {exc}") from None
        settings = self.api.central.settings
        billing = settings.billing_unit  # the one unit a tariff is charged in
        currency = str(form.get("currency") or billing.currency)
        if not currency.isalnum() or len(currency) > 10:
            raise Refused(400, "currency: a code of letters and digits")
        actor = self._actor(request)

        async def work(tx: Tx) -> int:
            if station != "*" and await tx.get_station(station) is None:
                raise Refused(404, f"no station {station}")
            try:
                return await set_tariff(tx, Tariff(
                    station, prices["per_kwh"], currency.upper(), billing.decimals,
                    prices["per_minute"], prices["session_fee"], valid_from=datetime.now(UTC)),
                    actor, billing=billing,
                    clock_tolerance=timedelta(seconds=settings.time_future_seconds))
            except TariffRefused as exc:  # a session started after now (its clock)
                raise Refused(409, str(exc)) from None
            except TariffUnitRefused as exc:
                raise Refused(400, str(exc)) from None

        await self.api.repo.unit(work)
        return _see_other("/console/tariffs")

    # -- queries -----------------------------------------------------------------------
    @staticmethod
    def _query(request: web.Request, allowed: set[str]) -> dict[str, str]:
        unknown = sorted(set(request.query) - allowed)
        if unknown:
            raise Refused(400, f"unknown query parameter {unknown[0][:40]!r}")
        if len(request.query) != len(set(request.query)):
            raise Refused(400, "a query parameter is given twice")
        return dict(request.query)

    def _no_query(self, request: web.Request) -> None:
        self._query(request, set())

    def _id_of(self, request: web.Request, in_path: str, in_query: str) -> str:
        """A station's or a tag's id: from the path, or from the query (see the routes)."""
        if in_path in request.match_info:
            self._no_query(request)
            return request.match_info[in_path]
        value = self._query(request, {in_query}).get(in_query)
        if not value:
            raise Refused(400, f"{in_query}: missing")
        return value


def _unpaid_reason(code: int) -> str:
    """Why the contract refused to pay a session, in words (imported when first needed:
    settlement's modules are heavy for a node that only serves)."""
    from settlement.receipts import UNPAID_REASONS

    return UNPAID_REASONS.get(code, f"reason {code}")


@jinja2.pass_context
def _money(context: jinja2.runtime.Context, minor: int | None, currency: str | None) -> str:
    """A price of a list in its currency's minor digits (the page's ``digits``: its
    tariffs'), or in minor units where they are not known."""
    if minor is None:
        return ""
    from csms.service.views import price_text

    return price_text(minor, currency, context.get("digits", {}).get(currency or ""))
