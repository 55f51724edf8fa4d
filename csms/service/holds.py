"""Operator decisions on sessions held back from settlement (``csms sessions release/reject``).

A completed session whose energy cannot be trusted as billed (see
``BILLING_HOLD_FLAGS``: unknown transaction, meter going backwards, a signed
meter reading that fails or differs from the billed one...) is not queued for
settlement. An operator looks at it and decides: ``release`` queues it as it
is, ``reject`` keeps it on record and never settles it. Both are audited.

A held session has no time limit of its own, but the driver's escrow has one: a notice
period after announcing it (``Settlement.vy`` ``notice_period``, fixed at deploy), a
driver may withdraw or lower the terms, and a session released after that may be refused
on chain and its host never paid. So each held session has a time to be decided by
(:func:`decide_by`): its start plus the notice period, less the time a released session
takes to settle. The settlement worker keeps the contract's notice period in the ledger
values (``notice_period``) and warns when that time nears and when it has passed.
:func:`hold_fields` is how ``csms sessions``, the admin API and the console show it.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from csms.domain.model import BILLING_HOLD_FLAGS, Session, SessionStatus
from csms.service.billing import BillingState, billing_state, check_billing_transition
from csms.service.defaults import HOLD_DEADLINE_WARNING, HOLD_DECISION_MARGIN
from csms.service.limits import noticed_from
from csms.service.ports import Tx
from csms.service.views import iso

__all__ = [
    "DECISIONS", "ENERGY_GREW_STEP_S", "NEVER_RELEASED", "NOTICE_PERIOD", "RESUMED",
    "SILENT_GRACE_S", "HoldError",
    "billing_state", "deadline_state", "decide", "decide_by", "hold_fields", "notice_period",
]

DECISIONS = (BillingState.RELEASED.value, BillingState.REJECTED.value)
# holds no operator may release: a master pass starts no transaction (2.0.1 C16), so a
# transaction a station started with one anyway is billed to nobody, its holder included
NEVER_RELEASED = frozenset({"master_pass_start"})


# How long a session in progress still counts against its driver's escrow
# (csms.storage.settlement_sql ``driver_exposure``) once its station has sent nothing for it:
# no reading, no transaction message (each writes the session back, its updated_at; the
# central system's own writes of a session in progress are a few flags at most, each once).
# A reporting station sends readings every MeterValueSampleInterval (1.6; 2.0.1
# SampledDataTxUpdatedInterval), minutes; one offline queues its transaction messages and
# sends them when back, after an outage of hours; one that samples nothing is heard of at
# the start and the stop only, mostly within an overnight charge. A station that never
# reports again (broken, gone, or a hostile host's that started a session on a card's idTag
# and never stops it) then holds the driver's escrow for half a day, not for ever.
SILENT_GRACE_S = 12 * 3600
# A session's time its energy last grew (Session.energy_grew_at) is written again only once
# it is this old: most readings write nothing for it (each write was ~2.5% of a 1.6
# message's instructions). So a session stops counting against its driver's escrow up to
# this much before the grace is over since its energy last grew, never after
ENERGY_GREW_STEP_S = 300
# A driver's session written again (its station heard of again, mostly) after it was silent
# for longer than SILENT_GRACE_S in progress: it counts against the escrow again, and is
# held at its completion (a hold flag, csms.service.sessions) when the driver was charged
# meanwhile: a session of the driver's created, or an authorization of it accepted, after
# the silent one stopped counting, on the escrow it no longer held. Those settle first, and
# the operator releases the late one (the chain pays it if the escrow still covers it) or
# rejects it. A hostile station that waits for the driver's next session to send its stop
# never gets the honest host's entry refused for want of escrow; an honest overnight
# session, with nothing of its driver's accepted meanwhile, is billed as usual.
RESUMED = "resumed_after_silence"


# the ledger value the settlement worker keeps the contract's notice period in (seconds)
NOTICE_PERIOD = "notice_period"


def decide_by(session: Session, notice_s: int | None) -> datetime | None:
    """When a held session must be decided by, so that a release still settles before the
    driver can withdraw; None when it is not held or the notice period is not known.

    A driver may announce a withdrawal (or lower terms) as soon as the session's start
    was checked against the escrow, and make it ``notice_s`` later: counted from the
    start, the earlier of the station's time and when the central system stored it
    (neither clock is trusted alone), less :data:`HOLD_DECISION_MARGIN` to settle."""
    if notice_s is None or billing_state(session) != BillingState.HELD:
        return None
    return noticed_from(session) + timedelta(seconds=notice_s) - HOLD_DECISION_MARGIN


def deadline_state(at: datetime | None, now: datetime) -> str | None:
    """Where ``now`` stands to a held session's :func:`decide_by` ``at``: "passed" at or
    after it, "near" within :data:`HOLD_DEADLINE_WARNING` of it (when the settlement
    worker warns), "ahead" before that; None without one."""
    if at is None:
        return None
    if now >= at:
        return "passed"
    return "near" if now >= at - HOLD_DEADLINE_WARNING else "ahead"


def hold_fields(session: Session, notice_s: int | None, now: datetime) -> dict[str, Any]:
    """A session's billing state and, held, its time to be decided by (``decide_by``, UTC;
    None when not held or the notice period is not known) and where ``now`` stands to it
    (``decide_by_state``, :func:`deadline_state`): the fields ``csms sessions list`` /
    ``show --json``, the admin API's sessions and the console's session pages show."""
    at = decide_by(session, notice_s)
    return {"billing": billing_state(session),
            "decide_by": iso(at),
            "decide_by_state": deadline_state(at, now)}


async def notice_period(tx: Tx) -> int | None:
    """The contract's notice period (seconds) as the settlement worker last read it; None
    before a worker has read it."""
    value = await tx.ledger_value(NOTICE_PERIOD)
    return int(value) if value is not None and value.isdigit() else None


class HoldError(ValueError):
    """The decision does not apply to this session (one line for the operator)."""


async def decide(
    tx: Tx, session_id: int, decision: str, *, actor: str, reason: str | None, now: datetime,
) -> dict[str, Any]:
    """Release or reject a held session; returns what was decided (for the audit log)."""
    if decision not in DECISIONS:
        raise HoldError(f"unknown decision {decision!r}")
    session = await tx.get_session(session_id)
    if session is None:
        raise HoldError(f"no session {session_id}")
    if session.status is not SessionStatus.COMPLETED:
        raise HoldError(f"session {session_id} is still active")
    state = billing_state(session)
    if state != BillingState.HELD:
        raise HoldError(f"session {session_id} is not held for a decision (it is {state})")
    check_billing_transition(state, decision)
    if decision == "released" and NEVER_RELEASED.intersection(session.flags):
        raise HoldError(f"session {session_id} was started with a master pass (2.0.1 C16):"
                        " it is never billed; reject it")
    assert session.id is not None
    holds = sorted(BILLING_HOLD_FLAGS.intersection(session.flags))
    session.flag(decision)
    await tx.update_session(session)
    if decision == "released":
        await tx.enqueue_settlement(session.id, now)
    result = {"session_id": session.id, "decision": decision, "holds": holds, "reason": reason}
    await tx.add_station_event(session.station_id, "billing_decision",
                               {**result, "actor": actor}, now)
    action = "sessions.release" if decision == "released" else "sessions.reject"
    await tx.add_audit(actor, action, str(session.id), {"reason": reason}, result, True, now)
    return result
