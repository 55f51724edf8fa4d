"""A session stopped at what its driver will pay: the rule.

A driver's escrow pays at most a per-session amount: for a card, the per-session limit of
the driver's terms on chain; for an app session, the maximum amount the driver signed; and
never more than the escrow holds, nor than what is left of the driver's daily limit. The
contract pays no more (an entry above it is not paid), so a session that runs on is energy
the host gives away. The limit is taken when the session starts (``settlement.credit``):
the smallest of the per-session amount, what the escrow has available and what is left of
the day, after the driver's other sessions in flight and waiting authorizations, each at
its own limit. It comes from the credit check confirmed in the unit that stores the session
(``CreditDecision.session_limit``, ``Cover.limit``) or, for an app session, from the signed
authorization bound to it (the limit it was accepted with), and is kept on the session
(``Session.limit_minor``): a meter reading reads no chain. A session no driver pays (a tag
of no driver, or no settlement on the node) has no limit, and its readings cost nothing
more here.

At each reading of a session with a limit (1.6 MeterValues, 2.0.1 TransactionEvent
Updated), its price so far (its tariff over the energy so far and the whole seconds since
its start, as the running cost) and the price of one more interval like the latest - the
energy and the time between the session's previous reading (its start for the first) and
this one - are added: the energy a station delivers before a stop takes effect. When that
reaches the limit, the station is asked to stop the session (1.6 RemoteStopTransaction,
2.0.1 RequestStopTransaction): the session is flagged ``limit_reached`` and a
``limit_reached`` station event names it. A station that does not take the stop
(Rejected, no answer) gets the session, if it is still charging, flagged
``limit_stop_refused``, a billing hold: the operator decides before it is sent to be paid.
Until the station accepts a stop of it, a session still charging is asked again, at most
once every ``defaults.LIMIT_STOP_AGAIN`` seconds: at its next reading, and at the node's
next check while its station is connected (a station offline at the stop, back since).
Each answer is kept (a ``limit_stop`` station event).

Between readings. A tariff with a time component goes on costing without a reading, and a
station may send none for long. Every ``defaults.LIMIT_CHECK_SECONDS`` each node looks at
the active sessions with a limit of the stations connected to it (a session without a
limit is not read): one whose price up to now and the time price until the next check
reach the limit is stopped as above (:func:`stop_between_readings`: the reading's rule,
over an interval of that time and no energy). A signed app session is paid only when it
is settled before its signature expires: one still charging ``defaults.SIGNED_STOP_AHEAD``
seconds (and the next check's interval) before then is stopped the same way, flagged
``authorization_expiring`` with a station event of that name. And a driver may announce a
withdrawal (or lower the terms) right after its session started and make it the contract's
notice period later: a session completed after that is refused for want of escrow, its
host paid nothing for what it delivered (a car left plugged in for days, a price per minute
running on). So a session with a limit still charging ``defaults.NOTICE_STOP_AHEAD``
seconds (and the next check's interval) before its start plus the notice period is stopped
the same way, flagged ``notice_ending`` with a station event of that name: whether its
driver announced anything is not asked, a session that long is rare. The check reads no
chain (the notice period is the one the settlement worker keeps in the ledger values).

Past the limit unasked. A station that sends no reading during a session (a 1.6
MeterValueSampleInterval of 0) is never asked to stop at its limit: it delivers the whole
session and the escrow pays the limit. A session with a limit that completes with its
price at the tariff above its limit by more than one interval like its latest before the
stop (the margin a stop at a reading allows; none without two readings before the stop),
and no stop ever asked of it, is flagged ``limit_overrun`` (:func:`limit_overrun`), a
billing hold: the operator sees it before it is sent to be paid (its limit).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from csms.domain.model import Session
from csms.domain.tariff import Tariff, price_minor
from csms.service import defaults

__all__ = [
    "EXPIRING_FLAG", "LIMIT_FLAG", "NOTICE_FLAG", "OVERRUN_FLAG", "REFUSED_FLAG", "STOPPING_FLAGS",
    "STOP_TAKEN",
    "LimitReached", "limit_overrun", "limit_reached", "notice_stop_at", "noticed_from",
    "price_so_far", "short_notice",
    "stop_between_readings",
]

LIMIT_FLAG = "limit_reached"
REFUSED_FLAG = "limit_stop_refused"
EXPIRING_FLAG = "authorization_expiring"
NOTICE_FLAG = "notice_ending"  # its driver's notice, counted from its start, nearly over
OVERRUN_FLAG = "limit_overrun"  # completed far past its limit, no stop asked: a hold
# a session with one of these is being stopped: asked again until a stop is accepted
STOPPING_FLAGS = (LIMIT_FLAG, EXPIRING_FLAG, NOTICE_FLAG)
STOP_TAKEN = datetime.max.replace(tzinfo=UTC)  # a stop of the session was accepted


@dataclass(frozen=True, slots=True)
class LimitReached:
    """A session to stop at its driver's limit: what was judged, for the station event and
    the stop."""

    session_id: int
    transaction_id: str
    limit_minor: int
    price_minor: int  # so far
    margin_minor: int  # the price of one more interval like the latest
    reason: str = LIMIT_FLAG  # or EXPIRING_FLAG, NOTICE_FLAG: why it is stopped before


def seconds_since_start(session: Session, end: datetime) -> int:
    """Whole seconds from the session's start to ``end``, rounded up, as settlement prices
    the session."""
    return max(0, math.ceil((end - session.started_at).total_seconds()))


def price_so_far(tariff: Tariff, session: Session, end: datetime) -> int:
    """The session's price in minor units over its energy so far, up to ``end``."""
    return price_minor(tariff, max(0, int(session.energy_wh or 0)),
                       seconds_since_start(session, end))


def limit_reached(tariff: Tariff, session: Session, now: datetime,
                  previous: tuple[datetime, int], reading_at: datetime) -> LimitReached | None:
    """Whether ``session`` (its energy as of the reading at ``reading_at``) is to be stopped
    at its limit: its price up to ``now`` and the price of one more interval like the one
    since ``previous`` (the time and energy of the session's reading before) reach it."""
    if session.limit_minor is None or session.id is None:
        return None
    energy = max(0, int(session.energy_wh or 0))
    duration = seconds_since_start(session, now)
    price = price_minor(tariff, energy, duration)
    step_s = max(0.0, (reading_at - previous[0]).total_seconds())
    step_wh = max(0, energy - previous[1])
    ahead = price_minor(tariff, energy + step_wh, duration + step_s)
    if ahead < session.limit_minor:
        return None
    return LimitReached(session.id, session.station_transaction_id, session.limit_minor, price,
                        ahead - price)


def notice_stop_at(session: Session, notice_s: int | None, stop_ahead_s: float
                   ) -> datetime | None:
    """When a session of a driver is to be stopped at the latest: ``stop_ahead_s`` before
    its start plus the contract's notice period ``notice_s`` (None: not known yet), when a
    withdrawal its driver announced right after the start may be made. The start is the
    earlier of the station's time and when the central system stored it (neither clock is
    trusted alone), as for a held session's time to be decided by."""
    if notice_s is None:
        return None
    return noticed_from(session) + timedelta(seconds=notice_s - stop_ahead_s)


def short_notice(notice_s: int) -> str | None:
    """One line for the operator when the contract's notice period ``notice_s`` (seconds) is
    below ``defaults.MIN_NOTICE_PERIOD``, the least ``csms contract deploy`` allows (a
    contract deployed by an earlier release may have less): what it does to drivers'
    sessions, stopped ``defaults.NOTICE_STOP_AHEAD`` before their start plus it
    (:func:`notice_stop_at`) by the first of the node's checks, every
    ``defaults.LIMIT_CHECK_SECONDS``, that comes within that interval of that time or after
    it (:func:`stop_between_readings`). None at or above the least."""
    if notice_s >= defaults.MIN_NOTICE_PERIOD:
        return None
    check = defaults.LIMIT_CHECK_SECONDS
    left = notice_s - defaults.NOTICE_STOP_AHEAD  # charging before the stop, at most
    when = f"at the first check after its start (one every {check:g} s)" if left <= check \
        else f"after at most {_minutes(left)} of charging"
    return (f"the contract's notice period, {notice_s} s, is below the least csms contract"
            f" deploy allows ({defaults.MIN_NOTICE_PERIOD} s): a session paid from a"
            f" driver's escrow is stopped {_minutes(defaults.NOTICE_STOP_AHEAD)} before its"
            f" start plus the notice period, so every such session is stopped {when}")


def _minutes(seconds: int) -> str:
    """``seconds`` in minutes and seconds: "80 min", "60 min 29 s", "45 s"."""
    minutes, rest = divmod(seconds, 60)
    if not minutes:
        return f"{rest} s"
    return f"{minutes} min {rest} s" if rest else f"{minutes} min"


def noticed_from(session: Session) -> datetime:
    """Where a driver's notice period is counted from for ``session``: its start, the
    earlier of the station's time and when the central system stored it (neither clock
    is trusted alone). A withdrawal announced once the start was checked against the
    escrow may be made the notice period later."""
    start = session.started_at
    if session.created_at is not None and session.created_at < start:
        start = session.created_at
    return start


def stop_between_readings(tariff: Tariff | None, session: Session, now: datetime,
                          ahead_s: float, expiry: int | None,
                          expiry_ahead_s: float,
                          notice_at: datetime | None = None) -> LimitReached | None:
    """Whether ``session`` is to be stopped now, between its readings, by a check that looks
    again in ``ahead_s`` seconds: at its limit (:func:`limit_reached` over an interval of
    ``ahead_s`` seconds and no energy: the time price until the next check), or, for a
    signed app session (``expiry``: its signature's, Unix seconds), when the signature
    expires within ``expiry_ahead_s`` seconds of the next check, or when ``notice_at``
    (:func:`notice_stop_at`) comes before the next check."""
    if session.limit_minor is None or session.id is None:
        return None
    if tariff is not None:
        energy = max(0, int(session.energy_wh or 0))
        reached = limit_reached(tariff, session, now,
                                (now - timedelta(seconds=ahead_s), energy), now)
        if reached is not None:
            return reached
    if expiry is not None and expiry - now.timestamp() <= ahead_s + expiry_ahead_s:
        reason = EXPIRING_FLAG
    elif notice_at is not None and (notice_at - now).total_seconds() <= ahead_s:
        reason = NOTICE_FLAG
    else:
        return None
    price = price_so_far(tariff, session, now) if tariff is not None else 0
    return LimitReached(session.id, session.station_transaction_id, session.limit_minor, price, 0,
                        reason)


def limit_overrun(tariff: Tariff, session: Session,
                  readings: Iterable[tuple[datetime, Decimal]]) -> tuple[int, int] | None:
    """(price at the tariff, margin) of a completed ``session`` (its billed energy and
    times) that ran past its limit unasked: no stop was asked of it (``STOPPING_FLAGS``) and
    its price exceeds its limit by more than the margin a stop at a reading allows - the
    price of one more interval like its latest before the stop (the time and energy between
    its last two register ``readings`` strictly inside it, its start the first; 0 with
    fewer). None otherwise, and for a session without a limit."""
    if session.limit_minor is None or session.stopped_at is None \
            or any(f in session.flags for f in STOPPING_FLAGS):
        return None
    price = price_so_far(tariff, session, session.stopped_at)
    if price <= session.limit_minor:
        return None
    points = [] if session.meter_start_wh is None \
        else [(session.started_at, Decimal(session.meter_start_wh))]
    points += sorted((at, wh) for at, wh in readings
                     if session.started_at < at < session.stopped_at)
    margin = 0
    if len(points) >= 2:
        (t0, wh0), (t1, wh1) = points[-2:]
        step = price_minor(tariff, max(0, int(wh1 - wh0)),
                           math.ceil(max(0.0, (t1 - t0).total_seconds())))
        margin = max(0, step - price_minor(tariff, 0, 0))  # the session fee once
    if price <= session.limit_minor + margin:
        return None
    return price, margin
