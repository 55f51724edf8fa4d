"""What a 2.0.1 TransactionEvent's unit reads of its station, on a real SQLite file, as the
server calls it (the translation handler): the station's power judges a start of 0 a
placeholder (csms.domain.energy), so a unit reads the station only where the message's
readings may be judged so. A running session's periodic readings, counted from a start
that is not 0, read no station row: the units run while the process holds the write turn
(docs/benchmarks.md)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from csms.service.charging import ChargingService, new_station
from csms.service.ports import Tx
from csms.storage.sqlite import SqliteRepository
from csms.translate import v201

STATION_READ = "SELECT * FROM stations"


@pytest.fixture
async def repo(tmp_path: Path) -> AsyncIterator[SqliteRepository]:
    repository = SqliteRepository(tmp_path / "csms.sqlite3")
    try:
        yield repository
    finally:
        await repository.close()


async def registered(repo: SqliteRepository, max_power_w: Decimal | None = None) -> None:
    async def work(tx: Tx) -> None:
        await tx.insert_station(new_station("CP1", max_power_w=max_power_w))
    await repo.unit(work)


def text(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


def event(kind: str, seq: int, at: datetime, wh: int, context: str) -> dict[str, Any]:
    body: dict[str, Any] = {
        "eventType": kind, "timestamp": text(at), "seqNo": seq,
        "triggerReason": {"Started": "Authorized", "Updated": "MeterValuePeriodic",
                          "Ended": "StopAuthorized"}[kind],
        "transactionInfo": {"transactionId": "TX-1"},
        "meterValue": [{"timestamp": text(at), "sampledValue": [
            {"value": wh, "measurand": "Energy.Active.Import.Register",
             "context": context, "unitOfMeasure": {"unit": "Wh"}}]}]}
    if kind == "Started":
        body["evse"] = {"id": 1, "connectorId": 1}
    return body


async def station_reads(repo: SqliteRepository, service: ChargingService,
                        body: dict[str, Any]) -> int:
    """The event handled as the server handles it; the station rows its unit read."""
    seen: list[str] = []
    repo._write.set_trace_callback(seen.append)
    try:
        await v201.transaction_event(service, "CP1", body)
    finally:
        repo._write.set_trace_callback(None)
    return sum(s.startswith(STATION_READ) for s in seen)


async def session_row(repo: SqliteRepository) -> dict[str, Any]:
    [row] = await repo.read(lambda tx: tx.fetchall(
        "SELECT energy_wh, meter_start_wh, flags FROM sessions"))
    return row


async def test_periodic_readings_of_a_session_started_above_zero_read_no_station(
        repo: SqliteRepository) -> None:
    await registered(repo)
    service = ChargingService(repo)
    t0 = datetime.now(UTC) - timedelta(minutes=30)
    await v201.transaction_event(service, "CP1", event(
        "Started", 0, t0, 1_000_148, "Transaction.Begin"))
    for seq in (1, 2, 3):
        assert await station_reads(repo, service, event(
            "Updated", seq, t0 + timedelta(minutes=seq), 1_000_148 + 37 * seq,
            "Sample.Periodic")) == 0
    row = await session_row(repo)
    assert (row["energy_wh"], row["meter_start_wh"]) == (111, "1000148")
    assert "meter_start_placeholder" not in row["flags"]


async def test_a_start_of_zero_is_still_judged_by_the_stations_power(
        repo: SqliteRepository) -> None:
    """A begin reading of 0, then 20,000 Wh ten minutes later: within what the default
    power (350 kW) allows, beyond what this station's registered 11 kW does. The station
    is read, and its power judges the 0 a placeholder: nothing billed from it."""
    await registered(repo, max_power_w=Decimal(11_000))
    service = ChargingService(repo)
    t0 = datetime.now(UTC) - timedelta(minutes=30)
    await v201.transaction_event(service, "CP1", event("Started", 0, t0, 0, "Transaction.Begin"))
    assert await station_reads(repo, service, event(
        "Updated", 1, t0 + timedelta(minutes=10), 20_000, "Sample.Periodic")) == 1
    row = await session_row(repo)
    assert "meter_start_placeholder" in row["flags"]
    assert row["energy_wh"] == 0
