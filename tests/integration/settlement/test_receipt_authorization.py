"""An app session's receipt names the driver's authorization the chain paid it under: a
dishonest operator who pays the entry with another of the driver's signatures for the
station (one with higher prices, a withdrawn one) bills above the prices the record's
authorization allows, and keeps that one's nonce unused. Both verifiers, on py-evm and
on Anvil."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from settlement import wallet
from settlement.chain import Chain
from settlement.receipts import INVALID, VALID, load_receipt
from settlement.worker import SettlementWorker
from support.chainkit import Kit

from .conftest import add_sessions, verify_receipt
from .test_verifier_origin import check, failed

# add_sessions' first session: 700 Wh at 0.40 per kWh, 28 minor units
PRICE = 28


async def app_session(repo: Any, kit: Kit, driver: Any, station: int, sid: int,
                      max_per_kwh: int, nonce: int) -> None:
    """The driver's authorization at ``max_per_kwh`` bound to session ``sid`` at CP1."""

    async def work(tx: Any) -> None:
        st = await tx.get_station("CP1")
        st.chain_station = station
        await tx.update_station(st)
        auth = wallet.authorize(kit.chain, driver, station, max_per_kwh=max_per_kwh,
                                max_amount=100, nonce=nonce, expiry=kit.now() + 86_400)
        aid = await tx.add_authorization(driver.address, "CP1", "TAG0", auth.as_json(),
                                         nonce, auth.expiry, datetime.now(UTC))
        await tx.remote_start_accepted(aid, kit.now() + 60)
        assert await tx.bind_authorization("CP1", "TAG0", sid, kit.now()) is not None

    await repo.unit(work)


async def test_an_entry_paid_under_another_of_the_drivers_signatures_is_invalid(
    repo: Any, chain: Chain,
) -> None:
    kit = Kit(chain)
    driver, _ = kit.driver(allow_cards=False)
    [sid] = await add_sessions(repo, 1)
    station = chain.register_station(22_000)
    # the driver signed this session for at most 10 per kWh: the tariff's 40 is above it,
    # the contract would not pay it under this signature
    await app_session(repo, kit, driver, station, sid, max_per_kwh=10, nonce=7)
    # another of its signatures for the station, 50 per kWh (its remote start failed)
    other = wallet.authorize(chain, driver, station, max_per_kwh=50, max_amount=100,
                             nonce=8, expiry=kit.now() + 86_400)
    worker = SettlementWorker(repo, chain)
    await worker.build_batches(force=True)

    async def swap(tx: Any) -> None:  # the operator's own database: the chunk's signatures
        r, vs = other.compact_signature()
        await tx.execute("UPDATE batches SET auths = ?", json.dumps(
            [[hex(other.packed()), "0x" + r.hex(), "0x" + vs.hex()]]))

    await repo.unit(swap)
    await worker.run_once()
    assert kit.balance(driver) == 10**6 - PRICE  # paid, under the other signature
    assert not chain.nonce_used(driver.address, 7)
    receipt = await load_receipt(repo, sid, None)  # no node named: the verifier picks
    assert receipt["record"]["authorization"]["nonce"] == 7 and receipt["payment"]["paid"]
    verdict = verify_receipt(receipt, chain.w3, driver=driver.address)
    assert verdict.status == INVALID, failed(verdict)
    assert check(verdict, "entry in the settle transaction").ok is False


async def test_an_entry_paid_under_its_own_signature_is_valid(
    repo: Any, chain: Chain,
) -> None:
    """The control: the same session, the operator honest (and a signature that allows the
    tariff's prices)."""
    kit = Kit(chain)
    driver, _ = kit.driver(allow_cards=False)
    [sid] = await add_sessions(repo, 1)
    station = chain.register_station(22_000)
    await app_session(repo, kit, driver, station, sid, max_per_kwh=50, nonce=7)
    await SettlementWorker(repo, chain).run_once()
    assert kit.balance(driver) == 10**6 - PRICE and chain.nonce_used(driver.address, 7)
    receipt = await load_receipt(repo, sid, None)  # no node named: the verifier picks
    verdict = verify_receipt(receipt, chain.w3, driver=driver.address)
    assert verdict.status == VALID, failed(verdict)
