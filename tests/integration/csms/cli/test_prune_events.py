"""``csms stations prune-events`` as a process on SQLite and PostgreSQL: what it deleted is
counted, a held session's old event survives, a bad argument is one line."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import orjson
import pytest

from csms.domain.model import Session, SessionStatus, Station
from csms.service.ports import Tx
from csms.storage import open_repository


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "postgres":
        return str(request.getfixturevalue("postgres_url"))
    return str(tmp_path / "csms.sqlite3")


def csms(tmp_path: Path, *args: str, env: dict[str, str] | None = None
         ) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "csms", *args], cwd=tmp_path, capture_output=True, text=True,
        timeout=120, env={**os.environ, "CSMS_DATA_DIR": str(tmp_path / "data"),
                          **(env or {})})


async def _fill(db: str) -> None:
    """A station flooding events for 200 days, one recent event, and a held session with an
    old billing_hold event."""
    now = datetime.now(UTC)
    repo = await open_repository(db)
    try:
        async def work(tx: Tx) -> None:
            await tx.insert_station(Station("FLOOD", created_at=now - timedelta(days=300)))
            for i in range(3000):
                at = now - timedelta(days=200) + (i + 0.5) * timedelta(hours=1)
                await tx.add_station_event("FLOOD", "data_transfer", {"i": i}, at)
            session_id = await tx.insert_session(Session(
                station_id="FLOOD", ocpp_version="ocpp1.6", transaction_id="1",
                started_at=now - timedelta(days=150), connector_id=1, evse_id=1,
                id_tag="T1", meter_start_wh=Decimal("1000")))
            session = await tx.get_session(session_id)
            assert session is not None
            session.status = SessionStatus.COMPLETED
            session.stopped_at = now - timedelta(days=150)
            session.flag("unknown_transaction")
            await tx.update_session(session)
            await tx.add_station_event("FLOOD", "billing_hold", {"session_id": session_id},
                                       now - timedelta(days=150))

        await repo.unit(work)
    finally:
        await repo.close()


async def test_prune_events_counts_and_keeps_the_held_session(db: str, tmp_path: Path) -> None:
    await _fill(db)
    # 3,000 hourly events from 200 days ago (each half an hour from the hour: the command's
    # clock runs on), the last 75 days ago
    done = csms(tmp_path, "stations", "prune-events", "--older-than", "100", "--json",
                "--db", db)
    assert done.returncode == 0, done.stderr
    result = orjson.loads(done.stdout)
    assert result["older_than_days"] == 100
    assert result["deleted"] == 100 * 24  # days 200..100 ago
    assert result["kept"] == 1  # the held session's
    assert result["units"] >= 2  # 2,400 rows: more than one unit
    done = csms(tmp_path, "stations", "events", "FLOOD", "--json", "--db", db)
    assert done.returncode == 0, done.stderr

    # the retention setting by default; a line of text without --json
    done = csms(tmp_path, "stations", "prune-events", "--db", db,
                env={"CSMS_EVENT_RETENTION_DAYS": "80"})
    assert done.returncode == 0, done.stderr
    assert "deleted 480 station events" in done.stdout
    assert "kept 1 older ones" in done.stdout

    async def left() -> list[dict[str, object]]:
        repo = await open_repository(db)
        try:
            return await repo.read(lambda tx: tx.list_station_events("FLOOD", limit=10_000))
        finally:
            await repo.close()

    rows = await left()
    assert len(rows) == 3000 - 2400 - 480 + 1
    assert [r["kind"] for r in rows].count("billing_hold") == 1


@pytest.mark.parametrize("args", [["--older-than", "-1"], ["--older-than", "soon"],
                                  ["--older-than", "1e9"], ["--older-than", "nan"]])
def test_a_bad_argument_is_one_line(args: list[str], tmp_path: Path) -> None:
    done = csms(tmp_path, "stations", "prune-events", *args,
                "--db", str(tmp_path / "csms.sqlite3"))
    assert done.returncode == 2
    assert done.stderr.startswith("error:") and len(done.stderr.strip().splitlines()) == 1, \
        done.stderr
    assert "--older-than" in done.stderr


def test_retention_off_and_no_days_is_one_line(tmp_path: Path) -> None:
    done = csms(tmp_path, "stations", "prune-events", "--db", str(tmp_path / "csms.sqlite3"),
                env={"CSMS_EVENT_RETENTION_DAYS": "0"})
    assert done.returncode == 2
    assert done.stderr.startswith("error: --older-than") \
        and len(done.stderr.strip().splitlines()) == 1, done.stderr
