"""Operator decisions on sessions held back from settlement (``csms sessions release/reject``).

A completed session whose energy cannot be trusted as billed (see
``BILLING_HOLD_FLAGS``: unknown transaction, meter going backwards, a signed
meter reading that fails or differs from the billed one...) is not queued for
settlement. An operator looks at it and decides: ``release`` queues it as it
is, ``reject`` keeps it on record and never settles it. Both are audited.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from csms.domain.model import BILLING_HOLD_FLAGS, SessionStatus
from csms.service.billing import BillingState, billing_state, check_billing_transition
from csms.service.ports import Tx

__all__ = ["DECISIONS", "NEVER_RELEASED", "HoldError", "billing_state", "decide"]

DECISIONS = (BillingState.RELEASED.value, BillingState.REJECTED.value)
# holds no operator may release: a master pass starts no transaction (2.0.1 C16), so a
# transaction a station started with one anyway is billed to nobody, its holder included
NEVER_RELEASED = frozenset({"master_pass_start"})


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
