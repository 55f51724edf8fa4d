"""Receipts a driver can check against the chain alone, and their verifier.

A receipt holds the session record, its meter samples, the Merkle leaf and
proof, the batch root and where it was anchored (chain id, contract, tx hash,
block). ``verify_receipt`` needs only the receipt and an RPC URL: it recomputes
the samples hash, the record hash, the leaf and the proof, then asks the chain
whether the contract anchored that root in that transaction.

What a receipt proves: without signed meter data (OCMF / Eichrecht), that the
record was not changed after it was anchored; it does NOT prove that the energy
figure came from a calibrated meter. With signed meter data, the signatures are
checked too (when a verifier for that format is available) and then the
energy readings themselves are proven.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from csms.metering import ocmf
from settlement.merkle import MerkleTree, verify_proof
from settlement.payouts import anchor_key
from settlement.records import leaf_of, record_hash, samples_hash

__all__ = [
    "Check",
    "ReceiptNotReady",
    "Verdict",
    "build_receipt",
    "load_batch_receipts",
    "load_receipt",
    "verify_receipt",
    "what_it_proves",
]

RECEIPT_VERSION = 1

# Enough of the contract's ABI to verify: no compiler needed on the driver's side.
VERIFY_ABI: list[dict[str, Any]] = [
    {"type": "function", "name": "anchored_block", "stateMutability": "view",
     "inputs": [{"name": "arg0", "type": "bytes32"}],
     "outputs": [{"name": "", "type": "uint256"}]},
    {"type": "event", "name": "Anchored", "anonymous": False, "inputs": [
        {"name": "root", "type": "bytes32", "indexed": True},
        {"name": "batch_id", "type": "uint256", "indexed": True},
        {"name": "count", "type": "uint256", "indexed": False}]},
]


def what_it_proves(samples: list[dict[str, Any]]) -> str:
    signed = any(s.get("signed") for s in samples)
    if signed:
        return ("The record is unchanged since it was anchored, and it carries signed meter"
                " readings (OCMF): when their signatures verify with the meter's public key and"
                " they match the billed readings, the energy figure is the calibrated meter's.")
    return ("The record is unchanged since it was anchored. There is no signed meter data: the"
            " energy figure is the operator's, not proven by a calibrated meter.")


def _receipt(batch: dict[str, Any], item: dict[str, Any], proof: list[bytes],
             rpc_url: str | None) -> dict[str, Any]:
    samples = json.loads(item["samples"])
    return {
        "voltledger_receipt": RECEIPT_VERSION,
        "what_it_proves": what_it_proves(samples),
        "record": json.loads(item["record"]),
        "samples": samples,
        "leaf": item["leaf"],
        "proof": ["0x" + p.hex() for p in proof],
        "root": batch["root"],
        "payout_head": batch.get("payout_head"),
        "batch_id": int(batch.get("chain_batch_id") or batch["id"]),  # as anchored
        "chain": {
            "chain_id": batch["chain_id"], "contract": batch["contract"],
            "tx_hash": batch["tx_hash"], "block_number": batch["block_number"],
            "rpc_hint": rpc_url,
        },
    }


def build_receipt(
    batch: dict[str, Any], items: list[dict[str, Any]], session_id: int, rpc_url: str | None,
) -> dict[str, Any]:
    """A receipt from a finalized batch and its items (ordered by position)."""
    tree = MerkleTree([bytes.fromhex(i["leaf"][2:]) for i in items])
    [index] = [n for n, i in enumerate(items) if i["session_id"] == session_id]
    return _receipt(batch, items[index], tree.proof(index), rpc_url)


@dataclass
class Check:
    name: str
    ok: bool
    detail: str = ""


@dataclass
class Verdict:
    checks: list[Check] = field(default_factory=list)
    proves: str = ""

    @property
    def valid(self) -> bool:
        return bool(self.checks) and all(c.ok for c in self.checks)

    def add(self, name: str, ok: bool, detail: str = "") -> bool:
        self.checks.append(Check(name, ok, detail))
        return ok


def verify_receipt(receipt: dict[str, Any], w3: Any | None = None) -> Verdict:
    """Recompute everything in the receipt; with ``w3`` (a web3 client) check the chain too."""
    v = Verdict()
    try:
        record, samples = receipt["record"], receipt["samples"]
        leaf = bytes.fromhex(receipt["leaf"][2:])
        proof = [bytes.fromhex(p[2:]) for p in receipt["proof"]]
        root = bytes.fromhex(receipt["root"][2:])
        chain = receipt["chain"]
    except (KeyError, TypeError, ValueError) as exc:
        v.add("receipt format", False, f"not a voltledger receipt: {exc}")
        return v
    v.proves = what_it_proves(samples)  # the verifier's own words, not the receipt's
    v.add("samples hash", "0x" + samples_hash(samples).hex() == record.get("samples_hash"),
          "meter samples match the record")
    try:
        computed_leaf = leaf_of(record)
        record_hash(record)
    except (ValueError, KeyError, TypeError) as exc:
        v.add("record", False, str(exc))
        return v
    v.add("leaf", computed_leaf == leaf, "record -> leaf")
    v.add("merkle proof", verify_proof(computed_leaf, proof, root), "leaf -> root")
    _verify_signed(v, record, samples)
    if w3 is None:
        v.add("on-chain anchor", False, "no RPC endpoint given: the chain was not checked")
        return v
    try:
        chain_id = int(w3.eth.chain_id)
        v.add("chain id", chain_id == int(chain["chain_id"]),
              f"node is chain {chain_id}, receipt says {chain['chain_id']}")
        contract = w3.eth.contract(address=w3.to_checksum_address(chain["contract"]),
                                   abi=VERIFY_ABI)
        head = receipt.get("payout_head")
        key = anchor_key(root, bytes.fromhex(head[2:]) if head else None)
        block = int(contract.functions.anchored_block(key).call())
        v.add("root anchored", block != 0 and block == int(chain["block_number"]),
              f"anchored in block {block}" if block else "the contract never anchored this root")
        tx_receipt = w3.eth.get_transaction_receipt(chain["tx_hash"])
        events = contract.events.Anchored().process_receipt(tx_receipt)
        logged = any(e["args"]["root"] == key and e["args"]["batch_id"] == receipt["batch_id"]
                     and e["address"].lower() == chain["contract"].lower() for e in events)
        v.add("anchoring event", logged, f"Anchored event in {chain['tx_hash']}")
    except Exception as exc:  # a node that is down or a receipt pointing nowhere
        v.add("on-chain anchor", False, f"chain check failed: {exc}")
    return v


def _decimal(value: Any) -> Decimal | None:
    try:
        return None if value in (None, "None") else Decimal(str(value))
    except InvalidOperation:
        return None


def _verify_signed(v: Verdict, record: dict[str, Any], samples: list[dict[str, Any]]) -> None:
    """Check the signed meter data (OCMF) of a receipt against the committed meter key."""
    signed = [s["signed"] for s in samples if s.get("signed")]
    if not signed:
        return
    key = record.get("meter_public_key")
    readings: list[ocmf.SignedReading] = []
    all_ok = True
    for number, data in enumerate(signed, start=1):
        checked = ocmf.check_container(data, key)
        ok = checked.status == ocmf.VERIFIED
        all_ok &= ok
        if ok:
            readings.extend(checked.readings)
        v.add(f"meter signature {number}", ok, checked.detail)
    start, stop = _decimal(record.get("meter_start_wh")), _decimal(record.get("meter_stop_wh"))
    rec = ocmf.reconcile(readings, start, stop)
    # The record must already hold what reconciling gives: where the meter's signed reading
    # wins (a unit factor, a reading the station did not send), the record carries it.
    changed = rec.start_wh != start or rec.stop_wh != stop
    problems = rec.mismatches + (["the billed readings are not the ones the signed data"
                                  " gives"] if changed else [])
    detail = "; ".join(problems) if problems else (
        "the billed start and stop readings are the meter's signed ones" if not rec.missing
        else f"no signed {' and '.join(rec.missing)} reading to compare")
    if not problems and "signed_register_offset" in rec.flags:
        detail = "the energy between the billed readings is the energy the meter signed"
    matched = v.add("signed readings = billed readings", not problems, detail)
    if all_ok and matched and not rec.missing:
        short = (key or "")[-16:]
        v.proves = ("The record is unchanged since it was anchored, and the energy figure is the"
                    " one the calibrated meter signed (OCMF signatures verified with the meter"
                    f" key ...{short}; compare it with the key on the charger's label).")


class ReceiptNotReady(Exception):
    pass


async def load_receipt(repo: Any, session_id: int, rpc_url: str | None) -> dict[str, Any]:
    """The receipt of a session from the database (its batch must be finalized)."""

    async def work(tx: Any) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
        item = await tx.fetchone(
            "SELECT batch_id FROM batch_items WHERE session_id = ?", session_id)
        if item is None:
            return None, []
        batch = await tx.fetchone("SELECT * FROM batches WHERE id = ?", item["batch_id"])
        items = await tx.fetchall(
            "SELECT session_id, record, samples, leaf FROM batch_items WHERE batch_id = ?"
            " ORDER BY position", item["batch_id"])
        return batch, items

    batch, items = await repo.read(work)
    if batch is None:
        raise ReceiptNotReady(f"session {session_id} is not in a settlement batch yet")
    if batch["state"] != "finalized":
        raise ReceiptNotReady(f"session {session_id}'s batch {batch['id']} is {batch['state']},"
                              " not finalized yet")
    return build_receipt(batch, items, session_id, rpc_url)


async def load_batch_receipts(repo: Any, batch_id: int, rpc_url: str | None) -> list[
        dict[str, Any]]:
    """Every receipt of one finalized batch, building its Merkle tree once."""

    async def work(tx: Any) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
        batch = await tx.fetchone("SELECT * FROM batches WHERE id = ?", batch_id)
        items = await tx.fetchall(
            "SELECT session_id, record, samples, leaf FROM batch_items WHERE batch_id = ?"
            " ORDER BY position", batch_id)
        return batch, items

    batch, items = await repo.read(work)
    if batch is None or batch["state"] != "finalized":
        raise ReceiptNotReady(f"batch {batch_id} is not finalized")
    tree = MerkleTree([bytes.fromhex(i["leaf"][2:]) for i in items])
    return [_receipt(batch, item, tree.proof(n), rpc_url) for n, item in enumerate(items)]
