"""2.0.1 TransactionEvent seqNos, recorded once per session (migration 0110: keyed by the
session's id, where they were keyed by station and transactionId) with the first copy's
digest (0355), on SQLite and PostgreSQL."""

from __future__ import annotations

import re

from csms.service.ports import Repository, Tx
from csms.storage import open_repository
from csms.storage.migrations import migrations_for

from .test_tx import session, unit


def _old_table(dialect: str) -> str:
    """tx_events as migration 0001 declared it."""
    [core] = [m for m in migrations_for(dialect) if m.version == 1]
    table = re.search(r"CREATE TABLE tx_events \(.*?\);", core.sql, re.S)
    assert table
    return table.group(0).rstrip(";")


async def test_a_seq_no_is_new_once_per_session(repo: Repository) -> None:
    """The same transactionId on two stations is two sessions: each has its own seqNos."""
    async def work(tx: Tx) -> list[bool]:
        a = await tx.insert_session(session("EV1", transaction_id="tx1"))
        b = await tx.insert_session(session("EV2", transaction_id="tx1"))
        return [await tx.record_tx_event(a, 0),
                await tx.record_tx_event(b, 0),
                await tx.record_tx_event(a, 0),
                await tx.record_tx_event(a, 2),
                await tx.record_tx_event(a, 1),
                await tx.record_tx_event(a, 2)]

    assert await unit(repo, work) == [True, True, False, True, True, False]


async def test_the_first_copys_digest_is_kept_until_forgotten(repo: Repository) -> None:
    """An event's digest (csms.service.retries) is the first copy's; once forgotten (its
    conflict recorded) nothing is compared with it, and the seqNo is still taken; another
    event under the seqNo (a counter restarted) has its own kept."""
    sid = await unit(repo, lambda tx: tx.insert_session(session("EV1", transaction_id="tx1")))

    async def work(tx: Tx) -> list[object]:
        return [await tx.record_tx_event(sid, 0, 2**62 - 1),
                await tx.record_tx_event(sid, 0, 12),
                await tx.tx_event_digest(sid, 0),
                await tx.tx_event_digest(sid, 1),
                await tx.set_tx_event_digest(sid, 0, None),
                await tx.tx_event_digest(sid, 0),
                await tx.record_tx_event(sid, 0, 12),
                await tx.tx_event_digest(sid, 0),
                await tx.set_tx_event_digest(sid, 0, 2**62 + 3),  # another event's number
                await tx.tx_event_digest(sid, 0)]

    assert await unit(repo, work) == [True, False, 2**62 - 1, None, None, None, False, None,
                                      None, 2**62 + 3]


async def test_migration_moves_every_event_to_its_session(db: str) -> None:
    """A database as it was before 0110 (events keyed by station and transactionId) opened
    by this build: each event belongs to the session of its station and transactionId
    (0110), only its key is kept (0180), and a retry of a moved seqNo is still a retry."""
    repo = await open_repository(db)
    dialect = str(repo.dialect)  # type: ignore[attr-defined]
    try:
        ev1 = await unit(repo, lambda tx: tx.insert_session(session("EV1", transaction_id="tx1")))
        ev2 = await unit(repo, lambda tx: tx.insert_session(session("EV2", transaction_id="tx1")))
        other = await unit(repo, lambda tx: tx.insert_session(session("EV1",
                                                                      transaction_id="tx2")))
    finally:
        await repo.close()
    old = [("EV1", "tx1", 0, "Started", 0), ("EV1", "tx1", 1, "Updated", 1),
           ("EV2", "tx1", 0, "Started", 0), ("EV1", "tx2", 7, "Updated", 0),
           ("EV1", "tx1", 2**62, "Ended", 0)]

    async def back_to_0100(tx: Tx) -> None:
        await tx.execute("DROP TABLE tx_events")
        await tx.execute(_old_table(dialect))
        await tx.execute("DELETE FROM schema_migrations WHERE version IN (110, 180, 355)")
        for station_id, transaction_id, seq_no, event_type, offline in old:
            await tx.execute(
                "INSERT INTO tx_events (station_id, transaction_id, seq_no, event_type,"
                " offline, received_at) VALUES (?, ?, ?, ?, ?, ?)",
                station_id, transaction_id, seq_no, event_type, offline,
                "2026-03-01T10:00:00.000000+00:00")

    repo = await open_repository(db)
    try:
        await unit(repo, back_to_0100)
    finally:
        await repo.close()
    repo = await open_repository(db)  # applies 0110, then 0180, then 0355
    try:
        rows = await repo.read(lambda tx: tx.fetchall(
            "SELECT * FROM tx_events ORDER BY session_id, seq_no"))
        # no digest of an event stored before digests were: nothing to compare a copy with
        assert rows == [{"session_id": ev1, "seq_no": 0, "digest": None},
                        {"session_id": ev1, "seq_no": 1, "digest": None},
                        {"session_id": ev1, "seq_no": 2**62, "digest": None},
                        {"session_id": ev2, "seq_no": 0, "digest": None},
                        {"session_id": other, "seq_no": 7, "digest": None}]

        async def again(tx: Tx) -> list[bool]:
            return [await tx.record_tx_event(ev1, 1),
                    await tx.record_tx_event(ev2, 1),
                    await tx.record_tx_event(other, 7)]

        assert await unit(repo, again) == [False, True, False]
    finally:
        await repo.close()
