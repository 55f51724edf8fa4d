"""Tariffs and prices in integer minor units (no float money)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from decimal import (
    ROUND_HALF_EVEN,
    ROUND_HALF_UP,
    Context,
    Decimal,
    DivisionByZero,
    InvalidOperation,
    Overflow,
    localcontext,
)

__all__ = ["DECIMALS", "MAX_PRICE", "Tariff", "minor_prices", "price_minor"]

# The arithmetic of prices, wherever they are computed (the central system, a receipt's
# verifier): Python's default precision, pinned. A thread's own context is not to be
# trusted: importing vyper (the contract's compiler) sets it to 78 digits, so a price
# could depend on whether the process had compiled the contract.
DECIMALS = Context(prec=28, rounding=ROUND_HALF_EVEN, Emin=-999999, Emax=999999,
                   traps=[InvalidOperation, DivisionByZero, Overflow])

# The most a tariff charges per kWh, per minute or per session, in major units: the same
# bound wherever a tariff is set (the CLI, the console)
MAX_PRICE = Decimal(10**6)


@dataclass(frozen=True, slots=True)
class Tariff:
    """Prices in major units (e.g. 0.39 EUR per kWh) with the currency's decimals.

    ``station_id`` "*" is the default for stations without their own tariff.
    Setting a tariff again creates a new ``version``; a session is priced with
    the version valid when it started.
    """

    station_id: str
    per_kwh: Decimal
    currency: str = "EUR"
    decimals: int = 2
    per_minute: Decimal = Decimal(0)
    session_fee: Decimal = Decimal(0)
    version: int = 1
    valid_from: datetime | None = None
    id: int | None = None


def price_minor(tariff: Tariff, energy_wh: int, duration_s: float) -> int:
    """Session price in minor units: fee + kWh x price + minutes x price, rounded half up once.

    Rounding happens once, on the total, so the sum of the parts never drifts. Computed in
    :data:`DECIMALS`, whatever the thread's context.
    """
    with localcontext(DECIMALS):
        total = (
            tariff.session_fee
            + Decimal(energy_wh) / Decimal(1000) * tariff.per_kwh
            + Decimal(str(max(duration_s, 0.0))) / Decimal(60) * tariff.per_minute
        )
        return int((total.scaleb(tariff.decimals)).quantize(Decimal(1),
                                                            rounding=ROUND_HALF_UP))


def minor_prices(tariff: Tariff) -> tuple[int, int, int]:
    """(per kWh, per minute, session fee) in minor units, each rounded up: what a driver's
    accepted prices (terms, a signed authorization) must be at least."""
    with localcontext(DECIMALS):
        scale = Decimal(10) ** tariff.decimals
        return (math.ceil(tariff.per_kwh * scale), math.ceil(tariff.per_minute * scale),
                math.ceil(tariff.session_fee * scale))
