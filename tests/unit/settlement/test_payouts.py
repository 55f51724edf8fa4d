"""Netted payout lines: grouping, order, chunks and the hash chain (pure)."""

from __future__ import annotations

from typing import Any

from eth_abi.abi import encode
from eth_hash.auto import keccak

from settlement.payouts import LINE_TYPE, Line, chain_hashes, chunked, net_lines

A = "0x" + "aa" * 20
B = "0x" + "bb" * 20


def rec(tag: str, energy: int, price: int, payee: str | None = A) -> dict[str, Any]:
    return {"id_tag_hash": "0x" + bytes(keccak(tag.encode())).hex(), "energy_wh": energy,
            "price_minor": price, "payee": payee}


def th(tag: str) -> bytes:
    return bytes(keccak(tag.encode()))


def test_one_line_per_driver_and_payee_in_a_stable_order() -> None:
    records = [rec("T1", 1000, 40), rec("T2", 500, 20), rec("T1", 2000, 80),
               rec("T1", 300, 12, B), rec("T3", 0, 0), rec("T4", 100, 5, None)]
    lines = net_lines(records)
    assert sorted(lines, key=lambda x: (x.payee, x.tag_hash)) == lines
    assert {(x.tag_hash, x.payee): (x.energy_wh, x.amount) for x in lines} == {
        (th("T1"), A): (3000, 120), (th("T2"), A): (500, 20), (th("T1"), B): (300, 12)}
    assert net_lines(list(reversed(records))) == lines  # a rebuilt batch gives the same lines


def test_chunks_are_chained_from_the_anchored_head() -> None:
    lines = [Line(th(f"T{i}"), A, i, i) for i in range(5)]
    chunks = chunked(lines, 2)
    assert [len(c) for c in chunks] == [2, 2, 1]
    hashes = chain_hashes(chunks)

    def h(chunk: list[Line], following: bytes) -> bytes:
        return bytes(keccak(encode([LINE_TYPE, "bytes32"],
                                   [[x.as_tuple() for x in chunk], following])))

    assert hashes[2] == h(chunks[2], bytes(32))
    assert hashes[1] == h(chunks[1], hashes[2])
    assert hashes[0] == h(chunks[0], hashes[1])
    assert chain_hashes(chunked([*lines[:4], Line(th("T4"), A, 4, 5)], 2))[0] != hashes[0]
    assert Line.from_json(lines[3].as_json()) == lines[3]
