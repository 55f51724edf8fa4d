"""Setting a tariff (``csms.service.tariffs``) on the in-memory storage fake: a version
valid from before a priced session's start is refused and not stored; one that only
prices held sessions, or starts after every priced one, is stored."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from csms.domain.model import Session
from csms.domain.tariff import Tariff
from csms.service.tariffs import TariffRefused, set_tariff
from support.memory import MemoryRepository, MemoryState

T0 = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)


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
    assert state.audit[1]["request"]["valid_from"] == "2026-03-01T10:00:00.000001+00:00"
    with pytest.raises(ValueError, match="valid_from"):
        await repo.unit(lambda tx: set_tariff(tx, Tariff("CP1", Decimal("1")), "cli:test"))
