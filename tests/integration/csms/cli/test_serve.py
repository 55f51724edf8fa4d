"""``csms serve`` and its MQTT broker: the banner names the broker without its password,
no log line holds it, and a wrong broker URL or CA file stops the start with one line."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest

from support.services import Broker

PASSWORD = "pa:ss/w@rd %s3cret"


def serve(tmp_path: Path, *args: str, env: dict[str, str] | None = None,
          ) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "csms", "serve", "--port", "0", "--admin-port", "-1",
         "--files-port", "-1", "--db", str(tmp_path / "c.db"),
         "--data-dir", str(tmp_path / "data"), *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
        env={**os.environ, "COLUMNS": "200", **(env or {})})


@pytest.fixture
def login_broker(tmp_path: Path) -> Iterator[Broker]:
    (tmp_path / "broker").mkdir()
    b = Broker(tmp_path / "broker", users={"node": PASSWORD})
    b.start()
    yield b
    b.stop()


def test_the_banner_and_the_logs_name_the_broker_without_its_password(
        tmp_path: Path, login_broker: Broker) -> None:
    url = f"mqtt://node:{quote(PASSWORD, safe='')}@127.0.0.1:{login_broker.port}"
    proc = serve(tmp_path, "--log-level", "debug", env={"CSMS_MQTT": url})
    try:
        assert proc.stdout is not None
        banner = ""
        deadline = time.monotonic() + 20
        while "mqtt" not in banner and time.monotonic() < deadline:
            line = proc.stdout.readline()
            assert line, f"csms serve ended: {proc.poll()}"
            banner += line
        time.sleep(1.0)  # the relay and the command bus connect and log it
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=20)
    banner += out
    assert f"mqtt   mqtt://node@127.0.0.1:{login_broker.port} (events published)" in banner, \
        banner
    assert f"MQTT connected to mqtt://node@127.0.0.1:{login_broker.port}" in err, err[-2000:]
    for shown in (banner, err):
        for form in (PASSWORD, quote(PASSWORD, safe=""), quote(PASSWORD)):
            assert form not in shown


@pytest.mark.parametrize(("args", "env", "message"), [
    (["--mqtt", f"http://node:{quote(PASSWORD, safe='')}@broker"], {},
     "--mqtt (CSMS_MQTT): expected mqtt://, tcp:// or mqtts://"),
    ([], {"CSMS_MQTT": f"mqtt://node:{quote(PASSWORD, safe='')}@broker:65536"},
     "--mqtt (CSMS_MQTT): the port must be a number from 1 to 65535"),
    (["--mqtt", "mqtts://node@broker", "--mqtt-ca", "nope.pem"], {},
     "--mqtt-ca (CSMS_MQTT_CA): no such file: nope.pem"),
    (["--mqtt", "mqtts://node@broker"], {"CSMS_MQTT_CA": "csms.toml"},
     "--mqtt-ca (CSMS_MQTT_CA): csms.toml is not a PEM CA certificate"),
    (["--mqtt", "mqtt://node@broker", "--mqtt-ca", "csms.toml"], {},
     "--mqtt-ca (CSMS_MQTT_CA): needs an mqtts:// --mqtt"),
])
def test_a_wrong_broker_setting_is_one_line_and_exit_2(
        tmp_path: Path, args: list[str], env: dict[str, str], message: str) -> None:
    (tmp_path / "csms.toml").write_text("port = 9000\n")
    proc = serve(tmp_path, *args, env=env)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 2, (proc.returncode, err[-400:])
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert err.startswith(f"error: {message}"), err
    assert PASSWORD not in err and quote(PASSWORD, safe="") not in err
