"""``csms firmware``, ``csms logs``, ``csms remote reserve`` and ``csms reservations`` as
processes, against a running central system and simulated stations of both versions."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest

from chargers_sim import Station
from chargers_sim.maintenance import simulator_image
from support import RunningServer
from support.pki import key_and_cert

FAST: dict[str, Any] = {"meter_interval": 0.05, "call_timeout": 3, "retry_interval": 0.1}


async def cli(server: RunningServer, *args: str) -> tuple[int, str, str]:
    assert server.app is not None and server.app.admin is not None
    env = {**os.environ, "CSMS_DATA_DIR": server.settings.data_dir, "COLUMNS": "200",
           "CSMS_ADMIN_PORT": str(server.app.admin.port), "CSMS_DB": server.settings.db}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "csms", *args, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def one_line_error(code: int, err: str, expected: int = 2) -> None:
    assert code == expected, err
    assert err.startswith("error:") and len(err.strip().splitlines()) == 1, err


async def eventually(server: RunningServer, args: list[str], check: Any,
                     timeout: float = 15) -> Any:
    async with asyncio.timeout(timeout):
        while True:
            code, out, err = await cli(server, *args)
            assert code == 0, err
            rows = json.loads(out)
            if check(rows):
                return rows
            await asyncio.sleep(0.2)


@pytest.fixture
async def stations(csms_server: RunningServer) -> Any:
    for sid in ("SIM1", "SIM2"):
        await csms_server.add_station(sid)
    await csms_server.add_tag("SIMTAG")
    sims = [Station(csms_server.url, "SIM1", "1.6", seed=1, **FAST),
            Station(csms_server.url, "SIM2", "2.0.1", seed=2, **FAST)]
    for st in sims:
        await st.start()
    yield sims
    for st in sims:
        await st.close()


async def test_firmware(csms_server: RunningServer, stations: list[Station],
                        tmp_path: Path) -> None:
    image = tmp_path / "wallbox-2.0.bin"
    image.write_bytes(simulator_image("sim-2.0"))
    code, out, err = await cli(csms_server, "firmware", "add", str(image), "--version",
                               "sim-2.0")
    assert code == 0, err
    assert "sim-2.0" in out
    one_line_error(*(await cli(csms_server, "firmware", "add", str(image), "--version",
                               "sim-2.0"))[::2])
    key_and_cert(tmp_path)
    one_line_error(*(await cli(csms_server, "firmware", "add", str(image), "--version",
                               "x", "--sign-with", str(tmp_path / "firmware-signer.key")))[::2])
    one_line_error(*(await cli(csms_server, "firmware", "add", str(tmp_path / "missing"),
                               "--version", "x"))[::2])
    signed = tmp_path / "wallbox-3.0.bin"
    signed.write_bytes(simulator_image("sim-3.0"))
    code, _, err = await cli(csms_server, "firmware", "add", str(signed), "--version",
                             "sim-3.0", "--sign-with", str(tmp_path / "firmware-signer.key"),
                             "--cert", str(tmp_path / "firmware-signer.pem"))
    assert code == 0, err
    code, out, _ = await cli(csms_server, "firmware", "list", "--json")
    assert [(f["version"], f["signed"]) for f in json.loads(out)] == [
        ("sim-2.0", False), ("sim-3.0", True)]
    code, out, err = await cli(csms_server, "firmware", "update", "SIM1", "SIM2",
                               "--version", "sim-3.0", "--retries", "1", "--json")
    assert code == 0, err
    assert [r["status"] for r in json.loads(out)] == ["Accepted", "Accepted"]
    rows = await eventually(csms_server, ["firmware", "status", "--json"],
                            lambda rows: {r["status"] for r in rows} == {"Installed"})
    assert {r["station_id"]: r["version"] for r in rows} == {"SIM1": "sim-3.0",
                                                            "SIM2": "sim-3.0"}
    assert [st.firmware_version for st in stations] == ["sim-3.0", "sim-3.0"]
    # an unknown version for one station is its one line; for several, a table row each
    one_line_error(*(await cli(csms_server, "firmware", "update", "SIM1", "--version",
                               "nope"))[::2])
    code, out, _ = await cli(csms_server, "firmware", "update", "SIM1", "GHOST",
                             "--version", "sim-2.0", "--window-end", "+2h", "--json")
    assert code == 1
    assert [r["ok"] for r in json.loads(out)] == [True, False]
    one_line_error(*(await cli(csms_server, "firmware", "update", "SIM1", "--version",
                               "sim-2.0", "--window-start", "someday"))[::2])


async def test_logs(csms_server: RunningServer, stations: list[Station],
                    tmp_path: Path) -> None:
    code, out, err = await cli(csms_server, "logs", "request", "SIM1", "--type",
                               "Diagnostics", "--since", "-1d", "--json")
    assert code == 0, err
    rid = json.loads(out)["request_id"]
    rows = await eventually(csms_server, ["logs", "list", "--json"],
                            lambda rows: rows and rows[0]["uploaded_at"] is not None)
    assert rows[0]["id"] == rid and rows[0]["log_type"] == "Diagnostics"
    target = tmp_path / "diag.log"
    code, out, err = await cli(csms_server, "logs", "get", str(rid), "-o", str(target))
    assert code == 0, err
    assert target.read_bytes().startswith(b"SIM1 Diagnostics log")
    one_line_error(*(await cli(csms_server, "logs", "get", str(rid), "-o",
                               str(target)))[::2])
    one_line_error(*(await cli(csms_server, "logs", "get", "9999", "-o",
                               str(tmp_path / "x")))[::2])
    one_line_error(*(await cli(csms_server, "logs", "request", "SIM2", "--type",
                               "Everything"))[::2])
    code, out, err = await cli(csms_server, "logs", "list")
    assert code == 0 and "Diagnostics" in out


async def test_reservations(csms_server: RunningServer, stations: list[Station]) -> None:
    code, out, err = await cli(csms_server, "remote", "reserve", "SIM2", "--tag", "SIMTAG",
                               "--until", "+1h", "--connector", "1", "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["status"] == "Accepted"
    rows = await eventually(csms_server, ["reservations", "list", "--json"],
                            lambda rows: rows[0]["status"] == "accepted")
    assert rows[0]["id"] == result["reservation_id"]
    one_line_error(*(await cli(csms_server, "remote", "reserve", "SIM2", "--tag", "SIMTAG",
                               "--until", "yesterday"))[::2])
    one_line_error(*(await cli(csms_server, "remote", "reserve", "SIM2", "--tag", "NOBODY",
                               "--until", "+1h"))[::2])
    code, out, err = await cli(csms_server, "remote", "cancel-reservation", "SIM2",
                               str(result["reservation_id"]))
    assert code == 0 and "Accepted" in out, err
    code, out, _ = await cli(csms_server, "reservations", "list")
    assert code == 0 and "cancelled" in out


async def test_publish_unpublish_and_the_queue(csms_server: RunningServer,
                                               stations: list[Station],
                                               tmp_path: Path) -> None:
    """``csms firmware publish|unpublish`` with a simulated local controller; requests for
    a station that is offline are queued, shown, and cancelled."""
    for sid in ("LC1", "OFF1"):
        await csms_server.add_station(sid)
    lc = Station(csms_server.url, "LC1", "2.0.1", seed=3, local_controller=True, **FAST)
    await lc.start()
    try:
        image = tmp_path / "wallbox-4.0.bin"
        image.write_bytes(simulator_image("sim-4.0"))
        code, _, err = await cli(csms_server, "firmware", "add", str(image), "--version",
                                 "sim-4.0")
        assert code == 0, err
        code, out, _ = await cli(csms_server, "firmware", "list", "--json")
        md5 = json.loads(out)[0]["md5"]
        assert len(md5) == 32
        # a 1.6 station, an unknown version, a bad retry count: one line each, nothing sent
        for args in (["SIM1", "--version", "sim-4.0"], ["LC1", "--version", "nope"],
                     ["LC1", "--version", "sim-4.0", "--retries", "-1"]):
            one_line_error(*(await cli(csms_server, "firmware", "publish", *args))[::2])
        one_line_error(*(await cli(csms_server, "firmware", "unpublish", "SIM1", "--version",
                                   "sim-4.0"))[::2])
        code, out, err = await cli(csms_server, "firmware", "publish", "LC1", "--version",
                                   "sim-4.0", "--retries", "1", "--retry-interval", "1")
        assert code == 0 and "Accepted" in out, err
        rows = await eventually(csms_server, ["firmware", "status", "--json"],
                                lambda rows: rows and rows[0]["status"] == "Published")
        assert rows[0]["kind"] == "publish" and rows[0]["request"]["checksum"] == md5
        url = rows[0]["locations"][0]
        code, out, _ = await cli(csms_server, "firmware", "status")
        assert code == 0 and url in out and "publish" in out
        code, out, err = await cli(csms_server, "firmware", "unpublish", "LC1", "--version",
                                   "sim-4.0", "--json")
        assert code == 0 and json.loads(out)["status"] == "Unpublished", err
        assert lc.published == {}
    finally:
        await lc.close()
    # OFF1 is offline: both requests are queued, shown, and can be cancelled once
    code, out, err = await cli(csms_server, "firmware", "update", "OFF1", "--version",
                               "sim-4.0", "--json")
    assert code == 0, err
    update = json.loads(out)[0]
    assert update["status"] == "queued" and update["ok"]
    code, out, err = await cli(csms_server, "logs", "request", "OFF1")
    assert code == 0 and "queued" in out, err
    code, out, _ = await cli(csms_server, "logs", "list", "--json")
    log_request = json.loads(out)[0]
    assert log_request["station_id"] == "OFF1" and log_request["status"] == "queued"
    code, out, _ = await cli(csms_server, "firmware", "status")
    assert "queued" in out
    # each group cancels its own kind only
    one_line_error(*(await cli(csms_server, "logs", "cancel",
                               str(update["request_id"])))[::2])
    code, out, err = await cli(csms_server, "firmware", "cancel", str(update["request_id"]))
    assert code == 0 and "cancelled" in out, err
    one_line_error(*(await cli(csms_server, "firmware", "cancel",
                               str(update["request_id"])))[::2])
    code, out, err = await cli(csms_server, "logs", "cancel", str(log_request["id"]),
                               "--json")
    assert code == 0 and json.loads(out)["status"] == "cancelled", err
    code, out, _ = await cli(csms_server, "firmware", "status", "--json")
    assert json.loads(out)[0]["status"] == "cancelled"
