"""``csms tariffs set`` against a dishonest operator: a new version may not be valid from
before the start of a session that already had a tariff (it would reprice what the driver
was shown), while sessions held for having no tariff are priced by one. Real process, real
SQLite file; the rule itself is checked on both engines in
``tests/integration/csms/storage/test_tariffs.py``."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from csms.domain.model import Session
from csms.domain.tariff import Tariff
from csms.service.charging import new_station
from csms.service.ports import Tx
from csms.storage import open_repository

STARTED = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)


def csms(db: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "csms", *args, "--db", str(db)],
                          capture_output=True, text=True, timeout=60,
                          env={**os.environ, "COLUMNS": "200"})


def stored(db: Path) -> None:
    """CP1 with its own tariff since 2020 and a session of 2026-03-01; CP3, with no tariff,
    a session of the same time (held until it has one)."""
    async def work(tx: Tx) -> None:
        for ident in ("CP1", "CP3"):
            await tx.insert_station(new_station(ident))
            await tx.insert_session(Session(
                station_id=ident, ocpp_version="ocpp1.6", transaction_id="1",
                started_at=STARTED, connector_id=1, id_tag="T1"))
        await tx.add_tariff(Tariff("CP1", Decimal("0.30"),
                                   valid_from=datetime(2020, 1, 1, tzinfo=UTC)))

    async def run() -> None:
        repo = await open_repository(str(db))
        try:
            await repo.unit(work)
        finally:
            await repo.close()
    asyncio.run(run())


def audited(db: Path) -> list[dict[str, Any]]:
    """``csms audit --json``: newest first."""
    r = csms(db, "audit", "--json")
    assert r.returncode == 0, r.stderr
    rows: list[dict[str, Any]] = json.loads(r.stdout)
    return rows


def prices(db: Path) -> list[tuple[str, int, str]]:
    rows = json.loads(csms(db, "tariffs", "list", "--json").stdout)
    return [(r["station_id"], r["version"], r["per_kwh"]) for r in rows]


def test_a_backdated_tariff_is_refused_over_a_priced_session(tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    stored(db)
    before = prices(db)
    for station in ("CP1", "*"):  # CP1's own version; '*' does not price CP1 (it has one)
        r = csms(db, "tariffs", "set", station, "--per-kwh", "9.99",
                 "--valid-from", "2026-03-01T09:00:00+00:00")
        if station == "CP1":
            assert r.returncode == 2, (r.stdout, r.stderr)
            assert r.stderr.startswith("error: a tariff valid from 2026-03-01T09:00:00+00:00"
                                       " would reprice session 1 of CP1"), r.stderr
            assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
            assert prices(db) == before  # nothing written
        else:  # prices CP3's held session, which had none
            assert r.returncode == 0, r.stderr
    # the very start is refused too; a microsecond after it reprices no session stored,
    # yet it is in the past over CP1's tariff in force (it would price the sessions an
    # offline station reports later): refused; now is a new version
    r = csms(db, "tariffs", "set", "CP1", "--per-kwh", "9.99",
             "--valid-from", "2026-03-01T10:00:00+00:00")
    assert r.returncode == 2 and "session 1 of CP1" in r.stderr, r.stderr
    r = csms(db, "tariffs", "set", "CP1", "--per-kwh", "0.35", "--valid-from",
             "2026-03-01T10:00:00.000001+00:00")
    assert r.returncode == 2 and "over the tariff in force then (CP1 version 1)" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
    assert csms(db, "tariffs", "set", "CP1", "--per-kwh", "0.35").returncode == 0
    assert csms(db, "tariffs", "set", "CP1", "--per-kwh", "0.40").returncode == 0
    # CP3's session is priced now ('*' version 1): another backdated '*' is refused
    r = csms(db, "tariffs", "set", "*", "--per-kwh", "0.01", "--valid-from", "2020-01-01")
    assert r.returncode == 2 and "session 2 of CP3" in r.stderr, r.stderr
    # each version set is in the audit log with who set it; the refused ones are not
    audit = sorted(audited(db), key=lambda a: a["id"])
    assert [(a["action"], a["target"], a["result"]["version"])
            for a in audit] == [("tariffs.set", "*", 1), ("tariffs.set", "CP1", 2),
                                ("tariffs.set", "CP1", 3)]
    assert all(a["actor"].startswith("cli") and a["ok"] for a in audit)
    assert [a["id"] for a in audited(db)] == [3, 2, 1]  # newest first
    assert [a["id"] for a in json.loads(csms(db, "audit", "--limit", "1", "--json").stdout)
            ] == [3]
    table = csms(db, "audit", "--wide").stdout
    assert "tariffs.set" in table and '"version":3' in table and "valid_from" in table
    assert before == [("CP1", 1, "0.30")]
    assert prices(db) == [("*", 1, "9.99"), ("CP1", 1, "0.30"), ("CP1", 2, "0.35"),
                          ("CP1", 3, "0.40")]


@pytest.mark.parametrize("price", ["1e30", "1000000.01", "-1", "NaN"])
def test_a_price_beyond_what_the_console_takes_is_refused(tmp_path: Path, price: str) -> None:
    """The same bound as the console's (0 to 1,000,000 in major units), in one line."""
    db = str(tmp_path / "csms.sqlite3")
    r = csms(db, "tariffs", "set", "*", "--per-kwh", price)
    assert r.returncode == 2 and "from 0 to 1000000" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr
    assert csms(db, "tariffs", "set", "*", "--per-kwh", "1000000").returncode == 0


@pytest.mark.parametrize("price", ["1e-31", "1e-10000000", "0E-31"])
def test_a_price_written_beyond_1e_30_is_refused(tmp_path: Path, price: str) -> None:
    """A figure no receipt's verifier reads (csms.domain.tariff.MAX_EXPONENT): the receipts
    of its sessions could not be checked."""
    db = str(tmp_path / "csms.sqlite3")
    r = csms(db, "tariffs", "set", "*", "--per-kwh", price)
    assert r.returncode == 2 and "must be 0 or at least 1E-30" in r.stderr, r.stderr
    assert csms(db, "tariffs", "set", "*", "--per-kwh", "1e-30").returncode == 0


@pytest.mark.parametrize(("price", "kept"), [("-0", "0"), ("-0.00", "0.00"), ("-0.0", "0.0")])
def test_a_negative_zero_price_is_stored_as_zero(tmp_path: Path, price: str, kept: str) -> None:
    """``-0`` is zero: stored and shown without its sign, as the number it is."""
    db = tmp_path / "csms.sqlite3"
    r = csms(db, "tariffs", "set", "*", "--per-kwh", price, "--session-fee", "-0")
    assert r.returncode == 0, r.stderr
    assert f" {kept} EUR/kWh" in r.stdout and "session fee 0 EUR" in r.stdout, r.stdout
    assert "-" not in r.stdout.split("valid from")[0], r.stdout
    assert prices(db) == [("*", 1, kept)]


def test_a_tariff_in_another_unit_than_the_settlements_is_refused(tmp_path: Path) -> None:
    """The settlement contract has one billing unit (CSMS_BILLING_CURRENCY and
    CSMS_BILLING_DECIMALS: a euro cent by default), and a price goes on chain in its
    tariff's minor units: ``--decimals 3`` would be charged ten times its price, another
    currency in the wrong money. Refused in one line, nothing written; the default
    currency and decimals are the settlement's, and a settlement in another unit takes
    tariffs in that one."""
    db = tmp_path / "t.db"
    for args in (["--decimals", "3"], ["--currency", "USD"], ["--currency", "EUR",
                                                              "--decimals", "0"]):
        r = csms(db, "tariffs", "set", "*", "--per-kwh", "0.085", *args)
        assert r.returncode == 2, (args, r.stdout, r.stderr)
        assert r.stderr.startswith("error: a tariff in ") and "cannot be settled: the" \
            " settlement contract bills in EUR with 2 decimals" in r.stderr, r.stderr
        assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
    assert prices(db) == []
    assert csms(db, "tariffs", "set", "*", "--per-kwh", "0.39", "--currency", "eur",
                "--decimals", "2").returncode == 0
    rows = json.loads(csms(db, "tariffs", "list", "--json").stdout)
    assert [(r["currency"], r["decimals"]) for r in rows] == [("EUR", 2)]
    mills = subprocess.run(
        [sys.executable, "-m", "csms", "tariffs", "set", "*", "--per-kwh", "0.085",
         "--db", str(db)], capture_output=True, text=True, timeout=60,
        env={**os.environ, "CSMS_BILLING_CURRENCY": "usd", "CSMS_BILLING_DECIMALS": "3"})
    assert mills.returncode == 0, mills.stderr
    rows = json.loads(csms(db, "tariffs", "list", "--json").stdout)
    assert [(r["currency"], r["decimals"]) for r in rows] == [("EUR", 2), ("USD", 3)]
