"""The charging service's shared state and helpers: its repository, clock and settings, the
outbox events it writes and the check of an id tag. The use cases build on it
(:mod:`csms.service.stations`, :mod:`csms.service.sessions`)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from csms.domain.energy import DEFAULT_MAX_POWER_W, Readings
from csms.domain.model import (
    AuthStatus,
    IdTag,
    Session,
    Station,
    registry_disowns,
    status_changed_since,
)
from csms.domain.tariff import Tariff, minor_prices
from csms.service import defaults
from csms.service.certificates import CertificateUseCases, Outbound
from csms.service.credit import Cover, CreditCheck
from csms.service.messages import utc_now
from csms.service.ports import Repository, Tx
from csms.service.quota import PayloadQuota, Verdict, quota_kind
from csms.service.repeats import worth_logging
from csms.service.topics import station_level
from csms.service.views import session_json

__all__ = ["BLOCKED_AT_START", "START_BEFORE_AUTHORIZATION", "START_SENT_LATE", "ChargingCore"]

log = logging.getLogger("csms.service")

# a signed app session whose start the station dates, by its own clock (as its stop shows
# it), before the driver's authorization was given: held (BILLING_HOLD_FLAGS)
START_BEFORE_AUTHORIZATION = "start_before_authorization"
# a start the station dates, by its own clock (as its stop shows it), long before it sent
# it, though it was connected since before that start: held (BILLING_HOLD_FLAGS)
START_SENT_LATE = "start_sent_late"
# a signed app session whose register rose, by the station's readings, before the driver's
# authorization was given (a transaction reported at plug-in, charging before the app
# started it): energy the driver never signed for, held (BILLING_HOLD_FLAGS)
ENERGY_BEFORE_AUTHORIZATION = "energy_before_authorization"
# the same session reported (at plug-in) more than the clock's tolerance before the
# authorization, at a tariff with a price per minute: minutes the driver never signed for
TIME_BEFORE_AUTHORIZATION = "time_before_authorization"
# a start accepted by the tag's registry entry now, started while the entry was blocked:
# charged to nobody (ChargingCore._bind_blocked_then)
BLOCKED_AT_START = "blocked_at_start"
# a station's latest connections read for the one its start came over (_judge_start)
CONNECTIONS_READ = 50


async def disowned_at(tx: Tx, registered: IdTag | None, at: datetime) -> bool:
    """:func:`registry_disowns` by the registry entry ``registered`` as it stood at ``at``:
    its status then, read from the statuses it replaced only where it changed after
    ``at``."""
    if status_changed_since(registered, at):
        assert registered is not None
        status = await tx.tag_status_at(registered.tag, at)
        if status is not None:
            registered = dataclasses.replace(registered, status=status)
    return registry_disowns(registered, at)


class ChargingCore:
    """The charging service's state (repository, clock, settings) and the helpers every
    use case shares; the use cases are mixins of it (stations, sessions)."""

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
        connection_liveness: timedelta | None = None,
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
        # the longest a dead connection stays open (the server's ping interval and
        # timeout); None: no pings, a connection's end says nothing of when it died
        self.connection_liveness = connection_liveness
        self._registered: dict[str, datetime | None] = {}
        # the drivers' escrows on chain (settlement.credit), when settlement runs here
        self.credit: CreditCheck | None = None
        # the CA that signs stations' CSRs (security profile 3), when this node has one
        self.certificates: CertificateUseCases | None = None
        # how a use case sends a CALL once the answer to the station's CALL is out (the
        # server), and whether a 1.6 station's configuration is read after its boot
        self.outbound: Outbound | None = None
        self.boot_get_configuration = False
        # connectors stored per station (csms.service.stations StationUseCases.status):
        # a station cannot add rows without end by inventing EVSE or connector ids
        self.max_connectors = defaults.MAX_CONNECTORS
        self.heartbeat_interval = heartbeat_interval
        self.boot_retry_interval = boot_retry_interval
        self.publish_events = publish_events
        self.clock = clock
        self.seen_flush_interval = seen_flush_interval
        self._seen: dict[str, datetime] = {}
        # the status last published per connector of a station (its connection's, cleared
        # when it connects or leaves): the same status again is no new bus event
        self._published_status: dict[str, dict[tuple[int, int], tuple[Any, ...]]] = {}
        # per station, its latest online/offline bus event dropped over its connection
        # quota (topic, payload): published once the quota has room, if still true
        # (StationUseCases.publish_presence)
        self._presence_owed: dict[str, tuple[str, dict[str, Any]]] = {}
        self._seen_flush: asyncio.Task[None] | None = None
        self._seen_writer = False  # run_seen_writer() owns the writes
        # closed connections whose station row another transaction held: (node, since),
        # cleared by the next flush of the last-seen writer
        self._unreleased: dict[str, tuple[str, datetime | None]] = {}
        # station payloads besides transactions: quotas and a disk reserve (see quota.py)
        self.quota = quota
        self.storage_reserve = storage_reserve
        self.on_dropped = on_dropped
        self.dropped: Counter[tuple[str, str]] = Counter()  # (quota kind, reason)
        # seconds a driver's signed authorization binds a 1.6 start after the station
        # accepted its remote start (1.6 reports no id of the remote start: see
        # defaults.REMOTE_START_WINDOW)
        self.remote_start_window = defaults.REMOTE_START_WINDOW
        # remote starts of signed app sessions whose answer is not stored yet, by (station,
        # tag): set once it is (see stations.StationUseCases.remote_start_answered)
        self._starting: dict[tuple[str, str], list[asyncio.Event]] = {}
        # the stops asked of sessions being stopped at their limit, by session id: when last
        # asked from this node, or ``limits.STOP_TAKEN`` once one was accepted
        # (csms.service.limits: a stop not taken is asked again, at most once a minute)
        self._limit_asks: dict[int, datetime] = {}

    # -- helpers -----------------------------------------------------------
    async def _event(self, tx: Tx, station_id: str, topic: str, payload: dict[str, Any]) -> None:
        """Queue a bus event in the same transaction as the data it describes, on
        ``voltledger/<station level>/<topic>`` (csms.service.topics: any station id makes
        a valid topic, never another station's)."""
        if self.publish_events:
            await tx.add_outbox(f"voltledger/{station_level(station_id)}/{topic}", payload,
                                self.clock())

    def admit_payload(self, station_id: str, kind: str, size: int) -> Verdict:
        """Charge a payload of ``size`` bytes stored otherwise than as an event (a device
        model report) to the station's quota ``kind``; a drop is counted."""
        if self.quota is None:
            return Verdict(True)
        verdict = self.quota.admit(station_id, kind, size)
        if not verdict.store:
            self._dropped(station_id, kind, "quota")
        return verdict

    async def metered_event(self, tx: Tx, station_id: str, kind: str,
                            payload: dict[str, Any], now: datetime, *,
                            reserve: bool = True) -> bool:
        """Store a station event in ``tx`` within the station's quota for its kind and the
        disk reserve (see :meth:`station_event`). True if stored. ``reserve`` False: an
        event billing reads, dropped only over the quota, where a note says so (a drop
        for the disk reserve leaves none: a station's ``online`` events,
        :meth:`_connected_when`)."""
        metered = quota_kind(kind)
        if metered is None or self.quota is None:
            await tx.add_station_event(station_id, kind, payload, now)
            return True
        size = len(json.dumps(payload, separators=(",", ":"), default=str))
        verdict = self.admit_payload(station_id, metered, size)
        if not verdict.store:
            if verdict.first_drop:  # one small note per station, kind and hour
                await tx.add_station_event(station_id, "quota", {
                    "type": "QuotaExceeded", "kind": metered,
                    "limit_bytes_per_hour": self.quota.limits[metered]}, now)
            return False
        free = await tx.free_space() if reserve else None
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
        if worth_logging(count):
            log.warning("! %s payload of %s not stored (%s); %d dropped so far", kind,
                        station_id, "quota reached" if reason == "quota"
                        else "disk space kept for transactions", count)

    async def _session_event(self, tx: Tx, station_id: str, topic: str,
                             session: Session) -> None:
        """A session's bus event: its view is built only when events are published (every
        MeterValues sends one, and building it was 1.4% of the server's loop)."""
        if self.publish_events:
            await self._event(tx, station_id, topic, session_json(session))

    async def _authorize(self, tx: Tx, tag: str | None) -> AuthStatus:
        if tag is None:
            return AuthStatus.ACCEPTED
        return self._answer(await tx.get_tag(tag))

    def _answer(self, record: IdTag | None) -> AuthStatus:
        """The answer to a tag whose registry entry is ``record`` (None: unknown)."""
        return AuthStatus.UNKNOWN if record is None else record.authorize(self.clock())

    async def _start_answered(self, station_id: str, tag: str | None) -> None:
        """Wait until the station's answer to the remote start of a signed app session for
        ``tag`` sent to it is stored (at most ``REMOTE_START_ANSWER_WAIT`` seconds): a 1.6
        station sends its Authorize or StartTransaction right after the answer, and here
        it may be handled before the answer is stored."""
        waiting = self._starting.get((station_id, tag)) if tag is not None else None
        if not waiting:
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(defaults.REMOTE_START_ANSWER_WAIT):
                for event in list(waiting):
                    await event.wait()

    async def _bind_signed(self, tx: Tx, station_id: str, tag: str, session: Session,
                           remote_start_id: Any = None) -> bool:
        """Bind the driver's signed authorization waiting at ``station_id`` for ``tag`` to
        ``session`` (True), unless the tariff valid at the session's start asks more than
        the driver signed for: the contract would not pay that session (above the signed
        prices), so the signature is kept for a session within them. A bound session's
        limit is the one the authorization was accepted with (the smallest of the signed
        maximum amount and what the escrow and the day's limit had left; the signed amount
        for one kept before limits were: ``session.limit_minor``, for the caller to store).

        Only the start it was accepted for binds it: on 2.0.1 the transaction that reports
        the ``remote_start_id`` sent with it, on 1.6 (no such id) a start with its tag at
        its station, on the connector the remote start named (if it named one), within
        ``remote_start_window`` after the station accepted the remote start; never after
        the remote start failed (see settlement_sql). A start dated before the
        authorization was given is held when the session completes (:meth:`_judge_start`:
        the station's clock is known from its stop only)."""
        assert session.id is not None
        now = int(self.clock().timestamp())
        remote_start_id, connector = _signed_keys(session, remote_start_id)
        row = await tx.pending_authorization(station_id, tag, now, remote_start_id,
                                             connector_id=connector)
        if row is None:
            return False
        body = json.loads(row["body"])
        tariff = await tx.find_tariff(station_id, session.started_at)
        if tariff is not None:
            signed = (int(body["max_per_kwh"]), int(body["max_per_minute"]),
                      int(body["max_session_fee"]))
            asked = minor_prices(tariff)
            if any(a > b for a, b in zip(asked, signed, strict=True)):
                log.warning("! %s: the tariff %s (per kWh, per minute, fee) is above what the"
                            " driver signed for %s: %s not started on the signature",
                            station_id, asked, signed, tag)
                await tx.add_station_event(station_id, "authorization_refused", {
                    "session_id": session.id, "tag": tag, "reason": "tariff_above_signed",
                    "tariff": list(asked), "signed": list(signed)}, self.clock())
                return False
        if await tx.bind_authorization(station_id, tag, session.id, now, remote_start_id,
                                       connector_id=connector) is None:
            return False
        limit = row.get("limit_minor")
        session.limit_minor = int(limit if limit is not None else body["max_amount"])
        return True

    async def _signed_waiting(self, tx: Tx, station_id: str, tag: str, session: Session,
                              remote_start_id: Any = None) -> bool:
        """Whether a driver's signed authorization waits at ``station_id`` for ``tag`` that
        :meth:`_bind_signed` may bind to ``session`` (read only: nothing is bound)."""
        remote_start_id, connector = _signed_keys(session, remote_start_id)
        return await tx.pending_authorization(
            station_id, tag, int(self.clock().timestamp()), remote_start_id,
            connector_id=connector) is not None

    async def _judge_start(self, tx: Tx, session: Session, station: Station | None,
                           now: datetime) -> None:
        """At ``session``'s completion (``now``: when its stop arrived), hold it when the
        station dated its start back, by its own clock, to make the session longer than it
        ran (a price per minute, more energy allowed for its time): ``start_sent_late`` or
        ``start_before_authorization``, each with a station event of its name saying why.

        The station's clock is judged by its stop, not against ours: a station whose
        clock runs behind (never synchronised; local time west of UTC sent as UTC) dates
        its stop back as much as its start, and its session is as long as it ran. The
        stop's lag (when it arrived less the time the station gives it) is the clock's
        offset; the start corrected to our clock is its time plus that lag. The start's
        lag (when the session was stored, ``created_at``, less its time) exceeds the
        stop's by as much as the session is reported longer than it was seen to run:
        up to ``time_future`` of that is a clock's drift; beyond it the start was dated
        back, or kept while the station was offline and sent once it was back. It is
        held only:

        - ``start_sent_late``: the connection the start came over was made at or before
          the corrected start (connected all along: a station sends its start as it
          starts), a reconnect since changing nothing; or an earlier connection was open
          at the corrected start and alive for more than ``time_future`` after it
          (:meth:`_connected_through`: a reconnect made to send a start dated back). A
          start kept offline and sent after the station connected again is not held: its
          earlier connection ended before it, or within ``time_future`` after it (lost as
          it started). Without pings (``connection_liveness`` None) an earlier
          connection's end says nothing of when it died: only the first rule holds.
        - ``start_before_authorization``: the session is bound to a driver's signed
          authorization given (kept just before its remote start was sent) no later than
          the start arrived, and the corrected start is before it less ``time_future``:
          time the driver never signed for. A 2.0.1 transaction reported before the
          authorization was given (at plug-in, the app's token attached later) is not.

        A stop kept in the station's queue has a large lag: the corrected start moves
        later, nothing is held (an honest station never is). A station that dates its
        start and its stop back alike reports the duration it ran: nothing to catch.
        Costs no statement but for a session reported longer than it was seen to run
        (the station's latest connections, their ends when the start came over a later
        one, the authorization's row); ``station`` is the
        one its completion read. Not for a session whose start the station never reported
        as one (``unknown_transaction``, ``started_missing``: held as such)."""
        created, stopped = session.created_at, session.stopped_at
        if created is None or stopped is None or session.id is None \
                or "unknown_transaction" in session.flags \
                or "started_missing" in session.flags:
            return
        stop_lag = now - stopped
        if (created - session.started_at) - stop_lag <= self.time_future:
            return  # as long as it was seen to run, within a clock's drift
        try:
            corrected = session.started_at + stop_lag
        except OverflowError:  # times beyond the calendar: held for them (time_implausible)
            return
        detail = {"session_id": session.id, "transaction_id": session.transaction_id,
                  "started_at": session.started_at.isoformat(),
                  "received_at": created.isoformat(), "stopped_at": stopped.isoformat(),
                  "stop_received_at": now.isoformat(),
                  "corrected_start": corrected.isoformat()}
        since = await self._connected_when(tx, session.station_id, created, station)
        until: datetime | None = None
        if since is not None and since > corrected and START_SENT_LATE not in session.flags:
            # sent on a connection made after it: kept offline, unless an earlier
            # connection was open at it and for longer than a clock's drift after it
            through = await self._connected_through(tx, session.station_id, corrected)
            since, until = through if through is not None else (None, None)
        if since is not None and since <= corrected and START_SENT_LATE not in session.flags:
            session.flag(START_SENT_LATE)
            log.warning("! %s: session %s started %s by the station (%s by our clock),"
                        " connected since %s%s, sent at %s", session.station_id, session.id,
                        session.started_at.isoformat(), corrected.isoformat(),
                        since.isoformat(), f" until {until.isoformat()}" if until else "",
                        created.isoformat())
            await tx.add_station_event(session.station_id, START_SENT_LATE, {
                **detail, "connected_at": since.isoformat(),
                **({"connected_until": until.isoformat()} if until else {})}, now)
        if START_BEFORE_AUTHORIZATION in session.flags:
            return
        authorization = await tx.authorization_of(session.id)
        if authorization is None:
            return
        given = datetime.fromisoformat(str(authorization["created_at"]))
        earliest = given - self.time_future
        if created < given or corrected >= earliest:
            return
        session.flag(START_BEFORE_AUTHORIZATION)
        log.warning("! %s: session %s started %s (%s by our clock), before its driver's"
                    " authorization (%s)", session.station_id, session.id,
                    session.started_at.isoformat(), corrected.isoformat(), given.isoformat())
        await tx.add_station_event(session.station_id, START_BEFORE_AUTHORIZATION, {
            **detail, "tag": session.id_tag, "authorized_at": given.isoformat(),
            "not_before": earliest.isoformat()}, now)

    async def _judge_before_authorization(self, tx: Tx, session: Session, found: Readings,
                                          now: datetime, tariff: Tariff | None) -> None:
        """At ``session``'s completion (``now``: when its stop arrived), hold it when it is
        bound to a driver's signed authorization and is billed for what came before the
        authorization was given, less ``time_future``. A 2.0.1 transaction reported at
        plug-in before the app started it is bound to the signature whole
        (:meth:`_judge_start` lets its start stand): an honest station delivers nothing
        before its transaction is authorized, and a driver plugs in and starts within
        minutes; a station that charged any car meanwhile, or reported a transaction on an
        EVSE and kept it open until an app driver started there, would have the driver pay
        for it, up to the signed maximum. Each with a station event of its name:

        - ``energy_before_authorization``: the station's own readings of the billed
          register (``found``) rose before it (saying how much);
        - ``time_before_authorization``: the session's ``tariff`` (the one valid at its
          start) has a price per minute and its start was before it (saying how many
          minutes).

        The station's times are its clock's, corrected by its stop's lag as in
        :meth:`_judge_start`. Reads the authorization only for a session with a limit whose
        register rose above its start or that is priced by the minute."""
        start, stopped = session.meter_start_wh, session.stopped_at
        if session.id is None or session.limit_minor is None or stopped is None:
            return
        risen = [] if start is None or ENERGY_BEFORE_AUTHORIZATION in session.flags else [
            (at, wh) for at, wh, context, _ in found.readings
            if context != "Transaction.Begin" and wh > start]
        timed = tariff is not None and tariff.per_minute > 0 \
            and TIME_BEFORE_AUTHORIZATION not in session.flags \
            and START_BEFORE_AUTHORIZATION not in session.flags  # held for its start
        if not risen and not timed:
            return
        authorization = await tx.authorization_of(session.id)
        if authorization is None:
            return
        given = datetime.fromisoformat(str(authorization["created_at"]))
        lag = now - stopped
        try:
            before = [wh for at, wh in risen if at + lag < given - self.time_future]
            early = given - (session.started_at + lag) if timed else timedelta(0)
        except OverflowError:  # times beyond the calendar: held for them (time_implausible)
            return
        detail = {"session_id": session.id, "transaction_id": session.transaction_id,
                  "tag": session.id_tag, "started_at": session.started_at.isoformat(),
                  "authorized_at": given.isoformat()}
        if before:
            assert start is not None
            energy = int(max(before) - start)
            session.flag(ENERGY_BEFORE_AUTHORIZATION)
            log.warning("! %s: session %s delivered %d Wh before its driver's authorization"
                        " (%s)", session.station_id, session.id, energy, given.isoformat())
            await tx.add_station_event(session.station_id, ENERGY_BEFORE_AUTHORIZATION, {
                **detail, "energy_before_wh": energy, "energy_wh": session.energy_wh}, now)
        if early > self.time_future:
            minutes = int(early.total_seconds() // 60)
            session.flag(TIME_BEFORE_AUTHORIZATION)
            log.warning("! %s: session %s started %d minutes before its driver's"
                        " authorization (%s), priced by the minute", session.station_id,
                        session.id, minutes, given.isoformat())
            await tx.add_station_event(session.station_id, TIME_BEFORE_AUTHORIZATION, {
                **detail, "minutes_before": minutes, "stopped_at": stopped.isoformat(),
                "per_minute": str(tariff.per_minute) if tariff is not None else None}, now)

    @staticmethod
    async def _connected_when(tx: Tx, station_id: str, at: datetime,
                              station: Station | None) -> datetime | None:
        """When the station's connection current at ``at`` (a message came over it then) was
        made: its latest ``online`` event made by then, among its last
        ``CONNECTIONS_READ``; else, none kept, its connection now's. None (not known)
        when the station's ``online`` events were dropped over its quota between that
        event and ``at`` (a later connection, not kept, may be the one)."""
        for event in await tx.list_station_events(station_id, "online", CONNECTIONS_READ):
            made = event["payload"].get("connected_at")
            if isinstance(made, str) and (when := datetime.fromisoformat(made)) <= at:
                if await _connections_dropped(tx, station_id, when, at):
                    return None
                return when
        return station.connected_at if station is not None else None

    async def _connected_through(self, tx: Tx, station_id: str, at: datetime
                                 ) -> tuple[datetime, datetime] | None:
        """(made, alive until) of the station's connection that was open at ``at``, when it
        was alive for more than ``time_future`` after it, by the central system's clock.
        That connection is its latest made at or before ``at`` (its ``online`` event); it
        lasted until its end (its ``offline`` event) or, replaced or its end not recorded,
        until the station's next connection was made, and was alive until then less
        ``connection_liveness`` (a dead one is closed for a ping unanswered within it), or
        to its end when the station closed it (``closed_by_station`` in its ``offline``
        event: the station's close frame came before ours).
        None without pings (``connection_liveness`` None: a dead link is noticed only by its
        TCP timeout, or when the station is back), when no connection was open at ``at``
        or neither its end nor a next one is known, and when connection events were dropped
        over the station's quota in that time (its end may be one of them)."""
        liveness = self.connection_liveness
        if liveness is None:
            return None
        found = await tx.station_events_by_time(station_id, "online", at, False, 1)
        made_text = found[0]["payload"].get("connected_at") if found else None
        if not isinstance(made_text, str):
            return None
        made = datetime.fromisoformat(made_text)
        # each end with whether the station closed the connection itself (its close frame
        # came first): then it was alive to its end, not a ping interval and timeout less
        ends = [(datetime.fromisoformat(str(e["ts"])),
                 e["payload"].get("closed_by_station") is True)
                for e in await tx.station_events_by_time(
                    station_id, "offline", made, True, CONNECTIONS_READ)
                if not e["payload"].get("superseded")
                and e["payload"].get("connected_at") == made_text][:1]
        ends += [(datetime.fromisoformat(str(e["ts"])), False)
                 for e in await tx.station_events_by_time(station_id, "online", made, True, 1)]
        if not ends:
            return None
        ended, to_its_end = min(ends)
        alive = ended if to_its_end else ended - liveness
        if alive - at <= self.time_future \
                or await _connections_dropped(tx, station_id, made, ended):
            return None
        return made, alive

    @staticmethod
    async def _bind_refused(tx: Tx, session: Session, tag: str, cover: Cover,
                            registered: IdTag | None) -> None:
        """The payer of ``session``, started on ``tag`` and refused (not Accepted), bound
        with the session's insert to the driver the card is linked to: nobody instead
        (``bind_no_payer``) when the refusal means the card was not the driver's to be
        charged for at the session's start, by a cause the driver cannot bring about after
        the station started - the card unlinked on chain at the start (``cover``: the
        chain's link history by block time against the station's start time; a card
        unlinked after it stays the driver's), or unknown, blocked or expired at the start
        in the operator's registry (:func:`registry_disowns`). A
        refusal of the escrow (a withdrawal announced, a balance or the day's limit too
        low, terms) or of a chain that could not be read keeps the driver as payer: the
        answer is judged when the start arrives, the driver may have been accepted
        (Authorize) and the station started on it, and the driver could announce a
        withdrawal then take it back to charge for free; the contract's own checks decide
        what the escrow pays when the session is settled. ``registered``: the tag's
        registry entry, as the unit read it."""
        assert session.id is not None
        if cover.card_unlinked_at(session.started_at) \
                or await disowned_at(tx, registered, session.started_at):
            await tx.bind_no_payer(session.id, tag)

    @staticmethod
    async def _bind_blocked_then(tx: Tx, session: Session, tag: str,
                                 registered: IdTag | None) -> None:
        """The payer of ``session``, started on ``tag`` and accepted by its registry entry
        now (``registered``), bound to nobody if the entry's status changed after the
        session's start and the card was blocked then (flagged ``blocked_at_start``): a
        thief's session on a card its driver had reported, sent by an offline station
        once the card was found and unblocked. Nothing is read unless the status changed
        after the start (:func:`status_changed_since`)."""
        assert session.id is not None
        if status_changed_since(registered, session.started_at) \
                and await disowned_at(tx, registered, session.started_at):
            session.flag(BLOCKED_AT_START)
            await tx.bind_no_payer(session.id, tag)

    async def covered(self, station_id: str, tag: str) -> bool:
        """Whether the escrow of the driver who linked ``tag`` covers a charge here (True
        for a tag linked to no driver, or without settlement on this node)."""
        return await self.refusal(station_id, tag) is None

    async def cover(self, station_id: str, tag: str | None, *, start: bool = False) -> Cover:
        """:meth:`covered`, to be confirmed (``Cover.holds``) in the unit that stores the
        session it is for: read from the chain here, outside any unit. For a session's
        ``start`` refused as the card is unlinked now, the history of the card's link is
        read too (only then: a rare refusal), for the unit to judge whether it was unlinked
        at the session's start (``Cover.card_unlinked_at``)."""
        if tag is None or self.credit is None:
            return Cover()
        decision = await self.credit.check(station_id, tag)
        if decision is not None and not decision.ok:
            log.info("= %s: %s may not charge: %s", station_id, tag, decision.reason)
        changes = None
        if start and decision is not None and not decision.ok and decision.card_unlinked:
            changes = await self.credit.link_changes(decision)
        return Cover(decision, self.credit, link_changes=changes)

    async def refusal(self, station_id: str, tag: str) -> str | None:
        """Why the driver who linked ``tag`` may not charge here, or None (:meth:`cover`'s
        check, not confirmed in a unit: nothing is stored on it)."""
        decision = (await self.cover(station_id, tag)).decision
        return None if decision is None or decision.ok else decision.reason


async def _connections_dropped(tx: Tx, station_id: str, after: datetime,
                               until: datetime) -> bool:
    """Whether the station's connection events were dropped over its quota in some time
    between ``after`` and ``until``: from its quota note of an hour to that hour's end
    (csms.service.quota; one note a clock hour, the latest ``CONNECTIONS_READ`` read)."""
    for note in await tx.list_station_events(station_id, "quota", CONNECTIONS_READ):
        if note["payload"].get("kind") != "connection":
            continue
        noted = datetime.fromisoformat(str(note["ts"]))
        hour_end = noted.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
        if noted <= until and hour_end > after:
            return True
    return False


def _signed_keys(session: Session, remote_start_id: Any) -> tuple[int | None, int]:
    """The remoteStartId and the connector a signed authorization for ``session`` is looked
    up by (:meth:`ChargingCore._bind_signed`)."""
    if not isinstance(remote_start_id, int) or isinstance(remote_start_id, bool) \
            or not -2**63 <= remote_start_id < 2**63:
        remote_start_id = None  # none, or none this central system could have sent
    # a start on no connector we can read (a hostile station's beyond 64 bits) binds only
    # an authorization whose remote start named none: -1 is no connector's
    return remote_start_id, session.connector_id if session.connector_id is not None else -1
