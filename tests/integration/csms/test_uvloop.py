"""``csms serve`` on uvloop, the real process: the loop it runs on, a station served
through the connection guards, a bad choice refused in one line.

The guards themselves (handshake gate, write-buffer limit, control-frame bucket, drain
deadlines, TLS profiles, Basic auth, subprotocols, compression) run on both loops in
test_transport.py, test_security.py and test_server.py (``BOTH_LOOPS`` in conftest).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from websockets.asyncio.client import connect

from bench.common import free_port, wait_port
from csms.config import Settings, SettingsError
from csms.eventloop import loop_factory

BOOT = {"chargePointVendor": "V", "chargePointModel": "M"}


def _loaded(pid: int, name: str) -> bool:
    """Whether the process has mapped a shared object whose path holds ``name``."""
    return name in Path(f"/proc/{pid}/maps").read_text()


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[object]:
    procs: list[subprocess.Popen[str]] = []

    def start(*extra: str) -> tuple[int, subprocess.Popen[str]]:
        port = free_port()
        proc = subprocess.Popen(
            [sys.executable, "-m", "csms", "serve", "--port", str(port), "--db",
             str(tmp_path / f"{port}.sqlite3"), "--auto-register", "--admin-port", "-1",
             "--data-dir", str(tmp_path / f"d{port}"), "--log-level", "warning", *extra],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True)
        procs.append(proc)
        wait_port(port)
        return port, proc

    yield start
    for proc in procs:
        proc.terminate()
        proc.wait(20)


async def _station(port: int) -> tuple[str | None, str | None, list[str]]:
    """A station offering 2.0.1 then 1.6 with compression: the subprotocol and
    extension it got, and its answers to a malformed frame then a BootNotification."""
    async with connect(f"ws://127.0.0.1:{port}/CP%20UV1",
                       subprotocols=["ocpp2.0.1", "ocpp1.6"]) as ws:  # type: ignore[list-item]
        assert ws.response is not None
        answers = []
        await ws.send('[2,"m1","Heartbeat",{}')  # not JSON: a CALLERROR, the link lives
        answers.append(str(await ws.recv()))
        await ws.send(json.dumps([2, "b1", "BootNotification", {
            "chargingStation": {"vendorName": "V", "model": "M"}, "reason": "PowerUp"}]))
        answers.append(str(await ws.recv()))
        return ws.subprotocol, ws.response.headers.get("Sec-WebSocket-Extensions"), answers


@pytest.mark.parametrize(("choice", "uv"), [("uvloop", True), ("auto", True),
                                            ("asyncio", False), (None, True)])
def test_serve_runs_on_the_loop_chosen(serve: object, choice: str | None, uv: bool) -> None:
    port, proc = serve(*(("--event-loop", choice) if choice else ()))  # type: ignore[operator]
    subprotocol, extension, answers = asyncio.run(_station(port))
    assert _loaded(proc.pid, "uvloop") is uv
    assert subprotocol == "ocpp2.0.1"  # the client's order
    assert extension is not None and "client_no_context_takeover" in extension
    assert answers[0].startswith('[4,"-1","RpcFrameworkError"')  # id unreadable
    assert answers[1].startswith('[3,"b1",') and '"Accepted"' in answers[1]
    assert proc.poll() is None


def test_a_bad_event_loop_is_one_line(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "csms", "serve", "--event-loop", "trio", "--port", "0",
         "--db", str(tmp_path / "x.sqlite3"), "--admin-port", "-1"],
        capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert "event" in done.stderr and "uvloop" in done.stderr


def test_settings_and_factory() -> None:
    assert Settings().event_loop == "auto"  # uvloop where installed
    with pytest.raises(SettingsError):
        Settings.load(event_loop="libuv")
    assert loop_factory("asyncio") is None
    factory = loop_factory("uvloop")
    assert factory is not None
    loop = factory()
    try:
        assert type(loop).__module__.startswith("uvloop")
    finally:
        loop.close()
    with pytest.raises(ValueError):
        loop_factory("trio")
