"""Setting a tariff: a new version, which never changes the price of a session already
stored.

A session is priced with the tariff valid when it started (``Tx.find_tariff``), read when
it is priced: its running cost while it charges, its price when it is settled. A version
valid from a time before a stored session's start would change that price afterwards:
the driver saw one tariff (2.0.1 shows the running cost) and would be billed by another.
So a version may be valid from any time after the start of every session it would
reprice. Sessions that had no tariff at their start are not repriced by one: they are held
until a tariff is valid at their start, and a version valid from before them is how an
operator prices them. Nor are sessions whose start is no time to judge a tariff by: any
registered station can date a session in 9999, which would refuse every new version for
good. A session rejected by an operator (never priced), held as ``time_implausible`` and
not released, or started more than the station clock's tolerance (``time_future``, the
one its times are judged by) after it was stored does not hold a version back.

Nor may a version be valid from the past (more than the station clock's tolerance before
now) while a tariff is in force for its station: a station offline keeps the sessions it
starts and reports them when it is back, and a version dated back would price those,
charged under the tariff in force then, at prices set afterwards (nothing stored since
says so). Valid from the past, a version only prices a time without any tariff.

A tariff is also refused when its currency or decimals are not the settlement contract's
billing unit (:class:`~csms.domain.tariff.BillingUnit`): its prices in its own minor
units would go on chain as billing units (``--decimals 3``: ten times the price).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from csms.domain.tariff import BillingUnit, Tariff
from csms.service import defaults
from csms.service.ports import Tx

__all__ = ["TariffRefused", "TariffUnitRefused", "set_tariff"]


class TariffRefused(ValueError):
    """The version would reprice a session already stored (the message names it)."""


class TariffUnitRefused(ValueError):
    """The tariff's currency or decimals are not the settlement's billing unit (one line)."""


async def set_tariff(tx: Tx, tariff: Tariff, actor: str, *,
                     billing: BillingUnit = defaults.BILLING_UNIT,
                     clock_tolerance: timedelta = defaults.TIME_FUTURE) -> int:
    """Store ``tariff`` as its station's (or '*''s) new version, audited as
    ``tariffs.set`` by ``actor``; return the version. Nothing is written when it raises:
    :class:`TariffUnitRefused` for a tariff not in ``billing`` (the settings'
    ``billing_currency`` and ``billing_decimals``), :class:`TariffRefused` when a stored
    session that had a tariff at its start started at or after ``tariff.valid_from``
    (but those whose start is no time to judge by: rejected, ``time_implausible`` and not
    released, or started more than ``clock_tolerance`` - the settings' ``time_future`` -
    after it was stored), and when ``tariff.valid_from`` is more than ``clock_tolerance``
    before now while a tariff of its station (its own, or '*') is in force."""
    valid_from = tariff.valid_from
    if valid_from is None:
        raise ValueError("a tariff to set needs its valid_from")
    refused = billing.refuses(tariff)
    if refused is not None:
        raise TariffUnitRefused(f"{refused} (CSMS_BILLING_CURRENCY, CSMS_BILLING_DECIMALS)")
    hit = await tx.session_a_tariff_would_reprice(tariff.station_id, valid_from,
                                                  clock_tolerance)
    if hit is not None:
        raise TariffRefused(
            f"a tariff valid from {valid_from.isoformat()} would reprice session"
            f" {hit['id']} of {hit['station_id']}, which started at {hit['started_at']} with"
            f" another tariff: a new version must be valid from after that")
    now = datetime.now(UTC)
    if valid_from < now - clock_tolerance \
            and (current := await tx.find_tariff(tariff.station_id, now)) is not None:
        raise TariffRefused(
            f"a tariff valid from {valid_from.isoformat()}, before now, would price sessions"
            " started since then and not reported yet (a station offline) over the tariff"
            f" in force then ({current.station_id} version {current.version}): a new version"
            " must be valid from now or later (one valid from the past only where no"
            " tariff is in force)")
    version = await tx.add_tariff(tariff)
    await tx.add_audit(actor, "tariffs.set", tariff.station_id, {
        "per_kwh": str(tariff.per_kwh), "per_minute": str(tariff.per_minute),
        "session_fee": str(tariff.session_fee), "currency": tariff.currency,
        "decimals": tariff.decimals, "valid_from": valid_from.isoformat()},
        {"version": version}, True, now)
    return version
