"""The settlement worker: price completed sessions, batch them, anchor each batch's root.

Completed sessions whose energy can be billed wait in ``settlement_queue``
(written by the charging service in the same transaction that completed
them). The worker prices them with the tariff valid at their start, builds
batches by size or age, and drives each batch through the state table of
:mod:`settlement.states`. The raw signed transaction, its hash and nonce are
stored *before* broadcasting, so after a crash the same transaction is sent
again and never re-signed with a new nonce; a session is in at most one batch
(``batch_items.session_id`` is unique), so it is settled exactly once.

With a payee, each batch is also paid from the drivers' escrows, netted: one line
per driver (see :mod:`settlement.payouts`), committed when the batch is anchored and
sent in chunks once the anchor is final, each chunk with its own stored raw
transaction (pending -> signed -> broadcast -> done). Drivers without an escrow that
covers their line at batching time are left out (billed off-chain); a line the
escrow no longer covers at payment time is marked unpaid on chain.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import secrets
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from csms.domain.tariff import Tariff, price_minor
from csms.service.cluster import acquire_lease, lease_holder, release_lease
from csms.service.ports import Repository, Tx
from settlement.chain import Chain
from settlement.merkle import MerkleTree
from settlement.payouts import Line, anchor_key, chain_hashes, chunked, net_lines
from settlement.records import leaf_of, samples_hash, tag_hash
from settlement.states import BatchState, check_transition

__all__ = [
    "LeaseHeld", "SettlementWorker", "WorkerSummary", "chain_batch_id", "find_tariff",
    "session_record",
]

log = logging.getLogger("settlement.worker")


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass
class WorkerSummary:
    batches_created: int = 0
    sessions_batched: int = 0
    finalized: int = 0
    gas_used: int = 0
    pending_batches: int = 0
    errors: list[str] = field(default_factory=list)


async def find_tariff(tx: Tx, station_id: str, at: datetime) -> Tariff | None:
    row = await tx.fetchone(
        "SELECT * FROM tariffs WHERE station_id IN (?, '*') AND valid_from <= ?"
        " ORDER BY CASE WHEN station_id = '*' THEN 1 ELSE 0 END, version DESC LIMIT 1",
        station_id, at.astimezone(UTC).isoformat(timespec="microseconds"),
    )
    if row is None:
        return None
    return Tariff(row["station_id"], Decimal(row["per_kwh"]), row["currency"], row["decimals"],
                  Decimal(row["per_minute"]), Decimal(row["session_fee"]), row["version"],
                  datetime.fromisoformat(row["valid_from"]), row["id"])


def _sample_json(s: Any) -> dict[str, Any]:
    return {"timestamp": s.timestamp.astimezone(UTC).isoformat(), "measurand": s.measurand,
            "phase": s.phase, "context": s.context, "location": s.location, "unit": s.unit,
            "multiplier": s.multiplier, "value": s.value, "format": s.format,
            "signed": s.signed}


async def session_record(tx: Tx, session_id: int, payee: str | None) -> tuple[
        dict[str, Any], list[dict[str, Any]]]:
    """Price a completed session and return its canonical record and samples."""
    session = await tx.get_session(session_id)
    if session is None or session.stopped_at is None:
        raise ValueError(f"session {session_id} is not completed")
    tariff = await find_tariff(tx, session.station_id, session.started_at)
    energy = session.energy_wh or 0
    duration = (session.stopped_at - session.started_at).total_seconds()
    price = price_minor(tariff, energy, duration) if tariff else 0
    await tx.execute(
        "UPDATE sessions SET price_minor = ?, currency = ?, tariff_id = ?, tariff_version = ?,"
        " settlement_state = 'batched' WHERE id = ?",
        price, tariff.currency if tariff else None, tariff.id if tariff else None,
        tariff.version if tariff else None, session_id,
    )
    samples = [_sample_json(s) for s in await tx.session_samples(session_id)]
    record = {
        "session_id": session_id, "station_id": session.station_id,
        "connector_id": session.connector_id, "evse_id": session.evse_id,
        "id_tag_hash": "0x" + tag_hash(session.id_tag).hex(),
        "ocpp_version": session.ocpp_version, "transaction_id": session.transaction_id,
        "started_at": session.started_at.astimezone(UTC).isoformat(),
        "stopped_at": session.stopped_at.astimezone(UTC).isoformat(),
        "meter_start_wh": str(session.meter_start_wh), "meter_stop_wh": str(session.meter_stop_wh),
        "energy_wh": energy, "price_minor": price,
        "currency": tariff.currency if tariff else None,
        "decimals": tariff.decimals if tariff else None,
        "tariff_id": tariff.id if tariff else None,
        "tariff_version": tariff.version if tariff else None,
        "stop_reason": session.stop_reason, "samples_hash": "0x" + samples_hash(samples).hex(),
        "payee": payee,
    }
    if any(s["signed"] for s in samples):
        keys = [r["public_key"] for r in await tx.signed_readings(session_id) if r["public_key"]]
        if not keys:
            pinned, _source = await tx.get_meter_key(session.station_id)
            keys = [pinned] if pinned else []
        record["meter_public_key"] = keys[0] if keys else None
    return record, samples


def _head(batch: dict[str, Any]) -> bytes:
    head = batch.get("payout_head")
    return bytes.fromhex(head[2:]) if head else bytes(32)


def chain_batch_id(batch: dict[str, Any]) -> int:
    """The batch's id on chain (the local id for batches made before ledger ids)."""
    value = batch.get("chain_batch_id")
    return int(value) if value else int(batch["id"])


async def _ledger_id(tx: Tx) -> int:
    """This database's random ledger id, made once (every node of a cluster agrees)."""
    row = await tx.fetchone("SELECT value FROM ledger_info WHERE name = 'ledger_id'")
    if row is None:
        await tx.execute("INSERT INTO ledger_info (name, value) VALUES ('ledger_id', ?)"
                         " ON CONFLICT DO NOTHING", str(secrets.randbits(63) + 1))
        row = await tx.fetchone("SELECT value FROM ledger_info WHERE name = 'ledger_id'")
        assert row is not None
    return int(row["value"])


def _anchored(batch: dict[str, Any]) -> bytes:
    """What the contract anchors for this batch (see ``settlement.payouts.anchor_key``)."""
    return anchor_key(bytes.fromhex(batch["root"][2:]), _head(batch))


LEASE = "settlement"
LEASE_TTL = timedelta(seconds=30)


class LeaseHeld(Exception):
    """Another worker settles this database now."""

    def __init__(self, holder: str) -> None:
        super().__init__(f"the settlement worker {holder} is settling this database;"
                         " it settles the pending sessions")
        self.holder = holder


class SettlementWorker:
    def __init__(
        self, repo: Repository, chain: Chain, *, batch_size: int = 1000,
        max_wait: float = 60.0, confirmations: int = 1, stuck_after: float = 30.0,
        payee: str | None = None, publish_events: bool = False,
        hooks: dict[str, Callable[[int], None]] | None = None, holder: str | None = None,
        lease_ttl: timedelta = LEASE_TTL,
    ) -> None:
        self.repo = repo
        self.chain = chain
        self.batch_size = batch_size
        self.max_wait = max_wait
        self.confirmations = max(1, confirmations)
        self.stuck_after = stuck_after
        # who is paid for the sessions (in every leaf): the operator's account by default
        self.payee = payee or chain.operator.address
        if not re.fullmatch(r"0x[0-9a-fA-F]{40}", self.payee):
            raise ValueError(f"payee {self.payee!r} is not an address (0x + 40 hex digits)")
        self.publish_events = publish_events
        # who holds the settlement lease while this worker runs (a node id)
        self.holder = holder or f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        self.lease_ttl = lease_ttl
        # crash points for tests: after_sign, after_broadcast, after_pay_sign, after_pay_broadcast
        self.hooks = hooks or {}

    # -- batching ----------------------------------------------------------------------
    async def build_batches(self, force: bool = False) -> tuple[int, int]:
        """Cut batches from the queue: full ones, or any when ``force`` or the oldest is old."""
        created = sessions = 0
        covered = await self._escrows()
        while True:
            async def cut(tx: Tx) -> int:
                rows = await tx.fetchall(
                    "SELECT session_id, enqueued_at FROM settlement_queue"
                    " ORDER BY session_id LIMIT ?", self.batch_size)
                if not rows:
                    return 0
                oldest = min(datetime.fromisoformat(r["enqueued_at"]) for r in rows)
                age = (_now() - oldest).total_seconds()
                if len(rows) < self.batch_size and not force and age < self.max_wait:
                    return 0
                records = []
                samples_of: dict[int, list[dict[str, Any]]] = {}
                for r in rows:
                    record, samples = await session_record(tx, r["session_id"], self.payee)
                    records.append(record)
                    samples_of[r["session_id"]] = samples
                leaves = [leaf_of(rec) for rec in records]
                tree = MerkleTree(leaves)
                now = _now().isoformat()
                batch_id = await tx.insert_id(
                    "INSERT INTO batches (state, root, count, chain_id, contract, created_at,"
                    " updated_at) VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id",
                    BatchState.PENDING.value, "0x" + tree.root.hex(), len(records),
                    self.chain.chain_id, self.chain.contract_address, now, now)
                head = await self._commit_payouts(tx, batch_id, records, covered)
                if head is not None:
                    await tx.execute("UPDATE batches SET payout_head = ? WHERE id = ?", head,
                                     batch_id)
                await tx.execute("UPDATE batches SET chain_batch_id = ? WHERE id = ?",
                                 str(await _ledger_id(tx) * 2**64 + batch_id), batch_id)
                for position, (rec, leaf) in enumerate(zip(records, leaves, strict=True)):
                    await tx.execute(
                        "INSERT INTO batch_items (batch_id, position, session_id, record,"
                        " samples, leaf) VALUES (?, ?, ?, ?, ?, ?)", batch_id, position,
                        rec["session_id"], json.dumps(rec, sort_keys=True),
                        json.dumps(samples_of[rec["session_id"]]), "0x" + leaf.hex())
                    await tx.execute("DELETE FROM settlement_queue WHERE session_id = ?",
                                     rec["session_id"])
                await self._event(tx, "pending", batch_id, {"count": len(records)})
                return len(records)

            n = await self.repo.unit(cut)
            if n == 0:
                return created, sessions
            created += 1
            sessions += n

    async def _escrows(self) -> dict[bytes, list[int]]:
        """Balance and price cap of the escrow of every driver waiting in the queue."""

        async def work(tx: Tx) -> list[str | None]:
            rows = await tx.fetchall(
                "SELECT DISTINCT s.id_tag FROM settlement_queue q JOIN sessions s"
                " ON s.id = q.session_id")
            return [r["id_tag"] for r in rows]

        found: dict[bytes, list[int]] = {}
        tags = await self.repo.read(work)
        if tags:
            await self._chain(self.chain.check_contract)  # a reset chain: say so, not more
        for tag in tags:
            th = tag_hash(tag)
            balance, cap = await self._chain(self.chain.escrow, th)
            if balance > 0:
                found[th] = [balance, cap]
        return found

    async def _commit_payouts(self, tx: Tx, batch_id: int, records: list[dict[str, Any]],
                              covered: dict[bytes, list[int]]) -> str | None:
        """Store the batch's payout chunks; the head of their hash chain, or None."""
        lines: list[Line] = []
        for line in net_lines(records):
            escrow = covered.get(line.tag_hash)
            if escrow is None or escrow[0] < line.amount \
                    or line.amount * 1000 > line.energy_wh * escrow[1]:
                continue  # no escrow that covers it: billed off-chain, not on this chain
            escrow[0] -= line.amount
            lines.append(line)
        if not lines:
            return None
        chunks = chunked(lines)
        hashes = chain_hashes(chunks)
        for n, chunk in enumerate(chunks):
            following = hashes[n + 1] if n + 1 < len(hashes) else bytes(32)
            await tx.execute(
                "INSERT INTO payouts (batch_id, chunk_no, lines, next_hash, state)"
                " VALUES (?, ?, ?, ?, 'pending')", batch_id, n,
                json.dumps([line.as_json() for line in chunk]), "0x" + following.hex())
        return "0x" + hashes[0].hex()

    async def _event(self, tx: Tx, state: str, batch_id: int, extra: dict[str, Any]) -> None:
        if self.publish_events:
            await tx.add_outbox(f"voltledger/settlement/{state}",
                                {"batch_id": batch_id, "state": state, **extra}, _now())

    async def _move(self, batch: dict[str, Any], new: BatchState, **fields: Any) -> None:
        check_transition(BatchState(batch["state"]), new)
        sets = ", ".join(f"{k} = ?" for k in fields)
        sql = "UPDATE batches SET state = ?, updated_at = ?" + (f", {sets}" if sets else "")

        async def work(tx: Tx) -> None:
            changed = await tx.execute(sql + " WHERE id = ? AND state = ?", new.value,
                                       _now().isoformat(), *fields.values(), batch["id"],
                                       batch["state"])
            if changed != 1:
                raise RuntimeError(f"batch {batch['id']} changed under us")
            if new is BatchState.FINALIZED:
                await tx.execute(
                    "UPDATE sessions SET settlement_state = 'anchored' WHERE id IN"
                    " (SELECT session_id FROM batch_items WHERE batch_id = ?)", batch["id"])
            await self._event(tx, new.value, batch["id"],
                              {"tx_hash": fields.get("tx_hash", batch.get("tx_hash"))})

        await self.repo.unit(work)
        log.info("= batch %s: %s -> %s", batch["id"], batch["state"], new.value)
        batch.update(fields, state=new.value)

    # -- the state machine -------------------------------------------------------------
    async def _chain(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.to_thread(fn, *args)

    async def _open_batches(self) -> list[dict[str, Any]]:
        async def work(tx: Tx) -> list[dict[str, Any]]:
            return await tx.fetchall(
                "SELECT * FROM batches WHERE state != ? ORDER BY id", BatchState.FINALIZED.value)

        return await self.repo.read(work)

    async def _next_nonce(self) -> int:
        async def work(tx: Tx) -> int | None:
            row = await tx.fetchone(
                "SELECT max(nonce) AS n FROM batches WHERE state IN (?, ?, ?) AND chain_id = ?",
                BatchState.SIGNED.value, BatchState.BROADCAST.value, BatchState.INCLUDED.value,
                self.chain.chain_id)
            return None if row is None or row["n"] is None else int(row["n"])

        async def payouts(tx: Tx) -> int | None:
            row = await tx.fetchone(
                "SELECT max(p.nonce) AS n FROM payouts p JOIN batches b ON b.id = p.batch_id"
                " WHERE p.state IN ('signed', 'broadcast') AND b.chain_id = ?",
                self.chain.chain_id)
            return None if row is None or row["n"] is None else int(row["n"])

        mine = [n for n in (await self.repo.read(work), await self.repo.read(payouts))
                if n is not None]
        ours = max(mine) if mine else None
        node = int(await self._chain(self.chain.next_nonce))
        return node if ours is None else max(node, ours + 1)

    async def step(self, batch: dict[str, Any]) -> None:
        state = BatchState(batch["state"])
        chain = self.chain
        if state is BatchState.PENDING:
            max_fee, tip = await self._chain(chain.fees)
            nonce = await self._next_nonce()
            raw, tx_hash = await self._chain(chain.sign_anchor, _anchored(batch),
                                             batch["count"], chain_batch_id(batch), nonce,
                                             max_fee, tip)
            await self._move(batch, BatchState.SIGNED, raw_tx=raw, tx_hash=tx_hash, nonce=nonce,
                             max_fee=str(max_fee), priority_fee=str(tip))
            self._hook("after_sign", batch["id"])
        elif state is BatchState.SIGNED:
            await self._chain(chain.broadcast, batch["raw_tx"])
            await self._move(batch, BatchState.BROADCAST, broadcast_at=_now().isoformat())
            self._hook("after_broadcast", batch["id"])
        elif state is BatchState.BROADCAST:
            hashes = [batch["tx_hash"], *json.loads(batch["replaced"] or "[]")]
            for h in hashes:
                receipt = await self._chain(chain.receipt, h)
                if receipt is not None:
                    if receipt.status != 1:
                        raise RuntimeError(f"anchor transaction {h} of batch {batch['id']}"
                                           " reverted")
                    await self._move(batch, BatchState.INCLUDED, tx_hash=h,
                                     block_number=receipt.block_number,
                                     block_hash=receipt.block_hash, gas_used=receipt.gas_used)
                    return
            # Not mined (yet): maybe dropped from the node's pool or reorganised away.
            # Sending the same raw transaction again is harmless when the node knows it.
            await self._chain(chain.broadcast, batch["raw_tx"])
            age = (_now() - datetime.fromisoformat(batch["broadcast_at"])).total_seconds()
            if age >= self.stuck_after:
                await self._replace(batch)
        elif state is BatchState.INCLUDED:
            current = await self._chain(chain.block_hash, batch["block_number"])
            if current != batch["block_hash"]:
                log.warning("! batch %s: block %s was reorganised away", batch["id"],
                            batch["block_number"])
                await self._move(batch, BatchState.BROADCAST, block_number=None,
                                 block_hash=None, broadcast_at=_now().isoformat())
                return
            head = await self._chain(chain.block_number)
            if head - batch["block_number"] + 1 >= self.confirmations:
                await self._move(batch, BatchState.FINALIZED)

    async def _replace(self, batch: dict[str, Any]) -> None:
        """Stuck: the same nonce re-signed with fees bumped by 25% (nodes want >= 10%)."""
        max_fee = int(batch["max_fee"]) * 5 // 4 + 1
        tip = int(batch["priority_fee"]) * 5 // 4 + 1
        base_fee, _ = await self._chain(self.chain.fees)
        max_fee = max(max_fee, base_fee + tip)
        raw, tx_hash = await self._chain(
            self.chain.sign_anchor, _anchored(batch), batch["count"],
            chain_batch_id(batch), batch["nonce"], max_fee, tip)
        replaced = [*json.loads(batch["replaced"] or "[]"), batch["tx_hash"]]
        log.warning("! batch %s stuck: replacing %s with %s (fees +25%%)", batch["id"],
                    batch["tx_hash"], tx_hash)
        await self._move(batch, BatchState.SIGNED, raw_tx=raw, tx_hash=tx_hash,
                         max_fee=str(max_fee), priority_fee=str(tip),
                         replaced=json.dumps(replaced))

    def _hook(self, name: str, batch_id: int) -> None:
        hook = self.hooks.get(name)
        if hook is not None:
            hook(batch_id)

    async def advance(self) -> int:
        """One step for every open batch; returns how many are still open."""
        await self._chain(self.chain.check_contract)
        batches = await self._open_batches()
        for batch in batches:
            await self.step(batch)
        open_payouts = await self._pay_step()
        return sum(1 for b in batches if b["state"] != BatchState.FINALIZED.value) \
            + open_payouts

    # -- netted payment ----------------------------------------------------------------
    async def _pay_step(self) -> int:
        """One step for the next chunk of every finalized batch with payouts left."""

        async def work(tx: Tx) -> list[dict[str, Any]]:
            return await tx.fetchall(
                "SELECT p.*, b.root, b.payout_head, b.state AS batch_state FROM payouts p"
                " JOIN batches b ON b.id = p.batch_id WHERE p.state NOT IN ('done', 'failed')"
                " ORDER BY p.batch_id, p.chunk_no")

        rows = await self.repo.read(work)
        nexts: dict[int, dict[str, Any]] = {}
        for r in rows:
            nexts.setdefault(r["batch_id"], r)
        for chunk in nexts.values():
            if chunk["batch_state"] == BatchState.FINALIZED.value:
                await self._pay(chunk)
        return len(rows)

    async def _set_payout(self, chunk: dict[str, Any], state: str,
                          outcome: dict[bytes, str] | None = None,
                          **fields: Any) -> None:
        sets = "".join(f", {k} = ?" for k in fields)

        async def work(tx: Tx) -> None:
            changed = await tx.execute(
                f"UPDATE payouts SET state = ?{sets} WHERE batch_id = ? AND chunk_no = ?"
                " AND state = ?", state, *fields.values(), chunk["batch_id"],
                chunk["chunk_no"], chunk["state"])
            if changed != 1:
                raise RuntimeError(f"payout {chunk['batch_id']}/{chunk['chunk_no']} changed")
            if outcome is not None:
                await self._mark_paid(tx, chunk["batch_id"], outcome)

        await self.repo.unit(work)
        log.info("= batch %s payout chunk %s: %s -> %s", chunk["batch_id"], chunk["chunk_no"],
                 chunk["state"], state)
        chunk.update(fields, state=state)

    async def _mark_paid(self, tx: Tx, batch_id: int, outcome: dict[bytes, str]) -> None:
        """Sessions of the chunk's drivers: paid, or unpaid (claimable one by one)."""
        by_hex = {"0x" + th.hex(): state for th, state in outcome.items()}
        items = await tx.fetchall(
            "SELECT session_id, record FROM batch_items WHERE batch_id = ?", batch_id)
        for item in items:
            state = by_hex.get(json.loads(item["record"])["id_tag_hash"])
            if state is not None:
                await tx.execute("UPDATE sessions SET settlement_state = ? WHERE id = ?",
                                 state, item["session_id"])

    async def _pay(self, chunk: dict[str, Any]) -> None:
        chain = self.chain
        if chunk["state"] == "pending":
            lines = [Line.from_json(x).as_tuple() for x in json.loads(chunk["lines"])]
            max_fee, tip = await self._chain(chain.fees)
            nonce = await self._next_nonce()
            args = (bytes.fromhex(chunk["root"][2:]), _head(chunk), lines,
                    bytes.fromhex(chunk["next_hash"][2:]))
            raw, tx_hash = await self._chain(chain.sign_call, "pay", args, nonce, max_fee, tip,
                                             80_000 + 40_000 * len(lines))
            await self._set_payout(chunk, "signed", raw_tx=raw, tx_hash=tx_hash, nonce=nonce)
            self._hook("after_pay_sign", chunk["batch_id"])
        elif chunk["state"] == "signed":
            await self._chain(chain.broadcast, chunk["raw_tx"])
            await self._set_payout(chunk, "broadcast")
            self._hook("after_pay_broadcast", chunk["batch_id"])
        elif chunk["state"] == "broadcast":
            receipt = await self._chain(chain.receipt, chunk["tx_hash"])
            if receipt is None:
                await self._chain(chain.broadcast, chunk["raw_tx"])  # dropped: send it again
                return
            if receipt.status != 1:
                log.error("! batch %s payout chunk %s reverted (%s)", chunk["batch_id"],
                          chunk["chunk_no"], chunk["tx_hash"])
                await self._set_payout(chunk, "failed", gas_used=receipt.gas_used,
                                       detail="reverted")
                return
            unpaid = set(await self._chain(chain.unpaid_lines, chunk["tx_hash"]))
            outcome = {line.tag_hash: ("unpaid" if line.tag_hash in unpaid else "paid")
                       for line in map(Line.from_json, json.loads(chunk["lines"]))}
            await self._set_payout(chunk, "done", outcome, gas_used=receipt.gas_used,
                                   paid=len(outcome) - len(unpaid), unpaid=len(unpaid))

    # -- one worker per database: the settlement lease ---------------------------------
    async def _lease(self) -> bool:
        async def work(tx: Tx) -> bool:
            return await acquire_lease(tx, LEASE, self.holder, _now(), self.lease_ttl)

        return bool(await self.repo.unit(work))

    async def _release(self) -> None:
        async def work(tx: Tx) -> None:
            await release_lease(tx, LEASE, self.holder)

        with contextlib.suppress(Exception):
            await self.repo.unit(work)

    async def _holder(self) -> str | None:
        async def work(tx: Tx) -> str | None:
            return await lease_holder(tx, LEASE, _now())

        return await self.repo.read(work)

    async def run_once(self, timeout: float = 120.0) -> WorkerSummary:
        """Settle everything pending now: batch it all, drive every batch to finalized.

        Raises :class:`LeaseHeld` while another worker (another node) settles.
        """
        if not await self._lease():
            raise LeaseHeld(await self._holder() or "another worker")
        try:
            return await self._run_once(timeout)
        finally:
            await self._release()

    async def _run_once(self, timeout: float) -> WorkerSummary:
        summary = WorkerSummary()
        summary.batches_created, summary.sessions_batched = await self.build_batches(force=True)
        renewed = asyncio.get_running_loop().time()
        async with asyncio.timeout(timeout):
            while await self.advance():
                await asyncio.sleep(0.05)  # polling the chain for receipts
                if asyncio.get_running_loop().time() - renewed > 5:
                    await self._lease()  # renewed while the chain is slow
                    renewed = asyncio.get_running_loop().time()

        async def totals(tx: Tx) -> tuple[int, int]:
            row = await tx.fetchone("SELECT count(*) AS n, coalesce(sum(gas_used), 0) AS g"
                                    " FROM batches WHERE state = ?", BatchState.FINALIZED.value)
            assert row is not None
            return int(row["n"]), int(row["g"])

        summary.finalized, summary.gas_used = await self.repo.read(totals)
        return summary

    async def run_forever(self, stop: asyncio.Event, interval: float = 1.0,
                          on_step: Callable[[BaseException | None], None] | None = None,
                          ) -> None:
        """Settle until ``stop``: only while holding the lease, so one worker per database.

        ``on_step`` hears of every step (None, or the error of a failed one); failed
        steps are retried with backoff (up to 30 s) until the database or chain is back.
        """
        leading = False
        failures = 0
        try:
            while not stop.is_set():
                try:
                    held = await self._lease()
                    if held != leading:
                        leading = held
                        log.info("= settlement worker %s: %s", self.holder,
                                 "holds the lease, settling" if held else "standing by")
                    if held:
                        await self.build_batches()
                        await self.advance()
                    failures = 0
                    if on_step is not None:
                        on_step(None)
                except Exception as exc:  # the chain may be down: sessions wait, settle later
                    failures += 1
                    log.exception("! settlement step failed; retrying")
                    if on_step is not None:
                        on_step(exc)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(),
                                           min(interval * 2 ** min(failures, 8), 30.0))
        finally:
            if leading:
                await self._release()
