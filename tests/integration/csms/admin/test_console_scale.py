"""The console at scale: 1,000 stations, 100,000 sessions, 98 settled batches, 10,000
audit entries and 5,000 tags, stored through the storage port's methods; every page is
requested and the server's own time for it (its Server-Timing header) is reported in
tmp/artifacts/console/scale.json and docs/benchmarks.md. No timing is asserted: what is
asserted is that every page answers with one page of rows, the right ones."""

from __future__ import annotations

import json
import re
import statistics
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import aiohttp

from csms.domain.model import IdTag, MeterSample, Session, SessionStatus
from csms.service.charging import new_station
from csms.service.ports import Tx
from support import RunningServer

ROOT = Path(__file__).resolve().parents[4]
OUT = ROOT / "tmp" / "artifacts" / "console" / "scale.json"
STATIONS = 1_000
SESSIONS = 100_000
ACTIVE = 1_000  # one per station
HELD = 30
BATCHES = 98  # the paid sessions, 1,000 a batch
BATCH_SIZE = 1_000
TAGS = 5_000
AUDIT = 10_000
REPEAT = 5
TIMING = re.compile(r"app;dur=([0-9.]+)")


def _sid(i: int) -> str:
    return f"ST{i:05d}"


async def _fill(server: RunningServer) -> None:
    node = server.central.node_id
    now = datetime.now(UTC)
    start = now - timedelta(days=60)

    async def stations(tx: Tx) -> None:
        for i in range(STATIONS):
            station = new_station(_sid(i))
            station.vendor, station.model, station.ocpp_version = "V", "M", "ocpp1.6"
            await tx.insert_station(station)
            await tx.set_connector_status(_sid(i), 1, 1, "Charging", None, now)
            if i % 2 == 0:
                await tx.set_station_connection(_sid(i), node, now)
        for i in range(TAGS):
            await tx.put_tag(IdTag(f"TAG{i:05d}"))
        for i in range(AUDIT):
            await tx.add_audit("console@127.0.0.1", "reset", _sid(i % STATIONS),
                               {"type": "soft"}, {"status": "Accepted"}, True, now)

    await server.repo.unit(stations)
    completed = SESSIONS - ACTIVE
    for first in range(0, SESSIONS, 10_000):
        chunk = []
        for n in range(first, min(first + 10_000, SESSIONS)):
            done = n < completed
            began = start + timedelta(seconds=50 * n)
            s = Session(
                station_id=_sid(n % STATIONS), connector_id=1, evse_id=1,
                id_tag=f"TAG{n % TAGS:05d}", auth_status="Accepted", ocpp_version="ocpp1.6",
                transaction_id=str(n + 1), started_at=began,
                stopped_at=began + timedelta(minutes=30) if done else None,
                meter_start_wh=Decimal(0), meter_stop_wh=Decimal(5000) if done else None,
                energy_wh=5000 if done else None,
                status=SessionStatus.COMPLETED if done else SessionStatus.ACTIVE,
                flags=["unknown_transaction"] if done and n >= completed - HELD else [])
            if done and n < completed - HELD:
                s.price_minor, s.currency, s.settlement_state = 195, "EUR", "paid"
            chunk.append(s)

        async def insert(tx: Tx, chunk: list[Session] = chunk) -> None:
            await tx.insert_sessions(chunk)

        await server.repo.unit(insert)

    async def settled(tx: Tx) -> None:
        for b in range(BATCHES):
            batch = await tx.insert_batch(
                state="finalized", root=f"0x{b:064x}", count=BATCH_SIZE, chain_id=31337,
                contract=None, ledger=1, first_seq=b * BATCH_SIZE + 1, entries=[], auths=[],
                at=now)
            await tx.insert_batch_items(batch, [
                (b * BATCH_SIZE + k + 1, {}, [], f"0x{b * BATCH_SIZE + k:064x}", "0x")
                for k in range(BATCH_SIZE)])
            await tx.update_batch(batch, "finalized", tx_hash=f"0x{b:064x}", gas_used=2_000_000)
        active = await tx.list_sessions_page(station_id=None, id_tag=None, status="active",
                                             before=None, limit=ACTIVE)
        for s in active:
            await tx.add_samples(s.station_id, [
                MeterSample(now, "7400", "Power.Active.Import", "W"),
                MeterSample(now, "2500", "Energy.Active.Import.Register", "Wh")],
                session_id=s.id, evse_id=1, connector_id=1, transaction_id=s.transaction_id)

    await server.repo.unit(settled)


async def test_every_page_at_1000_stations_and_100000_sessions(
    csms_server: RunningServer,
) -> None:
    began = time.perf_counter()
    await _fill(csms_server)
    filled = time.perf_counter() - began
    pages = {
        "overview": "/",
        "stations": "/stations",
        "stations, page 11": f"/stations?after={_sid(499)}",
        "station": f"/stations/{_sid(7)}",
        "sessions": "/sessions",
        "sessions, older page": "/sessions?before=50000",
        "sessions of a station": f"/sessions?station={_sid(10)}",
        "sessions of a tag": "/sessions?tag=TAG00042",
        "sessions active": "/sessions?status=active",
        "sessions held": "/sessions?status=held",
        "sessions completed of a station": f"/sessions?station={_sid(10)}&status=completed",
        "session": "/sessions/42",
        "settlement": "/settlement",
        "batch (1,000 sessions)": "/settlement/50",
        "tags": "/tags",
        "audit": "/audit",
        "tariffs": "/tariffs",
    }
    figures: dict[str, dict[str, float]] = {}
    bodies: dict[str, str] = {}
    base = csms_server.admin_url + "/console"
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        r = await http.post(base + "/login", data={"token": csms_server.admin_token},
                            allow_redirects=False)
        assert r.status == 303
        for name, path in pages.items():
            server_ms, wall_ms = [], []
            for _ in range(REPEAT):
                t0 = time.perf_counter()
                async with http.get(base + path, allow_redirects=False) as r:
                    body = await r.text()
                    wall_ms.append((time.perf_counter() - t0) * 1000)
                    assert r.status == 200, (name, r.status, body[:300])
                    found = TIMING.search(r.headers["Server-Timing"])
                    assert found is not None
                    server_ms.append(float(found.group(1)))
            bodies[name] = body
            figures[name] = {"server_ms_median": round(statistics.median(server_ms), 2),
                             "server_ms_max": round(max(server_ms), 2),
                             "wall_ms_median": round(statistics.median(wall_ms), 2)}

    def rows(name: str) -> int:
        return len(re.findall(r'<tr data-session="', bodies[name]))

    overview = bodies["overview"]
    assert f'id="stations-online">{STATIONS // 2}<' in overview
    assert f'id="active-sessions">{ACTIVE}<' in overview
    assert f'id="power-now">{ACTIVE * 7.4:,.2f} kW<' in overview
    assert re.search(rf'id="held"><a [^>]*>{HELD}<', overview)
    assert len(re.findall(r'<tr data-station="', bodies["stations"])) == 50
    assert f'data-station="{_sid(500)}"' in bodies["stations, page 11"]
    for name in ("sessions", "sessions, older page", "sessions active", "sessions held"):
        assert rows(name) == (HELD if name == "sessions held" else 50), name
    assert 'data-session="49999"' in bodies["sessions, older page"]
    assert rows("sessions of a station") == 50
    assert all(f">{_sid(10)}<" in line for line in bodies["sessions of a station"].split(
        "<tr data-session=")[1:])
    assert rows("sessions of a tag") == SESSIONS // TAGS
    assert rows("batch (1,000 sessions)") == BATCH_SIZE
    assert len(re.findall(r'<section class="batch"', bodies["settlement"])) == 20
    assert len(re.findall(r'<tr data-tag="', bodies["tags"])) == 50
    assert len(re.findall(r'<tr data-audit="', bodies["audit"])) == 50
    report = {"stations": STATIONS, "sessions": SESSIONS, "batches": BATCHES,
              "audit_entries": AUDIT, "tags": TAGS, "storage": "sqlite",
              "fill_seconds": round(filled, 1), "pages": figures}
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(report, indent=2), "utf-8")
    width = max(len(n) for n in figures)
    print(f"\nconsole pages at {STATIONS} stations and {SESSIONS} sessions (SQLite),"
          f" filled in {filled:.1f} s; server time per request, median of {REPEAT}:")
    for name, f in figures.items():
        print(f"  {name:<{width}}  {f['server_ms_median']:8.2f} ms"
              f"  (max {f['server_ms_max']:.2f}, wall {f['wall_ms_median']:.2f})")
    print(f"written to {OUT}")
