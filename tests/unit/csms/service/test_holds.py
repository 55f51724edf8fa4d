"""An operator's release or rejection of a session held back from settlement."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from csms.domain.model import Session, SessionStatus
from csms.service.billing import billing_state
from csms.service.holds import HoldError, decide
from csms.service.ports import Tx
from support.memory import MemoryRepository, MemoryState

T0 = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
NOW = datetime(2026, 3, 2, tzinfo=UTC)


@pytest.fixture
def repo() -> MemoryRepository:
    state = MemoryState()
    state.sessions = {
        1: Session("CP1", "ocpp1.6", "1", T0, id=1, status=SessionStatus.COMPLETED,
                   flags=["meter_went_backwards"]),
        2: Session("CP1", "ocpp1.6", "2", T0, id=2, status=SessionStatus.COMPLETED),
        3: Session("CP1", "ocpp1.6", "3", T0, id=3, flags=["meter_went_backwards"]),
        4: Session("CP1", "ocpp1.6", "4", T0, id=4, status=SessionStatus.COMPLETED,
                   flags=["no_tariff"], settlement_state="batched"),
    }
    return MemoryRepository(state)


async def run(repo: MemoryRepository, session_id: int, decision: str) -> dict[str, Any]:
    async def work(tx: Tx) -> dict[str, Any]:
        return await decide(tx, session_id, decision, actor="op", reason="checked", now=NOW)

    return await repo.unit(work)


async def test_release_queues_the_session_and_audits(repo: MemoryRepository) -> None:
    result = await run(repo, 1, "released")
    assert result == {"session_id": 1, "decision": "released",
                      "holds": ["meter_went_backwards"], "reason": "checked"}
    state = repo.state
    assert billing_state(state.sessions[1]) == "released"
    assert state.settlement_queue == {1: NOW}
    [event] = state.station_events
    assert (event["kind"], event["payload"]["actor"]) == ("billing_decision", "op")
    [audit] = state.audit
    assert (audit["action"], audit["target"], audit["ok"]) == ("sessions.release", "1", True)


async def test_reject_keeps_it_out_of_settlement(repo: MemoryRepository) -> None:
    await run(repo, 1, "rejected")
    assert billing_state(repo.state.sessions[1]) == "rejected"
    assert repo.state.settlement_queue == {}
    assert repo.state.audit[0]["action"] == "sessions.reject"
    with pytest.raises(HoldError, match=r"not held for a decision \(it is rejected\)"):
        await run(repo, 1, "released")  # decided once


@pytest.mark.parametrize(("session_id", "decision", "message"), [
    (2, "released", "not held for a decision \\(it is queued\\)"),
    (3, "released", "still active"),
    (4, "rejected", "it is batched"),
    (9, "released", "no session 9"),
    (1, "paid", "unknown decision"),
])
async def test_decisions_that_do_not_apply(repo: MemoryRepository, session_id: int,
                                           decision: str, message: str) -> None:
    with pytest.raises(HoldError, match=message):
        await run(repo, session_id, decision)
    assert repo.state.audit == [] and repo.state.settlement_queue == {}


def test_a_held_session_is_decided_before_its_driver_s_notice_can_run_out() -> None:
    """A driver may announce a withdrawal (or lower terms) at any time after the session's
    start was checked against the escrow: a held session must be decided, and settled,
    before the notice period counted from its start ends. Its start is the earlier of
    the station's time and the central system's, as neither is trusted alone."""
    from datetime import timedelta

    from csms.service.defaults import HOLD_DECISION_MARGIN
    from csms.service.holds import decide_by

    week = 7 * 86400
    held = Session("CP1", "ocpp1.6", "1", T0, stopped_at=T0 + timedelta(hours=3),
                   status=SessionStatus.COMPLETED, flags=["meter_went_backwards"],
                   created_at=T0 + timedelta(minutes=1))
    assert decide_by(held, week) == T0 + timedelta(days=7) - HOLD_DECISION_MARGIN
    # a station clock ahead: the central system heard of the start an hour before
    held.created_at = T0 - timedelta(hours=1)
    assert decide_by(held, week) == T0 + timedelta(days=7, hours=-1) - HOLD_DECISION_MARGIN
    # the notice not known yet (no settlement worker has read the contract): no time
    assert decide_by(held, None) is None
    # not held: queued and settled sessions are the settlement delay's, never this
    for session in (Session("CP1", "ocpp1.6", "2", T0, status=SessionStatus.COMPLETED),
                    Session("CP1", "ocpp1.6", "3", T0, flags=["meter_went_backwards"]),
                    Session("CP1", "ocpp1.6", "4", T0, status=SessionStatus.COMPLETED,
                            flags=["meter_went_backwards", "released"]),
                    Session("CP1", "ocpp1.6", "5", T0, status=SessionStatus.COMPLETED,
                            flags=["meter_went_backwards", "rejected"])):
        assert decide_by(session, week) is None


def test_a_held_session_s_deadline_is_ahead_near_or_passed_by_one_rule() -> None:
    """Where the present stands to a held session's time to be decided by: near within a
    day of it (when the settlement worker warns), passed at it; the fields every view
    shows (csms sessions list/show --json, the admin API, the console) from one function."""
    from datetime import timedelta

    from csms.service.defaults import HOLD_DEADLINE_WARNING, HOLD_DECISION_MARGIN
    from csms.service.holds import deadline_state, hold_fields

    at = T0 + timedelta(days=7)
    assert deadline_state(None, at) is None
    assert deadline_state(at, at - HOLD_DEADLINE_WARNING - timedelta(seconds=1)) == "ahead"
    assert deadline_state(at, at - HOLD_DEADLINE_WARNING) == "near"
    assert deadline_state(at, at - timedelta(seconds=1)) == "near"
    assert deadline_state(at, at) == "passed"
    held = Session("CP1", "ocpp1.6", "1", T0, stopped_at=T0 + timedelta(hours=3),
                   status=SessionStatus.COMPLETED, flags=["meter_went_backwards"])
    deadline = T0 + timedelta(days=7) - HOLD_DECISION_MARGIN
    assert hold_fields(held, 7 * 86400, deadline) == {
        "billing": "held", "decide_by": deadline.isoformat(), "decide_by_state": "passed"}
    assert hold_fields(held, None, deadline) == {
        "billing": "held", "decide_by": None, "decide_by_state": None}
    held.flag("released")
    assert hold_fields(held, 7 * 86400, deadline) == {
        "billing": "released", "decide_by": None, "decide_by_state": None}
