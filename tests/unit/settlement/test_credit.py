"""The credit check's rule (``ChainCredit._covers``): a session's limit is the smallest of
its per-session limit, what the escrow still has available at its start and what is left
of the day's limit, every other session in flight and every waiting authorization counted
at its own limit. The minimum to start one stays the reserve."""

from __future__ import annotations

from decimal import Decimal
from typing import Any, cast

from csms.domain.tariff import BillingUnit, Tariff
from csms.service import defaults
from settlement.chain import DriverState, Terms
from settlement.credit import ChainCredit

DRIVER = "0x" + "ab" * 20
RESERVE = 2_000


def terms(max_per_session: int = 10_000, max_per_day: int = 1_000_000) -> Terms:
    return Terms(40, 0, 50, max_per_session, max_per_day, True)


def state(balance: int, spent_today: int = 0, withdrawal: int = 0, **kw: Any) -> DriverState:
    return DriverState(1, balance, spent_today, terms(**kw), None, 0, withdrawal, 0)


def exposure(**kw: int) -> dict[str, int]:
    """``driver_exposure``'s answer: nothing at stake unless given."""
    return {"active": 0, "unpriced": 0, "in_flight_minor": 0, "unlimited": 0,
            "pending_minor": 0, "authorized": 0, "authorized_minor": 0, **kw}


def judge(s: DriverState, seen: dict[str, int], signed: Terms | None = None) -> tuple[bool,
                                                                                      int | None]:
    credit = ChainCredit(cast(Any, None), cast(Any, None), reserve_minor=RESERVE)
    decision = credit._covers(DRIVER, s, signed or s.terms, None, seen)
    return decision.ok, decision.session_limit


def test_a_session_gets_the_per_session_limit_when_the_escrow_holds_more() -> None:
    assert judge(state(50_000, max_per_session=10_000), exposure()) == (True, 10_000)


def test_an_escrow_below_the_per_session_limit_limits_the_session() -> None:
    # 50.00 in escrow, 100.00 a session, a reserve of 20.00: accepted, up to 50.00
    assert judge(state(5_000, max_per_session=10_000), exposure()) == (True, 5_000)
    # an announced withdrawal is not available
    assert judge(state(5_000, withdrawal=1_000), exposure()) == (True, 4_000)
    # below the reserve: refused, as before
    assert judge(state(1_999), exposure())[0] is False


def test_what_is_left_of_the_day_limits_the_session() -> None:
    s = state(1_000_000, spent_today=96_000, max_per_session=10_000, max_per_day=100_000)
    assert judge(s, exposure()) == (True, 4_000)
    # a session priced and not yet settled is taken from the day (and the escrow)
    assert judge(s, exposure(pending_minor=1_500)) == (True, 2_500)
    assert judge(s, exposure(pending_minor=2_500))[0] is False


def test_a_second_session_gets_what_the_first_leaves() -> None:
    """Two sessions of one driver together never get more than the escrow holds."""
    s = state(5_000, max_per_session=3_000)
    ok, first = judge(s, exposure())
    assert (ok, first) == (True, 3_000)
    ok, second = judge(s, exposure(active=1, in_flight_minor=3_000))
    assert (ok, second) == (True, 2_000)
    assert first + second <= 5_000
    # a third: nothing left for a reserve
    assert judge(s, exposure(active=2, in_flight_minor=5_000))[0] is False
    # the same with the escrow at 60.00: the first takes 30.00, the second 30.00
    assert judge(state(6_000, max_per_session=3_000),
                 exposure(active=1, in_flight_minor=3_000)) == (True, 3_000)


def test_a_session_in_flight_without_a_limit_counts_at_the_reserve() -> None:
    # a session of the driver's card stored before limits (or refused): the reserve
    assert judge(state(5_000), exposure(active=1, unlimited=1)) == (True, 3_000)


def test_an_unpriced_completed_session_counts_at_its_limit() -> None:
    # ended, its price not computed yet: it may cost up to its limit (40.00), not the
    # reserve (20.00)
    s = state(10_000, max_per_session=10_000)
    assert judge(s, exposure(unpriced=1, in_flight_minor=4_000)) == (True, 6_000)
    assert judge(state(6_000), exposure(unpriced=1, in_flight_minor=4_000)) == (True, 2_000)
    assert judge(state(5_999), exposure(unpriced=1, in_flight_minor=4_000))[0] is False


def test_a_waiting_authorization_counts_at_its_limit() -> None:
    # accepted and not started: counted at the limit its session would get (50.00)
    s = state(10_000, max_per_session=10_000)
    assert judge(s, exposure(authorized=1, authorized_minor=5_000)) == (True, 5_000)
    assert judge(state(6_999), exposure(authorized=1, authorized_minor=5_000))[0] is False


def test_a_signed_session_gets_at_most_what_the_escrow_holds() -> None:
    """An app session: its per-session limit is the signed maximum amount."""
    s = state(3_000, max_per_session=100)  # the card's terms do not apply to it
    signed = Terms(40, 0, 50, 9_000, s.terms.max_per_day, True)
    assert judge(s, exposure(), signed) == (True, 3_000)
    assert judge(state(50_000), exposure(), signed) == (True, 9_000)
    assert judge(state(4_000), exposure(active=1, in_flight_minor=1_500),
                 signed) == (True, 2_500)


def test_a_limit_below_the_floor_is_refused_whatever_the_escrow_holds() -> None:
    """A session is stopped at a reading once its price nears its limit: a limit of a few
    cents is mostly what the station delivers before the stop takes effect."""
    floor = defaults.SESSION_LIMIT_FLOOR
    rich = state(1_000_000, max_per_session=floor - 1)
    credit = ChainCredit(cast(Any, None), cast(Any, None), reserve_minor=RESERVE)
    decision = credit._covers(DRIVER, rich, rich.terms, None, exposure())
    assert not decision.ok and f"below the {floor}" in decision.reason, decision
    # a signed maximum amount the same
    assert judge(rich, exposure(), signed=terms(max_per_session=1))[0] is False
    # at the floor: accepted, limited to it
    assert judge(state(1_000_000, max_per_session=floor), exposure()) == (True, floor)


def test_the_floor_is_never_above_the_reserve() -> None:
    credit = ChainCredit(cast(Any, None), cast(Any, None), reserve_minor=30,
                         limit_floor_minor=100)
    s = state(1_000, max_per_session=30)
    assert credit._covers(DRIVER, s, s.terms, None, exposure()).session_limit == 30


def test_a_tariff_not_in_the_billing_unit_is_refused_for_its_unit() -> None:
    """``minor_prices`` are in the tariff's own minor units, the driver's terms in the
    contract's billing units (cents of EUR here): a tariff in another currency or with
    other decimals is compared in the wrong unit, whichever way that errs."""
    billing = BillingUnit("EUR", 2)
    credit = ChainCredit(cast(Any, None), cast(Any, None), reserve_minor=RESERVE,
                         billing=billing)
    # the driver accepts at most 0.50 per kWh
    s = DriverState(1, 50_000, 0, Terms(50, 0, 50, 10_000, 1_000_000, True), None, 0, 0, 0)
    # 0.90 per kWh with 1 decimal is "9": it passed below 50, then no one was paid
    # (the worker holds the session: tariff_unit_mismatch)
    tenths = Tariff("*", Decimal("0.9"), "EUR", 1)
    # 0.45 USD "45": passed as 45 cents of EUR
    dollars = Tariff("*", Decimal("0.45"), "USD", 2)
    # 0.450 with 3 decimals "450": refused as above 0.50, which it is not
    mills = Tariff("*", Decimal("0.450"), "EUR", 3)
    for tariff in (tenths, dollars, mills):
        decision = credit._covers(DRIVER, s, s.terms, tariff, exposure())
        assert not decision.ok and decision.reason == billing.refuses(tariff), decision
    # the billing unit's own: judged by its prices
    assert credit._covers(DRIVER, s, s.terms, Tariff("*", Decimal("0.45")), exposure()).ok
    assert not credit._covers(DRIVER, s, s.terms, Tariff("*", Decimal("0.51")),
                              exposure()).ok
