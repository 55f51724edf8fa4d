"""Two transactions that read one session and write it back, on PostgreSQL: the second
write must not overwrite what the first committed in between.

Under READ COMMITTED (several batches at once, several nodes on one database) a unit
reads a session without a row lock, decides in Python and writes it back. A writer of a
completed session besides the station (the operator's release or reject, the
settlement worker's hold, a stop asked at the driver's limit) and a message of the
station that still changes the session (a late MeterValues, a StopTransaction) can
interleave: here the station's unit waits between its read and its write (an event the
test sets) while the other one commits, on two repositories as on two nodes. What was
committed in between must be in the row afterwards; the waiting unit runs again on the
row as it is now (both batch modes: in rounds, and unit by unit).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, TypeVar

import pytest

from csms.domain.model import MeterSample, Session, SessionStatus
from csms.service.billing import billing_state
from csms.service.charging import ChargingService, new_station
from csms.service.holds import decide
from csms.service.limits import REFUSED_FLAG, LimitReached
from csms.service.messages import StopInfo, TransactionEventIn
from csms.service.ports import Repository, Tx
from csms.service.transactions import REUSED_LATER
from csms.storage import open_repository
from settlement.worker import SettlementWorker

pytestmark = pytest.mark.postgres

T = TypeVar("T")
# an hour ago: the stations are registered now, their transactions' times are plausible
T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
STATION = "CP-RACE"


class _PausedTx:
    """A unit's Tx whose first session update waits for ``go`` (after saying so with
    ``reached``): the unit has read the session and decided, its write is yet to come."""

    def __init__(self, tx: Tx, reached: asyncio.Event, go: asyncio.Event) -> None:
        self._tx, self._reached, self._go = tx, reached, go

    def __getattr__(self, name: str) -> Any:
        return getattr(self._tx, name)

    async def update_session(self, session: Session) -> None:
        if not self._go.is_set():
            self._reached.set()
            await self._go.wait()
        await self._tx.update_session(session)


class _PausedRepository:
    """A repository whose units' first session update waits (see :class:`_PausedTx`)."""

    def __init__(self, repo: Repository) -> None:
        self._repo = repo
        self.reached, self.go = asyncio.Event(), asyncio.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._repo, name)

    async def unit(self, fn: Callable[[Tx], Awaitable[T]]) -> T:
        return await self._repo.unit(
            lambda tx: fn(_PausedTx(tx, self.reached, self.go)))  # type: ignore[arg-type]


class Nodes:
    """Two nodes on one database: ``a`` commits meanwhile, ``b``'s units wait at their
    session update until :meth:`interleave` lets them go."""

    def __init__(self, a: Repository, b: Repository) -> None:
        self.repo_a = a
        self.paused = _PausedRepository(b)
        ticks = iter(T0 + timedelta(hours=1, seconds=i) for i in range(10_000))
        clock = lambda: next(ticks)  # noqa: E731 - both nodes read one clock
        self.a = ChargingService(a, clock=clock)
        self.b = ChargingService(self.paused, clock=clock)  # type: ignore[arg-type]

    async def interleave(self, waiting: Awaitable[T], meanwhile: Callable[[], Awaitable[Any]]
                         ) -> T:
        """Run ``waiting`` (on node b) up to its session update, ``meanwhile`` to its
        commit, then let ``waiting`` write."""
        task = asyncio.ensure_future(waiting)
        try:
            async with asyncio.timeout(10):
                await self.paused.reached.wait()
            await meanwhile()
        finally:
            self.paused.go.set()
        async with asyncio.timeout(20):
            return await task

    async def session(self, sid: int) -> Session:
        async def work(tx: Tx) -> Session | None:
            return await tx.get_session(sid)

        session = await self.repo_a.read(work)
        assert session is not None
        return session

    async def queued(self, sid: int) -> bool:
        async def work(tx: Tx) -> bool:
            return any(r["session_id"] == sid for r in await tx.queued_for_settlement(100))

        return await self.repo_a.read(work)


@pytest.fixture(params=["rounds", "in-sequence"])
async def nodes(postgres_url: str, request: pytest.FixtureRequest) -> AsyncIterator[Nodes]:
    a = await open_repository(postgres_url)
    b = await open_repository(postgres_url)
    for repo in (a, b):
        repo.in_rounds = request.param == "rounds"  # type: ignore[attr-defined]

    async def register(tx: Tx) -> None:
        await tx.insert_station(new_station(STATION))

    await a.unit(register)
    try:
        yield Nodes(a, b)
    finally:
        await a.close()
        await b.close()


async def _started(nodes: Nodes, connector: int = 1) -> int:
    txid, _, _ = await nodes.a.start_transaction(STATION, connector, "TAG-1", Decimal("1000"),
                                                 T0 + timedelta(minutes=1))
    return txid


async def _completed(nodes: Nodes, *, held: bool, connector: int = 1) -> int:
    """A completed session; ``held``: its meter went backwards (a hold flag)."""
    txid = await _started(nodes, connector)
    stop = Decimal("900") if held else Decimal("5000")
    await nodes.a.stop_transaction(STATION, StopInfo(txid, stop, T0 + timedelta(minutes=30)))
    session = await nodes.session(txid)
    assert billing_state(session) == ("held" if held else "queued")
    return txid


def _late_meter_values(nodes: Nodes, txid: int) -> Awaitable[Any]:
    """The station's MeterValues for the session after it ended (node b)."""
    return nodes.b.meter_values(STATION, 1, str(txid), [
        MeterSample(T0 + timedelta(minutes=31), "5100")])


@pytest.mark.parametrize("decision", ["rejected", "released"])
async def test_an_operators_decision_survives_a_late_meter_value(
        nodes: Nodes, decision: str) -> None:
    """The operator decides on a held session while a late MeterValues of it is between
    its read and its write: the late unit marked ``late_samples`` on the flags it read,
    and wrote them back without the decision (a rejected session held again, released
    for nobody: a released one queued with no release to settle it by)."""
    sid = await _completed(nodes, held=True)

    async def operator() -> None:
        await nodes.repo_a.unit(lambda tx: decide(tx, sid, decision, actor="op",
                                                  reason=None, now=T0 + timedelta(hours=1)))

    await nodes.interleave(_late_meter_values(nodes, sid), operator)
    session = await nodes.session(sid)
    assert decision in session.flags, session.flags
    assert "late_samples" in session.flags, session.flags
    assert billing_state(session) == decision


def _event(txid: str, kind: str, seq: int, minutes: int) -> TransactionEventIn:
    """A 2.0.1 event of transaction ``txid`` on EVSE 1, ``minutes`` after T0."""
    return TransactionEventIn(kind, T0 + timedelta(minutes=minutes), "Authorized", seq, txid,
                              evse_id=1, connector_id=1)


async def _held_201(nodes: Nodes, txid: str) -> int:
    """A 2.0.1 transaction started and ended without readings on node A: held; its id."""
    await nodes.a.transaction_event(STATION, _event(txid, "Started", 0, 1))
    await nodes.a.transaction_event(STATION, _event(txid, "Ended", 1, 30))

    async def sid_of(tx: Tx) -> int | None:
        session = await tx.find_session(STATION, txid)
        return None if session is None else session.id

    sid = await nodes.repo_a.read(sid_of)
    assert sid is not None and billing_state(await nodes.session(sid)) == "held"
    return sid


def _rejects(nodes: Nodes, sid: int) -> Callable[[], Awaitable[None]]:
    """The operator's rejection of session ``sid`` on node A, for Nodes.interleave."""
    async def operator() -> None:
        await nodes.repo_a.unit(lambda tx: decide(tx, sid, "rejected", actor="op",
                                                  reason=None, now=T0 + timedelta(hours=1)))
    return operator


async def test_a_rejection_survives_a_201_event_after_the_end(nodes: Nodes) -> None:
    """2.0.1: the operator rejects a held session while an Updated event the station sent
    after its Ended one is between its read and its write: that unit moved the session's
    last seqNo on the flags it read and wrote them back without the rejection."""
    sid = await _held_201(nodes, "TX-201")
    await nodes.interleave(nodes.b.transaction_event(STATION, _event("TX-201", "Updated", 2, 31)),
                           _rejects(nodes, sid))
    session = await nodes.session(sid)
    assert "rejected" in session.flags, session.flags
    assert session.last_seq_no == 2
    assert billing_state(session) == "rejected"


async def test_the_workers_hold_survives_a_late_meter_value(nodes: Nodes) -> None:
    """The settlement worker takes a queued session out of the queue and holds it (no
    tariff) while a late MeterValues of it is between its read and its write: without
    the hold flag the session is neither queued nor held, and reads as queued for
    settlement again."""
    sid = await _completed(nodes, held=False)
    assert await nodes.queued(sid)
    # no chain used (so no chain's default number of confirmations to ask either)
    worker = SettlementWorker(nodes.repo_a, None, confirmations=1)  # type: ignore[arg-type]

    async def hold() -> None:
        await nodes.repo_a.unit(lambda tx: worker._hold(tx, sid, "no_tariff"))

    await nodes.interleave(_late_meter_values(nodes, sid), hold)
    session = await nodes.session(sid)
    assert "no_tariff" in session.flags, session.flags
    assert "late_samples" in session.flags, session.flags
    assert billing_state(session) == "held"
    assert not await nodes.queued(sid)


async def test_a_refused_limit_stop_does_not_undo_the_stop(nodes: Nodes) -> None:
    """The station did not take the stop asked at the driver's limit; while that answer's
    unit is between its read (the session still active) and its write, the station's
    StopTransaction completes the session. The answer's unit wrote the whole session it
    read back: active again, its stop and energy gone, while queued for settlement."""
    txid = await _started(nodes)
    reached = LimitReached(txid, str(txid), 100, 100, 0)

    async def stop() -> None:
        await nodes.a.stop_transaction(
            STATION, StopInfo(txid, Decimal("5000"), T0 + timedelta(minutes=30)))

    await nodes.interleave(
        nodes.b.limit_stop_answered(STATION, reached, "RemoteStopTransaction", None), stop)
    session = await nodes.session(txid)
    assert session.status is SessionStatus.COMPLETED
    assert session.energy_wh == 4000
    assert session.stopped_at == T0 + timedelta(minutes=30)
    assert REFUSED_FLAG not in session.flags  # it ended meanwhile: nothing was refused
    assert billing_state(session) == "queued" and await nodes.queued(txid)


async def test_a_unit_that_read_two_sessions_checks_both(nodes: Nodes) -> None:
    """A unit reads two sessions, then updates both: the first update must not leave the
    second one's unchecked (written in full over what another node committed)."""
    first = await _completed(nodes, held=False)
    second = await _completed(nodes, held=False, connector=2)
    assert first != second

    async def both(tx: Tx) -> None:
        one, two = await tx.get_session(first), await tx.get_session(second)
        assert one is not None and two is not None
        one.flag("late_samples")
        await tx.update_session(one)  # waits here the first time
        two.flag("late_samples")
        await tx.update_session(two)

    async def hold(tx: Tx) -> None:
        session = await tx.get_session(second)
        assert session is not None
        session.flag("no_tariff")
        await tx.update_session(session)

    await nodes.interleave(nodes.paused.unit(both), lambda: nodes.repo_a.unit(hold))
    assert "late_samples" in (await nodes.session(first)).flags
    flags = (await nodes.session(second)).flags
    assert "no_tariff" in flags and "late_samples" in flags, flags


async def test_a_close_counts_a_meter_value_committed_between_its_read_and_its_write(
        nodes: Nodes) -> None:
    """An operator closes an active session on node b (``csms sessions close``) while the
    station's MeterValues of it commits on node a between the close's read (its readings)
    and its write. The close billed the readings it had read, but named only the columns
    it changed: the running energy the MeterValues had raised stayed in the row, above
    the meter's stop the close wrote (a receipt whose energy is not stop - start), and
    the reading went uncounted. The close must run again on the readings as they are."""
    txid = await _started(nodes)
    await nodes.a.meter_values(STATION, 1, str(txid),
                               [MeterSample(T0 + timedelta(minutes=10), "3000")])
    assert (await nodes.session(txid)).energy_wh == 2000

    async def reading() -> None:
        await nodes.a.meter_values(STATION, 1, str(txid),
                                   [MeterSample(T0 + timedelta(minutes=20), "5000")])

    await nodes.interleave(nodes.b.close_session(txid, actor="op", reason=None), reading)
    session = await nodes.session(txid)
    assert session.status is SessionStatus.COMPLETED
    assert session.meter_start_wh is not None and session.meter_stop_wh is not None
    assert session.energy_wh == session.meter_stop_wh - session.meter_start_wh, (
        session.meter_start_wh, session.meter_stop_wh, session.energy_wh)
    assert session.energy_wh == 4000
    assert session.stopped_at == T0 + timedelta(minutes=20)


async def test_a_rejection_survives_a_transaction_id_started_again(nodes: Nodes) -> None:
    """2.0.1: the operator rejects a held session while a Started event that takes its
    transactionId again (a station whose counter restarted) is between its read of the
    ended session and its write of it. That unit stored the new session first, and a
    session stored in the unit made it forget what it had read of the others: the ended
    one, marked ``reused_later``, was written back in full, unchecked, without the
    rejection (held again, for an operator who had decided)."""
    sid = await _held_201(nodes, "TX-AGAIN")
    await nodes.interleave(
        nodes.b.transaction_event(STATION, _event("TX-AGAIN", "Started", 0, 40)),
        _rejects(nodes, sid))
    session = await nodes.session(sid)
    assert "rejected" in session.flags, session.flags
    assert REUSED_LATER in session.flags, session.flags
    assert billing_state(session) == "rejected"
