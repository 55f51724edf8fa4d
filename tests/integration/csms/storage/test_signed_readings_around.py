"""The signed readings of a station's other sessions around a session's time (what the check
that one signed reading is billed in one session compares with), on SQLite and PostgreSQL:
the verified ones only, of the station's sessions that ran within the window, each with its
session and that session's start; never the session's own."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from csms.service.ports import Repository, Tx

from .test_tx import T0, session, unit


def _row(tx_code: str, wh: str, status: str = "verified") -> dict[str, Any]:
    return {"container_no": 0, "public_key": "00", "status": status, "detail": "",
            "tx_code": tx_code, "reading_time": T0.isoformat(), "reading_wh": wh,
            "resolution_wh": "1", "meter_serial": "SN-1", "pagination": "T1",
            "register_code": "1-0:1.8.0", "register_kind": "import"}


async def test_the_verified_readings_of_the_stations_sessions_in_the_window(
    repo: Repository,
) -> None:
    minute = timedelta(minutes=1)

    async def work(tx: Tx) -> list[int]:
        ids = []
        for station_id, start, stop in (
                ("CP1", T0, T0 + 4 * minute),            # just before: in the window
                ("CP1", T0 + 5 * minute, T0 + 60 * minute),  # the session itself
                ("CP1", T0 - 60 * minute, T0 - 30 * minute),  # long before: not
                ("CP2", T0, T0 + 4 * minute),            # another station: not
                ("CP1", T0 + 50 * minute, None)):        # active, within: in
            sid = await tx.insert_session(session(station_id, started_at=start,
                                                  stopped_at=stop))
            await tx.add_signed_readings(sid, station_id, [
                _row("B", "1000"), _row("E", "11000"), _row("E", "99000", "invalid")])
            ids.append(sid)
        return ids

    ids = await unit(repo, work)
    rows = await repo.read(lambda tx: tx.signed_readings_around(
        "CP1", T0 - 10 * minute, T0 + 70 * minute, ids[1]))
    assert [(r["session_id"], r["tx_code"], r["reading_wh"]) for r in rows] == [
        (ids[0], "B", "1000"), (ids[0], "E", "11000"),
        (ids[4], "B", "1000"), (ids[4], "E", "11000")]
    assert rows[0]["started_at"] == T0 and rows[2]["started_at"] == T0 + 50 * minute
    assert rows[0]["meter_serial"] == "SN-1" and rows[0]["register_code"] == "1-0:1.8.0"
