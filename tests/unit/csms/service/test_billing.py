"""The billing lifecycle table of a session, and how a session's state is read."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime

import pytest

from csms.domain.model import Session, SessionStatus
from csms.service.billing import (
    FINAL_BILLING_STATES,
    TRANSITIONS,
    BillingState,
    InvalidBillingTransition,
    billing_state,
    check_billing_transition,
)

ALLOWED = {
    ("active", "queued"), ("active", "held"),
    ("held", "released"), ("held", "rejected"),
    ("held", "active"),  # closed without its stop (stop_lost), reopened by the real one
    ("queued", "held"), ("released", "held"),
    ("queued", "batched"), ("released", "batched"),
    ("batched", "paid"), ("batched", "unpaid"), ("batched", "conflict"),
    # its final chunk reorganised away: in its chunk again until the chain settles it
    ("paid", "batched"), ("unpaid", "batched"),
}


@pytest.mark.parametrize(("old", "new"), list(itertools.product(BillingState, BillingState)))
def test_transition_table(old: BillingState, new: BillingState) -> None:
    if (old.value, new.value) in ALLOWED:
        check_billing_transition(old, new)
    else:
        with pytest.raises(InvalidBillingTransition):
            check_billing_transition(old, new)


def test_states_as_text_are_checked_too() -> None:
    check_billing_transition("held", "released")
    with pytest.raises(InvalidBillingTransition, match="from paid to queued"):
        check_billing_transition("paid", "queued")


def test_final_states_and_every_state_is_reachable() -> None:
    assert {s.value for s in FINAL_BILLING_STATES} == {"rejected", "paid", "unpaid", "conflict"}
    reachable = {BillingState.ACTIVE}
    for _ in BillingState:
        reachable |= {n for s in reachable for n in TRANSITIONS[s]}
    assert reachable == set(BillingState)


def _session(status: SessionStatus = SessionStatus.COMPLETED, flags: list[str] | None = None,
             settlement_state: str | None = None) -> Session:
    return Session("CP1", "ocpp1.6", "1", datetime(2024, 1, 1, tzinfo=UTC), status=status,
                   flags=flags or [], settlement_state=settlement_state, id=1)


@pytest.mark.parametrize(("session", "expected"), [
    (_session(SessionStatus.ACTIVE, ["meter_went_backwards"]), "active"),
    (_session(), "queued"),
    (_session(flags=["late_samples"]), "queued"),  # not a hold flag
    (_session(flags=["meter_went_backwards"]), "held"),
    (_session(flags=["no_tariff"]), "held"),
    (_session(flags=["meter_went_backwards", "released"]), "released"),
    (_session(flags=["meter_went_backwards", "rejected"]), "rejected"),
    (_session(settlement_state="batched"), "batched"),
    (_session(flags=["meter_went_backwards", "released"], settlement_state="paid"), "paid"),
    (_session(settlement_state="unpaid"), "unpaid"),
    (_session(flags=["rejected"], settlement_state="paid"), "rejected"),
])
def test_billing_state_of_a_session(session: Session, expected: str) -> None:
    assert billing_state(session) == expected


def test_a_settlement_state_read_apart_from_the_session_wins() -> None:
    assert billing_state(_session(), "paid") == "paid"
