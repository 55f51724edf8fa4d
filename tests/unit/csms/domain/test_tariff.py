from __future__ import annotations

from decimal import Decimal

import pytest

from csms.domain.tariff import MAX_PRICE, Tariff, parse_price, price_minor


@pytest.mark.parametrize(
    ("tariff", "energy_wh", "seconds", "minor"),
    [
        (Tariff("*", Decimal("0.39")), 10_000, 0, 390),
        (Tariff("*", Decimal("0.39")), 10_017, 0, 391),  # 390.663 -> 391
        (Tariff("*", Decimal("0.39")), 1, 0, 0),  # 0.039 cents -> 0
        (Tariff("*", Decimal("0.35"), session_fee=Decimal("1.00")), 0, 0, 100),
        (Tariff("*", Decimal("0.30"), per_minute=Decimal("0.05")), 5_000, 600, 200),
        (Tariff("*", Decimal("0.29"), currency="JPY", decimals=0), 12_345, 0, 4),
        # native coin in wei: 0.0001 ETH per kWh
        (Tariff("*", Decimal("0.0001"), currency="ETH", decimals=18), 7_500, 0,
         750_000_000_000_000),
        (Tariff("*", Decimal("0.125")), 4_000, 0, 50),  # exactly half up: 0.5 -> ... 50
        (Tariff("*", Decimal("0.005")), 1_000, 0, 1),  # 0.5 minor units rounds up
    ],
)
def test_price(tariff: Tariff, energy_wh: int, seconds: float, minor: int) -> None:
    assert price_minor(tariff, energy_wh, seconds) == minor


def test_no_float_money() -> None:
    assert isinstance(price_minor(Tariff("*", Decimal("0.1")), 3, 0), int)


def test_a_price_does_not_depend_on_the_threads_decimal_context() -> None:
    """Importing vyper sets the thread's precision to 78 digits: a price must be the one
    a receipt's verifier computes (28 digits) all the same. A fee just under half a cent
    rounds to 0.005 in 28 digits, and stays under it in 78."""
    import decimal

    t = Tariff("*", Decimal(0), session_fee=Decimal("0.0049999999999999999999999999999999"))
    expected = price_minor(t, 0, 0)
    with decimal.localcontext() as ctx:
        ctx.prec = 78
        assert price_minor(t, 0, 0) == expected == 1


@pytest.mark.parametrize(("text", "why"), [
    ("abc", "not a number: 'abc'"), ("NaN", "from 0 to"), ("-Infinity", "from 0 to"),
    ("-0.01", "from 0 to"), (str(MAX_PRICE + 1), "from 0 to"),
    ("1E-31", "at least 1E-30"), ("0E-40", "at least 1E-30"),
])
def test_a_price_an_operator_types_is_refused_with_its_reason(text: str, why: str) -> None:
    """One check for the CLI and the console: what no receipt's verifier reads, or no
    price is, never reaches a tariff."""
    with pytest.raises(ValueError, match=why):
        parse_price(text)


def test_a_typed_price_is_kept_exactly_and_minus_zero_is_zero() -> None:
    assert parse_price("0.3999") == Decimal("0.3999")
    assert str(parse_price("-0")) == "0" and str(parse_price("-0.00")) == "0.00"
    assert parse_price(str(MAX_PRICE)) == MAX_PRICE
