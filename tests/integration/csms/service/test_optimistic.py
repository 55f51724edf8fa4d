"""A 1.6 MeterValues run first off the write turn (csms.service.optimistic), on real SQLite
files: what is stored is what the unit stores when it runs as usual; a session changed
between the first run and the store is stored as usual from the session as it is then; a
station that sends two readings of one session at once loses neither."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest

from csms.domain.model import IdTag
from csms.service import optimistic
from csms.service.charging import ChargingService, new_station
from csms.service.ports import Tx
from csms.storage.sqlite import SqliteRepository
from csms.translate import v16

T = TypeVar("T")
START = (datetime.now(UTC) - timedelta(hours=2)).replace(microsecond=0)


def at(minutes: float) -> str:
    """The time ``minutes`` after the sessions' start, as a station writes it."""
    return (START + timedelta(minutes=minutes)).isoformat().replace("+00:00", "Z")


T0 = at(0)


def reading(txid: Any, at: str, *values: dict[str, Any], connector: int = 1) -> dict[str, Any]:
    return {"connectorId": connector, "transactionId": txid,
            "meterValue": [{"timestamp": at, "sampledValue": list(values)}]}


def register(value: str, **more: Any) -> dict[str, Any]:
    return {"value": value, "measurand": "Energy.Active.Import.Register", **more}


async def _service(path: Path, *, first_run: bool) -> ChargingService:
    repo = SqliteRepository(path)
    repo.optimistic = first_run

    async def setup(tx: Tx) -> None:
        await tx.insert_station(new_station("CP1"))
        await tx.put_tag(IdTag("T1", "accepted"))

    await repo.unit(setup)
    return ChargingService(repo)


@pytest.fixture
async def services(tmp_path: Path) -> AsyncIterator[tuple[ChargingService, ChargingService]]:
    """The same station twice: with the first run, and every unit as usual."""
    fast = await _service(tmp_path / "first.sqlite3", first_run=True)
    usual = await _service(tmp_path / "usual.sqlite3", first_run=False)
    yield fast, usual
    for service in (fast, usual):
        await service.repo.close()  # type: ignore[attr-defined]


async def call(service: ChargingService, action: str, payload: dict[str, Any]) -> Any:
    return await v16.ROUTES[action](service, "CP1", payload)


async def stored(service: ChargingService) -> tuple[list[dict[str, Any]], list[Any]]:
    """The station's sessions (but when each row was written) and its readings."""
    async def work(tx: Tx) -> tuple[list[dict[str, Any]], list[Any]]:
        sessions = [dataclasses.asdict(s) for s in await tx.list_sessions("CP1")]
        readings = await tx.fetchall(
            "SELECT session_id, transaction_id, samples FROM meter_readings ORDER BY id")
        return sessions, readings
    return await service.repo.read(work)


def counted() -> dict[str, int]:
    return dict(optimistic.outcomes)


def since(before: dict[str, int]) -> dict[str, int]:
    return {k: v - before.get(k, 0) for k, v in optimistic.outcomes.items()
            if v - before.get(k, 0)}


async def test_what_is_stored_is_what_the_unit_stores_as_usual(
        services: tuple[ChargingService, ChargingService]) -> None:
    """Readings in kWh, by phase, a lifetime register behind a meterStart of 0, a value out
    of range, a time the station cannot have sent, an unknown transaction, one after the
    stop: the same sessions, flags and readings either way; the plain readings stored off
    the turn, the others (they write a station event or read more) as usual."""
    before = counted()
    for service in services:
        txid = (await call(service, "StartTransaction", {
            "connectorId": 1, "idTag": "T1", "meterStart": 0, "timestamp": T0}))["transactionId"]
        messages = [
            reading(txid, at(15), register("4202.7505", unit="kWh"),
                    register("900.1", phase="L1"),
                    {"value": "11000", "unit": "W", "measurand": "Power.Active.Import"}),
            reading(txid, at(30), register("4205000")),
            reading(txid, at(45), register("1e30")),
            reading(txid, at(10 * 365 * 24 * 60), register("4206000")),  # ten years ahead
            reading(txid + 1000, at(50), register("1")),
            reading(txid, at(60), register("4207500")),
        ]
        for message in messages:
            assert await call(service, "MeterValues", message) == {}
        await call(service, "StopTransaction", {
            "transactionId": txid, "meterStop": 4_208_000, "timestamp": at(65)})
        await call(service, "MeterValues", reading(txid, at(66),
                                                   register("4208100")))
    fast, usual = await stored(services[0]), await stored(services[1])
    for sessions in (fast[0], usual[0]):
        for s in sessions:
            s.pop("id")
    assert fast == usual
    [session] = fast[0]
    assert session["energy_wh"] == 5250 and "meter_start_placeholder" in session["flags"]
    assert {"value_out_of_range", "time_implausible", "late_samples"} <= set(session["flags"])
    # the kWh, by-phase, out-of-range and last readings off the turn; the implausible time,
    # the unknown transaction and the late reading as usual (the first run asked for more)
    assert since(before) == {"checked": 4, "as_usual": 3}


async def test_a_session_changed_since_the_first_run_is_stored_as_usual(
        services: tuple[ChargingService, ChargingService]) -> None:
    """The session is stopped between a reading's first run and its store: the reading is
    late data, as the unit run as usual makes it, not the running session's."""
    service = services[0]
    repo = service.repo
    txid = (await call(service, "StartTransaction", {
        "connectorId": 1, "idTag": "T1", "meterStart": 1000, "timestamp": T0}))["transactionId"]
    read = repo.read

    async def read_then_stop(fn: Callable[[Tx], Awaitable[T]]) -> T:
        result = await read(fn)
        repo.read = read  # type: ignore[method-assign]
        await call(service, "StopTransaction", {
            "transactionId": txid, "meterStop": 1500, "timestamp": at(20)})
        return result

    repo.read = read_then_stop  # type: ignore[method-assign]
    before = counted()
    await call(service, "MeterValues", reading(txid, at(10), register("1400")))
    assert since(before) == {"changed": 1}
    sessions, readings = await stored(service)
    [session] = sessions
    assert session["status"] == "completed" and session["energy_wh"] == 500
    assert session["flags"] == ["late_samples"]
    assert [r["session_id"] for r in readings] == [None]  # the station's, not the session's


async def test_two_readings_of_one_session_at_once_are_both_counted(
        services: tuple[ChargingService, ChargingService]) -> None:
    """A station that does not wait for its answer: both readings' first runs read the same
    session; the first is stored as run, the second finds the row changed and runs again."""
    service = services[0]
    txid = (await call(service, "StartTransaction", {
        "connectorId": 1, "idTag": "T1", "meterStart": 1000, "timestamp": T0}))["transactionId"]
    before = counted()
    await asyncio.gather(
        call(service, "MeterValues", reading(txid, at(10), register("1700"))),
        call(service, "MeterValues", reading(txid, at(5), register("1400"))))
    assert since(before) == {"checked": 1, "changed": 1}
    sessions, readings = await stored(service)
    assert sessions[0]["energy_wh"] == 700 and len(readings) == 2
