"""The canonical session record, its on-chain entry and its Merkle leaf (pure).

A receipt carries the record; anyone recomputes ``record_hash`` from it: keccak256 of the
canonical JSON (keys sorted, no spaces, UTF-8) of the record fields below, where
``samples_hash`` is keccak256 of the canonical JSON of the meter samples (signed meter
data included verbatim). The record never goes on chain; its hash does, beside the
compact entry the contract checks and pays (``settlement/contracts/Settlement.vy``):

    packed = station % 2**24 | driver << 24 | energy_wh << 56 | duration_s << 88
             | amount << 120 | kind << 168 | slot << 176 | station >> 24 << 184

A station's index is 40 bits (anyone may register a station: 2^24 of them was within a
stranger's means); its low 24 bits are where the first layout had the whole index, so an
entry of a station below 2^24 is the same word as ever, and its receipts verify unchanged.
The contract reads every bit above the slot as the station's high bits, and so does
:func:`unpack_entry`: an entry with a bit above the 40 names a station no one can register.

A chunk of entries is committed on chain by a hash chain (see :func:`chunk_digest`);
``slot`` is the station's position among the chunk's distinct stations (the contract sums
each station's credits once).

``kind`` is 0 for a card session (the driver's standing terms), 1 for an app session (the
driver's signed authorization, which the record carries). A card is linked to a driver
by ``card_commitment`` = keccak256(abi.encode(address driver, string tag, bytes32 salt)):
the chain sees the commitment, never the tag.
"""

from __future__ import annotations

import json
from typing import Any

from eth_abi.abi import encode as abi_encode
from eth_hash.auto import keccak

__all__ = [
    "CARD",
    "INTEGER_FIELDS",
    "LIMITS",
    "OPTIONAL_FIELDS",
    "RECORD_FIELDS",
    "SIGNED",
    "EntryTooLarge",
    "ascii_int",
    "canonical",
    "card_commitment",
    "chunk_digest",
    "entry_of",
    "pack_entry",
    "record_hash",
    "samples_hash",
    "unpack_entry",
]

CARD, SIGNED = 0, 1

RECORD_FIELDS = (
    "ledger", "seq", "session_id", "station_id", "chain_station", "host", "connector_id",
    "evse_id", "id_tag", "ocpp_version", "transaction_id", "started_at", "stopped_at",
    "duration_s", "meter_start_wh", "meter_stop_wh", "energy_wh", "price_minor", "currency",
    "decimals", "unit", "tariff", "stop_reason", "samples_hash", "driver", "driver_index",
    "kind", "authorization", "card_commitment",
)
# Committed only when present: the meter's public key (hex DER) of a session with signed
# meter data (OCMF), so a receipt cannot swap the key its signatures are checked with; the
# session's limit (minor units) of a session billed at its limit, below the tariff's price.
OPTIONAL_FIELDS = ("meter_public_key", "limit_minor")

# The record's fields the central system writes as JSON integers and the verifiers read as
# numbers: each must be one (not text, a float or true/false), else the record is not one
# the central system wrote. int() would read "0" as the card kind the entry packs while
# `kind == 0` is false for it: the checks of a card (or an app) session skipped for a
# session the chain pays as one. ``ledger`` is written as text (a uint256: no JSON reader
# keeps every one exact) and compared as text.
INTEGER_FIELDS = ("seq", "chain_station", "driver_index", "energy_wh", "duration_s",
                  "price_minor", "decimals", "unit", "kind")

# bit widths of the packed entry (the contract's checks assume them)
LIMITS = {"chain_station": 40, "driver_index": 32, "energy_wh": 32, "duration_s": 32,
          "price_minor": 48}

STATION_LOW = 2**24 - 1  # the station's low bits, at the bottom of the entry
STATION_HIGH_SHIFT = 184  # its high bits: above the slot


class EntryTooLarge(ValueError):
    """A record value that does not fit its field of the on-chain entry."""


def canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def samples_hash(samples: list[dict[str, Any]]) -> bytes:
    return bytes(keccak(canonical(samples)))


def record_hash(record: dict[str, Any]) -> bytes:
    missing = [f for f in RECORD_FIELDS if f not in record]
    if missing:
        raise ValueError(f"record lacks {missing}")
    fields = RECORD_FIELDS + tuple(f for f in OPTIONAL_FIELDS if f in record)
    return bytes(keccak(canonical({f: record[f] for f in fields})))


def pack_entry(station: int, driver_index: int, energy_wh: int, duration_s: int,
               amount: int, kind: int, slot: int = 0) -> int:
    values = {"chain_station": station, "driver_index": driver_index, "energy_wh": energy_wh,
              "duration_s": duration_s, "price_minor": amount}
    for name, value in values.items():
        if not 0 <= value < 2 ** LIMITS[name]:
            raise EntryTooLarge(f"{name} {value} does not fit {LIMITS[name]} bits")
    if kind not in (CARD, SIGNED):
        raise ValueError(f"unknown entry kind {kind}")
    if not 0 <= slot < 256:
        raise EntryTooLarge(f"station slot {slot} does not fit 8 bits")
    return (station & STATION_LOW | driver_index << 24 | energy_wh << 56 | duration_s << 88
            | amount << 120 | kind << 168 | slot << 176 | station >> 24 << STATION_HIGH_SHIFT)


def unpack_entry(packed: int) -> dict[str, int]:
    """The fields of an entry as the contract reads them (the station: its low 24 bits and
    every bit above the slot)."""
    return {"chain_station": packed & STATION_LOW | packed >> STATION_HIGH_SHIFT << 24,
            "driver_index": packed >> 24 & (2**32 - 1),
            "energy_wh": packed >> 56 & (2**32 - 1), "duration_s": packed >> 88 & (2**32 - 1),
            "price_minor": packed >> 120 & (2**48 - 1), "kind": packed >> 168 & 255,
            "slot": packed >> 176 & 255}


def ascii_int(value: Any) -> int:
    """``int(value)`` of a record's or a receipt's field, its text in ASCII: int() also reads
    other scripts' digits (Arabic-Indic, fullwidth) and spaces (a no-break space), which the
    central system never writes and the receipt page does not read (a receipt's numbers are
    ASCII). ValueError for such text."""
    if isinstance(value, str) and not value.isascii():
        raise ValueError(f"{value!r} is not a number in ASCII digits")
    return int(value)


def entry_of(record: dict[str, Any], slot: int) -> tuple[bytes, int]:
    """The on-chain entry of a record: (record hash, packed)."""
    return record_hash(record), pack_entry(
        ascii_int(record["chain_station"] or 0), ascii_int(record["driver_index"] or 0),
        ascii_int(record["energy_wh"]), ascii_int(record["duration_s"]),
        ascii_int(record["price_minor"]), ascii_int(record["kind"]), slot)


def chunk_digest(ledger: int, first_seq: int, entries: list[tuple[bytes, int]]) -> bytes:
    """The chunk's commitment, as the contract computes it:
    H_0 = keccak256(abi_encode(ledger, first_seq)), H_i = keccak256(H_i-1 ++ hash_i ++ packed_i).
    """
    digest = bytes(keccak(abi_encode(["uint256", "uint256"], [ledger, first_seq])))
    for rhash, packed in entries:
        digest = bytes(keccak(digest + rhash + packed.to_bytes(32, "big")))
    return digest


def card_commitment(driver: str, tag: str, salt: bytes) -> bytes:
    """What a driver links on chain for a card: the tag never leaves the two parties."""
    if len(salt) != 32:
        raise ValueError("the salt is 32 bytes")
    return bytes(keccak(abi_encode(["address", "string", "bytes32"], [driver, tag, salt])))
