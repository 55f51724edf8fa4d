"""Several nodes on one database: node liveness and leases (no home-made consensus).

Every node records itself in ``nodes`` every few seconds. A station whose socket
is on a node that stopped beating is offline, whatever its ``connected_node``
row still says (a node killed with -9 cannot clean up; it clears its rows when
it starts again). A lease is a row (name, holder, expiry) taken with a
conditional write in one transaction, so at most one holder at a time, on
SQLite and PostgreSQL alike; the holder renews it while it works, and a
crashed holder's lease expires.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from csms.service.ports import Tx

__all__ = ["NODE_GRACE", "acquire_lease", "beat", "lease_holder", "live_nodes", "release_lease"]

NODE_GRACE = timedelta(seconds=15)  # no beat for this long: the node is gone


def _iso(at: datetime) -> str:
    return at.isoformat(timespec="microseconds")


async def beat(tx: Tx, node_id: str, now: datetime) -> None:
    await tx.execute(
        "INSERT INTO nodes (id, started_at, last_seen) VALUES (?, ?, ?)"
        " ON CONFLICT (id) DO UPDATE SET last_seen = excluded.last_seen",
        node_id, _iso(now), _iso(now))


async def live_nodes(tx: Tx, now: datetime, grace: timedelta = NODE_GRACE) -> set[str]:
    rows = await tx.fetchall("SELECT id, last_seen FROM nodes")
    return {r["id"] for r in rows if datetime.fromisoformat(r["last_seen"]) >= now - grace}


async def acquire_lease(tx: Tx, name: str, holder: str, now: datetime, ttl: timedelta) -> bool:
    """Take or renew ``name`` for ``holder`` until now + ttl; False while another holds it."""
    until = _iso(now + ttl)
    taken = await tx.execute(
        "INSERT INTO leases (name, holder, expires_at) VALUES (?, ?, ?)"
        " ON CONFLICT (name) DO NOTHING", name, holder, until)
    if taken:
        return True
    renewed = await tx.execute(
        "UPDATE leases SET holder = ?, expires_at = ? WHERE name = ?"
        " AND (holder = ? OR expires_at < ?)", holder, until, name, holder, _iso(now))
    return renewed == 1


async def release_lease(tx: Tx, name: str, holder: str) -> None:
    await tx.execute("DELETE FROM leases WHERE name = ? AND holder = ?", name, holder)


async def lease_holder(tx: Tx, name: str, now: datetime) -> str | None:
    row = await tx.fetchone("SELECT holder, expires_at FROM leases WHERE name = ?", name)
    if row is None or datetime.fromisoformat(row["expires_at"]) < now:
        return None
    return str(row["holder"])
