"""Shared pieces of the benchmarks: servers in subprocesses, the load generator, RSS."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from chargers_sim.load import load_command, run_json_processes

__all__ = ["ServerExited", "children", "cpu_used_s", "free_port", "launch", "load",
           "load_parallel", "node_peer_ready", "parent", "rss_kib", "server", "stop",
           "tree_cpu_by_pid", "tree_cpu_s", "wait_port"]

ROOT = Path(__file__).resolve().parents[1]
NODE_MODULES = ROOT / ".tools" / "node_modules"


def node_peer_ready() -> bool:
    """Whether the Node peer can run (node on the PATH, ocpp-rpc installed by make install)."""
    import shutil

    return shutil.which("node") is not None and (NODE_MODULES / "ocpp-rpc").is_dir()


def free_port() -> int:
    """A loopback port for a server started next (``settlement.chain.free_local_port``:
    below the ephemeral range, which outgoing connections take their ports from)."""
    from settlement.chain import free_local_port  # web3 and eth-account: ~0.5 s to import

    return free_local_port()


class ServerExited(RuntimeError):
    """The server's process ended before it listened."""


def wait_port(port: int, timeout: float = 30.0,
              proc: subprocess.Popen[bytes] | None = None) -> None:
    """Until something listens on ``port``; with ``proc``, fail at once when that process
    has ended (a server that could not start)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise ServerExited(f"the server exited ({proc.returncode}) before listening"
                               f" on port {port}")
        with contextlib.suppress(OSError):
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port}")


_PORT_TAKEN = ("address already in use", "EADDRINUSE")


def launch(command: Callable[[list[int]], list[str]], ports: int, log: Path,
           env: dict[str, str] | None = None, cwd: str | None = None,
           timeout: float = 30.0) -> tuple[subprocess.Popen[bytes], list[int]]:
    """A server on ``ports`` free ports (``command(ports)`` runs it), once it listens on
    all of them. A port is free when chosen, not when the server binds it: another process
    (a test or benchmark beside this one) may take it in between. A server that exits
    because of that starts again on new ports, up to three times; any other exit is
    reported with the end of its error output (``log``); ``timeout``: seconds each port
    is waited for."""
    for attempt in range(3):
        chosen = [free_port() for _ in range(ports)]
        with open(log, "wb") as err:
            proc = subprocess.Popen(command(chosen), stdout=subprocess.DEVNULL, stderr=err,
                                    env=env, cwd=cwd)
        try:
            for port in chosen:
                wait_port(port, timeout, proc=proc)
        except ServerExited as exc:
            said = log.read_bytes()[-2000:].decode(errors="replace").strip()
            if attempt < 2 and any(taken in said for taken in _PORT_TAKEN):
                continue
            raise ServerExited(f"{exc}: {said}") from None
        except BaseException:
            stop(proc)
            raise
        return proc, chosen
    raise AssertionError("unreachable")


def stop(proc: subprocess.Popen[bytes]) -> None:
    """Terminate a server, killed if it is still there after 20 s."""
    proc.terminate()
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


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
    return sum(tree_cpu_by_pid(pid).values())


def tree_cpu_by_pid(pid: int) -> dict[int, float]:
    """CPU seconds of a process and of each of its children, by process id."""
    return {p: _cpu_s(p) for p in (pid, *children(pid))}


def cpu_used_s(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU seconds a tree of processes used between two reads of :func:`tree_cpu_by_pid`:
    each process's own difference, so a child that ended meanwhile (a PostgreSQL backend
    of a connection closed) takes nothing away (the difference of the sums went below
    zero); one that started meanwhile, or a reused id, counts from zero."""
    return sum(t - before[p] if before.get(p, t + 1) <= t else t for p, t in after.items())


@contextlib.contextmanager
def server(kind: str, db: str | None = None, extra: list[str] | None = None,
           settings: dict[str, str] | None = None, cwd: str | None = None,
           ) -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    """``voltledger`` (csms serve, auto-registering), ``baseline`` (the ocpp library way)
    or ``ocpp-rpc`` (the Node ocpp-rpc server in strict mode, from make install); ``extra``:
    more ``csms serve`` arguments, or the ocpp-rpc server's process count; ``settings``:
    more environment (``CSMS_*`` settings); ``cwd``: another checkout whose ``csms`` runs
    (``python -m`` imports from the working directory first)."""
    # a fleet auto-registers from a few loopback addresses: no hourly share per address
    # (an environment variable, not a flag: a checkout from before the setting ignores it)
    env = {**os.environ, "CSMS_AUTO_REGISTER_PER_HOUR": "0", **(settings or {})}
    if kind == "ocpp-rpc":
        env["NODE_PATH"] = str(NODE_MODULES)
    with tempfile.TemporaryDirectory() as folder:

        def command(ports: list[int]) -> list[str]:
            port = str(ports[0])
            if kind == "baseline":
                return [sys.executable, "-m", "bench.baseline_ocpp_lib", "--port", port]
            if kind == "ocpp-rpc":
                return ["node", str(ROOT / "bench" / "peers" / "ocpp_rpc_server.js"), port,
                        *(extra or [])]
            return [sys.executable, "-m", "csms", "serve", "--port", port,
                    "--db", db or str(Path(folder) / "bench.sqlite3"), "--auto-register",
                    "--admin-port", "-1", "--data-dir", folder, "--log-level", "error",
                    *(extra or [])]

        proc, (port,) = launch(command, 1, Path(folder) / "server.err", env=env, cwd=cwd)
        try:
            yield port, proc
        finally:
            stop(proc)


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
