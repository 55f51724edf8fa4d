"""The driver's receipt page (web/verify) against ``csms verify``: same receipts, same verdicts.

Receipts come from a real run: simulated stations (one fleet signing its meter readings
with OCMF, one not) charge on a running central system, a driver's escrow and card are
set up on the managed local chain (Anvil), ``csms settle run`` settles and ``csms receipt``
writes the receipts. Each receipt is then changed one field at a time, and checked with
wrong, missing and right contracts, and with the chain unreachable. ``csms verify`` checks
every case, the page checks every case in Debian's chromium (Playwright, opened from a
file:// URL like a driver's download): the verdicts, and the checks that failed or could
not be made, must be the same one for one.
"""

from __future__ import annotations

import asyncio
import copy
import json
import os
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from chargers_sim import Fleet
from csms.domain.model import IdTag
from settlement.chain import AnvilNode, ContractParams, find_anvil, open_chain
from settlement.receipts import RECORD_FIELDS
from support import IN_CI, RunningServer
from support.services import free_port

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "web" / "verify" / "dist" / "verify.html"
CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = ROOT / "tmp" / "artifacts" / "receipt-page"
TAG = "PAGE-DRIVER"
STATUS = re.compile(r"^(VALID|INVALID|UNVERIFIED) receipt$")
SHOTS = {"signed: valid, your driver address": "valid.png",
         "signed: record.energy_wh": "invalid-energy.png",
         "unsigned: valid, chain unreachable": "unverified.png"}
CHECK = re.compile(r"^(ok|FAIL|\?\?)  ([^:]+): ")


def _require() -> None:
    """Skip with the reason outside CI; under CI=true whatever is missing is a failure."""
    missing = []
    if not CHROMIUM.exists():
        missing.append("chromium (apt-get install chromium)")
    if find_anvil() is None:
        missing.append("anvil (make install)")
    if not PAGE.exists():
        missing.append(f"the built page {PAGE.relative_to(ROOT)} (make install)")
    try:
        import playwright  # noqa: F401
    except ImportError:
        missing.append("playwright for Python (pip install -e '.[dev]')")
    if missing:
        reason = "the receipt page test needs " + ", ".join(missing)
        if IN_CI:
            pytest.fail(reason)
        pytest.skip(reason)


def csms(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "csms", *args], capture_output=True, text=True,
                          timeout=300, env={**os.environ, **env, "COLUMNS": "100000"})


# -- the real run -----------------------------------------------------------------------
async def _real_run(server: RunningServer, folder: Path) -> dict[str, Any]:
    """Sessions charged, settled by `csms settle run`, receipts by `csms receipt`."""
    from eth_account import Account

    from settlement import wallet

    data_dir = folder / "chain"
    await server.add_tariff("0.39")
    chain = await asyncio.to_thread(open_chain, "local", data_dir,
                                    params=ContractParams(fee_bps=500))
    try:
        host, driver = Account.create(), Account.create()
        for account in (host, driver):
            await asyncio.to_thread(wallet.fund_on_dev_chain, chain, account.address)
        await asyncio.to_thread(wallet.set_terms, chain, driver, wallet.DriverTerms(
            max_per_kwh=45, max_session_fee=60, max_per_session=2_000, max_per_day=10_000))
        await asyncio.to_thread(wallet.deposit, chain, driver, 5_000)
        salt = wallet.new_salt()
        commitment = await asyncio.to_thread(wallet.link_card, chain, driver, TAG, salt)
        stations = {sid: await asyncio.to_thread(wallet.register_station, chain, host, 22_000)
                    for sid in ("SIGN00001", "SIGN00002", "PLAIN00001", "PLAIN00002")}
        contract = chain.contract_address
    finally:
        await asyncio.to_thread(chain.close)
    for sid in stations:
        await server.add_station(sid)

    async def link(tx: Any) -> None:
        for sid, index in stations.items():
            station = await tx.get_station(sid)
            station.host_address, station.chain_station = host.address.lower(), index
            await tx.update_station(station)
        await tx.put_tag(IdTag(TAG))
        await tx.link_card(TAG, driver.address, "0x" + salt.hex(), "0x" + commitment.hex(),
                           datetime.now(UTC))

    await server.repo.unit(link)
    for prefix, signed in (("SIGN", True), ("PLAIN", False)):
        fleet = Fleet(server.url, 2, mix=True, prefix=prefix, meter_interval=0.05, seed=21,
                      power_kw=22, signed=signed)
        await fleet.start()
        summary = await fleet.run_sessions(1, 0.5, TAG)
        await fleet.close()
        assert summary.errors == 0
    env = {"CSMS_DB": server.settings.db, "CSMS_DATA_DIR": str(data_dir)}
    r = await asyncio.to_thread(csms, env, "settle", "run", "--json")
    assert r.returncode == 0, r.stdout + r.stderr
    assert json.loads(r.stdout)["sessions"] == 4
    receipts: dict[str, dict[str, Any]] = {}
    for s in await server.sessions():
        if s["station_id"] not in ("SIGN00001", "PLAIN00002"):  # one of each version
            continue
        out = folder / f"receipt-{s['id']}.json"
        r = await asyncio.to_thread(csms, env, "receipt", str(s["id"]), "-o", str(out))
        assert r.returncode == 0, r.stdout + r.stderr
        kind = "signed" if s["station_id"].startswith("SIGN") else "unsigned"
        receipts[kind] = json.loads(out.read_text("utf-8"))
    assert receipts["signed"]["payment"]["paid"] and receipts["unsigned"]["payment"]["paid"]
    assert any(x["signed"] for x in receipts["signed"]["samples"])
    assert not any(x["signed"] for x in receipts["unsigned"]["samples"])
    return {"receipts": receipts, "driver": driver.address, "contract": contract,
            "state": data_dir / "anvil-state.json"}


# -- the cases ----------------------------------------------------------------------------
def _changed(value: Any) -> Any:
    """The same kind of value, one thing changed."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1
    if isinstance(value, str):
        if re.fullmatch(r"(0x)?[0-9a-fA-F]{16,}", value):
            return value[:-1] + ("0" if value[-1] != "0" else "1")
        if re.fullmatch(r"-?\d+(\.\d+)?", value):
            return str(Decimal(value) + 1)
        try:
            return (datetime.fromisoformat(value) + timedelta(seconds=1)).isoformat()
        except ValueError:
            return value + "X"
    if value is None:
        return 1
    if isinstance(value, dict):
        key = sorted(value)[0]
        return {**value, key: _changed(value[key])}
    raise AssertionError(f"no change for {value!r}")


def _tampered(receipt: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    cases = []
    for name in (*RECORD_FIELDS, "meter_public_key"):
        if name not in receipt["record"]:
            continue
        bad = copy.deepcopy(receipt)
        bad["record"][name] = _changed(bad["record"][name])
        cases.append((f"record.{name}", bad))
    if "meter_public_key" in receipt["record"]:
        bad = copy.deepcopy(receipt)
        bad["record"]["meter_public_key"] = "not a key"
        cases.append(("record.meter_public_key unreadable", bad))
    bad = copy.deepcopy(receipt)
    bad["record"]["tariff"]["per_kwh"] = _changed(bad["record"]["tariff"]["per_kwh"])
    cases.append(("record.tariff.per_kwh", bad))
    for part in ("entry", "chunk", "chain", "payment"):
        for name in receipt[part]:
            if name == "rpc_hint":
                continue
            bad = copy.deepcopy(receipt)
            bad[part][name] = _changed(bad[part][name])
            if (part, name) == ("entry", "packed"):
                bad[part][name] = hex(int(receipt[part][name], 16) + 1)
            cases.append((f"{part}.{name}", bad))
    plain = next(i for i, s in enumerate(receipt["samples"]) if not s["signed"] and s["value"])
    bad = copy.deepcopy(receipt)
    bad["samples"][plain]["value"] = _changed(bad["samples"][plain]["value"])
    cases.append(("a meter sample's value", bad))
    bad = copy.deepcopy(receipt)
    del bad["samples"][plain]
    cases.append(("a meter sample removed", bad))
    signed = [i for i, s in enumerate(receipt["samples"]) if s["signed"]]
    if signed:
        bad = copy.deepcopy(receipt)
        data = bad["samples"][signed[0]]["signed"]
        field = "signedData" if "signedData" in data else "signedMeterData"
        data[field] = data[field][:40] + ("A" if data[field][40] != "A" else "B") + \
            data[field][41:]
        cases.append(("signed meter data", bad))
    return cases


def _cases(run: dict[str, Any], dead_rpc: str, rpc: str) -> list[dict[str, Any]]:
    driver, contract = run["driver"], run["contract"]
    other = "0x" + "12" * 20
    cases = []
    for kind, receipt in run["receipts"].items():
        good = [
            ("valid, your driver address", {"driver": driver}),
            ("valid, the contract you trust", {"contract": contract}),
            ("valid, which contract unknown", {}),
            ("valid, wrong contract", {"contract": other}),
            ("valid, another driver", {"driver": other}),
            ("valid, chain unreachable", {"driver": driver, "rpc": dead_rpc}),
        ]
        for name, options in good:
            cases.append({"name": f"{kind}: {name}", "receipt": receipt,
                          "options": {"rpc": rpc, **options}})
        for name, bad in _tampered(receipt):
            cases.append({"name": f"{kind}: {name}", "receipt": bad,
                          "options": {"rpc": rpc, "driver": driver}})
    return cases


# -- the two verifiers --------------------------------------------------------------------
def _cli_verdicts(cases: list[dict[str, Any]], folder: Path) -> list[dict[str, Any]]:
    """`csms verify`, one process per set of options, every receipt of that set."""
    groups: dict[str, list[int]] = {}
    for n, case in enumerate(cases):
        path = folder / f"case-{n:03d}.json"
        path.write_text(json.dumps(case["receipt"], indent=2), "utf-8")
        case["file"] = path
        groups.setdefault(json.dumps(case["options"], sort_keys=True), []).append(n)
    results: list[dict[str, Any]] = [{} for _ in cases]
    for options_text, numbers in groups.items():
        options = json.loads(options_text)
        args = ["verify", *[str(cases[n]["file"]) for n in numbers]]
        for name in ("rpc", "driver", "contract"):
            if name in options:
                args += [f"--{name}", options[name]]
        r = csms({"CSMS_DATA_DIR": str(folder / "nowhere")}, *args)
        assert r.returncode in (0, 1, 3) and not r.stderr, r.stdout + r.stderr
        current: dict[str, Any] | None = None
        by_file = {str(cases[n]["file"]): n for n in numbers}
        for line in r.stdout.splitlines():
            if line in by_file or (len(numbers) == 1 and current is None):
                current = results[by_file.get(line, numbers[0])]
                current.update(failed=set(), unknown=set())
                if line in by_file:
                    continue
            m = CHECK.match(line)
            if m and current is not None and m.group(2) != "billed twice":  # across files
                if m.group(1) == "FAIL":
                    current["failed"].add(m.group(2))
                elif m.group(1) == "??":
                    current["unknown"].add(m.group(2))
            m = STATUS.match(line)
            if m and current is not None:
                current["status"] = m.group(1)
    return results


async def _page_verdicts(cases: list[dict[str, Any]], shots: Path) -> list[dict[str, Any]]:
    from playwright.async_api import async_playwright

    results = []
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=str(CHROMIUM),
                                          args=["--no-sandbox"])
        try:
            page = await browser.new_page(viewport={"width": 1000, "height": 900})
            for case in cases:
                await page.goto(PAGE.as_uri())
                await page.wait_for_selector("html[data-ready]")
                await page.set_input_files("#file", str(case["file"]))
                await page.wait_for_selector("#loaded:not(:empty)")
                for name in ("rpc", "driver", "contract"):
                    await page.fill(f"#{name}", case["options"].get(name, ""))
                await page.click("#check")
                verdict = await page.wait_for_selector("#verdict[data-status]", timeout=30_000)
                assert verdict is not None
                checks = await page.eval_on_selector_all(
                    "li.check", "items => items.map(i => [i.dataset.name, i.dataset.ok])")
                results.append({
                    "status": await verdict.get_attribute("data-status"),
                    "failed": {name for name, ok in checks if ok == "false"},
                    "unknown": {name for name, ok in checks if ok == "null"},
                })
                if case["name"] in SHOTS:
                    await page.screenshot(path=str(shots / SHOTS[case["name"]]), full_page=True)
        finally:
            await browser.close()
    return results


async def test_the_page_and_csms_verify_agree_on_every_receipt(
    csms_server: RunningServer, tmp_path: Path,
) -> None:
    _require()
    run = await _real_run(csms_server, tmp_path)
    node = await asyncio.to_thread(AnvilNode, run["state"], attach=True)
    try:
        cases = _cases(run, f"http://127.0.0.1:{free_port()}", node.url)
        expected = await asyncio.to_thread(_cli_verdicts, cases, tmp_path)
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        got = await _page_verdicts(cases, ARTIFACTS)
    finally:
        await asyncio.to_thread(node.stop)
    print(f"screenshots of the receipt page: {ARTIFACTS}")
    rows = []
    for case, want, have in zip(cases, expected, got, strict=True):
        same = want == have
        rows.append(f"{'  ' if same else '!!'} {case['name']}: csms verify {want.get('status')}"
                    f" {sorted(want.get('failed', ()))} {sorted(want.get('unknown', ()))};"
                    f" page {have['status']} {sorted(have['failed'])}"
                    f" {sorted(have['unknown'])}")
    print("\n".join(rows))
    assert all(want == have for want, have in zip(expected, got, strict=True)), \
        "\n".join(r for r in rows if r.startswith("!!"))
    statuses = {case["name"]: want["status"] for case, want in zip(cases, expected, strict=True)}
    # the set is not one-sided: every verdict occurs, where it must
    for kind in ("signed", "unsigned"):
        assert statuses[f"{kind}: valid, your driver address"] == "VALID"
        assert statuses[f"{kind}: valid, the contract you trust"] == "VALID"
        assert statuses[f"{kind}: valid, wrong contract"] == "INVALID"
        assert statuses[f"{kind}: valid, which contract unknown"] == "UNVERIFIED"
        assert statuses[f"{kind}: valid, chain unreachable"] == "UNVERIFIED"
        assert statuses[f"{kind}: record.energy_wh"] == "INVALID"
    assert statuses["signed: signed meter data"] == "INVALID"
    assert "meter signature 1" in expected[[c["name"] for c in cases].index(
        "signed: signed meter data")]["failed"] | got[[c["name"] for c in cases].index(
        "signed: signed meter data")]["failed"]
    assert sum(s == "INVALID" for s in statuses.values()) > 40
    for shot in SHOTS.values():
        assert (ARTIFACTS / shot).stat().st_size > 10_000
