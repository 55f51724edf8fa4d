"""Setting a tariff (``csms.service.tariffs``) against a hostile station, over real sockets
with a real SQLite file: a session it dates as it likes holds no new version back."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from csms.domain.tariff import Tariff
from csms.service.holds import decide
from csms.service.tariffs import TariffRefused, set_tariff
from support import LONG_AGO, RunningServer
from support.client import RawClient

BOOT16 = {"chargePointVendor": "V", "chargePointModel": "M"}


async def test_a_rejected_session_dated_in_year_9999_does_not_freeze_the_default_tariff(
    csms_server: RunningServer,
) -> None:
    """Any registered station can date a session in 9999 (a tag it makes up will do: every
    start is stored). It is held (``time_implausible``): it never holds a version back,
    neither while it waits for an operator nor once rejected (never priced). It used to:
    ``set_tariff`` refused every '*' version valid before 9999 as one that "would reprice"
    it, and the network's default tariff could no longer be changed, by the CLI or the
    console, for every station without a tariff of its own (a price that must rise with
    the cost of energy, a promotion at 0 that must end: the hosts deliver at the frozen
    price)."""
    await csms_server.add_station("EVIL")

    async def default(tx: Any) -> None:
        await tx.add_tariff(Tariff("*", Decimal("0.39"), valid_from=LONG_AGO))

    await csms_server.repo.unit(default)
    async with await RawClient.connect(csms_server.url, "EVIL", ["ocpp1.6"]) as c:
        await c.result("BootNotification", BOOT16)
        started = await c.result("StartTransaction", {
            "connectorId": 1, "idTag": "MADE-UP", "meterStart": 0,
            "timestamp": "9999-12-31T00:00:00Z"})
        await c.result("StopTransaction", {
            "transactionId": started["transactionId"], "meterStop": 10,
            "timestamp": "9999-12-31T00:10:00Z", "reason": "Local"})
    [session] = await csms_server.sessions("EVIL")
    assert "time_implausible" in session["flags"], session

    async def new_default(per_kwh: str) -> int:
        async def work(tx: Any) -> int:
            return await set_tariff(tx, Tariff("*", Decimal(per_kwh),
                                               valid_from=datetime.now(UTC)), "op")
        try:
            return await csms_server.repo.unit(work)
        except TariffRefused as exc:
            raise AssertionError(f"the default tariff cannot be changed any more: {exc}"
                                 ) from None

    assert await new_default("0.42") == 2  # held, not decided

    async def reject(tx: Any) -> None:
        await decide(tx, int(session["id"]), "rejected", actor="op", reason="bogus time",
                     now=datetime.now(UTC))

    await csms_server.repo.unit(reject)
    assert await new_default("0.45") == 3


async def test_a_version_dated_back_over_a_tariff_in_force_is_refused(
    csms_server: RunningServer,
) -> None:
    """A station offline since yesterday keeps the session a driver charged there 12 hours
    ago at the default tariff, 0.30 EUR/kWh; no session of it is stored since. A version
    at 0.90 set now but valid from a day ago reprices nothing stored, yet it would price
    that session, reported once the station is back, at three times what was in force
    when the driver charged. Refused: a version dated back more than the clock tolerance
    is for a time without any tariff (sessions held for want of one), never over one. The
    session is priced at 0.30."""
    await csms_server.add_station("OFF")
    await csms_server.add_tag("T1")

    async def default(tx: Any) -> None:
        await tx.add_tariff(Tariff("*", Decimal("0.30"), valid_from=LONG_AGO))

    await csms_server.repo.unit(default)
    now = datetime.now(UTC)

    async def dated_back(tx: Any) -> int:
        return await set_tariff(tx, Tariff("*", Decimal("0.90"),
                                           valid_from=now - timedelta(days=1)), "op")

    with pytest.raises(TariffRefused, match="in force"):
        await csms_server.repo.unit(dated_back)
    async with await RawClient.connect(csms_server.url, "OFF", ["ocpp1.6"]) as c:
        await c.result("BootNotification", BOOT16)
        started = await c.result("StartTransaction", {
            "connectorId": 1, "idTag": "T1", "meterStart": 0,
            "timestamp": (now - timedelta(hours=12)).isoformat()})
        await c.result("StopTransaction", {
            "transactionId": started["transactionId"], "meterStop": 10_000,
            "timestamp": (now - timedelta(hours=11)).isoformat(), "reason": "Local"})
    [session] = await csms_server.sessions("OFF")

    async def priced(tx: Any) -> Tariff | None:
        return await tx.find_tariff("OFF", datetime.fromisoformat(session["started_at"]))

    tariff = await csms_server.repo.read(priced)
    assert tariff is not None and tariff.per_kwh == Decimal("0.30")


async def test_a_version_dated_back_where_no_tariff_was_in_force_is_set(
    csms_server: RunningServer,
) -> None:
    """With no tariff in force, a version valid from the past is how an operator prices
    the sessions held without one; and one valid from a few minutes ago (within the
    clock tolerance) is set over a tariff in force."""
    now = datetime.now(UTC)

    async def version(per_kwh: str, valid_from: datetime) -> int:
        async def work(tx: Any) -> int:
            return await set_tariff(tx, Tariff("*", Decimal(per_kwh), valid_from=valid_from),
                                    "op")
        return await csms_server.repo.unit(work)

    assert await version("0.30", now - timedelta(days=30)) == 1
    assert await version("0.35", now - timedelta(minutes=5)) == 2
