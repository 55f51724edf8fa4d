"""Setting a tariff: a new version, which never changes the price of a session already
stored.

A session is priced with the tariff valid when it started (``Tx.find_tariff``), read when
it is priced: its running cost while it charges, its price when it is settled. A version
valid from a time before a stored session's start would change that price afterwards:
the driver saw one tariff (2.0.1 shows the running cost) and would be billed by another.
So a version may be valid from any time after the start of every session it would
reprice. Sessions that had no tariff at their start are not repriced by one: they are held
until a tariff is valid at their start, and a version valid from before them is how an
operator prices them.
"""

from __future__ import annotations

from datetime import UTC, datetime

from csms.domain.tariff import Tariff
from csms.service.ports import Tx

__all__ = ["TariffRefused", "set_tariff"]


class TariffRefused(ValueError):
    """The version would reprice a session already stored (the message names it)."""


async def set_tariff(tx: Tx, tariff: Tariff, actor: str) -> int:
    """Store ``tariff`` as its station's (or '*''s) new version, audited as
    ``tariffs.set`` by ``actor``; return the version. Raises :class:`TariffRefused` when
    a stored session that had a tariff at its start started at or after
    ``tariff.valid_from`` (nothing is written)."""
    valid_from = tariff.valid_from
    if valid_from is None:
        raise ValueError("a tariff to set needs its valid_from")
    hit = await tx.session_a_tariff_would_reprice(tariff.station_id, valid_from)
    if hit is not None:
        raise TariffRefused(
            f"a tariff valid from {valid_from.isoformat()} would reprice session"
            f" {hit['id']} of {hit['station_id']}, which started at {hit['started_at']} with"
            f" another tariff: a new version must be valid from after that")
    version = await tx.add_tariff(tariff)
    await tx.add_audit(actor, "tariffs.set", tariff.station_id, {
        "per_kwh": str(tariff.per_kwh), "per_minute": str(tariff.per_minute),
        "session_fee": str(tariff.session_fee), "currency": tariff.currency,
        "decimals": tariff.decimals, "valid_from": valid_from.isoformat()},
        {"version": version}, True, datetime.now(UTC))
    return version
