"""A new operator's first hour as README.md and docs/operator-guide.md tell it, with the
real ``csms`` process, a real ``csms serve`` and the simulated stations: what they see
at an 80-column terminal, and what a mistake tells them to do."""

from __future__ import annotations

import subprocess
from pathlib import Path

import orjson
import pytest

from support.first_hour import Serve, csms, ok


def one_line_error(r: subprocess.CompletedProcess[str], code: int) -> str:
    assert r.returncode == code, (r.returncode, r.stdout, r.stderr)
    assert "Traceback" not in r.stderr + r.stdout, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    return lines[0]


# -- what the lists show at 80 columns ---------------------------------------------------
def test_stations_list_at_80_columns_shows_each_station_id_whole(work: Path) -> None:
    """Two stations that connected once: at 80 columns (a terminal's usual width, and
    what a pipe gets) the list must still tell them apart. ``sessions list`` keeps its
    first columns whole and names the others it leaves out; ``stations list`` squeezes
    all nine columns and cuts the id itself to ``SIM00…``."""
    out = ok(csms("stations", "list", cwd=work))
    for station in ("SIM00001", "SIM00002"):
        assert station in out, out
    assert "offline" in out, out


# -- a filter by a station that does not exist --------------------------------------------
@pytest.mark.parametrize("command", [
    ["sessions", "list"], ["reservations", "list"], ["logs", "list"],
    ["firmware", "status"], ["certificates", "issued"],
], ids=" ".join)
def test_a_filter_by_an_unknown_station_is_refused(work: Path, command: list[str]) -> None:
    """docs/operator-guide.md: "Bad input prints one line on stderr and exits with code 2
    (an unknown station, ...)". ``--station sim00001`` (a typo, or the wrong case) answers
    an empty list and exit 0, as if the station had never charged."""
    r = csms(*command, "--station", "sim00001", "--json", cwd=work)
    line = one_line_error(r, 2)
    assert "sim00001" in line


# -- receipts ---------------------------------------------------------------------------
def test_the_receipt_of_a_session_not_settled_yet_says_how_to_settle_it(work: Path) -> None:
    """README: ``csms receipt 1 -o receipt.json`` after ``csms settle run``. An operator
    who asks first is told "session 1 is not in a settlement batch yet", not what to run."""
    line = one_line_error(csms("receipt", "1", "-o", "receipt.json", cwd=work), 2)
    assert "csms settle" in line, line
    assert not (work / "receipt.json").exists()


def test_a_settled_session_shows_its_price(work: Path) -> None:
    """The tariff priced the session and settlement billed it (the receipt says "the
    record bills 71 (minor units)", the console shows "billing state and price"); ``csms
    sessions show`` gives the billing state only: the operator cannot see what a session
    cost without writing its receipt."""
    ok(csms("settle", "run", "--chain", "memory", cwd=work))
    shown = orjson.loads(ok(csms("sessions", "show", "1", "--json", cwd=work)))
    assert shown["billing"] == "unpaid"  # SIMTAG is nobody's card: recorded, not paid
    priced = {k: v for k, v in shown.items() if "price" in k or "amount" in k or "cost" in k}
    assert priced, sorted(shown)
    assert any(isinstance(v, int) and v > 0 for v in priced.values()), priced


# -- registering a station ----------------------------------------------------------------
def test_a_station_added_without_a_password_is_warned_about(tmp_path: Path) -> None:
    """``csms stations add CP-001`` (the operator guide writes ``[--password P]``, so it
    looks optional) registers a station at security profile 0: anyone who knows its id
    connects as it and reports sessions billed to its drivers. It says only "station CP-001
    added (boot: accepted, profile 0)", exit 0, and ``--help`` shows no default for
    ``--profile``."""
    r = csms("stations", "add", "CP-001", cwd=tmp_path)
    said = r.stderr.lower()
    if r.returncode == 0:
        assert "password" in said or "profile 0" in said or "no authentication" in said, (
            r.stdout, r.stderr)
    else:
        one_line_error(r, 2)


# -- commands that reach the running server -----------------------------------------------
def test_master_group_reaches_a_server_on_another_admin_port(work: Path) -> None:
    """``csms tags master-group G`` sets the group "on the connected 2.0.1 stations at once
    (through a running csms serve)" by its admin API, but takes no ``--admin-port`` /
    ``--admin-host`` as the other commands that reach it do: an operator whose server runs
    with ``--admin-port`` cannot point it there."""
    server = Serve(work)
    try:
        r = csms("tags", "master-group", "MASTERS", "--admin-port", str(server.admin_port),
                 cwd=work)
    finally:
        server.stop()
    out = ok(r)
    assert "MASTERS" in out
    assert "next boot" not in out + r.stderr  # it reached the server


# -- what a command confirms ----------------------------------------------------------------
def test_a_session_list_cut_at_its_limit_says_so(work: Path) -> None:
    """``csms sessions list`` shows at most ``--limit`` sessions (1000 by default; the
    operator guide's synopsis does not name the option) and says nothing when there were
    more: an operator with 5,000 sessions sees 1,000 and takes them for all."""
    r = csms("sessions", "list", "--limit", "1", cwd=work)
    ok(r)
    assert "--limit" in r.stdout + r.stderr, r.stdout + r.stderr
    whole = csms("sessions", "list", "--limit", "2", "--json", cwd=work)  # all there are
    assert len(orjson.loads(ok(whole))) == 2
    assert whole.stderr == "", whole.stderr


def test_tariffs_set_confirms_every_price_it_set(tmp_path: Path) -> None:
    """The README's ``csms tariffs set '*' --per-kwh 0.39 --session-fee 0.50`` answers
    "tariff for *: version 1, 0.39 EUR/kWh": the session fee it also set is not shown, so a
    mistyped fee goes unnoticed until the first bill."""
    out = ok(csms("tariffs", "set", "*", "--per-kwh", "0.39", "--session-fee", "0.50",
                  "--per-minute", "0.05", "--currency", "EUR", cwd=tmp_path))
    assert "0.39" in out and "0.50" in out and "0.05" in out, out


