"""``python -m chargers_sim`` as a process, against a real ``csms serve`` or a closed port."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.common import free_port, wait_port

ENV = {**os.environ, "PYTHONWARNINGS": "ignore"}


def csms(db: Path, *args: str) -> None:
    subprocess.run([sys.executable, "-m", "csms", *args, "--db", str(db)], check=True,
                   capture_output=True, env=ENV, timeout=60)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A real ``csms serve`` (no auto-registration): its URL and its database."""
    db = tmp_path / "csms.sqlite3"
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "csms", "serve", "--port", str(port), "--db", str(db),
         "--admin-port", "-1", "--data-dir", str(tmp_path / "data"), "--log-level", "error"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV)
    try:
        wait_port(port)
        yield f"ws://127.0.0.1:{port}", db
    finally:
        proc.terminate()
        proc.wait(20)


def sim(*args: str, timeout: float = 60) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.monotonic()
    r = subprocess.run([sys.executable, "-m", "chargers_sim", *args], capture_output=True,
                       text=True, env=ENV, timeout=timeout)
    return r, time.monotonic() - started


def one_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got:\n{stderr}"
    assert "Traceback" not in stderr
    return lines[0]


def test_unregistered_station_fails_fast_with_one_line(served: tuple[str, Path]) -> None:
    url, _ = served
    r, seconds = sim("--url", url, "--count", "3")
    assert r.returncode == 1
    line = one_line(r.stderr)
    assert "SIM00001" in line and "HTTP 404" in line and "not registered" in line
    assert seconds < 15  # one refusal is enough: no retries until a timeout


def test_wrong_password_fails_fast_with_one_line(served: tuple[str, Path]) -> None:
    url, db = served
    csms(db, "stations", "add", "SIM00001", "--password", "0123456789abcdef")
    r, seconds = sim("--url", url, "--password", "wrong-password-123")
    assert r.returncode == 1
    line = one_line(r.stderr)
    assert "SIM00001" in line and "HTTP 401" in line and "password" in line
    assert seconds < 15


@pytest.mark.parametrize(("mode", "station"), [
    ([], "SIM00001"), (["load", "--duration", "1"], "SIM00001"),
    (["load", "--duration", "1", "--procs", "2", "--count", "2"], "SIM0-00001"),
])
def test_nothing_listening_says_so(mode: list[str], station: str) -> None:
    # Only the fail-fast path says this (after --unreachable-grace seconds, 10 by default:
    # shortened here); without it the simulator would retry until its start timeout and
    # report that instead.
    url = f"ws://127.0.0.1:{free_port()}"
    r, seconds = sim(*mode, "--url", url, "--unreachable-grace", "1")
    assert r.returncode == 1
    assert one_line(r.stderr) == f"error: {station}: nothing is listening at {url}"
    assert seconds >= 1  # the grace is waited out first


def test_sessions_zero_says_what_it_does_and_stops_on_ctrl_c(
        served: tuple[str, Path]) -> None:
    url, db = served
    for sid in ("SIM00001", "SIM00002"):
        csms(db, "stations", "add", sid)
    proc = subprocess.Popen(
        [sys.executable, "-m", "chargers_sim", "--url", url, "--count", "2", "--sessions",
         "0", "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    try:
        assert proc.stderr is not None
        first = proc.stderr.readline()
        assert "--sessions 0" in first and "Ctrl-C" in first and "2 station(s)" in first
        progress = proc.stderr.readline()
        assert re.match(r"2/2 online, \d+ messages sent, 0 errors", progress), progress
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 0
    summary = json.loads(out)
    assert summary["stations"] == 2 and summary["sessions"] == 0 and summary["messages"] > 0


def test_help_shows_every_option_with_its_default() -> None:
    r, _ = sim("--help")
    assert r.returncode == 0
    text = " ".join(r.stdout.split())  # argparse wraps lines
    for option, default in [("--seed", "1"), ("--session-seconds", "2.0"),
                            ("--power-kw", "11.0"), ("--connect-rate", "200.0"),
                            ("--connect-rate", "500.0"), ("--procs", "1"),
                            ("--sessions", "1"), ("--count", "1"), ("--ocpp", "1.6"),
                            ("--duration", "20.0"), ("--meter-interval", "0.5"),
                            ("--id-prefix", "SIM"), ("--id-tag", "SIMTAG"),
                            ("--unreachable-grace", "10.0")]:
        assert re.search(re.escape(option) + r" [A-Z_{},0-9]+ [^-].*?\(default: "
                         + re.escape(default) + r"\)", text), (option, default)
    for flag in ("--mix", "--json", "--signed", "--password", "--url", "--connectors"):
        assert re.search(re.escape(flag) + r"\b[^\n]*? [a-z]+ [a-z]+", text), flag
