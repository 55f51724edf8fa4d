"""``csms serve --workers 2`` on PostgreSQL: two processes on one port, each a node;
stations spread over both, a worker killed with -9 is started again and its stations
come back; SIGTERM stops every worker. With SQLite the command refuses in one line."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from bench.common import free_port, wait_port
from chargers_sim.station import Station
from csms.domain.model import IdTag
from csms.service.charging import new_station
from csms.service.ports import Tx
from csms.storage import open_repository

STATIONS = 16


def _workers(parent: int) -> list[int]:
    """The live worker processes of ``parent`` (from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if int(stat[1]) == parent and stat[0] != "Z" and b"csms.cli.workers" in cmdline:
            found.append(int(entry.name))
    return sorted(found)


async def _until(check: object, timeout: float = 30.0) -> None:
    assert callable(check)
    async with asyncio.timeout(timeout):
        while not await check():
            await asyncio.sleep(0.1)


def _serve_two_workers(port: int, db: str, folder: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "csms", "serve", "--workers", "2", "--port", str(port),
             "--db", db, "--admin-port", "-1", "--data-dir", str(folder / "data"),
             "--node-id", "wk", "--log-level", "info"], stdout=out, stderr=subprocess.STDOUT)


async def test_two_workers_share_the_port_and_a_killed_one_comes_back(
    postgres_url: str, tmp_path: Path
) -> None:
    repo = await open_repository(postgres_url)
    ids = [f"WK{i:02d}" for i in range(STATIONS)]

    async def register(tx: Tx) -> None:
        for sid in ids:
            await tx.insert_station(new_station(sid))
        await tx.put_tag(IdTag("TWK"))

    await repo.unit(register)
    port = free_port()
    log = tmp_path / "serve.log"
    parent = _serve_two_workers(port, postgres_url, tmp_path, log)
    stations = [Station(f"ws://127.0.0.1:{port}", sid, "1.6", seed=i, call_timeout=3,
                        retry_interval=0.2, backoff_cap=0.5, message_attempts=1000)
                for i, sid in enumerate(ids)]

    async def nodes() -> dict[str, str | None]:
        stored = await repo.read(lambda tx: tx.list_stations())
        return {s.id: s.connected_node for s in stored if s.id in ids}

    try:
        wait_port(port)

        async def both_listen() -> bool:  # a node beats once it listens
            return {"wk/0", "wk/1"} <= set(await repo.read(lambda tx: tx.node_beats()))

        await _until(both_listen)
        assert len(_workers(parent.pid)) == 2
        for st in stations:
            await st.start()

        async def all_online() -> bool:
            return all(n is not None for n in (await nodes()).values())

        await _until(all_online)
        # the kernel spread the connections: both workers, each a node of its own
        assert set((await nodes()).values()) == {"wk/0", "wk/1"}

        # a worker killed with -9: the parent starts it again, its stations reconnect
        before = _workers(parent.pid)
        os.kill(before[0], signal.SIGKILL)

        async def restarted() -> bool:
            now = _workers(parent.pid)
            return len(now) == 2 and before[0] not in now

        await _until(restarted)
        await asyncio.wait_for(
            asyncio.gather(*(st.run_sessions(1, 0.5, id_tag="TWK") for st in stations)), 60)
        for st in stations:
            await st.drain()
        sessions = await repo.read(lambda tx: tx.list_sessions(limit=100))
        assert len(sessions) == STATIONS
        assert all(s.status.value == "completed" for s in sessions)
    finally:
        for st in stations:
            await st.close()
        workers = _workers(parent.pid) if parent.poll() is None else []
        parent.send_signal(signal.SIGTERM)
        parent.wait(40)
        await repo.close()
    assert parent.returncode == 0, log.read_text()
    assert workers and not [pid for pid in workers if Path(f"/proc/{pid}").exists()]


@pytest.mark.parametrize(("args", "message"), [
    (["--db", "{tmp}/csms.sqlite3"], "PostgreSQL only"),
    (["--db", "postgresql://postgres@127.0.0.1:5432/test", "--port", "0"], "fixed ports"),
    (["--workers", "0"], "--workers"),
    (["--workers", "many"], "--workers"),
])
def test_workers_need_postgresql_fixed_ports_and_a_count(
    args: list[str], message: str, tmp_path: Path
) -> None:
    argv = [a.replace("{tmp}", str(tmp_path)) for a in args]
    if "--workers" not in argv:
        argv = ["--workers", "2", *argv]
    r = subprocess.run([sys.executable, "-m", "csms", "serve", *argv, "--admin-port", "-1",
                        "--data-dir", str(tmp_path / "data")],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2, r.stderr
    assert message in r.stderr
    assert "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) <= 3  # a usage line and the error, no more


def test_workers_that_cannot_listen_stop_the_command(postgres_url: str, tmp_path: Path) -> None:
    import socket

    with socket.socket() as taken:  # the port is someone else's (no SO_REUSEPORT)
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        r = subprocess.run(
            [sys.executable, "-m", "csms", "serve", "--workers", "2", "--port", str(port),
             "--db", postgres_url, "--admin-port", "-1", "--data-dir", str(tmp_path / "d")],
            capture_output=True, text=True, timeout=120)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "did not start" in r.stdout
    assert "cannot listen" in r.stderr  # the worker's own line
    assert "Traceback" not in r.stdout + r.stderr
