"""The verifier against a dishonest operator: records forged BEFORE settlement (so every
hash matches what the chain holds) must still fail, and the verdict must say no more
than what is proven."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from chargers_sim.ocmf import MeterSigner
from csms.domain.model import MeterSample, Session, SessionStatus
from csms.domain.tariff import Tariff
from csms.service.charging import new_station
from settlement.chain import Chain
from settlement.receipts import (
    INVALID,
    UNVERIFIED,
    VALID,
    ReceiptError,
    duplicates,
    load_receipt,
    verify_receipt,
)
from settlement.worker import SettlementWorker
from support.chainkit import Kit

from .conftest import link_driver

T0 = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)


class Meter:
    """A station's Eichrecht meter that signs begin and end readings."""

    def __init__(self) -> None:
        self.signer = MeterSigner.generate("MTR-1")
        self.page = 0

    def reading(self, kind: str, wh: int, at: datetime, tag: str) -> dict[str, Any]:
        self.page += 1
        container = self.signer.container(station_id="CP1", id_tag=tag, register_wh=wh, at=at,
                                          kind=kind, pagination=self.page)
        return {"signedData": container}


async def signed_session(repo: Any, meter: Meter, start_wh: int, stop_wh: int,
                         begin: dict[str, Any], end: dict[str, Any], *, tag: str = "TAG0",
                         at: datetime = T0, minutes: int = 30,
                         billed_stop: int | None = None, evse: int = 1) -> int:
    """Store a completed session the way the operator chooses to (before settlement), on
    EVSE (1.6 connector) ``evse``."""

    async def work(tx: Any) -> int:
        if await tx.get_station("CP1") is None:
            await tx.insert_station(new_station("CP1"))
            await tx.set_meter_key("CP1", meter.signer.public_key_der.hex(), "operator")
            await tx.add_tariff(Tariff("*", Decimal("0.40"), "EUR", 2,
                                       valid_from=datetime(2000, 1, 1, tzinfo=UTC)))
        stop = billed_stop if billed_stop is not None else stop_wh
        s = Session(station_id="CP1", ocpp_version="ocpp1.6", transaction_id="",
                    started_at=at, stopped_at=at + timedelta(minutes=minutes),
                    connector_id=evse, evse_id=evse, id_tag=tag, meter_start_wh=Decimal(start_wh),
                    meter_stop_wh=Decimal(stop), energy_wh=stop - start_wh,
                    status=SessionStatus.COMPLETED, stop_reason="Local")
        sid = await tx.insert_session(s)
        await tx.add_samples("CP1", [
            MeterSample(at, "", context="Transaction.Begin", format="SignedData", signed=begin),
            MeterSample(at + timedelta(minutes=minutes), "", context="Transaction.End",
                        format="SignedData", signed=end)],
            session_id=sid, evse_id=evse, connector_id=evse, transaction_id=s.transaction_id)
        await tx.enqueue_settlement(sid, at)
        return int(sid)

    return int(await repo.unit(work))


async def verify_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "csms", "verify", *args], capture_output=True,
        text=True, timeout=60, env={**os.environ, "COLUMNS": "200"})


@pytest.fixture
async def setup(repo: Any, memory_chain: Chain) -> dict[str, Any]:
    kit = Kit(memory_chain)
    driver, _ = await link_driver(repo, kit, "TAG0")
    return {"kit": kit, "driver": driver, "meter": Meter()}


async def settle_and_check(repo: Any, setup: dict[str, Any], sid: int) -> tuple[str, Any]:
    chain = setup["kit"].chain
    await SettlementWorker(repo, chain).run_once()
    receipt = await load_receipt(repo, sid, None)
    verdict = verify_receipt(receipt, chain.w3, driver=setup["driver"].address)
    return verdict.status, verdict


async def test_an_honest_signed_session_is_proven_by_the_meter(
    repo: Any, setup: dict[str, Any],
) -> None:
    m = setup["meter"]
    sid = await signed_session(repo, m, 10_000, 12_500, m.reading("B", 10_000, T0, "TAG0"),
                               m.reading("E", 12_500, T0 + timedelta(minutes=30), "TAG0"))
    status, verdict = await settle_and_check(repo, setup, sid)
    assert status == VALID, [(c.name, c.detail) for c in verdict.checks if c.ok is not True]
    assert "the energy figure is the one the calibrated meter signed" in verdict.proves


async def test_a_session_on_an_evse_with_a_meter_of_its_own_is_proven_by_that_meter(
    repo: Any, setup: dict[str, Any],
) -> None:
    """A wallbox with a calibrated meter per EVSE: EVSE 2's meter key is registered for EVSE
    2 (the station's is EVSE 1's). The record of an EVSE 2 session names EVSE 2's key, and
    its receipt is proven by that meter."""
    first, second = setup["meter"], Meter()
    t1 = T0 + timedelta(minutes=30)
    await signed_session(repo, first, 1_000, 2_000, first.reading("B", 1_000, T0, "TAG0"),
                         first.reading("E", 2_000, t1, "TAG0"))

    async def register(tx: Any) -> None:
        await tx.set_evse_meter_key("CP1", 2, second.signer.public_key_der.hex())

    await repo.unit(register)
    sid = await signed_session(repo, second, 10_000, 12_500,
                               second.reading("B", 10_000, T0, "TAG0"),
                               second.reading("E", 12_500, t1, "TAG0"), evse=2)
    status, verdict = await settle_and_check(repo, setup, sid)
    assert status == VALID, [(c.name, c.detail) for c in verdict.checks if c.ok is not True]
    assert "the energy figure is the one the calibrated meter signed" in verdict.proves
    receipt = await load_receipt(repo, sid, None)
    assert receipt["record"]["meter_public_key"] == second.signer.public_key_der.hex()


@pytest.mark.parametrize("forgery", [
    "energy x10 beside the meter's readings", "another session's begin reading",
    "a reading signed for another tag", "times moved by 30 days", "pages out of order",
])
async def test_a_record_forged_before_settlement_is_invalid(
    repo: Any, setup: dict[str, Any], forgery: str,
) -> None:
    m = setup["meter"]
    t1 = T0 + timedelta(minutes=30)
    if forgery == "energy x10 beside the meter's readings":
        sid = await signed_session(repo, m, 10_000, 12_500, m.reading("B", 10_000, T0, "TAG0"),
                                   m.reading("E", 12_500, t1, "TAG0"), billed_stop=35_000)
    elif forgery == "another session's begin reading":
        earlier = m.reading("B", 10_000, T0 - timedelta(days=2), "TAG0")
        sid = await signed_session(repo, m, 10_000, 12_500, earlier,
                                   m.reading("E", 12_500, t1, "TAG0"))
    elif forgery == "a reading signed for another tag":
        sid = await signed_session(repo, m, 10_000, 12_500,
                                   m.reading("B", 10_000, T0, "04FFFFFF"),
                                   m.reading("E", 12_500, t1, "04FFFFFF"))
    elif forgery == "times moved by 30 days":
        sid = await signed_session(repo, m, 10_000, 12_500, m.reading("B", 10_000, T0, "TAG0"),
                                   m.reading("E", 12_500, t1, "TAG0"),
                                   at=T0 + timedelta(days=30))
    else:
        end = m.reading("E", 12_500, t1, "TAG0")
        begin = m.reading("B", 10_000, T0, "TAG0")  # signed after the end: page 2 > 1
        sid = await signed_session(repo, m, 10_000, 12_500, begin, end)
    status, verdict = await settle_and_check(repo, setup, sid)
    assert status == INVALID, forgery
    assert "calibrated meter signed" not in verdict.proves


async def test_an_invented_stop_reading_is_not_claimed_as_the_meters(
    repo: Any, setup: dict[str, Any],
) -> None:
    m = setup["meter"]
    begin = m.reading("B", 10_000, T0, "TAG0")
    sid = await signed_session(repo, m, 10_000, 14_000, begin, begin)  # no signed end
    status, verdict = await settle_and_check(repo, setup, sid)
    assert "calibrated meter signed" not in verdict.proves  # never the strongest words
    assert any("no signed stop reading" in c.detail for c in verdict.checks)
    assert status in (VALID, INVALID)


async def test_the_same_session_in_two_receipts_is_caught(
    repo: Any, setup: dict[str, Any], tmp_path: Path,
) -> None:
    m = setup["meter"]
    begin, end = m.reading("B", 10_000, T0, "TAG0"), m.reading("E", 12_500,
                                                              T0 + timedelta(minutes=30), "TAG0")
    first = await signed_session(repo, m, 10_000, 12_500, begin, end)
    await SettlementWorker(repo, setup["kit"].chain).run_once()
    second = await signed_session(repo, m, 10_000, 12_500, begin, end)  # billed again
    await SettlementWorker(repo, setup["kit"].chain).run_once()
    receipts = [await load_receipt(repo, sid, None) for sid in (first, second)]
    found = duplicates(receipts)
    assert any("same signed reading" in line for line in found)
    files = []
    for n, r in enumerate(receipts):
        path = tmp_path / f"r{n}.json"
        path.write_text(json.dumps(r))
        files.append(str(path))
    # each receipt on its own is settled and paid; together they show the double bill
    r = await verify_cli(*files)
    assert r.returncode == 1 and "billed twice" in r.stdout


async def test_unknown_versions_and_malformed_receipts_are_refused_in_one_line(
    repo: Any, setup: dict[str, Any], tmp_path: Path,
) -> None:
    m = setup["meter"]
    sid = await signed_session(repo, m, 10_000, 12_500, m.reading("B", 10_000, T0, "TAG0"),
                               m.reading("E", 12_500, T0 + timedelta(minutes=30), "TAG0"))
    await SettlementWorker(repo, setup["kit"].chain).run_once()
    receipt = await load_receipt(repo, sid, None)
    broken: list[Any] = [
        {**receipt, "voltledger_receipt": 1}, {**receipt, "voltledger_receipt": 99},
        {**receipt, "chain": "x"}, {**receipt, "samples": "x"}, {**receipt, "record": []},
        {**receipt, "entry": {**receipt["entry"], "record_hash": "zz"}}, [], "text",
    ]
    for n, bad in enumerate(broken):
        with pytest.raises(ReceiptError):
            verify_receipt(bad, None)
        if n not in (0, 2, 4, 6):
            continue  # the command is the same code: a few through the process suffice
        path = tmp_path / "bad.json"
        path.write_text(json.dumps(bad))
        r = await verify_cli(str(path))
        assert r.returncode == 2, (bad if not isinstance(bad, dict) else list(bad), r.stderr)
        assert r.stderr.startswith("error:") and "Traceback" not in r.stderr
        assert len(r.stderr.strip().splitlines()) == 1


async def test_an_unreachable_chain_is_unverified_not_invalid(
    repo: Any, setup: dict[str, Any], tmp_path: Path,
) -> None:
    m = setup["meter"]
    sid = await signed_session(repo, m, 10_000, 12_500, m.reading("B", 10_000, T0, "TAG0"),
                               m.reading("E", 12_500, T0 + timedelta(minutes=30), "TAG0"))
    await SettlementWorker(repo, setup["kit"].chain).run_once()
    path = tmp_path / "r.json"
    path.write_text(json.dumps(await load_receipt(repo, sid, None)))
    r = await verify_cli(str(path), "--rpc", "http://127.0.0.1:9", "--driver",
                         setup["driver"].address)
    assert r.returncode == 3 and "UNVERIFIED" in r.stdout, r.stdout + r.stderr
    assert verify_receipt(json.loads(path.read_text()), None).status == UNVERIFIED


@pytest.mark.parametrize(("part", "field", "value"), [
    ("payment", "amount", 1), ("payment", "unit", 7), ("chunk", "count", 7),
])
async def test_a_receipt_that_misstates_its_payment_or_chunk_is_invalid(
    repo: Any, setup: dict[str, Any], part: str, field: str, value: int,
) -> None:
    """The lines a driver reads first (what was paid, in which unit; the chunk's size)
    are checked against the chain, not only the record's hash."""
    m = setup["meter"]
    sid = await signed_session(repo, m, 10_000, 12_500, m.reading("B", 10_000, T0, "TAG0"),
                               m.reading("E", 12_500, T0 + timedelta(minutes=30), "TAG0"))
    status, _ = await settle_and_check(repo, setup, sid)
    assert status == VALID
    receipt = await load_receipt(repo, sid, None)
    assert receipt[part][field] != value
    receipt[part][field] = value
    verdict = verify_receipt(receipt, setup["kit"].chain.w3, driver=setup["driver"].address)
    assert verdict.status == INVALID
    failed = {c.name for c in verdict.checks if c.ok is False}
    assert failed == ({"settled once"} if part == "chunk" else {"payment"}), failed


async def test_a_receipt_of_a_look_alike_contract_is_not_valid_for_the_driver(
    repo: Any, setup: dict[str, Any],
) -> None:
    """``--driver`` is how a driver tells the real contract (docs/settlement.md: its escrow
    must be in that contract). A look-alike contract a stranger deploys answers whatever it
    likes to driver_index() and cards(): a record it "settled" - here one that bills a
    quarter of the price the real contract took - must not verify as VALID."""
    from web3 import Web3

    from settlement.records import chunk_digest, entry_of, record_hash, unpack_entry

    kit, driver = setup["kit"], setup["driver"]
    m = setup["meter"]
    sid = await signed_session(repo, m, 10_000, 12_500, m.reading("B", 10_000, T0, "TAG0"),
                               m.reading("E", 12_500, T0 + timedelta(minutes=30), "TAG0"))
    status, _ = await settle_and_check(repo, setup, sid)
    assert status == VALID
    real = await load_receipt(repo, sid, None)
    # the stranger's contract, on the same chain, and a record of its own making
    fake = kit.deploy("LookAlike")
    stranger = kit.account()
    record = json.loads(json.dumps(real["record"]))
    record["tariff"]["per_kwh"] = "0.10"
    record["price_minor"] = 25  # 2,500 Wh at 0.10
    slot = unpack_entry(int(real["entry"]["packed"], 16))["slot"]
    rhash, packed = entry_of(record, slot)
    ledger, first_seq = int(record["ledger"]), int(record["seq"])
    kit.call(stranger, fake, "claim", driver.address, record["driver_index"])
    tx = kit.call(stranger, fake, "settle", ledger, first_seq, [(rhash, packed)], [])
    forged = {**real, "record": record,
              "entry": {"record_hash": "0x" + record_hash(record).hex(), "packed": hex(packed),
                        "position": 0},
              "chunk": {"ledger": str(ledger), "first_seq": first_seq, "count": 1,
                        "digest": "0x" + chunk_digest(ledger, first_seq,
                                                      [(rhash, packed)]).hex()},
              "payment": {**real["payment"], "amount": 25},
              "chain": {**real["chain"], "contract": Web3.to_checksum_address(fake.address),
                        "tx_hash": "0x" + bytes(tx["transactionHash"]).hex(),
                        "block_number": int(tx["blockNumber"])}}
    verdict = verify_receipt(forged, kit.chain.w3, driver=driver.address)
    assert verdict.status != VALID, [(c.name, c.ok, c.detail) for c in verdict.checks]


def test_the_code_fingerprint_is_the_compiled_contract() -> None:
    """Settlement.code.json (what a verifier compares the chain's code with, no compiler
    needed) is what vyper compiles from Settlement.vy: regenerate it with
    ``python -m settlement.contract`` after changing the contract."""
    from settlement.contract import code_fingerprint, fingerprint_of_source

    current = {k: v for k, v in code_fingerprint().items() if k != "earlier"}
    assert current == fingerprint_of_source()


def test_the_committed_build_is_the_compiled_contract() -> None:
    """Settlement.build.json (the ABI and creation code a node deploys, so that no new
    process compiles) is what vyper compiles from Settlement.vy, and what a node takes."""
    from settlement import contract

    built = contract.build_of_source()
    assert contract._committed_build() == built
    contract._compiled.clear()
    assert contract.compiled() == built
    # a build whose code is not the fingerprinted one is compiled again, not deployed
    assert contract._is_fingerprinted(built)
    assert not contract._is_fingerprinted({**built, "bytecode": built["bytecode"][:-2] + "00"})


async def test_the_contract_code_is_the_settlement_contract(
    repo: Any, setup: dict[str, Any],
) -> None:
    """A genuine receipt runs on the real contract's code (VALID, the check passed); the
    same receipt naming a look-alike's address is INVALID for what the code is, whoever
    the driver names as the contract."""
    from web3 import Web3

    kit, driver, m = setup["kit"], setup["driver"], setup["meter"]
    sid = await signed_session(repo, m, 10_000, 12_500, m.reading("B", 10_000, T0, "TAG0"),
                               m.reading("E", 12_500, T0 + timedelta(minutes=30), "TAG0"))
    status, verdict = await settle_and_check(repo, setup, sid)
    assert status == VALID
    [code] = [c for c in verdict.checks if c.name == "contract code"]
    assert code.ok is True and "Settlement" in code.detail
    receipt = await load_receipt(repo, sid, None)
    assert verify_receipt(receipt, kit.chain.w3, contract=receipt["chain"]["contract"]
                          ).status == VALID
    fake = Web3.to_checksum_address(kit.deploy("LookAlike").address)
    moved = {**receipt, "chain": {**receipt["chain"], "contract": fake}}
    for kwargs in ({"driver": driver.address}, {"contract": fake}, {}):
        verdict = verify_receipt(moved, kit.chain.w3, **kwargs)
        assert verdict.status == INVALID, kwargs
        [code] = [c for c in verdict.checks if c.name == "contract code"]
        assert code.ok is False and "look-alike" in code.detail
    nothing = {**receipt, "chain": {**receipt["chain"], "contract": "0x" + "11" * 20}}
    verdict = verify_receipt(nothing, kit.chain.w3, driver=driver.address)
    assert verdict.status == INVALID and any("no contract" in c.detail for c in verdict.checks)


async def test_the_driver_checks_a_card_session_is_of_their_card(
    repo: Any, setup: dict[str, Any], tmp_path: Path,
) -> None:
    """A genuine card session is VALID with the salt the receipt carries, or the driver's
    own (--card TAG:SALT); without any salt the card's owner is not checked (UNVERIFIED);
    a salt that does not give the record's commitment for its tag is INVALID."""
    kit, driver, m = setup["kit"], setup["driver"], setup["meter"]
    sid = await signed_session(repo, m, 10_000, 12_500, m.reading("B", 10_000, T0, "TAG0"),
                               m.reading("E", 12_500, T0 + timedelta(minutes=30), "TAG0"))
    status, verdict = await settle_and_check(repo, setup, sid)
    assert status == VALID
    [card] = [c for c in verdict.checks if c.name == "the driver's card"]
    assert card.ok is True and "the receipt gives" in card.detail
    receipt = await load_receipt(repo, sid, None)
    salt = (await repo.read(lambda tx: tx.card_of("TAG0")))["salt"]
    assert receipt["card"] == {"salt": salt}
    w3 = kit.chain.w3
    bare = {k: v for k, v in receipt.items() if k != "card"}
    verdict = verify_receipt(bare, w3, driver=driver.address)
    assert verdict.status == UNVERIFIED
    assert [c.name for c in verdict.checks if c.ok is None] == ["the driver's card"]
    assert verify_receipt(bare, w3, driver=driver.address,
                          cards=[("TAG9", "0x" + "22" * 32), ("TAG0", salt)]).status == VALID
    wrong = [("TAG0", "0x" + "22" * 32)]
    assert verify_receipt(bare, w3, driver=driver.address, cards=wrong).status == INVALID
    forged = {**receipt, "card": {"salt": "0x" + "22" * 32}}
    assert verify_receipt(forged, w3, driver=driver.address).status == INVALID
    with pytest.raises(ReceiptError):
        verify_receipt({**receipt, "card": {"salt": "x"}}, w3)
    with pytest.raises(ValueError):
        verify_receipt(receipt, w3, driver=driver.address, cards=[("TAG0", "0x12")])
    # the command's option: TAG:SALT, and only with --driver
    path = tmp_path / "r.json"
    path.write_text(json.dumps(bare))
    for args in (["--card", "TAG0"], ["--card", f"TAG0:{salt}"],
                 ["--driver", driver.address, "--card", "TAG0:0x12"]):
        r = await verify_cli(str(path), *args)
        assert r.returncode == 2 and "--card" in r.stdout + r.stderr, (args, r.stderr)
