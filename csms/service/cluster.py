"""Several nodes on one database: node liveness and leases (no home-made consensus).

Every node records itself in ``nodes`` every few seconds. A station whose socket
is on a node that stopped beating is offline, whatever its ``connected_node``
row still says (a node killed with -9 cannot clean up; it clears its rows when
it starts again). A lease is a row (name, holder, expiry) taken with a
conditional write in one transaction, so at most one holder at a time, on
SQLite and PostgreSQL alike; the holder renews it while it works, and a
crashed holder's lease expires. When it expires is the database's clock, never
the asking node's (a node whose clock runs ahead would take a lease another
holds). The nodes sign what they send each other over the broker
(csms.bus.commands) with one secret, made by the first node that asks for it
(:func:`bus_secret`).
"""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta

from csms.service.ports import Tx

__all__ = ["BUS_SECRET_OPTION", "NODE_GRACE", "acquire_lease", "beat", "bus_secret",
           "hold_lease", "lease_holder", "live_nodes", "release_lease"]

BUS_SECRET_OPTION = "bus_secret"  # central option: the cluster's HMAC key (hex, 32 bytes)

NODE_GRACE = timedelta(seconds=15)  # no beat for this long: the node is gone


async def beat(tx: Tx, node_id: str, now: datetime) -> None:
    await tx.beat_node(node_id, now)


async def live_nodes(tx: Tx, now: datetime, grace: timedelta = NODE_GRACE) -> set[str]:
    return {node for node, seen in (await tx.node_beats()).items() if seen >= now - grace}


async def acquire_lease(tx: Tx, name: str, holder: str, ttl: timedelta) -> bool:
    """Take or renew ``name`` for ``holder`` for ``ttl``; False while another holds it.
    Whether a lease has expired is the database's clock: a node whose clock runs ahead
    does not take the lease of another."""
    return await tx.take_lease(name, holder, ttl)


async def hold_lease(tx: Tx, name: str, holder: str, ttl: timedelta) -> bool:
    """Renew ``holder``'s unexpired lease, locked until ``tx`` ends; False when it is not
    ``holder``'s any more (expired, or taken over): what it guards must not be done."""
    return await tx.hold_lease(name, holder, ttl)


async def release_lease(tx: Tx, name: str, holder: str) -> None:
    await tx.drop_lease(name, holder)


async def lease_holder(tx: Tx, name: str) -> str | None:
    """The holder of ``name`` by the database's clock (None: free or expired)."""
    return await tx.lease_holder(name)


async def bus_secret(tx: Tx) -> bytes:
    """The key the nodes of this database sign bus messages with: a random 32 bytes,
    stored once (the first node to ask wins a race; the others read its value)."""
    return bytes.fromhex(await tx.claim_central_option(BUS_SECRET_OPTION,
                                                       secrets.token_bytes(32).hex()))
