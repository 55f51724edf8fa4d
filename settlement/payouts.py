"""Netted payment of a batch (pure): one line per driver and payee, chunked, hash-chained.

A batch of sessions is paid with one line per (driver, payee): the sums of the
energy and the amounts of that driver's sessions with that payee. Lines are sorted
(payee, tag hash) so that a rebuilt batch gives the same lines, cut into chunks of
at most ``CHUNK`` lines, and committed at anchoring time by the head of a hash chain:

    H_k = keccak256(abi_encode((bytes32,address,uint256,uint256)[] lines_k, bytes32 H_k+1))

with H_n = 0 after the last chunk. The batch is anchored as ``anchor_key(root, H_0)``
(the head costs no extra storage at anchoring time). The contract (``pay``) accepts
the chunks in order, each once, and checks each line against the driver's escrow and
price cap.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from eth_abi.abi import encode as abi_encode
from eth_hash.auto import keccak

__all__ = ["CHUNK", "Line", "anchor_key", "chain_hashes", "chunked", "net_lines"]

CHUNK = 256  # MAX_LINES of Settlement.vy
LINE_TYPE = "(bytes32,address,uint256,uint256)[]"


@dataclass(frozen=True, slots=True)
class Line:
    tag_hash: bytes
    payee: str
    energy_wh: int
    amount: int

    def as_tuple(self) -> tuple[bytes, str, int, int]:
        return (self.tag_hash, self.payee, self.energy_wh, self.amount)

    def as_json(self) -> list[Any]:
        return ["0x" + self.tag_hash.hex(), self.payee, self.energy_wh, self.amount]

    @classmethod
    def from_json(cls, value: list[Any]) -> Line:
        return cls(bytes.fromhex(str(value[0])[2:]), str(value[1]), int(value[2]), int(value[3]))


def net_lines(records: Iterable[dict[str, Any]]) -> list[Line]:
    """One line per (driver, payee) with something to pay, in a deterministic order."""
    sums: dict[tuple[str, bytes], list[int]] = {}
    for r in records:
        if not r.get("payee") or int(r["price_minor"]) <= 0:
            continue
        key = (str(r["payee"]), bytes.fromhex(str(r["id_tag_hash"])[2:]))
        acc = sums.setdefault(key, [0, 0])
        acc[0] += int(r["energy_wh"])
        acc[1] += int(r["price_minor"])
    return [Line(tag, payee, energy, amount)
            for (payee, tag), (energy, amount) in sorted(
                sums.items(), key=lambda kv: (kv[0][0].lower(), kv[0][1]))]


def anchor_key(root: bytes, payout_head: bytes | None) -> bytes:
    """What the contract anchors: the root, or keccak256(0x02 ++ root ++ head) when netted."""
    if not payout_head or payout_head == bytes(32):
        return root
    return bytes(keccak(b"\x02" + root + payout_head))


def chunked(lines: list[Line], size: int = CHUNK) -> list[list[Line]]:
    return [lines[i:i + size] for i in range(0, len(lines), size)]


def chain_hashes(chunks: list[list[Line]]) -> list[bytes]:
    """H_0 .. H_n-1 of the chunks (H_0 is anchored; chunk k is sent with H_k+1, or 0)."""
    hashes: list[bytes] = []
    following = bytes(32)
    for chunk in reversed(chunks):
        following = bytes(keccak(abi_encode([LINE_TYPE, "bytes32"],
                                            [[line.as_tuple() for line in chunk], following])))
        hashes.append(following)
    return list(reversed(hashes))
