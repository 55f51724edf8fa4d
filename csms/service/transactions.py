"""The session a station's 2.0.1 transactionId names: the transactions a station started
under one transactionId, each after the one before it had ended (its transaction counter
restarted), are sessions of their own (csms.service.sessions). The first is stored under
the transactionId, each later one under :func:`~csms.domain.model.reused_transaction_id`
of the one before it, which is flagged :data:`REUSED_LATER`; the latest is kept apart
(``Tx.set_latest_reuse``).

A transaction a station started under the transactionId of one running on another EVSE (a
station numbering its transactions per EVSE) is a session of its own too, stored under
:func:`~csms.domain.model.shared_transaction_id` (the id, its EVSE and the session beside
which it started): an event naming that EVSE finds it (:func:`session_on_evse`)."""

from __future__ import annotations

from datetime import datetime

from csms.domain.model import (
    Session,
    SessionStatus,
    reused_after,
    shared_beside,
    shared_transaction_id,
)
from csms.service.ports import Tx

__all__ = ["REUSED", "REUSED_LATER", "SHARED", "SHARED_WITH", "current_session",
           "running_under", "session_on_evse"]

# a session started under the transactionId of one that had ended: a hold flag
REUSED = "reused_transaction_id"
# a completed session whose transactionId a later transaction of its station took again:
# not a hold (what it billed stays as it was), the mark that a later session follows it
REUSED_LATER = "transaction_id_reused_later"

# a session started under the transactionId of one on another EVSE: a hold flag
SHARED = "shared_transaction_id"
# a session beside which (on another EVSE) a transaction was started under its
# transactionId: not a hold, the mark that its events naming no EVSE may be another's
SHARED_WITH = "transaction_id_shared"

# How many transactions under one id an event is taken back through, from the latest, to
# the one started before its time: beyond them it reaches the one it got to, ended as
# they all are (late data, nothing billed changes), and a station sending events dated
# ever further back costs no more lookups than this.
_BACK = 8


async def current_session(tx: Tx, station_id: str, transaction_id: str,
                          at: datetime | None = None) -> Session | None:
    """The session of the station's ``transaction_id``: the latest of those started under
    it, or (``at``: the time of an event) the latest started at ``at`` or before. An event
    dated before a later transaction's start is an earlier one's (a retry of its events,
    late data): it never reaches the later session. One lookup for a transactionId never
    taken again, two for one taken again (its latest), however often."""
    session = await tx.find_session(station_id, transaction_id)
    if session is None or REUSED_LATER not in session.flags:
        return session
    latest_id = await tx.latest_reuse(station_id, transaction_id)
    latest = await tx.get_session(latest_id) if latest_id is not None else None
    if latest is None:
        return session
    for _ in range(_BACK):
        if at is None or at >= latest.started_at:
            break
        before = reused_after(latest.transaction_id)
        earlier = await tx.get_session(before) if before is not None else None
        if earlier is None or earlier.station_id != station_id:
            break
        latest = earlier
    return latest


async def session_on_evse(tx: Tx, beside: Session, transaction_id: str,
                          evse_id: int | None) -> Session | None:
    """The session the station started under its ``transaction_id`` on EVSE ``evse_id``
    while ``beside``, of that transactionId, was on another EVSE; None for none (or an
    EVSE no transaction is on: none, 0 the whole station)."""
    if evse_id is None or evse_id < 1 or beside.id is None:
        return None
    return await tx.find_session(beside.station_id,
                                 shared_transaction_id(transaction_id, evse_id, beside.id))


async def running_under(tx: Tx, session: Session) -> list[Session]:
    """The active sessions of ``session``'s transactionId: it, if active, and those the
    station started beside it on other EVSEs (flagged :data:`SHARED_WITH`: read only
    then); ``session`` itself first."""
    running = [session] if session.status is SessionStatus.ACTIVE else []
    if SHARED_WITH not in session.flags:
        return running
    for other in await tx.list_sessions(session.station_id, True):
        if other.id is not None and other.id != session.id \
                and shared_beside(other.transaction_id) == session.id:
            read = await tx.get_session(other.id)  # read as a unit reads what it writes
            if read is not None:
                running.append(read)
    return running
