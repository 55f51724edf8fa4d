"""The tariff a session is priced with (``find_tariff``), on SQLite and PostgreSQL: the
station's own newest version valid when it started, else the newest default ('*') one;
checked against that rule, written out in Python, over random histories of versions
whose start times do not follow their order."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from csms.domain.tariff import Tariff
from csms.service.defaults import TIME_FUTURE
from csms.service.ports import Repository, Tx
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
                         tx.session_a_tariff_would_reprice(s, v, TIME_FUTURE))
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


async def test_a_session_whose_start_is_no_time_to_judge_by_does_not_hold_a_version_back(
        repo: Repository) -> None:
    """Sessions stored now (``created_at``), each '*' priced: one started 5 minutes ahead
    (a station's clock within the tolerance, ``time_future``: 10 minutes) holds back a
    version valid from now; one that started 11 minutes ahead (beyond it), one rejected,
    one held as ``time_implausible`` do not - any registered station can date a session
    in 9999, which would otherwise refuse every new version for good. A station cannot
    make a session whose start is plausible escape this way: one ``time_implausible`` for
    another of its times that an operator released is billed as it is, and still counts."""
    now = datetime.now(UTC)

    async def setup(tx: Tx) -> None:
        await tx.add_tariff(Tariff("*", Decimal("0.30"), valid_from=T0))
        for txid, ahead, flags in (
                ("beyond", timedelta(minutes=11), []),
                ("rejected", timedelta(minutes=1), ["meter_went_backwards", "rejected"]),
                ("implausible", timedelta(minutes=2), ["time_implausible"]),
                ("9999", datetime(9999, 12, 31, tzinfo=UTC) - now, ["time_implausible"])):
            s = session("CP1", transaction_id=txid, started_at=now + ahead)
            s.flags = flags
            await tx.insert_session(s)

    async def hit(tx: Tx, at: datetime) -> Any:
        return await tx.session_a_tariff_would_reprice("*", at, TIME_FUTURE)

    await unit(repo, setup)
    assert await repo.read(lambda tx: hit(tx, now)) is None
    released = session("CP1", transaction_id="released", started_at=now + timedelta(minutes=3),
                       flags=["time_implausible", "released"])
    await unit(repo, lambda tx: tx.insert_session(released))
    assert (await repo.read(lambda tx: hit(tx, now)) or {}).get("id") == released.id
    ahead = session("CP2", transaction_id="ahead", started_at=now + timedelta(minutes=5))
    await unit(repo, lambda tx: tx.insert_session(ahead))
    found = await repo.read(lambda tx: hit(tx, now + timedelta(minutes=4)))
    assert (found or {}).get("id") == ahead.id, found
    # a tolerance of a minute (CSMS_TIME_FUTURE_SECONDS=60): beyond it too
    assert await repo.read(lambda tx: tx.session_a_tariff_would_reprice(
        "*", now + timedelta(minutes=4), timedelta(minutes=1))) is None
