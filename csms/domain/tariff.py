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

__all__ = ["DECIMALS", "MAX_EXPONENT", "MAX_PRICE", "BillingUnit", "Tariff", "major_units",
           "minor_prices", "parse_price",
           "price_minor", "within_exponents"]

# The arithmetic of prices, wherever they are computed (the central system, a receipt's
# verifier): Python's default precision, pinned. A thread's own context is not to be
# trusted: importing vyper (the contract's compiler) sets it to 78 digits, so a price
# could depend on whether the process had compiled the contract.
DECIMALS = Context(prec=28, rounding=ROUND_HALF_EVEN, Emin=-999999, Emax=999999,
                   traps=[InvalidOperation, DivisionByZero, Overflow])

# The most a tariff charges per kWh, per minute or per session, in major units: the same
# bound wherever a tariff is set (the CLI, the console)
MAX_PRICE = Decimal(10**6)

# The farthest a figure of a price, an energy or a meter reading is from 1: its adjusted
# exponent (the power of ten of its first digit: 1.5E+7 is 7, 0.0012 is -3) is within
# +-MAX_EXPONENT. None needs more (a price is at most MAX_PRICE, a register reads at most
# 10^15 Wh, no meter's step is below 10^-30 Wh), and a receipt's verifiers read no figure
# beyond it: the receipt page computes exactly, and 1e-10000000 beside 1 is a number of ten
# million digits. The central system takes none either (tariffs, readings), so every
# receipt it writes is read (csms.metering.ocmf keeps the same bound: the layers import
# neither).
MAX_EXPONENT = 30


def within_exponents(number: Decimal) -> bool:
    """Whether ``number`` is a finite figure whose adjusted exponent is within
    +-:data:`MAX_EXPONENT` (a zero's is its exponent: 0E-40 is not)."""
    return number.is_finite() and -MAX_EXPONENT <= number.adjusted() <= MAX_EXPONENT


def parse_price(text: str) -> Decimal:
    """A unit price an operator typed: a figure from 0 to :data:`MAX_PRICE` that every
    receipt's verifier reads (-0 is 0, stored without its sign); ValueError says why not."""
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise ValueError(f"not a number: {text[:20]!r}") from None
    if not value.is_finite() or value < 0 or value > MAX_PRICE:
        raise ValueError(f"must be a number from 0 to {MAX_PRICE}")
    if not within_exponents(value):  # a figure no receipt's verifier reads
        raise ValueError(f"must be 0 or at least 1E-{MAX_EXPONENT}")
    return value.copy_abs() if value.is_zero() else value


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


@dataclass(frozen=True, slots=True)
class BillingUnit:
    """What the settlement contract's one billing unit is: the minor unit of ``currency``,
    10^-``decimals`` of it (the contract knows no currency: its ``unit`` is the token base
    units one billing unit is worth, fixed at deployment). A price in a tariff's minor
    units goes on chain as that many billing units: a tariff in another currency, or with
    other decimals, would be charged in the wrong unit (``--decimals 3`` ten times over)."""

    currency: str = "EUR"
    decimals: int = 2

    def refuses(self, tariff: Tariff) -> str | None:
        """Why ``tariff`` cannot be charged in this unit (one line), or None."""
        if tariff.currency.upper() == self.currency.upper() \
                and tariff.decimals == self.decimals:
            return None
        return (f"a tariff in {tariff.currency} with {tariff.decimals} decimals cannot be"
                f" settled: the settlement contract bills in {self.currency} with"
                f" {self.decimals} decimals")


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


def major_units(minor: int, decimals: int) -> str:
    """An amount of ``minor`` units in major units, exactly, with the currency's minor
    digits (a tariff's ``decimals``): 280 with 3 is "0.280", 28 with 2 is "0.28". A
    tariff's unit prices may have more digits; an amount has its currency's."""
    return f"{Decimal(minor).scaleb(-decimals):f}"


def minor_prices(tariff: Tariff) -> tuple[int, int, int]:
    """(per kWh, per minute, session fee) in minor units, each rounded up: what a driver's
    accepted prices (terms, a signed authorization) must be at least."""
    with localcontext(DECIMALS):
        scale = Decimal(10) ** tariff.decimals
        return (math.ceil(tariff.per_kwh * scale), math.ceil(tariff.per_minute * scale),
                math.ceil(tariff.session_fee * scale))
