from __future__ import annotations

import itertools

import pytest

from settlement.states import TRANSITIONS, BatchState, InvalidTransition, check_transition

ALLOWED = {
    ("pending", "signed"), ("pending", "included"), ("signed", "broadcast"),
    ("broadcast", "included"), ("broadcast", "signed"), ("broadcast", "pending"),
    ("included", "finalized"), ("included", "broadcast"),
    ("pending", "conflict"), ("signed", "conflict"), ("broadcast", "conflict"),
    ("signed", "pending"), ("signed", "included"),  # nonce taken; a replacement mined
    ("finalized", "broadcast"),  # re-checked: a reorganisation took it off the chain
}


@pytest.mark.parametrize(("old", "new"), list(itertools.product(BatchState, BatchState)))
def test_transition_table(old: BatchState, new: BatchState) -> None:
    if (old.value, new.value) in ALLOWED:
        check_transition(old, new)
    else:
        with pytest.raises(InvalidTransition):
            check_transition(old, new)


def test_conflict_is_terminal_finalized_only_reopens_and_every_state_is_reachable() -> None:
    assert TRANSITIONS[BatchState.FINALIZED] == frozenset({BatchState.BROADCAST})
    assert TRANSITIONS[BatchState.CONFLICT] == frozenset()
    reachable = {BatchState.PENDING}
    for _ in BatchState:
        reachable |= {n for s in reachable for n in TRANSITIONS[s]}
    assert reachable == set(BatchState)
