"""A session held for an operator's decision against the driver's notice period: the
contract lets a driver withdraw, or lower the terms, a notice period after announcing it,
and a held session has no time limit. Released after the notice ran out, its entry may be
refused on chain and its host never paid: the worker tells the operator in time."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from csms.service.billing import billing_state
from csms.service.defaults import HOLD_DECISION_MARGIN
from settlement import worker as worker_module
from settlement.chain import NOTICE_PERIOD_S, Chain
from settlement.worker import SettlementWorker

from .conftest import T0, add_sessions


async def hold(repo: Any, sid: int, flag: str = "meter_went_backwards") -> None:
    """Held as the charging service holds a session: flagged, never queued."""

    async def work(tx: Any) -> None:
        session = await tx.get_session(sid)
        session.flag(flag)
        await tx.update_session(session)
        await tx.dequeue_settlement(sid)

    await repo.unit(work)


async def test_the_worker_warns_once_before_a_held_session_s_deadline_and_once_after(
    repo: Any, memory_chain: Chain, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The worker keeps the contract's notice period where the operator's tools read it,
    and on its passes warns once (a log line and a ``hold_deadline`` station event) when a
    held session is within a day of its deadline, and once more when the deadline passed.
    What the session bills does not change: it stays held for the operator."""
    caplog.set_level(logging.WARNING, logger="settlement.worker")
    [sid, other] = await add_sessions(repo, 2)
    await hold(repo, sid)
    # session 1 started at T0 (the central system heard of it later, now): its deadline
    deadline = T0 + timedelta(seconds=NOTICE_PERIOD_S) - HOLD_DECISION_MARGIN
    clock = {"now": deadline - timedelta(days=2)}
    monkeypatch.setattr(worker_module, "_now", lambda: clock["now"])
    worker = SettlementWorker(repo, memory_chain)

    async def events() -> list[dict[str, Any]]:
        return await repo.read(lambda tx: tx.list_station_events("CP1", "hold_deadline"))

    async def state(tx: Any) -> tuple[str, list[str]]:
        s = await tx.get_session(sid)
        return billing_state(s), s.flags

    await worker.run_once()
    assert await repo.read(lambda tx: tx.ledger_value("notice_period")) == str(NOTICE_PERIOD_S)
    assert await events() == []
    assert "decide" not in caplog.text

    clock["now"] = deadline - timedelta(hours=12)
    await worker.run_once()
    await worker.run_once()  # once only
    [near] = await events()
    assert near["payload"] == {"session_id": sid, "decide_by": deadline.isoformat(),
                               "passed": False}
    [line] = [r.getMessage() for r in caplog.records if "decide" in r.getMessage()]
    assert f"session {sid}" in line and deadline.isoformat() in line, line

    clock["now"] = deadline + timedelta(minutes=1)
    caplog.clear()
    await worker.run_once()
    await SettlementWorker(repo, memory_chain).run_once()  # another worker: once only
    passed, _ = await events()  # newest first
    assert passed["payload"] == {"session_id": sid, "decide_by": deadline.isoformat(),
                                 "passed": True}
    [line] = [r.getMessage() for r in caplog.records if "deadline" in r.getMessage()]
    assert f"session {sid}" in line and "unpaid" in line, line

    # what it bills is the operator's to decide, as before
    held, flags = await repo.read(state)
    assert held == "held" and "meter_went_backwards" in flags
    # the settled session was never the operator's: no warning for it
    settled = await repo.read(lambda tx: tx.session_settlement(other))
    assert settled["settlement_state"] in ("paid", "unpaid")
    assert {e["payload"]["session_id"] for e in await events()} == {sid}


async def test_a_session_held_past_its_deadline_when_first_seen_is_warned_once(
    repo: Any, memory_chain: Chain, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A held session whose deadline passed before any worker saw it (a worker started
    late, a station that reported the session days after it ran) gets the warning that
    the deadline passed, once, not the one that it nears."""
    [sid] = await add_sessions(repo, 1)
    await hold(repo, sid, "stop_lost")
    monkeypatch.setattr(worker_module, "_now", lambda: datetime.now(UTC))  # months after T0
    await SettlementWorker(repo, memory_chain).run_once()
    await SettlementWorker(repo, memory_chain).run_once()
    [event] = await repo.read(lambda tx: tx.list_station_events("CP1", "hold_deadline"))
    assert (event["payload"]["session_id"], event["payload"]["passed"]) == (sid, True)


async def test_the_deadline_check_reads_the_held_sessions_only(
    db_url: str, memory_chain: Chain, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each minute the worker looks for held sessions due a warning: it reads the held ones
    (by their flags, through the index the console's held list uses), not every unsettled
    session, and still warns of the right ones, on SQLite and PostgreSQL: a held session
    near its deadline and one past it; never a queued one, a released one or a rejected
    one (which its deadline would have reached too, were they held)."""
    from csms.storage.open import open_repository
    from csms.storage.sql import SqlTx

    repo = await open_repository(db_url)
    try:
        ids = await add_sessions(repo, 5)  # started an hour apart from T0
        passed, near, queued, released, rejected = ids
        for sid in (passed, near, released, rejected):
            await hold(repo, sid)

        async def decide_some(tx: Any) -> None:
            for sid, flag in ((released, "released"), (rejected, "rejected")):
                s = await tx.get_session(sid)
                s.flag(flag)
                await tx.update_session(s)

        await repo.unit(decide_some)
        first = T0 + timedelta(seconds=NOTICE_PERIOD_S) - HOLD_DECISION_MARGIN
        # the first session's deadline passed half an hour ago, the second's is in half an
        # hour; the others' (an hour and more later) are as near as that
        monkeypatch.setattr(worker_module, "_now", lambda: first + timedelta(minutes=30))

        async def every_unsettled(*args: Any, **kwargs: Any) -> Any:
            raise AssertionError("the deadline check read every unsettled session")

        monkeypatch.setattr(SqlTx, "unsettled_sessions", every_unsettled)
        worker = SettlementWorker(repo, memory_chain)
        await worker._acquire()  # the settlement lease, as a pass takes it first
        assert await worker.check_hold_deadlines() == 2
        assert await worker.check_hold_deadlines() == 0  # once only

        async def flags(tx: Any) -> dict[int, list[str]]:
            return {sid: [f for f in (await tx.get_session(sid)).flags
                          if f.startswith("hold_deadline")] for sid in ids}

        assert await repo.read(flags) == {
            passed: ["hold_deadline_passed"], near: ["hold_deadline_near"], queued: [],
            released: [], rejected: []}
        events = await repo.read(lambda tx: tx.list_station_events("CP1", "hold_deadline"))
        assert sorted((e["payload"]["session_id"], e["payload"]["passed"])
                      for e in events) == [(passed, True), (near, False)]
    finally:
        await repo.close()
