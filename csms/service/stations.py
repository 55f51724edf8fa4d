"""Use cases of a station's lifecycle: boot (1.6 §4.2, 2.0.1 B01), heartbeats and the
last-seen writer, connections, connector status, authorization of id tags (with the
drivers' credit), reported maximum power, and the station's own payloads (events,
data transfers, notifications) within their quotas."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from csms.domain.model import (
    AuthStatus,
    BootPolicy,
    ErrorDetail,
    Station,
)
from csms.service.cluster import live_nodes
from csms.service.core import ChargingCore
from csms.service.credit import CreditDecision
from csms.service.messages import BootDecision, BootInfo, UnknownStation, utc_now
from csms.service.ports import StorageError, Tx

__all__ = ["BOOT_STATUS_OPTION", "Opened", "StationUseCases", "connection_replaced",
           "new_station"]

log = logging.getLogger("csms.service")

# The station option that keeps the answer to the station's latest BootNotification
# (Accepted, Pending, Rejected), written with the boot: whether a station that comes back
# without a BootNotification may get its queued requests (see
# csms.service.transfers TransferUseCases.queue_released), on any node, after a restart.
BOOT_STATUS_OPTION = "boot_status"


@dataclass(frozen=True, slots=True)
class Opened:
    """A station's connection as recorded (:meth:`StationUseCases.connection_opened`)."""

    since: datetime  # when it was recorded: its teardown clears only this connection
    # the connection it took over from on another live node, as the station's row named
    # it (that node's id, and when that node recorded it): that node may still hold a
    # socket for the station (a cloned station, or a reconnection through the balancer)
    replaced_node: str | None = None
    replaced_at: datetime | None = None
    # the answer to the station's latest BootNotification, as stored (None: it never
    # booted): a station last answered Pending or Rejected is not accepted on a new
    # connection either, until it boots and is accepted (2.0.1 B02.FR.09 / B03.FR.07)
    boot_status: str | None = None


class StationUseCases(ChargingCore):
    """A station's lifecycle: boot, heartbeat, connection, status, authorization, its
    own events and payload quotas."""

    # -- station lifecycle -------------------------------------------------
    async def boot(self, station_id: str, version: str, info: BootInfo) -> BootDecision:
        now = self.clock()

        async def work(tx: Tx) -> BootDecision:
            station = await tx.get_station(station_id)
            if station is None:
                raise UnknownStation(station_id)
            changed = station.firmware_version is not None and \
                station.firmware_version != info.firmware_version
            station.ocpp_version = version
            station.vendor = info.vendor
            station.model = info.model
            station.firmware_version = info.firmware_version
            station.serial_number = info.serial_number
            station.last_boot_at = now
            station.last_seen_at = now
            await tx.update_station(station)
            recorded = await self.metered_event(
                tx, station_id, "boot",
                {"reason": info.reason, "vendor": info.vendor, "model": info.model,
                 "firmware_version": info.firmware_version,
                 "serial_number": info.serial_number, **info.hardware,
                 "policy": station.boot_policy.value},
                now,
            )
            if station.boot_policy is BootPolicy.ACCEPTED:
                status, interval = "Accepted", self.heartbeat_interval
            elif station.boot_policy is BootPolicy.PENDING:
                status, interval = "Pending", self.boot_retry_interval
            else:
                status, interval = "Rejected", self.boot_retry_interval
            await tx.set_station_option(station_id, BOOT_STATUS_OPTION, status)
            if recorded:  # published within the station's quota, as it is stored
                await self._event(tx, station_id, "boot", {"status": status})
            return BootDecision(status, interval, now, changed)

        return await self.repo.unit(work)

    async def heartbeat(self, station_id: str) -> datetime:
        """Heartbeats are answered at once; "last seen" is written for all stations
        together, once per ``seen_flush_interval`` (a heartbeat carries no data to keep,
        and 10,000 stations would otherwise cost a unit of work each)."""
        now = self.clock()
        self._seen[station_id] = now
        self._flush_soon()
        return now

    def _flush_soon(self) -> None:
        if not self._seen_writer and (self._seen_flush is None or self._seen_flush.done()):
            # No writer task runs (the service used on its own): flush once, later.
            self._seen_flush = asyncio.get_running_loop().create_task(
                self._flush_seen_later(), name="last-seen")

    async def _flush_seen_later(self) -> None:
        await asyncio.sleep(self.seen_flush_interval)
        await self.flush_seen()

    async def run_seen_writer(self, stop: asyncio.Event) -> None:
        """The last-seen writer of a node: flush every ``seen_flush_interval`` until
        ``stop``. A failed write is raised (the times are kept for the next one)."""
        self._seen_writer = True
        try:
            while not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.seen_flush_interval)
                await self._write_seen()
                await self.publish_presence()
        finally:
            self._seen_writer = False

    async def flush_seen(self) -> None:
        """Write the "last seen" times of the heartbeats since the last flush."""
        try:
            await self._write_seen()
            await self.publish_presence()
        except StorageError as exc:  # kept for the next flush
            log.warning("! last-seen times not stored: %s", exc)

    def _presence(self, station_id: str, topic: str, payload: dict[str, Any],
                  published: bool) -> None:
        """The station's ``online`` / ``offline`` bus event was published, or dropped over
        its connection quota: then it is owed (the latest one), as the bus keeps the
        last one published, which may say the opposite of the station's state."""
        if published:
            self._presence_owed.pop(station_id, None)
        elif self.publish_events:
            self._presence_owed[station_id] = (topic, payload)

    async def publish_presence(self) -> None:
        """Store and publish the ``online`` / ``offline`` events owed (:meth:`_presence`)
        of the stations whose connection quota has room again (the next hour), each if
        the station's row still says so (a later connection event says otherwise, and
        was published or is owed itself)."""
        quota, owed = self.quota, self._presence_owed
        if quota is None or not owed:
            return
        due = {station_id: event for station_id, event in owed.items()
               if not quota.over(station_id, "connection")}
        if not due:
            return
        for station_id in due:
            del owed[station_id]
        now = self.clock()

        async def work(tx: Tx) -> list[str]:
            kept = []
            for station_id, (topic, payload) in sorted(due.items()):
                row = await tx.get_station(station_id)
                if row is None:
                    continue
                if topic == "online":
                    made = datetime.fromisoformat(str(payload["connected_at"]))
                    still = row.connected_node is not None and row.connected_at == made
                else:
                    still = row.connected_node is None
                if not still:
                    continue
                if await self.metered_event(tx, station_id, topic, payload, now):
                    await self._event(tx, station_id, topic, payload)
                else:  # over the new hour's quota already
                    kept.append(station_id)
            return kept

        kept = list(due)
        try:
            kept = await self.repo.unit(work)
        finally:
            for station_id in kept:  # newer ones (owed meanwhile) win
                owed.setdefault(station_id, due[station_id])

    async def _write_seen(self) -> None:
        """The "last seen" times, and the closed connections not cleared yet, in one unit
        apart from the others (see Repository.unit_apart): rows that another transaction
        holds are skipped and kept for the next flush, never waited for."""
        seen, self._seen = self._seen, {}
        released, self._unreleased = self._unreleased, {}
        if not seen and not released:
            return

        async def work(tx: Tx) -> tuple[list[str], dict[str, tuple[str, datetime | None]]]:
            left = await tx.touch_stations(seen)
            kept = {}
            for station_id, (node, since) in sorted(released.items()):
                if await tx.release_station_connection(station_id, node, since) is None:
                    kept[station_id] = (node, since)
            return left, kept

        try:
            left, kept = await self.repo.unit_apart(work)
        except BaseException:
            left, kept = list(seen), released
            raise
        finally:
            # newer times and newer closed connections (set meanwhile) win
            for station_id in left:
                self._seen.setdefault(station_id, seen[station_id])
            for station_id, value in kept.items():
                self._unreleased.setdefault(station_id, value)

    async def connection_changed(
        self, station_id: str, online: bool, version: str, node: str = "local",
        since: datetime | None = None, closed_by_station: bool = False,
    ) -> datetime:
        """Record a connection made (``online``) or closed; the time it is recorded at.

        A closed connection is ``node``'s made at ``since`` (what this method returned
        for it; None: any of ``node``'s): it is cleared only if the station did not
        connect again meanwhile, here or on another node, and in a unit apart that never
        waits for the station's row (a node the station moved to may hold it): when the
        row is held, the next flush of the last-seen writer clears it.

        Both events carry ``connected_at``, the time the connection was recorded: a
        station's later connection has a later one, so a consumer can tell an offline
        event that arrives after the station's next online event. The end of a connection
        that was no longer the station's (it had connected again, here or on another
        node: a node notices a dead connection late) changes nothing: it is kept in the
        station's events with ``superseded`` and not published.

        The events (stored and published) are within the station's ``connection`` quota
        (csms.service.quota): beyond it, only the station's row says whether it is
        connected."""
        if online:
            return (await self.connection_opened(station_id, version, node)).since
        now = self.clock()
        self._published_status.pop(station_id, None)

        async def work(tx: Tx) -> tuple[bool, dict[str, Any], bool | None]:
            payload: dict[str, Any] = {"ocpp_version": version}
            released = await tx.release_station_connection(station_id, node, since)
            payload["connected_at"] = since.isoformat() if since else None
            if closed_by_station:  # its close frame came first: alive to its end
                payload["closed_by_station"] = True
            if released is False:
                payload["superseded"] = True
            # billing reads them (a start sent late), as the online ones
            stored = await self.metered_event(tx, station_id, "offline", payload, now,
                                              reserve=False)
            if stored and released is not False:
                await self._event(tx, station_id, "offline", payload)
            return stored, payload, released

        stored, payload, released = await self.repo.unit_apart(work)
        if released is not False:  # the station's last connection: its state
            self._presence(station_id, "offline", payload, stored)
        if released is None:
            self._unreleased[station_id] = (node, since)
            self._flush_soon()
        return now

    async def connection_opened(self, station_id: str, version: str, node: str,
                                remote: str = "") -> Opened:
        """Record a connection made on ``node`` (see :meth:`connection_changed`).

        When the station's row named a connection on another node that still beats,
        that node may still hold a socket for the station: the station is then connected
        twice, and whoever commands it reaches only the device that connected last. A
        ``ConnectionReplaced`` security event naming both nodes is stored with the
        connection, and the other node's connection is returned for the caller to have it
        closed there (csms.server). A node that stopped beating holds no socket (its
        stations are offline): its stale row is taken over silently, with no extra cost
        but the look at the node beats."""
        now = self.clock()
        # its statuses are published again on this connection (another node may have
        # published others meanwhile)
        self._published_status.pop(station_id, None)

        payload: dict[str, Any] = {"ocpp_version": version, "connected_at": now.isoformat()}
        stored = False

        async def work(tx: Tx) -> Opened:
            nonlocal stored
            before = await tx.set_station_connection(station_id, node, now)
            # billing reads them (a start sent late): never dropped for the disk reserve,
            # which would leave no note that one is missing
            stored = await self.metered_event(tx, station_id, "online", payload, now,
                                              reserve=False)
            if stored:
                await self._event(tx, station_id, "online", payload)
            boot = await tx.get_station_option(station_id, BOOT_STATUS_OPTION)
            if before is None or before[0] == node:
                # none, or this node's own (replaced here by the server, or a row its
                # teardown has not cleared yet)
                return Opened(now, boot_status=boot)
            other, other_at = before
            # the beats are written with the wall clock (csms.bootstrap)
            if other not in await live_nodes(tx, datetime.now(UTC)):
                return Opened(now, boot_status=boot)
            await self.metered_event(tx, station_id, "security",
                                      connection_replaced(remote, node, other, other_at), now)
            return Opened(now, other, other_at, boot)

        opened = await self.repo.unit(work)
        self._presence(station_id, "online", payload, stored)
        return opened

    async def status(
        self, station_id: str, evse_id: int, connector_id: int, status: str,
        error_code: str | None, at: datetime | None, *, error: ErrorDetail | None = None,
    ) -> bool:
        """Store a connector's status and publish it; ``error``: what the station said of
        its error beside ``error_code`` (kept with the connector and in the event).

        A station has at most ``max_connectors`` connectors stored: a status for one more
        (an invented EVSE or connector id) is not stored (1.6 §6.47 has no refusal for an
        unknown connector: it is answered all the same); a ``ConnectorLimit`` security
        event says so, within the station's quota (and a log line with it). False when it
        was not stored.

        The connector's row always takes the status; its bus event is published when it
        differs from the one last published for the connector on the station's connection
        (a station repeating a status makes no event of each), within the station's
        ``notification`` quota (csms.service.quota: one flipping between two statuses
        makes no event without end either)."""
        now = self.clock()
        detail = error if error else None
        payload: dict[str, Any] = {"evse_id": evse_id, "connector_id": connector_id,
                                   "status": status, "error_code": error_code}
        if detail is not None:
            payload.update(info=detail.info, vendor_id=detail.vendor_id,
                           vendor_error_code=detail.vendor_error_code)
        published = self._published_status.setdefault(station_id, {})
        key = (evse_id, connector_id)
        value = tuple(payload.values())
        publish = self.publish_events and published.get(key) != value

        async def work(tx: Tx) -> str:
            if not await tx.set_connector_status(
                    station_id, evse_id, connector_id, status, error_code, at or now,
                    error=detail, limit=self.max_connectors):
                noted = await self.metered_event(tx, station_id, "security", {
                    "type": "ConnectorLimit", "evse_id": evse_id,
                    "connector_id": connector_id, "limit": self.max_connectors}, now)
                return "noted" if noted else "dropped"
            if publish and self.admit_payload(station_id, "notification",
                                              len(repr(value))).store:
                await self._event(tx, station_id, "status", payload)
                return "published"
            return "stored"

        outcome = await self.repo.unit(work)
        if outcome == "published":
            published[key] = value
        stored = outcome in ("published", "stored")
        if outcome == "noted":
            log.warning("! %s: a status for EVSE %d connector %d beyond its %d connectors;"
                        " not stored", station_id, evse_id, connector_id, self.max_connectors)
        # "last seen" by the last-seen writer (no lock on the station's row in this unit)
        self._seen[station_id] = now
        self._flush_soon()
        return stored

    async def authorize(self, tag: str, station_id: str | None = None
                        ) -> tuple[AuthStatus, datetime | None]:
        if station_id is not None:
            await self._start_answered(station_id, tag)

        async def work(tx: Tx) -> tuple[AuthStatus, datetime | None]:
            record = await tx.get_tag(tag)
            if record is None:
                # an app session's token: authorized by the driver's signature, for the
                # remote start sent for it (2.0.1: the transaction binds it only with the
                # remoteStartId sent, which an Authorize does not carry)
                if station_id is not None and await tx.pending_authorization(
                        station_id, tag, int(self.clock().timestamp()),
                        any_remote_start=True) is not None:
                    return AuthStatus.ACCEPTED, None
                return AuthStatus.UNKNOWN, None
            return record.authorize(self.clock()), record.expires_at

        status, expires = await self.repo.read(work)
        if status is AuthStatus.ACCEPTED and station_id is not None \
                and not await self.covered(station_id, tag):
            return AuthStatus.NO_CREDIT, expires
        return status, expires

    async def accept_authorization(self, station_id: str, tag: str,
                                   authorization: dict[str, Any],
                                   remote_start_id: int | None = None, *,
                                   connector_id: int | None = None) -> int:
        """Keep a driver's signed app-session authorization for the session the remote
        start about to be sent to ``station_id`` for ``tag`` starts (``remote_start_id``:
        the 2.0.1 remoteStartId it carries; ``connector_id``: the connector a 1.6 one
        names), settled with it (see settlement.worker); its
        id. :meth:`remote_start_answered` must follow, with the station's answer: the
        authorization binds nothing before (1.6) or after a failed start."""
        if self.credit is None:
            raise ValueError("app sessions need settlement on this node (--chain)")
        decision = await self.credit.check_authorization(station_id, authorization)
        credit = self.credit

        async def work(tx: Tx) -> tuple[CreditDecision, int | None]:
            if await tx.get_tag(tag) is not None or await tx.card_of(tag) is not None:
                # a card's session at this station would be bound to the signature (and
                # paid by it), and the card's holder could start the signed one
                return CreditDecision(False, f"{tag} is a card's tag: an app session needs"
                                      " a token of its own", decision.driver), None
            # confirmed with the driver locked until it is stored (from then on it counts
            # in the driver's exposure, at the limit it is kept with, its session's)
            confirmed = await credit.confirm(tx, decision) if decision.ok else decision
            nonce = int(authorization["nonce"]) if confirmed.ok else None
            if nonce is not None and await tx.authorization_with_nonce(
                    str(authorization["driver"]), nonce) is not None:
                # one signature, one session: the contract pays a nonce once
                return CreditDecision(False, f"the driver's nonce {nonce} is used already"
                                      " (by an authorization accepted before)",
                                      confirmed.driver), None
            if not confirmed.ok:
                return confirmed, None
            # kept as accepted: after the confirmation, whose judgment of the driver's
            # sessions (one silent past the grace no longer counted) it follows; a session
            # heard of again after that holds (csms.service.sessions _resumed)
            return confirmed, await tx.add_authorization(
                str(authorization["driver"]), station_id, tag, authorization,
                int(authorization["nonce"]), int(authorization["expiry"]), self.clock(),
                remote_start_id, limit_minor=confirmed.session_limit,
                connector_id=connector_id)

        try:
            decision, authorization_id = await self.repo.unit(work)
        except StorageError as exc:
            raise ValueError(f"authorization refused: {exc}") from None
        if not decision.ok or authorization_id is None:
            raise ValueError(f"authorization refused: {decision.reason}")
        self._starting.setdefault((station_id, tag), []).append(asyncio.Event())
        return authorization_id

    async def remote_start_answered(self, authorization_id: int, station_id: str, tag: str,
                                    answer: str) -> None:
        """The outcome of the remote start an authorization was accepted for (see
        :meth:`accept_authorization`): ``Accepted`` by the station, or why it failed
        (``Rejected``, ``Timeout``, ``Offline``, a CALLERROR's code, ``Invalid``...). A
        failed start withdraws the authorization: the driver's tag is a plain string, and
        whoever presents it at the station must not charge on the driver's escrow."""
        now = self.clock()

        async def work(tx: Tx) -> dict[str, Any] | None:
            if answer == "Accepted":
                await tx.remote_start_accepted(
                    authorization_id, int(now.timestamp()) + self.remote_start_window)
                return None
            row = await tx.withdraw_authorization(authorization_id)
            if row is not None:
                await tx.add_station_event(station_id, "authorization_withdrawn", {
                    "tag": tag, "driver": row["driver"], "nonce": row["nonce"],
                    "reason": answer}, now)
            return row

        try:
            if await self.repo.unit(work) is not None:
                log.warning("! %s: the remote start for %s failed (%s): the driver's"
                            " authorization is withdrawn", station_id, tag, answer)
        finally:
            waiting = self._starting.get((station_id, tag), [])
            if waiting:
                waiting.pop(0).set()
            if not waiting:
                self._starting.pop((station_id, tag), None)

    async def reported_max_power(self, station_id: str, watts: Decimal) -> None:
        """Keep the maximum power a station reported (device model): the plausibility
        limit when the operator registered none."""

        async def work(tx: Tx) -> None:
            station = await tx.get_station(station_id)
            if station is not None and station.reported_max_power_w != watts:
                station.reported_max_power_w = watts
                await tx.update_station(station)

        await self.repo.unit(work)

    def connections_over_quota(self, station_id: str) -> bool:
        """Whether the station's connection events were dropped this hour (over its
        quota): its connections are then not worth a log line each."""
        return self.quota is not None and self.quota.over(station_id, "connection")

    async def station_event(self, station_id: str, kind: str, payload: dict[str, Any]) -> bool:
        """Store a station event; DataTransfer, security and notification payloads only
        within their quota and the disk reserve (csms.service.quota). True if stored."""
        now = self.clock()

        async def work(tx: Tx) -> bool:
            return await self.metered_event(tx, station_id, kind, payload, now)

        return await self.repo.unit(work)


def connection_replaced(remote: str, node: str, previous_node: str,
                        previous_connected_at: datetime | None) -> dict[str, Any]:
    """The ``ConnectionReplaced`` security event of a station that connected from
    ``remote`` on ``node`` while its connection on ``previous_node`` (recorded at
    ``previous_connected_at``, None: not recorded) was open: the same node's or another's."""
    return {"type": "ConnectionReplaced", "remote": remote, "node": node,
            "previous_node": previous_node,
            "previous_connected_at": (previous_connected_at.isoformat()
                                      if previous_connected_at else None)}


def new_station(station_id: str, **kwargs: Any) -> Station:
    return Station(id=station_id, created_at=utc_now(), **kwargs)
