"""The operator's use cases behind the admin API: run a command on a station (here, or over
the bus on the node holding its socket), fill in what the operator named in domain words
(a session to stop, the tag list to send, a driver's authorization or credit for a
start), and switch a station's password once the station accepted the new one.

Results are ``(HTTP status, JSON body)``; the HTTP side (:mod:`csms.admin.api`) audits them.

A firmware update, log request or firmware publication for a station that is connected
nowhere is queued (202, status ``queued``) instead of failing; :meth:`OperatorCommands.
send_queued` sends a station's queued requests, oldest first, once its BootNotification
is accepted on this node, or once it is heard on a connection it opened without one when
its last boot (as stored) was accepted (and the node's sweep retries for stations
connected here).
Each queued request is claimed by one conditional update before it is sent, so two
boots in a row, or two nodes, never send it twice.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import Any

from csms.admin import device
from csms.admin.maintenance import QUEUEABLE, RECORDED, MaintenanceCommands
from csms.bus.commands import CommandBus, NodeUnavailable
from csms.config import MAX_COMMAND_TIMEOUT
from csms.domain.model import MASTER_PASS_VERSIONS
from csms.protocol import OcppVersion
from csms.protocol.pnc16 import PncError
from csms.server import CallFailed, CallTimeout, CentralSystem, StationConnection, StationOffline
from csms.service.auth import hash_password, validate_password
from csms.service.cluster import live_nodes
from csms.service.device_model import DeviceModel
from csms.service.ports import Repository, Tx
from csms.translate.commands import (
    COMMANDS,
    BuiltCall,
    CommandError,
    build_call,
    carries_secret,
    new_password,
    password_accepted,
    plug_and_charge,
    redacted_response,
    result_status,
    version_refusal,
)
from csms.translate.pnc16 import inner_action, pnc_call, read_answer

__all__ = ["COMMAND_RESULTS", "MAX_ID", "MAX_TIMEOUT", "OperatorCommands", "check_session",
           "command_labels", "command_timeout"]

log = logging.getLogger(__name__)

# Label values of voltledger_operator_commands: command names and these words only,
# never what a caller or a station chose (an unbounded label set exhausts memory).
COMMAND_RESULTS = {202: "queued", 400: "invalid", 404: "unknown_command", 409: "offline",
                   502: "callerror", 504: "timeout"}


# The longest an operator may have a command wait for the station's answer, in seconds.
MAX_TIMEOUT = MAX_COMMAND_TIMEOUT
# A session's id, as the database keeps it (a SQLite / PostgreSQL bigint).
MAX_ID = 2**63 - 1


def command_timeout(value: Any) -> float | None:
    """The seconds a command waits for the station's answer, as the operator gave them
    (None: the node's call timeout). CommandError for anything but a number above 0 and
    at most :data:`MAX_TIMEOUT`: checked before anything is sent (a timeout of -1 had the
    station carry out a command the operator was told timed out)."""
    if value is None:
        return None
    if not isinstance(value, int | float) or isinstance(value, bool) \
            or not 0 < value <= MAX_TIMEOUT:  # NaN compares false: refused too
        raise CommandError(f"timeout must be a number of seconds above 0 and at most"
                           f" {MAX_TIMEOUT:g}, not {str(value)[:20]!r}")
    return float(value)


def check_session(args: dict[str, Any]) -> None:
    """A session the operator named (``stop``, ``cost-updated``) must be a session id: an
    integer from 1 to 2**63-1 (CommandError otherwise; none named is the station's
    active session)."""
    session = args.get("session")
    if session is None:
        return
    if not isinstance(session, int) or isinstance(session, bool) \
            or not 0 < session <= MAX_ID:
        raise CommandError(f"session must be a session id (an integer from 1 to {MAX_ID}),"
                           f" not {str(session)[:24]!r}")


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
        try:  # before the command goes anywhere: here, over the bus, into the queue
            timeout = command_timeout(timeout)
            check_session(args)
        except CommandError as exc:
            return 400, {"error": str(exc)}
        conn = self.central.connections.get(station_id)
        if conn is None and not forwarded and self.bus is not None:
            status, result = await self._forward(station_id, command, args, timeout)
            if status == 409 and result.get("connected") is False and command in QUEUEABLE:
                return await self._queue(station_id, command, args)
            return status, result
        if conn is None:
            if not forwarded and command in QUEUEABLE:
                return await self._queue(station_id, command, args)
            return 409, {"error": f"station {station_id} is not connected", "status": "Offline",
                         "connected": False}
        refusal = version_refusal(conn.version, command)
        if refusal is not None:  # nothing recorded for a command the version has not
            return 400, {"error": refusal}
        prepared = False
        signed: dict[str, Any] | None = None
        authorization_id: int | None = None
        try:
            args = await self._resolve(station_id, conn.version, command, args)
            if command == "start" and isinstance(args.get("authorization"), dict):
                signed = args["authorization"]  # kept once the CALL is built (below)
                args = {k: v for k, v in args.items() if k != "authorization"}
            if command in RECORDED:
                args = await self.maintenance.prepare(station_id, command, args)
                prepared = True
            args, warning = await device.prepare(self.repo, station_id, command, args)
            password = new_password(command, args)
            if password is not None:
                # a password the station takes must be one we can store and check
                try:
                    validate_password(password)
                except ValueError as exc:
                    raise CommandError(str(exc)) from None
            pnc = await self._plug_and_charge(station_id, conn.version, command, args)
            if pnc:
                call = pnc_call(command, args)
            else:
                call = build_call(conn.version, command,
                                  {k: v for k, v in args.items() if k != "pnc"})
            if signed is not None:
                authorization_id = await self._accept_authorization(station_id, args,
                                                                    signed, call)
        except CommandError as exc:
            if prepared:  # recorded, but never sent
                await self._settle(command, args, "Invalid", None)
            return 400, {"error": str(exc)}
        if authorization_id is None:
            status, result = await self._send(conn, station_id, command, args, call,
                                              timeout, password, pnc=pnc, warning=warning)
            if command == "stop" and status == 200 and result.get("status") == "Accepted" \
                    and isinstance(args.get("session"), int):
                # a stop accepted is no stop made: recorded, the session judged at its
                # completion (csms.service.remote_stops)
                try:
                    result.update(await self.central.service.remote_stop_accepted(
                        station_id, args["session"], call.action))
                except Exception as exc:  # the station's answer is told all the same
                    log.exception("! %s: the accepted stop of session %s was not recorded",
                                  station_id, args["session"])
                    result["warning"] = f"the accepted stop was not recorded: {exc!r}"[:200]
            return status, result
        answer = "Failed"  # an error of ours, or the request cancelled
        try:
            status, result = await self._send(conn, station_id, command, args, call,
                                              timeout, password, pnc=pnc, warning=warning)
            answer = str(result.get("status") or "Failed")
            if status != 200 and answer == "Accepted":
                answer = "Failed"
        finally:
            # the driver's authorization binds the session of this start only: withdrawn
            # when the station refused it, did not answer or went away
            await self.central.service.remote_start_answered(
                authorization_id, station_id, str(args.get("tag", "")), answer)
        return status, result

    async def _accept_authorization(self, station_id: str, args: dict[str, Any],
                                    authorization: dict[str, Any], call: BuiltCall) -> int:
        """Keep the driver's signed authorization for the remote start ``call`` (with its
        2.0.1 remoteStartId: only the transaction that reports it binds the signature; with
        the connector a 1.6 one names: only a start on it does)."""
        remote_start_id = call.payload.get("remoteStartId") \
            if call.action == "RequestStartTransaction" else None
        # a 1.6 start binds it on the connector the remote start names only, if it names one
        connector = call.payload.get("connectorId") \
            if call.action == "RemoteStartTransaction" else None
        try:
            return await self.central.service.accept_authorization(
                station_id, str(args.get("tag", "")), authorization, remote_start_id,
                connector_id=connector)
        except ValueError as exc:
            raise CommandError(str(exc)) from None

    async def _send(self, conn: StationConnection, station_id: str, command: str,
                    args: dict[str, Any], call: BuiltCall, timeout: float | None,
                    password: str | None = None, *, pnc: bool = False,
                    warning: str | None = None) -> tuple[int, dict[str, Any]]:
        """Send a prepared command's CALL and record the answer (``pnc``: the CALL is a
        Plug & Charge DataTransfer, the answer is read out of its answer; ``warning``:
        said with the answer)."""
        secret = carries_secret(command, args)
        try:
            response = await conn.call(call.action, call.payload, timeout, secret=secret)
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
        action = call.action
        if pnc:
            action = inner_action(call)
            try:
                response = read_answer(call, response)
            except PncError as exc:
                return 502, {"error": f"station answered: {exc}", "status": "Rejected",
                             "action": action, "via": "DataTransfer"}
        await device.record(self.repo, station_id, command, args, call.payload, response)
        word = result_status(action, response)
        # A credential in the station's answer goes no further (the API, the console, a
        # node that forwarded the command, the audit log): 1.6 AuthorizationKey is
        # write-only, a station may return it anyway; a password read back is the
        # station's secret, not a setting to show.
        answer: dict[str, Any] = {"status": word, "action": action,
                                  "ocpp_version": conn.version.short,
                                  "response": redacted_response(response),
                                  **await self._settle(command, args, word, response)}
        if pnc:
            answer["via"] = "DataTransfer"  # the OCA Plug & Charge application note
        if warning is not None:
            answer["warning"] = warning
        if password is not None:
            # Switch to the new password only once the station accepted it (1.6
            # security whitepaper / 2.0.1 A01.FR.04), whichever command carried it
            # (set-password, or set-config / set-variables of the password key);
            # otherwise the station keeps the old one, and so do we.
            answer["switched"] = password_accepted(call.action, response)
            if answer["switched"]:
                await self._store_password(station_id, password)
        return 200, answer

    async def _queue(self, station_id: str, command: str, args: dict[str, Any]
                     ) -> tuple[int, dict[str, Any]]:
        """Record a request for a station that is connected nowhere: sent when it is back."""

        async def version(tx: Tx) -> str | None:
            station = await tx.get_station(station_id)
            return None if station is None else station.ocpp_version

        known = await self.repo.read(version)
        if known is not None:
            refusal = version_refusal(OcppVersion.parse(known), command)
            if refusal is not None:  # e.g. publish-firmware for a 1.6 station
                return 400, {"error": refusal}
        try:
            recorded = await self.maintenance.prepare(station_id, command, args, queued=True)
        except CommandError as exc:
            return 400, {"error": str(exc)}
        return 202, {"status": "queued", "request_id": recorded["request_id"],
                     "error": None, "note": f"station {station_id} is not connected: sent"
                     " when it is back (after an accepted BootNotification, or once it is"
                     " heard if its last boot was accepted)"}

    async def send_queued(self, station_id: str) -> list[tuple[str, int, dict[str, Any]]]:
        """Send the station's queued requests, oldest first, one at a time, over its
        connection on this node: (command, status, result) of each one sent or refused.

        Only to a connection whose BootNotification was accepted, or on which the station
        sent none and was heard while its last boot, as stored, was accepted (see
        :meth:`~csms.service.transfers.TransferUseCases.queue_released`). Stops when the
        station is gone or no longer qualifies (what is left stays queued)."""
        service = self.central.service
        done: list[tuple[str, int, dict[str, Any]]] = []
        while True:
            conn = self.central.connections.get(station_id)
            if not await self._may_send_queued(conn):
                return done
            assert conn is not None
            transfer = await service.claim_queued(station_id)
            if transfer is None:
                return done
            if not await self._may_send_queued(conn, queued=False) \
                    or self.central.connections.get(station_id) is not conn:
                # a BootNotification answered Pending / Rejected, or a new connection,
                # meanwhile: not sent, back in the queue (the new connection may get it)
                await service.unclaim(transfer)
                continue
            command = {v: k for k, v in QUEUEABLE.items()}[transfer.kind]
            args: dict[str, Any] = {"request_id": transfer.id}
            try:
                command, args = await self.maintenance.resume(transfer)
                call = build_call(conn.version, command, args)
            except CommandError as exc:
                await self._settle(command, args, "Invalid", None)
                done.append((command, 400, {"error": str(exc), "request_id": transfer.id}))
                continue
            status, result = await self._send(conn, station_id, command, args, call, None)
            done.append((command, status, result))

    async def _may_send_queued(self, conn: StationConnection | None, *,
                               queued: bool = True) -> bool:
        """Whether queued requests may go over ``conn`` now: its BootNotification was
        accepted; or it sent none, was heard, and the station's stored last boot was
        accepted (asked of the database, which answers no at once when nothing is queued,
        the usual case; not asked again with ``queued`` False, for a request just claimed
        after it was asked)."""
        if conn is None or not conn.may_send_queued:
            return False
        if conn.booted:
            return True
        if not queued:
            return True  # checked before the claim; not booted here since
        return await self.central.service.queue_released(conn.station_id, conn.version.value)

    async def _plug_and_charge(self, station_id: str, version: OcppVersion, command: str,
                               args: dict[str, Any]) -> bool:
        """Whether the command goes to the station as a 2.0.1 message in a DataTransfer
        (the OCA Plug & Charge application note, 1.6): when the operator asked, when only
        that form can say it and the station announced Plug & Charge (refused when it did
        not), or for DeleteCertificate when it did."""
        form = plug_and_charge(version, command, args)
        if form in ("no", "yes"):
            return form == "yes"
        announced = await DeviceModel(self.repo).plug_and_charge(station_id)
        if form == "needed" and not announced:
            raise CommandError(
                f"{station_id} has not announced ISO 15118 Plug & Charge (configuration key"
                " ISO15118PnCEnabled: csms remote get-config); if it takes it, say so with"
                f" csms stations pnc {station_id} on")
        return announced

    async def _settle(self, command: str, args: dict[str, Any], word: str,
                      response: dict[str, Any] | None) -> dict[str, Any]:
        if command not in RECORDED:
            return {}
        return await self.maintenance.settle(command, args, word, response)

    async def _forward(
        self, station_id: str, command: str, args: dict[str, Any], timeout: float | None,
    ) -> tuple[int, dict[str, Any]]:
        """The station is on another live node: ask that node over the bus (``timeout``
        checked by :func:`command_timeout`; that node checks it again)."""
        assert self.bus is not None

        async def where(tx: Tx) -> str | None:
            station = await tx.get_station(station_id)
            if station is None or station.connected_node is None:
                return None
            alive = await live_nodes(tx, datetime.now(UTC))
            return station.connected_node if station.connected_node in alive else None

        node = await self.repo.read(where)
        if node is None or node == self.central.node_id:
            return 409, {"error": f"station {station_id} is not connected", "status": "Offline",
                         "connected": False}
        wait = (timeout or self.central.settings.call_timeout) + 5.0
        try:
            status, result = await self.bus.request(node, station_id, command, args,
                                                    timeout, wait)
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
            if "authorization" in args:
                # kept by run_command once the CALL is built (it carries the remoteStartId)
                if not isinstance(args["authorization"], dict):
                    raise CommandError(
                        "authorization must be a JSON object (the driver's signed"
                        " SessionAuthorization); leave it out for a start without one")
                return args
            reason = await service.refusal(station_id, tag)
            if reason is not None:
                raise CommandError(f"no credit: {reason}")
            return args
        if command == "stop" and "transaction_id" not in args:
            session_id = args.get("session")

            async def find(tx: Tx) -> tuple[int | None, str]:
                if session_id is not None:
                    s = await tx.get_session(int(session_id))
                    if s is None or s.station_id != station_id:
                        raise CommandError(f"no session {session_id} on {station_id}")
                    if s.status.value != "active":
                        raise CommandError(f"session {session_id} is not active")
                    return s.id, s.station_transaction_id
                active = await tx.list_sessions(station_id, True, 2)
                if not active:
                    raise CommandError(f"{station_id} has no active session")
                if len(active) > 1:
                    raise CommandError(f"{station_id} has several active sessions: name one")
                return active[0].id, active[0].station_transaction_id

            found, transaction_id = await self.repo.read(find)
            # the session the stop is recorded for, once the station accepts it (run_command)
            return {**args, "session": found, "transaction_id": transaction_id}
        if command == "stop":
            named = str(args["transaction_id"])[:64]

            async def by_transaction(tx: Tx) -> int | None:
                s = await tx.find_session(station_id, named)
                return None if s is None else s.id

            # a transaction named as the station knows it: its session, if one is active
            return {**args, "session": await self.repo.read(by_transaction)}
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
                station = await tx.get_station(station_id)
                # A station of a host gets the tags already used there only: the whole
                # list hands every driver's card to a host, who could then start card
                # sessions under any driver's standing terms at its station. A tag only
                # sent in an Authorize there does not count: any tag a station guesses is
                # one, and the answer told it already whether the tag is valid.
                hosted = station is not None and station.host_address is not None
                listed = [{"tag": t.tag, "status": t.authorize(now).value}
                          for t in await tx.list_tags(station_id if hosted else None)]
                return await tx.next_local_list_version(station_id), listed

            version_number, listed = await self.repo.unit(tags)
            return {**args, "list_version": version_number, "tags": listed}
        return args
