"""The canonical session record, its hash and its Merkle leaf (pure).

A receipt carries the record; anyone recomputes ``record_hash`` from it:
keccak256 of the canonical JSON (keys sorted, no spaces, UTF-8) of the record
fields below, where ``samples_hash`` is keccak256 of the canonical JSON of the
meter samples (signed meter data included verbatim). The leaf commits to the
record and, in the clear, to what a contract must check to pay:

    leaf = keccak256(0x00 ++ abi.encode(bytes32 record_hash, bytes32 tag_hash,
                                        uint256 energy_wh, uint256 amount, address payee))
"""

from __future__ import annotations

import json
from typing import Any

from eth_abi.abi import encode as abi_encode
from eth_hash.auto import keccak

from settlement.merkle import LEAF_PREFIX

__all__ = [
    "OPTIONAL_FIELDS", "RECORD_FIELDS", "canonical", "leaf_of", "record_hash", "samples_hash",
    "tag_hash",
]

ZERO_ADDRESS = "0x" + "00" * 20

RECORD_FIELDS = (
    "session_id", "station_id", "connector_id", "evse_id", "id_tag_hash", "ocpp_version",
    "transaction_id", "started_at", "stopped_at", "meter_start_wh", "meter_stop_wh",
    "energy_wh", "price_minor", "currency", "decimals", "tariff_id", "tariff_version",
    "stop_reason", "samples_hash", "payee",
)
# Committed only when present: the meter's public key (hex DER) of a session with signed
# meter data (OCMF), so a receipt cannot swap the key its signatures are checked with.
OPTIONAL_FIELDS = ("meter_public_key",)


def canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def tag_hash(id_tag: str | None) -> bytes:
    """Drivers are identified on chain by the hash of their id tag, never the tag itself."""
    return bytes(keccak(("" if id_tag is None else id_tag).encode()))


def samples_hash(samples: list[dict[str, Any]]) -> bytes:
    return bytes(keccak(canonical(samples)))


def record_hash(record: dict[str, Any]) -> bytes:
    missing = [f for f in RECORD_FIELDS if f not in record]
    if missing:
        raise ValueError(f"record lacks {missing}")
    fields = RECORD_FIELDS + tuple(f for f in OPTIONAL_FIELDS if f in record)
    return bytes(keccak(canonical({f: record[f] for f in fields})))


def leaf_of(record: dict[str, Any]) -> bytes:
    encoded = abi_encode(
        ["bytes32", "bytes32", "uint256", "uint256", "address"],
        [record_hash(record), bytes.fromhex(record["id_tag_hash"].removeprefix("0x")),
         int(record["energy_wh"]), int(record["price_minor"]), record["payee"] or ZERO_ADDRESS],
    )
    return bytes(keccak(LEAF_PREFIX + encoded))
