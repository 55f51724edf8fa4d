"""``csms serve --workers 2`` on a SQLite file and on PostgreSQL: two processes on one
port, each a node; stations spread over both, an operator command reaches a station on the
other worker, a worker killed with -9 is started again and its stations come back with
every session whole; SIGTERM stops every worker. A SQLite file used by workers refuses
another node, and ``:memory:`` cannot be shared."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import subprocess
import sys
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from bench.common import free_port, wait_port
from chargers_sim.station import Station
from csms.domain.model import IdTag
from csms.domain.tariff import Tariff
from csms.service.charging import new_station
from csms.service.ports import Tx
from csms.storage import open_repository
from settlement.chain import find_anvil
from support import IN_CI, require_service
from support.client import RawClient

from .test_settle_kill9 import TAG, add_sessions, ok

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


Shown = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def _metrics(admin_port: int, token: str) -> Shown:
    """/metrics as {(sample name, its labels sorted): value}."""
    import aiohttp
    from prometheus_client.parser import text_string_to_metric_families

    async with aiohttp.ClientSession() as http, http.get(
        f"http://127.0.0.1:{admin_port}/metrics",
        headers={"Authorization": f"Bearer {token}"},
    ) as response:
        assert response.status == 200
        text = await response.text()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def _serve_two_workers(port: int, db: str, folder: Path, log: Path,
                       extra: list[str] | None = None) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "csms", "serve", "--workers", "2", "--port", str(port),
             "--db", db, "--data-dir", str(folder / "data"),
             "--node-id", "wk", "--log-level", "info", *(extra or ["--admin-port", "-1"])],
            stdout=out, stderr=subprocess.STDOUT)


@pytest.fixture(params=["sqlite", "postgres"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The database the workers share: a SQLite file, or a PostgreSQL schema."""
    if request.param == "sqlite":
        return str(tmp_path / "csms.sqlite3")
    return str(request.getfixturevalue("postgres_url"))


async def _command(admin_port: int, token: str, station_id: str) -> tuple[int, Any]:
    import aiohttp

    async with aiohttp.ClientSession() as http, http.post(
        f"http://127.0.0.1:{admin_port}/stations/{station_id}/commands/trigger",
        json={"message": "Heartbeat"},
        headers={"Authorization": f"Bearer {token}", "X-Actor": "test-operator"},
    ) as response:
        return response.status, await response.json()


async def test_two_workers_share_the_port_and_a_killed_one_comes_back(
    database: str, tmp_path: Path
) -> None:
    """Both workers take stations; an operator command through worker 0's admin API
    reaches a station on worker 1 (MQTT); a worker killed with -9 in the middle of the
    sessions comes back, and every session completes with its exact energy, priced and
    queued for settlement once."""
    require_service("Mosquitto", "127.0.0.1", 1883)
    repo = await open_repository(database)
    ids = [f"WK{i:02d}" for i in range(STATIONS)]

    async def register(tx: Tx) -> None:
        for sid in ids:
            await tx.insert_station(new_station(sid))
        await tx.put_tag(IdTag("TWK"))
        await tx.add_tariff(Tariff("*", Decimal("0.40"), "EUR", 2,
                                   valid_from=datetime(2000, 1, 1, tzinfo=UTC)))

    await repo.unit(register)
    port, admin_port = free_port(), free_port()
    log = tmp_path / "serve.log"
    parent = _serve_two_workers(port, database, tmp_path, log, [
        "--admin-port", str(admin_port), "--mqtt", "mqtt://127.0.0.1:1883",
        "--chain", "memory", "--max-wait", "0.5"])
    stations = [Station(f"ws://127.0.0.1:{port}", sid, "1.6" if i % 2 else "2.0.1", seed=i,
                        call_timeout=3, retry_interval=0.2, backoff_cap=0.5,
                        message_attempts=1000, meter_interval=0.1)
                for i, sid in enumerate(ids)]

    async def nodes() -> dict[str, str | None]:
        stored = await repo.read(lambda tx: tx.list_stations())
        return {s.id: s.connected_node for s in stored if s.id in ids}

    try:
        wait_port(port)
        wait_port(admin_port)
        token = (tmp_path / "data" / "admin.token").read_text().strip()

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
        where = await nodes()
        assert set(where.values()) == {"wk/0", "wk/1"}
        # a command through worker 0 (the admin API's) for a station on worker 1
        elsewhere = next(sid for sid, node in where.items() if node == "wk/1")

        async def routed() -> bool:  # the workers' command buses are subscribed
            status, _ = await _command(admin_port, token, elsewhere)
            return status == 200

        await _until(routed)
        status, result = await _command(admin_port, token, elsewhere)
        assert (status, result["status"], result.get("node")) == (200, "Accepted", "wk/1")

        # worker 0's /metrics holds both workers': each one's stations, by its label
        shown = await _metrics(admin_port, token)
        assert shown[("voltledger_workers_scraped", ())] == 2
        assert {w: shown[("voltledger_connected_stations", (("worker", w),))]
                for w in ("0", "1")} == {
            w: sum(node == f"wk/{w}" for node in where.values()) for w in ("0", "1")}
        assert ("voltledger_settlement_backlog", ()) in shown  # the node's, once

        # a worker killed with -9 in the middle of the sessions: the parent starts it
        # again, its stations reconnect (to either worker) and finish their sessions
        running = asyncio.gather(*(st.run_sessions(1, 2.0, id_tag="TWK") for st in stations))
        await asyncio.sleep(0.8)
        before = _workers(parent.pid)
        os.kill(before[1], signal.SIGKILL)

        async def restarted() -> bool:
            now = _workers(parent.pid)
            return len(now) == 2 and before[1] not in now

        await _until(restarted)
        await asyncio.wait_for(running, 90)

        async def both_scraped() -> bool:  # the new worker 1 answers on the old socket
            return (await _metrics(admin_port, token))[
                ("voltledger_workers_scraped", ())] == 2

        await _until(both_scraped)
        for st in stations:
            await st.drain()

        sessions = await repo.read(lambda tx: tx.list_sessions(limit=100))
        assert len(sessions) == STATIONS  # none lost, none doubled
        assert all(s.status.value == "completed" for s in sessions)
        expected = {st.station_id: st.completed[0].meter_stop_wh
                    - st.completed[0].meter_start_wh for st in stations}
        assert {s.station_id: s.energy_wh for s in sessions} == expected

        # worker 0 settles (it alone runs the settlement worker): each session priced
        # and put in a batch once, with its own sequence number
        async def settled(tx: Tx) -> list[dict[str, Any]]:
            return [await tx.session_settlement(s.id) or {} for s in sessions
                    if s.id is not None]

        async def all_batched() -> bool:
            return all(r.get("seq") is not None for r in await repo.read(settled))

        await _until(all_batched, 60)
        rows = await repo.read(settled)
        assert sorted(r["seq"] for r in rows) == list(range(min(r["seq"] for r in rows),
                                                          min(r["seq"] for r in rows)
                                                          + STATIONS))
        assert all(r["price_minor"] is not None for r in rows)
    finally:
        for st in stations:
            await st.close()
        workers = _workers(parent.pid) if parent.poll() is None else []
        parent.send_signal(signal.SIGTERM)
        parent.wait(40)
        await repo.close()
    assert parent.returncode == 0, log.read_text()
    assert workers and not [pid for pid in workers if Path(f"/proc/{pid}").exists()]


async def test_every_worker_refuses_a_card_its_drivers_escrow_does_not_cover(
    tmp_path: Path,
) -> None:
    """A driver linked a card but put nothing in the escrow: a station must not charge on
    it (Authorize: Blocked), on whichever worker it lands. Only worker 0 had the chain;
    the other workers asked no escrow (no opinion: Accepted), so every session a station
    started there was one the driver cannot be billed for, and no limit stopped it."""
    if find_anvil() is None:
        if IN_CI:
            pytest.fail("anvil is required (make install)")
        pytest.skip("anvil not installed: make install")
    db, data = tmp_path / "csms.sqlite3", tmp_path / "data"
    where = ["--db", str(db), "--data-dir", str(data)]
    key = ["--keystore", str(tmp_path / "driver.json"),
           "--password-file", str(tmp_path / "driver.pw"), "--data-dir", str(data)]
    ok("contract", "deploy", "--chain", "local", "--data-dir", str(data))
    driver = re.search(r"0x[0-9a-fA-F]{40}", ok("wallet", "new", *key, "--fund"))
    salt = re.search(r"--salt\s+(0x[0-9a-f]{64})", ok("wallet", "link-card", TAG, *key))
    assert driver is not None and salt is not None
    await add_sessions(db, 0, 0)  # station CP1 and a tariff
    ok("drivers", "link", TAG, "--driver", driver.group(0), "--salt", salt.group(1), *where)
    port = free_port()
    log = tmp_path / "serve.log"
    parent = _serve_two_workers(port, str(db), tmp_path, log,
                                ["--admin-port", "-1", "--chain", "local"])
    repo = await open_repository(str(db))
    try:
        async def started() -> bool:  # each worker's banner: printed once it has started
            text = log.read_text()
            return all(f"node   wk/{k}" in text for k in range(2))

        await _until(started, 60)
        answers: dict[str, set[str]] = {}
        while len(answers) < 2:  # connections until both workers answered
            async with await RawClient.connect(f"ws://127.0.0.1:{port}", "CP1") as station:
                await station.result("BootNotification", {"chargePointVendor": "V",
                                                          "chargePointModel": "M"})
                row = await repo.read(lambda tx: tx.get_station("CP1"))
                status = (await station.result("Authorize", {"idTag": TAG}))["idTagInfo"]
                answers.setdefault(row.connected_node, set()).add(status["status"])
        assert answers == {"wk/0": {"Blocked"}, "wk/1": {"Blocked"}}
    finally:
        await repo.close()
        parent.send_signal(signal.SIGTERM)
        parent.wait(60)


def test_workers_hold_the_sqlite_file_against_another_node(tmp_path: Path) -> None:
    """While the workers of one ``csms serve --workers`` use a SQLite file, another
    ``csms serve`` on it is refused in one line, even after their parent was killed -9
    (each worker holds the parent's lock)."""
    db = str(tmp_path / "csms.sqlite3")
    port = free_port()
    parent = _serve_two_workers(port, db, tmp_path, tmp_path / "serve.log")
    workers: list[int] = []
    try:
        wait_port(port)
        workers = _workers(parent.pid)
        assert len(workers) == 2
        for kill_parent in (False, True):
            if kill_parent:
                parent.kill()
                parent.wait()
            r = subprocess.run(
                [sys.executable, "-m", "csms", "serve", "--port", "0", "--db", db,
                 "--admin-port", "-1", "--data-dir", str(tmp_path / "other")],
                capture_output=True, text=True, timeout=60)
            assert r.returncode != 0
            assert "another csms serve" in r.stderr
            assert "Traceback" not in r.stderr
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
        for pid in workers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


@pytest.mark.parametrize(("args", "message"), [
    (["--db", ":memory:"], "not :memory:"),
    (["--db", "postgresql://postgres@127.0.0.1:5432/test", "--port", "0"], "fixed ports"),
    (["--workers", "0"], "--workers"),
    (["--workers", "many"], "--workers"),
])
def test_workers_need_a_shared_database_fixed_ports_and_a_count(
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
