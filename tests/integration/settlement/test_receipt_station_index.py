"""Station indexes past 2^24, through a real database, a real chain and both verifiers.

A station's index was 24 bits, and anyone may register a station: a stranger who
registered the 16.7 million indexes would have shut every new host out. The entry keeps
the low 24 bits where they were and puts the high ones above the slot, so that an entry of
a station below 2^24 packs as it always did (its receipts verify as before) and one past
it is paid and verifies, card or app session. On py-evm and on Anvil, where the receipt
page's verifier (web/verify under Node) must reach the same checks and verdict."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import vyper
from eth_account.signers.local import LocalAccount
from eth_hash.auto import keccak

from settlement.chain import Chain
from settlement.contract import code_fingerprint, is_settlement_code
from settlement.receipts import INVALID, VALID, load_receipt
from settlement.worker import SettlementWorker
from support.chainkit import Kit

from .conftest import add_sessions, link_driver, verify_receipt
from .test_receipt_authorization import PRICE, app_session
from .test_verifier_origin import check, failed

FEE_BPS = 500  # the fixtures' chains
# the contract's source as released with 24-bit station indexes (deployed contracts keep it)
EARLIER = Path(__file__).resolve().parents[2] / "support" / "contracts" / "Settlement24.vy"


async def _host_of_cp1(repo: Any, kit: Kit, count: int | None) -> tuple[LocalAccount, int]:
    """A host registering CP1 on chain, ``count`` stations registered before (None: as
    many as the chain has), recorded in the central system."""
    if count is not None:
        kit.set_storage("station_count", count)
    host, index = kit.host()

    async def work(tx: Any) -> None:
        station = await tx.get_station("CP1")
        station.host_address, station.chain_station = host.address.lower(), index
        await tx.update_station(station)

    await repo.unit(work)
    return host, index


async def _card_receipt(repo: Any, chain: Chain, count: int | None,
                        ) -> tuple[Kit, dict[str, Any], LocalAccount, LocalAccount, int]:
    kit = Kit(chain)
    driver, _ = await link_driver(repo, kit, "TAG0")
    [sid] = await add_sessions(repo, 1)
    host, index = await _host_of_cp1(repo, kit, count)
    await SettlementWorker(repo, chain).run_once()
    receipt = await load_receipt(repo, sid, None)
    return kit, receipt, driver, host, index


def _old_layout(record: dict[str, Any], slot: int) -> int:
    """The entry as every earlier release packed it: station 24 bits at the bottom."""
    assert record["chain_station"] < 2**24
    return int(record["chain_station"] | record["driver_index"] << 24
               | record["energy_wh"] << 56 | record["duration_s"] << 88
               | record["price_minor"] << 120 | record["kind"] << 168 | slot << 176)


async def test_a_card_session_at_a_station_past_2_24_is_paid_and_verifies(
    repo: Any, chain: Chain,
) -> None:
    kit, receipt, driver, host, index = await _card_receipt(repo, chain, 2**24 - 1)
    assert index == 2**24 and receipt["record"]["chain_station"] == 2**24
    assert receipt["payment"]["paid"] is True
    assert kit.earnings(host.address) == PRICE - PRICE * FEE_BPS // 10_000
    packed = int(receipt["entry"]["packed"], 16)
    assert packed & (2**24 - 1) == 0 and packed >> 184 == 1  # the high bits above the slot
    verdict = verify_receipt(receipt, chain.w3, driver=driver.address,
                             same_detail=("entry", "host"))
    assert verdict.status == VALID, failed(verdict)


async def test_an_app_session_at_a_station_past_2_24_is_paid_and_verifies(
    repo: Any, chain: Chain,
) -> None:
    """The driver's EIP-712 authorization names the station's full index."""
    kit = Kit(chain)
    driver, _ = kit.driver(allow_cards=False)
    [sid] = await add_sessions(repo, 1)
    kit.set_storage("station_count", 2**32 + 6)
    host, index = kit.host()
    assert index == 2**32 + 7
    await app_session(repo, kit, driver, index, sid, max_per_kwh=50, nonce=7)

    async def bind(tx: Any) -> None:
        station = await tx.get_station("CP1")
        station.host_address = host.address.lower()
        await tx.update_station(station)

    await repo.unit(bind)
    await SettlementWorker(repo, chain).run_once()
    assert kit.balance(driver) == 10**6 - PRICE and chain.nonce_used(driver.address, 7)
    assert kit.earnings(host.address) == PRICE - PRICE * FEE_BPS // 10_000
    receipt = await load_receipt(repo, sid, None)
    assert receipt["record"]["authorization"]["station"] == index
    verdict = verify_receipt(receipt, chain.w3, driver=driver.address)
    assert verdict.status == VALID, failed(verdict)


async def test_a_station_below_2_24_packs_and_verifies_as_before(
    repo: Any, chain: Chain,
) -> None:
    """An entry of a station below 2^24 is the same 256 bits as before the index grew:
    receipts settled before verify unchanged."""
    _kit, receipt, driver, _host, index = await _card_receipt(repo, chain, None)
    assert index < 2**24
    packed = int(receipt["entry"]["packed"], 16)
    assert packed == _old_layout(receipt["record"], packed >> 176 & 255)
    verdict = verify_receipt(receipt, chain.w3, driver=driver.address)
    assert verdict.status == VALID, failed(verdict)


async def test_an_entry_with_forged_high_bits_is_invalid(repo: Any, chain: Chain) -> None:
    """A receipt whose entry sets bits above the slot (read by the contract as the
    station's high bits) is not the record's entry, whatever the record says."""
    _kit, receipt, driver, _host, index = await _card_receipt(repo, chain, None)
    for bits in (1 << 184, 1 << 199, 1 << 200, 1 << 255):
        bad = copy.deepcopy(receipt)
        bad["entry"]["packed"] = hex(int(bad["entry"]["packed"], 16) | bits)
        verdict = verify_receipt(bad, chain.w3, driver=driver.address)
        assert verdict.status == INVALID, hex(bits)
        assert check(verdict, "entry").ok is False
    # nor does naming the station the forged bits make the record's own
    bad = copy.deepcopy(receipt)
    bad["record"]["chain_station"] = index + 2**24
    verdict = verify_receipt(bad, chain.w3, driver=driver.address)
    assert verdict.status == INVALID, failed(verdict)


def test_the_earlier_fingerprint_is_the_24_bit_contracts() -> None:
    """Settlement.code.json's earlier release is the contract of 24-bit station indexes,
    compiled: its receipts verify (below), no other code does."""
    out = vyper.compile_code(EARLIER.read_text(), output_formats=["bytecode",
                                                                  "bytecode_runtime"])
    [earlier] = code_fingerprint()["earlier"]
    runtime = bytes.fromhex(out["bytecode_runtime"].removeprefix("0x"))
    creation = bytes.fromhex(out["bytecode"].removeprefix("0x"))
    assert (earlier["runtime_keccak"], earlier["runtime_size"]) \
        == ("0x" + bytes(keccak(runtime)).hex(), len(runtime))
    assert (earlier["creation_keccak"], earlier["creation_size"]) \
        == ("0x" + bytes(keccak(creation)).hex(), len(creation))


async def test_a_receipt_of_a_contract_deployed_with_24_bit_stations_stays_valid(
    repo: Any, chain: Chain,
) -> None:
    """A deployed contract cannot be changed: the sessions a contract of the earlier
    release settled keep their receipts VALID, with both verifiers."""
    out = vyper.compile_code(EARLIER.read_text(), output_formats=["bytecode"])
    chain.artifact = {**chain.artifact, "bytecode": out["bytecode"]}
    chain.deploy(fee_bps=FEE_BPS)  # the contract as the earlier release deployed it
    code = bytes(chain.w3.eth.get_code(chain.contract_address))  # type: ignore[arg-type]
    assert not is_settlement_code(code, {**code_fingerprint(), "earlier": []})
    assert is_settlement_code(code)
    kit, receipt, driver, host, index = await _card_receipt(repo, chain, None)
    assert receipt["chain"]["contract"].lower() == str(chain.contract_address).lower()
    assert index < 2**24 and receipt["payment"]["paid"] is True
    assert kit.earnings(host.address) == PRICE - PRICE * FEE_BPS // 10_000
    verdict = verify_receipt(receipt, chain.w3, driver=driver.address,
                             same_detail=("contract code", "contract origin"))
    assert verdict.status == VALID, failed(verdict)
