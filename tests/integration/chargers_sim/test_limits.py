"""External charging limits on the simulated station (2.0.1 K11-K13) against the real
central system over real sockets: NotifyChargingLimit when an EMS or the grid operator sets
one, ClearedChargingLimit when it is lifted, the transaction told of the changed rate, the
power obeying it (1.6 too, which has no message for it); and the command line options."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from datetime import datetime
from typing import Any

import pytest

from chargers_sim import Station
from support import RunningServer, station_events, until

FAST: dict[str, Any] = {"meter_interval": 0.05, "call_timeout": 3, "retry_interval": 0.1}
ENV = {**os.environ, "PYTHONWARNINGS": "ignore"}
# what the central system stores each message as (a station event of that kind)
KIND = {"NotifyChargingLimit": "charging_limit", "ClearedChargingLimit": "charging_limit_cleared"}
LIMIT, CLEARED = KIND["NotifyChargingLimit"], KIND["ClearedChargingLimit"]


async def sim(server: RunningServer, version: str, sid: str = "SIM1",
              **kw: Any) -> Station:
    await server.add_station(sid)
    await server.add_tag("SIMTAG")
    st = Station(server.url, sid, version, seed=7, **{**FAST, **kw})
    await st.start()
    return st


async def stored(server: RunningServer, sid: str, kind: str,
                 at_least: int = 1) -> list[dict[str, Any]]:
    async def check() -> list[dict[str, Any]] | None:
        found = await station_events(server, sid, kind)
        return found if len(found) >= at_least else None

    return list(await until(check, f"{at_least} {kind} stored"))


async def power(st: Station, above: float | None = None,
                at_most: float | None = None) -> float:
    """The meter's power once a reading is above / at most the bound (the meter reads
    every interval; the cap acts from the next reading)."""
    async def check() -> bool:
        p = st.meters[1].last_power_w
        return (above is None or p > above) and (at_most is None or p <= at_most)

    await until(check, f"the power above {above} / at most {at_most} W")
    return st.meters[1].last_power_w


async def test_a_2_0_1_station_reports_an_external_limit_and_obeys_it(
        csms_server: RunningServer) -> None:
    st = await sim(csms_server, "2.0.1", power_kw=11)
    try:
        await st.start_session(1, "SIMTAG")
        await power(st, above=8000)  # ramped up (time runs 60x)
        await st.set_external_limit(3000, "SO", 1, grid_critical=True)
        [notified] = await stored(csms_server, "SIM1", LIMIT)
        assert notified["chargingLimit"] == {"chargingLimitSource": "SO",
                                             "isGridCritical": True}
        assert notified["evseId"] == 1
        [schedule] = notified["chargingSchedule"]
        assert schedule["chargingRateUnit"] == "W"
        assert schedule["chargingSchedulePeriod"] == [{"startPeriod": 0, "limit": 3000.0}]
        await power(st, at_most=3000)
        # lifted: ClearedChargingLimit, and the power back up
        await st.clear_external_limit(1)
        [cleared] = await stored(csms_server, "SIM1", CLEARED)
        assert cleared == {"chargingLimitSource": "SO", "evseId": 1}
        await power(st, above=8000)
        await st.stop_session(1)
        await st.drain()
        # the two ChargingRateChanged TransactionEvents (K12.FR.04) were taken in order
        assert st.errors == 0
        [session] = await csms_server.sessions("SIM1")
        assert session["energy_wh"] > 0 and session["flags"] == []
    finally:
        await st.close()


async def test_the_limit_of_the_whole_station_from_its_boot(
        csms_server: RunningServer) -> None:
    st = await sim(csms_server, "2.0.1", external_limit=(7400.0, "EMS"))
    try:
        [notified] = await stored(csms_server, "SIM1", LIMIT)
        assert notified["chargingLimit"] == {"chargingLimitSource": "EMS"}
        assert "evseId" not in notified  # the whole station
        assert st.cap_w(1) == 7400.0
        # a charging profile below it: the lowest cap wins
        await st.set_external_limit(5000, "Other")
        [newer, _] = await stored(csms_server, "SIM1", LIMIT, 2)
        assert newer["chargingLimit"]["chargingLimitSource"] == "Other"
        st.limit_w[1] = 4000.0
        assert st.cap_w(1) == 4000.0
        st.limit_w.clear()
        await st.clear_external_limit()
        [cleared] = await stored(csms_server, "SIM1", CLEARED)
        assert cleared == {"chargingLimitSource": "Other"}
        assert st.cap_w(1) is None
    finally:
        await st.close()


async def test_a_limit_set_while_offline_is_reported_after_the_boot(
        csms_server: RunningServer) -> None:
    st = await sim(csms_server, "2.0.1")
    try:
        await st.go_offline()
        await st.set_external_limit(2000, "EMS")
        assert await station_events(csms_server, "SIM1", LIMIT) == []
        st.go_online()
        [notified] = await stored(csms_server, "SIM1", LIMIT)
        assert notified["chargingSchedule"][0]["chargingSchedulePeriod"][0]["limit"] == 2000
    finally:
        await st.close()


async def test_a_1_6_station_obeys_an_external_limit_without_a_message(
        csms_server: RunningServer) -> None:
    st = await sim(csms_server, "1.6", power_kw=11)
    try:
        await st.start_session(1, "SIMTAG")
        await power(st, above=8000)
        await st.set_external_limit(2500, "EMS")
        await power(st, at_most=2500)
        await st.clear_external_limit()
        await power(st, above=2500)
        await st.stop_session(1)
        await st.drain()
        # 1.6 has neither NotifyChargingLimit nor ClearedChargingLimit
        assert await station_events(csms_server, "SIM1", LIMIT) == []
        assert await station_events(csms_server, "SIM1", CLEARED) == []
    finally:
        await st.close()


async def run_cli(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "chargers_sim", *args, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, env=ENV)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


@pytest.mark.parametrize("version", ["1.6", "2.0.1"])
async def test_the_command_line_sets_and_lifts_a_limit_and_injects_events(
        csms_server: RunningServer, version: str) -> None:
    await csms_server.add_station("SIM00001")
    await csms_server.add_tag("SIMTAG")
    code, out, err = await run_cli(
        "run", "--url", csms_server.url, "--ocpp", version, "--sessions", "1",
        "--session-seconds", "1", "--meter-interval", "0.1", "--external-limit", "4000@SO",
        "--security-event", "TamperDetectionActivated:enclosure opened", "--json")
    assert code == 0, err
    summary = json.loads(out)
    assert summary["sessions"] == 1 and summary["errors"] == 0
    # at most 4 kW over the session, in compressed time (one real second is one minute),
    # the meter's whole Wh and the timestamps' milliseconds allowed for
    [session] = await csms_server.sessions("SIM00001")
    seconds = (datetime.fromisoformat(session["stopped_at"])
               - datetime.fromisoformat(session["started_at"])).total_seconds()
    assert 0 < session["energy_wh"] <= 4000 * (seconds + 0.01) * 60 / 3600 + 1
    assert session["energy_wh"] < 11000 * seconds * 60 / 3600 / 2  # not at full power
    security = {e["type"]: e for e in await station_events(csms_server, "SIM00001",
                                                             "security")}
    assert security["TamperDetectionActivated"]["techInfo"] == "enclosure opened"
    assert "StartupOfTheDevice" in security
    limits = await station_events(csms_server, "SIM00001", LIMIT)
    cleared = await station_events(csms_server, "SIM00001", CLEARED)
    if version == "2.0.1":
        assert [e["chargingLimit"]["chargingLimitSource"] for e in limits] == ["SO"]
        assert cleared == [{"chargingLimitSource": "SO"}]  # lifted at the end
    else:
        assert limits == cleared == []


@pytest.mark.parametrize(("option", "value", "why"), [
    ("--external-limit", "4000@CSO", "unknown limit source 'CSO'"),
    ("--external-limit", "lots", "not a power in W"),
    ("--external-limit", "-5", "not a power in W"),
    ("--security-event", "Tamper Detected", "not a security event type"),
])
async def test_bad_options_are_one_line_and_exit_2(option: str, value: str, why: str) -> None:
    code, _, err = await run_cli("run", "--url", "ws://127.0.0.1:9", option, value)
    assert code == 2
    [line] = err.strip().splitlines()
    assert why in line, line
