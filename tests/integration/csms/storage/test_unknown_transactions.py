"""Migration 0120: the held sessions of 1.6 stops for transactions the central system never
assigned move from the station's transactionId to one the central system never assigns
(an id it could assign next made that station's later starts fail), on SQLite and
PostgreSQL."""

from __future__ import annotations

from csms.service.ports import Tx
from csms.storage import open_repository

from .test_tx import session, unit


async def test_migration_moves_the_held_unknown_stops_to_ids_of_their_own(db: str) -> None:
    repo = await open_repository(db)
    try:
        async def as_before(tx: Tx) -> None:
            # as the build before 0120 kept them
            await tx.insert_session(session("CP1", transaction_id="5",
                                            flags=["unknown_transaction"]))
            await tx.insert_session(session("CP2", transaction_id="6",
                                            flags=["time_implausible", "unknown_transaction"]))
            # what stays: an assigned 1.6 id, a 2.0.1 station's own id, one moved already
            await tx.insert_session(session("CP1", transaction_id="7"))
            await tx.insert_session(session("EV1", ocpp_version="ocpp2.0.1", transaction_id="8",
                                            flags=["unknown_transaction"]))
            await tx.insert_session(session("CP1", transaction_id="unknown-9",
                                            flags=["unknown_transaction"]))
            await tx.execute("DELETE FROM schema_migrations WHERE version = 120")

        await unit(repo, as_before)
    finally:
        await repo.close()
    repo = await open_repository(db)  # applies 0120
    try:
        rows = await repo.read(lambda tx: tx.fetchall(
            "SELECT station_id, transaction_id FROM sessions ORDER BY id"))
        assert [(r["station_id"], r["transaction_id"]) for r in rows] == [
            ("CP1", "unknown-5"), ("CP2", "unknown-6"), ("CP1", "7"), ("EV1", "8"),
            ("CP1", "unknown-9")]
    finally:
        await repo.close()
