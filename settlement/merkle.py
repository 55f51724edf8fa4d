"""Merkle trees over session leaves (pure).

Leaves and inner nodes are domain-separated (a 0x00 prefix for leaves, 0x01
for inner nodes) so that no inner node can be passed off as a leaf. Inner nodes
hash the *sorted* pair, so a proof is a plain list of siblings and the contract
checks it without direction bits. An odd node at the end of a level is carried
up unchanged. The leaf order is the batch's order (session id ascending), so a
rebuilt batch gives the same root.
"""

from __future__ import annotations

from collections.abc import Sequence

from eth_hash.auto import keccak

__all__ = ["LEAF_PREFIX", "NODE_PREFIX", "MerkleTree", "hash_pair", "verify_proof"]

LEAF_PREFIX = b"\x00"
NODE_PREFIX = b"\x01"


def hash_pair(a: bytes, b: bytes) -> bytes:
    lo, hi = (a, b) if a <= b else (b, a)
    return bytes(keccak(NODE_PREFIX + lo + hi))


class MerkleTree:
    def __init__(self, leaves: Sequence[bytes]) -> None:
        if not leaves:
            raise ValueError("a Merkle tree needs at least one leaf")
        if any(len(leaf) != 32 for leaf in leaves):
            raise ValueError("leaves are 32-byte hashes")
        self.levels: list[list[bytes]] = [list(leaves)]
        while len(self.levels[-1]) > 1:
            level = self.levels[-1]
            nxt = [hash_pair(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
            if len(level) % 2:
                nxt.append(level[-1])
            self.levels.append(nxt)

    @property
    def root(self) -> bytes:
        return self.levels[-1][0]

    def proof(self, index: int) -> list[bytes]:
        if not 0 <= index < len(self.levels[0]):
            raise IndexError(index)
        path: list[bytes] = []
        for level in self.levels[:-1]:
            sibling = index ^ 1
            if sibling < len(level):
                path.append(level[sibling])
            index //= 2
        return path


def verify_proof(leaf: bytes, proof: Sequence[bytes], root: bytes) -> bool:
    node = leaf
    for sibling in proof:
        node = hash_pair(node, sibling)
    return node == root
