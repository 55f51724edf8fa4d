"""Setting a tariff (``csms.service.tariffs``) on the in-memory storage fake: a version
valid from before a priced session's start is refused and not stored; one that only
prices held sessions, or starts after every priced one, is stored."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from csms.domain.model import Session
from csms.domain.tariff import BillingUnit, Tariff
from csms.service.tariffs import TariffRefused, TariffUnitRefused, set_tariff
from support.memory import MemoryRepository, MemoryState

# ahead of now: a version valid from it is not dated back (a time without any tariff
# aside, one valid from the past is refused: see the last test)
T0 = datetime.now(UTC).replace(microsecond=0) + timedelta(days=30)


async def test_only_versions_that_reprice_nothing_are_stored() -> None:
    state = MemoryState()
    repo = MemoryRepository(state)
    state.sessions[1] = Session(station_id="CP1", ocpp_version="ocpp1.6",
                                transaction_id="1", started_at=T0, id=1)
    # CP1's session had no tariff: a default valid from before it prices it
    assert await repo.unit(lambda tx: set_tariff(tx, Tariff(
        "*", Decimal("0.30"), valid_from=T0 - timedelta(days=1)), "cli:test")) == 1
    for station in ("*", "CP1"):  # now it has one: neither may reprice it
        with pytest.raises(TariffRefused, match="would reprice session 1 of CP1"):
            await repo.unit(lambda tx, s=station: set_tariff(tx, Tariff(
                s, Decimal("9.99"), valid_from=T0), "cli:test"))
    assert [t.per_kwh for t in state.tariffs] == [Decimal("0.30")]
    assert await repo.unit(lambda tx: set_tariff(tx, Tariff(
        "CP1", Decimal("0.40"), valid_from=T0 + timedelta(microseconds=1)), "cli:test")) == 1
    # the two stored are audited, with who set them; the refused ones are not
    assert [(a["action"], a["target"], a["actor"], a["result"]) for a in state.audit] == [
        ("tariffs.set", "*", "cli:test", {"version": 1}),
        ("tariffs.set", "CP1", "cli:test", {"version": 1})]
    assert state.audit[1]["request"]["valid_from"] == \
        (T0 + timedelta(microseconds=1)).isoformat()
    with pytest.raises(ValueError, match="valid_from"):
        await repo.unit(lambda tx: set_tariff(tx, Tariff("CP1", Decimal("1")), "cli:test"))


async def test_a_tariff_in_another_unit_than_the_billing_one_is_refused() -> None:
    """The settlement's billing unit (``billing``): a tariff in another currency or with
    other decimals is refused before anything is read or written; the same tariff is
    stored where the billing unit is its own."""
    state = MemoryState()
    repo = MemoryRepository(state)
    mills = Tariff("*", Decimal("0.085"), "EUR", 3, valid_from=T0)
    for tariff in (mills, Tariff("*", Decimal("0.30"), "USD", 2, valid_from=T0)):
        with pytest.raises(TariffUnitRefused, match=r"^a tariff in (EUR|USD) with [23]"
                           r" decimals cannot be settled: the settlement contract bills in"
                           r" EUR with 2 decimals \(CSMS_BILLING_CURRENCY,"):
            await repo.unit(lambda tx, t=tariff: set_tariff(tx, t, "cli:test"))
    assert state.tariffs == [] and state.audit == []
    assert await repo.unit(lambda tx: set_tariff(
        tx, mills, "cli:test", billing=BillingUnit("EUR", 3))) == 1


async def test_a_session_whose_start_is_no_time_to_judge_by_reprices_nothing() -> None:
    """Rejected, ``time_implausible`` (not released) or started beyond the clock tolerance
    after it was stored: such a session holds no version back (any station dates its
    sessions as it likes); one within the tolerance does."""
    state = MemoryState()
    repo = MemoryRepository(state)
    stored = T0 + timedelta(days=1)
    for sid, ahead, flags in ((1, timedelta(days=9), ["rejected"]),
                              (2, timedelta(days=9), ["time_implausible"]),
                              (3, timedelta(minutes=11), []),
                              (4, timedelta(minutes=5), [])):
        state.sessions[sid] = Session(station_id="CP1", ocpp_version="ocpp1.6",
                                      transaction_id=str(sid), started_at=stored + ahead,
                                      id=sid, flags=flags, created_at=stored)
    await repo.unit(lambda tx: set_tariff(tx, Tariff("*", Decimal("0.30"), valid_from=T0),
                                          "cli:test"))
    with pytest.raises(TariffRefused, match="would reprice session 4 of CP1"):
        await repo.unit(lambda tx: set_tariff(tx, Tariff(
            "*", Decimal("0.31"), valid_from=stored), "cli:test"))
    assert await repo.unit(lambda tx: set_tariff(tx, Tariff(
        "*", Decimal("0.31"), valid_from=stored), "cli:test",
        clock_tolerance=timedelta(minutes=4))) == 2


async def test_a_version_valid_from_the_past_only_prices_a_time_without_a_tariff() -> None:
    """Valid from more than the clock tolerance before now, a version is refused while a
    tariff of its station (its own or '*') is in force: it would price the sessions a
    station kept offline since then, which nothing stored shows. Where none is in force it
    is set (the sessions held for want of one are priced by it)."""
    state = MemoryState()
    repo = MemoryRepository(state)
    now = datetime.now(UTC)
    assert await repo.unit(lambda tx: set_tariff(tx, Tariff(
        "*", Decimal("0.30"), valid_from=now - timedelta(days=30)), "cli:test")) == 1
    for station in ("*", "CP1"):  # CP1 has '*' in force
        with pytest.raises(TariffRefused, match=r"before now, .* over the tariff in force"
                           r" then \(\* version 1\)"):
            await repo.unit(lambda tx, s=station: set_tariff(tx, Tariff(
                s, Decimal("0.90"), valid_from=now - timedelta(days=1)), "cli:test"))
    assert len(state.tariffs) == 1 and len(state.audit) == 1
    # within the tolerance, or from now on: a new version
    assert await repo.unit(lambda tx: set_tariff(tx, Tariff(
        "CP1", Decimal("0.35"), valid_from=now - timedelta(minutes=5)), "cli:test")) == 1
    assert await repo.unit(lambda tx: set_tariff(tx, Tariff(
        "*", Decimal("0.32"), valid_from=now + timedelta(hours=1)), "cli:test")) == 2
