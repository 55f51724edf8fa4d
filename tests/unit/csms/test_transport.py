"""Who a socket counts under in the handshake gate, and the gate's tally of them."""

from __future__ import annotations

import random

import pytest

from csms.transport import Tally, source_of


@pytest.mark.parametrize(("peer", "source"), [
    (("192.0.2.7", 40000), "192.0.2.7"),
    # every address of one /64 is one client; the next /64 is another
    (("2001:db8:1:2:aaaa:bbbb:cccc:dddd", 40000, 0, 0), "2001:db8:1:2::/64"),
    (("2001:db8:1:2::1", 40000, 0, 0), "2001:db8:1:2::/64"),
    (("2001:db8:1:3::1", 40000, 0, 0), "2001:db8:1:3::/64"),
    (("fe80::1%eth0", 40000, 0, 2), "fe80::/64"),
    # a dual-stack listener sees IPv4 clients as mapped addresses
    (("::ffff:192.0.2.7", 40000, 0, 0), "192.0.2.7"),
    (None, ""),
    ("/run/csms.sock", ""),
])
def test_sources_are_ipv4_addresses_and_ipv6_slash_64s(peer: object, source: str) -> None:
    assert source_of(peer) == source


def test_the_tally_knows_who_holds_the_most() -> None:
    tally = Tally()
    assert tally.most() is None
    for _ in range(3):
        tally.add("a", 1)
    tally.add("b", 1)
    assert (tally.most(), tally.top) == ("a", 3)
    tally.add("a", -1)
    tally.add("a", -1)
    tally.add("b", 1)
    assert tally.most() == "b" and tally.count == {"a": 1, "b": 2}
    tally.add("b", -1)
    tally.add("b", -1)
    tally.add("a", -1)
    assert tally.most() is None and tally.count == {} and tally.top == 0


def test_the_tally_agrees_with_counting_by_hand() -> None:
    rng = random.Random(7)
    tally = Tally()
    counts: dict[str, int] = {}
    for _ in range(20_000):
        key = rng.choice("abcdefgh")
        delta = 1 if not counts.get(key) or rng.random() < 0.55 else -1
        counts[key] = counts.get(key, 0) + delta
        tally.add(key, delta)
        held = {k: n for k, n in counts.items() if n}
        assert tally.count == held
        most = tally.most()
        assert (most is None) == (not held)
        if most is not None:
            assert held[most] == max(held.values()) == tally.top
