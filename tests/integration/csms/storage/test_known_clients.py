"""The clients (an IPv4 address, an IPv6 /64) registered stations logged in from, on SQLite
and PostgreSQL: kept across a restart, written at most once an hour per client, bounded
per station (a stolen password used from many addresses) and in all, forgotten after
30 days."""

from __future__ import annotations

from datetime import UTC, datetime

from csms.service.known_clients import FORGET_AFTER, PER_STATION, REFRESH, KnownClients
from csms.service.ports import Repository, Tx

from .test_tx import station, unit

NOW = 1_900_000_000.0


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


async def stations(repo: Repository, *names: str) -> None:
    async def work(tx: Tx) -> None:
        for name in names:
            await tx.insert_station(station(name))

    await unit(repo, work)


async def rows(repo: Repository) -> dict[str, tuple[str, float]]:
    found = await repo.read(lambda tx: tx.known_clients(datetime.fromtimestamp(0, UTC), 10**6))
    return {client: (station_id, seen.timestamp()) for client, station_id, seen in found}


async def test_known_clients_survive_a_restart(repo: Repository) -> None:
    await stations(repo, "CP1", "CP2")
    clock = Clock()
    known = KnownClients(repo, 100, clock=clock)
    await known.load()
    known.login("192.0.2.7", "CP1")
    known.login("2001:db8:1:2::/64", "CP2")
    await known.close()
    again = KnownClients(repo, 100, clock=clock)
    await again.load()
    assert "192.0.2.7" in again and "2001:db8:1:2::/64" in again
    assert "192.0.2.8" not in again and len(again) == 2
    assert await rows(repo) == {"192.0.2.7": ("CP1", NOW), "2001:db8:1:2::/64": ("CP2", NOW)}


async def test_a_client_is_written_at_most_once_an_hour(repo: Repository) -> None:
    await stations(repo, "CP1", "CP2")
    clock = Clock()
    known = KnownClients(repo, 100, clock=clock)
    await known.load()
    known.login("192.0.2.7", "CP1")
    await known.flush()
    clock.now += REFRESH - 1
    known.login("192.0.2.7", "CP1")  # a reconnect: nothing to write
    assert not known.pending()
    clock.now += 2
    known.login("192.0.2.7", "CP1")
    assert known.pending()
    await known.close()
    assert await rows(repo) == {"192.0.2.7": ("CP1", NOW + REFRESH + 1)}


async def test_a_stolen_password_used_from_many_addresses_is_bounded(
    repo: Repository,
) -> None:
    """Each station makes at most PER_STATION clients known: a newer one replaces its
    least recently seen one, in memory and in the table."""
    await stations(repo, "CP1", "CP2")
    clock = Clock()
    known = KnownClients(repo, 100, clock=clock)
    await known.load()
    known.login("198.51.100.1", "CP2")
    for i in range(50):
        clock.now += 1
        known.login(f"192.0.2.{i}", "CP1")
        if i % 7 == 0:
            await known.flush()
    await known.close()
    newest = {f"192.0.2.{i}" for i in range(50 - PER_STATION, 50)}
    assert len(known) == PER_STATION + 1
    assert set(await rows(repo)) == newest | {"198.51.100.1"}
    again = KnownClients(repo, 100, clock=clock)
    await again.load()
    assert len(again) == PER_STATION + 1 and all(client in again for client in newest)


async def test_the_known_clients_are_capped_least_recently_seen_first(
    repo: Repository,
) -> None:
    names = [f"CP{i}" for i in range(10)]
    await stations(repo, *names)
    clock = Clock()
    known = KnownClients(repo, 5, clock=clock)
    await known.load()
    for i, name in enumerate(names):
        clock.now += 1
        known.login(f"192.0.2.{i}", name)
    await known.close()
    assert len(known) == 5
    assert set(await rows(repo)) == {f"192.0.2.{i}" for i in range(5, 10)}
    # a table grown beyond the cap (another node wrote its own) is cut at the start
    small = KnownClients(repo, 3, clock=clock)
    await small.load()
    assert len(small) == 3
    assert set(await rows(repo)) == {f"192.0.2.{i}" for i in range(7, 10)}


async def test_a_client_not_seen_for_30_days_is_forgotten(repo: Repository) -> None:
    await stations(repo, "CP1", "CP2")
    clock = Clock()
    known = KnownClients(repo, 100, clock=clock)
    await known.load()
    known.login("192.0.2.1", "CP1")
    clock.now += 10 * 86400
    known.login("192.0.2.2", "CP2")
    await known.close()
    clock.now += FORGET_AFTER - 5 * 86400
    assert "192.0.2.1" not in known and "192.0.2.2" in known
    again = KnownClients(repo, 100, clock=clock)
    await again.load()
    assert "192.0.2.1" not in again and "192.0.2.2" in again
    assert set(await rows(repo)) == {"192.0.2.2"}
