"""One driver's escrow judged by two nodes on one database (``csms serve --workers``, or
two machines): the coverage check and the unit storing what it covered are one step for
the database, not only for the node's event loop. Two starts of one driver at the same
moment on two nodes, where the escrow covers one session, get one acceptance."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from csms.domain.model import IdTag
from csms.domain.tariff import Tariff
from csms.service.charging import ChargingService, new_station
from csms.service.messages import TransactionEventIn
from csms.service.ports import Repository, Tx
from csms.storage import open_repository
from settlement import wallet
from settlement.chain import Chain, open_chain
from settlement.credit import ChainCredit
from support.chainkit import Kit

LONG_AGO = datetime(2020, 1, 1, tzinfo=UTC)
STATIONS = ("CPA", "CPB")


class Nodes:
    def __init__(self, chain: Chain, a: Repository, b: Repository) -> None:
        self.chain, self.repos = chain, (a, b)
        self.services = (ChargingService(a), ChargingService(b))
        for service, repo in zip(self.services, self.repos, strict=True):
            service.credit = ChainCredit(repo, chain)

    async def link(self, tag: str, deposit: int, **terms: Any) -> Any:
        """A driver with ``deposit`` (minor units) and ``terms`` whose card ``tag`` both
        nodes know."""
        kit = Kit(self.chain)
        driver, _ = kit.driver(deposit=deposit, **terms)
        salt = wallet.new_salt()
        commitment = wallet.link_card(self.chain, driver, tag, salt)

        async def work(tx: Tx) -> None:
            await tx.put_tag(IdTag(tag))
            await tx.link_card(tag, driver.address, "0x" + salt.hex(),
                               "0x" + commitment.hex(), datetime.now(UTC))

        await self.repos[0].unit(work)
        return driver


@pytest.fixture
async def nodes(db_url: str, tmp_path: Path) -> AsyncIterator[Nodes]:
    chain = open_chain("memory", tmp_path / "chain")
    a = await open_repository(db_url)
    b = await open_repository(db_url)
    indexes = {sid: chain.register_station(22_000) for sid in STATIONS}

    async def setup(tx: Tx) -> None:
        await tx.add_tariff(Tariff("*", Decimal("0.39"), "EUR", 2, valid_from=LONG_AGO))
        for sid in STATIONS:
            station = new_station(sid)
            station.chain_station = indexes[sid]
            await tx.insert_station(station)

    await a.unit(setup)
    try:
        yield Nodes(chain, a, b)
    finally:
        await a.close()
        await b.close()
        chain.close()


async def test_two_nodes_start_one_drivers_card_at_once_and_one_is_covered(
    nodes: Nodes,
) -> None:
    """The escrow (30.00) covers one reserve (20.00): of two 1.6 starts at once, one on
    each node, one is Accepted and the other refused for credit (1.6 Blocked)."""
    await nodes.link("CARD", deposit=3_000)
    now = datetime.now(UTC)
    answers = await asyncio.gather(*(
        service.start_transaction(sid, 1, "CARD", Decimal(0), now)
        for service, sid in zip(nodes.services, STATIONS, strict=True)))
    assert sorted(auth.value for _, auth, _ in answers) == ["Accepted", "NoCredit"], answers


async def test_two_nodes_start_201_transactions_of_one_driver_at_once(nodes: Nodes) -> None:
    await nodes.link("CARD", deposit=3_000)
    now = datetime.now(UTC)
    events = [TransactionEventIn("Started", now, "Authorized", 0, f"TX-{sid}", evse_id=1,
                                 connector_id=1, id_tag="CARD") for sid in STATIONS]
    answers = await asyncio.gather(*(
        service.transaction_event(sid, ev)
        for service, sid, ev in zip(nodes.services, STATIONS, events, strict=True)))
    statuses = sorted(auth.value for auth in answers if auth is not None)
    assert statuses == ["Accepted", "NoCredit"], answers


async def test_two_nodes_accept_two_signed_sessions_the_escrow_covers_once(
    nodes: Nodes,
) -> None:
    """Two app-session authorizations of one driver (each up to 20.00, 30.00 in escrow)
    presented at once on two nodes: one is kept, the other refused."""
    driver = await nodes.link("OWNCARD", deposit=3_000)
    expiry = int(time.time()) + 3600

    async def station_index(sid: str) -> int:
        async def work(tx: Tx) -> int:
            station = await tx.get_station(sid)
            assert station is not None and station.chain_station is not None
            return station.chain_station

        return await nodes.repos[0].read(work)

    signed = [wallet.authorize(nodes.chain, driver, await station_index(sid), max_per_kwh=40,
                               max_amount=2_000, nonce=n, expiry=expiry).as_json()
              for n, sid in enumerate(STATIONS, start=1)]
    results = await asyncio.gather(*(
        service.accept_authorization(sid, f"APP{n}", auth)
        for n, (service, sid, auth) in enumerate(
            zip(nodes.services, STATIONS, signed, strict=True))), return_exceptions=True)
    refused = [r for r in results if isinstance(r, ValueError)]
    kept = [r for r in results if isinstance(r, int)]  # the authorization's id
    assert len(refused) == 1 and len(kept) == 1, results
    assert "authorization refused" in str(refused[0])


async def test_two_nodes_give_two_sessions_of_one_driver_no_more_than_the_escrow(
    nodes: Nodes,
) -> None:
    """50.00 in escrow, 30.00 a session: two starts at once, one on each node, are both
    covered (each needs a reserve of 20.00), and their limits together are at most 50.00:
    the second is judged, and limited, on the first one's limit."""
    await nodes.link("CARD", deposit=5_000, max_per_session=3_000)
    now = datetime.now(UTC)
    answers = await asyncio.gather(*(
        service.start_transaction(sid, 1, "CARD", Decimal(0), now)
        for service, sid in zip(nodes.services, STATIONS, strict=True)))
    assert [auth.value for _, auth, _ in answers] == ["Accepted", "Accepted"], answers

    async def limits(tx: Tx) -> list[int | None]:
        return [s.limit_minor for s in await tx.list_sessions()]

    found = await nodes.repos[0].read(limits)
    assert sorted(x or 0 for x in found) == [2_000, 3_000], found
