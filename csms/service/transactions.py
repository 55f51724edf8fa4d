"""The session a station's 2.0.1 transactionId names: the transactions a station started
under one transactionId, each after the one before it had ended (its transaction counter
restarted), are sessions of their own (csms.service.sessions). The first is stored under
the transactionId, each later one under :func:`~csms.domain.model.reused_transaction_id`
of the one before it, which is flagged :data:`REUSED_LATER`; the latest is kept apart
(``Tx.set_latest_reuse``)."""

from __future__ import annotations

from datetime import datetime

from csms.domain.model import Session, reused_after
from csms.service.ports import Tx

__all__ = ["REUSED", "REUSED_LATER", "current_session"]

# a session started under the transactionId of one that had ended: a hold flag
REUSED = "reused_transaction_id"
# a completed session whose transactionId a later transaction of its station took again:
# not a hold (what it billed stays as it was), the mark that a later session follows it
REUSED_LATER = "transaction_id_reused_later"

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
