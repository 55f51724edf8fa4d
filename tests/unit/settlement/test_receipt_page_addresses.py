"""Addresses in a receipt, in both verifiers: receipts.py and the receipt page's
(web/verify/src/verifier.js, under Node). The contract (and eth_abi, and the central system
taking an app session's authorization) reads an address as 0x and 40 hex digits in any case:
a driver's app that writes it in a case that is no EIP-55 checksum signs the same
authorization, and its receipt is genuine. Other spellings ("0X", no prefix) are no address
the central system writes: both verifiers refuse them, in the same words.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from eth_account import Account
from unit.settlement.test_receipt_page_exponents import both, receipt, run_page_verifier

from settlement.eip712 import Authorization, sign
from settlement.receipts import ReceiptError, verify_receipt
from settlement.records import SIGNED, entry_of, samples_hash

CHAIN_ID, CONTRACT = 31337, "0x" + "44" * 20


def _resealed(r: dict[str, Any]) -> dict[str, Any]:
    """The receipt with its record's hashes and entry recomputed (the operator's own)."""
    record = r["record"]
    record["samples_hash"] = "0x" + samples_hash(r["samples"]).hex()
    rhash, packed = entry_of(record, 0)
    r["entry"] = {**r["entry"], "record_hash": "0x" + rhash.hex(), "packed": hex(packed)}
    return r


def _app_session(driver_as: str | None = None) -> dict[str, Any]:
    """An app session's receipt whose authorization the driver signed; ``driver_as``: how
    the authorization writes the driver's address (None: as eth_account checksums it)."""
    key = Account.create()
    auth = sign(Authorization(key.address, 3, 100, 100, 100, 500, 7, 2**39), key.key,
                CHAIN_ID, CONTRACT).as_json()
    r = receipt()
    r["record"].update(kind=SIGNED, driver=key.address,
                       authorization={**auth, "driver": driver_as or key.address})
    return _resealed(r)


def _case_flipped(address: str) -> str:
    """``address`` with the case of its first letter flipped: no EIP-55 checksum."""
    body = address[2:]
    at = next(i for i, c in enumerate(body) if c.isalpha())
    return "0x" + body[:at] + body[at].swapcase() + body[at + 1:]


def test_an_authorization_of_an_address_in_any_case_is_the_drivers_in_both() -> None:
    # the page refused a mixed case that is no checksum ("bad checksum"), csms verify took
    # it: a genuine app session INVALID in the browser, VALID with csms verify
    honest = _app_session()
    address = honest["record"]["authorization"]["driver"]
    spellings = [address, address.lower(), "0x" + address[2:].upper(),
                 _case_flipped(address)]
    receipts = []
    for spelling in spellings:
        r = copy.deepcopy(honest)
        r["record"]["authorization"]["driver"] = spelling
        receipts.append(_resealed(r))
    for verdict in both(receipts):
        assert verdict["failed"] == set(), verdict
        assert verdict["detail"]["authorization"].startswith(
            f"signed by {address} "), verdict


@pytest.mark.parametrize("spelling", ["0X{}", "{}", "0x{}0", " 0x{}"])
def test_an_authorization_of_no_address_is_refused_by_both_in_the_same_words(
        spelling: str) -> None:
    # csms verify read "0X..." (and eth_abi reads an address without 0x) as the driver's
    # address and passed the authorization; the page refused it
    r = _app_session()
    address = r["record"]["authorization"]["driver"]
    written = spelling.format(address[2:])
    r["record"]["authorization"]["driver"] = written
    [verdict] = both([_resealed(r)])
    assert verdict["failed"] == {"authorization"}, verdict
    assert verdict["detail"]["authorization"] == (
        "the authorization cannot be read: not an authorization: the driver"
        f" {written!r} is not an address (0x and 40 hex digits)")


_NODE = """
import { readFileSync } from "node:fs";
const pyjson = await import(process.argv[1]);
const verifier = await import(process.argv[2]);
const out = [];
for (const receipt of pyjson.parse(readFileSync(0, "utf-8"))) {
  try {
    out.push({ status: (await verifier.verifyReceipt(receipt)).status });
  } catch (exc) {
    out.push({ refused: exc instanceof verifier.ReceiptError ? exc.message : String(exc) });
  }
}
console.log(JSON.stringify(out));
"""


def _outcomes(receipts: list[dict[str, Any]]) -> list[dict[str, str]]:
    """Each receipt's verdict (offline), or the words it is refused with, by both verifiers:
    the same."""
    r = run_page_verifier(_NODE, receipts)
    python = []
    for receipt_ in receipts:
        try:
            python.append({"status": verify_receipt(receipt_).status})
        except ReceiptError as exc:
            python.append({"refused": str(exc)})
    page = json.loads(r.stdout)
    assert python == page
    return python


@pytest.mark.parametrize("spelling", ["0X{}", "{}", "0x{}0", "0x{}\n", " 0x{}"])
def test_a_receipt_naming_no_contract_address_is_refused_by_both(spelling: str) -> None:
    # csms verify took "0X..." as the contract (web3 and eth_abi read it), verified the app
    # session's signature in its domain and compared the settle transaction's contract
    # case-blind; the page refused the address
    for r in (_app_session(), receipt()):
        r["chain"]["contract"] = spelling.format(CONTRACT[2:])
        [outcome] = _outcomes([r])
        assert outcome == {"refused": "chain.contract is not an address (0x and 40 hex"
                                      " digits)"}


def test_a_contract_address_in_any_case_is_read_by_both() -> None:
    upper = "0x" + "AB" * 20
    mixed = _case_flipped("0x" + "ab" * 20)
    outcomes = []
    for contract in (upper, mixed, upper.lower()):
        r = receipt()
        r["chain"]["contract"] = contract
        outcomes += _outcomes([r])
    assert outcomes == [{"status": "UNVERIFIED"}] * 3
