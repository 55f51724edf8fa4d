"""What a host reads from the chain alone: each entry the operator settled for its stations,
paid or not and why (``csms wallet entries``).

A host's stations are the station indexes the contract registered to its address (its
``StationRegistered`` events). Every chunk the operator settled has a ``Settled`` event;
its transaction's own input holds the chunk's entries (decoded as the receipt verifier
decodes them, :meth:`settlement.chain.SettlementReader.settle_input`), and its ``Unpaid``
events say which entries the contract refused and why. The entries of the host's station
indexes, settled after the index was registered to it, are the host's: energy, duration
and amount are the entry's packed fields, as the contract checked and paid them.

What the contract credited the host is computed as it does (Settlement.vy ``settle``):
per chunk and station slot, the paid amounts less ``fee_bps`` of them (rounded down), in
base units of its ``unit``. Read from the contract's first block, that is what
``earnings()`` holds plus what the host withdrew (its ``EarningsWithdrawn`` events).
Everything is read at one block (the logs up to it, the contract's state at its end), so
the two are of the same block whatever the chain does meanwhile; a reorganisation of that
block while it is read is refused.

A session the operator never settles never reaches the chain: no entry shows it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from settlement.chain import ChainError, SettlementReader, address_topic, event_topic
from settlement.records import chunk_digest, unpack_entry

__all__ = ["REASON_NAMES", "HostEntries", "HostEntry", "Progress", "Unreadable",
           "host_entries"]

# the names Settlement.vy gives its reasons an entry is not paid
REASON_NAMES = {
    1: "UNKNOWN_STATION", 2: "UNKNOWN_DRIVER", 3: "ABOVE_STATION_POWER", 4: "ABOVE_PRICES",
    5: "ABOVE_SESSION_LIMIT", 6: "CARDS_NOT_ALLOWED", 7: "BAD_AUTHORIZATION",
    8: "NONCE_USED", 9: "AUTHORIZATION_EXPIRED", 10: "ABOVE_DAILY_LIMIT",
    11: "ESCROW_TOO_LOW", 12: "UNKNOWN_KIND",
}


STATION_REGISTERED = event_topic("StationRegistered(uint256,address,uint256)")
SETTLED = event_topic("Settled(uint256,uint256,uint256,bytes32,uint256,uint256)")
EARNINGS_WITHDRAWN = event_topic("EarningsWithdrawn(address,address,uint256)")

# what the receipt verifier's ABI lacks: the fee and the accounts' earnings
HOST_ABI: list[dict[str, Any]] = [
    {"type": "function", "name": "fee_bps", "stateMutability": "view", "inputs": [],
     "outputs": [{"name": "", "type": "uint256"}]},
    {"type": "function", "name": "platform", "stateMutability": "view", "inputs": [],
     "outputs": [{"name": "", "type": "address"}]},
    {"type": "function", "name": "earnings", "stateMutability": "view",
     "inputs": [{"name": "arg0", "type": "address"}],
     "outputs": [{"name": "", "type": "uint256"}]},
]

# (what is being read, how far, out of) for a progress display
Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class HostEntry:
    """One entry of a chunk the operator settled, of one of the host's station indexes."""

    ledger: int
    seq: int
    station: int
    energy_wh: int
    duration_s: int
    amount: int  # billing units (the contract's ``unit`` base units each)
    kind: int  # 0 a card session, 1 an app session
    paid: bool
    reason: int | None  # the contract's reason it was not paid (None: paid)
    tx_hash: str
    block: int

    @property
    def reason_name(self) -> str | None:
        if self.reason is None:
            return None
        return REASON_NAMES.get(self.reason, str(self.reason))


@dataclass(frozen=True)
class Unreadable:
    """A chunk whose entries could not be read from its transaction's input (a settle
    made through another contract): its entries are not in the list."""

    tx_hash: str
    block: int
    ledger: int
    first_seq: int
    why: str


@dataclass
class HostEntries:
    host: str
    contract: str
    stations: list[int]
    from_block: int
    to_block: int
    whole: bool  # read from the contract's first block: the totals compare with earnings()
    unit: int  # base units a billing unit is worth
    fee_bps: int
    entries: list[HostEntry] = field(default_factory=list)
    unreadable: list[Unreadable] = field(default_factory=list)
    chunks: int = 0  # settled chunks read
    credited: int = 0  # base units the contract credited the host for these entries
    withdrawn: int | None = None  # base units withdrawn (None: not read, a later start)
    earnings: int = 0  # what earnings() holds now, base units (its kept unit not counted)
    is_platform: bool = False  # the host also receives the platform's fee

    @property
    def paid(self) -> int:
        return sum(e.amount for e in self.entries if e.paid)


def _word(data: bytes, n: int) -> int:
    return int.from_bytes(data[32 * n:32 * n + 32], "big")


def host_entries(reader: SettlementReader, host: str, *, from_block: int | None = None,
                 to_block: int | None = None,
                 progress: Progress | None = None) -> HostEntries:
    """The entries of ``host``'s stations in every chunk settled from ``from_block``
    (default: the reader's ``first_block``, the contract's first) to ``to_block`` (default:
    the node's latest block), everything read at ``to_block``: every log query ends there
    and every call of the contract (its fee, platform, unit, the host's earnings) reads its
    state at the end of it, so what was credited and what earnings() holds are of the same
    block. Raises ChainError (or the node's error) when a window of the logs or a
    transaction cannot be read (a window left out could hide an entry), when ``to_block``
    is beyond the node's latest block, when the contract has no code at ``to_block`` (it was
    created later), and when that block was reorganised away while it was read (the
    listing would mix two forks)."""
    if to_block is None:  # given: not read again (csms wallet entries read it once)
        to_block = reader.block_number()
    if to_block < 0:
        raise ChainError(f"no block {to_block}")
    found = reader.block_hash(to_block)
    if found is None:
        raise ChainError(f"block {to_block} is beyond the node's latest block"
                         f" {reader.block_number()}")
    pinned = (to_block, found)
    try:
        out = _read(reader, host, from_block, to_block, progress)
    except Exception:
        _unmoved(reader, pinned)  # the reorganisation, rather than what it broke
        raise
    _unmoved(reader, pinned)
    return out


def _unmoved(reader: SettlementReader, pinned: tuple[int, bytes]) -> None:
    """Raise ChainError when the node's block ``pinned`` (number, hash) was reorganised
    away while it was read (:meth:`SettlementReader.reorganised`)."""
    if reader.reorganised(pinned):
        raise ChainError(f"the chain reorganised block {pinned[0]} while it was read (it was"
                         f" 0x{pinned[1].hex()}): read again, or deeper (more confirmations)")


def _read(reader: SettlementReader, host: str, from_block: int | None, latest: int,
          progress: Progress | None) -> HostEntries:
    address = reader.w3.to_checksum_address(host)
    host_topic = address_topic(address)
    first = reader.first_block
    start = first if from_block is None else max(from_block, first)
    if first > latest or not reader.code(latest):
        raise ChainError(f"the contract {reader.address} has no code at block {latest}:"
                         " it was created later")
    extra = reader.w3.eth.contract(address=reader.address, abi=HOST_ABI)
    fee_bps = int(extra.functions.fee_bps().call(block_identifier=latest))
    unit = reader.unit(latest)
    total = max(latest - first + 1, 1)

    def windows(done: int) -> None:
        if progress is not None:
            progress("blocks", done - first + 1, total)

    registered: dict[int, tuple[int, int]] = {}  # station -> (block, log index)
    withdrawn = 0

    def take(entry: Any) -> bool:
        """Keep a station registration of the host's, a withdrawal of its; True: a
        Settled event."""
        nonlocal withdrawn
        topics = ["0x" + bytes(t).hex() for t in entry["topics"]]
        if topics[0] == STATION_REGISTERED:
            if topics[2] == host_topic:
                registered[int(topics[1], 16)] = (int(entry["blockNumber"]),
                                                   int(entry["logIndex"]))
            return False
        if topics[0] == EARNINGS_WITHDRAWN:
            if topics[1] == host_topic:
                withdrawn += _word(bytes(entry["data"]), 1)
            return False
        return True

    if start > first:  # the stations registered before: one query of their events
        for entry in reader.logs([STATION_REGISTERED, None, host_topic], first,
                                 min(start - 1, latest), windows):
            take(entry)
    settled = [e for e in reader.logs([[STATION_REGISTERED, SETTLED, EARNINGS_WITHDRAWN]],
                                      start, latest, windows) if take(e)]
    platform = str(extra.functions.platform().call(block_identifier=latest))
    earned = max(0, int(extra.functions.earnings(address).call(block_identifier=latest)) - 1)
    out = HostEntries(address, reader.address, sorted(registered), start, latest,
                      whole=start == first, unit=unit, fee_bps=fee_bps,
                      withdrawn=withdrawn if start == first else None, earnings=earned,
                      is_platform=platform.lower() == address.lower())
    for n, event in enumerate(settled):
        if progress is not None:
            progress("chunks", n, len(settled))
        _read_chunk(reader, event, registered, out)
    if progress is not None:
        progress("chunks", len(settled), len(settled))
    out.chunks = len(settled)
    return out


def _read_chunk(reader: SettlementReader, event: Any, registered: dict[int, tuple[int, int]],
                out: HostEntries) -> None:
    """The host's entries of one settled chunk, and what the contract credited it."""
    tx_hash = bytes(event["transactionHash"])
    block, at = int(event["blockNumber"]), int(event["logIndex"])
    topics = [bytes(t) for t in event["topics"]]
    ledger, first_seq = int.from_bytes(topics[1], "big"), int.from_bytes(topics[2], "big")
    data = bytes(event["data"])
    count, root = _word(data, 0), data[32:64]
    try:
        to, tx_ledger, tx_first, entries = reader.settle_input(tx_hash)
    except (ChainError, ValueError) as exc:  # not a direct call of settle
        out.unreadable.append(Unreadable("0x" + tx_hash.hex(), block, ledger, first_seq,
                                         str(exc).splitlines()[0] if str(exc) else
                                         type(exc).__name__))
        return
    if (to.lower() != reader.address.lower() or (tx_ledger, tx_first) != (ledger, first_seq)
            or len(entries) != count or chunk_digest(ledger, first_seq, entries) != root):
        out.unreadable.append(Unreadable(
            "0x" + tx_hash.hex(), block, ledger, first_seq,
            "the transaction's input is not the chunk the contract settled"))
        return
    # the host's station indexes, registered before this chunk was settled (an index
    # registered later was no one's then: the contract paid none of its entries)
    mine = {s for s, when in registered.items() if when < (block, at)}
    fields = [unpack_entry(packed) for _, packed in entries]
    if not any(f["chain_station"] in mine for f in fields):
        return
    unpaid = reader.outcome(tx_hash)[3]
    credit: dict[int, int] = {}  # slot -> billing units paid (Settlement.vy's slots)
    for i, f in enumerate(fields):
        if f["chain_station"] not in mine:
            continue
        seq = first_seq + i
        reason = unpaid.get(seq)
        out.entries.append(HostEntry(
            ledger, seq, f["chain_station"], f["energy_wh"], f["duration_s"],
            f["price_minor"], f["kind"], reason is None, reason, "0x" + tx_hash.hex(),
            block))
        if reason is None:
            credit[f["slot"]] = credit.get(f["slot"], 0) + f["price_minor"]
    out.credited += sum((paid - paid * out.fee_bps // 10_000) * out.unit
                        for paid in credit.values())
