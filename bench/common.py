"""Shared pieces of the benchmarks: servers in subprocesses, the load generator, RSS."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from chargers_sim.load import load_command, run_json_processes

__all__ = ["children", "free_port", "load", "load_parallel", "node_peer_ready", "parent",
           "rss_kib", "server", "tree_cpu_s", "wait_port"]

ROOT = Path(__file__).resolve().parents[1]
NODE_MODULES = ROOT / ".tools" / "node_modules"


def node_peer_ready() -> bool:
    """Whether the Node peer can run (node on the PATH, ocpp-rpc installed by make install)."""
    import shutil

    return shutil.which("node") is not None and (NODE_MODULES / "ocpp-rpc").is_dir()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port}")


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def parent(pid: int) -> int:
    """The parent of process ``pid`` (Linux: read from /proc; OSError when it is gone)."""
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[1])


def children(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (Linux: read from /proc)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            ppid = parent(int(entry))
        except (OSError, ValueError, IndexError):
            continue
        if ppid == pid:
            found.append(int(entry))
    return found


def _cpu_s(pid: int) -> float:
    """User plus system CPU seconds a process has used (0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def tree_cpu_s(pid: int) -> float:
    """CPU seconds of a process and its children (the workers of csms serve --workers)."""
    return _cpu_s(pid) + sum(_cpu_s(child) for child in children(pid))


@contextlib.contextmanager
def server(kind: str, db: str | None = None, extra: list[str] | None = None,
           settings: dict[str, str] | None = None, cwd: str | None = None,
           ) -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    """``voltledger`` (csms serve, auto-registering), ``baseline`` (the ocpp library way)
    or ``ocpp-rpc`` (the Node ocpp-rpc server in strict mode, from make install); ``extra``:
    more ``csms serve`` arguments, or the ocpp-rpc server's process count; ``settings``:
    more environment (``CSMS_*`` settings); ``cwd``: another checkout whose ``csms`` runs
    (``python -m`` imports from the working directory first)."""
    port = free_port()
    env = {**os.environ, **(settings or {})}
    with tempfile.TemporaryDirectory() as folder:
        if kind == "baseline":
            cmd = [sys.executable, "-m", "bench.baseline_ocpp_lib", "--port", str(port)]
        elif kind == "ocpp-rpc":
            cmd = ["node", str(ROOT / "bench" / "peers" / "ocpp_rpc_server.js"), str(port),
                   *(extra or [])]
            env["NODE_PATH"] = str(NODE_MODULES)
        else:
            cmd = [sys.executable, "-m", "csms", "serve", "--port", str(port),
                   "--db", db or str(Path(folder) / "bench.sqlite3"), "--auto-register",
                   "--admin-port", "-1", "--data-dir", folder, "--log-level", "error",
                   *(extra or [])]
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                env=env, cwd=cwd)
        try:
            wait_port(port)
            yield port, proc
        finally:
            proc.terminate()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()


def load(port: int, stations: int, ocpp: str, duration: float, procs: int,
         prefix: str) -> dict[str, Any]:
    """One load generator (``procs`` processes of its own) against a local port."""
    cmd = load_command(f"ws://127.0.0.1:{port}", stations, ocpp, duration=duration,
                       prefix=prefix, procs=procs)
    return run_json_processes([cmd], env={**os.environ, "PYTHONWARNINGS": "ignore"})[0]


def load_parallel(targets: list[tuple[int, int, str]], ocpp: str,
                  duration: float) -> list[dict[str, Any]]:
    """Several load generators at once: (port, stations, id prefix) each."""
    return run_json_processes(
        [load_command(f"ws://127.0.0.1:{port}", n, ocpp, duration=duration, prefix=prefix)
         for port, n, prefix in targets],
        quiet=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
