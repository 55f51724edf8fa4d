"""JSON views of stations and sessions (one shape for the admin API, the CLI and MQTT)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from csms.domain.model import Session, SessionStatus, Station
from csms.service.ports import Tx
from csms.service.views import (
    iso,
    number,
    session_json,
    station_detail,
    station_json,
    stations_view,
)
from support.memory import MemoryRepository, MemoryState

T0 = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)


@pytest.mark.parametrize(("value", "expected"), [
    (None, None), (Decimal(1500), 1500), (Decimal("1500.0"), 1500), (Decimal("12.5"), 12.5),
    (Decimal(2**63 - 1), 2**63 - 1), (Decimal(2**63), str(2**63)),
    (Decimal(-(2**63)), str(-(2**63))), (Decimal("NaN"), "NaN"), (Decimal("Infinity"), "Infinity"),
])
def test_number(value: Decimal | None, expected: object) -> None:
    assert number(value) == expected
    assert type(number(value)) is type(expected)


def test_iso_is_utc() -> None:
    plus_two = timezone(timedelta(hours=2))
    assert iso(datetime(2026, 3, 1, 12, 0, tzinfo=plus_two)) == "2026-03-01T10:00:00+00:00"
    assert iso(None) is None


def test_session_json_shape() -> None:
    s = Session("CP1", "ocpp2.0.1", "TX-1", T0, connector_id=1, evse_id=1, id_tag="T1",
                stopped_at=T0 + timedelta(hours=1), meter_start_wh=Decimal(1000),
                meter_stop_wh=Decimal("4500.5"), energy_wh=3500,
                status=SessionStatus.COMPLETED, stop_reason="Local", flags=["late_samples"],
                id=7, price_minor=137, settlement_state="paid", limit_minor=500)
    assert session_json(s) == {
        "id": 7, "station_id": "CP1", "connector_id": 1, "evse_id": 1, "id_tag": "T1",
        "ocpp_version": "2.0.1", "transaction_id": "TX-1",
        "started_at": "2026-03-01T10:00:00+00:00", "stopped_at": "2026-03-01T11:00:00+00:00",
        "meter_start_wh": 1000, "meter_stop_wh": 4500.5, "energy_wh": 3500,
        "status": "completed", "stop_reason": "Local", "flags": ["late_samples"],
        "limit_minor": 500}
    flags = session_json(s)["flags"]
    flags.append("x")
    assert s.flags == ["late_samples"]  # a copy


@pytest.mark.parametrize(("node", "live", "online"), [
    (None, None, False), ("n1", None, True), ("n1", {"n1", "n2"}, True),
    ("n1", {"n2"}, False),  # its node stopped beating: offline whatever the row says
])
def test_station_json_online(node: str | None, live: set[str] | None, online: bool) -> None:
    st = Station("CP1", connected_node=node, ocpp_version="ocpp1.6",
                 max_power_w=Decimal(11000))
    out = station_json(st, [], live)
    assert (out["online"], out["node"]) == (online, node if online else None)
    assert (out["ocpp_version"], out["boot"], out["max_power_w"]) == ("1.6", "accepted", 11000)


async def test_stations_view_and_detail() -> None:
    state = MemoryState()
    now = datetime.now(UTC)
    state.stations = {"CP1": Station("CP1", connected_node="n1"), "CP2": Station("CP2")}
    state.nodes = {"n1": now}
    state.connectors[("CP1", 1, 1)] = {"station_id": "CP1", "evse_id": 1, "connector_id": 1,
                                       "status": "Charging", "error_code": None,
                                       "updated_at": "t"}
    state.meter_keys["CP1"] = ("3059", "operator")
    state.sessions[1] = Session("CP1", "ocpp1.6", "1", T0, id=1)
    state.sessions[2] = Session("CP1", "ocpp1.6", "2", T0, id=2,
                                status=SessionStatus.COMPLETED)
    repo = MemoryRepository(state)

    every = await repo.read(stations_view)
    assert [(s["id"], s["online"], len(s["connectors"])) for s in every] == [
        ("CP1", True, 1), ("CP2", False, 0)]

    async def detail(tx: Tx) -> dict[str, object] | None:
        return await station_detail(tx, "CP1")

    one = await repo.read(detail)
    assert one is not None
    assert (one["meter_public_key"], one["meter_key_source"]) == ("3059", "operator")
    assert [s["id"] for s in one["active_sessions"]] == [1]  # type: ignore[attr-defined]
    assert await repo.read(lambda tx: station_detail(tx, "NOBODY")) is None
