"""The `csms` command as a user runs it: real process, real SQLite file."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from support import RunningServer
from support.admin import api
from support.client import RawClient


def csms(db: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "csms", *args, "--db", str(db)] if args and args[0] != "--help"
        else [sys.executable, "-m", "csms", *args],
        capture_output=True, text=True, timeout=60,
        env={**os.environ, "COLUMNS": "200"},
    )


def test_stations_and_tags(tmp_path: Path) -> None:
    db = tmp_path / "c.db"
    r = csms(db, "stations", "add", "CP-1", "--password", "0123456789abcdef", "--boot", "pending")
    assert r.returncode == 0, r.stderr
    stations = json.loads(csms(db, "stations", "list", "--json").stdout)
    assert [(s["id"], s["boot"], s["security_profile"], s["online"]) for s in stations] == [
        ("CP-1", "pending", 1, False)]
    assert "0123456789abcdef" not in db.read_bytes().decode("latin-1")  # never stored plain
    assert csms(db, "tags", "add", "T1").returncode == 0
    assert csms(db, "tags", "add", "T2", "--expires", "2027-01-01T00:00:00Z").returncode == 0
    assert csms(db, "tags", "block", "T1").returncode == 0
    assert csms(db, "tags", "expire", "T2", "--at", "2026-01-01T00:00:00+00:00").returncode == 0
    tags = {t["tag"]: t for t in json.loads(csms(db, "tags", "list", "--json").stdout)}
    assert tags["T1"]["status"] == "blocked"
    assert tags["T2"]["expires_at"] == "2026-01-01T00:00:00+00:00"
    # each change of a tag is in the audit log, as the console's are
    audit = json.loads(csms(db, "audit", "--json").stdout)
    assert [(a["action"], a["target"]) for a in reversed(audit)
            if a["action"].startswith("tags.")] == [
        ("tags.add", "T1"), ("tags.add", "T2"), ("tags.block", "T1"), ("tags.expire", "T2")]
    assert audit[0]["request"] == {"expires_at": "2026-01-01T00:00:00+00:00"}
    assert all(a["actor"].startswith("cli") for a in audit)
    assert csms(db, "tags", "block", "NOPE").returncode == 2  # refused: not audited
    assert len(json.loads(csms(db, "audit", "--json").stdout)) == len(audit)
    table = csms(db, "stations", "list").stdout
    assert "CP-1" in table and "offline" in table
    show = json.loads(csms(db, "stations", "show", "CP-1", "--json").stdout)
    assert show["id"] == "CP-1" and show["active_sessions"] == []


def test_tags_add_over_a_registered_tag_says_what_it_clears(tmp_path: Path) -> None:
    """``tags add`` sets a tag as given (an option not given is none). Over a registered
    tag it says which of its expiry, group and master pass it clears: an operator who
    unblocks a card with ``tags add CARD`` sees that its expiry is gone, not later, when an
    expired card charges again."""
    db = tmp_path / "c.db"
    r = csms(db, "tags", "add", "C1", "--status", "blocked", "--expires",
             "2026-01-01T00:00:00Z", "--group", "FLEET", "--master")
    assert r.returncode == 0 and "warning" not in r.stderr, r.stderr
    r = csms(db, "tags", "add", "C1")
    assert r.returncode == 0, r.stderr
    assert "warning: tag C1 had an expiry (2026-01-01T00:00:00+00:00), group FLEET and a" \
        " master pass: now none" in " ".join(r.stderr.split()), r.stderr
    [tag] = json.loads(csms(db, "tags", "list", "--json").stdout)
    assert (tag["status"], tag["expires_at"]) == ("accepted", None)
    r = csms(db, "tags", "add", "C1", "--expires", "2027-01-01T00:00:00Z")
    assert r.returncode == 0 and "warning" not in r.stderr, r.stderr  # nothing cleared
    r = csms(db, "tags", "add", "C2")
    assert r.returncode == 0 and "warning" not in r.stderr, r.stderr  # a new tag


async def test_stations_show_says_what_a_fault_is(csms_server: RunningServer) -> None:
    """A 1.6 fault reported as OtherError with its error in vendorErrorCode and info (as
    EVerest sends every fault): `stations show` shows them, not "OtherError" alone."""
    await csms_server.add_station("EVR1")
    async with await RawClient.connect(csms_server.url, "EVR1") as c:
        await c.result("StatusNotification", {
            "connectorId": 1, "errorCode": "OtherError", "status": "Faulted",
            "info": "evse_manager/connector_1", "vendorId": "org.charin.uec.v1",
            "vendorErrorCode": "MREC1"})
    table = csms(Path(csms_server.settings.db), "stations", "show", "EVR1").stdout
    assert "OtherError: MREC1 (org.charin.uec.v1), evse_manager/connector_1" in table, table


@pytest.mark.parametrize(
    "args",
    [
        ["stations", "add", "a:b"],
        ["stations", "add", "X" * 49],
        ["stations", "add", "CP9", "--password", "short"],
        ["stations", "add", "CP9", "--boot", "maybe"],
        ["stations", "add", "CP9", "--profile", "7"],
        ["stations", "show", "NOPE"],
        ["tags", "add", "T" * 40],
        ["tags", "add", "T1", "--expires", "tomorrow"],
        ["tags", "block", "NOPE"],
        ["sessions", "show", "abc"],
        ["sessions", "show", "999"],
        ["sessions", "list", "--limit", "0"],
        ["stations", "lst"],
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path: Path, args: list[str]) -> None:
    r = csms(tmp_path / "c.db", *args)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert r.stderr.startswith("error: ")
    assert "Traceback" not in r.stderr


def test_duplicate_station_and_missing_db_folder(tmp_path: Path) -> None:
    db = tmp_path / "c.db"
    assert csms(db, "stations", "add", "CP1").returncode == 0
    r = csms(db, "stations", "add", "CP1")
    assert (r.returncode, r.stderr.strip()) == (2, "error: station 'CP1' already exists")
    r = csms(tmp_path / "nope" / "c.db", "stations", "list")
    assert r.returncode == 2 and "does not exist" in r.stderr


async def test_sessions_list_and_show(csms_server: RunningServer) -> None:
    await csms_server.add_station("CP1")
    await csms_server.add_station("CP2")
    await csms_server.add_tag("T1")
    for station, stop in (("CP1", 2500), ("CP2", None)):
        async with await RawClient.connect(csms_server.url, station) as c:
            txid = (await c.result("StartTransaction", {
                "connectorId": 1, "idTag": "T1", "meterStart": 1000,
                "timestamp": "2026-01-01T10:00:00Z"}))["transactionId"]
            if stop is not None:
                await c.result("StopTransaction", {"transactionId": txid, "meterStop": stop,
                                                   "timestamp": "2026-01-01T11:00:00Z"})
    db = Path(csms_server.settings.db)
    every = json.loads(csms(db, "sessions", "list", "--json").stdout)
    assert [s["station_id"] for s in every] == ["CP2", "CP1"]  # newest first
    active = json.loads(csms(db, "sessions", "list", "--active", "--json").stdout)
    assert [s["station_id"] for s in active] == ["CP2"]
    cp1 = json.loads(csms(db, "sessions", "list", "--station", "CP1", "--json").stdout)
    assert cp1[0]["energy_wh"] == 1500
    assert set(cp1[0]) >= {
        "id", "station_id", "connector_id", "evse_id", "id_tag", "ocpp_version",
        "transaction_id", "started_at", "stopped_at", "meter_start_wh", "meter_stop_wh",
        "energy_wh", "status", "stop_reason"}
    shown = json.loads(csms(db, "sessions", "show", str(cp1[0]["id"]), "--json").stdout)
    assert shown["energy_wh"] == 1500 and shown["status"] == "completed"
    table = csms(db, "sessions", "list").stdout
    assert "1.500" in table  # kWh column


async def _stuck_session(server: RunningServer) -> tuple[Path, str]:
    """A 1.6 session on CP1 started at 10:00 (1,000 Wh) with a reading at 10:20 (3,500 Wh)
    and no stop: the database and the session's id."""
    await server.add_station("CP1")
    await server.add_tag("T1")
    async with await RawClient.connect(server.url, "CP1") as c:
        txid = (await c.result("StartTransaction", {
            "connectorId": 1, "idTag": "T1", "meterStart": 1000,
            "timestamp": "2026-01-01T10:00:00Z"}))["transactionId"]
        await c.result("MeterValues", {"connectorId": 1, "transactionId": txid, "meterValue": [
            {"timestamp": "2026-01-01T10:20:00Z", "sampledValue": [{"value": "3500"}]}]})
    db = Path(server.settings.db)
    [active] = json.loads(csms(db, "sessions", "list", "--active", "--json").stdout)
    return db, str(active["id"])


async def test_sessions_close_ends_a_stuck_session_held_and_audited(
        csms_server: RunningServer) -> None:
    """`csms sessions close`: an active session whose stop is not coming is completed at its
    last reading, billed from its readings, held (``stop_lost``) for `release`/`reject`;
    a bad id or a session that is not active is one line and exit 2, and not audited."""
    db, sid = await _stuck_session(csms_server)
    r = csms(db, "sessions", "close", sid, "--reason", "car gone, stop lost")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == (f"session {sid} closed at 2026-01-01T10:20:00+00:00, 2.500 kWh"
                                " from its readings; held for: stop_lost (release or reject"
                                " it)")
    shown = json.loads(csms(db, "sessions", "show", sid, "--json").stdout)
    assert (shown["status"], shown["billing"], shown["energy_wh"]) == ("completed", "held", 2500)
    assert "stop_lost" in shown["flags"]
    for args, message in ((("sessions", "close", sid),
                           f"error: session {sid} is not active (it is held)"),
                          (("sessions", "close", "999"), "error: no session 999"),
                          (("sessions", "close", "abc"), None)):
        r = csms(db, *args)
        assert r.returncode == 2, (args, r.stdout)
        assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
        assert message is None or r.stderr.strip() == message, r.stderr
    audit = json.loads(csms(db, "audit", "--json").stdout)
    [entry] = [a for a in audit if a["action"] == "sessions.close"]
    assert (entry["target"], entry["request"]) == (sid, {"reason": "car gone, stop lost"})
    assert entry["actor"].startswith("cli")
    r = csms(db, "sessions", "release", sid)
    assert r.returncode == 0 and "stop_lost" in r.stdout, r.stderr


async def test_a_held_session_shows_the_time_to_decide_it_by(
        csms_server: RunningServer, tmp_path: Path) -> None:
    """A held session has no time limit, but the driver's escrow does: a notice period
    after announcing it, a driver may withdraw. `sessions list` and `sessions show` say by
    when to decide a held session (its start plus the contract's notice period, 7 days by
    default, less an hour to settle it), once a settlement worker has read the notice
    period from the contract; and that releasing it may leave the host unpaid once that
    time has passed."""
    db, sid = await _stuck_session(csms_server)

    async def cli(*args: str) -> subprocess.CompletedProcess[str]:
        # off the event loop, which serves the running server: a unit of its that took the
        # database's write turn just before would hold it while a blocking call waited
        return await asyncio.to_thread(csms, db, *args)

    assert (await cli("sessions", "close", sid)).returncode == 0
    # no worker has read the contract yet: not known
    shown = json.loads((await cli("sessions", "show", sid, "--json")).stdout)
    assert shown["billing"] == "held" and shown["decide_by"] is None
    r = await cli("settle", "run", "--chain", "memory", "--data-dir", str(tmp_path / "data"))
    assert r.returncode == 0, r.stderr
    shown = json.loads((await cli("sessions", "show", sid, "--json")).stdout)
    assert (shown["decide_by"], shown["decide_by_state"]) == (
        "2026-01-08T09:00:00+00:00", "passed")
    [listed] = json.loads((await cli("sessions", "list", "--json")).stdout)
    assert (listed["decide_by"], listed["decide_by_state"]) == (
        "2026-01-08T09:00:00+00:00", "passed")
    # the admin API's sessions say the same, in the same fields
    fields = ("billing", "decide_by", "decide_by_state")
    _, detail = await api(csms_server, "GET", f"/sessions/{sid}")
    _, [item] = await api(csms_server, "GET", "/sessions")
    assert {k: detail[k] for k in fields} == {k: item[k] for k in fields} == {
        k: shown[k] for k in fields} == {"billing": "held",
                                         "decide_by": "2026-01-08T09:00:00+00:00",
                                         "decide_by_state": "passed"}
    table = (await cli("sessions", "list")).stdout
    assert "decide by" in table and "2026-01-08 09:00:00Z (passed)" in table, table
    text = " ".join((await cli("sessions", "show", sid)).stdout.split())
    assert "2026-01-08T09:00:00+00:00" in text and "unpaid" in text, text
    assert (await cli("sessions", "release", sid)).returncode == 0
    shown = json.loads((await cli("sessions", "show", sid, "--json")).stdout)
    assert (shown["billing"], shown["decide_by"], shown["decide_by_state"]) == (
        "released", None, None)
    _, detail = await api(csms_server, "GET", f"/sessions/{sid}")
    assert (detail["billing"], detail["decide_by"], detail["decide_by_state"]) == (
        "released", None, None)


async def test_a_station_s_strings_are_shown_as_sent_never_as_markup(
        csms_server: RunningServer) -> None:
    """A hostile station starts sessions with idTags that are Rich markup: a closing tag
    with nothing open made `csms sessions list` end in a traceback (a MarkupError) for
    the operator, and a style tag restyled the table. They are shown as sent."""
    await csms_server.add_station("CP1")
    hostile = ["[/x]", "[bold red]PAID[/]"]
    async with await RawClient.connect(csms_server.url, "CP1") as c:
        for n, tag in enumerate(hostile):
            await c.result("StartTransaction", {
                "connectorId": n + 1, "idTag": tag, "meterStart": 1000,
                "timestamp": "2026-01-01T10:00:00Z"})
    db = Path(csms_server.settings.db)
    assert csms(db, "tags", "add", "[/x]").returncode == 0  # an operator's, too
    for args in (["sessions", "list", "--wide"], ["tags", "list"]):
        r = csms(db, *args)
        assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
        assert "[/x]" in r.stdout, r.stdout
    assert "[bold red]PAID[/]" in csms(db, "sessions", "list", "--wide").stdout


async def test_a_station_s_control_characters_never_reach_the_operator_s_terminal(
        csms_server: RunningServer) -> None:
    """A hostile station names its vendor, model and firmware, a fault's info and an idTag
    with terminal escape sequences (a hyperlink that hides where it goes, a screen
    cleared, a colour, a bell) and a right-to-left override: `csms stations list`,
    `stations show` and `sessions list` wrote them to the operator's terminal as sent,
    which obeyed them. They are shown, escaped, in one line each."""
    await csms_server.add_station("CP1")
    vendor, model = "\x1b]8;;http://e\x1b\\PAY", "\x1b[2J\x1b[HOK"
    firmware, tag = "1.0\u202egpj.exe", "\x1b[31mRED\x07"
    async with await RawClient.connect(csms_server.url, "CP1") as c:
        await c.result("BootNotification", {"chargePointVendor": vendor,
                                            "chargePointModel": model,
                                            "firmwareVersion": firmware})
        await c.result("StatusNotification", {
            "connectorId": 1, "errorCode": "OtherError", "status": "Faulted",
            "info": "lock\x9b2J", "vendorErrorCode": "E\x1b[1A"})
        await c.result("StartTransaction", {"connectorId": 2, "idTag": tag,
                                            "meterStart": 0,
                                            "timestamp": "2026-01-01T10:00:00Z"})
    db = Path(csms_server.settings.db)
    for args in (["stations", "list", "--wide"], ["stations", "show", "CP1"],
                 ["sessions", "list", "--wide"]):
        r = csms(db, *args)
        assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
        shown = r.stdout
        bad = [ch for ch in shown if ch != "\n" and (ch < " " or "\x7f" <= ch <= "\x9f"
                                                     or ch == "\u202e")]
        assert not bad, (args, bad, shown)
    listed = csms(db, "stations", "list", "--wide").stdout
    assert "\\x1b]8;;http://e\\x1b\\PAY" in listed and "\\x1b[2J\\x1b[HOK" in listed
    assert "1.0\\u202egpj.exe" in listed
    assert "\\x1b[31mRED\\x07" in csms(db, "sessions", "list", "--wide").stdout
    # --json stays what was stored: JSON's own escapes
    data = json.loads(csms(db, "stations", "list", "--json").stdout)
    assert [(s["vendor"], s["model"]) for s in data] == [(vendor, model)]
