"""Ingest what stations send: boots, status, authorization, transactions, meter values.

Every handler runs as one unit of work and returns only after its commit is
durable. Transaction messages are always acknowledged (DESIGN.md: an error
makes the station retry and finally drop the data): odd data is stored and
flagged, never refused. Ingest is idempotent: a 1.6 StartTransaction retry gets
the transactionId of the first (dedupe on station, connector, idTag, timestamp,
meterStart) and a 2.0.1 TransactionEvent retry is recognised by
(station, transactionId, seqNo).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from csms.domain.energy import (
    DEFAULT_MAX_POWER_W,
    compute_energy,
    energy_between,
    energy_flags,
    time_flag,
)
from csms.domain.model import (
    BILLING_HOLD_FLAGS,
    AuthStatus,
    BootPolicy,
    MeterSample,
    Session,
    SessionStatus,
    Station,
    ValueNote,
)
from csms.metering import ocmf
from csms.service import defaults
from csms.service.credit import CreditCheck
from csms.service.ports import Repository, StorageError, Tx
from csms.service.quota import PayloadQuota, quota_kind

__all__ = [
    "BootDecision",
    "BootInfo",
    "ChargingService",
    "StopInfo",
    "TransactionEventIn",
    "UnknownStation",
]

log = logging.getLogger("csms.service")

# 2.0.1 has no meterStart/meterStop: its readings always come from samples, signed or not.
_V201_NORMAL = frozenset({"meter_start_from_samples", "meter_stop_from_samples",
                          "meter_start_from_signed", "meter_stop_from_signed"})


class UnknownStation(Exception):
    pass


@dataclass(frozen=True, slots=True)
class BootInfo:
    vendor: str | None = None
    model: str | None = None
    firmware_version: str | None = None
    serial_number: str | None = None
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class BootDecision:
    status: str  # Accepted | Pending | Rejected
    interval: int
    current_time: datetime


@dataclass(slots=True)
class StopInfo:
    """A 1.6 StopTransaction."""

    transaction_id: int
    meter_stop_wh: Decimal
    timestamp: datetime
    reason: str | None = None
    id_tag: str | None = None
    samples: list[MeterSample] = field(default_factory=list)
    notes: list[ValueNote] = field(default_factory=list)


@dataclass(slots=True)
class TransactionEventIn:
    """A 2.0.1 TransactionEvent, version-neutral enough for the service."""

    event_type: str  # Started | Updated | Ended
    timestamp: datetime
    trigger_reason: str
    seq_no: int | None  # None: beyond what can be stored (see notes); not deduplicated
    transaction_id: str
    offline: bool = False
    charging_state: str | None = None
    stopped_reason: str | None = None
    evse_id: int | None = None
    connector_id: int | None = None
    id_tag: str | None = None
    remote_start_id: int | None = None
    samples: list[MeterSample] = field(default_factory=list)
    notes: list[ValueNote] = field(default_factory=list)


# Notes that only say what was assumed: a flag on the session, no event.
_QUIET_NOTES = frozenset({"time_offset_assumed"})


def utc_now() -> datetime:
    return datetime.now(UTC)


class ChargingService:
    """Use cases for messages from stations."""

    def __init__(
        self,
        repo: Repository,
        *,
        heartbeat_interval: int = defaults.HEARTBEAT_INTERVAL,
        boot_retry_interval: int = defaults.BOOT_RETRY_INTERVAL,
        publish_events: bool = False,
        clock: Callable[[], datetime] = utc_now,
        seen_flush_interval: float = 1.0,
        default_max_power_w: Decimal = DEFAULT_MAX_POWER_W,
        time_past: timedelta = defaults.TIME_PAST,
        time_future: timedelta = defaults.TIME_FUTURE,
        quota: PayloadQuota | None = None,
        storage_reserve: int = 0,
        on_dropped: Callable[[str, str], None] | None = None,
    ) -> None:
        self.repo = repo
        # plausibility (csms.domain.energy): a station's power when none is registered or
        # reported; the window of transaction times around registration and receipt
        self.default_max_power_w = default_max_power_w
        self.time_past = time_past
        self.time_future = time_future
        self._registered: dict[str, datetime | None] = {}
        # the drivers' escrows on chain (settlement.credit), when settlement runs here
        self.credit: CreditCheck | None = None
        self.heartbeat_interval = heartbeat_interval
        self.boot_retry_interval = boot_retry_interval
        self.publish_events = publish_events
        self.clock = clock
        self.seen_flush_interval = seen_flush_interval
        self._seen: dict[str, datetime] = {}
        self._seen_flush: asyncio.Task[None] | None = None
        self._seen_writer = False  # run_seen_writer() owns the writes
        # station payloads besides transactions: quotas and a disk reserve (see quota.py)
        self.quota = quota
        self.storage_reserve = storage_reserve
        self.on_dropped = on_dropped
        self.dropped: Counter[tuple[str, str]] = Counter()  # (quota kind, reason)

    # -- helpers -----------------------------------------------------------
    async def _event(self, tx: Tx, station_id: str, topic: str, payload: dict[str, Any]) -> None:
        """Queue a bus event in the same transaction as the data it describes."""
        if self.publish_events:
            await tx.add_outbox(f"voltledger/{station_id}/{topic}", payload, self.clock())

    @staticmethod
    def session_view(s: Session) -> dict[str, Any]:
        return {
            "id": s.id,
            "station_id": s.station_id,
            "transaction_id": s.transaction_id,
            "connector_id": s.connector_id,
            "evse_id": s.evse_id,
            "id_tag": s.id_tag,
            "status": s.status.value,
            "energy_wh": s.energy_wh,
            "started_at": s.started_at.isoformat(),
            "stopped_at": s.stopped_at.isoformat() if s.stopped_at else None,
            "stop_reason": s.stop_reason,
        }

    async def _notes(self, tx: Tx, session: Session, notes: list[ValueNote],
                     action: str) -> None:
        """Flag the session for what its message carried that could not be taken as sent,
        and keep each such value verbatim (a station event)."""
        for note in notes:
            session.flag(note.flag)
            if note.flag in _QUIET_NOTES:
                continue
            await tx.add_station_event(
                session.station_id, "value_not_taken",
                {"session_id": session.id, "action": action, "field": note.field,
                 "value": note.value, "flag": note.flag, "detail": note.detail},
                self.clock())

    async def _check_times(self, tx: Tx, session: Session, times: list[datetime],
                           action: str) -> None:
        """``time_implausible`` for transaction times the station cannot have sent: before
        its registration less ``time_past``, or after now plus ``time_future``."""
        if not times:
            return
        now = self.clock()
        if session.station_id not in self._registered:
            station = await tx.get_station(session.station_id)
            self._registered[session.station_id] = station.created_at if station else None
        registered = self._registered[session.station_id]
        not_before = registered - self.time_past if registered is not None else None
        bad = [t for t in times if time_flag(t, not_before, now + self.time_future)]
        if not bad or "time_implausible" in session.flags:
            return
        session.flag("time_implausible")
        await tx.add_station_event(
            session.station_id, "time_implausible",
            {"session_id": session.id, "action": action,
             "times": [t.isoformat() for t in bad[:5]],
             "not_before": not_before.isoformat() if not_before else None,
             "not_after": (now + self.time_future).isoformat()}, now)

    async def _authorize(self, tx: Tx, tag: str | None) -> AuthStatus:
        if tag is None:
            return AuthStatus.ACCEPTED
        record = await tx.get_tag(tag)
        if record is None:
            return AuthStatus.UNKNOWN
        return record.authorize(self.clock())

    # -- station lifecycle -------------------------------------------------
    async def boot(self, station_id: str, version: str, info: BootInfo) -> BootDecision:
        now = self.clock()

        async def work(tx: Tx) -> BootDecision:
            station = await tx.get_station(station_id)
            if station is None:
                raise UnknownStation(station_id)
            station.ocpp_version = version
            station.vendor = info.vendor
            station.model = info.model
            station.firmware_version = info.firmware_version
            station.serial_number = info.serial_number
            station.last_boot_at = now
            station.last_seen_at = now
            await tx.update_station(station)
            await self._metered_event(
                tx, station_id, "boot",
                {"reason": info.reason, "vendor": info.vendor, "model": info.model,
                 "firmware_version": info.firmware_version, "policy": station.boot_policy.value},
                now,
            )
            if station.boot_policy is BootPolicy.ACCEPTED:
                status, interval = "Accepted", self.heartbeat_interval
            elif station.boot_policy is BootPolicy.PENDING:
                status, interval = "Pending", self.boot_retry_interval
            else:
                status, interval = "Rejected", self.boot_retry_interval
            await self._event(tx, station_id, "boot", {"status": status})
            return BootDecision(status, interval, now)

        return await self.repo.unit(work)

    async def heartbeat(self, station_id: str) -> datetime:
        """Heartbeats are answered at once; "last seen" is written for all stations
        together, once per ``seen_flush_interval`` (a heartbeat carries no data to keep,
        and 10,000 stations would otherwise cost a unit of work each)."""
        now = self.clock()
        self._seen[station_id] = now
        if not self._seen_writer and (self._seen_flush is None or self._seen_flush.done()):
            # No writer task runs (the service used on its own): flush once, later.
            self._seen_flush = asyncio.get_running_loop().create_task(
                self._flush_seen_later(), name="last-seen")
        return now

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
        finally:
            self._seen_writer = False

    async def flush_seen(self) -> None:
        """Write the "last seen" times of the heartbeats since the last flush."""
        try:
            await self._write_seen()
        except StorageError as exc:  # kept for the next flush
            log.warning("! last-seen times not stored: %s", exc)

    async def _write_seen(self) -> None:
        seen, self._seen = self._seen, {}
        if not seen:
            return

        async def work(tx: Tx) -> None:
            for station_id, at in seen.items():
                await tx.touch_station(station_id, at)

        try:
            await self.repo.unit(work)
        except BaseException:
            for station_id, at in seen.items():
                self._seen.setdefault(station_id, at)
            raise

    async def connection_changed(
        self, station_id: str, online: bool, version: str, node: str = "local"
    ) -> None:
        now = self.clock()

        async def work(tx: Tx) -> None:
            if online:
                await tx.set_station_connection(station_id, node, now)
            else:
                await tx.clear_station_connection(station_id, node)
            await tx.add_station_event(
                station_id, "online" if online else "offline", {"ocpp_version": version}, now
            )
            await self._event(
                tx, station_id, "online" if online else "offline", {"ocpp_version": version}
            )

        await self.repo.unit(work)

    async def status(
        self, station_id: str, evse_id: int, connector_id: int, status: str,
        error_code: str | None, at: datetime | None,
    ) -> None:
        now = self.clock()

        async def work(tx: Tx) -> None:
            await tx.set_connector_status(
                station_id, evse_id, connector_id, status, error_code, at or now
            )
            await tx.touch_station(station_id, now)
            await self._event(
                tx, station_id, "status",
                {"evse_id": evse_id, "connector_id": connector_id, "status": status,
                 "error_code": error_code},
            )

        await self.repo.unit(work)

    async def authorize(self, tag: str, station_id: str | None = None
                        ) -> tuple[AuthStatus, datetime | None]:
        async def work(tx: Tx) -> tuple[AuthStatus, datetime | None]:
            record = await tx.get_tag(tag)
            if record is None:
                # an app session's token: authorized by the driver's signature
                if station_id is not None and await tx.pending_authorization(
                        station_id, tag, int(self.clock().timestamp())) is not None:
                    return AuthStatus.ACCEPTED, None
                return AuthStatus.UNKNOWN, None
            return record.authorize(self.clock()), record.expires_at

        status, expires = await self.repo.read(work)
        if status is AuthStatus.ACCEPTED and station_id is not None \
                and not await self.covered(station_id, tag):
            return AuthStatus.NO_CREDIT, expires
        return status, expires

    async def covered(self, station_id: str, tag: str) -> bool:
        """Whether the escrow of the driver who linked ``tag`` covers a charge here (True
        for a tag linked to no driver, or without settlement on this node)."""
        return await self.refusal(station_id, tag) is None

    async def refusal(self, station_id: str, tag: str) -> str | None:
        """Why the driver who linked ``tag`` may not charge here, or None."""
        if self.credit is None:
            return None
        decision = await self.credit.check(station_id, tag)
        if decision is None or decision.ok:
            return None
        log.info("= %s: %s may not charge: %s", station_id, tag, decision.reason)
        return decision.reason

    async def accept_authorization(self, station_id: str, tag: str,
                                   authorization: dict[str, Any]) -> None:
        """Keep a driver's signed app-session authorization for the next session started
        at ``station_id`` with ``tag`` (settled with it, see settlement.worker)."""
        if self.credit is None:
            raise ValueError("app sessions need settlement on this node (--chain)")
        decision = await self.credit.check_authorization(station_id, authorization)
        if not decision.ok:
            raise ValueError(f"authorization refused: {decision.reason}")
        now = self.clock()

        async def work(tx: Tx) -> None:
            await tx.add_authorization(str(authorization["driver"]), station_id, tag,
                                       authorization, int(authorization["nonce"]),
                                       int(authorization["expiry"]), now)

        try:
            await self.repo.unit(work)
        except StorageError as exc:
            raise ValueError(f"authorization refused: {exc}") from None

    async def reported_max_power(self, station_id: str, watts: Decimal) -> None:
        """Keep the maximum power a station reported (device model): the plausibility
        limit when the operator registered none."""

        async def work(tx: Tx) -> None:
            station = await tx.get_station(station_id)
            if station is not None and station.reported_max_power_w != watts:
                station.reported_max_power_w = watts
                await tx.update_station(station)

        await self.repo.unit(work)

    async def station_event(self, station_id: str, kind: str, payload: dict[str, Any]) -> bool:
        """Store a station event; DataTransfer, security and notification payloads only
        within their quota and the disk reserve (csms.service.quota). True if stored."""
        now = self.clock()

        async def work(tx: Tx) -> bool:
            return await self._metered_event(tx, station_id, kind, payload, now)

        return await self.repo.unit(work)

    async def _metered_event(self, tx: Tx, station_id: str, kind: str,
                             payload: dict[str, Any], now: datetime) -> bool:
        metered = quota_kind(kind)
        if metered is None or self.quota is None:
            await tx.add_station_event(station_id, kind, payload, now)
            return True
        size = len(json.dumps(payload, separators=(",", ":"), default=str))
        verdict = self.quota.admit(station_id, metered, size)
        if not verdict.store:
            self._dropped(station_id, metered, "quota")
            if verdict.first_drop:  # one small note per station, kind and hour
                await tx.add_station_event(station_id, "quota", {
                    "type": "QuotaExceeded", "kind": metered,
                    "limit_bytes_per_hour": self.quota.limits[metered]}, now)
            return False
        free = await tx.free_space()
        if free is not None and free < self.storage_reserve:
            # The space left is kept for transaction data.
            self.quota.refund(station_id, metered, size)
            self._dropped(station_id, metered, "reserve")
            return False
        await tx.add_station_event(station_id, kind, payload, now)
        return True

    def _dropped(self, station_id: str, kind: str, reason: str) -> None:
        self.dropped[kind, reason] += 1
        if self.on_dropped is not None:
            self.on_dropped(kind, reason)
        count = self.dropped[kind, reason]
        if count == 1 or count % 1000 == 0:
            log.warning("! %s payload of %s not stored (%s); %d dropped so far", kind,
                        station_id, "quota reached" if reason == "quota"
                        else "disk space kept for transactions", count)

    # -- sessions ------------------------------------------------------------
    async def _complete(self, tx: Tx, session: Session, samples: list[MeterSample]) -> None:
        """Compute the billed energy from all the session's data and queue settlement.

        Unsigned readings first (csms.domain.energy), then the meter's signed ones
        (OCMF), which win where the two differ by a unit factor or the station sent none;
        then plausibility. A session with any hold flag is not queued.
        """
        assert session.id is not None
        stored = await tx.session_samples(session.id)
        data = stored if stored else samples
        result = compute_energy(
            session.reported_meter_start_wh, session.reported_meter_stop_wh, data,
            session.started_at,
        )
        flags = [f for f in result.flags
                 if not (session.ocpp_version == "ocpp2.0.1" and f in _V201_NORMAL)]
        if not result.readings_decrease:  # only start/stop went backwards: decided below,
            flags = [f for f in flags if f != "meter_went_backwards"]  # once reconciled
        start, stop = result.meter_start_wh, result.meter_stop_wh
        signed = [s for s in data if s.signed]
        if signed:
            # Compare the meter's signed readings with the station's own readings of the
            # same moments (meterStart/meterStop or its Transaction.Begin/End samples);
            # a first/last periodic reading is no such reading.
            anchored = {"reported", "context"}
            rec = await self._check_signed(
                tx, session, signed,
                start if result.start_source in anchored else None,
                stop if result.stop_source in anchored else None)
            for side, reading in (("start", rec.signed_begin), ("stop", rec.signed_end)):
                if reading is None:
                    continue  # no signed reading for this side: the station's stands
                if side == "start":
                    start = rec.start_wh
                else:
                    stop = rec.stop_wh
                if f"meter_{side}_from_signed" in rec.flags:
                    flags = [f for f in flags if f not in (
                        f"meter_{side}_missing", f"meter_{side}_from_samples")]
            flags.extend(f for f in rec.flags
                         if not (session.ocpp_version == "ocpp2.0.1" and f in _V201_NORMAL))
        energy = 0
        if start is not None and stop is not None:
            energy, problem = energy_between(start, stop)
            if problem:
                flags.append(problem)
        session.meter_start_wh, session.meter_stop_wh, session.energy_wh = start, stop, energy
        for f in flags:
            session.flag(f)
        station = await tx.get_station(session.station_id)
        limit = station.power_limit_w(self.default_max_power_w) if station \
            else self.default_max_power_w
        for f in energy_flags(session.started_at, session.stopped_at, energy, limit):
            session.flag(f)
        session.status = SessionStatus.COMPLETED
        await tx.update_session(session)
        now = self.clock()
        if not BILLING_HOLD_FLAGS.intersection(session.flags):
            await tx.enqueue_settlement(session.id, now)
        else:
            await tx.add_station_event(
                session.station_id, "billing_hold",
                {"session_id": session.id, "flags": session.flags,
                 "max_power_w": str(limit)}, now,
            )
        await self._event(tx, session.station_id, "session/completed", self.session_view(session))

    async def _check_signed(
        self, tx: Tx, session: Session, signed: list[MeterSample],
        start_wh: Decimal | None, stop_wh: Decimal | None,
    ) -> ocmf.Reconciled:
        """Verify the session's signed meter data (OCMF) and reconcile it with the readings.

        The station's meter key is the one registered by the operator, or the first
        one a message carried (then pinned: a different key later is a security event
        and does not replace it). Per signed reading the result is stored; a signature
        that fails, data that cannot be read or checked, and signed import readings that
        differ from the station's hold the session back from settlement.
        """
        assert session.id is not None
        pinned, _source = await tx.get_meter_key(session.station_id)
        rows: list[dict[str, Any]] = []
        readings: list[ocmf.SignedReading] = []
        now = self.clock()
        for number, sample in enumerate(signed):
            assert sample.signed is not None
            checked = ocmf.check_container(sample.signed, pinned)
            if checked.message_key is not None:
                if pinned is None:
                    pinned = checked.message_key
                    await tx.set_meter_key(session.station_id, pinned, "first_use")
                    await tx.add_station_event(
                        session.station_id, "security",
                        {"type": "MeterKeyPinned", "public_key": pinned}, now)
                    log.info("= %s: meter key pinned on first use", session.station_id)
                elif checked.message_key != pinned:
                    session.flag("meter_key_changed")
                    await tx.add_station_event(
                        session.station_id, "security",
                        {"type": "MeterKeyChanged", "pinned": pinned,
                         "received": checked.message_key, "session_id": session.id}, now)
                    log.warning("! %s sent signed meter data with a different meter key",
                                session.station_id)
            if checked.status == ocmf.NO_KEY:
                session.flag("meter_key_unknown")
            elif checked.status in (ocmf.INVALID, ocmf.MALFORMED):
                session.flag("signature_invalid")
            base = {"container_no": number, "public_key": checked.key_used,
                    "status": checked.status, "detail": checked.detail}
            if not checked.readings:
                rows.append({**base, "tx_code": None, "reading_time": None, "reading_wh": None,
                             "resolution_wh": None, "meter_serial": None, "pagination": None})
            for r in checked.readings:
                rows.append({**base, "tx_code": r.tx, "reading_time": r.time,
                             "reading_wh": str(r.wh), "resolution_wh": str(r.resolution_wh),
                             "meter_serial": r.meter_serial, "pagination": r.pagination,
                             "register_code": r.register, "register_kind": r.kind})
                if checked.status == ocmf.VERIFIED:
                    readings.append(r)
        await tx.add_signed_readings(session.id, session.station_id, rows)
        rec = ocmf.reconcile(readings, start_wh, stop_wh)
        if rec.mismatches:
            await tx.add_station_event(
                session.station_id, "billing_mismatch",
                {"session_id": session.id, "mismatches": rec.mismatches}, now)
        if rec.notes:
            await tx.add_station_event(
                session.station_id, "billing_discrepancy",
                {"session_id": session.id, "notes": rec.notes, "flags": rec.flags}, now)
        return rec

    @staticmethod
    def _running_energy(session: Session, samples: list[MeterSample]) -> None:
        """Keep ``energy_wh`` of an active session current (for the API), never billing."""
        result = compute_energy(session.meter_start_wh, None, samples, session.started_at)
        if "value_out_of_range" in result.flags:
            session.flag("value_out_of_range")
        if "meter_start_placeholder" in result.flags:
            session.meter_start_wh = result.meter_start_wh
            session.flag("meter_start_placeholder")
        elif session.meter_start_wh is None and result.meter_start_wh is not None:
            session.meter_start_wh = result.meter_start_wh
        if result.meter_stop_wh is not None and session.meter_start_wh is not None:
            delta = result.meter_stop_wh - session.meter_start_wh
            if delta >= 0:
                session.energy_wh = max(session.energy_wh or 0, int(delta))

    # 1.6 ---------------------------------------------------------------------
    async def start_transaction(
        self, station_id: str, connector_id: int | None, id_tag: str, meter_start_wh: Decimal,
        timestamp: datetime, reservation_id: int | None = None,
        notes: list[ValueNote] | None = None,
    ) -> tuple[int, AuthStatus, datetime | None]:
        """1.6 §6.46 StartTransaction: always answered with a transactionId."""
        start_key = f"{connector_id}|{id_tag}|{timestamp.isoformat()}|{meter_start_wh}"
        covered = await self.covered(station_id, id_tag)

        async def work(tx: Tx) -> tuple[int, AuthStatus, datetime | None]:
            tag = await tx.get_tag(id_tag)
            auth = AuthStatus.UNKNOWN if tag is None else tag.authorize(self.clock())
            if auth is AuthStatus.ACCEPTED and not covered:
                auth = AuthStatus.NO_CREDIT
            expires = tag.expires_at if tag else None
            existing = await tx.find_session_by_start_key(station_id, start_key)
            if existing is not None:
                # A retry of a StartTransaction we already answered (the answer
                # was lost): same transactionId, nothing new stored.
                return int(existing.transaction_id), auth, expires
            session = Session(
                station_id=station_id,
                ocpp_version="ocpp1.6",
                transaction_id="",
                started_at=timestamp,
                connector_id=connector_id,
                evse_id=connector_id,
                id_tag=id_tag,
                auth_status=auth.value,
                reported_meter_start_wh=meter_start_wh,
                meter_start_wh=meter_start_wh,
                start_key=start_key,
            )
            if auth is not AuthStatus.ACCEPTED:
                session.flag(f"auth_{auth.value.lower()}")
            await tx.insert_session(session)
            assert session.id is not None
            if await tx.bind_authorization(station_id, id_tag, session.id,
                                           int(self.clock().timestamp())) is not None \
                    and auth is AuthStatus.UNKNOWN:
                # an app session's token, authorized by the driver's signature
                auth = AuthStatus.ACCEPTED
                session.auth_status = auth.value
                session.flags = [f for f in session.flags if f != "auth_unknown"]
                await tx.update_session(session)
            flagged = len(session.flags)
            await self._notes(tx, session, notes or [], "StartTransaction")
            await self._check_times(tx, session, [timestamp], "StartTransaction")
            if len(session.flags) != flagged:
                await tx.update_session(session)
            await self._event(tx, station_id, "session/started", self.session_view(session))
            return int(session.transaction_id), auth, expires

        return await self.repo.unit(work)

    async def stop_transaction(self, station_id: str, stop: StopInfo) -> AuthStatus | None:
        """1.6 §6.50 StopTransaction: completes the session, whatever it holds."""
        txid = str(stop.transaction_id)

        async def work(tx: Tx) -> AuthStatus | None:
            auth = await self._authorize(tx, stop.id_tag) if stop.id_tag else None
            session = await tx.find_session(station_id, txid)
            now = self.clock()
            if session is None:
                owners = await tx.stations_with_transaction(txid)
                if owners:
                    # Transactions are bound to their station: another station's
                    # stop is acknowledged (so it stops retrying) but not applied.
                    await tx.add_station_event(
                        station_id, "security",
                        {"type": "ForeignTransaction", "transaction_id": txid,
                         "action": "StopTransaction"},
                        now,
                    )
                    log.warning("! %s sent StopTransaction for another station's transaction %s",
                                station_id, txid)
                    return auth
                session = Session(
                    station_id=station_id, ocpp_version="ocpp1.6", transaction_id=txid,
                    started_at=stop.timestamp, id_tag=stop.id_tag,
                )
                session.flag("unknown_transaction")
                await tx.insert_session(session)
            elif session.status is SessionStatus.COMPLETED:
                return auth  # a retry of a stop we already stored
            assert session.id is not None
            if stop.samples:
                await tx.add_samples(
                    station_id, stop.samples, session_id=session.id,
                    evse_id=session.evse_id, connector_id=session.connector_id,
                    transaction_id=txid,
                )
            await self._notes(tx, session, stop.notes, "StopTransaction")
            await self._check_times(tx, session, [stop.timestamp, *(s.timestamp
                                                                    for s in stop.samples)],
                                    "StopTransaction")
            session.stopped_at = stop.timestamp
            session.reported_meter_stop_wh = stop.meter_stop_wh
            session.stop_reason = stop.reason or "Local"  # 1.6 §7.45: Local when omitted
            await self._complete(tx, session, stop.samples)
            return auth

        return await self.repo.unit(work)

    async def meter_values(
        self, station_id: str, connector_id: int | None, transaction_id: str | None,
        samples: list[MeterSample], notes: list[ValueNote] | None = None,
    ) -> None:
        """1.6 §6.34 MeterValues. Without a known transaction the samples are kept
        for the station (main meter, clock-aligned) and never touch a session."""

        async def work(tx: Tx) -> None:
            session: Session | None = None
            now = self.clock()
            if transaction_id is not None and connector_id != 0:
                session = await tx.find_session(station_id, transaction_id)
                if session is None and await tx.stations_with_transaction(transaction_id):
                    await tx.add_station_event(
                        station_id, "security",
                        {"type": "ForeignTransaction", "transaction_id": transaction_id,
                         "action": "MeterValues"},
                        now,
                    )
            await tx.add_samples(
                station_id, samples, session_id=session.id if session else None,
                evse_id=connector_id, connector_id=connector_id, transaction_id=transaction_id,
            )
            if session is None:
                return
            await self._notes(tx, session, notes or [], "MeterValues")
            await self._check_times(tx, session, [s.timestamp for s in samples], "MeterValues")
            if session.status is SessionStatus.ACTIVE:
                self._running_energy(session, samples)
                await tx.update_session(session)
                await self._event(tx, station_id, "session/updated", self.session_view(session))
            else:
                session.flag("late_samples")
                await tx.update_session(session)

        await self.repo.unit(work)

    # 2.0.1 -------------------------------------------------------------------
    async def transaction_event(
        self, station_id: str, ev: TransactionEventIn
    ) -> AuthStatus | None:
        """2.0.1 E01-E15 TransactionEvent: Started / Updated / Ended, deduplicated by seqNo."""
        covered = await self.covered(station_id, ev.id_tag) \
            if ev.id_tag and ev.event_type == "Started" else True

        async def work(tx: Tx) -> AuthStatus | None:
            auth = await self._authorize(tx, ev.id_tag) if ev.id_tag else None
            if auth is AuthStatus.ACCEPTED and not covered:
                auth = AuthStatus.NO_CREDIT
            now = self.clock()
            # A seqNo beyond 64 bits cannot be stored: the event is taken as new (the
            # session is held for it, see ev.notes).
            fresh = ev.seq_no is None or await tx.record_tx_event(
                station_id, ev.transaction_id, ev.seq_no, ev.event_type, ev.offline, now
            )
            if not fresh:
                return auth  # a retry: already stored, answer the same
            session = await tx.find_session(station_id, ev.transaction_id)
            created = False
            if session is None:
                session = Session(
                    station_id=station_id, ocpp_version="ocpp2.0.1",
                    transaction_id=ev.transaction_id, started_at=ev.timestamp,
                    evse_id=ev.evse_id, connector_id=ev.connector_id,
                )
                if ev.event_type != "Started":
                    session.flag("started_missing")
                if ev.seq_no != 0 and ev.event_type == "Started":
                    session.flag("seq_gap")
                await tx.insert_session(session)
                created = True
            else:
                if session.last_seq_no is not None and ev.seq_no is not None \
                        and ev.seq_no != session.last_seq_no + 1:
                    session.flag("seq_gap")
                    await tx.add_station_event(
                        station_id, "seq_gap",
                        {"transaction_id": ev.transaction_id, "expected": session.last_seq_no + 1,
                         "received": ev.seq_no},
                        now,
                    )
                if ev.event_type == "Started" and not created:
                    session.started_at = ev.timestamp
            assert session.id is not None
            if ev.seq_no is not None and (session.last_seq_no is None
                                          or ev.seq_no > session.last_seq_no):
                session.last_seq_no = ev.seq_no
            await self._notes(tx, session, ev.notes, "TransactionEvent")
            await self._check_times(tx, session, [ev.timestamp, *(s.timestamp
                                                                  for s in ev.samples)],
                                    "TransactionEvent")
            if ev.offline:
                session.flag("offline_events")
            if session.evse_id is None and ev.evse_id is not None:
                session.evse_id, session.connector_id = ev.evse_id, ev.connector_id
            if ev.id_tag and session.id_tag is None:
                session.id_tag = ev.id_tag
                if await tx.bind_authorization(station_id, ev.id_tag, session.id,
                                               int(self.clock().timestamp())) is not None \
                        and auth is AuthStatus.UNKNOWN:
                    auth = AuthStatus.ACCEPTED  # authorized by the driver's signature
                session.auth_status = auth.value if auth else None
                if auth is not None and auth is not AuthStatus.ACCEPTED:
                    session.flag(f"auth_{auth.value.lower()}")
            if ev.samples:
                await tx.add_samples(
                    station_id, ev.samples, session_id=session.id, evse_id=session.evse_id,
                    connector_id=session.connector_id, transaction_id=ev.transaction_id,
                )
            if session.status is SessionStatus.COMPLETED:
                if ev.samples:
                    session.flag("late_samples")
                await tx.update_session(session)
                return auth
            if ev.event_type == "Ended":
                session.stopped_at = ev.timestamp
                # 2.0.1 E06: stoppedReason may be omitted, meaning Local.
                session.stop_reason = ev.stopped_reason or "Local"
                await self._complete(tx, session, ev.samples)
                return auth
            if ev.samples:
                self._running_energy(session, ev.samples)
            await tx.update_session(session)
            topic = "session/started" if created else "session/updated"
            await self._event(tx, station_id, topic, self.session_view(session))
            return auth

        return await self.repo.unit(work)


def new_station(station_id: str, **kwargs: Any) -> Station:
    return Station(id=station_id, created_at=utc_now(), **kwargs)
