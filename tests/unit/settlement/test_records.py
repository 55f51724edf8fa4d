"""The canonical session record, its packed on-chain entry and the chunk digest (pure)."""

from __future__ import annotations

from typing import Any

import pytest
from eth_abi.abi import encode as abi_encode
from eth_hash.auto import keccak

from settlement.records import (
    CARD,
    LIMITS,
    RECORD_FIELDS,
    SIGNED,
    EntryTooLarge,
    canonical,
    card_commitment,
    chunk_digest,
    entry_of,
    pack_entry,
    record_hash,
    unpack_entry,
)


def record(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {f: None for f in RECORD_FIELDS}
    base.update(ledger="7", seq=1, session_id=1, station_id="CP1", chain_station=3,
                energy_wh=3500, duration_s=3600, price_minor=137, kind=CARD, driver_index=2)
    base.update(changes)
    return base


@pytest.mark.parametrize("values", [
    (0, 0, 0, 0, 0, CARD, 0),
    (1, 2, 3500, 3600, 137, SIGNED, 5),
    (2**24 - 1, 2**32 - 1, 2**32 - 1, 2**32 - 1, 2**48 - 1, SIGNED, 255),
    (2**24, 1, 2, 3, 4, CARD, 0),
    (2**40 - 1, 2**32 - 1, 2**32 - 1, 2**32 - 1, 2**48 - 1, SIGNED, 255),
])
def test_pack_and_unpack_round_trip(values: tuple[int, ...]) -> None:
    station, driver, energy, duration, amount, kind, slot = values
    assert unpack_entry(pack_entry(*values)) == {
        "chain_station": station, "driver_index": driver, "energy_wh": energy,
        "duration_s": duration, "price_minor": amount, "kind": kind, "slot": slot}


@pytest.mark.parametrize("name", sorted(LIMITS))
def test_a_value_beyond_its_bits_does_not_fit(name: str) -> None:
    args = {"station": 0, "driver_index": 0, "energy_wh": 0, "duration_s": 0, "amount": 0,
            "kind": CARD}
    key = {"chain_station": "station", "price_minor": "amount"}.get(name, name)
    args[key] = 2 ** LIMITS[name]
    with pytest.raises(EntryTooLarge, match=name):
        pack_entry(**args)
    args[key] = -1
    with pytest.raises(EntryTooLarge):
        pack_entry(**args)


def test_an_entry_of_a_station_below_2_24_is_the_word_it_always_was() -> None:
    """The 24-bit layout, written out by hand: receipts settled under it verify unchanged."""
    assert pack_entry(0xABCDEF, 0x01020304, 3500, 3600, 137, SIGNED, 7) == int(
        "0701" "000000000089" "00000e10" "00000dac" "01020304" "abcdef", 16)
    assert entry_of(record(), 0)[1] == 3 | 2 << 24 | 3500 << 56 | 3600 << 88 | 137 << 120


def test_a_station_past_2_24_puts_its_high_bits_above_the_slot() -> None:
    packed = pack_entry(0x12_3456_789A, 1, 0, 0, 0, CARD, 9)
    assert packed & (2**24 - 1) == 0x56_789A and packed >> 176 == 0x1234_09


@pytest.mark.parametrize("bit", [184, 199, 200, 255])
def test_every_bit_above_the_slot_is_read_as_the_stations(bit: int) -> None:
    """As the contract reads it: a bit above the 40 names a station no one can register,
    not the station of the low bits."""
    packed = pack_entry(5, 1, 0, 0, 0, CARD, 0) | 1 << bit
    station = unpack_entry(packed)["chain_station"]
    assert station == 5 | 1 << (bit - 160)
    assert (station >= 2 ** LIMITS["chain_station"]) == (bit >= 200)


def test_unknown_kind_and_slot_are_refused() -> None:
    with pytest.raises(ValueError, match="kind"):
        pack_entry(0, 0, 0, 0, 0, 2)
    with pytest.raises(EntryTooLarge, match="slot"):
        pack_entry(0, 0, 0, 0, 0, CARD, 256)


def test_the_record_hash_is_the_keccak_of_the_canonical_json() -> None:
    r = record()
    assert record_hash(r) == bytes(keccak(canonical(r)))
    assert canonical({"b": 1, "a": "é"}) == '{"a":"é","b":1}'.encode()
    assert record_hash(dict(reversed(list(r.items())))) == record_hash(r)  # key order
    assert record_hash({**r, "not_committed": 1}) == record_hash(r)


@pytest.mark.parametrize("name", RECORD_FIELDS)
def test_every_field_is_committed(name: str) -> None:
    r = record()
    assert record_hash({**r, name: "changed"}) != record_hash(r)
    missing = dict(r)
    del missing[name]
    with pytest.raises(ValueError, match=name):
        record_hash(missing)


def test_the_meter_key_is_committed_when_present() -> None:
    r = record()
    assert record_hash({**r, "meter_public_key": "3059"}) != record_hash(r)
    assert record_hash({**r, "meter_public_key": "3059"}) != \
        record_hash({**r, "meter_public_key": "3060"})


def test_the_session_limit_is_committed_when_present() -> None:
    """A record billed at its session's limit commits the limit; a record without one
    (every record before limits were) hashes as it always did."""
    r = record()
    assert record_hash(r) == bytes(keccak(canonical(r)))
    assert record_hash({**r, "limit_minor": 120}) == \
        bytes(keccak(canonical({**r, "limit_minor": 120})))
    assert record_hash({**r, "limit_minor": 120}) != record_hash({**r, "limit_minor": 121})


def test_entry_of_packs_the_record() -> None:
    rhash, packed = entry_of(record(), 4)
    assert rhash == record_hash(record())
    assert unpack_entry(packed) == {"chain_station": 3, "driver_index": 2, "energy_wh": 3500,
                                    "duration_s": 3600, "price_minor": 137, "kind": CARD,
                                    "slot": 4}


def test_the_chunk_digest_is_a_hash_chain_in_order() -> None:
    a, b = (b"\x01" * 32, 5), (b"\x02" * 32, 6)
    h0 = bytes(keccak(abi_encode(["uint256", "uint256"], [7, 10])))
    h1 = bytes(keccak(h0 + a[0] + a[1].to_bytes(32, "big")))
    h2 = bytes(keccak(h1 + b[0] + b[1].to_bytes(32, "big")))
    assert chunk_digest(7, 10, []) == h0
    assert chunk_digest(7, 10, [a, b]) == h2
    assert chunk_digest(7, 10, [b, a]) != h2
    assert chunk_digest(7, 11, [a, b]) != h2 and chunk_digest(8, 10, [a, b]) != h2


def test_card_commitment() -> None:
    driver = "0x" + "11" * 20
    salt = b"\x05" * 32
    expected = bytes(keccak(abi_encode(["address", "string", "bytes32"], [driver, "T1", salt])))
    assert card_commitment(driver, "T1", salt) == expected
    assert card_commitment(driver, "T2", salt) != expected
    with pytest.raises(ValueError, match="32 bytes"):
        card_commitment(driver, "T1", b"short")
