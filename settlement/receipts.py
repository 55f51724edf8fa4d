"""Receipts a driver checks against the chain alone, and their verifier.

A receipt holds the session's record and meter samples, its entry in the chunk that
settled it (record hash and packed fields, position), the chunk (ledger, first sequence
number, digest) and where it was settled (chain id, contract, transaction, block).
``verify_receipt`` needs only the receipt and an RPC URL. Offline it recomputes the
samples hash, the record hash and the entry, and checks that the record is consistent:
energy = stop - start, the duration, the price from the record's tariff (or exactly the
session's limit the record names, when below it), the driver's signature of an app session,
and every signed meter reading (the meter's signature, that the meter does not mark the
begin or end reading faulty, and that the readings belong to this session: begin before
end, inside its time window, in page order, one meter, the driver's card). On chain it
reads the settle transaction's own input: the entry is there at its position (an app
session's checked against the record's authorization, not another signature), the entries
give the digest the contract stored for those sequence numbers (so the session was settled
exactly once, by this chunk), and the transaction's events say whether the amount was taken
from the escrow (and why not: the receipt's unpaid reason must be the chain's), in base
units of the contract's own unit (a record naming another, written
by the operator before it was settled, is INVALID), and to the host that registered the
entry's station index (a record naming another host than the one credited is INVALID). A
card session billed at its limit must be within the driver's limit per session at the
settle block (an operator inventing a higher limit bills more than the driver agreed to).
A figure of the record written beyond 10^+-30 (csms.domain.tariff.MAX_EXPONENT) is not
read: no price, energy or reading needs it. Nor is a record with a field its hash does not
commit, or a receipt whose figures outside the record are written otherwise than the
central system writes them (100.9 was read as 100, "false" as paid).

What the chain answers is worth as much as its block and its node. A block can be
reorganised away until enough blocks are on top of it: the settle transaction must have
``confirmations`` (its block and the blocks on top of it; by default
:func:`default_confirmations` of the receipt's chain), else the verdict is UNVERIFIED. Every
state of the contract is read at the end of the settle transaction's block, pinned by its
hash: a transaction in no block, one reorganised away while it is read, or one in another
block than the receipt names is UNVERIFIED, never INVALID (a reorganisation is the chain's
doing, not the operator's). And the
node answering is the driver's choice: the node the receipt names (``chain.rpc_hint``, the
operator's, which the receipt page fills in) can answer anything, so a verdict read from it
(``rpc_url`` the hint) is UNVERIFIED ("chain node"); ``csms verify`` never reads it.

Which contract is the real one cannot be read from a receipt (anyone can deploy a
look-alike that answers whatever it likes): the code at the receipt's contract address
must be this project's Settlement contract (``settlement/contract.py``
``is_settlement_code``), created by the transaction the receipt names (``deploy_tx``) with
Settlement's own creation code (``is_settlement_creation``: a creation that wrote storage
of its own before returning the genuine code is not), and the driver says which one it is
with ``driver`` (its escrow must live in that contract under the record's driver index) or
``contract``; without either the verdict is UNVERIFIED, and so it is with ``driver`` for a
receipt that names no creation (``contract`` pins the address: the driver vouches for it).
A card session charged to the driver must carry the commitment of the record's card,
linked by the driver on chain: the verifier recomputes it from the driver, the record's
tag and the card's salt (the receipt's ``card.salt``, or the driver's own ``cards``);
without a salt the card's owner is not checked (UNVERIFIED). Verdicts: VALID, INVALID,
UNVERIFIED (the chain could not be reached, or the contract or the card's owner could not
be told). The driver's index and cards are read as the contract held them at the end of
the settle block (``eth_call`` at that block, or the contract's events up to it where the
node keeps no state of that block, read in windows a node that limits ``eth_getLogs``
serves, every one of them or no verdict: ``SettlementReader._logs``): a card unlinked
since, or linked only later, does not change the verdict.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import (
    ROUND_HALF_EVEN,
    Decimal,
    InvalidOperation,
    localcontext,
)
from typing import Any, TypeGuard

from csms.domain.tariff import DECIMALS, MAX_EXPONENT, Tariff, price_minor, within_exponents
from csms.metering import ocmf
from settlement.eip712 import ADDRESS, Authorization, recover
from settlement.records import (
    CARD,
    INTEGER_FIELDS,
    OPTIONAL_FIELDS,
    RECORD_FIELDS,
    SIGNED,
    card_commitment,
    chunk_digest,
    entry_of,
    record_hash,
    samples_hash,
    unpack_entry,
)

__all__ = [
    "FINAL_CONFIRMATIONS",
    "INVALID",
    "IN_PROCESS_CHAIN_ID",
    "LOCAL_CHAINS",
    "RECEIPT_VERSION",
    "UNVERIFIED",
    "VALID",
    "Check",
    "NotInBatch",
    "ReceiptError",
    "ReceiptNotReady",
    "Verdict",
    "build_receipt",
    "card_salt",
    "check_receipt",
    "default_confirmations",
    "duplicates",
    "hex32",
    "load_batch_receipts",
    "load_receipt",
    "verify_receipt",
]

RECEIPT_VERSION = 2
VALID, INVALID, UNVERIFIED = "VALID", "INVALID", "UNVERIFIED"
# Confirmations a settle transaction needs for VALID where the driver names no number:
# one (it is in a block) on the chains anyone runs locally for tests and demos, where blocks
# are mined on demand and nothing reorganises them (Anvil and Hardhat 31337, Ganache and
# geth --dev 1337, py-evm's eth-tester 131277322940537); on any other chain 64, two epochs
# of Ethereum's proof of stake, about when a block of Ethereum (and its test networks)
# becomes final. A chain this verifier does not know gets the same (the safe side: a driver
# who knows its finality passes csms verify --confirmations N).
# py-evm's eth-tester: the chain of `--chain memory`, in the process that settled on it and
# gone with it (no node anywhere holds it)
IN_PROCESS_CHAIN_ID = 131277322940537
LOCAL_CHAINS = frozenset({31337, 1337, IN_PROCESS_CHAIN_ID})
FINAL_CONFIRMATIONS = 64
# every figure the verifier computes is in csms.domain.tariff.DECIMALS (28 digits), whatever
# a library imported into the process set for the thread (vyper sets 78 on import); the
# receipt page computes with the same 28 digits
UNPAID_REASONS = {
    1: "the station is not registered on chain", 2: "no driver's escrow",
    3: "more energy than the station's power allows", 4: "above the prices the driver accepts",
    5: "above the driver's limit per session", 6: "the driver accepts no card sessions",
    7: "no valid authorization from the driver", 8: "the authorization was already used",
    9: "the authorization expired", 10: "above the driver's limit per day",
    11: "the escrow was too low", 12: "unknown entry kind",
}

# Enough of the contract's ABI to verify: no compiler needed on the driver's side.
VERIFY_ABI: list[dict[str, Any]] = [
    {"type": "function", "name": "settle", "stateMutability": "nonpayable", "inputs": [
        {"name": "ledger", "type": "uint256"}, {"name": "first_seq", "type": "uint256"},
        {"name": "entries", "type": "tuple[]", "components": [
            {"name": "record_hash", "type": "bytes32"}, {"name": "packed", "type": "uint256"}]},
        {"name": "auths", "type": "tuple[]", "components": [
            {"name": "packed", "type": "uint256"}, {"name": "r", "type": "bytes32"},
            {"name": "vs", "type": "bytes32"}]}], "outputs": []},
    {"type": "function", "name": "chunk_digest", "stateMutability": "view",
     "inputs": [{"name": "arg0", "type": "uint256"}, {"name": "arg1", "type": "uint256"}],
     "outputs": [{"name": "", "type": "bytes32"}]},
    {"type": "function", "name": "driver_index", "stateMutability": "view",
     "inputs": [{"name": "arg0", "type": "address"}],
     "outputs": [{"name": "", "type": "uint256"}]},
    {"type": "function", "name": "driver_state", "stateMutability": "view",
     "inputs": [{"name": "who", "type": "address"}],
     "outputs": [{"name": "", "type": "uint256"}] * 6},
    {"type": "function", "name": "unit", "stateMutability": "view", "inputs": [],
     "outputs": [{"name": "", "type": "uint256"}]},
    {"type": "function", "name": "token", "stateMutability": "view", "inputs": [],
     "outputs": [{"name": "", "type": "address"}]},
    {"type": "function", "name": "station", "stateMutability": "view",
     "inputs": [{"name": "index", "type": "uint256"}],
     "outputs": [{"name": "", "type": "address"}, {"name": "", "type": "uint256"}]},
    {"type": "function", "name": "cards", "stateMutability": "view",
     "inputs": [{"name": "arg0", "type": "uint256"}, {"name": "arg1", "type": "bytes32"}],
     "outputs": [{"name": "", "type": "bool"}]},
    {"type": "event", "name": "Settled", "anonymous": False, "inputs": [
        {"name": "ledger", "type": "uint256", "indexed": True},
        {"name": "first_seq", "type": "uint256", "indexed": True},
        {"name": "count", "type": "uint256", "indexed": False},
        {"name": "root", "type": "bytes32", "indexed": False},
        {"name": "paid", "type": "uint256", "indexed": False},
        {"name": "unpaid", "type": "uint256", "indexed": False}]},
    {"type": "event", "name": "Unpaid", "anonymous": False, "inputs": [
        {"name": "ledger", "type": "uint256", "indexed": True},
        {"name": "seq", "type": "uint256", "indexed": True},
        {"name": "reason", "type": "uint256", "indexed": False}]},
]


class ReceiptError(ValueError):
    """Not a receipt this verifier reads (one line for the driver)."""


class ReceiptNotReady(Exception):
    pass


class NotInBatch(ReceiptNotReady):
    """The session is in no settlement batch yet: still charging, held, or not settled."""


@dataclass
class Check:
    name: str
    ok: bool | None  # None: could not be checked
    detail: str = ""


@dataclass
class Verdict:
    checks: list[Check] = field(default_factory=list)
    proves: str = ""

    @property
    def status(self) -> str:
        if any(c.ok is False for c in self.checks):
            return INVALID
        if not self.checks or any(c.ok is None for c in self.checks):
            return UNVERIFIED
        return VALID

    @property
    def valid(self) -> bool:
        return self.status == VALID

    def add(self, name: str, ok: bool | None, detail: str = "") -> bool:
        self.checks.append(Check(name, ok, detail))
        return bool(ok)


# -- building receipts -----------------------------------------------------------------
def what_it_proves(samples: list[dict[str, Any]]) -> str:
    if any(s.get("signed") for s in samples):
        return ("The record is the one settled on chain, and it carries signed meter readings"
                " (OCMF or Alfen's format): when their signatures verify with the meter's key"
                " and they belong to this session, the energy figure is the calibrated"
                " meter's.")
    return ("The record is the one settled on chain. There is no signed meter data: the energy"
            " figure is the operator's, bounded on chain by the station's power and the"
            " driver's terms, not proven by a calibrated meter.")


def card_salt(record: dict[str, Any], card: dict[str, Any] | None) -> str | None:
    """The salt of the record's card: the operator's ``driver_cards`` row of the record's
    tag, when it is the row the record was billed with (the same commitment; a card linked
    again since has another). The driver's verifier recomputes the commitment from the
    driver, the tag and this salt: a commitment of another card does not come out (the
    receipt already names the tag; the salt reveals nothing more)."""
    commitment = str(record.get("card_commitment") or "").lower()
    if (card is None or record.get("kind") != CARD or not record.get("driver_index")
            or not commitment or str(card.get("commitment") or "").lower() != commitment):
        return None
    salt = card.get("salt")
    return str(salt).lower() if hex32(salt) is not None else None


def _receipt(batch: dict[str, Any], item: dict[str, Any], session: dict[str, Any],
             rpc_url: str | None, card: dict[str, Any] | None = None) -> dict[str, Any]:
    samples = json.loads(item["samples"])
    record = json.loads(item["record"])
    packed = int(item["entry"], 16)
    paid = session.get("settlement_state") == "paid"
    salt = card_salt(record, card)
    return {
        "voltledger_receipt": RECEIPT_VERSION,
        "what_it_proves": what_it_proves(samples),
        "record": record,
        "samples": samples,
        "entry": {"record_hash": item["leaf"], "packed": hex(packed),
                  "position": int(item["position"])},
        "chunk": {"ledger": str(batch["ledger"]), "first_seq": int(batch["first_seq"]),
                  "count": int(batch["count"]), "digest": batch["root"]},
        "payment": {"paid": paid, "amount": int(record["price_minor"]),
                    "unit": int(record["unit"]),
                    "reason": None if paid else session.get("unpaid_reason")},
        "chain": {"chain_id": batch["chain_id"], "contract": batch["contract"],
                  "tx_hash": batch["tx_hash"], "block_number": batch["block_number"],
                  "rpc_hint": rpc_url}
        # the transaction that created the contract (none: recorded before it was kept)
        | ({"deploy_tx": batch["deploy_tx"]} if batch.get("deploy_tx") else {}),
    } | ({"card": {"salt": salt}} if salt else {})


def build_receipt(batch: dict[str, Any], items: list[dict[str, Any]], session_id: int,
                  session: dict[str, Any], rpc_url: str | None,
                  card: dict[str, Any] | None = None) -> dict[str, Any]:
    [item] = [i for i in items if int(i["session_id"]) == session_id]
    return _receipt(batch, item, session, rpc_url, card)


async def _card_of(tx: Any, item: dict[str, Any]) -> dict[str, Any] | None:
    """The operator's row of the record's card (for its salt), if it has one: the link the
    session was charged on (a card unlinked since keeps it), else the card's link now."""
    bound = await tx.session_card(int(item["session_id"]))
    if bound is not None:
        return dict(bound) if bound["driver"] else None
    tag = json.loads(item["record"]).get("id_tag")
    return await tx.card_of(str(tag)) if tag else None


async def load_receipt(repo: Any, session_id: int, rpc_url: str | None) -> dict[str, Any]:
    """The receipt of a session from the database (its batch must be finalized)."""

    async def work(tx: Any) -> tuple[Any, Any, Any, Any, Any]:
        exists = await tx.get_session(session_id)
        batch_id = await tx.batch_of_session(session_id)
        if batch_id is None:
            return exists, None, [], None, None
        items = await tx.batch_items(batch_id)
        card = None
        for item in items:
            if int(item["session_id"]) == session_id:
                card = await _card_of(tx, item)
        return (exists, await tx.get_batch(batch_id), items,
                await tx.session_settlement(session_id), card)

    exists, batch, items, session, card = await repo.read(work)
    if exists is None:
        raise ReceiptNotReady(f"no session {session_id}")
    if batch is None:
        raise NotInBatch(f"session {session_id} is not in a settlement batch yet")
    if int(batch.get("version") or 1) != RECEIPT_VERSION:
        raise ReceiptNotReady(f"session {session_id} was settled by an earlier contract version;"
                              " its receipt is not available in this version")
    if batch["state"] != "finalized":
        raise ReceiptNotReady(f"session {session_id}'s batch {batch['id']} is {batch['state']},"
                              " not finalized yet")
    return build_receipt(batch, items, session_id, session or {}, rpc_url, card)


async def load_batch_receipts(repo: Any, batch_id: int, rpc_url: str | None) -> list[
        dict[str, Any]]:
    """Every receipt of one finalized batch."""

    async def work(tx: Any) -> tuple[Any, Any, dict[int, Any], dict[int, Any]]:
        batch = await tx.get_batch(batch_id)
        items = await tx.batch_items(batch_id)
        states = {int(i["session_id"]): await tx.session_settlement(int(i["session_id"]))
                  for i in items}
        cards = {int(i["session_id"]): await _card_of(tx, i) for i in items}
        return batch, items, states, cards

    batch, items, states, cards = await repo.read(work)
    if batch is None or batch["state"] != "finalized":
        raise ReceiptNotReady(f"batch {batch_id} is not finalized")
    return [_receipt(batch, item, states[int(item["session_id"])] or {}, rpc_url,
                     cards[int(item["session_id"])]) for item in items]


# -- verifying -------------------------------------------------------------------------
def hex32(value: Any) -> bytes | None:
    """The 32 bytes ``value`` writes as 0x and 64 hex digits (a hash, a card's salt); None
    for anything else (another length, another type)."""
    if isinstance(value, str) and re.fullmatch(r"0x[0-9a-fA-F]{64}", value):
        return bytes.fromhex(value[2:])
    return None


def _hex32(value: Any, name: str) -> bytes:
    raw = hex32(value)
    if raw is None:
        raise ReceiptError(f"{name} is not a 32-byte hex value")
    return raw


def _address(value: Any) -> str:
    """The receipt's contract: 0x and 40 hex digits, in any case (the central system writes
    it checksummed). web3 and eth_abi also read "0X..." and no prefix, the receipt page
    does not: such a receipt is no receipt to either."""
    if not isinstance(value, str) or not ADDRESS.fullmatch(value):
        raise ReceiptError("chain.contract is not an address (0x and 40 hex digits)")
    return value


def check_receipt(receipt: Any) -> None:
    """Raise :class:`ReceiptError` for what is not a receipt of this version (its parts
    of the wrong type included), before anything is checked."""
    _parse(receipt)


def _parse(receipt: Any) -> dict[str, Any]:
    """The parts of a receipt, type-checked: a malformed one is a ReceiptError."""
    if not isinstance(receipt, dict) or "voltledger_receipt" not in receipt:
        raise ReceiptError("not a voltledger receipt")
    version = receipt["voltledger_receipt"]
    if version != RECEIPT_VERSION:
        raise ReceiptError(f"receipt version {version!r} is not supported (this verifier reads"
                           f" version {RECEIPT_VERSION})")
    if _holds_a_surrogate(receipt):
        raise ReceiptError(_NOT_UNICODE)
    try:
        record, samples = receipt["record"], receipt["samples"]
        entry, chunk, chain = receipt["entry"], receipt["chunk"], receipt["chain"]
        payment = receipt["payment"]
        if not isinstance(record, dict) or not isinstance(samples, list) \
                or not all(isinstance(s, dict) for s in samples):
            raise ReceiptError("record must be an object and samples a list of objects")
        for part, name in ((entry, "entry"), (chunk, "chunk"), (chain, "chain"),
                           (payment, "payment")):
            if not isinstance(part, dict):
                raise ReceiptError(f"{name} must be an object")
        card = receipt.get("card")  # optional: the salt of the record's card
        if card is not None and not isinstance(card, dict):
            raise ReceiptError("card must be an object")
        for part, name in ((receipt, "the receipt"), (entry, "entry"), (chunk, "chunk"),
                           (chain, "chain"), (payment, "payment"), (card or {}, "card")):
            beyond = [str(key) for key in part if key not in _FIELDS[name]]
            if beyond:
                raise ReceiptError(f"{name} has {', '.join(repr(k) for k in beyond)}, not a"
                                   " field of a receipt")
        missing = [f for f in RECORD_FIELDS if f not in record]
        if missing:
            raise ReceiptError(f"the record lacks {', '.join(missing)}")
        return {
            "record": record, "samples": samples,
            "record_hash": _hex32(entry["record_hash"], "entry.record_hash"),
            "packed": _packed(entry["packed"]),
            "position": _whole(entry["position"], "entry.position"),
            "ledger": _ledger(chunk["ledger"]),
            "first_seq": _whole(chunk["first_seq"], "chunk.first_seq"),
            "count": _whole(chunk["count"], "chunk.count"),
            "digest": _hex32(chunk["digest"], "chunk.digest"),
            "chain_id": _whole(chain["chain_id"], "chain.chain_id"),
            "contract": _address(chain["contract"]),
            "tx_hash": _hex32(chain["tx_hash"], "chain.tx_hash"),
            "block_number": _whole(chain["block_number"], "chain.block_number"),
            "paid": _paid(payment["paid"]), "reason": _reason(payment.get("reason")),
            "amount": _whole(payment["amount"], "payment.amount"),
            "unit": _whole(payment["unit"], "payment.unit"),
            "card_salt": None if card is None else _hex32(card["salt"], "card.salt"),
            "deploy_tx": None if chain.get("deploy_tx") is None else _hex32(
                chain["deploy_tx"], "chain.deploy_tx"),
            # the operator's node (a hint, not checked: anything else is no node named)
            "rpc_hint": chain["rpc_hint"] if isinstance(chain.get("rpc_hint"), str) else None,
        }
    except ReceiptError:
        raise
    except (KeyError, TypeError, ValueError) as exc:
        raise ReceiptError(f"malformed receipt: {exc!r}") from None


# The fields of a receipt around its record, as the central system writes them: each is
# checked (or, what_it_proves and rpc_hint, never shown as the verifier's word). A field
# beside them (a fee, a total in another currency) is a figure no verifier checks, in a
# receipt that is VALID: not a receipt
_FIELDS = {
    "the receipt": frozenset({"voltledger_receipt", "what_it_proves", "record", "samples",
                              "entry", "chunk", "payment", "chain", "card"}),
    "entry": frozenset({"record_hash", "packed", "position"}),
    "chunk": frozenset({"ledger", "first_seq", "count", "digest"}),
    "chain": frozenset({"chain_id", "contract", "tx_hash", "block_number", "rpc_hint",
                        "deploy_tx"}),
    "payment": frozenset({"paid", "amount", "unit", "reason"}),
    "card": frozenset({"salt"}),
}

# JSON's \udXXX escapes let a text hold half of a UTF-16 pair, which is no Unicode text:
# Python cannot encode it (no hash of it), the receipt page's JSON.stringify writes it as the
# escape again (a hash). Neither verifier reads such a receipt (the receipt page says the same)
_NOT_UNICODE = "the receipt holds a text that is not Unicode (an unpaired surrogate)"
_SURROGATE = re.compile("[\ud800-\udfff]")


def _holds_a_surrogate(value: Any) -> bool:
    """Whether a text of ``value`` (a key included, at any depth) holds a surrogate code
    point: a Python text holds one only unpaired (json.loads joins an escaped pair)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if _SURROGATE.search(item):
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


# A session's start and stop as the central system writes them (settlement/worker.py:
# ``datetime.astimezone(UTC).isoformat()``), and nothing else: datetime.fromisoformat reads
# ISO week dates, an empty fraction, other offsets, which the receipt page does not (and its
# reader took ones Python refuses), so the two verifiers would time a session differently
_SESSION_TIME = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}"
                           r"(?:\.[0-9]{6})?\+00:00")


def session_time(value: Any) -> datetime:
    """A record's ``started_at`` or ``stopped_at``: YYYY-MM-DDTHH:MM:SS[.ffffff]+00:00 of a
    real day and time (year 1 on), else ValueError."""
    if not isinstance(value, str) or not _SESSION_TIME.fullmatch(value):
        raise ValueError("is not a time as the central system writes it"
                         " (YYYY-MM-DDTHH:MM:SS[.ffffff]+00:00)")
    try:
        return datetime.fromisoformat(value)
    except ValueError:  # month 13, February 30, year 0
        raise ValueError("is no day and time of the calendar") from None


_COMMITTED = frozenset(RECORD_FIELDS + OPTIONAL_FIELDS)


def _unreadable(record: dict[str, Any]) -> str | None:
    """Why the record is not one the central system writes, where a verifier would read it
    otherwise than the chain or the other verifier does (None: it is one)."""
    # every field of the record is one its hash commits: a field beside them (a total, a
    # second energy) is a figure the chain never saw, in a receipt whose hashes all match
    beyond = [str(name) for name in record if name not in _COMMITTED]
    if beyond:
        return (f"{', '.join(repr(name) for name in beyond)} {'is' if len(beyond) == 1 else 'are'}"
                " not a field of the record its hash commits")
    for name in INTEGER_FIELDS:
        if not _is_int(record[name]):
            return f"{name} {record[name]!r} is not an integer"
    for name in ("started_at", "stopped_at"):
        try:
            session_time(record[name])
        except ValueError as exc:
            return f"{name} {record[name]!r} {exc}"
    return None


# The figures of a receipt outside its record (its entry, chunk, chain and payment) are
# what the chain is asked about, each compared with what the chain answers. The central
# system writes each one way (a JSON integer; the ledger, a uint256, as text of digits;
# the packed entry as hex() writes it; paid as true or false), and the verifiers read no
# other: int() read 100.9 as 100, " 100", "1_00" and true as numbers, bool() read "false"
# as paid, so a receipt showed a figure other than the chain's and was VALID for it
_DIGITS = re.compile(r"0|[1-9][0-9]*")
_HEX = re.compile(r"0x[0-9a-fA-F]+")


def _whole(value: Any, name: str) -> int:
    """A figure of the receipt outside its record: a JSON integer."""
    if not _is_int(value):
        raise ReceiptError(f"{name} {value!r} is not an integer")
    return value


def _ledger(value: Any) -> int:
    """``chunk.ledger``: text of decimal digits as the central system writes it (no sign,
    blank or leading zero), or a JSON integer."""
    if isinstance(value, str) and _DIGITS.fullmatch(value):
        return int(value)
    return _whole(value, "chunk.ledger")


def _packed(value: Any) -> int:
    """``entry.packed``: 0x and hex digits, as hex() writes it."""
    if not isinstance(value, str) or not _HEX.fullmatch(value):
        raise ReceiptError(f"entry.packed {value!r} is not 0x and hex digits")
    return int(value, 16)


def _paid(value: Any) -> bool:
    """``payment.paid``: true or false."""
    if not isinstance(value, bool):
        raise ReceiptError(f"payment.paid {value!r} is not true or false")
    return value


def _reason(value: Any) -> int | None:
    """``payment.reason``: the chain's reason code of an unpaid entry, or null."""
    if value is not None and not _is_int(value):
        raise ReceiptError(f"payment.reason {value!r} is not an integer or null")
    return value


# what a figure beyond csms.domain.tariff.MAX_EXPONENT is not (the receipt page says the same)
_BEYOND = f"written beyond 1E-{MAX_EXPONENT} .. 1E+{MAX_EXPONENT}"


class _FigureBeyond(ValueError):
    """A tariff's figure beyond +-MAX_EXPONENT: no price needs it (its message says which)."""


def _ascii_decimal(value: Any, name: str) -> Decimal:
    """``Decimal(value)`` of a tariff's figure ``name``, its text in ASCII: Decimal() also
    reads other scripts' digits and spaces, which the central system never writes and the
    receipt page does not read. A finite figure beyond 10^+-MAX_EXPONENT is not read
    either (:class:`_FigureBeyond`): no price needs it, and the receipt page's exact
    arithmetic would spend seconds and hundreds of MB on 1e-10000000."""
    if isinstance(value, str) and not value.isascii():
        raise ValueError(f"{value!r} is not a number in ASCII digits")
    number = Decimal(value)
    if number.is_finite() and not within_exponents(number):
        raise _FigureBeyond(f"its {name} is {_BEYOND}, the figures a price needs")
    return number


def _decimals(value: Any) -> int:
    """The record's currency decimals (a price is scaled by 10^decimals): beyond
    +-MAX_EXPONENT no currency's (:class:`_FigureBeyond`; the central system takes 0 to 18)."""
    decimals = int(value)  # a JSON integer (_unreadable)
    if not -MAX_EXPONENT <= decimals <= MAX_EXPONENT:
        raise _FigureBeyond(f"its currency's decimals {decimals} are beyond +-{MAX_EXPONENT}")
    return decimals


def _number(value: Any) -> Decimal | None:
    """A finite number in ASCII digits, else None."""
    text = str(value)
    try:
        number = None if value in (None, "None") or not text.isascii() else Decimal(text)
    except InvalidOperation:
        return None
    return number if number is not None and number.is_finite() else None


def _decimal(value: Any) -> Decimal | None:
    """A meter reading of the record: a finite number in ASCII digits within 10^+-
    MAX_EXPONENT, else None (NaN or infinity is no reading, nor is 1E-40: no meter's step;
    the receipt page reads the same ones)."""
    number = _number(value)
    return number if number is not None and within_exponents(number) else None


def _salts(cards: Iterable[tuple[str, str | bytes]] | None) -> list[tuple[str, bytes]]:
    out = []
    for tag, salt in cards or ():
        raw = salt if isinstance(salt, bytes) else hex32(salt)
        if raw is None or len(raw) != 32:
            raise ValueError(f"the salt of card {tag} is not 32 bytes (0x and 64 hex digits)")
        out.append((str(tag), raw))
    return out


def default_confirmations(chain_id: int) -> int:
    """The confirmations a receipt of ``chain_id`` needs where the driver names no number
    (:data:`LOCAL_CHAINS`: 1, else :data:`FINAL_CONFIRMATIONS`)."""
    return 1 if chain_id in LOCAL_CHAINS else FINAL_CONFIRMATIONS


def verify_receipt(receipt: Any, w3: Any | None = None, *, driver: str | None = None,
                   contract: str | None = None,
                   cards: Iterable[tuple[str, str | bytes]] | None = None,
                   log_window: int | None = None, confirmations: int | None = None,
                   rpc_url: str | None = None, unchecked: str | None = None) -> Verdict:
    """Check a receipt; with ``w3`` (a web3 client) against the chain too.

    ``cards``: the driver's own cards as (tag, salt) pairs (the salt they linked each
    with): with ``driver``, a card session's commitment must be one of them for the
    record's tag (the receipt's own ``card.salt`` serves when none is given).
    ``log_window``: the widest block range of one ``eth_getLogs``, where the node keeps no
    state of the settle block (narrower where the node refuses it; None: 10,000, see
    ``settlement.chain.SettlementReader``).
    ``confirmations``: how many the settle transaction must have for VALID (its block and
    the blocks on top of it; None: :func:`default_confirmations` of the receipt's chain).
    ``rpc_url``: the URL the driver gave for ``w3``'s node; the receipt's own
    ``chain.rpc_hint`` (its operator's node) makes the verdict UNVERIFIED. None: a node of
    the caller's own (the chain of its data folder).
    ``unchecked``: what the "on chain" check says without ``w3`` (None: that no RPC
    endpoint was given): why, and what to do, in the caller's words.

    Raises :class:`ReceiptError` for what is not a receipt of this version, ValueError
    for a salt of ``cards`` that is not 32 bytes, a log window below one block or fewer
    than one confirmation."""
    if log_window is not None and log_window < 1:
        raise ValueError("the log window is at least one block")
    if confirmations is not None and confirmations < 1:
        raise ValueError("the confirmations are at least one (the block of the transaction)")
    with localcontext(DECIMALS):
        return _verify(receipt, w3, driver, contract, cards, log_window, confirmations,
                       rpc_url, unchecked)


def _verify(receipt: Any, w3: Any | None, driver: str | None, contract: str | None,
            cards: Iterable[tuple[str, str | bytes]] | None, log_window: int | None,
            confirmations: int | None, rpc_url: str | None,
            unchecked: str | None = None) -> Verdict:
    own_cards = _salts(cards)
    r = _parse(receipt)
    record, samples = r["record"], r["samples"]
    v = Verdict()
    v.proves = what_it_proves(samples)  # the verifier's own words, not the receipt's
    problem = _unreadable(record)
    if problem is not None:
        v.add("record", False, f"the record cannot be read: {problem}")
        return v
    try:
        v.add("samples hash", "0x" + samples_hash(samples).hex() == record["samples_hash"],
              "the meter samples are the ones the record commits to")
        rhash = record_hash(record)
        slot = unpack_entry(r["packed"])["slot"]
        _, packed = entry_of(record, slot)
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        v.add("record", False, f"the record cannot be read: {exc}")
        return v
    v.add("record hash", rhash == r["record_hash"], "record -> the entry's hash")
    v.add("entry", packed == r["packed"],
          "station, driver, energy, duration and amount of the entry are the record's")
    try:
        _check_record(v, record, unpack_entry(r["packed"])["kind"], r["chain_id"],
                      r["contract"])
        _check_signed(v, record, samples)
    except (ValueError, KeyError, TypeError, AttributeError, ArithmeticError) as exc:
        # a field of the wrong type where the checks above read it: not this record
        v.add("record", False, f"the record cannot be read: {exc!r}")
        return v
    if w3 is None:
        v.add("on chain", None, unchecked or "no RPC endpoint given: the chain was not"
              " checked")
        return v
    _check_node(v, r, rpc_url)
    try:
        _check_chain(v, r, w3, driver, contract, own_cards, log_window, confirmations)
    except Exception as exc:  # a node that is down or a receipt pointing nowhere
        v.add("on chain", None, f"the chain could not be read: {str(exc)[:200]}")
    return v


def _check_record(v: Verdict, record: dict[str, Any], kind: int, chain_id: int,
                  contract: str) -> None:
    """What the record says about itself must add up. ``kind``: the entry's, as the chain
    pays it (the record's, when the "entry" check passes)."""
    start, stop = _decimal(record["meter_start_wh"]), _decimal(record["meter_stop_wh"])
    if start is None or stop is None:
        far = [name for name in ("start", "stop")
               if (n := _number(record[f"meter_{name}_wh"])) is not None
               and not within_exponents(n)]
        v.add("energy = stop - start", False, "the record has no start or stop reading"
              if not far else f"the record's {' and '.join(far)} reading"
              f"{'s are' if len(far) > 1 else ' is'} {_BEYOND} Wh, the figures a meter"
              " reading needs")
    else:
        delta = stop - start
        try:
            energy: int | None = int(delta.quantize(Decimal(1), rounding=ROUND_HALF_EVEN)) \
                if delta >= 0 else 0
        except InvalidOperation:  # more than 28 digits: no energy any record can bill
            energy = None
        v.add("energy = stop - start", energy is not None and energy == record["energy_wh"],
              f"{stop} - {start} Wh = {'?' if energy is None else energy} Wh, the record"
              f" bills {record['energy_wh']} Wh")
    try:
        started = session_time(record["started_at"])
        stopped = session_time(record["stopped_at"])
        seconds = math.ceil((stopped - started).total_seconds())
        v.add("duration", stopped >= started and seconds == record["duration_s"],
              f"{record['started_at']} .. {record['stopped_at']}: {seconds} s")
    except (TypeError, ValueError):
        v.add("duration", False, "the record's times cannot be read")
    try:
        price = _tariff_price(record)
        limit = record.get("limit_minor")
        billed = record["price_minor"]
        if limit is None:
            v.add("price", price == billed, f"the tariff in the record gives {price}, the"
                  f" record bills {billed} (minor units)")
        elif not _is_int(limit) or limit < 0:
            v.add("price", False, f"the session's limit {limit!r} is not a number of minor"
                  " units")
        elif limit < price:
            v.add("price", billed == limit,
                  f"billed at the session's limit {limit}, the tariff gives {price} (minor"
                  " units)" if billed == limit else f"the tariff in the record gives {price}"
                  f" and the session's limit is {limit}, the record bills {billed} (minor"
                  " units)")
        else:
            v.add("price", price == billed, f"the tariff in the record gives {price} (the"
                  f" session's limit is {limit}), the record bills {billed} (minor units)")
    except _FigureBeyond as exc:
        v.add("price", False, f"the record's tariff cannot be read: {exc}")
    except (TypeError, ValueError, KeyError, ArithmeticError):  # InvalidOperation, Overflow
        v.add("price", False, "the record's tariff cannot be read")
    if kind == SIGNED:
        try:
            auth = Authorization.from_json(record["authorization"])
            signer = recover(auth, chain_id, contract)
            ok = (signer.lower() == auth.driver.lower() == str(record["driver"]).lower()
                  and auth.station == record["chain_station"]
                  and record["price_minor"] <= auth.max_amount)
            v.add("authorization", ok, f"signed by {signer} for station {auth.station},"
                  f" at most {auth.max_amount}")
        except (TypeError, ValueError) as exc:
            v.add("authorization", False, f"the authorization cannot be read: {exc}")


def _is_int(value: Any) -> TypeGuard[int]:
    """An integer of the record (JSON's true and false are not)."""
    return isinstance(value, int) and not isinstance(value, bool)


def _tariff_price(record: dict[str, Any]) -> int:
    """The price the record's tariff gives for its energy and duration (minor units)."""
    t = record["tariff"]
    tariff = Tariff("*", _ascii_decimal(t["per_kwh"], "per_kwh"), str(record["currency"]),
                    _decimals(record["decimals"]), _ascii_decimal(t["per_minute"], "per_minute"),
                    _ascii_decimal(t["session_fee"], "session_fee"))
    return price_minor(tariff, record["energy_wh"], record["duration_s"])


def _capping_limit(record: dict[str, Any]) -> int | None:
    """The session's limit when the record bills it instead of the tariff's higher price
    (the "price" check holds the record to it), else None."""
    limit = record.get("limit_minor")
    if not _is_int(limit) or limit < 0 or record["price_minor"] != limit:
        return None
    try:
        return limit if limit < _tariff_price(record) else None
    except (TypeError, ValueError, KeyError, ArithmeticError):
        return None


def _check_signed(v: Verdict, record: dict[str, Any], samples: list[dict[str, Any]]) -> None:
    """Signed meter data (OCMF, Alfen's format): the meter's signatures, and readings of THIS
    session."""
    signed = [s["signed"] for s in samples if s.get("signed")]
    if not signed:
        return
    key = record.get("meter_public_key")
    readings: list[ocmf.SignedReading] = []
    all_ok = True
    used: list[str] = []  # the keys the signatures were verified with
    for number, data in enumerate(signed, start=1):
        checked = ocmf.check_container(data, key)
        ok = checked.status == ocmf.VERIFIED
        all_ok &= ok
        if ok:
            readings.extend(checked.readings)
            used.append(str(checked.key_used))
        v.add(f"meter signature {number}", ok, checked.detail)
    if not key:
        # no key committed: each signature verifies with the key its own sample carries,
        # which proves nothing of a meter (anyone generates a key) unless one key signed the
        # whole session, the one the driver compares with the charger's label
        all_ok &= _one_meter_key(v, used)
    start, stop = _decimal(record["meter_start_wh"]), _decimal(record["meter_stop_wh"])
    rec = ocmf.reconcile(readings, start, stop)
    changed = rec.start_wh != start or rec.stop_wh != stop
    problems = rec.mismatches + (["the billed readings are not the ones the signed data"
                                  " gives"] if changed else [])
    try:
        started = session_time(record["started_at"])
        stopped = session_time(record["stopped_at"])
    except (TypeError, ValueError):
        pass  # no session times: the readings do not belong to it (_belongs)
    else:
        # a side the meter did not sign, beyond what any charger delivers from (to) its
        # nearest signed reading (the central system bounds it by the station's power)
        problems += ocmf.unsigned_beyond_signed(readings, rec.signed_begin, rec.signed_end,
                                                start, stop, started, stopped,
                                                ocmf.MAX_PLAUSIBLE_POWER_W)
    detail = "; ".join(problems) if problems else (
        "the billed start and stop readings are the meter's signed ones" if not rec.missing
        else f"no signed {' and '.join(rec.missing)} reading to compare")
    if not problems and "signed_register_offset" in rec.flags:
        detail = "the energy between the billed readings is the energy the meter signed"
    matched = v.add("signed readings = billed readings", not problems, detail)
    # the meter's own word on its readings: a status other than G or an energy error is
    # not billable (the central system holds such a session: signed_reading_faulty)
    good = v.add("meter status", not rec.faults, "; ".join(rec.faults) if rec.faults
                 else "no signed begin or end reading is marked faulty by the meter")
    belongs = _belongs(v, record, readings, rec)
    if all_ok and matched and good and belongs and not rec.missing:
        if key:
            short = key[-16:] if isinstance(key, str) else ""
            v.proves = ("The record is the one settled on chain, and the energy figure is the"
                        " one the calibrated meter signed for this session (meter signatures"
                        f" verified with the meter key ...{short}; compare it with the key on"
                        " the charger's label).")
        else:
            v.proves = ("The record is the one settled on chain, and its meter data is signed"
                        f" by a key the record does not commit (...{used[0][-16:]}, the key"
                        " its samples carry): the signed readings belong to this session, but"
                        " anyone can make such a key; the energy figure is a calibrated"
                        " meter's only if this is the key on the charger's label.")


def _one_meter_key(v: Verdict, used: list[str]) -> bool:
    """The signatures of a record that commits no meter key were verified with one key."""
    keys = sorted(set(used))
    short = [f"...{k[-16:]}" for k in keys]
    return v.add("one meter key", len(keys) <= 1,
                 f"every signature verified with one key, {short[0]}, which the record does"
                 " not commit" if len(keys) == 1 else
                 "no signature verified with any key" if not keys else
                 f"the signatures verified with {len(keys)} different keys"
                 f" ({', '.join(short)}): one session is one meter's")


def _belongs(v: Verdict, record: dict[str, Any], readings: list[ocmf.SignedReading],
             rec: ocmf.Reconciled) -> bool:
    """Signed readings borrowed from another session, invented or reordered fail here (the
    central system's own rule, ``csms.metering.ocmf.foreign``)."""
    try:
        started = session_time(record["started_at"])
        stopped = session_time(record["stopped_at"])
    except (TypeError, ValueError):
        return v.add("signed readings belong to this session", False, "no session times")
    tag = str(record.get("id_tag") or "")
    problems = ocmf.foreign(readings, rec.signed_begin, rec.signed_end, started, stopped,
                            tag)
    ids = {r.identification for r in readings if r.identification}
    return v.add("signed readings belong to this session", not problems,
                 "; ".join(problems) if problems else
                 "inside the session's time window, begin before end, pages in order, one"
                 " meter" + (", the driver's token" if tag and ids else ""))


# Characters a URL never holds that a spelling of one may: blanks (Unicode's too), controls
# and invisible format characters; the receipt page's verifier removes the same ones
_NOT_IN_A_URL = re.compile("[\x00-\x20\x7f-\xa0\u1680\u180e\u2000-\u200f\u2028-\u202f"
                           "\u205f-\u2064\u3000\ufeff]")


def _node(url: str) -> str:
    """A node's URL as compared with the receipt's: the same node however it is spelled
    (case, a closing slash, blanks, controls and invisible characters anywhere in it: a
    browser's field drops a line break, trims a no-break space)."""
    return _NOT_IN_A_URL.sub("", url).rstrip("/").lower()


def _check_node(v: Verdict, r: dict[str, Any], rpc_url: str | None) -> None:
    """Whose node answered: the chain data of the node the receipt names (its operator's)
    proves nothing against a dishonest operator, whose node answers whatever makes its
    receipts pass; ``csms verify`` never asks it, the receipt page fills it in."""
    hint = r["rpc_hint"]
    if rpc_url is not None and hint is not None and _node(hint) \
            and _node(rpc_url) == _node(hint):
        v.add("chain node", None, f"the chain data came from {rpc_url}, the node the receipt"
              " names: its operator's, which can answer whatever makes its receipts pass;"
              f" check with a node you choose (your own, or a public one of chain"
              f" {r['chain_id']})")
        v.proves += (f" Chain data from {rpc_url}, the node the receipt names (its"
                     " operator's): against a dishonest operator this proves nothing until"
                     " it is checked with a node you choose.")
        return
    where = "your own node" if rpc_url is None else f"{rpc_url}, a node you chose"
    v.add("chain node", True, f"the chain data came from {where}"
          + ("" if hint is None else f", not {hint}, the node the receipt names"))
    v.proves += f" Chain data from {where}."


def _count(n: int, noun: str) -> str:
    """``n`` of ``noun``: "1 block", "2 blocks"."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _check_depth(v: Verdict, r: dict[str, Any], reader: Any, block: int,
                 confirmations: int | None) -> None:
    """How deep the settle block is: until enough blocks are on top of it, a block can be
    reorganised away (and the session with it)."""
    required = default_confirmations(r["chain_id"]) if confirmations is None \
        else confirmations
    head = reader.block_number()
    depth = max(head - block, 0)  # a node behind its own answer: in a block, no more
    detail = (f"settle block {block}, {_count(depth, 'block')} on top of it (the node's"
              f" latest block is {head}): {_count(depth + 1, 'confirmation')},"
              f" {required} required")
    if depth + 1 >= required:
        v.add("confirmations", True, detail)
        return
    v.add("confirmations", None, detail + (
        f" (the default on chain {r['chain_id']}: csms verify --confirmations N asks for"
        " another number)" if confirmations is None else "")
        + ": the block can still be reorganised away, check again later")


def _check_chain(v: Verdict, r: dict[str, Any], w3: Any, driver: str | None,
                 contract: str | None, cards: list[tuple[str, bytes]],
                 log_window: int | None, confirmations: int | None) -> None:
    """The checks on chain, every state read at the end of the block the settle
    transaction is in, and that block pinned (its hash) while it is read: a transaction in
    no block, or a block reorganised away while it was read, is UNVERIFIED (what was read
    of it is not kept), never INVALID: the chain moved, not the operator."""
    from settlement.chain import SettlementReader

    reader = SettlementReader(w3, r["contract"], log_window)
    chain_id = reader.chain_id()
    if not v.add("chain id", chain_id == r["chain_id"],
                 f"the node is chain {chain_id}, the receipt says {r['chain_id']}"):
        return
    tx = "0x" + r["tx_hash"].hex()
    pinned = reader.settle_block(r["tx_hash"])
    if pinned is None:
        v.add("settle transaction", None, f"{tx} is in no block of chain {chain_id}: not"
              " mined yet, or its block was reorganised away (the chain may include it"
              " again, or settle its sequence numbers otherwise): check again later")
        return
    start = len(v.checks)
    try:
        _check_settled(v, r, reader, pinned[0], driver, contract, cards, confirmations)
    except Exception:
        if not _reorganised(v, r, reader, pinned, start):
            raise
        return
    _reorganised(v, r, reader, pinned, start)


def _reorganised(v: Verdict, r: dict[str, Any], reader: Any, pinned: tuple[int, bytes],
                 start: int) -> bool:
    """Whether the settle transaction is no longer in the block ``pinned`` (number, hash)
    it was in when the checks on chain began: the chain reorganised it away while it was
    read (:meth:`settlement.chain.SettlementReader.reorganised`). Then what was read (the
    checks from ``start``) is of no one chain, and the verdict is UNVERIFIED."""
    if not reader.reorganised(pinned):
        return False
    now = reader.settle_block(r["tx_hash"])  # where it is now, for the detail
    del v.checks[start:]
    v.add("settle transaction", None, f"0x{r['tx_hash'].hex()} was in block {pinned[0]}"
          f" (0x{pinned[1].hex()}) when the check began, and the chain reorganised that block"
          " while it was read (the transaction is "
          + ("in no block now" if now is None else f"in block {now[0]} now")
          + "): nothing read of it is kept, check again later")
    return True


def _check_settled(v: Verdict, r: dict[str, Any], reader: Any, pinned: int,
                   driver: str | None, contract: str | None, cards: list[tuple[str, bytes]],
                   confirmations: int | None) -> None:
    """The checks of the contract and the settle transaction in block ``pinned``."""
    from settlement.contract import code_fingerprint, is_settlement_code

    record = r["record"]
    # the kind of session the chain pays (card: the driver's standing terms; app: the
    # driver's signature), gating the checks of that kind
    kind = unpack_entry(r["packed"])["kind"]
    # what the contract is: this project's Settlement code, not a look-alike that answers
    # driver_index, cards and chunk_digest as it likes
    code, fp = reader.code(), code_fingerprint()
    if not v.add("contract code", is_settlement_code(code, fp),
                 f"{r['contract']} runs the code of voltledger's Settlement contract"
                 f" ({fp['contract']}, vyper {fp['vyper']})" if is_settlement_code(code, fp)
                 else f"there is no contract at {r['contract']}" if not code else
                 f"the code at {r['contract']} is not voltledger's Settlement contract:"
                 " a look-alike, whatever it answers"):
        return
    if not _check_origin(v, r, reader, contract):
        return
    # which contract: the one the driver's escrow lives in
    if contract is not None:
        v.add("the real contract", contract.lower() == r["contract"].lower(),
              f"you named {contract}, the receipt names {r['contract']}")
    if driver is not None:
        same = str(record["driver"] or "").lower() == driver.lower()
        # as the contract held them when the session was settled (the settle transaction's
        # block, as the chain says: the receipt's is checked below), not as they are now
        index = reader.driver_index(driver, pinned) if same else 0
        v.add("the driver's escrow", same and index != 0 and index == record["driver_index"],
              f"{driver} is driver {index} of {r['contract']}; the record names"
              f" {record['driver']} (driver {record['driver_index']})")
        if same and index and kind == CARD and record["driver_index"]:
            _check_card(v, r, reader, driver, index, cards, pinned)
    limit = _capping_limit(record) if kind == CARD else None
    if limit is not None:
        _check_limit(v, r, reader, limit, pinned)
    if contract is None and driver is None:
        v.add("the real contract", None, "give your driver address (or the contract's) to"
              f" tell whether {r['contract']} is the contract your escrow is in")
    # the settle transaction: its own input holds the entry
    to, ledger, first_seq, entries = reader.settle_input(r["tx_hash"])
    if to.lower() != r["contract"].lower():
        v.add("settle transaction", False, "the transaction is not a call of this contract")
        return
    position = r["position"]
    in_tx = (ledger == r["ledger"] and first_seq == r["first_seq"]
             and 0 <= position < len(entries)
             and entries[position] == (r["record_hash"], r["packed"])
             and record["seq"] == first_seq + position
             and str(record["ledger"]) == str(ledger))
    detail = f"entry {position} of the chunk settled in 0x{r['tx_hash'].hex()}"
    if in_tx and kind == SIGNED:
        # the contract checked (and used up) the authorization at the entry's place among
        # the signed ones: it must be the record's, not another of the driver's signatures
        # for the station (other prices, another nonce)
        used = _authorization_used(reader.settle_auths(r["tx_hash"]), entries, position)
        if used is None or used != _packed_authorization(record):
            in_tx = False
            detail += ("; the chain paid it under another authorization than the record's"
                       if used is not None else "; the chain paid it under no authorization")
    v.add("entry in the settle transaction", in_tx, detail)
    digest = chunk_digest(ledger, first_seq, entries)
    # as the contract held it at the end of the settle block, the one this transaction
    # settled in: a later block of another fork may hold another chunk there
    stored = reader.chunk_digest(ledger, first_seq, pinned)
    v.add("settled once", digest == stored == r["digest"] and r["count"] == len(entries),
          f"the contract holds this chunk for sequence numbers {first_seq}.."
          f"{first_seq + len(entries) - 1} of ledger {ledger}: no other chunk can hold them")
    status, block, settled, unpaid = reader.outcome(r["tx_hash"])
    if status == 1 and settled and block != r["block_number"]:
        # the receipt's block was reorganised away and the transaction included again in
        # another: settled all the same, but not where the receipt says
        v.add("settle transaction", None, f"succeeded in block {block}, not in block"
              f" {r['block_number']} the receipt names: the chain reorganised that block"
              " since the receipt was written (a receipt written now names the block)")
    else:
        v.add("settle transaction", status == 1 and settled and block == r["block_number"],
              f"succeeded in block {block}")
    _check_depth(v, r, reader, block, confirmations)
    seq = record["seq"]
    paid_on_chain = seq not in unpaid
    if paid_on_chain:  # an unpaid entry credited no one
        _check_host(v, record, reader, unpack_entry(r["packed"])["chain_station"], block)
    amount = unpack_entry(r["packed"])["price_minor"]
    # the base units a billing unit is worth: the contract's (its code is Settlement's, so
    # its unit() is the one it took at its deploy), never the record's word: an operator
    # writes the record before it is settled, and every hash then matches
    unit = reader.unit(block)
    if paid_on_chain:
        detail = (f"{amount} x {unit} base units were taken from the driver's escrow"
                  f" (driver {record['driver_index']}) and credited to the host")
    else:
        detail = f"not paid on chain: {UNPAID_REASONS.get(unpaid[seq], unpaid[seq])}"
    units = record["unit"] == unit
    # the receipt's own payment lines must say what the chain did, to the unit, and why an
    # entry went unpaid (the chain's reason code; none for a paid one)
    reason = None if paid_on_chain else unpaid[seq]
    stated = r["amount"] == amount and r["unit"] == unit and r["reason"] == reason
    misread = _misread_decimals(record, reader, unit, block)
    v.add("payment", paid_on_chain == r["paid"] and amount == record["price_minor"] and stated
          and units and misread is None,
          detail + ("" if paid_on_chain == r["paid"] else
                    f"; the receipt says {'paid' if r['paid'] else 'unpaid'}")
          + ("" if units else f"; the record says a billing unit is {record['unit']!r} base"
             f" units, the contract {unit}")
          + ("" if stated else f"; the receipt says {r['amount']} x {r['unit']}"
             + ("" if r["reason"] == reason else f", unpaid reason {r['reason']}"))
          + ("" if misread is None else f"; {misread}"))


def _misread_decimals(record: dict[str, Any], reader: Any, unit: int,
                      block: int) -> str | None:
    """Why the record's decimals are not its contract's billing unit's (None: they are, or
    the chain cannot tell). Escrows in an ERC-20 token: a billing unit is ``unit`` base
    units of a token with ``decimals()``, so its decimals are the token's less the unit's
    power of ten; a record in others reads the amount taken 10^n times over or under (1000
    taken as cents, read as 1.000). The native coin's decimals are no currency's, nor are
    a token's whose billing unit is no power of ten of it (a token of another currency at
    the rate deployed, 10,800 base units of a dollar token a euro cent): not told."""
    power = len(str(unit)) - 1
    if unit != 10**power:
        return None
    token = reader.token(block)
    token_decimals = None if token is None else reader.token_decimals(token, block)
    if token_decimals is None:
        return None
    ledger = token_decimals - power if power <= token_decimals else None
    if ledger is not None and record["decimals"] == ledger:
        return None
    return (f"the record's amounts have {record['decimals']!r} decimals, the contract's"
            f" billing unit {'none' if ledger is None else ledger} ({unit} base units of a"
            f" token with {token_decimals} decimals)")


def _check_host(v: Verdict, record: dict[str, Any], reader: Any, station: int,
                block: int) -> None:
    """Who was paid: the contract credits an entry to the host that registered its station
    index (``station(index)`` at the settle block), never to the record's ``host``, which it
    does not see. An operator that records a host's station under an index of its own is
    paid the host's sessions while the record names the host: the two must be the same.
    Asked of an entry the contract paid (an unpaid one credited no one)."""
    credited = reader.station_host(station, block)
    named = str(record["host"] or "")
    ok = bool(ADDRESS.fullmatch(named)) and named.lower() == credited.lower()
    v.add("host", ok, f"the contract credits station {station}'s sessions to {credited}, the"
          " host the record names" if ok else
          f"the contract credits station {station}'s sessions to {credited}, not to"
          f" {named or 'no host'}, the host the record names: another account was paid")


def _authorization_used(auths: list[int], entries: list[tuple[bytes, int]],
                        position: int) -> int | None:
    """The packed authorization the contract checked a signed entry against: the next of
    the transaction's ``auths`` at each signed entry (None: there was none left)."""
    at = sum(1 for _, packed in entries[:position] if unpack_entry(packed)["kind"] == SIGNED)
    return auths[at] if at < len(auths) else None


def _packed_authorization(record: dict[str, Any]) -> int | None:
    """The record's authorization as the contract takes it (None: not one)."""
    try:
        return Authorization.from_json(record["authorization"]).packed()
    except (TypeError, ValueError, KeyError, AttributeError):
        return None


def _check_limit(v: Verdict, r: dict[str, Any], reader: Any, limit: int,
                 block: int) -> None:
    """A card session billed at its limit: the limit is one the driver agreed to, at most
    its limit per session as the contract held it when the session was settled (an app
    session's is the signed maximum amount: the authorization check). An operator
    inventing a higher limit bills more than the driver accepts."""
    driver = str(r["record"]["driver"] or "")
    agreed = reader.max_per_session(driver, block) \
        if ADDRESS.fullmatch(driver) else 0
    v.add("session limit", limit <= agreed,
          f"the session's limit {limit} is within the {agreed} a session the driver accepted"
          f" when it was settled (block {block})" if limit <= agreed else
          f"the session's limit {limit} is above the {agreed} a session the driver accepted"
          f" when it was settled (block {block}): a limit the driver never agreed to")


def _check_origin(v: Verdict, r: dict[str, Any], reader: Any, contract: str | None) -> bool:
    """Where the contract comes from: the transaction the receipt names created it with
    Settlement's own creation code, so its state was written by Settlement's code only (a
    creation code of another's can write fake escrows and cards, then return the genuine
    runtime code). False when it did not (nothing else is asked of that address)."""
    from settlement.contract import is_settlement_creation

    name = "contract origin"
    if r["deploy_tx"] is None:
        if contract is None or contract.lower() != r["contract"].lower():
            v.add(name, None, "the receipt names no transaction that created"
                  f" {r['contract']}: whether its state was written by Settlement's code only"
                  " was not checked (name the contract you trust: csms verify --contract)")
        return True
    to, data, created, status, block = reader.creation(r["deploy_tx"])
    tx = "0x" + r["deploy_tx"].hex()
    if to is not None or status != 1 or created is None \
            or created.lower() != r["contract"].lower():
        return v.add(name, False, f"{tx} did not create {r['contract']}")
    genuine = is_settlement_creation(data)
    if genuine:  # the contract has no logs before the block that created it
        reader.first_block = block
    return v.add(name, genuine, f"{tx} created {r['contract']} with the creation code of"
                 " voltledger's Settlement contract and its constructor's arguments" if genuine
                 else f"{tx} created {r['contract']} with other creation code than voltledger's"
                 " Settlement contract's: its escrows and cards may be anyone's")


def _check_card(v: Verdict, r: dict[str, Any], reader: Any, driver: str, index: int,
                cards: list[tuple[str, bytes]], block: int) -> None:
    """A card session charged to the driver: the record's card is one the driver linked.
    The chain pays it under the driver's standing terms without seeing the card, so the
    commitment must be linked on chain AND be the one of the record's tag."""
    record = r["record"]
    tag = str(record["id_tag"] or "")
    name = "the driver's card"
    try:
        commitment = _hex32(record.get("card_commitment"), "card_commitment")
    except ReceiptError:
        v.add(name, False, f"a card session of {tag or 'no tag'} charged to driver {index}"
              " carries no card commitment: nothing shows the card is the driver's")
        return
    if not reader.card_linked(index, commitment, driver, block):
        v.add(name, False, f"the card's commitment was not linked to driver {index} on chain"
              f" when the session was settled (block {block})")
        return
    salts = [("you gave", salt) for _, salt in cards]
    if r["card_salt"] is not None:
        salts.append(("the receipt gives", r["card_salt"]))
    for source, salt in salts:
        if card_commitment(driver, tag, salt) == commitment:
            v.add(name, True, f"{tag} is the driver's card: its commitment (the salt"
                  f" {source}) is the one the driver linked on chain")
            return
    if salts:
        yours = ", ".join(sorted({t for t, _ in cards})) or "none"
        v.add(name, False, f"the commitment is not {tag}'s with the salt"
              f" {' or '.join(sorted({s for s, _ in salts}))} (your cards: {yours}):"
              " another card, charged to this driver")
        return
    v.add(name, None, f"a card the driver linked on chain, but whether it is {tag}"
          " was not checked: give the card's salt (csms verify --card TAG:SALT)")


def duplicates(receipts: list[dict[str, Any]]) -> list[str]:
    """Sessions billed twice across receipts: the same signed meter reading, or the same
    station transaction, in two records."""
    seen_readings: dict[tuple[str, str], int] = {}
    seen_tx: dict[tuple[str, str, str], int] = {}
    found: list[str] = []
    for n, receipt in enumerate(receipts):
        record = receipt.get("record", {})
        key = (str(record.get("station_id")), str(record.get("transaction_id")),
               str(record.get("started_at")))
        if key in seen_tx:
            found.append(f"receipts {seen_tx[key] + 1} and {n + 1} bill the same transaction"
                         f" {key[1]} of station {key[0]}")
        seen_tx.setdefault(key, n)
        for s in receipt.get("samples", []):
            if not s.get("signed"):
                continue
            checked = ocmf.check_container(s["signed"], record.get("meter_public_key"))
            for reading in checked.readings:
                # one page of one meter is one record, whatever code a station labels its
                # reading with (Alfen's type is not signed: an end relabelled a begin)
                rkey = (str(reading.meter_serial), str(reading.pagination))
                if reading.pagination and rkey in seen_readings \
                        and seen_readings[rkey] != n:
                    found.append(f"receipts {seen_readings[rkey] + 1} and {n + 1} carry the"
                                 f" same signed reading (meter {rkey[0]}, page {rkey[1]})")
                seen_readings.setdefault(rkey, n)
    return found
