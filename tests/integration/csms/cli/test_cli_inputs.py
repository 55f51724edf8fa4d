"""The `csms` command against arguments an operator can type: one line on stderr and a
non-zero exit, never a traceback; and each change it makes in the audit log, as its
siblings' are."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

HUGE = "99999999999999999999"  # beyond 64 bits


def csms(db: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "csms", *args, "--db", str(db),
         "--data-dir", str(db.parent / "data")],
        capture_output=True, text=True, timeout=60, env={**os.environ, "COLUMNS": "200"})


def assert_one_line_error(r: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in r.stderr, r.stderr[-400:]
    assert r.returncode == 2, (r.returncode, r.stderr[-400:])
    assert len(r.stderr.strip().splitlines()) == 1 and r.stderr.startswith("error:"), r.stderr


@pytest.mark.parametrize("args", [
    ["sessions", "show", HUGE],
    ["sessions", "release", HUGE],
    ["sessions", "reject", HUGE],
    ["sessions", "close", HUGE],
    ["receipt", HUGE],
    ["sessions", "list", "--limit", HUGE],
    ["reservations", "list", "--limit", HUGE],
    ["logs", "list", "--limit", HUGE],
    ["logs", "get", HUGE, "-o", "out.log"],
])
def test_an_integer_beyond_64_bits_is_one_line(tmp_path: Path, args: list[str]) -> None:
    assert csms(tmp_path / "c.db", "tags", "add", "T0").returncode == 0  # the schema
    assert_one_line_error(csms(tmp_path / "c.db", *args))


@pytest.mark.parametrize("args", [
    ["tags", "add", "T1", "--expires", "9999-12-31T23:59:59-05:00"],
    ["tags", "add", "T1", "--expires", "0001-01-01T00:00:00+05:00"],
    ["tags", "expire", "T0", "--at", "9999-12-31T23:59:59-05:00"],
])
def test_a_time_beyond_the_calendar_in_utc_is_one_line(tmp_path: Path,
                                                       args: list[str]) -> None:
    assert csms(tmp_path / "c.db", "tags", "add", "T0").returncode == 0
    assert_one_line_error(csms(tmp_path / "c.db", *args))


def audit(db: Path) -> list[tuple[str, str]]:
    r = csms(db, "audit", "--json")
    assert r.returncode == 0, r.stderr
    return [(a["action"], a["target"]) for a in json.loads(r.stdout)]


def test_drivers_unlink_is_audited_as_drivers_link_is(tmp_path: Path) -> None:
    """`drivers link` writes drivers.link; `drivers unlink`, which stops charging the card
    to the driver's escrow, writes nothing."""
    db = tmp_path / "c.db"
    assert csms(db, "tags", "add", "CARD").returncode == 0
    with sqlite3.connect(db) as c:  # what `drivers link` stores, once checked on chain
        c.execute("INSERT INTO driver_cards (tag, driver, salt, commitment, linked_at)"
                  " VALUES ('CARD', ?, ?, ?, '2026-01-01T00:00:00+00:00')",
                  ("0x" + "11" * 20, "0x" + "22" * 32, "0x" + "33" * 32))
    r = csms(db, "drivers", "unlink", "CARD")
    assert r.returncode == 0, r.stderr
    assert json.loads(csms(db, "drivers", "list", "--json").stdout) == []
    assert ("drivers.unlink", "CARD") in audit(db)


@pytest.mark.parametrize("args", [
    ["stations", "running-cost", "S1", "--on"],
    ["stations", "pnc", "S1", "on"],
    ["stations", "add", "S2", "--password", "0123456789abcdef"],
])
def test_station_settings_are_audited_as_set_max_power_is(tmp_path: Path,
                                                          args: list[str]) -> None:
    db = tmp_path / "c.db"
    assert csms(db, "stations", "add", "S1").returncode == 0
    assert csms(db, "stations", "set-max-power", "S1", "22").returncode == 0
    before = audit(db)
    assert ("stations.set-max-power", "S1") in before
    r = csms(db, *args)
    assert r.returncode == 0, r.stderr
    # one entry more (`stations add S1` above is audited too)
    assert len(audit(db)) == len(before) + 1, audit(db)


@pytest.mark.parametrize("hours", ["0.7", "0.01", "nan"])
def test_an_authorization_too_short_to_be_settled_is_not_signed(tmp_path: Path,
                                                                  hours: str) -> None:
    """The central system accepts no authorization that expires before the session it
    starts can charge and be settled (settlement.credit): the wallet does not sign one."""
    from csms.service import defaults

    def authorize(hours: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "csms", "wallet", "authorize", "--keystore",
             str(tmp_path / "none.json"), "--password-file", str(tmp_path / "none.txt"),
             "--station", "1", "--max-amount", "500", "--per-kwh", "40", "--hours", hours,
             "--data-dir", str(tmp_path / "data")],
            capture_output=True, text=True, timeout=60, env={**os.environ, "COLUMNS": "200"})

    r = authorize(hours)
    assert_one_line_error(r)
    # the central system's least, and six minutes to hand the authorization over
    floor = (defaults.AUTHORIZATION_MIN_SECONDS + 360) / 3600
    assert 0.74 < floor <= 0.75
    if hours == "nan":  # no number at all: refused where it is parsed, as every nan is
        assert "'--hours': nan is not a finite number" in r.stderr, r.stderr
    else:
        assert "--hours must be at least 0.75" in r.stderr, r.stderr
    # at the floor the wallet goes on (and stops at the keystore that is not there)
    r = authorize("0.75")
    assert r.returncode != 0 and "--hours" not in r.stderr, r.stderr


@pytest.mark.parametrize("index", ["0", str(2 ** 40), HUGE])
def test_a_chain_station_beyond_the_contracts_indexes_is_one_line(tmp_path: Path,
                                                                   index: str) -> None:
    """The contract's station indexes are 40 bits (settlement.records.LIMITS): an index
    beyond them is refused before the chain is asked, and the error names the bounds."""
    from settlement.records import LIMITS

    r = csms(tmp_path / "c.db", "stations", "set-host", "S1",
             "0x0000000000000000000000000000000000000001", "--chain-station", index,
             "--chain", "memory")
    assert_one_line_error(r)
    assert "--chain-station" in r.stderr
    if index != "0":
        assert str(2 ** LIMITS["chain_station"] - 1) in r.stderr, r.stderr


def test_the_last_chain_station_index_is_asked_of_the_chain(tmp_path: Path) -> None:
    r = csms(tmp_path / "c.db", "stations", "set-host", "S1",
             "0x0000000000000000000000000000000000000001", "--chain-station",
             str(2 ** 40 - 1), "--chain", "memory")
    assert r.returncode == 1 and "hosted by" in r.stderr, r.stderr


def _deploy(tmp_path: Path, days: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "csms", "contract", "deploy", "--chain", "memory",
         "--notice-days", days, "--data-dir", str(tmp_path / "data")],
        capture_output=True, text=True, timeout=60, env={**os.environ, "COLUMNS": "200"})


@pytest.mark.parametrize("days", ["0.001", "0.05", "0.0975"])
def test_a_notice_period_that_leaves_no_time_to_charge_is_refused(tmp_path: Path,
                                                                   days: str) -> None:
    """A driver's session is stopped NOTICE_STOP_AHEAD (and a check's interval) before
    its start plus the contract's notice period: a contract with a shorter one would stop
    every such session at once. The error names the least notice period."""
    from csms.service import defaults

    r = _deploy(tmp_path, days)
    assert_one_line_error(r)
    assert "--notice-days" in r.stderr and "0.0976" in r.stderr, r.stderr
    assert defaults.MIN_NOTICE_PERIOD == defaults.NOTICE_STOP_AHEAD \
        + defaults.LIMIT_CHECK_SECONDS + defaults.MIN_NOTICE_CHARGE
    assert not (tmp_path / "data").exists() or not any((tmp_path / "data").iterdir())


def test_the_least_notice_period_deploys(tmp_path: Path) -> None:
    r = _deploy(tmp_path, "0.0976")
    assert r.returncode == 0, r.stderr
    assert "notice 8432 s" in " ".join(r.stdout.split()), r.stdout
