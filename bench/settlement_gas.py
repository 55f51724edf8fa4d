"""Settlement cost: gas per paid session, against one transaction per session.

A chunk of sessions is settled by one transaction that checks every entry against the
driver's terms (or signature) and the station's power, debits the escrows, credits the
hosts and the platform, and stores the chunk's digest. Measured at a chunk of 1,000
sessions (steady state: the drivers', hosts' and ledger's storage slots exist; the first
chunk of a new contract pays their creation once), with 50 drivers, with every session
another driver, and with a driver's EIP-712 signature per session. The fair baselines,
in the same run: one transaction per session that only emits an event (no checks, no
payment), and the contract's own path for one session (a chunk of one). Gas is
deterministic (py-evm in-process gives what Anvil gives for the same inputs); the
calldata floor (16 gas per non-zero byte, 4 per zero byte of the settle transaction's
input, per session) is stated beside each figure. Every chain runs on Anvil when it is
installed (py-evm's gas estimation is ~100x slower), else in-process. The wall time of
a batch of 10,000 (cut from the database, settled, receipts written) is measured through
the worker.

    python -m bench.settlement_gas --json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import tempfile
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import vyper
from eth_account import Account
from eth_account.signers.local import LocalAccount

from csms.domain.model import Session, SessionStatus
from csms.domain.tariff import Tariff
from csms.service.charging import new_station
from csms.storage.sqlite import SqliteRepository
from settlement import wallet
from settlement.chain import Chain, ContractParams, find_anvil, open_chain
from settlement.receipts import load_batch_receipts
from settlement.records import CARD, SIGNED, pack_entry
from settlement.worker import SettlementWorker

__all__ = ["main", "run"]

CHUNK = 1000
SIGNED_CHUNK = 256  # signed entries per chunk (Settlement.vy MAX_AUTHS)
STATIONS = 20


def _chain(folder: Path) -> Chain:
    """A fresh chain with the contract: Anvil when installed, else py-evm in-process."""
    kind = "local" if find_anvil() else "memory"
    return open_chain(kind, folder, params=ContractParams(notice_period=86400, fee_bps=500))


def _funded(chain: Chain) -> LocalAccount:
    acct: LocalAccount = Account.create()
    wallet.fund_on_dev_chain(chain, acct.address)
    return acct


def _parties(chain: Chain, drivers: int) -> tuple[list[LocalAccount], list[int]]:
    accounts = []
    for _ in range(drivers):
        d = _funded(chain)
        wallet.set_terms(chain, d, wallet.DriverTerms(max_per_kwh=40, max_session_fee=60,
                                                      max_per_session=5_000,
                                                      max_per_day=2**32 - 1))
        wallet.deposit(chain, d, 10**9)
        accounts.append(d)
    stations = [wallet.register_station(chain, _funded(chain), 22_000)
                for _ in range(STATIONS)]
    return accounts, stations


def _settle(chain: Chain, ledger: int, first: int, rows: list[tuple[int, int, Any]]
            ) -> tuple[int, int, int]:
    """One chunk: (gas, calldata floor, count). rows: (station, driver index, auth or None),
    sorted by driver as the worker sorts them."""
    slots: dict[int, int] = {}
    entries, auths = [], []
    for station, driver, auth in rows:
        slot = slots.setdefault(station, len(slots))
        entries.append((secrets.token_bytes(32), pack_entry(
            station, driver, 1_500, 1_800, 120, SIGNED if auth else CARD, slot)))
        if auth is not None:
            auths.append((auth.packed(), *auth.compact_signature()))
    max_fee, tip = chain.fees()
    gas = chain.settle_gas(ledger, first, entries, auths)
    raw, tx_hash = chain.sign_settle(ledger, first, entries, auths, chain.next_nonce(),
                                     max_fee, tip, gas)
    chain.broadcast(raw)
    chain.w3.eth.wait_for_transaction_receipt(tx_hash)  # type: ignore[arg-type]
    receipt = chain.receipt(tx_hash)
    assert receipt is not None and receipt.status == 1
    settled = chain.settled(tx_hash)
    assert settled is not None and not settled.unpaid, settled
    data = bytes(chain.w3.eth.get_transaction(tx_hash)["input"])  # type: ignore[arg-type]
    floor = sum(16 if b else 4 for b in data)
    return receipt.gas_used, floor, len(rows)


def _scenario(folder: Path, drivers: int, signed: bool) -> dict[str, float]:
    """Gas per paid session at a chunk of CHUNK, measured on the second chunk."""
    chain = _chain(folder / f"s{drivers}{signed}")
    try:
        return _measure(chain, drivers, signed)
    finally:
        chain.close()


def _measure(chain: Chain, drivers: int, signed: bool) -> dict[str, float]:
    accounts, stations = _parties(chain, drivers)
    ledger = secrets.randbits(62) + 1
    chain.register_ledger(ledger)
    first = 1
    nonces = [0] * drivers  # each driver numbers its own authorizations
    measured: list[tuple[int, int, int]] = []
    for round_no in range(2):
        rows: list[tuple[int, int, Any]] = []
        for i in range(CHUNK):
            d = i % drivers
            auth = None
            if signed:
                nonces[d] += 1
                auth = wallet.authorize(chain, accounts[d], stations[i % STATIONS],
                                        max_per_kwh=40, max_session_fee=60, max_amount=500,
                                        nonce=nonces[d], expiry=int(time.time()) + 86_400)
            rows.append((stations[i % STATIONS], d + 1, auth))
        rows.sort(key=lambda r: (r[1], r[0]))
        step = SIGNED_CHUNK if signed else CHUNK
        for k in range(0, CHUNK, step):
            part = rows[k:k + step]
            result = _settle(chain, ledger, first, part)
            first += len(part)
            if round_no == 1:
                measured.append(result)
    gas = sum(m[0] for m in measured)
    floor = sum(m[1] for m in measured)
    count = sum(m[2] for m in measured)
    return {"gas": gas / count, "floor": floor / count}


def _naive(folder: Path) -> dict[str, float]:
    """One event-only anchor transaction per session; the contract's chunk of one."""
    chain = _chain(folder / "naive")
    try:
        return _anchor_and_single(chain)
    finally:
        chain.close()


def _anchor_and_single(chain: Chain) -> dict[str, float]:
    out = vyper.compile_code((Path(__file__).parent / "contracts" / "EventAnchor.vy")
                             .read_text(), output_formats=["abi", "bytecode"])
    factory = chain.w3.eth.contract(abi=out["abi"], bytecode=out["bytecode"])
    receipt = chain._send(dict(factory.constructor().build_transaction(chain._tx_base())))
    anchor = chain.w3.eth.contract(address=receipt["contractAddress"], abi=out["abi"])
    gas = []
    for i in range(20):
        tx = anchor.functions.anchor(secrets.token_bytes(32), 120 + i).build_transaction(
            chain._tx_base())
        gas.append(int(chain._send(dict(tx))["gasUsed"]))
    _drivers, stations = _parties(chain, 1)
    ledger = secrets.randbits(62) + 1
    chain.register_ledger(ledger)
    single = [_settle(chain, ledger, 1 + i, [(stations[0], 1, None)])[0] for i in range(20)]
    return {"event": sum(gas) / len(gas), "single": sum(single[5:]) / len(single[5:])}


async def _batch_wall_time(folder: Path, n: int, card_drivers: int = 50) -> dict[str, Any]:
    """A batch of n through the worker: cut from the database, settled, receipts written;
    the sessions are those of ``card_drivers`` drivers' cards in turn."""
    kind = "local" if find_anvil() else "memory"
    chain = await asyncio.to_thread(_chain, folder / "wall")
    try:
        repo = SqliteRepository(folder / "wall.sqlite3")
        drivers = []
        for d in range(card_drivers):
            driver = await asyncio.to_thread(_funded, chain)
            await asyncio.to_thread(wallet.set_terms, chain, driver, wallet.DriverTerms(
                max_per_kwh=40, max_session_fee=60, max_per_session=5_000,
                max_per_day=2**32 - 1))
            await asyncio.to_thread(wallet.deposit, chain, driver, 10**9)
            salt = wallet.new_salt()
            commitment = await asyncio.to_thread(wallet.link_card, chain, driver, f"T{d}",
                                                 salt)
            drivers.append((driver, salt, commitment))
        t0 = datetime(2026, 1, 1, tzinfo=UTC)
        indexes = [await asyncio.to_thread(chain.register_station, 22_000)
                   for _ in range(STATIONS)]  # the operator's stations, registered once

        async def fill(tx: Any) -> None:
            await tx.add_tariff(Tariff("*", Decimal("0.39"), "EUR", 2,
                                       valid_from=datetime(2000, 1, 1, tzinfo=UTC)))
            for d, (driver, salt, commitment) in enumerate(drivers):
                await tx.link_card(f"T{d}", driver.address, "0x" + salt.hex(),
                                   "0x" + commitment.hex(), t0)
            for k in range(STATIONS):
                await tx.insert_station(new_station(f"BENCH{k}", chain_station=indexes[k]))
            for i in range(n):
                start = t0 + timedelta(minutes=i)
                s = Session(station_id=f"BENCH{i % STATIONS}", ocpp_version="ocpp1.6",
                            transaction_id="", started_at=start,
                            stopped_at=start + timedelta(minutes=30), connector_id=1,
                            evse_id=1, id_tag=f"T{i % card_drivers}",
                            meter_start_wh=Decimal(i * 10_000),
                            meter_stop_wh=Decimal(i * 10_000 + 7_000 + i % 997),
                            energy_wh=7_000 + i % 997, status=SessionStatus.COMPLETED,
                            stop_reason="Local")
                sid = await tx.insert_session(s)
                await tx.enqueue_settlement(sid, start)

        await repo.unit(fill)
        worker = SettlementWorker(repo, chain, batch_size=1000)
        await worker.check_ledger()  # registered once, as on any running system
        started = time.perf_counter()
        summary = await worker.run_once(timeout=600)
        settled = time.perf_counter()
        count = 0
        with (folder / "receipts.jsonl").open("w") as f:
            for batch_id in range(1, summary.batches_created + 1):
                for r in await load_batch_receipts(repo, batch_id, None):
                    f.write(json.dumps(r) + "\n")
                    count += 1
        done = time.perf_counter()
        await repo.close()
        return {"sessions": summary.sessions_batched, "receipts": count, "chain": kind,
                "seconds_cut_and_settle": round(settled - started, 2),
                "seconds_receipts": round(done - settled, 2),
                "seconds_total": round(done - started, 2)}
    finally:
        await asyncio.to_thread(chain.close)


def run(batch: int = 10_000, quick: bool = False) -> dict[str, Any]:
    global CHUNK, STATIONS
    if quick:
        CHUNK, STATIONS = 10, 4
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        naive = _naive(folder)
        fifty = _scenario(folder, 50 if not quick else 5, signed=False)
        distinct = _scenario(folder, CHUNK, signed=False)
        signed = _scenario(folder, 50 if not quick else 5, signed=True)
        wall = asyncio.run(_batch_wall_time(folder, batch, 50 if not quick else 5))
    return {
        "benchmark": "settlement_gas", "chunk": CHUNK,
        # the headline: a paid session with 50 drivers against one event per session
        "ratio": round(naive["event"] / fifty["gas"], 2),
        "naive_event_anchor_gas": round(naive["event"]),
        "single_session_settle_gas": round(naive["single"]),
        "paid_gas_per_session_50_drivers": round(fifty["gas"]),
        "calldata_floor_per_session_50_drivers": round(fifty["floor"]),
        "paid_gas_per_session_distinct_drivers": round(distinct["gas"]),
        "calldata_floor_per_session_distinct_drivers": round(distinct["floor"]),
        "paid_gas_per_session_signed": round(signed["gas"]),
        "calldata_floor_per_session_signed": round(signed["floor"]),
        "ratio_vs_event_anchor_50_drivers": round(naive["event"] / fifty["gas"], 2),
        "ratio_vs_event_anchor_distinct_drivers": round(naive["event"] / distinct["gas"], 2),
        "ratio_vs_event_anchor_signed": round(naive["event"] / signed["gas"], 2),
        "ratio_vs_single_session_50_drivers": round(naive["single"] / fifty["gas"], 2),
        "batch": wall,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=10_000,
                        help="sessions in the timed batch (cut, settled, receipts written)")
    parser.add_argument("--quick", action="store_true",
                        help="small chunks, few drivers and stations (a smoke test)")
    parser.add_argument("--json", action="store_true", help="one JSON object (the default)")
    args = parser.parse_args(argv)
    print(json.dumps(run(args.batch, args.quick)))


if __name__ == "__main__":
    main()
