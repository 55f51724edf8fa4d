"""Who a socket counts under in the handshake gate, the gate's tally of them, and its
lane for known clients; the TLS transport of a connection, closed more than once."""

from __future__ import annotations

import asyncio
import collections
import random
import ssl

import pytest

from csms.metrics import Metrics
from csms.transport import (
    TLS_READ_SIZE,
    HandshakeGate,
    LargeFrames,
    SharedBufferSSLProtocol,
    Tally,
    source_of,
)


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


class Holder:
    """What LargeFrames asks of a connection: its client, the bytes it holds in a message
    still arriving, and giving way (GuardedConnection.give_way: those bytes given back)."""

    def __init__(self, source: str, proven: bool = False) -> None:
        self.source = source
        self.proven = proven  # its login proved a secret
        self._partial = self._message = 0
        self.gave_way = False

    def arriving_bytes(self) -> int:
        return self._partial + self._message

    def give_way(self, large: LargeFrames, reason: str = "large_frames_evicted") -> int:
        freed = self.arriving_bytes()
        large.give(self, freed)  # type: ignore[arg-type]
        large.arriving(self, False)  # type: ignore[arg-type]
        self._partial = self._message = 0
        self.gave_way = True
        return freed

    def _peer(self) -> str:
        return self.source


def holding(large: LargeFrames, source: str, n: int, *, arriving: bool,
            proven: bool = False) -> Holder:
    conn = Holder(source, proven)
    assert large.take(conn, n)  # type: ignore[arg-type]
    if arriving:
        conn._partial = n
        large.arriving(conn, True)  # type: ignore[arg-type]
    return conn


def test_nobody_gives_way_for_bytes_that_would_not_fit_all_the_same() -> None:
    """Address A holds 600 bytes of complete messages (the loop's: never given way) and 100
    of one still arriving, C 250 arriving: 950 of 1000. B asks for 300. A holds more than B
    would, but all A could give back (100) does not make room, and C holds less than B
    would: B is refused, and A's message is not closed for nothing."""
    large = LargeFrames(1000, Metrics(), above=10)
    holding(large, "A", 600, arriving=False)
    a = holding(large, "A", 100, arriving=True)
    holding(large, "C", 250, arriving=True)
    assert not large.take(Holder("B"), 300)  # type: ignore[arg-type]
    assert not a.gave_way and large.evicted == 0
    assert large.held == 950 and large.of[False] == {"A": 700, "C": 250}
    # room that giving way makes is taken: 150 fit once A's 100 are given back
    assert large.take(Holder("B"), 150)  # type: ignore[arg-type]
    assert a.gave_way and large.evicted == 1
    assert large.of[False] == {"A": 600, "C": 250, "B": 150}


def test_a_proven_connection_makes_strangers_from_many_addresses_give_way() -> None:
    """Strangers from eight addresses each hold 110 bytes of a message still arriving, less
    than a proven station's 300 would be: fairness per address makes none of them give
    way, so an unproven newcomer's 300 are refused. A proven connection's 300 make them
    give way, the address holding the most first (its connection with the most arriving),
    just enough of them: the others keep theirs, and so does a complete message."""
    large = LargeFrames(1000, Metrics(), above=10)
    strangers = [holding(large, f"S{i}", 110, arriving=True) for i in range(8)]
    big = holding(large, "S8", 60, arriving=True)
    holding(large, "S8", 60, arriving=True)  # S8 holds the most: 120
    assert large.held == 1000
    assert not large.take(Holder("U"), 300)  # type: ignore[arg-type]
    assert large.evicted == 0 and large.held == 1000
    assert large.take(Holder("P", proven=True), 300)  # type: ignore[arg-type]
    gave_way = [s for s in strangers if s.gave_way]
    # S8's 60 (it holds the most, 120), then three addresses' 110
    assert big.gave_way and len(gave_way) == 3 and large.evicted == 4
    assert large.held == 1000 - 60 - 3 * 110 + 300
    assert large.of[True] == {"P": 300}


def test_a_proven_connection_never_gives_way_to_an_unproven_one() -> None:
    """A proven address holds the most of the budget in messages still arriving, more than
    anyone else would: an unproven newcomer is refused all the same, and the proven
    messages are kept. Another proven address is served by fairness as before: the proven
    address holding more than it would gives way."""
    large = LargeFrames(1000, Metrics(), above=10)
    proven = [holding(large, "P", 200, arriving=True, proven=True) for _ in range(4)]
    stranger = holding(large, "S", 150, arriving=True)
    assert not large.take(Holder("U"), 200)  # type: ignore[arg-type]
    assert not any(p.gave_way for p in proven) and large.evicted == 0
    # the stranger's 150 give way first, then one of P's 800: Q takes 200 after the
    # stranger's, 350 in all
    assert large.take(Holder("Q", proven=True), 350)  # type: ignore[arg-type]
    assert stranger.gave_way and sum(p.gave_way for p in proven) == 1
    assert large.of[True] == {"P": 600, "Q": 350} and large.of[False] == {}
    # a proven newcomer holding no less than P would after is refused, nobody closed
    assert not large.take(Holder("R", proven=True), 700)  # type: ignore[arg-type]
    assert sum(p.gave_way for p in proven) == 1 and large.evicted == 2


def test_nobody_gives_way_when_the_proven_newcomer_would_not_fit_all_the_same() -> None:
    """Strangers' messages arriving and a proven address's complete ones: all the
    strangers could give back does not make room for the proven newcomer, and no proven
    address holds more than it would: nobody is closed for nothing."""
    large = LargeFrames(1000, Metrics(), above=10)
    holding(large, "P", 700, arriving=False, proven=True)
    strangers = [holding(large, f"S{i}", 100, arriving=True) for i in range(3)]
    assert not large.take(Holder("Q", proven=True), 500)  # type: ignore[arg-type]
    assert not any(s.gave_way for s in strangers) and large.evicted == 0
    assert large.take(Holder("Q", proven=True), 300)  # type: ignore[arg-type]
    assert all(s.gave_way for s in strangers) and large.held == 1000


def test_large_frames_keep_their_guarantees_under_random_pressure() -> None:
    """Random proven and unproven connections from a few addresses take, give back and
    end: never more than the budget is held; an unproven newcomer never closes a proven
    connection; only messages still arriving give way; what is held per address and lane
    agrees with counting by hand, and nothing is kept once all is given back."""
    rng = random.Random(11)
    large = LargeFrames(5000, Metrics(), above=10)
    live: list[Holder] = []
    for _ in range(5000):
        if live and rng.random() < 0.3:
            conn = live.pop(rng.randrange(len(live)))
            large.give(conn, conn.arriving_bytes())  # type: ignore[arg-type]
            large.arriving(conn, False)  # type: ignore[arg-type]
            continue
        conn = Holder(rng.choice("abcdef"), rng.random() < 0.3)
        before = {id(c): c.gave_way for c in live}
        n = rng.randrange(11, 1500)
        if large.take(conn, n):  # type: ignore[arg-type]
            conn._partial = n
            large.arriving(conn, True)  # type: ignore[arg-type]
            live.append(conn)
        closed = [c for c in live if c.gave_way and not before.get(id(c), True)]
        if not conn.proven:
            assert not any(c.proven for c in closed)
        if closed and conn not in live:
            raise AssertionError("closed for a newcomer that did not fit")
        live = [c for c in live if not c.gave_way]
        assert large.held <= large.limit
        assert large.held == sum(c.arriving_bytes() for c in live)
        for lane in (False, True):
            by_hand: collections.Counter[str] = collections.Counter()
            for c in live:
                if c.proven is lane:
                    by_hand[c.source] += c.arriving_bytes()
            assert large.of[lane] == dict(by_hand)
    for conn in live:
        large.give(conn, conn.arriving_bytes())  # type: ignore[arg-type]
        large.arriving(conn, False)  # type: ignore[arg-type]
    assert large.held == 0
    assert large.of == large._arriving == {False: {}, True: {}}


class Waiter:
    """A socket at the handshake gate, as :class:`csms.transport._OnFirstByte` takes its
    turns (the gate's logic alone: no socket)."""

    def __init__(self, gate: HandshakeGate, source: str) -> None:
        self.source = source
        self.known, self.key = gate.lane_of(source)
        self.state = "new"
        if gate.admit(self.key, self.known):
            self.state = "slot"
        elif gate.can_queue() or gate.make_room(self.key, self.known):
            self.state = "queued"
            gate.enqueue(self)  # type: ignore[arg-type]
        else:
            self.state = "refused"

    def evict(self) -> None:
        self.state = "evicted"

    def admitted(self, gate: HandshakeGate) -> None:
        self.state = "slot"


@pytest.mark.parametrize("limit", [4, 8, 64])
def test_the_known_lane_keeps_its_reserve_and_its_places_against_strangers(
        limit: int) -> None:
    """Random arrivals from known clients and strangers, clients becoming known (from
    another station, too) or forgotten meanwhile, slots ending, queued sockets leaving,
    the gate closing: strangers never hold more than the limit, nor take a place of the
    known lane; a known socket never waits while the reserve has room; no station holds
    more than its share of the known lane, whatever its clients; the counts per lane key
    agree with counting by hand, and are all given back."""
    rng = random.Random(limit)
    clients = ["k1", "k2", "k3", "k4", "k5", "s1", "s2"]
    for _ in range(30):
        # k1 and k2 are one station's clients (a hostile station known from two places)
        stations = {"k1": "A", "k2": "A", "k3": "B", "k4": "C"}
        gate = HandshakeGate("ws", limit, Metrics(), queue_limit=6, known=stations.get)
        assert gate.reserve == max(1, limit // 4) and gate.share == max(1, gate.reserve // 4)
        sockets: list[Waiter] = []
        for _ in range(500):
            roll = rng.random()
            if roll < 0.05:  # a login makes a client known, or names another station
                stations[rng.choice(clients)] = rng.choice("ABCD")
            elif roll < 0.08 and stations:  # a client forgotten
                del stations[rng.choice(list(stations))]
            elif roll < 0.65:
                source = rng.choice(clients + [f"x{rng.randrange(10**6)}"] * 3)
                before = {id(w): w.state for w in sockets if w.known}
                sockets.append(Waiter(gate, source))
                if not sockets[-1].known:  # a stranger evicts no socket of the known lane
                    assert all(w.state == before[id(w)] for w in sockets if w.known
                               and id(w) in before)
            elif roll < 0.995:
                live = [w for w in sockets if w.state in ("slot", "queued")]
                if not live:
                    continue
                w = rng.choice(live)
                if w.state == "slot":
                    w.state = "done"
                    gate.release(w.key, w.known)
                else:
                    w.state = "left"
                    gate.leave(w)  # type: ignore[arg-type]
            else:  # the server stops: the queued are dropped, the slots end as they close
                gate.close()
                assert not any(w.state == "queued" for w in sockets)
                for w in sockets:
                    if w.state == "slot":
                        w.state = "done"
                        gate.release(w.key, w.known)
            slots = [w for w in sockets if w.state == "slot"]
            queued = [w for w in sockets if w.state == "queued"]
            assert gate.pending == len(slots) <= gate.limit + gate.reserve
            assert sum(not w.known for w in slots) <= gate.limit
            assert gate.queued == len(queued) <= gate.queue_limit
            if any(w.known for w in queued):
                assert gate.pending == gate.limit + gate.reserve
            if any(not w.known for w in queued):
                assert gate.pending >= gate.limit
            for lane in (False, True):
                by_hand = collections.Counter(w.key for w in slots + queued
                                              if w.known is lane)
                assert gate.lanes[lane].held.count == dict(by_hand)
                assert gate.lanes[lane].queued_by.count == dict(collections.Counter(
                    w.key for w in queued if w.known is lane))
            assert all(n <= gate.share for n in gate.lanes[True].held.count.values())
        for w in sockets:  # the queued leave first: a slot ending admits nobody then
            if w.state == "queued":
                gate.leave(w)  # type: ignore[arg-type]
        for w in sockets:
            if w.state == "slot":
                gate.release(w.key, w.known)
        assert gate.pending == 0 and gate.queued == 0
        assert all(not lane.held.count and not lane.queued_of for lane in gate.lanes.values())


async def test_a_tls_transport_closed_again_still_answers() -> None:
    """websockets ends its stream by closing a TLS transport, also one closed already (an
    abort, or its socket gone a loop step before its protocol learns it). asyncio's
    (CPython 3.11, 3.12) then dropped its TLS layer: pausing its reads, asking for its
    peer, aborting it (CPython 3.11.2) raised AttributeError. Ours does nothing more,
    as any closed asyncio transport."""
    layer = SharedBufferSSLProtocol(
        asyncio.get_running_loop(), asyncio.Protocol(),
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH), bytearray(TLS_READ_SIZE),
        handshake_timeout=1.0, shutdown_timeout=1.0)
    transport = layer._get_app_transport()
    transport.abort()
    transport.close()
    transport.close()
    transport.pause_reading()
    transport.resume_reading()
    assert transport.get_extra_info("peername") is None
    transport.abort()
    assert transport.is_closing()
