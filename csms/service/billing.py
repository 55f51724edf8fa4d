"""A session's billing lifecycle: one explicit state table.

Where a session stands between its last meter reading and the money. The state is not a
column of its own: it is read from the session (``status``, its flags) and from the
settlement columns the worker writes (``settlement_state``), see :func:`billing_state`.

    active   -> queued     completed with trustworthy energy: in the settlement queue
    active   -> held       completed with a hold flag (``BILLING_HOLD_FLAGS``)
    held     -> released   an operator releases it (``csms sessions release``): queued
    held     -> rejected   an operator rejects it: on record, never settled
    held     -> active     closed without its stop (``stop_lost``: a new session on its EVSE,
                           or the operator), the station's real stop came while it was
                           held, no decision taken: reopened and completed with that stop
    queued   -> held       the worker cannot price or settle it (no tariff, values beyond
                           an on-chain entry): taken out of the queue for an operator
    released -> held       the same after a release: the release is used up (its flag
                           removed; the audit log keeps it), a new decision is needed
    queued / released -> batched
                           in a chunk with its ledger sequence number
    batched  -> paid       the chunk is final on chain and the driver's escrow paid
    batched  -> unpaid     final, but the contract refused this entry (its reason kept)
    batched  -> conflict   the chain holds another chunk for these sequence numbers
    paid / unpaid -> batched
                           the final chunk was reorganised away (deeper than the worker's
                           confirmations): in its chunk again until the chain settles it

The chunk itself (a batch: pending -> signed -> broadcast -> included -> finalized) has its
own table in :mod:`settlement.states`.
"""

from __future__ import annotations

import enum

from csms.domain.model import BILLING_HOLD_FLAGS, Session, SessionStatus

__all__ = [
    "FINAL_BILLING_STATES",
    "TRANSITIONS",
    "BillingState",
    "InvalidBillingTransition",
    "billing_state",
    "check_billing_transition",
]


class BillingState(enum.StrEnum):
    ACTIVE = "active"
    HELD = "held"
    RELEASED = "released"
    REJECTED = "rejected"
    QUEUED = "queued"
    BATCHED = "batched"
    PAID = "paid"
    UNPAID = "unpaid"
    CONFLICT = "conflict"


TRANSITIONS: dict[BillingState, frozenset[BillingState]] = {
    BillingState.ACTIVE: frozenset({BillingState.QUEUED, BillingState.HELD}),
    BillingState.HELD: frozenset({BillingState.RELEASED, BillingState.REJECTED,
                                  BillingState.ACTIVE}),
    BillingState.QUEUED: frozenset({BillingState.HELD, BillingState.BATCHED}),
    BillingState.RELEASED: frozenset({BillingState.HELD, BillingState.BATCHED}),
    BillingState.BATCHED: frozenset({BillingState.PAID, BillingState.UNPAID,
                                     BillingState.CONFLICT}),
    BillingState.REJECTED: frozenset(),
    # only when the chain lost the chunk (settlement.worker re-checks finalized chunks)
    BillingState.PAID: frozenset({BillingState.BATCHED}),
    BillingState.UNPAID: frozenset({BillingState.BATCHED}),
    BillingState.CONFLICT: frozenset(),
}

# nothing moves these but a reorganisation that takes their chunk off the chain
FINAL_BILLING_STATES = frozenset(
    s for s, nexts in TRANSITIONS.items() if not nexts - {BillingState.BATCHED})


class InvalidBillingTransition(ValueError):
    pass


def check_billing_transition(old: BillingState | str, new: BillingState | str) -> None:
    old, new = BillingState(old), BillingState(new)
    if new not in TRANSITIONS[old]:
        raise InvalidBillingTransition(f"a session's billing cannot go from {old} to {new}")


def billing_state(session: Session, settlement_state: str | None = None) -> str:
    """held | released | rejected | queued | batched | paid | unpaid | conflict | active.

    ``settlement_state``: the worker's column, when the caller read it apart from the
    session (by default the session's own)."""
    settlement_state = settlement_state or session.settlement_state
    if session.status is SessionStatus.ACTIVE:
        return BillingState.ACTIVE.value
    if "rejected" in session.flags:
        return BillingState.REJECTED.value
    if settlement_state:
        return settlement_state
    if "released" in session.flags:
        return BillingState.RELEASED.value
    if BILLING_HOLD_FLAGS.intersection(session.flags):
        return BillingState.HELD.value
    return BillingState.QUEUED.value
