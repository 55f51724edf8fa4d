"""Two `csms serve` nodes on one PostgreSQL and one Mosquitto: stations spread over both,
operator commands through either node reach the station's node, one node is killed with -9
and its stations resume on the other with no session lost."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp

from bench.common import free_port, wait_port
from chargers_sim.station import Station
from csms.domain.model import IdTag
from csms.service.charging import new_station
from csms.service.ports import Tx
from csms.service.views import session_json
from csms.storage import open_repository
from support import require_service

STATIONS = 6


class Node:
    def __init__(self, name: str, db: str, folder: Path) -> None:
        self.name, self.port, self.admin_port = name, free_port(), free_port()
        self.folder = folder / name
        self.log = folder / f"{name}.log"
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "csms", "serve", "--port", str(self.port), "--db", db,
                 "--admin-port", str(self.admin_port), "--data-dir", str(self.folder),
                 "--mqtt", "mqtt://127.0.0.1:1883", "--node-id", name,
                 "--log-level", "info"], stdout=log, stderr=subprocess.STDOUT)
        wait_port(self.port)
        wait_port(self.admin_port)
        self.token = (self.folder / "admin.token").read_text().strip()

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    async def api(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        async with aiohttp.ClientSession() as http, http.request(
            method, f"http://127.0.0.1:{self.admin_port}{path}", json=body,
            headers={"Authorization": f"Bearer {self.token}", "X-Actor": "test-operator"},
        ) as response:
            return response.status, await response.json()

    async def trigger(self, station_id: str) -> tuple[int, Any]:
        return await self.api("POST", f"/stations/{station_id}/commands/trigger",
                              {"message": "Heartbeat"})

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()


async def until(check: Any, timeout: float = 20.0) -> None:
    async with asyncio.timeout(timeout):
        while not await check():
            await asyncio.sleep(0.1)


async def test_two_nodes_route_commands_and_survive_a_killed_node(
    postgres_url: str, tmp_path: Path
) -> None:
    require_service("Mosquitto", "127.0.0.1", 1883)
    repo = await open_repository(postgres_url)
    ids = [f"TN{i}" for i in range(STATIONS)]

    async def register(tx: Tx) -> None:
        for sid in ids:
            await tx.insert_station(new_station(sid))
        await tx.put_tag(IdTag("T2N"))

    await repo.unit(register)
    run = secrets.token_hex(3)
    a = Node(f"node-a-{run}", postgres_url, tmp_path)
    b = Node(f"node-b-{run}", postgres_url, tmp_path)
    first = {sid: (a if i % 2 == 0 else b) for i, sid in enumerate(ids)}
    stations = [
        Station(first[sid].url, sid, "1.6" if i < 3 else "2.0.1", seed=i, meter_interval=0.1,
                call_timeout=3, retry_interval=0.2, backoff_cap=0.5, message_attempts=1000,
                fallback_urls=[(b if first[sid] is a else a).url])
        for i, sid in enumerate(ids)]
    try:
        for st in stations:
            await st.start()

        # a command through either node reaches the station's node and comes back
        async def routed() -> bool:
            status, _ = await a.trigger(ids[1])  # on node b
            return status == 200

        await until(routed)  # the nodes' command buses are subscribed
        for via, sid in ((a, ids[1]), (b, ids[0]), (a, ids[0]), (b, ids[3])):
            status, result = await via.trigger(sid)
            assert status == 200, result
            assert result["status"] == "Accepted"
            assert result.get("node") == (None if first[sid] is via else first[sid].name)
        # the operator's CLI, pointed at node a, for a station on node b
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "csms", "remote", "trigger", ids[5], "Heartbeat", "--json",
            "--timeout", "5", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            env={**os.environ, "CSMS_DATA_DIR": str(a.folder),
                 "CSMS_ADMIN_PORT": str(a.admin_port)})
        out, err = await proc.communicate()
        assert proc.returncode == 0, err
        answer = json.loads(out)
        assert (answer["status"], answer["node"]) == ("Accepted", b.name)
        status, listed = await b.api("GET", "/stations")
        assert status == 200
        assert {s["id"]: s["node"] for s in listed if s["id"] in ids} == {
            sid: first[sid].name for sid in ids}
        # every command is audited once, by the node the operator used (newest first)
        status, audit = await a.api("GET", "/audit")
        mine = [e for e in audit if e["claimed_actor"] == "test-operator"][:4]  # newest first
        assert [(e["target"], e["result"].get("node")) for e in mine] == [
            (ids[3], None), (ids[0], None), (ids[0], a.name), (ids[1], b.name)]
        # an unknown station and a command the station refuses behave as on one node
        status, result = await a.api("POST", "/stations/NOPE/commands/trigger",
                                     {"message": "Heartbeat"})
        assert status == 409 and result["status"] == "Offline"

        # sessions everywhere; node a dies in the middle of them
        running = asyncio.gather(*(st.run_sessions(1, 2.0, id_tag="T2N") for st in stations))
        await asyncio.sleep(0.8)
        os.kill(a.proc.pid, signal.SIGKILL)
        a.proc.wait()
        await asyncio.wait_for(running, 90)
        for st in stations:
            await st.drain()
        # node a's stations moved to node b, and commands through b reach them there
        for i, sid in enumerate(ids):
            assert stations[i].url == b.url
            status, result = await b.trigger(sid)
            assert status == 200 and "node" not in result, result
        status, listed = await b.api("GET", "/stations")
        assert {s["id"]: (s["online"], s["node"]) for s in listed if s["id"] in ids} == {
            sid: (True, b.name) for sid in ids}
    finally:
        for st in stations:
            await st.close()
        a.stop()
        b.stop()

    async def read(tx: Tx) -> list[dict[str, Any]]:
        return [session_json(s) for s in await tx.list_sessions(limit=100)]

    sessions = await repo.read(read)
    await repo.close()
    assert len(sessions) == STATIONS  # none lost, none doubled
    assert all(s["status"] == "completed" for s in sessions)
    expected = {st.station_id: st.completed[0].meter_stop_wh - st.completed[0].meter_start_wh
                for st in stations}
    assert {s["station_id"]: s["energy_wh"] for s in sessions} == expected
