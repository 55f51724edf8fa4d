"""Two nodes that start at once while an index-only migration is built CONCURRENTLY
(csms.storage.postgres): the second waits for the migrations' advisory lock, then finds
nothing to do (the module's promise), whatever the first one builds."""

from __future__ import annotations

import asyncio
import zlib

import pytest

from csms.storage import open_repository

pytestmark = pytest.mark.postgres


def _session_row(tx: str) -> str:
    return ("INSERT INTO sessions (station_id, evse_id, ocpp_version, transaction_id,"
            " started_at, status, created_at, updated_at) VALUES ('CP1', 1, '1.6',"
            f" '{tx}', '2026-03-01T10:00:00+00:00', 'active', '2026-03-01T10:00:00+00:00',"
            " '2026-03-01T10:00:00+00:00')")


async def test_two_nodes_starting_at_once_both_open_during_a_concurrent_index_build(
    postgres_url: str,
) -> None:
    """Node A takes the migrations' lock and builds sessions_evse CONCURRENTLY on a table
    with rows; node B, started at the same time, waits for that lock in a statement of
    its own. A CONCURRENTLY build waits for every transaction whose snapshot is older
    than its own, B's waiting statement included, while B waited for A's lock in that
    statement: a deadlock, one of the two nodes failed to open."""
    import asyncpg

    repo = await open_repository(postgres_url)
    await repo.close()
    dsn, _, schema = postgres_url.partition("?search_path=")
    key = zlib.crc32(f"voltledger.migrations:{schema}".encode())
    gate = await asyncpg.connect(dsn, server_settings={"search_path": schema})
    tasks: list[asyncio.Task[object]] = []
    try:
        await gate.execute(_session_row("1"))
        await gate.execute("DROP INDEX sessions_evse")  # as before the upgrade
        await gate.execute("DELETE FROM schema_migrations WHERE version = 210")
        await gate.execute("SELECT pg_advisory_lock($1)", key)  # both nodes queue behind
        tasks = [asyncio.create_task(open_repository(postgres_url)) for _ in range(2)]
        await asyncio.sleep(1.0)
        assert not any(t.done() for t in tasks)  # both wait for the migrations' lock
        await gate.execute("SELECT pg_advisory_unlock($1)", key)
        results = await asyncio.wait_for(
            asyncio.gather(*tasks, return_exceptions=True), 60)
        failures = [r for r in results if isinstance(r, BaseException)]
        for r in results:
            if not isinstance(r, BaseException):
                await r.close()  # type: ignore[attr-defined]
        assert failures == []
        assert await gate.fetchval(
            "SELECT count(*) FROM schema_migrations WHERE version = 210") == 1
    finally:
        for t in tasks:
            if not t.done():
                t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await gate.close()
