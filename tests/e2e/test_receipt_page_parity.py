"""Receipts on which the page's verifier (web/verify/src under Node: the modules the
page bundles) and ``verify_receipt`` (``csms verify``) reach different verdicts. Each is an
operator's receipt whose hashes and entry add up (not settled on a chain: the offline checks
already disagree, and the chain checks come after them)."""

from __future__ import annotations

import base64
import copy
import json
import shutil
import subprocess
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from eth_hash.auto import keccak

from settlement.receipts import ReceiptError, verify_receipt
from settlement.records import OPTIONAL_FIELDS, RECORD_FIELDS, chunk_digest
from support import IN_CI

from .test_receipt_page import (
    _NODE_VERIFIER,
    ROOT,
    _generated,
    _Meter,
    _offline_receipt,
    _sample,
    _sealed,
)

T0 = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)


def _base() -> dict[str, Any]:
    return _offline_receipt([], start="1000", stop="3000", started=T0,
                            stopped=T0 + timedelta(minutes=30), tag="TAG", key=None)


def _record(**fields: Any) -> dict[str, Any]:
    """The base receipt with record ``fields`` changed, its hashes computed again."""
    base = _base()
    return _sealed({**base["record"], **fields}, base["samples"])


def _hashed_as_the_page_does(**fields: Any) -> dict[str, Any]:
    """As _record, the record hash computed as the page computes it for a text holding a
    lone surrogate (JSON.stringify writes it \\udXXX; Python cannot encode it at all)."""
    base = _base()
    record = {**base["record"], **fields}
    sealed = _sealed({**record, **{k: "x" for k in fields}}, base["samples"])
    names = RECORD_FIELDS + tuple(f for f in OPTIONAL_FIELDS if f in record)
    text = json.dumps({f: record[f] for f in names}, sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False)
    text = "".join(f"\\u{ord(c):04x}" if 0xD800 <= ord(c) <= 0xDFFF else c for c in text)
    rhash = bytes(keccak(text.encode()))
    packed = int(sealed["entry"]["packed"], 16)
    sealed["record"] = record
    sealed["entry"]["record_hash"] = "0x" + rhash.hex()
    sealed["chunk"]["digest"] = "0x" + chunk_digest(7, 1, [(rhash, packed)]).hex()
    return sealed


def _p256() -> _Meter:
    from cryptography.hazmat.primitives.asymmetric import ec

    return _Meter(ec.SECP256R1(), "ECDSA-secp256r1-SHA256")


def _two_meters() -> dict[str, Any]:
    """A begin signed by one key and an end by another (the same serial, pages in order),
    each key in its 2.0.1 sample, none committed by the record: each signature verifies
    with its own sample's key."""
    first, second = _p256(), _p256()
    t1 = T0 + timedelta(minutes=30)

    def wrapped(meter: _Meter, container: str) -> dict[str, Any]:
        return {"signedMeterData": base64.b64encode(container.encode()).decode(),
                "signingMethod": "ECC256", "encodingMethod": "OCMF",
                "publicKey": meter.public("der")}

    samples = [_sample(T0, "Transaction.Begin",
                       wrapped(first, first.container("B", 10_000, T0, "TAG0"))),
               _sample(t1, "Transaction.End",
                       wrapped(second, second.container("E", 12_500, t1, "TAG0", page=2)))]
    return _offline_receipt(samples, start="10000", stop="12500", started=T0, stopped=t1,
                            tag="TAG0", key=None)


def _intermediate_only(stop: str) -> dict[str, Any]:
    """The meter's signed begin and end left out, its intermediate reading (TX "C", 12,000
    Wh, 30 s before the stop) kept; the station's unsigned start (10,000 Wh) and ``stop``
    billed. The reading bounds the stop (4 MW, 60 s and 1 % slack: 101,000 Wh after it)."""
    meter = _p256()
    t1 = T0 + timedelta(minutes=30)
    at = t1 - timedelta(seconds=30)
    samples = [_sample(at, "Sample.Periodic",
                       {"signedData": meter.container("C", 12_000, at, "TAG0")})]
    return _offline_receipt(samples, start="10000", stop=stop, started=T0, stopped=t1,
                            tag="TAG0", key=meter.public("der"))


def _alfen(begin_status: int) -> dict[str, Any]:
    """An Alfen pair (the layout of support.alfen_vectors, a test key) whose begin record
    carries ``begin_status`` (bit 26: the adapter's meter reading mismatch)."""
    from cryptography.hazmat.primitives.asymmetric import ec

    from csms.metering.alfen import key_der
    from support.alfen_vectors import SIM_UID, signed_record

    key = ec.generate_private_key(ec.SECP192R1())
    at = 1577957836  # 2020-01-02T09:37:16Z
    started = datetime.fromtimestamp(at - 1, UTC)
    stopped = started + timedelta(minutes=4)
    samples = [
        _sample(started, "Transaction.Begin", {"signedData": signed_record(
            key, "0", 111133, at, 171, status=begin_status)}),
        _sample(stopped, "Transaction.End", {"signedData": signed_record(
            key, "1", 111271, at + 199, 172, status=0x20000000)})]
    from cryptography.hazmat.primitives import serialization as ser

    point = key.public_key().public_bytes(ser.Encoding.X962, ser.PublicFormat.CompressedPoint)
    return _offline_receipt(samples, start="111133", stop="111271", started=started,
                            stopped=stopped, tag=SIM_UID, key=key_der(point))


def _said(part: str, name: str, value: Any) -> Callable[[], dict[str, Any]]:
    """The base receipt with ``name`` of its ``part`` (outside the record: what the chain
    is asked about) written as ``value``."""

    def receipt() -> dict[str, Any]:
        base = _base()
        return {**base, part: {**base[part], name: value}}

    return receipt


def _surrogate_in_a_sample() -> dict[str, Any]:
    base = _base()
    return {**base, "samples": [{"timestamp": T0.isoformat(), "value": "\udfff"}]}


CASES: dict[str, Any] = {
    "untouched": _base,
    # datetime.fromisoformat (Python 3.11) and the page's isotime.js read other times
    "an ISO week date": lambda: _record(started_at="2026-W09-7T10:00:00+00:00"),
    "seconds with an empty fraction": lambda: _record(started_at="2026-03-01T10:00:00.+00:00"),
    "an offset of 25 hours": lambda: _record(started_at="2026-03-01T10:00:00+25:00",
                                             stopped_at="2026-03-01T10:30:00+25:00"),
    "the year 0": lambda: _record(started_at="0000-01-01T10:00:00",
                                  stopped_at="0000-01-01T10:30:00"),
    # a lone surrogate: Python cannot encode the record, the page hashes it escaped
    "a lone surrogate in a text": lambda: _hashed_as_the_page_does(station_id="CP\ud800"),
    "a lone surrogate in a sample": _surrogate_in_a_sample,
    # what the central system writes: read by both
    "a start with microseconds": lambda: _record(started_at="2026-03-01T10:00:00.000001+00:00"),
    # other forms of a time: refused by both
    "a time in Z": lambda: _record(started_at="2026-03-01T10:00:00Z"),
    "a time at +01:00": lambda: _record(started_at="2026-03-01T11:00:00+01:00",
                                        stopped_at="2026-03-01T11:30:00+01:00"),
    "February 30": lambda: _record(started_at="2026-02-30T10:00:00+00:00"),
    # the record's integers written otherwise: the entry packs them all the same
    "the kind as text": lambda: _record(kind="0"),
    "an app session's kind as text": lambda: _record(kind="1"),
    "the kind as true": lambda: _record(kind=True),
    "the sequence number as text": lambda: _record(seq="1"),
    "the unit as a float": lambda: _record(unit=1.0),
    # signed meter data without a committed key: one key for the session, named as such
    "signed, the key in the message, none committed":
        lambda: _generated(_p256(), pin=None, message="der", wrap="v201"),
    "begin and end signed by two keys, none committed": _two_meters,
    # neither begin nor end signed: the intermediate reading bounds the unsigned stop
    "only an intermediate reading signed, the stop far beyond it":
        lambda: _intermediate_only("200000"),
    "only an intermediate reading signed, the stop within its bound":
        lambda: _intermediate_only("12500"),
    # Alfen's status word: bit 26 (meter reading mismatch) is an error, bit 28 information
    "an Alfen begin with a meter reading mismatch": lambda: _alfen(0x10000000 | 1 << 26),
    "an Alfen begin without": lambda: _alfen(0x10000000),
    # a field the record hash does not commit: a figure the chain never saw beside the ones
    # it did (a total in another currency, a second energy)
    "a field beyond the committed ones": lambda: _record(total="9.99 EUR"),
    # the figures outside the record, each read against the chain: written otherwise than
    # the central system writes them, int() read them as another (100.9 as 100) or the same
    # (" 100", "1_00", true as 1), and the chain's figure passed for the receipt's
    "the amount paid as a float": _said("payment", "amount", 100.9),
    "the amount paid as text": _said("payment", "amount", "100"),
    "the amount paid with a blank": _said("payment", "amount", " 100"),
    "the amount paid with an underscore": _said("payment", "amount", "1_00"),
    "the unit paid in as true": _said("payment", "unit", True),
    "paid as the text false": _said("payment", "paid", "false"),
    "paid as 1": _said("payment", "paid", 1),
    "the unpaid reason as text": _said("payment", "reason", "2"),
    "the position as false": _said("entry", "position", False),
    "the position as a float": _said("entry", "position", 0.9),
    "the packed entry without 0x": lambda: _said("entry", "packed",
                                                 _base()["entry"]["packed"][2:])(),
    "the packed entry with a blank": lambda: _said("entry", "packed",
                                                   " " + _base()["entry"]["packed"])(),
    "the chunk's count as a float": _said("chunk", "count", 1.5),
    "the first sequence number as text": _said("chunk", "first_seq", "1"),
    "the ledger with a leading zero": _said("chunk", "ledger", "07"),
    "the ledger as a float": _said("chunk", "ledger", 7.0),
    "the chain id as a float": _said("chain", "chain_id", 31337.4),
    "the block number as text": _said("chain", "block_number", "1"),
    # a field beside the ones the central system writes, which no verifier checks
    "a fee beside the payment": _said("payment", "fee", 5),
    "a second block beside the chain": _said("chain", "block", 2),
    "a total beside the receipt": lambda: {**_base(), "total": "9.99 EUR"},
    # station indexes past 2^24 (40 bits: the high ones above the slot); bits above the
    # slot that the record's station does not have; an index beyond 40 bits
    "a station past 2^24": lambda: _record(chain_station=2**24 + 5),
    "a station's high bits forged": lambda: _forged_bits(1 << 184),
    "a bit above the station's 40 forged": lambda: _forged_bits(1 << 200),
    "a station of 2^40": lambda: _said("record", "chain_station", 2**40)(),
    # as the central system writes them: read by both
    "the ledger as an integer": _said("chunk", "ledger", 7),
    "a reason as an integer": _said("payment", "reason", 2),
}


def _forged_bits(bits: int) -> dict[str, Any]:
    """The base receipt with ``bits`` set in its entry (the chunk digest computed again)."""
    receipt = _base()
    packed = int(receipt["entry"]["packed"], 16) | bits
    receipt["entry"]["packed"] = hex(packed)
    rhash = bytes.fromhex(receipt["entry"]["record_hash"][2:])
    receipt["chunk"]["digest"] = "0x" + chunk_digest(7, 1, [(rhash, packed)]).hex()
    return receipt


# what both must say (not only agree on): (status, failed checks); ERROR: not a receipt
NOT_READ = ("INVALID", ["record"])
EXPECTED: dict[str, tuple[str, list[str]]] = {
    "untouched": ("UNVERIFIED", []), "a start with microseconds": ("UNVERIFIED", []),
    "a lone surrogate in a text": ("ERROR", []), "a lone surrogate in a sample": ("ERROR", []),
    "signed, the key in the message, none committed": ("UNVERIFIED", []),
    "begin and end signed by two keys, none committed": ("INVALID", ["one meter key"]),
    "only an intermediate reading signed, the stop far beyond it":
        ("INVALID", ["signed readings = billed readings"]),
    "only an intermediate reading signed, the stop within its bound": ("UNVERIFIED", []),
    "an Alfen begin with a meter reading mismatch": ("INVALID", ["meter status"]),
    "an Alfen begin without": ("UNVERIFIED", []),
    "the ledger as an integer": ("UNVERIFIED", []), "a reason as an integer": ("UNVERIFIED", []),
    "a station past 2^24": ("UNVERIFIED", []),
    "a station's high bits forged": ("INVALID", ["entry"]),
    "a bit above the station's 40 forged": ("INVALID", ["entry"]),
    **{name: ("ERROR", []) for name in CASES if name.startswith((
        "the amount paid ", "the unit paid in ", "paid as ", "the unpaid reason ",
        "the position as ", "the packed entry ", "the chunk's count ", "the first sequence",
        "the ledger with", "the ledger as a float", "the chain id as", "the block number as",
        "a fee beside", "a second block beside", "a total beside"))},
}


def _python(receipt: Any) -> dict[str, Any]:
    try:
        verdict = verify_receipt(receipt)
    except ReceiptError as exc:
        return {"status": "ERROR", "failed": [], "proves": str(exc)}
    return {"status": verdict.status,
            "failed": sorted(c.name for c in verdict.checks if c.ok is False),
            "proves": verdict.proves}


@pytest.mark.parametrize("name", list(CASES))
def test_the_page_and_csms_verify_agree_on_an_operators_receipt(name: str) -> None:
    node = shutil.which("node")
    if node is None or not (ROOT / "web" / "node_modules" / "@noble").is_dir():
        if IN_CI:
            pytest.fail("node and web/node_modules are needed (make install)")
        pytest.skip("node and web/node_modules are needed (make install)")
    receipt = CASES[name]()
    src = ROOT / "web" / "verify" / "src"
    r = subprocess.run([node, "--input-type=module", "-e", _NODE_VERIFIER,
                        (src / "pyjson.js").as_uri(), (src / "verifier.js").as_uri()],
                       input=json.dumps([receipt]), capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    [page] = json.loads(r.stdout)
    page = {"status": page["status"],
            "failed": sorted(n for n, ok, _ in page["checks"] if ok is False),
            "proves": page["proves"]}
    python = _python(copy.deepcopy(receipt))
    assert page == python, f"page {page}, csms verify {python}"
    assert (python["status"], python["failed"]) == EXPECTED.get(name, NOT_READ)
    if name == "signed, the key in the message, none committed":
        # the weaker words, naming the key to compare with the charger's label
        key = receipt["samples"][0]["signed"]["publicKey"]
        assert "signed by a key the record does not commit" in python["proves"]
        assert "calibrated meter signed" not in python["proves"]
        assert f"...{key[-16:]}" in python["proves"]


# What the page reads of a receipt's text (readReceipt: a file dropped or chosen, a text
# pasted), as `csms verify` reads a receipt file
_NODE_READER = """
import { readFileSync } from "node:fs";
const verifier = await import(process.argv[1]);
let receipt;
try {
  receipt = verifier.readReceipt(readFileSync(0, "utf-8"));
} catch (exc) {
  if (!(exc instanceof SyntaxError)) throw exc;
  console.log(JSON.stringify({ status: "NOT READ", detail: exc.message }));
  process.exit(0);
}
const v = await verifier.verifyReceipt(receipt);
console.log(JSON.stringify({ status: v.status }));
"""


def _texts() -> dict[str, str]:
    text = json.dumps(_base())
    amount = _base()["payment"]["amount"]
    paid = f'"paid": true, "amount": {amount}'
    assert paid in text and '"tariff": {' in text
    return {
        "as written": text,
        # one key twice: a viewer shows the first value, json.loads keeps the last
        "the amount paid twice, a larger one first":
            text.replace(paid, f'"paid": true, "amount": {amount * 10}, "amount": {amount}'),
        "the record's energy twice":
            text.replace('"record": {', '"record": {"energy_wh": 99999, ', 1),
        # Python's int() reads at most 4300 digits: json.loads refuses a longer integer
        "an integer of 4,301 digits": text.replace('"tariff": {', '"tariff": {"n": '
                                                   + "9" * 4301 + ", ", 1),
        "an integer of 4,300 digits": text.replace('"tariff": {', '"tariff": {"n": '
                                                   + "9" * 4300 + ", ", 1),
        # csms verify reads 1,024 levels of nesting (csms.protocol.frames.MAX_JSON_DEPTH)
        "nested 1,024 levels": text.replace('"tariff": {', '"tariff": {"n": ' + "[" * 1021
                                            + "]" * 1021 + ", ", 1),
        "nested 1,025 levels": text.replace('"tariff": {', '"tariff": {"n": ' + "[" * 1022
                                            + "]" * 1022 + ", ", 1),
        # blanks that are not JSON's around the receipt
        "a no-break space before it": "\u00a0" + text,
        "a byte order mark before it": "\ufeff" + text,
    }


READ = {"as written", "an integer of 4,300 digits", "a byte order mark before it",
        "nested 1,024 levels"}


@pytest.mark.parametrize("name", list(_texts()))
def test_the_page_reads_a_receipts_text_as_csms_verify_reads_its_file(
        name: str, tmp_path: Any) -> None:
    """A receipt whose text JSON readers read apart (a key twice), or that csms verify does
    not read (an integer beyond Python's 4,300 digits, nesting beyond 1,024 levels), is
    refused by both verifiers: before, the page read each one, and the receipt showed
    another figure than the one verified, or was VALID on the page and not read by csms
    verify."""
    import os
    import sys

    node = shutil.which("node")
    if node is None or not (ROOT / "web" / "node_modules" / "@noble").is_dir():
        if IN_CI:
            pytest.fail("node and web/node_modules are needed (make install)")
        pytest.skip("node and web/node_modules are needed (make install)")
    text = _texts()[name]
    file = tmp_path / "receipt.json"
    file.write_text(text, encoding="utf-8")
    cli = subprocess.run([sys.executable, "-m", "csms", "verify", str(file), "--data-dir",
                          str(tmp_path / "data")], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "COLUMNS": "200"})
    src = ROOT / "web" / "verify" / "src"
    r = subprocess.run([node, "--input-type=module", "-e", _NODE_READER,
                        (src / "verifier.js").as_uri()],
                       input=text, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    page = json.loads(r.stdout)
    if name in READ:  # and checked alike (a figure in the record's tariff: its hash fails)
        exits = {"VALID": 0, "INVALID": 1, "UNVERIFIED": 3}
        expected = "UNVERIFIED" if name in ("as written", "a byte order mark before it") \
            else "INVALID"
        assert (cli.returncode, page["status"]) == (exits[expected], expected), \
            (cli.stderr, page)
        return
    assert cli.returncode == 2 and "cannot read receipt" in cli.stderr, cli.stderr
    assert len(cli.stderr.strip().splitlines()) == 1, cli.stderr
    assert page["status"] == "NOT READ", page
