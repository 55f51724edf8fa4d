"""The admin HTTP API inside ``csms serve``: live commands, status, metrics.

Listens on 127.0.0.1 by default. Every request except ``/health`` needs
``Authorization: Bearer <token>``; the token is read from
``<data_dir>/admin.token``, created at first start with mode 0600 (no default
credential exists anywhere) and compared in constant time. Every command is
written to the audit log (who, what, when, result).
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import json
import logging
import os
import secrets
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import orjson
from aiohttp import web

from csms.bus.commands import CommandBus, NodeUnavailable
from csms.logsafe import protect
from csms.metrics import Metrics
from csms.protocol import InvalidStationId, OcppVersion, station_id_from_path
from csms.server import CallFailed, CallTimeout, CentralSystem, StationOffline
from csms.service.auth import hash_password, validate_password
from csms.service.cluster import live_nodes
from csms.service.ports import Repository, StorageError, Tx
from csms.service.supervisor import Supervisor
from csms.service.views import session_json, station_detail, stations_view
from csms.translate.commands import (
    COMMANDS,
    CommandError,
    build_call,
    carries_secret,
    new_password,
    password_accepted,
    redacted_args,
    redacted_response,
    result_status,
)

__all__ = [
    "COMMAND_RESULTS", "AdminApi", "AdminNotPublic", "command_labels", "is_loopback",
    "load_or_create_token",
]

log = protect(logging.getLogger("csms.admin"))


def load_or_create_token(path: Path) -> str:
    """Read the admin token, creating it (mode 0600) on first start."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        return path.read_text("utf-8").strip()
    except FileNotFoundError:
        pass
    token = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    log.info("= created admin token at %s", path)
    return token


# Label values of voltledger_operator_commands: command names and these words only,
# never what a caller or a station chose (an unbounded label set exhausts memory).
COMMAND_RESULTS = {400: "invalid", 404: "unknown_command", 409: "offline", 502: "callerror",
                   504: "timeout"}


def command_labels(command: str, status: int, result: dict[str, Any]) -> tuple[str, str]:
    """(command, result) labels of an operator command, from fixed sets."""
    name = command if command in COMMANDS else "unknown"
    if status != 200:
        return name, COMMAND_RESULTS.get(status, "error")
    word = str(result.get("status", ""))
    return name, word.lower() if word in ("Accepted", "Rejected") else "other"


class AdminNotPublic(ValueError):
    """The admin host is beyond loopback and the operator did not allow it."""


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 or localhost; an empty host or 0.0.0.0 means every interface."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name: it may resolve to anything


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


def _int(query: dict[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = query.get(name)
    if raw is None:
        return default
    if not raw.isdigit() or not low <= int(raw) <= high:
        raise BadQuery(f"{name} must be an integer from {low} to {high}, not {raw[:20]!r}")
    return int(raw)


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
    try:
        body = orjson.dumps(data)
    except TypeError:  # an integer beyond 64 bits a station sent in a payload
        body = json.dumps(data, default=str).encode()
    return web.Response(body=body, status=status, content_type="application/json")


def _error(status: int, message: str) -> web.Response:
    return _json({"error": message}, status)


class AdminApi:
    def __init__(
        self, central: CentralSystem, repo: Repository, token: str, metrics: Metrics,
        host: str = "127.0.0.1", port: int = 9001, bus: CommandBus | None = None,
        tasks: Supervisor | None = None, public: bool = False,
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
        self._runner: web.AppRunner | None = None
        self.app = web.Application(middlewares=[self._auth, self._bad_query])
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
        ])

    async def start(self) -> None:
        if not is_loopback(self.host):
            if not self.public:
                raise AdminNotPublic(
                    f"the admin API would listen on {self.host or 'every interface'}, beyond"
                    " this machine; give --admin-public (CSMS_ADMIN_PUBLIC=true) to allow it")
            log.warning("! the admin API listens on %s: reachable beyond this machine; only"
                        " its bearer token protects it (use TLS in front of it)",
                        self.host or "every interface")
        self._runner = web.AppRunner(self.app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        addresses = self._runner.addresses  # tells the port chosen for port 0
        if addresses:
            self.port = int(addresses[0][1])
        log.info("= admin API on http://%s:%d", self.host, self.port)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @web.middleware
    async def _auth(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if request.path == "/health":
            response: web.StreamResponse = await handler(request)
            return response
        header = request.headers.get("Authorization", "")
        scheme, _, given = header.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            given.strip().encode(), self.token.encode()
        ):
            return _error(401, "missing or wrong bearer token")
        response = await handler(request)
        return response

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
        that are down (a broker or database outage), which keep being restarted."""
        states = self.tasks.states() if self.tasks is not None else {}
        down = sorted(n for n, s in states.items() if s.state == "down")
        return _json({"status": "degraded" if down else "ok", "node": self.central.node_id,
                      "down": down, "tasks": {n: s.as_json() for n, s in states.items()}})

    async def metrics_text(self, request: web.Request) -> web.Response:
        _query(request, set())
        try:
            await self._database_gauges()
        except StorageError as exc:
            # The database is down: the gauges keep their last values, and the task
            # metrics (voltledger_task_up) say what is down.
            log.warning("! /metrics without the database gauges: %s", exc)
        return web.Response(body=self.metrics.render(),
                            content_type="text/plain", charset="utf-8")

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
            return [session_json(s)
                    for s in await tx.list_sessions(station, True if active else None, limit)]

        return _json(await self.repo.read(work))

    async def session(self, request: web.Request) -> web.Response:
        _query(request, set())
        try:
            session_id = int(request.match_info["session_id"])
        except ValueError:
            return _error(400, "session id must be an integer")

        async def work(tx: Tx) -> dict[str, Any] | None:
            s = await tx.get_session(session_id)
            return None if s is None else session_json(s)

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
        try:
            body = await request.json(loads=orjson.loads) if request.can_read_body else {}
        except ValueError:
            return _error(400, "the body must be a JSON object")
        if not isinstance(body, dict):
            return _error(400, "the body must be a JSON object")
        timeout = body.pop("timeout", None)
        actor = request.headers.get("X-Actor") or f"admin@{request.remote}"
        status, result = await self.run_command(station_id, command, body, timeout)
        ok = status == 200
        # what the audit trail keeps: no credential, neither sent nor answered
        logged = redacted_args(command, body)
        kept = {**result, "response": redacted_response(result["response"])} \
            if isinstance(result.get("response"), dict) else result

        async def audit(tx: Tx) -> None:
            await tx.add_audit(actor, command, station_id, logged, kept, ok,
                               datetime.now(UTC))

        await self.repo.unit(audit)
        self.metrics.commands.labels(*command_labels(command, status, result)).inc()
        return _json(result, status)

    async def run_command(
        self, station_id: str, command: str, args: dict[str, Any], timeout: Any = None,
        *, forwarded: bool = False,
    ) -> tuple[int, dict[str, Any]]:
        """Run an operator command on a station: here, or on the node holding its socket."""
        if command not in COMMANDS:
            return 404, {"error": f"unknown command {command!r}",
                         "commands": sorted(COMMANDS)}
        conn = self.central.connections.get(station_id)
        if conn is None and not forwarded and self.bus is not None:
            return await self._forward(station_id, command, args, timeout)
        if conn is None:
            return 409, {"error": f"station {station_id} is not connected", "status": "Offline"}
        try:
            args = await self._resolve(station_id, conn.version, command, args)
            password = new_password(command, args)
            if password is not None:
                # a password the station takes must be one we can store and check
                try:
                    validate_password(password)
                except ValueError as exc:
                    raise CommandError(str(exc)) from None
            call = build_call(conn.version, command, args)
        except CommandError as exc:
            return 400, {"error": str(exc)}
        secret = carries_secret(command, args)
        try:
            response = await conn.call(
                call.action, call.payload, float(timeout) if timeout else None, secret=secret
            )
        except StationOffline:
            return 409, {"error": f"station {station_id} went offline", "status": "Offline"}
        except CallTimeout:
            return 504, {"error": f"station {station_id} did not answer in time",
                         "status": "Timeout", "action": call.action}
        except CallFailed as exc:
            return 502, {"error": f"station answered {exc.code}: {exc.description}",
                         "status": exc.code, "action": call.action}
        word = result_status(call.action, response)
        answer: dict[str, Any] = {"status": word, "action": call.action,
                                  "ocpp_version": conn.version.short, "response": response}
        if password is not None:
            # Switch to the new password only once the station accepted it (1.6
            # security whitepaper / 2.0.1 A01.FR.04), whichever command carried it
            # (set-password, or set-config / set-variables of the password key);
            # otherwise the station keeps the old one, and so do we.
            answer["switched"] = password_accepted(call.action, response)
            if answer["switched"]:
                await self._store_password(station_id, password)
        return 200, answer

    async def _forward(
        self, station_id: str, command: str, args: dict[str, Any], timeout: Any,
    ) -> tuple[int, dict[str, Any]]:
        """The station is on another live node: ask that node over the bus."""
        assert self.bus is not None

        async def where(tx: Tx) -> str | None:
            station = await tx.get_station(station_id)
            if station is None or station.connected_node is None:
                return None
            alive = await live_nodes(tx, datetime.now(UTC))
            return station.connected_node if station.connected_node in alive else None

        node = await self.repo.read(where)
        if node is None or node == self.central.node_id:
            return 409, {"error": f"station {station_id} is not connected", "status": "Offline"}
        wait = (float(timeout) if timeout else self.central.settings.call_timeout) + 5.0
        try:
            status, result = await self.bus.request(node, station_id, command, args,
                                                    float(timeout) if timeout else None, wait)
        except NodeUnavailable as exc:
            return 504, {"error": str(exc), "status": "Timeout", "node": node}
        return status, {**result, "node": node}

    async def _store_password(self, station_id: str, password: str) -> None:
        digest = await asyncio.to_thread(hash_password, password)

        async def work(tx: Tx) -> None:
            station = await tx.get_station(station_id)
            if station is None:
                raise CommandError(f"no station {station_id}")
            station.password_hash = digest
            station.security_profile = max(station.security_profile, 1)
            await tx.update_station(station)
            await tx.add_station_event(station_id, "security",
                                       {"type": "PasswordRotated"}, datetime.now(UTC))

        await self.repo.unit(work)

    async def _resolve(
        self, station_id: str, version: OcppVersion, command: str, args: dict[str, Any]
    ) -> dict[str, Any]:
        """Fill in what the operator named in domain words (a session, the tag list)."""
        if command == "start":
            # A driver's escrow must cover the charge: a signed app session, or a card
            # whose driver's escrow and terms cover another session.
            service = self.central.service
            tag = str(args.get("tag", ""))
            authorization = args.get("authorization")
            if authorization is not None:
                if not isinstance(authorization, dict):
                    raise CommandError("authorization must be a JSON object")
                try:
                    await service.accept_authorization(station_id, tag, authorization)
                except ValueError as exc:
                    raise CommandError(str(exc)) from None
                return {k: v for k, v in args.items() if k != "authorization"}
            reason = await service.refusal(station_id, tag)
            if reason is not None:
                raise CommandError(f"no credit: {reason}")
            return args
        if command == "stop" and "transaction_id" not in args:
            session_id = args.get("session")

            async def find(tx: Tx) -> str:
                if session_id is not None:
                    s = await tx.get_session(int(session_id))
                    if s is None or s.station_id != station_id:
                        raise CommandError(f"no session {session_id} on {station_id}")
                    if s.status.value != "active":
                        raise CommandError(f"session {session_id} is not active")
                    return s.transaction_id
                active = await tx.list_sessions(station_id, True, 2)
                if not active:
                    raise CommandError(f"{station_id} has no active session")
                if len(active) > 1:
                    raise CommandError(f"{station_id} has several active sessions: name one")
                return active[0].transaction_id

            return {**args, "transaction_id": await self.repo.read(find)}
        if command == "send-local-list":
            async def tags(tx: Tx) -> tuple[int, list[dict[str, Any]]]:
                now = datetime.now(UTC)
                listed = [{"tag": t.tag, "status": t.authorize(now).value}
                          for t in await tx.list_tags()]
                return await tx.next_local_list_version(station_id), listed

            version_number, listed = await self.repo.unit(tags)
            return {**args, "list_version": version_number, "tags": listed}
        return args

    async def openapi(self, request: web.Request) -> web.Response:
        _query(request, set())
        return _json(openapi_document())


def openapi_document() -> dict[str, Any]:
    bearer: list[dict[str, list[str]]] = [{"bearer": []}]
    ok = {"200": {"description": "OK", "content": {"application/json": {}}}}
    bad = {"400": {"description": "Unknown query parameter or unusable value"}}
    command_responses = {
        "200": {"description": "The station's answer"},
        "400": {"description": "Invalid arguments for this command or station"},
        "401": {"description": "Missing or wrong bearer token"},
        "404": {"description": "Unknown command"},
        "409": {"description": "Station not connected to this node"},
        "502": {"description": "Station answered with a CALLERROR"},
        "504": {"description": "Station did not answer in time"},
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "voltledger admin API", "version": "1"},
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
        "security": bearer,
        "paths": {
            "/health": {"get": {"security": [], "responses": ok}},
            "/metrics": {"get": {"description": "Prometheus text format", "responses": ok}},
            "/stations": {"get": {"responses": ok}},
            "/stations/{station_id}": {"get": {"responses": ok, "parameters": [
                {"name": "station_id", "in": "path", "required": True,
                 "schema": {"type": "string"}}]}},
            "/sessions": {"get": {"responses": {**ok, **bad}, "parameters": [
                {"name": "station", "in": "query", "schema": {"type": "string"}},
                {"name": "active", "in": "query", "schema": {"type": "boolean"}},
                {"name": "limit", "in": "query",
                 "schema": {"type": "integer", "minimum": 1, "maximum": 10000}}]}},
            "/sessions/{session_id}": {"get": {"responses": ok, "parameters": [
                {"name": "session_id", "in": "path", "required": True,
                 "schema": {"type": "integer"}}]}},
            "/audit": {"get": {"responses": {**ok, **bad}, "parameters": [
                {"name": "limit", "in": "query",
                 "schema": {"type": "integer", "minimum": 1, "maximum": 10000}}]}},
            "/stations/{station_id}/commands/{command}": {"post": {
                "description": "Send a command to a connected station and wait for its answer."
                               " Commands: " + ", ".join(sorted(COMMANDS)),
                "parameters": [
                    {"name": "station_id", "in": "path", "required": True,
                     "schema": {"type": "string"}},
                    {"name": "command", "in": "path", "required": True,
                     "schema": {"type": "string", "enum": sorted(COMMANDS)}}],
                "requestBody": {"content": {"application/json": {"schema": {"type": "object"}}}},
                "responses": command_responses,
            }},
        },
    }
