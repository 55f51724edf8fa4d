"""The admin API's HTTP side: routes, the bearer token, query parsing, the read endpoints
(stations, sessions, audit, health, metrics) and the command endpoint, which audits each
command and hands it to the operator use cases (:mod:`csms.admin.operator`).

Listens on 127.0.0.1 by default. Every request except ``/health`` needs
``Authorization: Bearer <token>`` (``/health`` without it leaves out the tasks' error
texts); the token is read from
``<data_dir>/admin.token``, created at first start with mode 0600 (no default
credential exists anywhere) and compared in constant time; wrong ones slow the next checks
from their address, never refuse them (:class:`csms.service.ratelimit.LoginDelay`, shared
with the console's login). Every command is
written to the audit log (who, what, when, result): who is the token (``admin@<address>``),
an ``X-Actor`` header only the name the caller claims, kept beside it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import os
import secrets
import tempfile
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from aiohttp import web

from csms.admin.listener import AdminHosts, AdminSockets
from csms.admin.openapi import openapi_document
from csms.admin.operator import MAX_ID, OperatorCommands, command_labels
from csms.bus.commands import CommandBus
from csms.config import cannot_listen, is_loopback
from csms.domain.maintenance import Transfer, TransferKind
from csms.filestore import display_name, log_path
from csms.logsafe import protect
from csms.metrics import Metrics, merge_workers
from csms.protocol import InvalidStationId, station_id_from_path
from csms.protocol.frames import dumps, loads  # integers beyond 64 bits exactly
from csms.server import CentralSystem
from csms.service.holds import hold_fields, notice_period
from csms.service.maintenance_views import firmware_json, reservation_json, transfer_json
from csms.service.ports import Repository, StorageError, Tx
from csms.service.ratelimit import LoginDelay, address_key
from csms.service.supervisor import Supervisor
from csms.service.transfers import TransferError
from csms.service.views import session_json, station_detail, stations_view
from csms.sockets import ServerLog
from csms.translate.commands import (
    redacted_args,
)

__all__ = ["AdminApi", "AdminNotPublic", "is_loopback", "load_or_create_token", "record_id"]

log = protect(logging.getLogger("csms.admin"))


def load_or_create_token(path: Path) -> str:
    """Read the admin token, creating it (mode 0600) on first start.

    A file that holds no token (emptied by hand, or left empty by a version that wrote
    it after creating it, by a process that died in between) is replaced by one with a
    new token: an empty token would let ``Authorization: Bearer `` in. The file only
    ever appears whole: the token is written to a temporary file of the folder, which is
    then linked (first start: never over a token another process just wrote) or renamed
    (an empty file) into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        token = path.read_text("utf-8").strip()
    except FileNotFoundError:
        token, exists = "", False
    else:
        exists = True
    if token:
        return token
    fd, name = tempfile.mkstemp(prefix=".admin.token.", dir=path.parent)  # mode 0600
    try:
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(32) + "\n")
            f.flush()
            os.fsync(f.fileno())
        if exists:
            os.replace(name, path)
        else:
            with contextlib.suppress(FileExistsError):  # another process made it first
                os.link(name, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(name)
    # what the file holds now is the token (ours, or the one of a process that raced us)
    token = path.read_text("utf-8").strip()
    if not token:
        raise ValueError(f"the admin token file {path} holds no token")
    log.info("= %s admin token at %s", "replaced the empty" if exists else "created", path)
    return token


# A request that carried the admin token (set by AdminApi._auth)
AUTHENTICATED: web.RequestKey[bool] = web.RequestKey("authenticated", bool)


class AdminNotPublic(ValueError):
    """The admin host is beyond loopback and the operator did not allow it."""


class BadQuery(Exception):
    """A query parameter the endpoint does not take, or a value it cannot use (400)."""


def _query(request: web.Request, allowed: set[str]) -> dict[str, str]:
    unknown = sorted(set(request.query) - allowed)
    if unknown:
        raise BadQuery(f"unknown query parameter {unknown[0]!r}"
                       f" (this endpoint takes: {', '.join(sorted(allowed)) or 'none'})")
    if len(request.query) != len(set(request.query)):
        raise BadQuery("a query parameter is given twice")
    return dict(request.query)


def _digits(raw: str) -> int | None:
    """The integer of a string of ASCII digits (no sign, blank or underscore, which int()
    takes) of at most 19 digits but leading zeros (int() refuses more than 4,300 digits);
    None otherwise."""
    significant = raw.lstrip("0")
    if not (raw.isascii() and raw.isdigit()) or len(significant) > 19:
        return None
    return int(significant or "0")


def _int(query: dict[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = query.get(name)
    if raw is None:
        return default
    value = _digits(raw)
    if value is None or not low <= value <= high:
        raise BadQuery(f"{name} must be an integer from {low} to {high}, not {raw[:20]!r}")
    return value


def record_id(raw: str) -> int | None:
    """A record's id in a path or a cursor (a session, a request, a batch, an audit
    entry): ASCII digits, 1 to :data:`MAX_ID` (a SQLite / PostgreSQL bigint); None for
    anything else. The API and the console both check ids with it."""
    value = _digits(raw)
    return value if value is not None and 0 < value <= MAX_ID else None


def _bool(query: dict[str, str], name: str) -> bool | None:
    raw = query.get(name)
    if raw is None:
        return None
    if raw.lower() in ("1", "true", "yes"):
        return True
    if raw.lower() in ("0", "false", "no"):
        return False
    raise BadQuery(f"{name} must be true or false, not {raw[:20]!r}")


def _json(data: Any, status: int = 200) -> web.Response:
    # dumps: an integer beyond 64 bits a station sent in a payload too
    return web.Response(body=dumps(data).encode(), status=status,
                        content_type="application/json")


def _error(status: int, message: str) -> web.Response:
    return _json({"error": message}, status)


# the longest X-Actor kept (a name, not a document)
MAX_CLAIMED_ACTOR = 200


def _actors(request: web.Request) -> tuple[str, str | None]:
    """(actor, claimed actor) of an API request for the audit log. The actor is who was
    authenticated: the admin token, named by the address it came from (one token, so
    nothing names its holder better). X-Actor is what the caller says of itself (``csms
    remote`` sends ``cli:<user>``, an app backend its name): any holder of the token may
    send any name, so it is kept as a claim beside the actor, never in its place."""
    claimed = request.headers.get("X-Actor", "").strip()[:MAX_CLAIMED_ACTOR]
    return f"admin@{request.remote}", claimed or None


# The largest station's answer an audit entry keeps, in bytes of JSON. A station chooses
# its answer's size up to the frame limit (a GetConfiguration of thousands of keys, a
# report of every variable): kept whole, each command it answered wrote up to a megabyte
# into a row kept for ever, and the audit's pages read them back. Beyond it the entry
# keeps the command's result without the answer, and the answer's size.
AUDIT_RESPONSE_BYTES = 8192


def audited_result(result: dict[str, Any]) -> dict[str, Any]:
    """A command's result as the audit log keeps it: the station's answer (``response``)
    only up to :data:`AUDIT_RESPONSE_BYTES`, else its size (``response_bytes``)."""
    response = result.get("response")
    if response is None:
        return result
    size = len(dumps(response).encode())
    if size <= AUDIT_RESPONSE_BYTES:
        return result
    return {**{k: v for k, v in result.items() if k != "response"}, "response_bytes": size}


class AdminApi:
    def __init__(
        self, central: CentralSystem, repo: Repository, token: str, metrics: Metrics,
        host: str = "127.0.0.1", port: int = 9001, bus: CommandBus | None = None,
        tasks: Supervisor | None = None, public: bool = False,
        request_timeout: float = 10.0, hosts: Iterable[str] = (),
    ) -> None:
        self.central = central
        self.bus = bus  # commands for stations on other nodes go over MQTT
        self.tasks = tasks  # the node's background tasks, for /health
        self.public = public  # the operator allowed a host beyond loopback
        self.repo = repo
        self.token = token
        self.metrics = metrics
        self.host = host
        self.port = port
        self.operator = OperatorCommands(central, repo, bus)
        # csms serve --workers: the other workers' metrics, read when /metrics is
        # (csms.metrics); None for a node of one process
        self.other_workers: Callable[[], Awaitable[list[str | None]]] | None = None
        self._runner: web.AppRunner | None = None
        self._server: asyncio.AbstractServer | None = None
        # idle, slow and too many sockets (csms.admin.listener); request_timeout: the
        # node's handshake_timeout, as on the station listeners
        self.sockets = AdminSockets(request_timeout, metrics=metrics)
        # the Host headers answered: DNS rebinding (csms.admin.listener)
        self.hosts = AdminHosts(host, hosts)
        # wrong tokens, at the console's login or as a bearer token, slow the next checks
        # from their address, up to a cap; nobody is locked out (csms.service.ratelimit)
        self.guessing = LoginDelay()
        self._closing = asyncio.Event()
        from csms.admin.console import Console

        self.console = Console(self)
        self.app = web.Application(middlewares=[
            self.sockets.started, self.hosts.check, self.sockets.body_deadline,
            self.console.form_limit,
            self._auth, self._bad_query])
        self.app.add_routes([
            web.get("/health", self.health),
            web.get("/openapi.json", self.openapi),
            web.get("/metrics", self.metrics_text),
            web.get("/stations", self.stations),
            web.get("/stations/{station_id}", self.station),
            web.get("/sessions", self.sessions),
            web.get("/sessions/{session_id}", self.session),
            web.get("/audit", self.audit),
            web.post("/stations/{station_id}/commands/{command}", self.command),
            web.get("/reservations", self.reservations),
            web.get("/firmware", self.firmware),
            web.get("/transfers", self.transfers),
            web.get("/transfers/{transfer_id}/file", self.transfer_file),
            web.post("/transfers/{transfer_id}/cancel", self.transfer_cancel),
        ])
        # the operator console: pages with a login of their own (csms.admin.console)
        self.app.add_subapp("/console", self.console.app)

    async def start(self) -> None:
        if not is_loopback(self.host):
            if not self.public:
                raise AdminNotPublic(
                    f"the admin API would listen on {self.host or 'every interface'}, beyond"
                    " this machine; give --admin-public (CSMS_ADMIN_PUBLIC=true) to allow it")
            log.warning("! the admin API listens on %s: reachable beyond this machine; only"
                        " its bearer token protects it (use TLS in front of it)",
                        self.host or "every interface")
        # keepalive_timeout: aiohttp closes a socket that has not sent a whole request
        # line and headers within it, from its accept or its last answer
        # logger: a malformed or cut off request is a warning now and then (ServerLog)
        self._runner = web.AppRunner(self.app, access_log=None,
                                     keepalive_timeout=self.sockets.timeout,
                                     logger=ServerLog(log, "admin listener"))
        await self._runner.setup()
        handler = self._runner.server
        assert handler is not None
        try:
            self._server = await asyncio.get_running_loop().create_server(
                lambda: self.sockets.protocol(handler), self.host or None, self.port)
        except OSError as exc:  # a port in use: the flag to change
            raise cannot_listen("admin_port", "admin_host", self.host, self.port,
                                exc) from None
        self.port = int(self._server.sockets[0].getsockname()[1])  # port 0: the one chosen
        log.info("= admin API on http://%s:%d", self.host, self.port)

    async def slowed(self, request: web.Request) -> bool:
        """Wait as long as the request's address must before its token is checked (0 s
        unless it gave wrong tokens lately); False: the listener is closing."""
        wait = self.guessing.wait(address_key(request.remote or ""))
        if wait <= 0:
            return True
        # a guesser's requests waiting here on every socket held the listener: they give
        # way to a newcomer (csms.admin.listener)
        with contextlib.suppress(TimeoutError), self.sockets.stalled(request):
            await asyncio.wait_for(self._closing.wait(), wait)
        return not self._closing.is_set()

    async def stop(self) -> None:
        self._closing.set()
        self.console.close()
        if self._server is not None:
            self._server.close()
            self._server = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @web.middleware
    async def _auth(self, request: web.Request, handler: Any) -> web.StreamResponse:
        response: web.StreamResponse
        if request.path.startswith("/console/") or (
                request.path == "/health" and "Authorization" not in request.headers):
            # the console checks its own login cookie and CSRF token; /health answers a
            # probe without a token (and then says less, see health)
            response = await handler(request)
            return response
        refused = await self._refused(request)
        if refused is not None:
            return refused
        request[AUTHENTICATED] = True
        response = await handler(request)
        return response

    async def _refused(self, request: web.Request) -> web.Response | None:
        """The answer to a request without the bearer token (401), or None."""
        header = request.headers.get("Authorization", "")
        scheme, _, given = header.partition(" ")
        given = given.strip()
        # guessed no faster here than at the console's login (LoginDelay)
        if not await self.slowed(request):
            return _error(503, "the server is closing")
        # an empty token opens nothing, whatever the token file held
        if scheme.lower() != "bearer" or not given or not self.token or \
                not hmac.compare_digest(given.encode(), self.token.encode()):
            self.guessing.failed(address_key(request.remote or ""))
            return _error(401, "missing or wrong bearer token")
        return None

    @web.middleware
    async def _bad_query(self, request: web.Request, handler: Any) -> web.StreamResponse:
        try:
            response: web.StreamResponse = await handler(request)
        except BadQuery as exc:
            return _error(400, str(exc))
        return response

    # -- read endpoints ----------------------------------------------------------
    async def health(self, request: web.Request) -> web.Response:
        """Always answers (200) while the process runs; ``degraded`` names the tasks
        that are down (a broker or database outage), which keep being restarted. Each
        task's last error is given only with the bearer token: its text may name what a
        stranger must not learn (a chain provider's URL with its API key in the path, a
        database's host)."""
        states = self.tasks.states() if self.tasks is not None else {}
        down = sorted(n for n, s in states.items() if s.state == "down")
        tasks = {n: s.as_json() for n, s in states.items()}
        if not request.get(AUTHENTICATED, False):
            for task in tasks.values():
                task.pop("last_error", None)
        return _json({"status": "degraded" if down else "ok", "node": self.central.node_id,
                      "down": down, "tasks": tasks})

    async def metrics_text(self, request: web.Request) -> web.Response:
        _query(request, set())
        try:
            await self._database_gauges()
        except StorageError as exc:
            # The database is down: the gauges keep their last values, and the task
            # metrics (voltledger_task_up) say what is down.
            log.warning("! /metrics without the database gauges: %s", exc)
        body = self.metrics.render()
        if self.other_workers is not None:
            others = await self.other_workers()
            body = merge_workers([body.decode(), *others])
        return web.Response(body=body, content_type="text/plain", charset="utf-8")

    async def _database_gauges(self) -> None:
        async def counts(tx: Tx) -> tuple[dict[str, int], int, int, int]:
            return (await tx.count_sessions(), await tx.settlement_backlog(),
                    await tx.count_outbox_pending(), await tx.gas_spent())

        sessions, backlog, outbox, gas_used = await self.repo.read(counts)
        self.metrics.gas_spent.set(gas_used)
        for status in ("active", "completed"):
            self.metrics.sessions.labels(status).set(sessions.get(status, 0))
        self.metrics.settlement_backlog.set(backlog)
        self.metrics.outbox_pending.set(outbox)

    async def stations(self, request: web.Request) -> web.Response:
        _query(request, set())
        return _json(await self.repo.read(stations_view))

    async def station(self, request: web.Request) -> web.Response:
        _query(request, set())
        station_id = request.match_info["station_id"]
        data = await self.repo.read(lambda tx: station_detail(tx, station_id))
        return _error(404, f"no station {station_id}") if data is None else _json(data)

    async def sessions(self, request: web.Request) -> web.Response:
        query = _query(request, {"station", "active", "limit"})
        station = query.get("station")
        if station is not None:
            try:
                station_id_from_path("/" + quote(station, safe=""))
            except InvalidStationId as exc:
                raise BadQuery(f"station: {exc}") from None
        active = _bool(query, "active")
        limit = _int(query, "limit", 1000, 1, 10_000)

        async def work(tx: Tx) -> list[dict[str, Any]]:
            # as csms sessions list --json: a held session with its time to decide it by
            notice, now = await notice_period(tx), datetime.now(UTC)
            return [{**session_json(s), **hold_fields(s, notice, now)}
                    for s in await tx.list_sessions(station, True if active else None, limit)]

        return _json(await self.repo.read(work))

    async def session(self, request: web.Request) -> web.Response:
        _query(request, set())
        session_id = record_id(request.match_info["session_id"])
        if session_id is None:
            return _error(400, "a session id is an integer from 1 to 2**63-1")

        async def work(tx: Tx) -> dict[str, Any] | None:
            s = await tx.get_session(session_id)
            if s is None:
                return None
            return {**session_json(s),
                    **hold_fields(s, await notice_period(tx), datetime.now(UTC))}

        data = await self.repo.read(work)
        return _error(404, f"no session {session_id}") if data is None else _json(data)

    async def audit(self, request: web.Request) -> web.Response:
        limit = _int(_query(request, {"limit"}), "limit", 100, 1, 10_000)

        async def work(tx: Tx) -> list[dict[str, Any]]:
            return await tx.list_audit(limit)

        return _json(await self.repo.read(work))

    # -- commands ----------------------------------------------------------------
    async def command(self, request: web.Request) -> web.Response:
        _query(request, set())
        station_id = request.match_info["station_id"]
        command = request.match_info["command"]
        actor, claimed = _actors(request)
        try:
            body = await request.json(loads=loads) if request.can_read_body else {}
        except ValueError:
            body = None
        if not isinstance(body, dict):  # refused, and audited as every refusal is
            status, result = 400, {"error": "the body must be a JSON object"}
            await self._audit(actor, station_id, command, {}, status, result, claimed)
            return _json(result, status)
        timeout = body.pop("timeout", None)
        status, result = await self.audited_command(actor, station_id, command, body, timeout,
                                                    claimed_actor=claimed)
        return _json(result, status)

    async def audited_command(
        self, actor: str, station_id: str, command: str, body: dict[str, Any],
        timeout: Any = None, *, claimed_actor: str | None = None,
    ) -> tuple[int, dict[str, Any]]:
        """Run an operator command and write it to the audit log (the API's and the
        console's path): a command refused (400: a session or a timeout that is none,
        arguments the command does not take...) is audited too, with ok false, and so is
        one that failed on an error of ours (before it goes up as a 500). ``actor``: who
        was authenticated; ``claimed_actor``: the name a caller gave (X-Actor), kept
        beside it."""
        try:
            status, result = await self.run_command(station_id, command, body, timeout)
        except Exception as exc:
            with contextlib.suppress(StorageError):  # the error that matters is exc
                await self._audit(actor, station_id, command, body, 500,
                                  {"error": f"failed: {type(exc).__name__}"}, claimed_actor)
            raise
        await self._audit(actor, station_id, command, body, status, result, claimed_actor)
        return status, result

    async def _audit(self, actor: str, station_id: str, command: str, body: dict[str, Any],
                     status: int, result: dict[str, Any],
                     claimed_actor: str | None = None) -> None:
        ok = status in (200, 202)  # 202: queued for a station that is offline
        # what the audit trail keeps: no credential sent (one answered never gets here:
        # OperatorCommands redacts the station's answer), no station's answer of any size
        logged = redacted_args(command, body)
        kept = audited_result(result)

        async def audit(tx: Tx) -> None:
            await tx.add_audit(actor, command, station_id, logged, kept, ok,
                               datetime.now(UTC), claimed_actor)

        await self.repo.unit(audit)
        self.metrics.commands.labels(*command_labels(command, status, result)).inc()

    async def send_queued(self, station_id: str) -> None:
        """Send the requests kept for a station that was offline (each one audited, by
        ``queue``); the station's accepted boot on this node runs it, and so does its first
        message on a connection it opened without one (sent only if its last boot was
        accepted)."""
        try:
            sent = await self.operator.send_queued(station_id)
        except StorageError as exc:
            log.warning("! %s: queued requests not sent now: %s", station_id, exc)
            return
        for command, status, result in sent:
            log.info("> %s: queued %s request %s sent: %s", station_id, command,
                     result.get("request_id"), result.get("status") or result.get("error"))
            await self._audit("queue", station_id, command,
                              {"request_id": result.get("request_id")}, status, result)

    async def cancel_transfer(self, actor: str, transfer_id: int,
                              kinds: tuple[TransferKind, ...],
                              claimed_actor: str | None = None) -> tuple[int, dict[str, Any]]:
        """The operator cancels a queued request (audited)."""
        result: dict[str, Any]
        station: str | None = None
        try:
            t = await self.central.service.cancel_queued(transfer_id, kinds)
        except TransferError as exc:
            status, result = 400, {"error": str(exc)}
        else:
            status, result = 200, {"status": t.status, "request_id": t.id}
            station = t.station_id

        async def audit(tx: Tx) -> None:
            await tx.add_audit(actor, "cancel-transfer", station, {"request_id": transfer_id},
                               result, status == 200, datetime.now(UTC), claimed_actor)

        await self.repo.unit(audit)
        return status, result

    async def run_command(
        self, station_id: str, command: str, args: dict[str, Any], timeout: Any = None,
        *, forwarded: bool = False,
    ) -> tuple[int, dict[str, Any]]:
        """Run an operator command on a station: here, or on the node holding its socket."""
        return await self.operator.run_command(station_id, command, args, timeout,
                                               forwarded=forwarded)

    # -- reservations, firmware, logs ---------------------------------------------
    async def reservations(self, request: web.Request) -> web.Response:
        query = _query(request, {"station", "limit"})
        limit = _int(query, "limit", 1000, 1, 10_000)
        now = datetime.now(UTC)

        async def work(tx: Tx) -> list[dict[str, Any]]:
            return [reservation_json(r, now)
                    for r in await tx.list_reservations(query.get("station"), limit)]

        return _json(await self.repo.read(work))

    async def firmware(self, request: web.Request) -> web.Response:
        _query(request, set())

        async def work(tx: Tx) -> list[dict[str, Any]]:
            return [firmware_json(f) for f in await tx.list_firmware()]

        return _json(await self.repo.read(work))

    async def transfers(self, request: web.Request) -> web.Response:
        """Firmware updates (``kind=firmware``), log requests (``kind=log``), firmware
        publications (``kind=publish``) or unpublications (``kind=unpublish``)."""
        query = _query(request, {"kind", "station", "limit"})
        try:
            kind = TransferKind(query.get("kind", "log"))
        except ValueError:
            raise BadQuery("kind must be firmware, log, publish or unpublish") from None
        limit = _int(query, "limit", 1000, 1, 10_000)
        now = datetime.now(UTC)

        async def work(tx: Tx) -> list[dict[str, Any]]:
            versions = {f.id: f.version for f in await tx.list_firmware()}
            return [transfer_json(t, now, versions.get(t.firmware_id))
                    for t in await tx.list_transfers(kind, query.get("station"), limit)]

        return _json(await self.repo.read(work))

    async def transfer_cancel(self, request: web.Request) -> web.Response:
        """Cancel a queued firmware update, log request or publication (only while it is
        queued: one that is being sent or was sent cannot be called back)."""
        _query(request, set())
        transfer_id = record_id(request.match_info["transfer_id"])
        if transfer_id is None:
            return _error(400, "a request id is an integer from 1 to 2**63-1")
        try:
            body = await request.json(loads=loads) if request.can_read_body else {}
        except ValueError:
            return _error(400, "the body must be a JSON object")
        names = body.get("kinds", [k.value for k in TransferKind]) \
            if isinstance(body, dict) else None
        try:
            kinds = tuple(TransferKind(k) for k in names) if isinstance(names, list) else ()
        except ValueError:
            kinds = ()
        if not kinds:
            return _error(400, "kinds: a list of firmware, log, publish")
        actor, claimed = _actors(request)
        status, result = await self.cancel_transfer(actor, transfer_id, kinds, claimed)
        return _json(result, status)

    async def transfer_file(self, request: web.Request) -> web.StreamResponse:
        """An uploaded log, as this node received it."""
        _query(request, set())
        transfer_id = record_id(request.match_info["transfer_id"])
        if transfer_id is None:
            return _error(400, "a log request id is an integer from 1 to 2**63-1")

        async def work(tx: Tx) -> Transfer | None:
            return await tx.get_transfer(transfer_id)

        t = await self.repo.read(work)
        if t is None or t.kind is not TransferKind.LOG or t.uploaded_at is None:
            return _error(404, f"no uploaded log for request {transfer_id}")
        path = log_path(self.central.settings.data_dir, transfer_id)
        if not path.is_file():
            return _error(404, f"the log of request {transfer_id} is not on this node")
        return web.FileResponse(path, headers={
            "Content-Type": "application/octet-stream",
            "Content-Disposition": f'attachment; filename="{display_name(t.file_name)}"'})

    async def openapi(self, request: web.Request) -> web.Response:
        _query(request, set())
        return _json(openapi_document())
