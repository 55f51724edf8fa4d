"""A unit of work run first off the database's write turn, then stored by a small unit that
checks what it read is unchanged.

On SQLite the processes of a node take turns writing the file, and a unit runs while its
process holds the turn: the turn, not the cores, bounds the rate (docs/benchmarks.md). A
unit whose only reads are one session's row and a station's registration (which never
changes) can run first against the read connection, which sees only what is committed:
what it would write is kept, not written (:class:`Probe`). The unit that stores it then
updates the session only if its row still holds every value that run read
(``Tx.update_session_if``), and writes what was kept; if the row changed meanwhile
(another message of the session stored first), it runs the unit as usual, in the same
turn. Either way what is stored is what the unit decides from the session as stored: the
first run only moves its reads and decisions off the turn.

A unit that asks its first run for anything else - another read, a station event, a second
session, no session at all - ends that run (:class:`NotOptimistic`) and runs as usual; so
does one that fails there, to fail as usual. A repository whose reads may see what is not
committed (``Repository.optimistic`` false: one SQLite connection for both, PostgreSQL's
reads being trips of their own) runs every unit as usual.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from typing import Any, NoReturn, TypeVar, cast

from csms.domain.model import Session, Station
from csms.service.ports import Repository, Tx

__all__ = ["NotOptimistic", "Probe", "unit"]

T = TypeVar("T")


class NotOptimistic(Exception):
    """What a unit asked of its first run that the run cannot answer or keep."""


class Probe:
    """The ``Tx`` of a unit's first run: a session and stations read from a committed
    snapshot, the session's update and the readings and bus events of the unit kept."""

    def __init__(self, read: Tx) -> None:
        self._read = read
        self.before: Session | None = None  # the session as read
        self.session: Session | None = None  # the same, as the unit changed it
        self.updated = False
        self.writes: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []

    async def find_session(self, station_id: str, transaction_id: str) -> Session | None:
        if self.session is not None:
            raise NotOptimistic("a second read of a session")
        session = await self._read.find_session(station_id, transaction_id)
        if session is None:
            raise NotOptimistic("no session")  # the unit then reads more
        self.before = dataclasses.replace(session, flags=list(session.flags))
        self.session = session
        return session

    async def get_station(self, station_id: str) -> Station | None:
        return await self._read.get_station(station_id)

    async def update_session(self, session: Session) -> None:
        if session is not self.session:
            raise NotOptimistic("an update of a session not read")
        self.updated = True

    async def add_samples(self, *args: Any, **kwargs: Any) -> None:
        self.writes.append(("add_samples", args, kwargs))

    async def add_outbox(self, *args: Any, **kwargs: Any) -> None:
        self.writes.append(("add_outbox", args, kwargs))

    def __getattr__(self, name: str) -> NoReturn:
        raise NotOptimistic(name)


async def unit(repo: Repository, work: Callable[[Tx], Awaitable[T]]) -> T:
    """``repo.unit(work)``, with ``work`` run first against committed data where the
    repository allows it and ``work`` asks nothing else of it (module docstring)."""
    if not repo.optimistic:
        return await repo.unit(work)
    probe: Probe | None = None

    async def first(read: Tx) -> T:
        nonlocal probe
        probe = Probe(read)
        return await work(cast(Tx, probe))

    try:
        result = await repo.read(first)
    except Exception:  # not for this run (NotOptimistic), or to fail as usual
        return await repo.unit(work)
    assert probe is not None
    kept = probe
    if not kept.updated or kept.session is None or kept.before is None:
        return await repo.unit(work)  # nothing read was checked: as usual

    async def store(tx: Tx) -> T:
        assert kept.session is not None and kept.before is not None
        if not await tx.update_session_if(kept.session, kept.before):
            return await work(tx)  # the session changed since it was read
        for name, args, kwargs in kept.writes:
            await getattr(tx, name)(*args, **kwargs)
        return result

    return await repo.unit(store)
