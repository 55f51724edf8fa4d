"""The tariff a session is priced with (``find_tariff``), on SQLite and PostgreSQL: the
station's own newest version valid when it started, else the newest default ('*') one;
checked against that rule, written out in Python, over random histories of versions
whose start times do not follow their order."""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from decimal import Decimal

from csms.domain.tariff import Tariff
from csms.service.ports import Repository
from csms.storage.sql import dt_to_db

from .test_tx import T0, session, unit

STATIONS = ["CP1", "CP'2", "*", "%", "CP1 "]


def expected(history: list[Tariff], station_id: str, at: object) -> Tariff | None:
    for wanted in (station_id, "*"):
        valid = [t for t in history if t.station_id == wanted
                 and t.valid_from is not None and t.valid_from <= at]  # type: ignore[operator]
        if valid:
            return max(valid, key=lambda t: t.version)
    return None


async def test_the_tariff_valid_at_a_time_is_the_rule_s(repo: Repository) -> None:
    rng = random.Random(11)
    history: list[Tariff] = []
    versions: dict[str, int] = {}
    for n in range(60):
        station = rng.choice(STATIONS)
        tariff = Tariff(station, Decimal(f"0.{n:02d}"), "EUR", 2, Decimal(n),
                        Decimal(0), valid_from=T0 + timedelta(hours=rng.randint(-50, 50)))
        version = await unit(repo, lambda tx, t=tariff: tx.add_tariff(t))
        versions[station] = versions.get(station, 0) + 1
        assert version == versions[station]
        history.append(Tariff(tariff.station_id, tariff.per_kwh, "EUR", 2, tariff.per_minute,
                              Decimal(0), version, tariff.valid_from))
        for _ in range(5):
            asked = rng.choice([*STATIONS, "CP3"])
            at = T0 + timedelta(hours=rng.randint(-60, 60), seconds=rng.choice([0, 1, -1]))
            want = expected(history, asked, at)
            got = await unit(repo, lambda tx, s=asked, a=at: tx.find_tariff(s, a))
            if want is None:
                assert got is None, (asked, at)
            else:
                assert got is not None, (asked, at, want)
                assert (got.station_id, got.version, got.per_kwh, got.per_minute) == (
                    want.station_id, want.version, want.per_kwh, want.per_minute), (asked, at)


async def test_a_tariff_from_the_moment_a_session_starts(repo: Repository) -> None:
    """A version valid from exactly the start time prices it; one a microsecond later
    does not."""
    await unit(repo, lambda tx: tx.add_tariff(Tariff("*", Decimal("0.30"), valid_from=T0)))
    await unit(repo, lambda tx: tx.add_tariff(
        Tariff("CP1", Decimal("0.40"), valid_from=T0 + timedelta(microseconds=1))))
    at_start = await unit(repo, lambda tx: tx.find_tariff("CP1", T0))
    assert at_start is not None and at_start.per_kwh == Decimal("0.30")
    later = await unit(repo, lambda tx: tx.find_tariff("CP1", T0 + timedelta(seconds=1)))
    assert later is not None and later.per_kwh == Decimal("0.40")
    assert await unit(repo, lambda tx: tx.find_tariff("CP1", T0 - timedelta(seconds=1))) is None


async def test_every_change_to_the_tariffs_moves_the_counter(repo: Repository) -> None:
    """Migration 0100: whoever inserts, updates or deletes tariffs raises
    ``tariff_generation.n`` (what SQLite's kept lookups are checked against)."""
    async def counter() -> int:
        row = await repo.read(lambda tx: tx.fetchone("SELECT n FROM tariff_generation"))
        assert row is not None
        return int(row["n"])

    seen = [await counter()]
    await unit(repo, lambda tx: tx.add_tariff(Tariff("*", Decimal("0.30"), valid_from=T0)))
    seen.append(await counter())
    await unit(repo, lambda tx: tx.execute("UPDATE tariffs SET per_kwh = '0.31'"))
    seen.append(await counter())
    await unit(repo, lambda tx: tx.execute("DELETE FROM tariffs"))
    seen.append(await counter())
    assert seen == sorted(set(seen)), seen  # rose at each change


async def test_a_new_version_is_refused_exactly_when_it_would_reprice_a_session(
        repo: Repository) -> None:
    """``session_a_tariff_would_reprice`` (what ``csms tariffs set`` and the console ask
    before they add a version) against the rule itself: a version would reprice a stored
    session when the session had a tariff at its start (``expected``) and would have
    another with the version added. Random histories of versions and sessions, random
    proposals (the station's own, the default, before, at and after starts); a proposal
    that passes is added, so later ones meet it."""
    rng = random.Random(17)
    history: list[Tariff] = []
    versions: dict[str, int] = {}
    starts: list[tuple[str, datetime]] = []
    stations = ["CP1", "CP'2", "CP3"]
    for n in range(12):
        station = rng.choice(stations)
        at = T0 + timedelta(hours=rng.randint(-40, 40), microseconds=rng.choice([0, 1]))
        await unit(repo, lambda tx, s=station, a=at, i=n: tx.insert_session(
            session(s, transaction_id=f"T{i}", started_at=a)))
        starts.append((station, at))
    refused = passed = 0
    for n in range(80):
        station = rng.choice([*stations, "*", "*"])
        if rng.random() < 0.4:  # at a session's start exactly, or a microsecond around it
            _, start = rng.choice(starts)
            valid_from = start + timedelta(microseconds=rng.choice([-1, 0, 1]))
        else:
            valid_from = T0 + timedelta(hours=rng.randint(-50, 50))
        new = Tariff(station, Decimal(f"0.{n:02d}"), version=versions.get(station, 0) + 1,
                     valid_from=valid_from)
        changed = sorted(
            (at, s) for s, at in starts
            if (before := expected(history, s, at)) is not None
            and expected([*history, new], s, at) is not before)
        hit = await unit(repo, lambda tx, s=station, v=valid_from:
                         tx.session_a_tariff_would_reprice(s, v))
        if changed:
            assert hit is not None, (station, valid_from, changed)
            started = hit["started_at"]
            assert (hit["station_id"], str(started)) in {
                (s, dt_to_db(at)) for at, s in changed}, (hit, changed)
            assert str(started) == dt_to_db(changed[0][0])  # the first one
            refused += 1
            continue
        assert hit is None, (station, valid_from, hit)
        await unit(repo, lambda tx, t=new: tx.add_tariff(t))
        versions[station] = new.version
        history.append(new)
        passed += 1
    assert refused > 10 and passed > 10, (refused, passed)  # both ways, many times
