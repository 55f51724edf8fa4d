"""The operator's use cases behind the admin API: run a command on a station (here, or over
the bus on the node holding its socket), fill in what the operator named in domain words
(a session to stop, the tag list to send, a driver's authorization or credit for a
start), and switch a station's password once the station accepted the new one.

Results are ``(HTTP status, JSON body)``; the HTTP side (:mod:`csms.admin.api`) audits them.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from csms.admin import device
from csms.admin.maintenance import RECORDED, MaintenanceCommands
from csms.bus.commands import CommandBus, NodeUnavailable
from csms.domain.model import MASTER_PASS_VERSIONS
from csms.protocol import OcppVersion
from csms.server import CallFailed, CallTimeout, CentralSystem, StationOffline
from csms.service.auth import hash_password, validate_password
from csms.service.cluster import live_nodes
from csms.service.ports import Repository, Tx
from csms.translate.commands import (
    COMMANDS,
    CommandError,
    build_call,
    carries_secret,
    new_password,
    password_accepted,
    result_status,
)

__all__ = ["COMMAND_RESULTS", "OperatorCommands", "command_labels"]

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


class OperatorCommands:
    """Commands to stations, as an operator gives them."""

    def __init__(self, central: CentralSystem, repo: Repository,
                 bus: CommandBus | None = None) -> None:
        self.central = central
        self.repo = repo
        self.bus = bus  # commands for stations on other nodes go over MQTT
        # reservations, firmware updates, log requests: recorded before and after the CALL
        self.maintenance = MaintenanceCommands(central)

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
        prepared = False
        try:
            args = await self._resolve(station_id, conn.version, command, args)
            if command in RECORDED:
                args = await self.maintenance.prepare(station_id, command, args)
                prepared = True
            args = await device.prepare(self.repo, station_id, command, args)
            password = new_password(command, args)
            if password is not None:
                # a password the station takes must be one we can store and check
                try:
                    validate_password(password)
                except ValueError as exc:
                    raise CommandError(str(exc)) from None
            call = build_call(conn.version, command, args)
        except CommandError as exc:
            if prepared:  # recorded, but never sent
                await self._settle(command, args, "Invalid", None)
            return 400, {"error": str(exc)}
        secret = carries_secret(command, args)
        try:
            response = await conn.call(
                call.action, call.payload, float(timeout) if timeout else None, secret=secret
            )
        except StationOffline:
            await self._settle(command, args, "Offline", None)
            return 409, {"error": f"station {station_id} went offline", "status": "Offline"}
        except CallTimeout:
            await self._settle(command, args, "Timeout", None)
            return 504, {"error": f"station {station_id} did not answer in time",
                         "status": "Timeout", "action": call.action}
        except CallFailed as exc:
            await self._settle(command, args, exc.code, None)
            return 502, {"error": f"station answered {exc.code}: {exc.description}",
                         "status": exc.code, "action": call.action}
        await device.record(self.repo, station_id, command, args, call.payload, response)
        word = result_status(call.action, response)
        answer: dict[str, Any] = {"status": word, "action": call.action,
                                  "ocpp_version": conn.version.short, "response": response,
                                  **await self._settle(command, args, word, response)}
        if password is not None:
            # Switch to the new password only once the station accepted it (1.6
            # security whitepaper / 2.0.1 A01.FR.04), whichever command carried it
            # (set-password, or set-config / set-variables of the password key);
            # otherwise the station keeps the old one, and so do we.
            answer["switched"] = password_accepted(call.action, response)
            if answer["switched"]:
                await self._store_password(station_id, password)
        return 200, answer

    async def _settle(self, command: str, args: dict[str, Any], word: str,
                      response: dict[str, Any] | None) -> dict[str, Any]:
        if command not in RECORDED:
            return {}
        return await self.maintenance.settle(command, args, word, response)

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
            if version.value in MASTER_PASS_VERSIONS and await service.is_master_pass(tag):
                # C16: a master pass stops transactions, it starts none (nor remotely)
                raise CommandError(f"{tag} is a master pass (the 2.0.1 master pass group):"
                                   " it may stop any transaction and start none")
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
        if command == "cost-updated":
            # the cost is the central system's, from the session's tariff; never the caller's
            try:
                cost = await self.central.service.cost_command_args(station_id,
                                                                    args.get("session"))
            except ValueError as exc:
                raise CommandError(str(exc)) from None
            return {**{k: v for k, v in args.items() if k != "session"}, **cost}
        if command == "send-local-list":
            async def tags(tx: Tx) -> tuple[int, list[dict[str, Any]]]:
                now = datetime.now(UTC)
                listed = [{"tag": t.tag, "status": t.authorize(now).value}
                          for t in await tx.list_tags()]
                return await tx.next_local_list_version(station_id), listed

            version_number, listed = await self.repo.unit(tags)
            return {**args, "list_version": version_number, "tags": listed}
        return args
