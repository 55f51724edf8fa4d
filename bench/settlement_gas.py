"""Settlement cost: gas per session by batch size vs one transaction per session.

Anchoring: one anchor per batch vs one anchor transaction per session record.
Payment: every driver has an escrow; the batch is paid netted (one line per driver,
chunked) vs one ``claim`` with a Merkle proof per session. Gas is deterministic
(py-evm in-process gives the same gas as Anvil for the same contract), so the
ratios are exact; the wall time of building, anchoring, paying and writing the
receipts of a batch is measured too.

    python -m bench.settlement_gas --sizes 1 100 1000 10000 --drivers 50
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import tempfile
import time
from pathlib import Path
from typing import Any

from eth_hash.auto import keccak

from csms.storage.sqlite import SqliteRepository
from settlement.chain import open_chain
from settlement.receipts import load_batch_receipts
from settlement.worker import SettlementWorker

__all__ = ["main", "run"]

NAIVE_SAMPLE = 20


async def _fill(repo: SqliteRepository, n: int, drivers: int) -> None:
    from datetime import UTC, datetime, timedelta

    t0 = datetime(2026, 1, 1, tzinfo=UTC)

    async def work(tx: Any) -> None:
        await tx.execute(
            "INSERT INTO stations (id, created_at) VALUES ('BENCH', '2026-01-01T00:00:00Z')")
        await tx.execute(
            "INSERT INTO tariffs (station_id, version, per_kwh, currency, decimals, valid_from)"
            " VALUES ('*', 1, '0.39', 'EUR', 2, '2000-01-01T00:00:00+00:00')")
        for i in range(n):
            start = (t0 + timedelta(minutes=i)).isoformat()
            stop = (t0 + timedelta(minutes=i + 30)).isoformat()
            sid = await tx.insert_id(
                "INSERT INTO sessions (station_id, connector_id, evse_id, id_tag, ocpp_version,"
                " transaction_id, started_at, stopped_at, meter_start_wh, meter_stop_wh,"
                " energy_wh, status, stop_reason, created_at, updated_at) VALUES"
                " ('BENCH', 1, 1, ?, 'ocpp1.6', ?, ?, ?, ?, ?, ?, 'completed', 'Local', ?, ?)"
                " RETURNING id", f"TAG{i % drivers}", str(i), start, stop, str(i * 10_000),
                str(i * 10_000 + 7_000 + i % 997), 7_000 + i % 997, start, start)
            await tx.execute(
                "INSERT INTO settlement_queue (session_id, enqueued_at) VALUES (?, ?)", sid, stop)

    await repo.unit(work)


def _naive_claim_gas(chain: Any) -> float:
    """Gas of paying sessions one ``claim`` (with its Merkle proof) at a time."""
    from eth_abi.abi import encode

    from settlement.merkle import MerkleTree

    driver, owner = chain.w3.eth.accounts[1:3]
    tag = bytes(keccak(b"NAIVE-DRIVER"))
    c = chain.contract
    c.functions.deposit(tag, 10**18).transact({"from": driver, "value": 10**18})
    claims = [(bytes(keccak(f"r{i}".encode())), 7_000 + i, 273 + i) for i in range(1024)]
    leaves = [bytes(keccak(b"\x00" + encode(
        ["bytes32", "bytes32", "uint256", "uint256", "address"], [r, tag, e, a, owner])))
        for r, e, a in claims]
    tree = MerkleTree(leaves)  # 1,024 leaves: the proof depth of a batch of 1,000
    raw, _ = chain.sign_anchor(tree.root, len(leaves), 10**12, chain.next_nonce(), *chain.fees())
    chain.broadcast(raw)
    gas = []
    for i in range(NAIVE_SAMPLE):
        r, e, a = claims[i]
        tx = c.functions.claim((tree.root, r, tag, e, a, owner, tree.proof(i), bytes(32))).transact(
            {"from": owner})
        gas.append(int(chain.w3.eth.get_transaction_receipt(tx)["gasUsed"]))
    return sum(gas) / len(gas)


def _deposit_all(chain: Any, drivers: int) -> None:
    from settlement.records import tag_hash

    account = chain.w3.eth.accounts[1]
    for d in range(drivers):
        chain.contract.functions.deposit(tag_hash(f"TAG{d}"), 10**18).transact(
            {"from": account, "value": 10**15})


async def _payout_gas(repo: SqliteRepository) -> tuple[int, int]:
    async def work(tx: Any) -> tuple[int, int]:
        row = await tx.fetchone("SELECT coalesce(sum(gas_used), 0) AS g, count(*) AS n,"
                                " coalesce(sum(paid), 0) AS p FROM payouts WHERE state = 'done'")
        return int(row["g"]), int(row["p"])

    return await repo.read(work)


async def run(sizes: list[int], drivers: int = 50) -> dict[str, Any]:
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as folder:
        chain = await asyncio.to_thread(open_chain, "memory", Path(folder) / "data")
        naive_gas = []
        # One anchor transaction per session record, through the same anchor function with
        # batch ids of the same form as the worker's (a 63-bit ledger id x 2^64 + a counter):
        # calldata gas depends on the nonzero bytes.
        ledger = secrets.randbits(63) + 1
        for i in range(NAIVE_SAMPLE):
            raw, tx_hash = chain.sign_anchor(bytes(keccak(f"naive{i}".encode())), 1,
                                             ledger * 2**64 + i + 1, chain.next_nonce(),
                                             *chain.fees())
            chain.broadcast(raw)
            receipt = chain.receipt(tx_hash)
            assert receipt is not None
            naive_gas.append(receipt.gas_used)
        naive = sum(naive_gas) / len(naive_gas)
        naive_claim = await asyncio.to_thread(_naive_claim_gas, chain)
        for n in sizes:
            # a contract of its own for each size: fresh escrows, comparable gas
            await asyncio.to_thread(chain.deploy)
            await asyncio.to_thread(_deposit_all, chain, min(drivers, n))
            repo = SqliteRepository(Path(folder) / f"b{n}.sqlite3")
            await _fill(repo, n, drivers)
            worker = SettlementWorker(repo, chain, batch_size=n)
            started = time.perf_counter()
            summary = await worker.run_once(timeout=600)
            anchored = time.perf_counter()
            batch_id = 1
            receipts = await load_batch_receipts(repo, batch_id, None)
            out = Path(folder) / f"receipts-{n}.jsonl"
            with out.open("w") as f:
                for r in receipts:
                    f.write(json.dumps(r) + "\n")
            done = time.perf_counter()
            pay_gas, paid_lines = await _payout_gas(repo)
            await repo.close()
            per_session = summary.gas_used / n
            paid_per_session = (summary.gas_used + pay_gas) / n
            results.append({
                "batch_size": n, "drivers": min(drivers, n), "paid_lines": paid_lines,
                "gas_per_session": round(per_session, 2),
                "naive_gas_per_session": round(naive),
                "ratio": round(naive / per_session, 1),
                "paid_gas_per_session": round(paid_per_session, 1),
                "naive_claim_gas_per_session": round(naive_claim),
                "payment_ratio": round(naive_claim / paid_per_session, 1),
                "seconds_build_and_anchor": round(anchored - started, 3),
                "seconds_receipts": round(done - anchored, 3),
                "seconds_total": round(done - started, 3),
            })
    return {"benchmark": "settlement_gas", "results": results,
            "ratio": next((r["ratio"] for r in results if r["batch_size"] == 1000), None),
            "payment_ratio": next((r["payment_ratio"] for r in results
                                   if r["batch_size"] == 1000), None)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 100, 1000, 10000])
    parser.add_argument("--drivers", type=int, default=50,
                        help="distinct drivers (id tags) among the sessions, each with an escrow")
    args = parser.parse_args(argv)
    print(json.dumps(asyncio.run(run(args.sizes, args.drivers))))


if __name__ == "__main__":
    main()
