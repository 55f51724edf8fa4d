"""Use cases of charging sessions: 1.6 StartTransaction, StopTransaction and MeterValues,
2.0.1 TransactionEvent (offline replay deduplicated on seqNo), a session's running energy
and, when it completes, its billed energy and whether it is queued for settlement or
held (see :mod:`csms.service.billing`).

Every handler runs as one unit of work and returns only after its commit is durable.
Transaction messages are always acknowledged (DESIGN.md: an error makes the station
retry and finally drop the data): odd data is stored and flagged, never refused. Ingest
is idempotent: a 1.6 StartTransaction retry gets the transactionId of the first (dedupe
on station, connector, idTag, timestamp, meterStart) and a 2.0.1 TransactionEvent retry
is recognised by (station, transactionId, seqNo); a copy under that key that says
something else is recorded, and may hold the session (:mod:`csms.service.retries`).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Awaitable, Callable, Collection
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import quote

from csms.domain.energy import (
    Readings,
    billed_energy,
    counted_from_zero,
    energy_between,
    energy_flags,
    energy_of,
    implausible_times,
    lone_phase_readings,
    readings_outside,
    register_readings,
    start_claims,
    start_judged,
)
from csms.domain.maintenance import Reservation, ReservationState
from csms.domain.model import (
    BILLING_HOLD_FLAGS,
    OCPP16,
    OCPP201,
    AuthStatus,
    IdTag,
    MeterSample,
    Session,
    SessionStatus,
    Station,
    ValueNote,
    reused_transaction_id,
    shared_transaction_id,
)
from csms.domain.tariff import Tariff
from csms.metering import ocmf
from csms.service import defaults
from csms.service.billing import BillingState, billing_state, check_billing_transition
from csms.service.driver import MASTER_PASS_OPTION, RunningCost, priced, tariff_of
from csms.service.holds import (
    ENERGY_GREW_STEP_S,
    RESUMED,
    SILENT_GRACE_S,
    HoldError,
    notice_period,
)
from csms.service.limits import (
    EXPIRING_FLAG,
    LIMIT_FLAG,
    NOTICE_FLAG,
    OVERRUN_FLAG,
    REFUSED_FLAG,
    STOP_TAKEN,
    STOPPING_FLAGS,
    LimitReached,
    limit_overrun,
    limit_reached,
    notice_stop_at,
    stop_between_readings,
)
from csms.service.messages import StopInfo, TransactionEventIn
from csms.service.ports import Tx
from csms.service.remote_stops import (
    CHARGED_ON_FLAG,
    ENERGY_GRACE_S,
    STOP_ACCEPTED_FLAG,
    AcceptedStop,
    charged_on,
)
from csms.service.remote_stops import EVENT as REMOTE_STOP_EVENT
from csms.service.reservations import reservation_for_start
from csms.service.retries import APART, billed_readings, parts_differing
from csms.service.signed_data import SignedDataChecks
from csms.service.transactions import (
    REUSED,
    REUSED_LATER,
    SHARED,
    SHARED_WITH,
    current_session,
    running_under,
    session_on_evse,
)

__all__ = ["LimitReached", "SessionUseCases"]

log = logging.getLogger("csms.service")

# an unsigned start or stop beyond what the meter's signed readings and the station's power
# allow (csms.metering.ocmf.unsigned_beyond_signed): held
BEYOND_SIGNED = "signed_reading_exceeded"

# Energy notes that are normal for a version, not worth a flag: 2.0.1 has no
# meterStart/meterStop, so its readings always come from samples, signed or not.
_NORMAL_NOTES: dict[str | None, frozenset[str]] = {
    OCPP16: frozenset(),
    OCPP201: frozenset({"meter_start_from_samples", "meter_stop_from_samples",
                        "meter_start_from_signed", "meter_stop_from_signed"}),
}

# Another session of the station on the same EVSE ran within this one's time
# (SessionUseCases._overlaps): a hold flag.
OVERLAPS = "overlaps_session"
EVSE_UNKNOWN = "evse_unknown"  # completed on no EVSE: not compared, held
# an event (1.6: MeterValues) of a session's transactionId naming another EVSE (connector):
# kept apart, the session held
EVSE_MISMATCH = "evse_mismatch"

# A session closed without its stop (SessionUseCases._close): a hold flag, and the station
# event of its close; the event of its real stop, come while it was held (_reopen).
STOP_LOST = "stop_lost"
STOP_FOUND = "stop_found"
# how many of a station's latest closes are read for the one of a session whose real stop
# came (the flags its close added are lifted with it); one beyond them keeps those flags
# (held: the operator decides, nothing is billed unnoticed)
_CLOSES_READ = 1000
# how many of a station's latest stop answers of a kind (``remote_stop``, ``limit_stop``)
# are read for those of one session (_session_events)
_STOPS_READ = 100

# A session whose billed register has readings outside its time, its stop dated before
# them or a reading before its start (SessionUseCases._readings_outside): a hold flag, and
# the station event naming it
READINGS_OUTSIDE = "readings_outside_session"

# A session created before its Started event (``started_missing``) whose Started came
# later and named its start: no later event moves the start again (not a hold: the
# session is held for ``started_missing``).
STARTED_LATE = "started_late"

# A 1.6 StopTransaction for a session a stop completed already that is not that stop (another
# meterStop, time or idTag): a hold flag while the session is not settled, and the station
# event naming both stops (SessionUseCases._stop_differs)
STOP_DIFFERS = "stop_differs"
# A 2.0.1 TransactionEvent sent again under its seqNo saying something else than the first
# copy (SessionUseCases._retry_differs): the station event naming it, and a hold flag when
# the copies' readings of the billed register differ
SEQ_CONFLICT = "seq_conflict"
# the billed register's readings of each copy a ``seq_conflict`` event shows at most
_CONFLICT_READINGS = 10
# the billing states in which a session is not settled yet (csms.service.billing): not in a
# chunk with its sequence number, not rejected. A stop that differs holds it there
_UNSETTLED = frozenset({BillingState.QUEUED, BillingState.RELEASED, BillingState.HELD})

# A token first presented after the start of a 2.0.1 session started without one (or on a
# refused one) that is not its payer (presented to stop it, or refused:
# SessionUseCases._late_token): a flag (not a hold: the token pays nothing, the session's
# payer is as its start left it) and a station event
TOKEN_NOT_PAYER = "token_not_payer"

# Notes that only say what was assumed: a flag on the session, no event.
_QUIET_NOTES = frozenset({"time_offset_assumed"})


class SessionUseCases(SignedDataChecks):
    """Transactions of both versions: start, stop, meter values, events; a session's
    billed energy when it completes."""

    async def _resumed(self, tx: Tx, session: Session, action: str, *,
                       stalled_since: datetime | None = None) -> bool:
        """A driver's session in progress heard of again after a silence longer than
        :data:`SILENT_GRACE_S` (last written that long ago; ``action`` the message that
        brings it back, or the central system's own flag): it no longer counted against the
        driver's escrow, and counts again once written. Held at its completion
        (``resumed_after_silence``, csms.service.holds :data:`RESUMED`) only when it could
        take escrow another acceptance of the driver's was judged on: a session of the
        driver whose row the central system created, or an authorization of it accepted,
        after the silent one stopped counting (its last update plus the grace;
        ``accepted_for_driver``, whatever node accepted it: one database). Those settle
        first, the operator decides the late one. Nothing accepted meanwhile (an overnight
        session of a station that samples nothing, an outage's queued messages, with the
        driver charging nowhere else): billed as usual. The driver is locked first
        (``Tx.lock_driver``, as a coverage check locks it): an acceptance of the driver on
        another node is either seen here or judged with this session counted again. A
        ``resumed_after_silence`` station event says since when it was silent, whether it
        is held and what was accepted meanwhile. Whether it was heard of again after the
        grace (the caller writes it: the flag, if held, and its counting again). Judged on
        the session as the unit read it, before any write of it: no statement but for a
        session silent that long (a reading's unit gains none).

        ``stalled_since``: judged instead on when the session's energy last grew
        (:meth:`_stalled_counts_again`: a session written all along, its energy still)."""
        at = session.updated_at if stalled_since is None else stalled_since
        if at is None or session.status is not SessionStatus.ACTIVE or session.id is None \
                or RESUMED in session.flags:
            return False
        now = self.clock()
        silent = (now - at).total_seconds()
        if silent <= SILENT_GRACE_S:
            return False
        drivers = await tx.session_drivers(session.id)
        if not drivers:
            return False  # no escrow at stake: its silence freed none
        uncounted = at + timedelta(seconds=SILENT_GRACE_S)
        for driver in drivers:  # sorted: one order on every node
            await tx.lock_driver(driver)
        meanwhile = None
        for driver in drivers:
            meanwhile = await tx.accepted_for_driver(driver, uncounted, session.id)
            if meanwhile is not None:
                break
        held = meanwhile is not None
        if meanwhile is not None:
            session.flag(RESUMED)
            log.warning("! %s: session %s, silent since %s, written again (%s): held at its"
                        " completion (%s %s of its driver accepted at %s, after it stopped"
                        " counting)", session.station_id, session.id, at.isoformat(), action,
                        meanwhile["kind"], meanwhile["id"], meanwhile["accepted_at"])
        else:
            log.info("= %s: session %s, silent since %s, written again (%s): not held,"
                     " nothing of its driver accepted since it stopped counting",
                     session.station_id, session.id, at.isoformat(), action)
        await tx.add_station_event(session.station_id, RESUMED, {
            "session_id": session.id, "transaction_id": session.transaction_id,
            "action": action, "cause": "silent" if stalled_since is None else "no_energy",
            "silent_since": at.isoformat(), "silent_s": int(silent),
            "grace_s": SILENT_GRACE_S, "uncounted_since": uncounted.isoformat(),
            "held": held, "accepted_meanwhile": meanwhile}, now)
        return True

    def _stalled(self, session: Session) -> datetime | None:
        """When the energy of ``session`` in progress last grew, if longer ago than
        :data:`SILENT_GRACE_S`: since then plus the grace it has not counted against its
        driver's escrow (``driver_exposure``), however often its station wrote it."""
        since = session.energy_grew_at
        if since is None or session.status is not SessionStatus.ACTIVE \
                or (self.clock() - since).total_seconds() <= SILENT_GRACE_S:
            return None
        return since

    async def _stalled_counts_again(self, tx: Tx, session: Session, action: str) -> None:
        """``session``, in progress with no energy for longer than the grace (its station
        kept it alive with readings that never grow, or none: :meth:`_stalled`), is to
        count against its driver's escrow again (its energy grows, or it completes):
        judged as a session heard of again after a silence (:meth:`_resumed`), from when its
        energy last grew. Held at its completion when something of its driver's was
        accepted on the escrow it no longer held; not otherwise (an overnight session whose
        car was full, its driver charging nowhere else, is billed as usual)."""
        since = self._stalled(session)
        if since is not None:
            await self._resumed(tx, session, action, stalled_since=since)

    async def _energy_grew(self, tx: Tx, session: Session, before: int | None,
                           action: str) -> None:
        """A reading of ``session`` in progress, its energy ``before`` it: when the energy
        grew, the session counts against its driver's escrow from now on again
        (:meth:`_stalled_counts_again` first, for one that did not), ``energy_grew_at``
        now. Readings that never grow leave it as it was: a station cannot keep a session
        it delivers nothing on counted by writing it. Written again only once it is
        ``ENERGY_GREW_STEP_S`` old (a session that stalled is older than the grace)."""
        if (session.energy_wh or 0) <= (before or 0):
            return
        await self._grew(tx, session, action)

    async def _grew(self, tx: Tx, session: Session, action: str) -> None:
        """What ``session`` in progress costs grew now (its energy, :meth:`_energy_grew`, or
        its price by the minute below its limit, :meth:`_check_limit`): it counts against its
        driver's escrow again (:meth:`_stalled_counts_again`), ``energy_grew_at`` now (once
        that is ``ENERGY_GREW_STEP_S`` old)."""
        now = self.clock()
        grew = session.energy_grew_at
        if grew is not None and (now - grew).total_seconds() < ENERGY_GREW_STEP_S:
            return
        await self._stalled_counts_again(tx, session, action)
        session.energy_grew_at = now

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
        not_after = now + self.time_future
        bad = implausible_times(times, not_before, not_after)
        if not bad or "time_implausible" in session.flags:
            return
        session.flag("time_implausible")
        await tx.add_station_event(
            session.station_id, "time_implausible",
            {"session_id": session.id, "action": action,
             "times": [t.isoformat() for t in bad[:5]],
             "not_before": not_before.isoformat() if not_before else None,
             "not_after": not_after.isoformat()}, now)

    async def _late(self, tx: Tx, session: Session, action: str, samples: list[MeterSample],
                    notes: list[ValueNote], detail: dict[str, Any] | None = None,
                    stopped: datetime | None = None) -> None:
        """A message for a session that has ended. What was billed (or is queued to be)
        stays as the session was completed: its times, energy, token and the flags that
        hold it are not the station's to change afterwards. What the message carried is
        kept apart: its readings as the station's own (not the session's, whose readings
        are the settlement record's), and a ``late_data`` station event naming the session;
        the session is only marked ``late_samples`` (not a hold) when readings came.
        ``stopped``: the time of a stop the message carried. Data of a session closed
        without its stop after its close may hold another session (:meth:`_charged_on`)."""
        if samples:
            await tx.add_samples(
                session.station_id, samples, session_id=None, evse_id=session.evse_id,
                connector_id=session.connector_id, transaction_id=session.transaction_id)
        await tx.add_station_event(session.station_id, "late_data", {
            "session_id": session.id, "transaction_id": session.transaction_id,
            "action": action, "readings": len(samples),
            "times": sorted({s.timestamp.isoformat() for s in samples})[:5],
            "values_not_taken": [{"field": n.field, "value": n.value, "flag": n.flag}
                                 for n in notes[:10]],
            **(detail or {})}, self.clock())
        if samples and "late_samples" not in session.flags:
            session.flag("late_samples")
            await tx.update_session(session)
        if STOP_LOST in session.flags:
            await self._charged_on(tx, session, [s.timestamp for s in samples]
                                   + ([stopped] if stopped is not None else []))

    async def _charged_on(self, tx: Tx, session: Session, times: list[datetime]) -> None:
        """Readings (or a stop) of a session closed without its stop (``stop_lost``) after
        the time it was closed at: the station says it charged on, while another session may
        have been on its EVSE since. Each active such session is held (``overlaps_session``,
        an event naming both): the two are never both settled unnoticed. The closed one
        stays as it was closed (its readings are kept apart, :meth:`_late`), and a completed
        other stays as completed, as in :meth:`_overlaps`."""
        closed_at, evse = session.stopped_at, session.evse_id
        if closed_at is None or not evse or session.id is None:
            return
        latest = max((t for t in times if t > closed_at), default=None)
        if latest is None:
            return
        for other in await tx.sessions_on_evse(session.station_id, evse, latest, closed_at,
                                               session.id):
            if other.status is not SessionStatus.ACTIVE or OVERLAPS in other.flags:
                continue
            await self._resumed(tx, other, "overlaps_session")
            other.flag(OVERLAPS)
            await tx.update_session(other)
            log.warning("! %s: session %s closed at %s has data until %s while session %s"
                        " was on EVSE %s: %s held", session.station_id, session.id,
                        closed_at.isoformat(), latest.isoformat(), other.id, evse, other.id)
            await self._overlap_event(tx, other, session, None, latest)

    # -- sessions ------------------------------------------------------------
    async def _complete(self, tx: Tx, session: Session, samples: list[MeterSample]) -> None:
        """Compute the billed energy from all the session's data and queue settlement.

        Unsigned readings first (csms.domain.energy), then the meter's signed ones
        (OCMF), which win where the two differ by a unit factor or the station sent none;
        then plausibility; then its start, against the station's clock as its stop shows
        it (:meth:`_judge_start`). A session with any hold flag is not queued.
        """
        assert session.id is not None
        await self._stalled_counts_again(tx, session, "completed")
        before = billing_state(session)
        stored = await tx.energy_samples(session.id)
        data = stored if stored else samples
        station = await tx.get_station(session.station_id)
        # the total's readings, or where they give no start or stop, a lone phase's
        # register (csms.domain.energy ``billed_energy``): the readings every check below
        # reads, what the session is billed from
        found, result = billed_energy(
            data, session.reported_meter_start_wh, session.reported_meter_stop_wh,
            session.started_at, self._start_power_of(station),
        )
        if found.phase is not None:
            log.info("= %s: session %s billed from its only register, of phase %s",
                     session.station_id, session.id, found.phase)
        normal = _NORMAL_NOTES.get(session.ocpp_version, frozenset())
        flags = [f for f in result.flags if f not in normal]
        if not result.readings_decrease:  # only start/stop went backwards: decided below,
            flags = [f for f in flags if f != "meter_went_backwards"]  # once reconciled
        start, stop = result.meter_start_wh, result.meter_stop_wh
        # the sides a meter-signed reading settles (see below)
        settled: set[str] = set()
        signed = [s for s in data if s.signed]
        if signed:
            # Compare the meter's signed readings with the station's own readings of the
            # same moments (meterStart/meterStop or its Transaction.Begin/End samples);
            # a first/last periodic reading is no such reading. A start in dispute is
            # compared as the station named it (meterStart, else its first begin reading).
            anchored = {"reported", "context"}
            rec = await self._check_signed(
                tx, session, signed,
                result.claimed_start_wh if result.start_source in anchored else None,
                # the stop as the station named it (meterStop: counted to a lower end
                # reading where the two differ, end_readings_differ)
                session.reported_meter_stop_wh if result.stop_source == "reported"
                else stop if result.stop_source in anchored else None)
            for side, reading in (("start", rec.signed_begin), ("stop", rec.signed_end)):
                if reading is None:
                    continue  # no signed reading for this side: the station's stands
                settled.add(side)
                if side == "start":
                    start = rec.start_wh
                    # the meter signed the register at the start: unsigned begin readings
                    # that differ (a unit factor apart, KEBA; or from meterStart) no longer
                    # leave it unknown, nor hold the session as they did while it ran
                    flags = [f for f in flags if f != "begin_readings_differ"]
                    session.flags = [f for f in session.flags
                                     if f != "begin_readings_differ"]
                else:
                    stop = rec.stop_wh
                    # the meter signed the register at the stop: an unsigned end reading
                    # that differs from meterStop no longer leaves the stop unknown
                    flags = [f for f in flags if f != "end_readings_differ"]
                if f"meter_{side}_from_signed" in rec.flags:
                    flags = [f for f in flags if f not in (
                        f"meter_{side}_missing", f"meter_{side}_from_samples")]
            flags.extend(f for f in rec.flags if f not in normal)
        if result.stop_below_reading and "stop" not in settled:
            # a meterStop below the station's own readings of the register, which no
            # signed end reading of the meter settles: the register went backwards between
            # them (a 1.6 stop below a periodic reading, csms.domain.energy)
            flags.append("meter_went_backwards")
        energy = 0
        if start is not None and stop is not None:
            energy, problem = energy_between(start, stop)
            if problem:
                flags.append(problem)
        session.meter_start_wh, session.meter_stop_wh, session.energy_wh = start, stop, energy
        limit = station.power_limit_w(self.default_max_power_w) if station \
            else self.default_max_power_w
        if signed and settled != {"start", "stop"}:
            # a side the meter signed no reading of: the station's unsigned one stands, but
            # not beyond what the station's power delivers from (to) the meter's last
            # (first) signed reading (docs/settlement.md)
            beyond = ocmf.unsigned_beyond_signed(
                rec.readings, rec.signed_begin, rec.signed_end, start, stop,
                session.started_at, session.stopped_at, limit)
            if beyond:
                flags.append(BEYOND_SIGNED)
                await tx.add_station_event(
                    session.station_id, "billing_mismatch",
                    {"session_id": session.id, "beyond_signed": beyond}, self.clock())
        for f in flags:
            session.flag(f)
        for f in energy_flags(session.started_at, session.stopped_at, energy, limit):
            session.flag(f)
        await self._readings_outside(tx, session, found)
        # the tariff valid at its start, for a session with a driver's limit
        tariff = None if session.limit_minor is None \
            else await tx.find_tariff(session.station_id, session.started_at)
        self._overrun(session, found, tariff)
        now = self.clock()  # when the stop arrived
        if STOP_ACCEPTED_FLAG in session.flags:  # read for a remote-stopped session only
            await self._charged_after_stop(tx, session, limit, now, tariff)
        await self._judge_start(tx, session, station, now)
        await self._judge_before_authorization(tx, session, found, now, tariff)
        if (session.evse_id is None and energy > 0) \
                or (session.evse_id is not None and session.evse_id < 1):
            # a session on no EVSE (or 1.6 connector 0, the whole station) escapes the
            # comparison with the station's others: two drivers charged at once there
            # would both be billed. An honest station names the EVSE a car charged on
            # (1.6: connectorId > 0; 2.0.1 E01: evse in the first event after the EV is
            # connected, so a session that delivered energy has one)
            session.flag(EVSE_UNKNOWN)
        else:
            await self._overlaps(tx, session, session.stopped_at or session.started_at)
        session.status = SessionStatus.COMPLETED
        await tx.update_session(session)
        if station is not None and station.host_address is not None \
                and station.chain_station is not None:
            # paid to the host the station has now, held or not: a host set later (csms
            # stations set-host, an index of the operator's included) is paid only the
            # sessions that complete afterwards
            await tx.bind_host(session.id, station.host_address, station.chain_station)
        if not BILLING_HOLD_FLAGS.intersection(session.flags):
            check_billing_transition(before, BillingState.QUEUED)
            await tx.enqueue_settlement(session.id, now)
        else:
            check_billing_transition(before, BillingState.HELD)
            await tx.add_station_event(
                session.station_id, "billing_hold",
                {"session_id": session.id, "flags": session.flags,
                 "max_power_w": str(limit)}, now,
            )
        await self._session_event(tx, session.station_id, "session/completed", session)

    async def _accepted_stop(self, tx: Tx, session: Session) -> AcceptedStop | None:
        """The first accepted remote stop of ``session`` (its ``remote_stop`` station
        events), None when none is kept any more."""
        first: AcceptedStop | None = None
        for event in await _session_events(tx, session, REMOTE_STOP_EVENT):
            stop = AcceptedStop.of(event["payload"])
            if first is None or stop.accepted_at < first.accepted_at:
                first = stop
        return first

    async def _charged_after_stop(self, tx: Tx, session: Session, max_power_w: Decimal,
                                  now: datetime, tariff: Tariff | None) -> None:
        """Hold ``session``, completing after a remote stop its station accepted, when it
        charged on after it beyond the tolerance (csms.service.remote_stops
        :func:`charged_on`): flagged ``charged_after_remote_stop``, with a station event of
        that name giving the figures."""
        stop = await self._accepted_stop(tx, session)
        if stop is None:
            return
        if tariff is None:  # read for a session with a driver's limit only
            tariff = await tx.find_tariff(session.station_id, session.started_at)
        on = charged_on(stop, session, max_power_w, self.time_future,
                        tariff is None or tariff.per_minute > 0)
        if on is None:
            return
        session.flag(CHARGED_ON_FLAG)
        log.warning("! %s: session %s charged on after the remote stop it accepted at %s"
                    " (%d Wh after it, %d allowed; its stop dated %d s after it): held",
                    session.station_id, session.id, stop.accepted_at.isoformat(),
                    on.energy_after_wh, on.allowed_wh, on.stop_late_s)
        await tx.add_station_event(session.station_id, CHARGED_ON_FLAG, {
            "session_id": session.id, "transaction_id": session.transaction_id,
            **stop.payload(), "energy_wh": session.energy_wh,
            "energy_at_stop_wh": stop.energy_wh, "received_at": now.isoformat(),
            "stopped_at": None if session.stopped_at is None
            else session.stopped_at.isoformat(),
            "tolerance_s": int(self.time_future.total_seconds()), **on.payload()}, now)

    async def remote_stop_accepted(self, station_id: str, session_id: int,
                                   action: str) -> dict[str, Any]:
        """Record that ``station_id`` accepted the remote stop (``action``) of its session
        ``session_id``, still active (csms.service.remote_stops): a ``remote_stop`` station
        event with the time (this clock) and the session's energy then, the session
        flagged ``remote_stop_accepted``. What to add to the operator's answer: the
        session, and, when a stop of it was accepted more than ``ENERGY_GRACE_S`` ago
        already, that it is still charging."""

        async def work(tx: Tx) -> dict[str, Any]:
            now = self.clock()
            session = await tx.get_session(session_id)
            if session is None or session.station_id != station_id \
                    or session.status is not SessionStatus.ACTIVE:
                return {"session": session_id}  # ended meanwhile: nothing charges on
            out: dict[str, Any] = {"session": session_id}
            if STOP_ACCEPTED_FLAG in session.flags:
                first = await self._accepted_stop(tx, session)
                if first is not None and \
                        (now - first.accepted_at).total_seconds() > ENERGY_GRACE_S:
                    out["still_charging"] = True
                    out["stop_accepted_at"] = first.accepted_at.isoformat()
                    out["warning"] = (f"session {session_id} is still charging: {station_id}"
                                   f" accepted a stop of it at {first.accepted_at.isoformat()}"
                                   " (held at its completion if it charged on)")
            stop = AcceptedStop(now, session.energy_wh or 0, session.energy_grew_at)
            await tx.add_station_event(station_id, REMOTE_STOP_EVENT, {
                "session_id": session_id, "transaction_id": session.transaction_id,
                "action": action, **stop.payload()}, now)
            if STOP_ACCEPTED_FLAG not in session.flags:
                session.flag(STOP_ACCEPTED_FLAG)
                await tx.update_session(session)
                await self._session_event(tx, station_id, "session/updated", session)
            return out

        return await self.repo.unit(work)

    async def _readings_outside(self, tx: Tx, session: Session, found: Readings) -> None:
        """Hold a completing session whose billed register has readings outside its time
        (:func:`~csms.domain.energy.readings_outside`): a stop dated before its readings
        bills its driver for the EVSE's energy after it, which the next session there,
        started after that stop, is billed for as well and compared with nothing
        (:meth:`_overlaps` compares times); a reading dated before the start, the energy
        of the session before. A ``readings_outside_session`` station event gives its times
        and its readings' earliest and latest."""
        if session.stopped_at is None:
            return
        outside = readings_outside(found, session.started_at, session.stopped_at)
        if outside is None or READINGS_OUTSIDE in session.flags:
            return
        session.flag(READINGS_OUTSIDE)
        log.warning("! %s: session %s (%s to %s) has readings from %s to %s: held",
                    session.station_id, session.id, session.started_at.isoformat(),
                    session.stopped_at.isoformat(), outside[0].isoformat(),
                    outside[1].isoformat())
        await tx.add_station_event(session.station_id, READINGS_OUTSIDE, {
            "session_id": session.id, "transaction_id": session.transaction_id,
            "evse_id": session.evse_id, "started_at": session.started_at.isoformat(),
            "stopped_at": session.stopped_at.isoformat(),
            "earliest": outside[0].isoformat(), "latest": outside[1].isoformat()},
            self.clock())

    @staticmethod
    def _overrun(session: Session, found: Readings, tariff: Tariff | None) -> None:
        """Hold a session that ran far past its limit with no stop asked of it (a station
        that sent no reading to stop it at: csms.service.limits ``limit_overrun``);
        ``found``: the readings it is billed from; ``tariff``: the one valid at its start
        (None: no limit, or no tariff)."""
        if session.limit_minor is None:
            return
        over = None if tariff is None else limit_overrun(
            tariff, session, [(r[0], r[1]) for r in found.readings])
        if over is not None:
            session.flag(OVERRUN_FLAG)
            log.warning("! %s: session %s costs %d at its tariff, its limit is %d (margin %d)"
                        " and no stop was asked: held", session.station_id, session.id,
                        over[0], session.limit_minor, over[1])

    async def _overlaps(self, tx: Tx, session: Session, until: datetime) -> None:
        """Hold ``session`` (``overlaps_session``) when another session of its station on
        the same EVSE (a 1.6 connector: one vehicle at a time) ran within its time, from its
        start to ``until`` (its start, when it starts; its stop, when it completes): two
        drivers would be billed for the EVSE's same time. Checked at a session's start and
        completion, never per reading (the MeterValues path costs no statement more).

        Another session ran within that time when it stopped after the start, or, still
        active, started within it or has readings after the start. Not one whose readings
        ended before the start: a station that lost a StopTransaction (2.0.1: an Ended
        event) in a reboot starts anew on the EVSE, the earlier session left active without
        data since; its new session is billed, and the earlier one is closed at its last
        reading (:meth:`_close`: held, ``stop_lost``), in this unit, never left active. An
        active other session is held as well (when it completes: the one of the two that
        started later is never settled unnoticed, whichever completes first); a completed
        one stays as it was completed (its billing is settlement's). Each such pair is a
        station event of the flag's name, naming both sessions (the first pair found)."""
        evse = session.evse_id
        if not evse or session.id is None:
            return
        flagged = OVERLAPS in session.flags
        since = session.started_at
        until = max(until, since)
        for other in await tx.sessions_on_evse(session.station_id, evse, until, since,
                                               session.id):
            if other.id is None or (flagged and other.status is not SessionStatus.ACTIVE):
                continue
            end = other.stopped_at
            if other.status is SessionStatus.ACTIVE:
                end = await self._last_data(tx, other)
                if other.started_at < since and end <= since:
                    # no data since this session's start: its stop was lost
                    await self._close(tx, other, end, {
                        "cause": "new_session", "new_session_id": session.id,
                        "new_transaction_id": session.transaction_id,
                        "new_started_at": since.isoformat()})
                    continue
            if flagged:
                continue  # held already: one such session named is enough
            flagged = True
            session.flag(OVERLAPS)
            log.warning("! %s: session %s overlaps session %s on EVSE %s: held",
                        session.station_id, session.id, other.id, evse)
            await self._overlap_event(tx, session, other, until, end)
            if other.status is SessionStatus.ACTIVE and OVERLAPS not in other.flags:
                await self._resumed(tx, other, "overlaps_session")
                other.flag(OVERLAPS)
                await tx.update_session(other)

    async def _in_progress_bound(self, tx: Tx, session: Session) -> None:
        """Keep ``session``'s station at most ``max_connectors`` sessions in progress, the
        bound of the connectors it may have stored (csms.service.stations): a charger runs
        no more sessions at once than it has connectors. A station that starts sessions on
        ever new connector (EVSE) ids and never stops them (a broken or hostile one) would
        otherwise keep any number active: each read by the driver exposure of its tag, the
        limit checks and the console, and none ever settled or held. Its start is still
        answered and stored (DESIGN.md: transaction data is never refused); the station's
        sessions in progress beyond its newest ``max_connectors`` (one probe of an index
        per start: reading the newest rows whole was ~75 us a start, ~5% of a 1.6 message)
        are closed as sessions whose stop is lost (:meth:`_close`: at its last reading,
        held, ``stop_lost``, its real stop reopens it while it is undecided), cause
        ``sessions_in_progress``. A session's own EVSE is compared by :meth:`_overlaps`."""
        if session.id is None:
            return
        limit = self.max_connectors
        for other_id in await tx.sessions_in_progress_beyond(session.station_id, limit):
            other = await tx.get_session(other_id) if other_id != session.id else None
            if other is None or other.id is None:
                continue
            end = await self._last_data(tx, other)
            await self._close(tx, other, end, {
                "cause": "sessions_in_progress", "limit": limit,
                "new_session_id": session.id, "new_transaction_id": session.transaction_id})

    async def _overlap_event(self, tx: Tx, session: Session, other: Session,
                             until: datetime | None, other_until: datetime | None) -> None:
        """The ``overlaps_session`` station event of ``session``, held, and ``other``, on
        the same EVSE: each one's start and the end of the time compared (None: still
        running)."""
        await tx.add_station_event(session.station_id, OVERLAPS, {
            "session_id": session.id, "transaction_id": session.transaction_id,
            "other_session_id": other.id, "other_transaction_id": other.transaction_id,
            "evse_id": session.evse_id, "started_at": session.started_at.isoformat(),
            "until": until.isoformat() if until else None,
            "other_started_at": other.started_at.isoformat(),
            "other_until": other_until.isoformat() if other_until else None}, self.clock())

    @staticmethod
    async def _last_data(tx: Tx, session: Session) -> datetime:
        """When an active session last had data: its latest reading, else its start."""
        assert session.id is not None
        latest = await tx.latest_reading_at(session.id)
        return max(session.started_at, latest or session.started_at)

    async def _close(self, tx: Tx, session: Session, end: datetime,
                     detail: dict[str, Any]) -> None:
        """Complete an active session whose stop is not coming (a new session on its EVSE
        after its last reading, :meth:`_overlaps`; an operator's close): at ``end``, its
        last reading (its start when it has none), billed from its readings only as
        :meth:`_complete` computes it (no meterStop: never more than they show), and held
        (``stop_lost``) for the operator to release or reject. A ``stop_lost`` station
        event (``detail``: what closed it) names it, with the flags its close added: its
        real stop, if it comes while it is held, lifts them (:meth:`_reopen`)."""
        await self._resumed(tx, session, f"close:{detail.get('cause')}")
        before = set(session.flags)
        session.stopped_at = end
        session.flag(STOP_LOST)
        await self._complete(tx, session, [])
        added = [f for f in session.flags if f not in before]
        log.warning("! %s: session %s closed at %s without its stop (%s): held",
                    session.station_id, session.id, end.isoformat(), detail.get("cause"))
        await tx.add_station_event(session.station_id, STOP_LOST, {
            "session_id": session.id, "transaction_id": session.transaction_id,
            "evse_id": session.evse_id, "started_at": session.started_at.isoformat(),
            "stopped_at": end.isoformat(), "energy_wh": session.energy_wh,
            "flags_added": added, **detail}, self.clock())

    async def _reopen(self, tx: Tx, session: Session, action: str) -> bool:
        """Whether the station's stop of ``session``, a session closed without it
        (``stop_lost``, :meth:`_close`), is to complete it: only while it is held with no
        decision taken (not released, rejected nor settled: then the stop is late data,
        :meth:`_late`). Then it is active again for the stop to complete: ``stop_lost`` and
        the flags its close added are lifted (a stop the close did not have is no longer
        missing), a ``stop_found`` station event says what its close had billed."""
        if STOP_LOST not in session.flags or session.settlement_state is not None \
                or billing_state(session) != BillingState.HELD:
            return False
        check_billing_transition(BillingState.HELD, BillingState.ACTIVE)
        closes = await tx.list_station_events(session.station_id, STOP_LOST, _CLOSES_READ)
        added = next((set(e["payload"].get("flags_added") or ()) for e in closes
                      if e["payload"].get("session_id") == session.id), set())
        await tx.add_station_event(session.station_id, STOP_FOUND, {
            "session_id": session.id, "transaction_id": session.transaction_id,
            "action": action, "closed_at": session.stopped_at.isoformat()
            if session.stopped_at else None, "closed_energy_wh": session.energy_wh,
            "flags_lifted": sorted(added | {STOP_LOST})}, self.clock())
        session.flags = [f for f in session.flags if f != STOP_LOST and f not in added]
        session.status = SessionStatus.ACTIVE
        session.stopped_at = None
        return True

    async def close_session(self, session_id: int, *, actor: str,
                            reason: str | None) -> dict[str, Any]:
        """An operator closes an active session whose stop is not coming (``csms sessions
        close``): as a new session on its EVSE would (:meth:`_close`: at its last reading,
        billed from its readings, held for a release or rejection), audited
        (``sessions.close``, with ``reason``). What was closed, for the operator; a
        :class:`HoldError` (one line) for a session that is not there or not active."""

        async def work(tx: Tx) -> dict[str, Any]:
            session = await tx.get_session(session_id)
            if session is None or session.id is None:
                raise HoldError(f"no session {session_id}")
            if session.status is not SessionStatus.ACTIVE:
                raise HoldError(f"session {session_id} is not active"
                                f" (it is {billing_state(session)})")
            end = await self._last_data(tx, session)
            await self._close(tx, session, end,
                              {"cause": "operator", "actor": actor, "reason": reason})
            result = {"session_id": session.id, "stopped_at": end.isoformat(),
                      "energy_wh": session.energy_wh,
                      "holds": sorted(BILLING_HOLD_FLAGS.intersection(session.flags)),
                      "reason": reason}
            await tx.add_audit(actor, "sessions.close", str(session.id), {"reason": reason},
                               result, True, self.clock())
            return result

        return await self.repo.unit(work)

    def _start_power_of(self, station: Station | None) -> Decimal:
        """:meth:`Station.start_power_w` of ``station`` (the default for none)."""
        default = self.default_max_power_w
        return default if station is None else station.start_power_w(default)

    async def _start_power(self, tx: Tx, session: Session, found: Readings) -> Decimal:
        """The power a start of 0 of ``session`` is judged a placeholder by
        (:meth:`Station.start_power_w`) for a message's readings ``found``: the station is read
        only where they may be judged so (:func:`~csms.domain.energy.start_judged`), not
        for every reading of every session. The reported start (1.6's meterStart) is
        judged only by a message with begin readings (:meth:`_start_in_dispute` reads no
        further without them): a 2.0.1 session never has one, and its periodic
        readings, counted from a running start that is not 0, read no station row."""
        if not (start_judged(found, session.meter_start_wh)
                or (found.begins
                    and start_judged(found, session.reported_meter_start_wh))):
            return self.default_max_power_w
        return self._start_power_of(await tx.get_station(session.station_id))

    @staticmethod
    def _running_energy(session: Session, found: Readings, power_w: Decimal,
                        lone: Readings | None = None) -> None:
        """Keep ``energy_wh`` of an active session current (for the API), never billing,
        from the register ``found`` in a message's samples (read before its unit);
        ``power_w``: :meth:`_start_power`. ``lone``: the message's register readings when
        its only register is of one phase (:func:`~csms.domain.energy.lone_phase_readings`:
        then ``found`` has none), its energy counted as well."""
        if lone is not None:
            # a single-phase charger's register tagged "L1-N" (lbbrhzn/ocpp#442): the
            # numbers only, raising the running energy (what the driver's limit is checked
            # against). Its flags are not the session's: the stop bills meterStop less
            # meterStart, from the total the session's samples give
            read = energy_of(lone, session.meter_start_wh, None, session.started_at, power_w)
            if session.meter_start_wh is None and read.meter_start_wh is not None:
                # a session without a start (2.0.1 has no meterStart) whose only register
                # is that phase's: its first reading (its Transaction.Begin one, if sent)
                # is the running start, as a total's is below. Kept only while it runs:
                # without it each message counted from its own first reading (0 for one
                # reading a message) and the driver's limit was never reached
                session.meter_start_wh = read.meter_start_wh
            if read.meter_start_wh is not None and read.meter_stop_wh is not None \
                    and "meter_went_backwards" not in read.flags:
                session.energy_wh = max(session.energy_wh or 0, read.energy_wh)
        # its start and the reading it stands at, not the energy between them (worked out
        # below from the running start)
        result = energy_of(found, session.meter_start_wh, None, session.started_at, power_w,
                           between=False)
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
        # readings far below every start claimed, that a register counting each session
        # from 0 shows (a Grizzl-E beside its lifetime meterStart), of the total or of a
        # lone phase: the session's energy while it runs, what its driver's limit is
        # checked against. The stop bills meterStop less meterStart; never counted lower
        # than the readings above give
        starts = (session.meter_start_wh, session.reported_meter_start_wh)
        for readings in (found,) if lone is None else (found, lone):
            counted = counted_from_zero(readings, starts, session.started_at, power_w)
            if counted is not None:
                session.energy_wh = max(session.energy_wh or 0, counted)

    async def _count_readings(self, tx: Tx, session: Session, found: Readings,
                              lone: Readings | None, action: str) -> None:
        """A message's register readings ``found`` (``lone``: its only register's, of one
        phase, which stand for them) counted into ``session`` in progress: its start judged
        (:meth:`_start_in_dispute`), its running energy (:meth:`_running_energy`) and when
        that last grew (:meth:`_energy_grew`)."""
        power = await self._start_power(tx, session, found if lone is None else lone)
        await self._start_in_dispute(tx, session, found, power)
        grown_from = session.energy_wh
        self._running_energy(session, found, power, lone)
        await self._energy_grew(tx, session, grown_from, action)

    @staticmethod
    async def _start_in_dispute(tx: Tx, session: Session, found: Readings,
                                power_w: Decimal) -> None:
        """Hold an active session whose start is in dispute as soon as a message brings the
        begin reading that puts it there (``begin_readings_differ``, as :meth:`_complete`
        would, csms.domain.energy), and count its running energy (what the driver is shown,
        what their limit is checked against) from the highest start claimed: lowered if it
        was counted from a lower one. Called before :meth:`_running_energy` counts the
        message's readings from the start it leaves.

        The session's running start (``meter_start_wh``) is kept at its begin readings' one
        value once one came (meterStart, or none, until then): a message whose begin
        readings of the billed register are that value is read no further (a Growatt
        repeats its begin reading, meterStart's, in every frame). One that brings another
        value has the session's stored readings read, its own among them (none for a 2.0.1
        session's first readings): the start in dispute, or the running start moved to the
        begin reading (within meterStart's resolution of it, else it is a dispute). A
        meter-signed begin reading settles the start once the session completes and its
        signature is checked: the hold is lifted then."""
        if not found.begins or session.id is None:
            return
        known = session.meter_start_wh
        reported = session.reported_meter_start_wh
        # a begin reading of 0 beside a meterStart that is not: a value not read, no start,
        # nor a reason to read the session's readings again
        values = {wh for wh, _ in start_claims(found.begins, reported)}
        if not values:
            return
        if "begin_readings_differ" in session.flags:
            highest = max(values)  # in dispute already: the highest start counts
            if known is not None and highest > known:
                session.meter_start_wh = highest
                if session.energy_wh is not None:  # counted from a lower start: less
                    session.energy_wh = max(0, int(session.energy_wh - (highest - known)))
            return
        if known is not None and values == {known}:
            return
        if known is not None or reported is not None:
            found = register_readings(await tx.energy_samples(session.id))
        # else the session's first register readings: there are none stored before them
        result = energy_of(found, reported, None, session.started_at, power_w)
        start = result.meter_start_wh
        if "begin_readings_differ" in result.flags:
            session.flag("begin_readings_differ")
            log.warning("! %s: session %s: the register at its start is in dispute"
                        " (meterStart %s, begin readings %s): held", session.station_id,
                        session.id, session.reported_meter_start_wh,
                        sorted({str(wh) for wh, _ in found.begins}))
        elif result.start_source == "reported":  # within meterStart's resolution of it
            start = next((wh for wh, _ in start_claims(found.begins, start)), start)
        if "meter_start_placeholder" in result.flags:
            session.flag("meter_start_placeholder")
        if start is not None and start != known:
            # counted from the start as all the readings give it
            session.meter_start_wh = start
            if result.meter_stop_wh is not None:
                session.energy_wh = max(0, int(result.meter_stop_wh - start))

    async def _previous_reading(self, tx: Tx, session: Session) -> tuple[datetime, int] | None:
        """The time and energy of the session's latest reading (its start when it has
        none), read before a new one is stored, for its limit; None (and no read) for a
        session without a limit or already being stopped (at its limit, or its driver's
        signature expiring)."""
        if session.limit_minor is None or session.id is None \
                or any(f in session.flags for f in STOPPING_FLAGS):
            return None
        at = await tx.latest_reading_at(session.id)
        return (at or session.started_at), max(0, int(session.energy_wh or 0))

    async def _check_limit(self, tx: Tx, session: Session, previous: tuple[datetime, int] | None,
                           samples: list[MeterSample], action: str = "MeterValues"
                           ) -> LimitReached | None:
        """Whether the session, its energy updated with ``samples``, is to be stopped at what
        its driver pays (csms.service.limits): if so, once, it is flagged ``limit_reached``
        (stored by the caller's update) and a ``limit_reached`` station event names it."""
        if previous is None:
            return None
        tariff = await tx.find_tariff(session.station_id, session.started_at)
        if tariff is None:
            return None
        now = self.clock()
        reading_at = max((s.timestamp for s in samples), default=previous[0])
        reached = limit_reached(tariff, session, now, previous, reading_at)
        if reached is None:
            if tariff.per_minute > 0 and not any(f in session.flags for f in STOPPING_FLAGS):
                # priced by the minute, below its limit: its price grows while it runs,
                # energy or not (a car left plugged in, full). Counted against its driver's
                # escrow as a session whose energy grows: its driver does not spend
                # elsewhere what its parking runs up. No longer once its stop was asked
                # (at its limit, its notice or its signature's expiry): a station that keeps
                # it alive then keeps it counted no longer than the grace (SILENT_GRACE_S)
                await self._grew(tx, session, action)
            return None
        await self._stopping(tx, session, reached, tariff)
        return reached

    async def _stopping(self, tx: Tx, session: Session, reached: LimitReached,
                        tariff: Tariff | None, expiry: int | None = None,
                        notice_s: int | None = None) -> None:
        """Flag ``session``, to be stopped, with why (``reached.reason``: ``limit_reached``,
        ``authorization_expiring``, ``expiry`` its signature's, or ``notice_ending``,
        ``notice_s`` the contract's notice period) and name it in a station event of that
        name (stored by the caller's update)."""
        now = self.clock()
        session.flag(reached.reason)
        if reached.reason == EXPIRING_FLAG:
            log.info("= %s: the driver's signature for session %s expires at %s: stopping it",
                     session.station_id, session.id, expiry)
            await tx.add_station_event(session.station_id, EXPIRING_FLAG, {
                "session_id": session.id, "transaction_id": session.transaction_id,
                "expiry": expiry, "stop_ahead_s": defaults.SIGNED_STOP_AHEAD}, now)
            return
        if reached.reason == NOTICE_FLAG:
            log.info("= %s: session %s has charged nearly the driver's notice period (%s s):"
                     " stopping it, to be settled before a withdrawal announced at its start"
                     " can be made", session.station_id, session.id, notice_s)
            await tx.add_station_event(session.station_id, NOTICE_FLAG, {
                "session_id": session.id, "transaction_id": session.transaction_id,
                "notice_s": notice_s, "stop_ahead_s": defaults.NOTICE_STOP_AHEAD}, now)
            return
        log.info("= %s: session %s reached its driver's limit (%d + %d of %d): stopping it",
                 session.station_id, session.id, reached.price_minor, reached.margin_minor,
                 reached.limit_minor)
        await tx.add_station_event(session.station_id, LIMIT_FLAG, {
            "session_id": session.id, "transaction_id": session.transaction_id,
            "limit_minor": reached.limit_minor, "price_minor": reached.price_minor,
            "margin_minor": reached.margin_minor,
            "currency": tariff.currency if tariff else None}, now)

    async def _stop_again(self, tx: Tx, session: Session) -> LimitReached | None:
        """The stop to ask again of ``session``, being stopped and still charging: None
        once a stop of it was accepted, or while one was asked less than
        ``defaults.LIMIT_STOP_AGAIN`` seconds ago (from this node, or answered on any:
        its ``limit_stop`` events). Asked again, it carries no price (0 and 0)."""
        assert session.id is not None and session.limit_minor is not None
        now = self.clock()
        since = now - timedelta(seconds=defaults.LIMIT_STOP_AGAIN)
        asked = self._limit_asks.get(session.id)
        if asked is not None and asked > since:
            return None
        for event in await _session_events(tx, session, "limit_stop"):
            answer = event["payload"]
            if answer.get("status") == "Accepted":
                self._limit_asks[session.id] = STOP_TAKEN
                return None
            if datetime.fromisoformat(event["ts"]) > since:
                return None
        reason = next(f for f in STOPPING_FLAGS if f in session.flags)
        log.info("= %s: session %s still charging: its stop asked again", session.station_id,
                 session.id)
        return LimitReached(session.id, session.transaction_id, session.limit_minor, 0, 0,
                            reason)

    def _stop_asked(self, reached: LimitReached | None) -> LimitReached | None:
        """Remember when the stop of a session was asked from here (see :meth:`_stop_again`),
        once the unit that decided it is stored."""
        if reached is not None:
            self._limit_asks[reached.session_id] = self.clock()
        return reached

    async def limits_due(self, node: str, connected: Collection[str]
                         ) -> tuple[list[int], list[tuple[str, LimitReached]]]:
        """The node's check between readings (csms.service.limits): of the active sessions
        with a limit of the stations ``connected`` to ``node``, those to be stopped now,
        with their stations - at their limit, their signature's expiry or the end of their
        driver's notice counted from their start (:func:`notice_stop_at`) within the next
        ``defaults.LIMIT_CHECK_SECONDS`` (flagged and named in a station event here), or
        being stopped and to be asked again - and the ids of the sessions looked at. Reads
        sessions without a limit not at all, and the chain never: the notice period is the
        one the settlement worker keeps in the ledger values."""
        now = self.clock()
        ahead = defaults.LIMIT_CHECK_SECONDS
        Due = tuple[LimitReached, Tariff | None, int | None]
        notice: int | None = None

        async def look(tx: Tx) -> tuple[list[int], list[tuple[str, LimitReached]], list[Due]]:
            nonlocal notice
            looked: list[int] = []
            again: list[tuple[str, LimitReached]] = []
            due: list[Due] = []
            sessions = await tx.limited_sessions(node)
            if sessions:
                notice = await notice_period(tx)
            for session, expiry in sessions:
                if session.station_id not in connected or session.id is None:
                    continue
                looked.append(session.id)
                if any(f in session.flags for f in STOPPING_FLAGS):
                    reached = await self._stop_again(tx, session)
                    if reached is not None:
                        again.append((session.station_id, reached))
                    continue
                tariff = await tx.find_tariff(session.station_id, session.started_at)
                reached = stop_between_readings(
                    tariff, session, now, ahead, expiry, defaults.SIGNED_STOP_AHEAD,
                    notice_stop_at(session, notice, defaults.NOTICE_STOP_AHEAD))
                if reached is not None:
                    due.append((reached, tariff, expiry))
            return looked, again, due

        async def stop(tx: Tx) -> list[tuple[str, LimitReached]]:
            out = []
            for reached, tariff, expiry in due:
                session = await tx.get_session(reached.session_id)
                if session is None or session.status is not SessionStatus.ACTIVE \
                        or any(f in session.flags for f in STOPPING_FLAGS):
                    continue  # ended or stopped at a reading meanwhile
                await self._resumed(tx, session, reached.reason)
                await self._stopping(tx, session, reached, tariff, expiry, notice)
                await tx.update_session(session)
                await self._session_event(tx, session.station_id, "session/updated", session)
                out.append((session.station_id, reached))
            return out

        looked, again, due = await self.repo.read(look)
        if due:
            again += await self.repo.unit(stop)
        for _, reached in again:
            self._stop_asked(reached)
        seen = set(looked)
        for session_id in [k for k, at in self._limit_asks.items()
                           if k not in seen and (at is STOP_TAKEN or at <= now - timedelta(
                               seconds=defaults.LIMIT_STOP_AGAIN))]:
            del self._limit_asks[session_id]  # ended, or its station elsewhere
        return looked, again

    async def limit_stop_answered(self, station_id: str, reached: LimitReached,
                                  action: str, answer: dict[str, Any] | None) -> None:
        """Keep the station's answer to the stop asked at the session's limit (a
        ``limit_stop`` station event; ``none``: offline, no answer or a CALLERROR); a stop
        it did not accept holds the session, unless it has ended meanwhile, for the
        operator (``limit_stop_refused``)."""
        status = "none" if answer is None else str(answer.get("status", "?"))[:40]
        if status != "Accepted":
            log.warning("! %s did not stop session %s at its driver's limit: %s", station_id,
                        reached.session_id, status)

        async def work(tx: Tx) -> None:
            now = self.clock()
            await tx.add_station_event(station_id, "limit_stop", {
                "session_id": reached.session_id, "transaction_id": reached.transaction_id,
                "action": action, "status": status, "reason": reached.reason}, now)
            if status == "Accepted":
                self._limit_asks[reached.session_id] = STOP_TAKEN
                return
            session = await tx.get_session(reached.session_id)
            if session is None or session.status is not SessionStatus.ACTIVE \
                    or REFUSED_FLAG in session.flags:
                return  # ended meanwhile: the station had nothing left to stop
            await self._resumed(tx, session, REFUSED_FLAG)
            session.flag(REFUSED_FLAG)
            await tx.update_session(session)
            await self._session_event(tx, station_id, "session/updated", session)

        await self.repo.unit(work)

    async def _evse_mismatch(self, tx: Tx, session: Session, ev: TransactionEventIn, *,
                             keep_samples: bool = True) -> None:
        """A 2.0.1 event of ``session``'s transactionId naming another EVSE than the
        session's (a station numbering its transactions per EVSE: two drivers' transactions
        under one id): kept apart (:meth:`_kept_apart`), the event's type, seqNo, time and
        token in its station event. Its seqNo is not taken: the session's own event of that
        number is no retry of it. An event named in no EVSE while several transactions
        under its id run (:func:`running_under`) is each one's such event; its readings are
        kept once (``keep_samples`` for the first)."""
        await self._kept_apart(
            tx, session, ev.transaction_id, ev.evse_id, ev.connector_id,
            ev.samples, ev.notes, {
                "event_type": ev.event_type, "trigger_reason": ev.trigger_reason,
                "seq_no": ev.seq_no, "timestamp": ev.timestamp.isoformat(),
                "id_tag": ev.id_tag, "stopped_reason": ev.stopped_reason},
            keep_samples=keep_samples)

    async def _kept_apart(self, tx: Tx, session: Session, transaction_id: str,
                          evse_id: int | None, connector_id: int | None,
                          samples: list[MeterSample], notes: list[ValueNote],
                          detail: dict[str, Any], *, keep_samples: bool = True) -> None:
        """A message of ``session``'s transactionId naming another EVSE (1.6 connector) than
        the session's: a 2.0.1 event (:meth:`_evse_mismatch`), a 1.6 MeterValues. Nothing
        of it is the session's: its readings are kept as the station's own (no session,
        the EVSE and connector it named), and an ``evse_mismatch`` station event keeps the
        rest (``detail``) for the operator. An active session is held (``evse_mismatch``):
        its driver is never billed for what another EVSE delivered (nor is its limit
        reached on it), nor is the other EVSE's transaction billed to anyone unseen; a
        completed one stays as it was completed (its billing is settlement's, as for late
        data). ``keep_samples``: False for readings kept already (by another session's such
        event of the same message)."""
        if samples and keep_samples:
            await tx.add_samples(
                session.station_id, samples, session_id=None, evse_id=evse_id,
                connector_id=connector_id, transaction_id=transaction_id)
        resumed = await self._resumed(tx, session,
                                      str(detail.get("action") or "TransactionEvent"))
        if session.status is SessionStatus.ACTIVE and EVSE_MISMATCH not in session.flags:
            session.flag(EVSE_MISMATCH)
            await tx.update_session(session)
            log.warning("! %s: transaction %s of session %s on EVSE %s has data on EVSE"
                        " %s: held", session.station_id, transaction_id, session.id,
                        session.evse_id, evse_id)
        elif resumed:
            await tx.update_session(session)
        await tx.add_station_event(session.station_id, EVSE_MISMATCH, {
            "session_id": session.id, "transaction_id": transaction_id,
            "evse_id": session.evse_id, "event_evse_id": evse_id,
            "event_connector_id": connector_id, **detail, "readings": len(samples),
            "times": sorted({s.timestamp.isoformat() for s in samples})[:5],
            "values_not_taken": [{"field": n.field, "value": n.value, "flag": n.flag}
                                 for n in notes[:10]]}, self.clock())

    async def _id_reused(self, tx: Tx, ended: Session, session: Session) -> None:
        """``session`` started under the transactionId of ``ended``, which had ended before
        it (a station whose transaction counter restarted): stored under an id of its own
        (:func:`reused_transaction_id`), held (``reused_transaction_id``) for the operator
        to release, ``ended`` marked as followed by it and ``session`` kept as the latest
        under the id (:func:`current_session` finds it there). What ``ended`` billed stays
        as it was."""
        assert session.id is not None
        ended.flag(REUSED_LATER)
        await tx.update_session(ended)
        await tx.set_latest_reuse(session.station_id, session.station_transaction_id,
                                  session.id)
        log.warning("! %s: transaction %s started again after session %s ended: session %s,"
                    " held", session.station_id, session.station_transaction_id, ended.id,
                    session.id)
        await tx.add_station_event(session.station_id, REUSED, {
            "session_id": session.id, "transaction_id": session.station_transaction_id,
            "stored_as": session.transaction_id, "started_at": session.started_at.isoformat(),
            "ended_session_id": ended.id, "ended_stopped_at": ended.stopped_at.isoformat()
            if ended.stopped_at else None}, self.clock())

    async def _id_shared(self, tx: Tx, beside: Session, session: Session) -> None:
        """``session`` started under the transactionId of ``beside``, on another EVSE (a
        station numbering its transactions per EVSE): stored under an id of its own
        (:func:`shared_transaction_id`), held (``shared_transaction_id``) for the operator to
        release, ``beside`` marked (``transaction_id_shared``, not a hold: what it bills is
        its own EVSE's, and its events naming no EVSE while both run are kept apart) and a
        station event of the hold's name naming both."""
        assert session.id is not None
        resumed = await self._resumed(tx, beside, "TransactionEvent")
        if SHARED_WITH not in beside.flags or resumed:
            beside.flag(SHARED_WITH)
            await tx.update_session(beside)
        log.warning("! %s: transaction %s started on EVSE %s while session %s of it is on EVSE"
                    " %s: session %s, held", session.station_id,
                    session.station_transaction_id, session.evse_id, beside.id,
                    beside.evse_id, session.id)
        await tx.add_station_event(session.station_id, SHARED, {
            "session_id": session.id, "transaction_id": session.station_transaction_id,
            "stored_as": session.transaction_id, "evse_id": session.evse_id,
            "started_at": session.started_at.isoformat(), "beside_session_id": beside.id,
            "beside_evse_id": beside.evse_id, "beside_status": beside.status.value},
            self.clock())

    async def _takes_over(self, tx: Tx, session: Session, ev: TransactionEventIn,
                          auth: AuthStatus | None, master: bool,
                          covered: Callable[[Tx], Awaitable[bool]]) -> bool:
        """Whether the event's token becomes the payer of a 2.0.1 session whose token was
        refused (E02/E05: a transaction started at plug-in, a card refused, then another
        presented and accepted), or that started without one (E03: its token presented in
        a later event): only a token accepted as a first one would be (the escrow covers
        it, ``covered``) or one of an app session (unknown to the registry, a driver's
        signed authorization waiting for it: :meth:`_bind_signed` binds it), presented to
        authorize (not to stop), not the master pass's (``master``), in place of a refused
        one or of none (an accepted payer is never replaced). The token refused NoCredit
        presented again once its escrow covers the charge (a driver who topped it up) takes
        the session as another would: it was its payer all along (:meth:`_bind_refused`),
        and refused for good its driver could charge only by unplugging."""
        return (session.id_tag != ev.id_tag
                or session.auth_status == AuthStatus.NO_CREDIT.value) \
            and session.auth_status != AuthStatus.ACCEPTED.value \
            and "master_pass_start" not in session.flags \
            and ev.id_tag is not None and not _stops(ev) and not master \
            and (auth is AuthStatus.ACCEPTED or (
                auth is AuthStatus.UNKNOWN and await self._signed_waiting(
                    tx, session.station_id, ev.id_tag, session, ev.remote_start_id))) \
            and await covered(tx)

    async def _late_token(self, tx: Tx, session: Session, ev: TransactionEventIn,
                          auth: AuthStatus | None, covered: Callable[[Tx], Awaitable[bool]],
                          registered: IdTag | None) -> AuthStatus | None:
        """The answer to a token first presented after the start of a 2.0.1 session that
        started without one, or whose token was refused, and does not take it over
        (:meth:`_takes_over`): presented to stop it (an Ended or StopAuthorized event: whose
        session it stops is not known, a station could name any card to have its driver
        pay for a charge nobody authorized), refused by the registry, or by the driver's
        escrow. It is neither the session's token nor its payer: nobody pays for it (a
        session that never had a token has none; a refused token's is as its refusal left
        it, :meth:`_bind_refused`). The session is flagged ``token_not_payer`` (not a
        hold), a station event of that name says which token and why. A token the registry
        accepts whose escrow does not cover a charge, presented to authorize, is answered
        NoCredit (the station does not charge on it: answered Accepted, it would charge
        with nobody to pay). A master pass presented to stop (C16: it stops any
        transaction, owns none) is none of this: nothing is recorded of it here.
        ``registered``: the token's registry entry, as the unit read it."""
        if _stops(ev) and await self._master_pass(tx, registered):
            return auth
        why = "presented_to_stop" if _stops(ev) \
            else auth.value if auth is not None and auth is not AuthStatus.ACCEPTED \
            else None
        if why is None:
            if not await covered(tx):
                auth, why = AuthStatus.NO_CREDIT, AuthStatus.NO_CREDIT.value
            else:
                why = "not_taken"
        session.flag(TOKEN_NOT_PAYER)
        log.warning("! %s: token %s first presented in a %s event (%s) of transaction %s,"
                    " started without one: not its payer (%s)", session.station_id,
                    ev.id_tag, ev.event_type, ev.trigger_reason, ev.transaction_id, why)
        await tx.add_station_event(session.station_id, TOKEN_NOT_PAYER, {
            "session_id": session.id, "transaction_id": ev.transaction_id,
            "tag": ev.id_tag, "reason": why, "event_type": ev.event_type,
            "trigger_reason": ev.trigger_reason, "seq_no": ev.seq_no,
            "timestamp": ev.timestamp.isoformat()}, self.clock())
        return auth

    async def _token_replaced(self, tx: Tx, session: Session, tag: str) -> None:
        """The refused token of ``session`` gives way to ``tag``, accepted (:meth:`_takes_over`):
        the flag of its refusal is lifted (the session's token is ``tag`` now), a
        ``token_replaced`` station event names both."""
        await tx.add_station_event(session.station_id, "token_replaced", {
            "session_id": session.id, "transaction_id": session.transaction_id,
            "refused_tag": session.id_tag, "refused_status": session.auth_status,
            "tag": tag}, self.clock())
        session.flags = [f for f in session.flags if not f.startswith("auth_")]

    @staticmethod
    async def _stopped_by(tx: Tx, session: Session, stop: StopInfo) -> bool:
        """Whether ``stop`` is the 1.6 StopTransaction that completed ``session``: the same
        time, meterStop and idTag (its key, :func:`_stop_key`); for a session completed
        before stops' keys were kept, the same time and meterStop (its idTag was not
        kept)."""
        assert session.id is not None
        kept = await tx.stop_key(session.id)
        if kept is not None:
            return kept == _stop_key(session.transaction_id, stop)
        return session.stopped_at == stop.timestamp \
            and session.reported_meter_stop_wh == stop.meter_stop_wh

    @staticmethod
    async def _hold_unsettled(tx: Tx, session: Session, state: str, flag: str,
                              now: datetime) -> None:
        """Hold ``session`` for ``flag``, in billing state ``state``: active (flagged, held
        when it completes) or not settled yet (:data:`_UNSETTLED`: a queued one leaves the
        queue, a release is used up, as the worker's holds do; a ``billing_hold`` station
        event names it). Nothing for a session held or active with ``flag`` already."""
        assert session.id is not None
        if flag in session.flags and state in (BillingState.ACTIVE, BillingState.HELD):
            return
        if state not in (BillingState.ACTIVE, BillingState.HELD):
            check_billing_transition(state, BillingState.HELD)
            await tx.dequeue_settlement(session.id)
            session.flags = [f for f in session.flags if f != BillingState.RELEASED]
        session.flag(flag)
        await tx.update_session(session)
        if state != BillingState.ACTIVE:
            await tx.add_station_event(session.station_id, "billing_hold", {
                "session_id": session.id, "flags": session.flags}, now)

    async def _stop_differs(self, tx: Tx, session: Session, stop: StopInfo) -> None:
        """A 1.6 StopTransaction for ``session``, completed by another stop (a station that
        stops twice, or corrects its stop; a hostile one that bills more): nothing of it is
        the session's (its times, energy and payer stay as the first stop completed them),
        its readings are kept as the station's (no session) and a ``stop_differs`` station
        event names both stops. A session not settled yet (queued, released or held: not in
        a chunk, not rejected) is held (``stop_differs``) for the operator to release on the
        first stop or reject: a queued one leaves the queue, a release is used up (as the
        worker's holds do). One in a chunk or rejected is past changing: the event only."""
        assert session.id is not None
        now = self.clock()
        if stop.samples:
            await tx.add_samples(
                session.station_id, stop.samples, session_id=None, evse_id=session.evse_id,
                connector_id=session.connector_id, transaction_id=session.transaction_id)
        state = billing_state(session)
        held = state in _UNSETTLED
        if held:
            await self._hold_unsettled(tx, session, state, STOP_DIFFERS, now)
        log.warning("! %s: session %s stopped at %s (meterStop %s) has another stop at %s"
                    " (meterStop %s): %s", session.station_id, session.id,
                    session.stopped_at.isoformat() if session.stopped_at else None,
                    session.reported_meter_stop_wh, stop.timestamp.isoformat(),
                    stop.meter_stop_wh, "held" if held else f"kept ({state})")
        kept = await tx.stop_key(session.id)
        await tx.add_station_event(session.station_id, STOP_DIFFERS, {
            "session_id": session.id, "transaction_id": session.transaction_id,
            "billing": str(state), "held": held,
            "stop": {"timestamp": session.stopped_at.isoformat()
                     if session.stopped_at else None,
                     "meter_stop": _number(session.reported_meter_stop_wh),
                     "id_tag": _stop_key_tag(kept) if kept is not None else None,
                     "reason": session.stop_reason, "energy_wh": session.energy_wh},
            "other_stop": {"timestamp": stop.timestamp.isoformat(),
                           "meter_stop": _number(stop.meter_stop_wh), "id_tag": stop.id_tag,
                           "reason": stop.reason, "readings": len(stop.samples),
                           "values_not_taken": [{"field": n.field, "value": n.value,
                                                 "flag": n.flag} for n in stop.notes[:10]]},
        }, now)

    async def _retry_differs(self, tx: Tx, session: Session, ev: TransactionEventIn,
                             digest: int | None) -> None:
        """A 2.0.1 TransactionEvent under a seqNo ``session`` has an event of already, that
        says something else than it (``digest``, :func:`~csms.service.retries.event_digest`,
        against the one kept with the first): no retry (a retry is the message sent
        again), yet nothing of it is taken, as before: the first copy is the session's.
        A ``seq_conflict`` station event names the session, the seqNo and the parts that
        differ, and where the meter values do, the billed register's readings of both
        copies (the first's as the session stored them). Where those differ (the copies
        would bill differently) and the copy's readings are not all later than every
        reading the session has (a station whose counter restarted: ``restarted``, recorded,
        not held), the session is held (``seq_conflict``) for the operator
        to release as the first copy billed it, or reject: an active one once it completes,
        a completed one not settled yet at once (a queued one leaves the queue, a release
        is used up, as for a 1.6 stop that differs). Each event's conflict is recorded
        once (its digest is forgotten then), within the station's notification quota: a
        station sending copy after copy writes no more rows than events it sent."""
        assert session.id is not None and ev.seq_no is not None
        if digest is None:
            return
        kept = await tx.tx_event_digest(session.id, ev.seq_no)
        parts = [] if kept is None else parts_differing(kept, digest)
        if not parts:
            return  # a retry (or nothing to compare with)
        assert kept is not None
        await tx.set_tx_event_digest(session.id, ev.seq_no, None)
        now = self.clock()
        apart = bool(kept & APART)  # the first copy came late: its readings are not billed
        readings: dict[str, Any] = {}
        if "meter_value" in parts:
            every = [] if apart else await tx.energy_samples(session.id)
            stored = [s for s in every if s.seq_no == ev.seq_no]
            # a session whose only register is one phase's is billed from it
            # (csms.domain.energy ``billed_energy``): copies that differ there, too
            phased = lone_phase_readings([*every, *ev.samples]) is not None
            first = billed_readings(stored, phased)
            sent = billed_readings(ev.samples, phased)
            if first != sent:
                readings = {"kept": None if apart else first[:_CONFLICT_READINGS],
                            "sent": sent[:_CONFLICT_READINGS]}
                # a station whose counter restarted (a reboot mid-transaction) numbers its
                # next events from 0 again: their readings come after every one the
                # session has, and contradict none (not a second word on a moment
                # already read). Recorded, never held: an honest reboot would otherwise
                # wait for an operator; its stop still bills
                latest = max((s.timestamp for s in every), default=None)
                restarted = "timestamp" in parts and bool(ev.samples) and (
                    latest is None or min(s.timestamp for s in ev.samples) > latest)
                readings["restarted"] = restarted
        state = billing_state(session)
        held = bool(readings) and not apart and not readings["restarted"] \
            and (state == BillingState.ACTIVE or state in _UNSETTLED)
        if held:
            await self._hold_unsettled(tx, session, state, SEQ_CONFLICT, now)
        log.warning("! %s: TransactionEvent %s seqNo %s of session %s sent again with other"
                    " %s: the first kept%s", session.station_id, ev.transaction_id,
                    ev.seq_no, session.id, ", ".join(parts),
                    f", {'held' if held else f'not held ({state})'}" if readings else "")
        await self.metered_event(tx, session.station_id, SEQ_CONFLICT, {
            "session_id": session.id, "transaction_id": ev.transaction_id,
            "seq_no": ev.seq_no, "event_type": ev.event_type,
            "timestamp": ev.timestamp.isoformat(), "differs": parts, "late": apart,
            "billing": str(state), "held": held, **readings}, now)

    async def _use_reservation(self, tx: Tx, reservation: Reservation,
                               session_id: int) -> None:
        """A transaction started on ``reservation``: it ends, used (1.6 §5.13, 2.0.1 H01)."""
        if reservation.move(ReservationState.USED, self.clock()):
            reservation.session_id = session_id
            await tx.update_reservation(reservation)

    # 1.6 ---------------------------------------------------------------------
    async def start_transaction(
        self, station_id: str, connector_id: int | None, id_tag: str, meter_start_wh: Decimal,
        timestamp: datetime, reservation_id: int | None = None,
        notes: list[ValueNote] | None = None,
    ) -> tuple[int, AuthStatus, datetime | None]:
        """1.6 §6.46 StartTransaction: always answered with a transactionId."""
        start_key = f"{connector_id}|{id_tag}|{timestamp.isoformat()}|{meter_start_wh}"
        await self._start_answered(station_id, id_tag)  # a signed app session's
        cover = await self.cover(station_id, id_tag, start=True)  # confirmed in the unit

        async def work(tx: Tx) -> tuple[int, AuthStatus, datetime | None]:
            tag = await tx.get_tag(id_tag)
            auth = AuthStatus.UNKNOWN if tag is None else tag.authorize(self.clock())
            expires = tag.expires_at if tag else None
            existing = await tx.find_session_by_start_key(station_id, start_key)
            if existing is not None:
                # A retry of a StartTransaction we already answered (the answer
                # was lost): same transactionId, nothing new stored, the same answer.
                if auth is AuthStatus.ACCEPTED and existing.auth_status is not None:
                    auth = AuthStatus(existing.auth_status)
                return int(existing.transaction_id), auth, expires
            if auth is AuthStatus.ACCEPTED and not await cover.holds(tx):
                auth = AuthStatus.NO_CREDIT
            reservation, refused = await reservation_for_start(
                tx, self.clock(), station_id, connector_id, id_tag, reservation_id)
            if refused and auth is AuthStatus.ACCEPTED:
                auth = AuthStatus.NOT_AT_THIS_TIME  # reserved for another tag (§5.13)
            session = Session(
                station_id=station_id,
                ocpp_version=OCPP16,
                transaction_id="",
                started_at=timestamp,
                connector_id=connector_id,
                evse_id=connector_id,
                id_tag=id_tag,
                auth_status=auth.value,
                reported_meter_start_wh=meter_start_wh,
                meter_start_wh=meter_start_wh,
                start_key=start_key,
                limit_minor=cover.limit if auth is AuthStatus.ACCEPTED else None,
                energy_grew_at=self.clock(),
            )
            if auth is not AuthStatus.ACCEPTED:
                session.flag(f"auth_{auth.value.lower()}")
            if refused:
                session.flag("reserved_for_other")
            # its payer, bound with it: the driver the card is linked to now, or nobody (a
            # card unlinked, linked to another driver or linked at all only before the
            # session is settled changes nothing of it); nobody either once the card is
            # refused below as not the driver's at the start (a station may charge anyway)
            await tx.insert_session(session, card=id_tag)
            assert session.id is not None
            if reservation is not None:
                await self._use_reservation(tx, reservation, session.id)
            bound = await self._bind_signed(tx, station_id, id_tag, session)  # its limit
            if bound and auth is AuthStatus.UNKNOWN:
                # an app session's token, authorized by the driver's signature
                auth = AuthStatus.ACCEPTED
                session.auth_status = auth.value
                session.flags = [f for f in session.flags if f != "auth_unknown"]
            flagged = len(session.flags)
            if auth is not AuthStatus.ACCEPTED:  # refused: nobody pays, for some causes
                await self._bind_refused(tx, session, id_tag, cover, tag)
            else:  # accepted now: nobody pays if it was blocked at the start
                await self._bind_blocked_then(tx, session, id_tag, tag)
            await self._notes(tx, session, notes or [], "StartTransaction")
            await self._check_times(tx, session, [timestamp], "StartTransaction")
            await self._overlaps(tx, session, timestamp)
            await self._in_progress_bound(tx, session)
            if bound or len(session.flags) != flagged:
                await tx.update_session(session)
            await self._session_event(tx, station_id, "session/started", session)
            return int(session.transaction_id), auth, expires

        return await self.repo.unit(work)

    async def stop_transaction(self, station_id: str, stop: StopInfo) -> AuthStatus | None:
        """1.6 §6.50 StopTransaction: completes the session, whatever it holds."""
        txid = str(stop.transaction_id)

        async def work(tx: Tx) -> AuthStatus | None:
            auth = await self._authorize(tx, stop.id_tag) if stop.id_tag else None
            session = await tx.find_session(station_id, txid)
            now = self.clock()
            if session is not None:  # in progress: completed below, the flag with it
                await self._resumed(tx, session, "StopTransaction")
            if session is None:
                owners = await tx.stations_with_transaction(txid)
                if owners:
                    # Transactions are bound to their station: another station's
                    # stop is acknowledged (so it stops retrying) but not applied.
                    # (recorded, and logged, within the station's security quota)
                    if await self.metered_event(
                        tx, station_id, "security",
                        {"type": "ForeignTransaction", "transaction_id": txid,
                         "action": "StopTransaction"},
                        now,
                    ):
                        log.warning("! %s sent StopTransaction for another station's"
                                    " transaction %s", station_id, txid)
                    return auth
                # Kept, held, under a transactionId of its own: 1.6 ids are the central
                # system's (§5.6), and this one may be an id it has not assigned yet, which
                # would then collide with the session it is assigned to (a station whose
                # every later start failed). Only a retry of this very stop is found
                # (its key): a station that started offline sends each of its stops
                # under -1 (EVerest libocpp #495, SteVe #292), and another stop under
                # the same id is another transaction, held beside the first.
                key = _stop_key(txid, stop)
                if await tx.find_session_by_start_key(station_id, key) is not None:
                    return auth
                unknown = unknown_transaction_id(txid)
                held = await tx.find_session(station_id, unknown)
                if held is not None:
                    if held.start_key is None and _same_stop(held, stop):
                        return auth  # a retry of a stop kept before stops had keys
                    unknown = unknown_transaction_id(txid, key)
                session = Session(
                    station_id=station_id, ocpp_version=OCPP16, transaction_id=unknown,
                    # at its begin reading where the stop carries one, not "in no time"
                    started_at=_begun(stop.samples, stop.timestamp), id_tag=stop.id_tag,
                    start_key=key,
                )
                session.flag("unknown_transaction")
                await tx.insert_session(session)
            elif session.status is SessionStatus.COMPLETED:
                if STOP_LOST not in session.flags:
                    # the stop that completed it, sent again (its answer was lost): answered
                    # the same; another stop is kept, and holds the session if it can
                    if not await self._stopped_by(tx, session, stop):
                        await self._stop_differs(tx, session, stop)
                    return auth
                if not await self._reopen(tx, session, "StopTransaction"):
                    # closed without its stop and decided (or settled) since: kept apart
                    await self._late(tx, session, "StopTransaction", stop.samples, stop.notes,
                                     {"meter_stop": str(stop.meter_stop_wh),
                                      "timestamp": stop.timestamp.isoformat(),
                                      "reason": stop.reason}, stop.timestamp)
                    return auth
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
            if "unknown_transaction" not in session.flags:  # found by its start_key there
                await tx.set_stop_key(session.id, _stop_key(txid, stop))
            return auth

        return await self.repo.unit(work)

    async def meter_values(
        self, station_id: str, connector_id: int | None, transaction_id: str | None,
        samples: list[MeterSample], notes: list[ValueNote] | None = None,
    ) -> LimitReached | None:
        """1.6 §6.34 MeterValues. Without a known transaction the samples are kept
        for the station (main meter, clock-aligned) and never touch a session, nor do those
        of another connector than their transaction's (:meth:`_kept_apart`). A session
        that reaches what its driver pays is returned for the caller to stop, and again, at
        most once a minute, until the station accepts a stop of it."""
        # the register's readings, for a session's running energy: read here, before the
        # unit, which runs while this process holds the database's write turn
        found = register_readings(samples) \
            if transaction_id is not None and connector_id != 0 else None
        lone = lone_phase_readings(samples) if found is not None else None

        async def work(tx: Tx) -> LimitReached | None:
            session: Session | None = None
            now = self.clock()
            if transaction_id is not None and connector_id != 0:
                session = await tx.find_session(station_id, transaction_id)
                if session is None and await tx.stations_with_transaction(transaction_id):
                    await self.metered_event(
                        tx, station_id, "security",
                        {"type": "ForeignTransaction", "transaction_id": transaction_id,
                         "action": "MeterValues"},
                        now,
                    )
            if session is not None and session.connector_id is not None \
                    and connector_id != session.connector_id:
                # another connector's readings under its transactionId (None: one beyond
                # 64 bits, none of the session's): not its own, ended or not; compared on
                # the row read already. A session started on no connector read is compared
                # with nothing (held when it completes: evse_unknown)
                await self._kept_apart(tx, session, session.transaction_id, connector_id,
                                       connector_id, samples, notes or [],
                                       {"action": "MeterValues"})
                return None
            if session is not None and session.status is not SessionStatus.ACTIVE:
                await self._late(tx, session, "MeterValues", samples, notes or [])
                return None
            if session is not None:  # written below, the flag with it
                await self._resumed(tx, session, "MeterValues")
            # read only for a session with a limit: the others' readings cost nothing more
            previous = await self._previous_reading(tx, session) \
                if session is not None and session.limit_minor is not None else None
            await tx.add_samples(
                station_id, samples, session_id=session.id if session else None,
                evse_id=connector_id, connector_id=connector_id, transaction_id=transaction_id,
            )
            if session is None:
                return None
            if notes:  # most readings carry none: no coroutine for nothing
                await self._notes(tx, session, notes, "MeterValues")
            await self._check_times(tx, session, [s.timestamp for s in samples], "MeterValues")
            if found is not None:
                await self._count_readings(tx, session, found, lone, "MeterValues")
            if previous is not None:
                reached = await self._check_limit(tx, session, previous, samples)
            elif session.limit_minor is not None \
                    and any(f in session.flags for f in STOPPING_FLAGS):
                reached = await self._stop_again(tx, session)  # not taken yet
            else:
                reached = None
            await tx.update_session(session)
            await self._session_event(tx, station_id, "session/updated", session)
            return reached

        return self._stop_asked(await self.repo.unit(work))

    # 2.0.1 -------------------------------------------------------------------
    @staticmethod
    async def _master_pass(tx: Tx, record: IdTag | None) -> bool:
        """Whether the tag of registry entry ``record`` is of the master pass group (2.0.1
        C16 MasterPassGroupId)."""
        if record is None or record.parent is None:
            return False
        return record.parent == await tx.get_central_option(MASTER_PASS_OPTION)

    async def transaction_event(
        self, station_id: str, ev: TransactionEventIn
    ) -> AuthStatus | None:
        """2.0.1 E01-E15 TransactionEvent: Started / Updated / Ended, deduplicated by seqNo."""
        status, _, _ = await self._transaction_event(station_id, ev, with_cost=False)
        return status

    async def transaction_event_with_cost(
        self, station_id: str, ev: TransactionEventIn
    ) -> tuple[AuthStatus | None, RunningCost | None, LimitReached | None]:
        """:meth:`transaction_event`, and the session's cost so far once the event is
        stored (2.0.1 I02, for the answer to an Updated or Ended event), its tariff read in
        the same unit: one trip through storage where a unit and then a read were two, for
        most of a 2.0.1 station's messages; its price is worked out after the unit, off the
        database's write turn. A cost that cannot be computed is None (the
        event is stored all the same), never guessed. Here (not in
        :meth:`transaction_event`) a session is checked against what its driver pays:
        one that reaches it is returned for the caller to stop, and again, at most once a
        minute, until the station accepts a stop of it."""
        return await self._transaction_event(station_id, ev, with_cost=True)

    async def _transaction_event(
        self, station_id: str, ev: TransactionEventIn, *, with_cost: bool
    ) -> tuple[AuthStatus | None, RunningCost | None, LimitReached | None]:
        # a token presented to authorize (not to stop), in the Started event or after it
        # (E02/E03: a transaction started at plug-in gets its token in an Updated event):
        # the escrow must cover it wherever it is first attached (``covered``: checked
        # here, confirmed in the unit that stores the event)
        presented = ev.id_tag if ev.id_tag and not _stops(ev) else None
        cover = await self.cover(station_id, presented, start=True)
        confirmed: list[bool] = []  # emptied by each run of the unit
        reached: list[LimitReached] = []  # the same
        apart: list[bool] = []  # the same: the event was kept apart from its session
        # the register's readings, for the running energy, read before the unit (as in
        # meter_values); an Ended event's energy is computed from all the session's own
        found = register_readings(ev.samples) \
            if ev.samples and ev.event_type != "Ended" else None
        lone = lone_phase_readings(ev.samples) if found is not None else None
        # what the event says, kept with its seqNo: a copy sent again under that number must
        # say the same (csms.service.retries)
        digest = ev.digest if ev.seq_no is not None else None

        async def covered(tx: Tx) -> bool:
            """``cover`` confirmed once per run of the unit, at its first use (before the
            session is stored with the token)."""
            if not confirmed:
                confirmed.append(await cover.holds(tx))
            return confirmed[0]

        async def work(tx: Tx) -> tuple[AuthStatus | None, tuple[Session, Tariff] | None,
                                        LimitReached | None]:
            confirmed.clear()
            reached.clear()
            apart.clear()
            auth, session = await store(tx)  # on a retry, the session as stored
            stop = reached[0] if reached else None
            # the cost's tariff is read here, its price worked out after the unit; none
            # for an event kept apart (another EVSE's: the session's cost is not its)
            tariff = await tariff_of(tx, session) if with_cost and not apart else None
            return auth, None if tariff is None else (session, tariff), stop

        async def store(tx: Tx) -> tuple[AuthStatus | None, Session]:
            # the token's registry entry, read once for the answer and for who pays
            registered = await tx.get_tag(ev.id_tag) if ev.id_tag else None
            auth = self._answer(registered) if ev.id_tag else None
            if auth is AuthStatus.ACCEPTED and ev.event_type == "Started" \
                    and not await covered(tx):
                auth = AuthStatus.NO_CREDIT
            # C16: a tag of the master pass group stops transactions; one that would start
            # (own) a transaction is answered Invalid, the transaction stored and held
            master = ev.id_tag is not None and not _stops(ev) \
                and await self._master_pass(tx, registered)
            if master and ev.event_type == "Started":
                auth = AuthStatus.INVALID
            now = self.clock()
            session = await current_session(tx, station_id, ev.transaction_id, ev.timestamp)
            ended: Session | None = None  # the transaction whose id this one takes again
            if session is not None and _starts_anew(ev, session):
                ended, session = session, None
            beside: Session | None = None  # the transaction on another EVSE under its id
            if session is not None and _elsewhere(ev, session):
                # a station numbering transactions per EVSE: the transaction on the
                # event's EVSE is a session of its own, started by a Started event there
                other = await session_on_evse(tx, session, ev.transaction_id, ev.evse_id)
                if other is not None and not _starts_anew(ev, other):
                    session = other
                elif other is None and ev.event_type == "Started" \
                        and ev.evse_id is not None and ev.evse_id >= 1:
                    beside, session = session, None
                else:  # no transaction there that this event starts or continues
                    await self._evse_mismatch(tx, session, ev)
                    apart.append(True)
                    return auth, session
            elif session is not None and ev.evse_id is None and SHARED_WITH in session.flags:
                # an event naming no EVSE, of an id two EVSEs' transactions took: the one
                # still running's; while several run, nobody's (each held)
                running = await running_under(tx, session)
                if len(running) > 1:
                    for n, each in enumerate(running):
                        await self._evse_mismatch(tx, each, ev, keep_samples=n == 0)
                    apart.append(True)
                    return auth, session
                if running:
                    session = running[0]
            created = False
            card: str | None = None  # the tag bound with a new session
            # whether the event is the session's start: its token is presented at the start
            # (any other first token is presented late, and must take the session over)
            starting = ev.event_type == "Started" and session is None
            if session is None:
                session = Session(
                    station_id=station_id, ocpp_version=OCPP201,
                    transaction_id=reused_transaction_id(ev.transaction_id, ended.id)
                    if ended is not None and ended.id is not None
                    else shared_transaction_id(ev.transaction_id, ev.evse_id, beside.id)
                    if beside is not None and beside.id is not None and ev.evse_id is not None
                    else ev.transaction_id,
                    started_at=ev.timestamp, evse_id=ev.evse_id, connector_id=ev.connector_id,
                    energy_grew_at=now,
                )
                if ev.event_type != "Started":
                    session.flag("started_missing")
                    session.started_at = _begun(ev.samples, ev.timestamp)
                if ev.seq_no != 0 and ev.event_type == "Started":
                    session.flag("seq_gap")
                if ended is not None:
                    session.flag(REUSED)
                if beside is not None:
                    session.flag(SHARED)
                # the token it starts with (attached below) is its payer, bound with it
                # as in 1.6; one in a later event than a Started (the Started lost) is a
                # token first presented late: attached below only if it takes the session
                # over (_takes_over), and bound there
                card = ev.id_tag if ev.id_tag and not master and not _stops(ev) \
                    and ev.event_type == "Started" else None
                await tx.insert_session(session, card=card)
                created = True
                if ended is not None:
                    await self._id_reused(tx, ended, session)
                if beside is not None:
                    await self._id_shared(tx, beside, session)
            assert session.id is not None
            # Each seqNo once per session (a new session has none yet). A seqNo beyond 64
            # bits cannot be stored: the event is taken as new (the session is held for
            # it, see ev.notes).
            if ev.seq_no is not None and not await tx.record_tx_event(
                    session.id, ev.seq_no, None if digest is None
                    else digest | APART if _late_event(ev, session) else digest):
                if ev.event_type != "Ended" or created \
                        or session.status is not SessionStatus.ACTIVE:
                    # a retry: already stored, answer the same; one that says something
                    # else than the first is recorded (and may hold the session)
                    await self._retry_differs(tx, session, ev, digest)
                    return auth, session
                # an Ended stored before would have completed the session: this one is no
                # retry but a station whose seqNo counter restarted (a reboot mid-
                # transaction); taken, not left for the session to close without its stop
                await tx.add_station_event(station_id, "seq_reused", {
                    "session_id": session.id, "transaction_id": ev.transaction_id,
                    "seq_no": ev.seq_no, "event_type": ev.event_type,
                    "timestamp": ev.timestamp.isoformat()}, now)
                # the event under that number now: its copies are compared with it
                await tx.set_tx_event_digest(session.id, ev.seq_no, digest)
            if not created:  # in progress: written below (or completed), the flag with it
                await self._resumed(tx, session, "TransactionEvent")
            if not created and session.status is SessionStatus.COMPLETED \
                    and not (ev.event_type == "Ended"
                             and await self._reopen(tx, session, "TransactionEvent")):
                # E01-E15: a transactionId is one transaction; a station that reuses one
                # (its counter restarted) or sends after the end changes nothing billed.
                # Its Ended event completes a session closed without it (stop_lost) that
                # is still held undecided (_reopen); anything else is late data.
                if ev.seq_no is not None and (session.last_seq_no is None
                                              or ev.seq_no > session.last_seq_no):
                    session.last_seq_no = ev.seq_no
                    await tx.update_session(session)
                await self._late(tx, session, "TransactionEvent", ev.samples, ev.notes, {
                    "event_type": ev.event_type, "seq_no": ev.seq_no,
                    "timestamp": ev.timestamp.isoformat()},
                    ev.timestamp if ev.event_type == "Ended" else None)
                return auth, session
            if not created:
                if session.last_seq_no is not None and ev.seq_no is not None \
                        and ev.seq_no != session.last_seq_no + 1:
                    session.flag("seq_gap")
                    await tx.add_station_event(
                        station_id, "seq_gap",
                        {"transaction_id": ev.transaction_id, "expected": session.last_seq_no + 1,
                         "received": ev.seq_no},
                        now,
                    )
                if ev.event_type == "Started" and "started_missing" in session.flags \
                        and STARTED_LATE not in session.flags and _precedes(ev, session):
                    # the start, after later events: taken once, from the one Started
                    # numbered before the events seen (a second, or one numbered after
                    # them, is no start of theirs: it would move the start at will)
                    session.started_at = ev.timestamp
                    session.flag(STARTED_LATE)
                    starting = True
                elif ev.event_type == "Started":
                    # E01: one Started per transaction. The start the session was
                    # authorized, priced and shown on stands (a station moving it would
                    # bill more minutes, and allow more energy, than it charged)
                    if ev.timestamp != session.started_at:
                        await tx.add_station_event(station_id, "started_again", {
                            "session_id": session.id, "transaction_id": ev.transaction_id,
                            "seq_no": ev.seq_no, "started_at": session.started_at.isoformat(),
                            "timestamp": ev.timestamp.isoformat()}, now)
                elif "started_missing" in session.flags and STARTED_LATE not in session.flags:
                    session.started_at = _begun(ev.samples, session.started_at)
            if ev.seq_no is not None and (session.last_seq_no is None
                                          or ev.seq_no > session.last_seq_no):
                session.last_seq_no = ev.seq_no
            if ev.notes:
                await self._notes(tx, session, ev.notes, "TransactionEvent")
            await self._check_times(tx, session, [ev.timestamp, *(s.timestamp
                                                                  for s in ev.samples)],
                                    "TransactionEvent")
            if ev.offline:
                session.flag("offline_events")
            if session.evse_id is None and ev.evse_id is not None:
                session.evse_id, session.connector_id = ev.evse_id, ev.connector_id
            if created and ev.event_type != "Ended":  # an Ended one: checked as it completes
                await self._overlaps(tx, session, session.started_at)
                await self._in_progress_bound(tx, session)
            if master and (session.id_tag in (None, ev.id_tag)
                           or session.auth_status != AuthStatus.ACCEPTED.value):
                # C16: it owns no transaction, nor authorizes one whose token was refused
                # (the station would charge on it with nobody to pay)
                auth = AuthStatus.INVALID
            if master and session.id_tag is None:
                session.id_tag = ev.id_tag
                session.auth_status = auth.value if auth else None
                session.flag("master_pass_start")
                log.warning("! %s: master pass %s started transaction %s", station_id,
                            ev.id_tag, ev.transaction_id)
                await tx.add_station_event(station_id, "security", {
                    "type": "MasterPassStart", "session_id": session.id,
                    "transaction_id": ev.transaction_id, "tag": ev.id_tag}, now)
            elif ev.id_tag and ((starting and session.id_tag is None) or await self._takes_over(
                    tx, session, ev, auth, master, covered)) and not (
                    _stops(ev) and await self._master_pass(tx, registered)):
                replaced = session.id_tag  # a token refused before it: it pays no more
                if replaced is not None:
                    await self._token_replaced(tx, session, ev.id_tag)
                session.id_tag = ev.id_tag
                if auth is AuthStatus.ACCEPTED and not await covered(tx):
                    auth = AuthStatus.NO_CREDIT  # the token attached after the start
                if auth is AuthStatus.ACCEPTED:
                    session.limit_minor = cover.limit  # an app session: the signed amount, below
                reservation, refused = await reservation_for_start(
                    tx, now, station_id, session.evse_id or ev.evse_id, ev.id_tag,
                    ev.reservation_id)
                if reservation is not None:
                    await self._use_reservation(tx, reservation, session.id)
                if refused:
                    session.flag("reserved_for_other")
                    if auth is AuthStatus.ACCEPTED:
                        auth = AuthStatus.NOT_AT_THIS_TIME  # reserved for another (H01)
                if await self._bind_signed(tx, station_id, ev.id_tag, session,
                                           ev.remote_start_id) \
                        and auth is AuthStatus.UNKNOWN:
                    auth = AuthStatus.ACCEPTED  # authorized by the driver's signature
                session.auth_status = auth.value if auth else None
                if replaced is not None:  # its payer now, in the refused token's place
                    await tx.rebind_card(session.id, ev.id_tag)
                elif card is None:  # its payer, as in 1.6 (a new session's: bound already)
                    await tx.bind_card(session.id, ev.id_tag)
                if auth is not None and auth is not AuthStatus.ACCEPTED:
                    session.flag(f"auth_{auth.value.lower()}")
                    await self._bind_refused(tx, session, ev.id_tag, cover,  # who pays
                                             registered)
                elif auth is AuthStatus.ACCEPTED:  # nobody pays if blocked at the start
                    await self._bind_blocked_then(tx, session, ev.id_tag, registered)
            elif ev.id_tag and not master and (session.id_tag is None or (
                    ev.id_tag != session.id_tag
                    and session.auth_status != AuthStatus.ACCEPTED.value)):
                # a token after a refused one (or none) that does not take it over
                auth = await self._late_token(tx, session, ev, auth, covered, registered)
            elif auth is AuthStatus.ACCEPTED and ev.id_tag == session.id_tag \
                    and session.auth_status not in (None, AuthStatus.ACCEPTED.value) \
                    and not _stops(ev):
                # the session's refused token presented again to authorize (a driver whose
                # escrow covers nothing tapping again): its refusal at the start stands
                # (answered Accepted, the station would charge on for a payer refused)
                auth = AuthStatus(session.auth_status)
            previous = await self._previous_reading(tx, session) if with_cost \
                and session.limit_minor is not None and ev.event_type != "Ended" else None
            if ev.samples:
                await tx.add_samples(
                    station_id, ev.samples, session_id=session.id, evse_id=session.evse_id,
                    connector_id=session.connector_id, transaction_id=ev.transaction_id,
                )
            if ev.event_type == "Ended":
                session.stopped_at = ev.timestamp
                # 2.0.1 E06: stoppedReason may be omitted, meaning Local.
                session.stop_reason = ev.stopped_reason or "Local"
                await self._complete(tx, session, ev.samples)
                return auth, session
            if found is not None:
                await self._count_readings(tx, session, found, lone, "TransactionEvent")
            if previous is not None:
                stop = await self._check_limit(tx, session, previous, ev.samples,
                                               "TransactionEvent")
                if stop is not None:
                    reached.append(stop)
            elif with_cost and session.limit_minor is not None \
                    and any(f in session.flags for f in STOPPING_FLAGS):
                stop = await self._stop_again(tx, session)  # not taken yet
                if stop is not None:
                    reached.append(stop)
            await tx.update_session(session)
            topic = "session/started" if created else "session/updated"
            await self._session_event(tx, station_id, topic, session)
            return auth, session

        auth, basis, stop = await self.repo.unit(work)
        stop = self._stop_asked(stop)
        if basis is None:
            return auth, None, stop
        try:
            return auth, priced(*basis, self.clock()), stop
        except (ArithmeticError, ValueError) as exc:  # a price, not the event's fault
            log.warning("! %s: no running cost for %s: %s", station_id, ev.transaction_id, exc)
            return auth, None, stop


def unknown_transaction_id(transaction_id: str, key: str | None = None) -> str:
    """The transactionId under which a 1.6 stop of a transaction the central system never
    assigned is kept (its integer ids cannot take this form); with ``key`` (the stop's,
    :func:`_stop_key`), that of another stop under the same transactionId: longer than
    any a station names (2.0.1 transactionId: at most 36 characters), one per stop."""
    if key is None:
        return f"unknown-{transaction_id}"
    return f"unknown-{transaction_id}-{hashlib.sha256(key.encode()).hexdigest()[:32]}"


def _stop_key(transaction_id: str, stop: StopInfo) -> str:
    """What makes a 1.6 stop the same stop: under an unknown transactionId, kept as its
    held session's ``start_key``; of a known session, kept beside it
    (``Tx.set_stop_key``: a stop sent again is a retry only if it is that one). Its
    transactionId, time, meterStop (an integer, written out exactly) and idTag, if any (a
    1.6 start's key begins with its connectorId, never with "stop"). A time that could
    not be read (taken as the time the stop arrived, which its retry does not share) is
    written as the station sent it, percent-encoded (no "|" in it: :func:`_stop_key_tag`
    reads the idTag back)."""
    sent = next((quote(n.value, safe="") for n in stop.notes
                 if n.field == "timestamp" and n.flag == "time_unreadable"), None)
    when = stop.timestamp.isoformat() if sent is None else sent
    return (f"stop|{transaction_id}|{when}|"
            f"{stop.meter_stop_wh}|{stop.id_tag or ''}")


def _stop_key_tag(key: str) -> str | None:
    """The idTag of the stop whose key is ``key`` (:func:`_stop_key`; None: it had none)."""
    return key.split("|", 4)[4] or None


async def _session_events(tx: Tx, session: Session, kind: str) -> list[dict[str, Any]]:
    """The station events of ``kind`` that name ``session`` (their payload's
    ``session_id``), of the latest ``_STOPS_READ`` of that kind of its station, newest
    first; one read."""
    return [event for event in await tx.list_station_events(session.station_id, kind,
                                                            _STOPS_READ)
            if event["payload"].get("session_id") == session.id]


def _number(value: Decimal | None) -> str | None:
    return None if value is None else str(value)


def _same_stop(held: Session, stop: StopInfo) -> bool:
    """Whether ``stop`` is the one ``held`` was kept for: the same time, meterStop and
    idTag (a held session kept before stops had keys, :func:`_stop_key`)."""
    return held.stopped_at == stop.timestamp and held.id_tag == stop.id_tag \
        and held.reported_meter_stop_wh == stop.meter_stop_wh


def _stops(ev: TransactionEventIn) -> bool:
    """Whether the event's idToken is the one ending the transaction (E07: presented to
    stop; C16.FR.08: stoppedReason MasterPass), not one authorizing it."""
    return ev.event_type == "Ended" or ev.trigger_reason == "StopAuthorized" \
        or ev.stopped_reason == "MasterPass"


def _starts_anew(ev: TransactionEventIn, session: Session) -> bool:
    """Whether a 2.0.1 event under ``session``'s transactionId starts a transaction of its
    own: a Started event dated after ``session`` ended (a station whose counter restarted;
    E01: a transaction's events are numbered on from its Started). A retry of the ended
    transaction's Started is dated at its start: no new transaction. One dated before a
    later transaction under the id started (``session`` is followed already) is late
    data."""
    return ev.event_type == "Started" and session.status is SessionStatus.COMPLETED \
        and session.stopped_at is not None and ev.timestamp > session.stopped_at \
        and REUSED_LATER not in session.flags


def _elsewhere(ev: TransactionEventIn, session: Session) -> bool:
    """Whether a 2.0.1 event names another EVSE than its session's (E01: a transaction is
    on one EVSE; one named in none is compared with nothing)."""
    return ev.evse_id is not None and session.evse_id is not None \
        and ev.evse_id != session.evse_id


def _late_event(ev: TransactionEventIn, session: Session) -> bool:
    """Whether ``ev``, of ``session`` as stored, comes after it completed and none of it is
    the session's (late data): any event of a completed session but the Ended event of
    one closed without its stop (``stop_lost``), which may complete it again."""
    return session.status is SessionStatus.COMPLETED \
        and not (ev.event_type == "Ended" and STOP_LOST in session.flags)


def _precedes(ev: TransactionEventIn, session: Session) -> bool:
    """Whether a Started event's seqNo comes before the events already seen of
    ``session`` (E01: a transaction's events are numbered on from its Started event), as
    far as their highest says; an event without a readable seqNo is not refused for it."""
    return ev.seq_no is None or session.last_seq_no is None or ev.seq_no < session.last_seq_no


def _begun(samples: list[MeterSample], known: datetime) -> datetime:
    """When a transaction whose start never came began (a 2.0.1 Started event, a 1.6
    StartTransaction): its earliest Transaction.Begin reading's time where that is before
    ``known`` (the first message seen: a 2.0.1 Ended event or a 1.6 stop's transactionData
    may carry the reading at the start, as the KEBA P30's does), else ``known``. A session
    started at its end would have its energy delivered "in no time"."""
    begins = [s.timestamp for s in samples if s.context == "Transaction.Begin"]
    return min([known, *begins])
