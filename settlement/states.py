"""The settlement batch lifecycle: one explicit state table.

    pending   -> signed      the raw anchor transaction, its hash and nonce are stored
    signed    -> broadcast   sent to the node (re-sent as is after a crash)
    broadcast -> included    a receipt exists
    broadcast -> signed      stuck: replaced by a re-signed transaction with bumped
                             EIP-1559 fees and the SAME nonce
    included  -> finalized   N confirmations
    included  -> broadcast   a reorg dropped the block: wait for re-inclusion
"""

from __future__ import annotations

import enum

__all__ = ["TRANSITIONS", "BatchState", "InvalidTransition", "check_transition"]


class BatchState(enum.StrEnum):
    PENDING = "pending"
    SIGNED = "signed"
    BROADCAST = "broadcast"
    INCLUDED = "included"
    FINALIZED = "finalized"


TRANSITIONS: dict[BatchState, frozenset[BatchState]] = {
    BatchState.PENDING: frozenset({BatchState.SIGNED}),
    BatchState.SIGNED: frozenset({BatchState.BROADCAST}),
    BatchState.BROADCAST: frozenset({BatchState.INCLUDED, BatchState.SIGNED}),
    BatchState.INCLUDED: frozenset({BatchState.FINALIZED, BatchState.BROADCAST}),
    BatchState.FINALIZED: frozenset(),
}


class InvalidTransition(Exception):
    pass


def check_transition(old: BatchState, new: BatchState) -> None:
    if new not in TRANSITIONS[old]:
        raise InvalidTransition(f"a batch cannot go from {old} to {new}")
