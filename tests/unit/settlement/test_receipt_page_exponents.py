"""A receipt's figures with a far exponent, in both verifiers: receipts.py and the receipt
page's (web/verify/src/verifier.js, under Node). A receipt is a file anyone can hand a
driver, and its record's tariff and readings are text the verifiers read as numbers; the
page computes exactly (web/verify/src/decimal.js), so "1e-10000000" beside a session fee
of 1 is a number of ten million digits: seconds of the driver's CPU and hundreds of MB.

No price, energy or reading needs a figure beyond 10^+-MAX_EXPONENT (its adjusted
exponent), and the central system writes none (csms.domain.tariff.within_exponents): both
verifiers refuse such a figure at once, in the same check with the same words, and read
every figure an honest receipt holds, the largest and the smallest the worker can write.
"""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from csms.domain.tariff import MAX_EXPONENT, MAX_PRICE, Tariff, price_minor
from settlement.receipts import RECEIPT_VERSION, UNVERIFIED, verify_receipt
from settlement.records import CARD, RECORD_FIELDS, entry_of, samples_hash
from support import IN_CI

SRC = Path(__file__).resolve().parents[3] / "web" / "verify" / "src"
FAR = "1e-10000000"  # a per-kWh price: 0 in any currency
SAMPLES = [{"timestamp": "2026-03-01T10:30:00+00:00", "measurand":
            "Energy.Active.Import.Register", "unit": "Wh", "value": "2500", "signed": None}]
TARIFF = {"per_kwh": "0.39", "per_minute": "0.01", "session_fee": "0.50"}
FIGURES = "written beyond 1E-30 .. 1E+30"


def receipt(tariff: dict[str, Any] | None = None, start: Any = "1000",
            stop: Any = "3500", decimals: int = 2) -> dict[str, Any]:
    """An offline receipt whose hashes and entry add up, priced by its tariff where the
    domain prices it (a figure it cannot: 0)."""
    tariff = {**TARIFF, **(tariff or {})}
    record: dict[str, Any] = {f: None for f in RECORD_FIELDS}
    energy, duration = 2500, 1800
    try:
        price = price_minor(Tariff("*", Decimal(tariff["per_kwh"]), "EUR", decimals,
                                   Decimal(tariff["per_minute"]),
                                   Decimal(tariff["session_fee"])), energy, duration)
    except ArithmeticError:
        price = 0
    record.update(
        ledger="7", seq=1, session_id=1, station_id="CP1", chain_station=3, connector_id=1,
        evse_id=1, id_tag="T1", ocpp_version="ocpp1.6", transaction_id="1",
        started_at="2026-03-01T10:00:00+00:00", stopped_at="2026-03-01T10:30:00+00:00",
        duration_s=duration, meter_start_wh=start, meter_stop_wh=stop, energy_wh=energy,
        price_minor=price, currency="EUR", decimals=decimals, unit=1, tariff=tariff,
        stop_reason="Local", samples_hash="0x" + samples_hash(SAMPLES).hex(),
        driver="0x" + "11" * 20, driver_index=0, kind=CARD, card_commitment="0x" + "22" * 32)
    rhash, packed = entry_of(record, 0)
    return {
        "voltledger_receipt": RECEIPT_VERSION, "what_it_proves": "", "record": record,
        "samples": copy.deepcopy(SAMPLES),
        "entry": {"record_hash": "0x" + rhash.hex(), "packed": hex(packed), "position": 0},
        "chunk": {"ledger": "7", "first_seq": 1, "count": 1, "digest": "0x" + "33" * 32},
        "payment": {"paid": True, "amount": price, "unit": 1, "reason": None},
        "chain": {"chain_id": 31337, "contract": "0x" + "44" * 20, "tx_hash": "0x" + "55" * 32,
                  "block_number": 9, "rpc_hint": None},
    }


_NODE = """
import { readFileSync } from "node:fs";
const pyjson = await import(process.argv[1]);
const verifier = await import(process.argv[2]);
const out = [];
for (const receipt of pyjson.parse(readFileSync(0, "utf-8"))) {
  const t0 = performance.now();
  const v = await verifier.verifyReceipt(receipt);
  out.push({ ms: performance.now() - t0, status: v.status,
             checks: v.checks.map((c) => [c.name, c.ok, c.detail]) });
}
console.log(JSON.stringify(out));
"""


def run_page_verifier(script: str, receipts: list[Any],
                      ) -> subprocess.CompletedProcess[str]:
    """``script`` under Node with the page's pyjson.js and verifier.js as its arguments and
    ``receipts`` as JSON on its input (skipped where node or web/node_modules is missing,
    failed in CI)."""
    node = shutil.which("node")
    if node is None or not (SRC.parents[1] / "node_modules" / "@noble").is_dir():
        if IN_CI:
            pytest.fail("node and web/node_modules are needed (make install)")
        pytest.skip("node and web/node_modules are needed (make install)")
    r = subprocess.run([node, "--input-type=module", "-e", script,
                        (SRC / "pyjson.js").as_uri(), (SRC / "verifier.js").as_uri()],
                       input=json.dumps(receipts), capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return r


def both(receipts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each receipt through verify_receipt and the page's verifier (offline): the same
    checks, outcomes and words; each verdict of the page in under a second."""
    r = run_page_verifier(_NODE, receipts)
    out = []
    for receipt_, page in zip(receipts, json.loads(r.stdout), strict=True):
        t0 = time.perf_counter()
        verdict = verify_receipt(receipt_)
        seconds = time.perf_counter() - t0
        python = {"status": verdict.status,
                  "checks": [[c.name, c.ok, c.detail] for c in verdict.checks]}
        assert python == {"status": page["status"], "checks": page["checks"]}
        assert page["ms"] < 1000, f"the page took {page['ms']:.0f} ms to verify a receipt"
        assert seconds < 0.1
        out.append({**python, "failed": {c[0] for c in python["checks"] if c[1] is False},
                    "detail": {c[0]: c[2] for c in python["checks"]}})
    return out


@pytest.mark.parametrize(("name", "value"), [
    ("per_kwh", FAR), ("per_kwh", "-" + FAR), ("per_minute", "1E+31"),
    ("session_fee", "0E-40"), ("session_fee", "1" + "0" * 31), ("per_kwh", 1e-40),
    ("per_minute", 10**31),
])
def test_a_tariff_figure_with_a_far_exponent_is_refused_at_once_by_both(
        name: str, value: Any) -> None:
    [verdict] = both([receipt({name: value})])
    assert verdict["failed"] == {"price"}
    assert verdict["detail"]["price"] == (f"the record's tariff cannot be read: its {name} is"
                                          f" {FIGURES}, the figures a price needs")


@pytest.mark.parametrize("decimals", [-10_000_000, 10_000_000, -31, 31])
def test_currency_decimals_beyond_the_exponents_are_refused_at_once_by_both(
        decimals: int) -> None:
    # 10^-10000000 x a price: the page's rounding of it builds 10^10000000
    [verdict] = both([receipt(decimals=decimals)])
    assert verdict["failed"] == {"price"}
    assert verdict["detail"]["price"] == (f"the record's tariff cannot be read: its currency's"
                                          f" decimals {decimals} are beyond +-30")


@pytest.mark.parametrize(("start", "stop", "which"), [
    (FAR, "3500", "start reading is"), ("1000", "1E+31", "stop reading is"),
    ("0E-40", "-" + FAR, "start and stop readings are"),
])
def test_a_reading_with_a_far_exponent_is_refused_at_once_by_both(
        start: str, stop: str, which: str) -> None:
    [verdict] = both([receipt(start=start, stop=stop)])
    assert verdict["failed"] == {"energy = stop - start"}
    assert verdict["detail"]["energy = stop - start"] == (
        f"the record's {which} {FIGURES} Wh, the figures a meter reading needs")


def test_the_largest_and_smallest_figures_the_central_system_writes_are_read_by_both() -> None:
    smallest = str(Decimal(1).scaleb(-MAX_EXPONENT))  # the worker writes str(Decimal)
    assert smallest == "1E-30"
    honest = [
        # the largest price the tariffs take; a register near its largest reading
        receipt({"per_kwh": str(MAX_PRICE), "per_minute": str(MAX_PRICE),
                 "session_fee": str(MAX_PRICE)}, start="999999999997500",
                stop=str(Decimal(10) ** 15)),
        # the smallest figures, a zero written with them, and readings as fine
        receipt({"per_kwh": smallest, "per_minute": "0E-30",
                 "session_fee": "0." + "0" * 29 + "1"}, start=smallest,
                stop="2500.000000000000000000000000001"),
        receipt({"per_kwh": "0.390000000000000000000000000000000000001"},
                start="1000.0", stop="3500.00"),
        # the most decimals a tariff takes (csms tariffs set --decimals)
        receipt({"per_kwh": "0.00000000000039", "per_minute": "0", "session_fee": "0"},
                decimals=18),
    ]
    for verdict in both(honest):
        assert verdict["failed"] == set(), verdict
        assert verdict["status"] == UNVERIFIED  # offline: the chain is not checked
