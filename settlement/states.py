"""The settlement batch lifecycle: one explicit state table.

A batch is one chunk of sessions settled by one ``settle`` transaction, which anchors the
chunk and pays it (settlement/contracts/Settlement.vy).

    pending   -> signed      the raw settle transaction, its hash and nonce are stored
    pending   -> included    the chain already holds this chunk (a crash after broadcast,
                             found from the chain's own Settled event)
    signed    -> broadcast   sent to the node (re-sent as is after a crash)
    broadcast -> included    a receipt exists and the chain holds the chunk's digest
    broadcast -> signed      stuck: replaced by a re-signed transaction with bumped
                             EIP-1559 fees and the SAME nonce
    broadcast -> pending     reverted, and the chain did not settle these sequence numbers:
                             signed again with a new nonce
    included  -> finalized   N confirmations; each session is then paid or unpaid, as the
                             chain's events say
    included  -> broadcast   a reorg dropped the block: wait for re-inclusion
    finalized -> broadcast   re-checked while a later batch waits for its chunk: a reorg
                             deeper than the confirmations took it off the chain (its
                             sessions are batched again; the stored transaction is sent
                             again, or signed again if its nonce was used since), or moved
                             it to another block (found there, nothing sent)
    pending / signed / broadcast -> conflict
                             the chain holds ANOTHER chunk for these sequence numbers (a
                             restored backup or a copy of this database settled them): never
                             settled again, the operator is told
"""

from __future__ import annotations

import enum

__all__ = ["FINAL_STATES", "TRANSITIONS", "BatchState", "InvalidTransition", "check_transition"]


class BatchState(enum.StrEnum):
    PENDING = "pending"
    SIGNED = "signed"
    BROADCAST = "broadcast"
    INCLUDED = "included"
    FINALIZED = "finalized"
    CONFLICT = "conflict"


TRANSITIONS: dict[BatchState, frozenset[BatchState]] = {
    BatchState.PENDING: frozenset({BatchState.SIGNED, BatchState.INCLUDED,
                                   BatchState.CONFLICT}),
    # back to pending: its nonce went to another transaction of the operator key, so this
    # signed transaction can never be mined (signed again with a new nonce)
    BatchState.SIGNED: frozenset({BatchState.BROADCAST, BatchState.PENDING,
                                  BatchState.INCLUDED, BatchState.CONFLICT}),
    BatchState.BROADCAST: frozenset({BatchState.INCLUDED, BatchState.SIGNED,
                                     BatchState.PENDING, BatchState.CONFLICT}),
    BatchState.INCLUDED: frozenset({BatchState.FINALIZED, BatchState.BROADCAST}),
    # only when the chain no longer holds it as recorded (SettlementWorker._recheck_finalized)
    BatchState.FINALIZED: frozenset({BatchState.BROADCAST}),
    BatchState.CONFLICT: frozenset(),
}

# closed: nothing is done for them any more, but a finalized batch the chain lost is reopened
FINAL_STATES = (BatchState.FINALIZED.value, BatchState.CONFLICT.value)


class InvalidTransition(Exception):
    pass


def check_transition(old: BatchState, new: BatchState) -> None:
    if new not in TRANSITIONS[old]:
        raise InvalidTransition(f"a batch cannot go from {old} to {new}")
