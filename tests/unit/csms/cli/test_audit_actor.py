"""``csms audit`` names who acted, and an X-Actor only as a claim beside it."""

from __future__ import annotations

from csms.cli.audit import _actor


def test_a_claimed_actor_is_shown_as_a_claim_beside_the_actor() -> None:
    assert _actor({"actor": "cli:alice", "claimed_actor": None}) == "cli:alice"
    assert _actor({"actor": "admin@127.0.0.1", "claimed_actor": "cli:alice"}) \
        == "admin@127.0.0.1 (claims cli:alice)"
    # a claim of another principal's name never reads as that principal's entry
    assert _actor({"actor": "admin@127.0.0.1", "claimed_actor": "console@127.0.0.1"}) \
        != "console@127.0.0.1"
