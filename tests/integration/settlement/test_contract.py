"""The settlement contract against a dishonest operator, driver, host or stranger.

Each test is named after a property it holds, and runs on py-evm (in-process) and on a
real Anvil node over JSON-RPC.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from web3 import Web3

from settlement import wallet
from settlement.chain import ContractParams, open_chain
from settlement.eip712 import Authorization, sign
from settlement.records import CARD, SIGNED, chunk_digest
from support import require_anvil
from support.chainkit import Kit, Row, reverts

NOTICE = 3600
FEE_BPS = 500  # 5% to the platform

# Unpaid reasons (Settlement.vy)
UNKNOWN_STATION, UNKNOWN_DRIVER, ABOVE_STATION_POWER, ABOVE_PRICES = 1, 2, 3, 4
ABOVE_SESSION_LIMIT, CARDS_NOT_ALLOWED, BAD_AUTHORIZATION, NONCE_USED = 5, 6, 7, 8
AUTHORIZATION_EXPIRED, ABOVE_DAILY_LIMIT, ESCROW_TOO_LOW, UNKNOWN_KIND = 9, 10, 11, 12


def make_kit(kind: str, folder: Path, **params: object) -> Kit:
    if kind == "anvil":
        require_anvil()
    spec = "memory" if kind == "memory" else "local"
    chain = open_chain(spec, folder, params=ContractParams(
        **{"notice_period": NOTICE, "fee_bps": FEE_BPS, **params}))  # type: ignore[arg-type]
    return Kit(chain)


@pytest.fixture(params=["memory", pytest.param("anvil", marks=pytest.mark.anvil)])
def kit(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Kit]:
    k = make_kit(request.param, tmp_path / "chain")
    yield k
    k.chain.close()


def signed(k: Kit, driver: object, station: int, **fields: int) -> Authorization:
    values = {"max_per_kwh": 40, "max_per_minute": 0, "max_session_fee": 50,
              "max_amount": 500, "nonce": 1, "expiry": k.now() + 86_400, **fields}
    return wallet.authorize(k.chain, driver, station, **values)  # type: ignore[arg-type]


def test_card_sessions_are_paid_only_under_the_drivers_standing_terms(kit: Kit) -> None:
    _host, st = kit.host()
    d, di = kit.driver(max_per_kwh=39, max_session_fee=50)
    nocards, ni = kit.driver(allow_cards=False)
    # 1,500 Wh at 39 c/kWh + a 50 c fee: 108.5 c, billed 109 (rounding half up): paid
    s = kit.settle([Row(st, di, 1500, 1800, 109),
                    Row(st, di, 1500, 1800, 150),  # above 39 c/kWh + 50 c
                    Row(st, ni, 1500, 1800, 50),  # this driver allows no card sessions
                    Row(st, 0, 1500, 1800, 50),  # no driver
                    Row(st, 99, 1500, 1800, 50),  # an index no driver has
                    Row(777, di, 1500, 1800, 50)])  # no such station
    first = s.first_seq
    assert s.unpaid == {first + 1: ABOVE_PRICES, first + 2: CARDS_NOT_ALLOWED,
                        first + 3: UNKNOWN_DRIVER, first + 4: UNKNOWN_DRIVER,
                        first + 5: UNKNOWN_STATION}
    assert s.paid == 109
    assert kit.balance(d) == 10**6 - 109 and kit.balance(nocards) == 10**6
    # the session fee is accepted separately: 39 c/kWh with no fee refuses the same session
    _d2, i2 = kit.driver(max_per_kwh=50, max_session_fee=0)
    assert kit.settle([Row(st, i2, 1500, 1800, 109)]).unpaid  # 75 c + 0 allowed
    assert not kit.settle([Row(st, i2, 1500, 1800, 76)]).unpaid


def test_app_sessions_are_paid_only_as_the_driver_signed(kit: Kit) -> None:
    _, st = kit.host()
    _, other_station = kit.host()
    d, di = kit.driver(allow_cards=False)
    stranger = kit.account()

    def row(auth: Authorization, amount: int = 100, station: int = st) -> Row:
        return Row(station, di, 1500, 1800, amount, SIGNED, auth)

    good = signed(kit, d, st, nonce=1)
    forged = sign(Authorization(d.address, st, 40, 0, 50, 500, 2, kit.now() + 3600),
                  stranger.key, kit.chain.chain_id, kit.chain.contract_address or "")
    other_domain = sign(Authorization(d.address, st, 40, 0, 50, 500, 3, kit.now() + 3600),
                        d.key, kit.chain.chain_id + 1, kit.chain.contract_address or "")
    s = kit.settle([
        row(good),
        row(signed(kit, d, st, nonce=4), station=other_station),  # signed for another station
        row(signed(kit, d, st, nonce=5, max_amount=90)),  # above the amount signed
        row(signed(kit, d, st, nonce=6, max_per_kwh=10, max_session_fee=0)),  # above prices
        row(forged), row(other_domain),
        row(signed(kit, d, st, nonce=7, expiry=kit.now() - 1)),
        Row(st, di, 1500, 1800, 100, SIGNED, None),  # no authorization at all
    ])
    f = s.first_seq
    assert s.unpaid == {f + 1: BAD_AUTHORIZATION, f + 2: ABOVE_SESSION_LIMIT,
                        f + 3: ABOVE_PRICES, f + 4: BAD_AUTHORIZATION, f + 5: BAD_AUTHORIZATION,
                        f + 6: AUTHORIZATION_EXPIRED, f + 7: BAD_AUTHORIZATION}
    assert s.paid == 100 and kit.balance(d) == 10**6 - 100
    # the signed session is not payable twice, in this chunk or a later one
    again = kit.settle([row(good), row(good)])
    assert again.unpaid == {again.first_seq: NONCE_USED, again.first_seq + 1: NONCE_USED}


def test_exposure_per_session_per_day_and_energy_is_bounded_by_the_chain(kit: Kit) -> None:
    _, st = kit.host(max_power_w=11_000)  # an 11 kW wallbox
    d, di = kit.driver(max_per_kwh=40, max_session_fee=0, max_per_session=300,
                       max_per_day=500)
    s = kit.settle([
        Row(st, di, 11_000, 3600, 300),  # 11 kWh in an hour: plausible, 440 c allowed, 300
        Row(st, di, 13_000, 3600, 200),  # 13 kWh in an hour from 11 kW: invented energy
        Row(st, di, 9_000, 3600, 301),  # above the per-session maximum
        Row(st, di, 9_000, 3600, 200),  # 300 + 200 = 500: the daily limit, paid
        Row(st, di, 100, 600, 1),  # 501 today: refused
    ])
    f = s.first_seq
    assert s.unpaid == {f + 1: ABOVE_STATION_POWER, f + 2: ABOVE_SESSION_LIMIT,
                        f + 4: ABOVE_DAILY_LIMIT}
    assert kit.balance(d) == 10**6 - 500
    kit.advance(86_400)  # the next day has its own limit
    assert not kit.settle([Row(st, di, 100, 600, 1)]).unpaid


def test_hosts_and_the_platform_get_exactly_what_drivers_paid(kit: Kit) -> None:
    h1, s1 = kit.host()
    h2, s2 = kit.host()
    d1, i1 = kit.driver()
    d2, i2 = kit.driver()
    rows = [Row(s1, i1, 1000, 1800, 90), Row(s2, i1, 1000, 1800, 70),
            Row(s1, i2, 1000, 1800, 40), Row(s2, i2, 1000, 1800, 20),
            Row(s1, i2, 1000, 1800, 10**6)]  # more than the escrow: unpaid, no credit
    s = kit.settle(rows)
    assert s.unpaid == {s.first_seq + 4: ABOVE_PRICES}
    assert kit.balance(d1) == 10**6 - 160 and kit.balance(d2) == 10**6 - 60
    # each host: its sessions less 5%; the platform: the 5% (rounded down per host)
    assert (kit.earnings(h1.address), kit.earnings(h2.address)) == (124, 86)
    assert kit.earnings(kit.chain.operator.address) == 10
    assert 124 + 86 + 10 == 220
    # hosts withdraw to any address
    to = kit.account().address
    before = kit.w3.eth.get_balance(to)
    wallet.withdraw_earnings(kit.chain, h1, to)
    assert kit.w3.eth.get_balance(to) - before == 124 and kit.earnings(h1.address) == 0
    with reverts("nothing earned"):
        wallet.withdraw_earnings(kit.chain, h1)


def test_the_platform_fee_is_capped_at_deploy(tmp_path: Path) -> None:
    with reverts("fee above the maximum"):
        make_kit("memory", tmp_path / "a", fee_bps=2001)  # type: ignore[arg-type]


def test_nothing_is_paid_twice(kit: Kit) -> None:
    _, st = kit.host()
    d, di = kit.driver()
    rows = [Row(st, di, 1000, 1800, 50), Row(st, di, 1000, 1800, 50)]
    s = kit.settle(rows)
    assert s.first_seq == 1 and kit.chain.ledger_next(kit.ledger) == 3
    # the same chunk again (a second anchor, a restored backup): refused by the chain
    with reverts("not the ledger's next sequence number"):
        kit.settle(rows, first_seq=1)
    with reverts("not the ledger's next sequence number"):
        kit.settle(rows, first_seq=2)
    assert kit.balance(d) == 10**6 - 100
    # another database shares the contract with a ledger of its own
    other = kit.ledger + 1
    s2 = kit.settle(rows, ledger=other)
    assert s2.first_seq == 1 and kit.chain.ledger_next(kit.ledger) == 3
    # and only the operator settles
    stranger = kit.account()
    entries, auths = kit.entries(rows)
    with reverts("only the operator"):
        kit.chain.transact(stranger, "settle", kit.ledger, 3, entries, auths)
    with reverts("only the operator"):
        kit.chain.transact(stranger, "register_ledger", 42)


def test_no_driver_input_can_stall_a_chunk(kit: Kit) -> None:
    _, st = kit.host()
    honest, hi = kit.driver()
    # a driver sets every term to its largest value, another to zero, a third empties
    # its escrow: none of it may revert the chunk or stop the honest driver's payment
    greedy, gi = kit.driver(max_per_kwh=2**24 - 1, max_per_minute=2**24 - 1,
                            max_session_fee=2**24 - 1, max_per_session=2**32 - 1,
                            max_per_day=2**32 - 1)
    _zero, zi = kit.driver(max_per_kwh=0, max_session_fee=0, max_per_session=0, max_per_day=0)
    _broke, bi = kit.driver(deposit=0)
    with reverts("out of range"):  # bounded terms: the driver's own call fails
        wallet.set_terms(kit.chain, greedy, wallet.DriverTerms(2**24, 0, 0, 0, 0))
    rows = [Row(st, gi, 2**32 - 1, 2**32 - 1, 2**48 - 1), Row(st, zi, 1000, 1800, 50),
            Row(st, bi, 1000, 1800, 50), Row(st, hi, 1000, 1800, 50),
            Row(st, hi, 1000, 1800, 50, 9)]  # an unknown kind
    s = kit.settle(rows)
    f = s.first_seq
    assert s.unpaid[f + 1] in (ABOVE_PRICES, ABOVE_SESSION_LIMIT)
    assert s.unpaid[f + 2] == ESCROW_TOO_LOW and s.unpaid[f + 4] == UNKNOWN_KIND
    assert f + 3 not in s.unpaid and kit.balance(honest) == 10**6 - 50
    assert f in s.unpaid  # 2^48 units: above the greedy driver's own escrow


def test_lower_terms_and_withdrawals_wait_for_the_notice(kit: Kit) -> None:
    _, st = kit.host()
    d, di = kit.driver(max_per_kwh=40, max_session_fee=50)
    # the driver lowers its price after charging: the session already charged is paid
    wallet.set_terms(kit.chain, d, wallet.DriverTerms(max_per_kwh=10, max_session_fee=0,
                                                       allow_cards=False))
    state = kit.chain.driver_state(d.address)
    assert state.terms.max_per_kwh == 40 and state.pending_terms is not None
    assert state.pending_terms.max_per_kwh == 10
    assert not kit.settle([Row(st, di, 1500, 1800, 100)]).unpaid
    # ... and withdraws: the escrow still pays during the notice
    wallet.request_withdrawal(kit.chain, d, 10**6)
    with reverts("notice period not over"):
        wallet.withdraw(kit.chain, d)
    assert not kit.settle([Row(st, di, 1500, 1800, 100)]).unpaid
    kit.advance(NOTICE + 1)
    # after the notice: the lower terms apply (no card sessions any more)
    s = kit.settle([Row(st, di, 1500, 1800, 10)])
    assert s.unpaid == {s.first_seq: CARDS_NOT_ALLOWED}
    to = kit.account().address
    before = kit.w3.eth.get_balance(to)
    wallet.withdraw(kit.chain, d, to)
    assert kit.w3.eth.get_balance(to) - before == 10**6 - 200
    # raising the terms again applies at once
    wallet.set_terms(kit.chain, d, wallet.DriverTerms(max_per_kwh=60, max_session_fee=50))
    wallet.deposit(kit.chain, d, 1000)
    assert not kit.settle([Row(st, di, 1500, 1800, 130)]).unpaid


def test_payments_reach_smart_contract_wallets(kit: Kit) -> None:
    host, st = kit.host()
    d, di = kit.driver()
    multisig = kit.deploy("ContractWallet")  # receiving costs more than 2,300 gas
    assert not kit.settle([Row(st, di, 2000, 1800, 100)]).unpaid
    wallet.withdraw_earnings(kit.chain, host, multisig.address)
    assert multisig.functions.received().call() == 95
    wallet.request_withdrawal(kit.chain, d, 500)
    kit.advance(NOTICE + 1)
    wallet.withdraw(kit.chain, d, multisig.address)
    assert multisig.functions.received().call() == 95 + 500
    assert multisig.functions.payments().call() == 2


def test_a_fee_on_transfer_token_is_credited_what_arrives(tmp_path: Path) -> None:
    probe = make_kit("memory", tmp_path / "probe")
    token = probe.deploy("FeeToken")
    kit = Kit(probe.chain)
    kit.chain.deploy(NOTICE, token.address, 1, None, FEE_BPS)
    d = kit.account()
    kit.call(d, token, "mint", d.address, 10_000)
    wallet.deposit(kit.chain, d, 10_000)  # 1% is burned on the way
    state = kit.chain.driver_state(d.address)
    assert state.balance == 9_900
    assert token.functions.balanceOf(kit.chain.contract_address).call() == 9_900
    with reverts("deposit_token"):
        kit.chain.transact(d, "deposit", value=1)
    # with a billing unit of 100 base units, 1% of a deposit is not a whole unit: refused
    probe2 = make_kit("memory", tmp_path / "probe2")
    token2 = probe2.deploy("FeeToken")
    probe2.chain.deploy(NOTICE, token2.address, 100, None, FEE_BPS)
    d2 = probe2.account()
    probe2.call(d2, token2, "mint", d2.address, 10_050)
    with reverts("whole number of billing units|revert"):
        wallet.deposit(probe2.chain, d2, 10_050)  # 9,950 arrive: 99.5 units


def test_escrows_cannot_be_squatted_or_moved_by_others(kit: Kit) -> None:
    _, _st = kit.host()
    d, di = kit.driver()
    stranger = kit.account()
    # an escrow is keyed by its owner's address: a stranger's calls touch its own
    wallet.set_terms(kit.chain, stranger, wallet.DriverTerms(max_per_kwh=1))
    wallet.deposit(kit.chain, stranger, 7)
    assert kit.chain.driver_state(d.address).terms.max_per_kwh == 40
    assert kit.balance(d) == 10**6
    with reverts("not a driver"):
        wallet.request_withdrawal(kit.chain, kit.account(), 1)
    wallet.request_withdrawal(kit.chain, stranger, 10**6)
    kit.advance(NOTICE + 1)
    wallet.withdraw(kit.chain, stranger)
    assert kit.balance(d) == 10**6 and kit.balance(stranger) == 0
    # a card link is the driver's own: it proves nothing about anyone else's tag
    commitment = wallet.link_card(kit.chain, d, "04A2B3C4", b"\x01" * 32)
    assert kit.chain.card_linked(di, commitment)
    assert not kit.chain.card_linked(kit.chain.driver_state(stranger.address).index,
                                     commitment)


def test_the_chunk_digest_commits_to_every_entry(kit: Kit) -> None:
    _, st = kit.host()
    _, di = kit.driver()
    rows = [Row(st, di, 1000 + i, 1800, 10 + i, record_hash=bytes([i + 1]) * 32)
            for i in range(5)]
    s = kit.settle(rows)
    entries, _ = kit.entries(rows)
    # the same entries give the stored digest; one changed amount does not
    assert kit.chain.chunk_digest(kit.ledger, s.first_seq) == s.digest
    assert "0x" + chunk_digest(kit.ledger, s.first_seq, entries).hex() == s.digest
    changed = [*entries[:2], (entries[2][0], entries[2][1] + (1 << 120)), *entries[3:]]
    assert "0x" + chunk_digest(kit.ledger, s.first_seq, changed).hex() != s.digest
    # the entries are read back from the transaction's own input
    assert Web3.is_address(kit.chain.contract_address)


def test_the_chain_never_sees_a_tag_station_id_or_time(kit: Kit) -> None:
    """What a settle transaction reveals: indexes, energy, duration, amounts, hashes."""
    _, st = kit.host()
    d, di = kit.driver()
    wallet.link_card(kit.chain, d, "04A2B3C4", b"\x02" * 32)
    s = kit.settle([Row(st, di, 1000, 1800, 50)])
    assert s.paid == 50
    # the commitment on chain is salted: the tag's own hash is nowhere
    from eth_hash.auto import keccak

    logs = kit.w3.eth.get_logs({"address": kit.chain.contract_address, "fromBlock": 0})
    blob = b"".join(bytes(entry["data"]) + b"".join(bytes(t) for t in entry["topics"])
                    for entry in logs)
    assert bytes(keccak(b"04A2B3C4")) not in blob and b"04A2B3C4" not in blob
    assert CARD == 0


def test_the_settle_call_is_encoded_as_the_contracts_abi_says(tmp_path: Path) -> None:
    """The worker encodes settle calls itself (fast); web3's encoder from the compiled
    ABI must produce the same bytes, for entries and authorizations at their limits."""
    chain = open_chain("memory", tmp_path / "chain")
    try:
        entries = [(bytes([i]) * 32, (2**200 - 1) // (i + 1)) for i in range(1, 40)]
        auths = [(2**232 - 7, b"\x01" * 32, b"\xff" * 32), (0, b"\x00" * 32, b"\x80" * 32)]
        for args in ((1, 1, entries, auths), (2**255, 0, entries[:1], []), (7, 3, [], [])):
            assert "0x" + chain.settle_calldata(*args).hex() == chain.contract.encode_abi(
                "settle", args=args)
    finally:
        chain.close()


def test_a_signed_entry_refused_early_does_not_shift_the_next_ones_authorizations(
        kit: Kit) -> None:
    """Each signed entry has its authorization in ``auths``, in order (the worker sends one
    per signed entry). A signed entry refused before its authorization is read (a station
    reporting more energy than its power allows, a driver without an escrow) must not hand
    its authorization to the next signed entry: another driver's session, signed and within
    everything it signed, is paid."""
    _, faulty = kit.host(max_power_w=11_000)  # reports energy it cannot have delivered
    _, st = kit.host()
    a, ai = kit.driver(allow_cards=False)
    b, bi = kit.driver(allow_cards=False)
    assert ai < bi  # the worker sorts a chunk by driver index
    s = kit.settle([
        Row(faulty, ai, 50_000, 3600, 100, SIGNED, signed(kit, a, faulty, nonce=1)),
        Row(st, bi, 1500, 1800, 100, SIGNED, signed(kit, b, st, nonce=1)),
    ])
    assert s.unpaid == {s.first_seq: ABOVE_STATION_POWER}  # B's session is B's to pay
    assert kit.balance(b) == 10**6 - 100


def test_a_stranger_cannot_use_up_the_station_indexes(kit: Kit) -> None:
    """Anyone may register a station: 2^24 indexes (~4x10^11 gas) were within a stranger's
    reach on a cheap chain, and every new host was then refused. Past 2^24 a station's
    index goes on: its sessions, card or signed, are paid to its host."""
    kit.set_storage("station_count", 2**24 - 1)  # 16,777,215 stations registered
    host, st = kit.host()
    assert st == 2**24
    other, st2 = kit.host()
    assert st2 == 2**24 + 1
    d, di = kit.driver()
    s = kit.settle([Row(st, di, 1500, 1800, 100),
                    Row(st2, di, 1000, 1800, 60, SIGNED, signed(kit, d, st2)),
                    Row(st, di, 1500, 1800, 50, SIGNED, signed(kit, d, st2, nonce=2))])
    # the last was signed for the other station, not for this one
    assert s.unpaid == {s.first_seq + 2: BAD_AUTHORIZATION}
    assert s.paid == 160 and kit.balance(d) == 10**6 - 160
    assert kit.earnings(host.address) == 95 and kit.earnings(other.address) == 57
    assert kit.chain.station(st) == (host.address, 22_000)
    # the indexes end at 2^40 - 1: ~2.6x10^16 gas of registrations, out of any chain's reach
    kit.set_storage("station_count", 2**40 - 2)
    assert kit.host()[1] == 2**40 - 1
    with reverts("too many stations"):
        kit.host()


def test_an_entry_with_bits_above_its_fields_is_not_paid(kit: Kit) -> None:
    """The contract reads every bit above the slot as the station's high bits: an entry
    with a bit no honest entry sets names a station nobody registered, and is not paid
    (not read as its low fields' station, credited to that station's host)."""
    host, st = kit.host()
    _, di = kit.driver()
    s = kit.settle([Row(st, di, 1500, 1800, 100, forged_bits=1 << 184),
                    Row(st, di, 1500, 1800, 100, forged_bits=1 << 200),
                    Row(st, di, 1500, 1800, 100, forged_bits=1 << 255),
                    Row(st, di, 1500, 1800, 100)])
    f = s.first_seq
    assert s.unpaid == {f: UNKNOWN_STATION, f + 1: UNKNOWN_STATION, f + 2: UNKNOWN_STATION}
    assert s.paid == 100 and kit.earnings(host.address) == 95
    # in the honest entry's slot, the forged one is another station there: the chunk reverts
    entries, _ = kit.entries([Row(st, di, 1500, 1800, 100),
                              Row(st, di, 1500, 1800, 100)])
    entries[1] = (entries[1][0], entries[1][1] | 1 << 184)
    with reverts("station slots out of order"):
        kit.c.functions.settle(kit.ledger, kit.chain.ledger_next(kit.ledger), entries,
                               []).call({"from": kit.chain.operator.address})
