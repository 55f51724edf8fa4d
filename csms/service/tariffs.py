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

from datetime import datetime

from csms.domain.tariff import Tariff
from csms.service.ports import Tx

__all__ = ["TariffRefused", "set_tariff"]


class TariffRefused(ValueError):
    """The version would reprice a session already stored (the message names it)."""


async def set_tariff(tx: Tx, tariff: Tariff) -> int:
    """Store ``tariff`` as its station's (or '*''s) new version; return the version.
    Raises :class:`TariffRefused` when a stored session that had a tariff at its start
    started at or after ``tariff.valid_from``."""
    if tariff.valid_from is None:
        raise ValueError("a tariff to set needs its valid_from")
    hit = await tx.session_a_tariff_would_reprice(tariff.station_id, tariff.valid_from)
    if hit is not None:
        started = hit["started_at"]
        started = started.isoformat() if isinstance(started, datetime) else str(started)
        raise TariffRefused(
            f"a tariff valid from {tariff.valid_from.isoformat()} would reprice session"
            f" {hit['id']} of {hit['station_id']}, which started at {started} with another"
            f" tariff: a new version must be valid from after that")
    return await tx.add_tariff(tariff)
