from __future__ import annotations

import pytest
from eth_hash.auto import keccak

from settlement.merkle import MerkleTree, hash_pair, verify_proof


def leaves(n: int) -> list[bytes]:
    return [bytes(keccak(i.to_bytes(4, "big"))) for i in range(n)]


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 7, 8, 9, 16, 33, 100])
def test_every_proof_verifies(n: int) -> None:
    tree = MerkleTree(leaves(n))
    for i, leaf in enumerate(leaves(n)):
        assert verify_proof(leaf, tree.proof(i), tree.root)


def test_single_leaf_root_is_the_leaf() -> None:
    [leaf] = leaves(1)
    assert MerkleTree([leaf]).root == leaf


def test_rebuild_gives_same_root_and_order_matters() -> None:
    assert MerkleTree(leaves(10)).root == MerkleTree(leaves(10)).root
    assert MerkleTree(leaves(10)).root != MerkleTree(list(reversed(leaves(10)))).root


def test_wrong_leaf_or_proof_fails() -> None:
    tree = MerkleTree(leaves(8))
    assert not verify_proof(leaves(9)[8], tree.proof(0), tree.root)
    bad = tree.proof(3)
    bad[0] = bytes(32)
    assert not verify_proof(leaves(8)[3], bad, tree.root)


def test_pairs_are_hashed_sorted_with_the_node_prefix() -> None:
    a, b = leaves(2)
    assert hash_pair(a, b) == hash_pair(b, a) == bytes(keccak(b"\x01" + min(a, b) + max(a, b)))


@pytest.mark.parametrize("bad", [[], [b"short"]])
def test_invalid_input(bad: list[bytes]) -> None:
    with pytest.raises(ValueError):
        MerkleTree(bad)
