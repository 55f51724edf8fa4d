"""A new operator's ``csms``, run as a real process in a folder of its own, and a real
``csms serve`` there (tests/integration/csms/cli: the first hour as the README tells it)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from support.services import free_port

__all__ = ["PASSWORD", "Serve", "csms", "listening", "ok"]

PASSWORD = "first-hour-station-password"


def csms(*args: str, cwd: Path, env: dict[str, str] | None = None,
         timeout: float = 120) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CSMS_")}
    return subprocess.run([sys.executable, "-m", "csms", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout,
                          env={**clean, "COLUMNS": "80", "CSMS_DB": "c.db",
                               "CSMS_DATA_DIR": "data", **(env or {})})


def ok(r: subprocess.CompletedProcess[str]) -> str:
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Traceback" not in r.stdout + r.stderr
    return r.stdout


def listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


class Serve:
    """``csms serve`` on ``c.db`` and ``data`` in ``work``."""

    def __init__(self, work: Path, *extra: str) -> None:
        self.port, self.admin_port = free_port(), free_port()
        self.log_path = work / f"serve-{self.port}.log"
        self.log = self.log_path.open("w")
        clean = {k: v for k, v in os.environ.items() if not k.startswith("CSMS_")}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "csms", "serve", "--db", "c.db", "--data-dir", "data",
             "--port", str(self.port), "--admin-port", str(self.admin_port), *extra],
            cwd=work, stdout=self.log, stderr=subprocess.STDOUT,
            env={**clean, "COLUMNS": "80"})
        deadline = time.monotonic() + 30
        while not listening(self.port) or not listening(self.admin_port):
            assert self.proc.poll() is None, self.log_path.read_text()
            assert time.monotonic() < deadline, "csms serve did not start"
            time.sleep(0.1)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(30)
        self.log.close()
