"""Retention of station events: those older than ``CSMS_EVENT_RETENTION_DAYS`` are deleted.

What stations report beside their transactions (notifications, security events,
DataTransfer, connections, status history...) is a row of ``station_events`` each, bounded
per station and hour by the quotas (csms.service.quota) but, without this, kept for ever:
a station at its quotas adds ~1.5 MiB an hour, and an honest fleet's table grows without
end too.

Theory of operation. :func:`prune_station_events` reads the events stored before a time,
oldest first, a batch at a time from a cursor (the index on ``(ts, id)``), and deletes
them in the same unit of work (the repository's group commit): each unit is short, holds
SQLite's write turn for a few thousand rows at most, and is followed by a pause, so
stations' messages are never kept waiting behind it. Deleting by id is idempotent: two
nodes, or a node and ``csms stations prune-events``, running at once delete nothing twice
and harm nothing; ``csms serve`` still takes a lease (:data:`RETENTION_LEASE`) so one node
of a cluster does the work, and renews it in each unit.

What a billing decision still needs stays: an event whose payload names a session (any
field ending in ``session_id``: a hold, a stop that differs, signed data that does not
match, an overlap...) is kept while that session's billing state is not final (paid,
unpaid, conflict or rejected: csms.service.billing), however old it is; it goes at the
first run after the session settles. An event naming no session, or a session that does
not exist, goes by its age alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from csms.domain.model import Session
from csms.service.billing import FINAL_BILLING_STATES, billing_state
from csms.service.ports import Repository, Tx

__all__ = [
    "RETENTION_BATCH",
    "RETENTION_LEASE",
    "RETENTION_PAUSE",
    "RETENTION_SWEEP_SECONDS",
    "PruneResult",
    "named_sessions",
    "prune_station_events",
    "run_retention",
]

log = logging.getLogger("csms.service")

RETENTION_BATCH = 500  # events read and deleted per unit of work at most (~10-50 ms of the turn)
RETENTION_PAUSE = 0.05  # seconds between two units: stations' writes take their turns
RETENTION_SWEEP_SECONDS = 3600.0  # csms serve looks for events past retention hourly
RETENTION_LEASE = "event-retention"  # one node of a cluster prunes at a time
RETENTION_LEASE_TTL = timedelta(minutes=5)  # renewed by each unit

Progress = Callable[[int, int], None]  # (deleted so far, deleted by this unit)


@dataclass(slots=True)
class PruneResult:
    deleted: int = 0
    kept: int = 0  # past retention, kept for a session not settled yet
    units: int = 0
    stopped: bool = False  # another node holds the lease, or asked to stop

    def as_json(self) -> dict[str, Any]:
        return {"deleted": self.deleted, "kept": self.kept, "units": self.units,
                "stopped": self.stopped}


def named_sessions(payload: Any) -> set[int]:
    """The session ids an event's payload names: the integers of its top-level fields
    whose names end in ``session_id`` (``session_id``, ``other_session_id``...)."""
    if not isinstance(payload, dict):
        return set()
    return {v for k, v in payload.items()
            if k.endswith("session_id") and isinstance(v, int) and not isinstance(v, bool)}


def _final(session: Session | None) -> bool:
    return session is None or billing_state(session) in FINAL_BILLING_STATES


async def _unit(tx: Tx, before: datetime, after: tuple[str, int] | None, batch: int,
                holder: str | None, settled: set[int]
                ) -> tuple[int, int, tuple[str, int] | None] | None:
    """One unit: (deleted, kept, the cursor on), or None when ``holder`` lost the lease."""
    if holder is not None and not await tx.take_lease(RETENTION_LEASE, holder,
                                                      RETENTION_LEASE_TTL):
        return None
    rows = await tx.old_station_events(before, after, batch)
    if not rows:
        return 0, 0, None
    gone: list[int] = []
    kept = 0
    pending: set[int] = set()  # not final in this unit's transaction: read once in it
    for row in rows:
        keep = False
        for session_id in named_sessions(row["payload"]) - settled:
            if session_id in pending:
                keep = True
            elif _final(await tx.get_session(session_id)):
                settled.add(session_id)  # final for this run (a reorganisation aside)
            else:
                pending.add(session_id)
                keep = True
        if keep:
            kept += 1
        else:
            gone.append(int(row["id"]))
    deleted = await tx.delete_station_events(gone)
    last = rows[-1]
    return deleted, kept, (last["ts"], int(last["id"]))


async def prune_station_events(
    repo: Repository, before: datetime, *, batch: int = RETENTION_BATCH,
    pause: float = RETENTION_PAUSE, holder: str | None = None,
    stop: asyncio.Event | None = None, progress: Progress | None = None,
) -> PruneResult:
    """Delete the station events stored before ``before`` that no unsettled session needs,
    ``batch`` at most a unit, ``pause`` seconds between units. ``holder``: take and renew
    :data:`RETENTION_LEASE` in each unit and stop when another holds it (csms serve);
    None: no lease (the operator's command)."""
    result = PruneResult()
    after: tuple[str, int] | None = None
    settled: set[int] = set()
    while True:
        if stop is not None and stop.is_set():
            result.stopped = True
            return result

        async def work(tx: Tx, after: tuple[str, int] | None = after
                       ) -> tuple[int, int, tuple[str, int] | None] | None:
            return await _unit(tx, before, after, batch, holder, settled)

        step = await repo.unit(work)
        if step is None:
            result.stopped = True
            return result
        deleted, kept, after = step
        if after is None:
            return result
        result.deleted += deleted
        result.kept += kept
        result.units += 1
        if progress is not None:
            progress(result.deleted, deleted)
        if pause > 0:
            await asyncio.sleep(pause)


async def run_retention(repo: Repository, days: float, holder: str,
                        clock: Callable[[], datetime], stop: asyncio.Event,
                        every: float = RETENTION_SWEEP_SECONDS,
                        on_pruned: Callable[[int], None] | None = None,
                        on_swept: Callable[[PruneResult], None] | None = None) -> None:
    """csms serve's task: at start and then every ``every`` seconds, prune the events older
    than ``days`` under the lease; a storage error is raised (the supervisor starts the
    task again after a backoff). ``on_pruned``: the rows each unit deleted, as it commits
    (the node's metrics); ``on_swept``: each sweep's result once it ends."""
    def unit_done(_total: int, deleted: int) -> None:
        if on_pruned is not None and deleted:
            on_pruned(deleted)

    while not stop.is_set():
        result = await prune_station_events(repo, clock() - timedelta(days=days),
                                            holder=holder, stop=stop, progress=unit_done)
        if on_swept is not None:
            on_swept(result)
        if result.deleted or result.kept:
            log.info("= station events older than %s days: %d deleted, %d kept for"
                     " unsettled sessions", days, result.deleted, result.kept)

        async def free(tx: Tx) -> None:  # another node's lease stays its own
            await tx.drop_lease(RETENTION_LEASE, holder)

        await repo.unit(free)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), every)
