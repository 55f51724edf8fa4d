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
import base64
import copy
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from chargers_sim import Fleet
from settlement.chain import AnvilNode, ContractParams, find_anvil, open_chain
from settlement.receipts import RECORD_FIELDS
from support import IN_CI, RunningServer
from support.browser import ARTIFACTS as BROWSER_ARTIFACTS
from support.browser import CHROMIUM
from support.chainkit import link_stations_and_card
from support.services import free_port

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "web" / "verify" / "dist" / "verify.html"
ARTIFACTS = BROWSER_ARTIFACTS / "receipt-page"
TAG = "PAGE-DRIVER"
STATUS = re.compile(r"^(VALID|INVALID|UNVERIFIED) receipt$")
SHOTS = {"signed: valid, your driver address": "valid.png",
         "signed: record.energy_wh": "invalid-energy.png",
         "unsigned: valid, chain unreachable": "unverified.png",
         "signed: valid, the receipt's own node": "operators-node.png"}
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

    await link_stations_and_card(server.repo, host.address, stations, TAG, driver.address,
                                 salt, commitment)
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
    receipts["another unit"] = await _another_unit(server, folder, env)
    receipts["another host"] = await _another_host(server, folder, env, host.address)
    assert any(x["signed"] for x in receipts["signed"]["samples"])
    assert not any(x["signed"] for x in receipts["unsigned"]["samples"])
    return {"receipts": receipts, "driver": driver.address, "contract": contract,
            "state": data_dir / "anvil-state.json"}


async def _one_more_session(server: RunningServer, seed: int) -> int:
    """One more unsigned session of a simulated station on ``server``: its id."""
    before = {s["id"] for s in await server.sessions()}
    fleet = Fleet(server.url, 1, mix=True, prefix="PLAIN", meter_interval=0.05, seed=seed,
                  power_kw=22, signed=False)
    await fleet.start()
    summary = await fleet.run_sessions(1, 0.5, TAG)
    await fleet.close()
    assert summary.errors == 0
    [sid] = [s["id"] for s in await server.sessions() if s["id"] not in before]
    return int(sid)


async def _paid_receipt(env: dict[str, str], folder: Path, sid: int) -> dict[str, Any]:
    """``csms receipt`` of session ``sid``, settled and paid."""
    out = folder / f"receipt-{sid}.json"
    r = await asyncio.to_thread(csms, env, "receipt", str(sid), "-o", str(out))
    assert r.returncode == 0, r.stdout + r.stderr
    receipt: dict[str, Any] = json.loads(out.read_text("utf-8"))
    assert receipt["payment"]["paid"]
    return receipt


async def _another_unit(server: RunningServer, folder: Path,
                        env: dict[str, str]) -> dict[str, Any]:
    """The receipt of one more session, settled by an operator's worker that writes another
    unit into the record than the contract's (the record is written before it is settled:
    every hash matches what the chain holds; its payment line says 10^16 base units a
    billing unit where the contract took 1)."""
    from settlement.worker import SettlementWorker

    sid = await _one_more_session(server, 22)
    chain = await asyncio.to_thread(open_chain, "local", folder / "chain")
    try:
        worker = SettlementWorker(server.repo, chain)
        info = await asyncio.to_thread(chain.info)
        assert info["unit"] == 1
        worker._contract = {**info, "unit": 10**16}
        await worker.run_once()
    finally:
        await asyncio.to_thread(chain.close)
    receipt = await _paid_receipt(env, folder, sid)
    assert receipt["record"]["unit"] == receipt["payment"]["unit"] == 10**16
    return receipt


async def _another_host(server: RunningServer, folder: Path, env: dict[str, str],
                        host: str) -> dict[str, Any]:
    """The receipt of one more session, settled by an operator that recorded the host's
    station under a station index of its own (registered by the operator's key): the record
    names the host, every hash matches what the chain holds, the contract credited the
    operator."""
    from settlement.worker import SettlementWorker

    sid = await _one_more_session(server, 23)
    chain = await asyncio.to_thread(open_chain, "local", folder / "chain")
    try:
        own = await asyncio.to_thread(chain.register_station, 22_000)

        async def misroute(tx: Any) -> None:
            session = await tx.get_session(sid)
            station = await tx.get_station(session.station_id)
            assert station.host_address is not None
            assert station.host_address.lower() == host.lower()
            station.chain_station = own
            await tx.update_station(station)
            # the session is paid to the index bound at its completion: the operator's
            # database edited to bind it to its own
            await tx.execute("UPDATE session_hosts SET chain_station = ? WHERE session_id = ?",
                             own, sid)

        await server.repo.unit(misroute)
        # and its worker writing the host's address into the record, where the genuine
        # one writes the host the contract holds for the index it pays
        real = chain.station
        chain.station = lambda index: (host, real(index)[1]) if index == own \
            else real(index)  # type: ignore[method-assign]
        await SettlementWorker(server.repo, chain).run_once()
    finally:
        await asyncio.to_thread(chain.close)
    receipt = await _paid_receipt(env, folder, sid)
    assert receipt["record"]["host"] == host.lower()
    assert receipt["record"]["chain_station"] == own
    return receipt


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
        if kind == "another unit":
            # settled with every hash matching, but the record's unit is not the contract's
            cases.append({"name": "valid, another unit", "receipt": receipt,
                          "options": {"rpc": rpc, "driver": driver}})
            continue
        if kind == "another host":
            # settled with every hash matching, but the contract credited another account
            # than the host the record names (the operator's own station index)
            cases.append({"name": "valid, another host credited", "receipt": receipt,
                          "options": {"rpc": rpc, "driver": driver}})
            continue
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
        # more confirmations than the chain has yet; the node the receipt names (the
        # operator's: the page fills it in, the driver leaves it)
        cases.append({"name": f"{kind}: valid, not deep enough", "receipt": receipt,
                      "options": {"rpc": rpc, "driver": driver, "confirmations": "1000"}})
        named = {**receipt, "chain": {**receipt["chain"], "rpc_hint": rpc}}
        cases.append({"name": f"{kind}: valid, the receipt's own node", "receipt": named,
                      "options": {"rpc": rpc, "driver": driver}, "prefilled": True})
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
        for name in ("rpc", "driver", "contract", "confirmations"):
            if name in options:
                args += [f"--{name}", options[name]]
        r = csms({"CSMS_DATA_DIR": str(folder / "nowhere")}, *args)
        assert r.returncode in (0, 1, 3) and not r.stderr, r.stdout + r.stderr
        current: dict[str, Any] | None = None
        by_file = {str(cases[n]["file"]): n for n in numbers}
        for line in r.stdout.splitlines():
            if line in by_file or (len(numbers) == 1 and current is None):
                current = results[by_file.get(line, numbers[0])]
                current.update(passed=set(), failed=set(), unknown=set())
                if line in by_file:
                    continue
            m = CHECK.match(line)
            if m and current is not None and m.group(2) != "billed twice":  # across files
                if m.group(1) == "ok":
                    current["passed"].add(m.group(2))
                elif m.group(1) == "FAIL":
                    current["failed"].add(m.group(2))
                elif m.group(1) == "??":
                    current["unknown"].add(m.group(2))
            if line.startswith("what this proves: ") and current is not None:
                current["proves"] = line.removeprefix("what this proves: ")
            m = STATUS.match(line)
            if m and current is not None:
                current["status"] = m.group(1)
    return results


async def _page_verdicts(cases: list[dict[str, Any]], shots: Path, *,
                        paste: bool = False) -> list[dict[str, Any]]:
    """The page's verdicts, the receipt chosen as a file (or pasted); the page must ask
    nothing of anyone but the RPC URL it is given."""
    from playwright.async_api import Request, async_playwright

    results: list[dict[str, Any]] = []
    requests: list[str] = []
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=str(CHROMIUM),
                                          args=["--no-sandbox"])
        try:
            page = await browser.new_page(viewport={"width": 1000, "height": 900})

            def seen(request: Request) -> None:
                requests.append(request.url)

            page.on("request", seen)
            for n, case in enumerate(cases):
                if not paste or n == 0:  # a file is chosen on a fresh page
                    await page.goto(PAGE.as_uri())
                    await page.wait_for_selector("html[data-ready]")
                else:  # one page checks receipt after receipt, as a driver pasting them
                    await page.eval_on_selector("#result", "r => r.replaceChildren()")
                if paste:
                    await page.fill("#receipt-text", case["file"].read_text("utf-8"))
                else:
                    await page.set_input_files("#file", str(case["file"]))
                    await page.wait_for_selector("#loaded:not(:empty)")
                if case.get("prefilled"):  # the receipt's node, as the page filled it in
                    assert await page.input_value("#rpc") == case["options"]["rpc"]
                    assert "the operator's own" in await page.inner_text("#rpc-note")
                for name in ("rpc", "driver", "contract", "confirmations"):
                    if name != "rpc" or not case.get("prefilled"):
                        await page.fill(f"#{name}", case["options"].get(name, ""))
                await page.click("#check")
                verdict = await page.wait_for_selector("#verdict[data-status]", timeout=30_000)
                assert verdict is not None
                checks = await page.eval_on_selector_all(
                    "li.check", "items => items.map(i => [i.dataset.name, i.dataset.ok])")
                if await verdict.get_attribute("data-status") == "ERROR":
                    results.append({"status": "ERROR"})
                    continue
                proves = await page.eval_on_selector(
                    ".proves", "p => p.lastChild.textContent")
                # the operator's node: said in the verdict itself, not only in a check
                assert await page.is_visible("#node-warning") == (
                    ["chain node", "null"] in checks), checks
                results.append({
                    "status": await verdict.get_attribute("data-status"),
                    "proves": proves,
                    "passed": {name for name, ok in checks if ok == "true"},
                    "failed": {name for name, ok in checks if ok == "false"},
                    "unknown": {name for name, ok in checks if ok == "null"},
                })
                if case["name"] in SHOTS:
                    await page.screenshot(path=str(shots / SHOTS[case["name"]]), full_page=True)
        finally:
            await browser.close()
    allowed = {PAGE.as_uri(), *(case["options"].get("rpc") for case in cases)}
    asked = {url.rstrip("/") for url in requests}
    assert asked <= allowed, asked - allowed
    return results


# the receipts of _cases the browser checks through the built page: every option and
# verdict ("valid, ..."), the screenshots, and a change of each part of the receipt
_THROUGH_PAGE = re.compile(r"^((un)?signed: )?(valid, .*|record\.(energy_wh|id_tag|driver|"
                           r"meter_public_key)|entry\.packed|chunk\.digest|chain\.tx_hash|"
                           r"payment\.amount|signed meter data)$")


def _through_page(name: str) -> bool:
    return bool(_THROUGH_PAGE.match(name)) or name in SHOTS


_NODE_CASES = """
import { readFileSync } from "node:fs";
const pyjson = await import(process.argv[1]);
const verifier = await import(process.argv[2]);
const out = [];
for (const c of pyjson.parse(readFileSync(0, "utf-8"))) {
  const o = c.options;
  let v;
  try {
    v = await verifier.verifyReceipt(c.receipt, {
      rpcUrl: o.rpc || null, driver: o.driver || null, contract: o.contract || null,
      confirmations: o.confirmations || null });
  } catch (exc) {
    out.push({ status: "ERROR" });
    continue;
  }
  out.push({ status: v.status, proves: v.proves,
             checks: v.checks.map((c) => [c.name, c.ok]) });
}
console.log(JSON.stringify(out));
"""


def _node_verdicts(cases: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The page's verifier (web/verify/src under Node: the modules the page bundles) on
    every case, with the options the page would be given, in _page_verdicts' shape."""
    node = shutil.which("node")
    assert node is not None, "node is needed (make install)"
    src = ROOT / "web" / "verify" / "src"
    r = subprocess.run([node, "--input-type=module", "-e", _NODE_CASES,
                        (src / "pyjson.js").as_uri(), (src / "verifier.js").as_uri()],
                       input=json.dumps([{"receipt": c["receipt"], "options": c["options"]}
                                         for c in cases]),
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    out: list[dict[str, Any]] = []
    for v in json.loads(r.stdout):
        if v["status"] == "ERROR":
            out.append(v)
            continue
        checks = v["checks"]
        out.append({"status": v["status"], "proves": v["proves"],
                    "passed": {n for n, ok in checks if ok is True},
                    "failed": {n for n, ok in checks if ok is False},
                    "unknown": {n for n, ok in checks if ok is None}})
    return out


def _assert_agree(cases: list[dict[str, Any]], expected: list[dict[str, Any]],
                  got: list[dict[str, Any]]) -> None:
    """One line per case: the verdict and the checks that failed or could not be made."""
    rows = []
    for case, want, have in zip(cases, expected, got, strict=True):
        rows.append(f"{'  ' if want == have else '!!'} {case['name']}: {have['status']}"
                    f" failed {sorted(have['failed'])} unknown {sorted(have['unknown'])}")
        if want != have:
            rows += [f"     {key}: csms verify {want.get(key)!r}, page {have.get(key)!r}"
                     for key in sorted(set(want) | set(have)) if want.get(key) != have.get(key)]
    print("\n".join(rows))
    assert all(want == have for want, have in zip(expected, got, strict=True)), \
        "\n".join(r for r in rows if not r.startswith("   "))


async def test_the_page_and_csms_verify_agree_on_every_receipt(
    csms_server: RunningServer, tmp_path: Path,
) -> None:
    _require()
    run = await _real_run(csms_server, tmp_path)
    node = await asyncio.to_thread(AnvilNode, run["state"], attach=True)
    try:
        cases = _cases(run, f"http://127.0.0.1:{free_port()}", node.url)
        expected = await asyncio.to_thread(_cli_verdicts, cases, tmp_path)
        # every case through the modules the page bundles (under Node), and the cases of
        # every option and verdict, and some of each kind of change, through the built page
        # in the browser (~0.5 s a receipt: all 115 took most of this test's minute)
        modules = await asyncio.to_thread(_node_verdicts, cases)
        browsed = [n for n, case in enumerate(cases) if _through_page(case["name"])]
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        paged = await _page_verdicts([cases[n] for n in browsed], ARTIFACTS)
    finally:
        await asyncio.to_thread(node.stop)
    print(f"screenshots of the receipt page: {ARTIFACTS}")
    _assert_agree(cases, expected, modules)
    _assert_agree([cases[n] for n in browsed], [expected[n] for n in browsed], paged)
    assert len(browsed) >= 20 and {p["status"] for p in paged} == {
        "VALID", "INVALID", "UNVERIFIED"}
    statuses = {case["name"]: want["status"] for case, want in zip(cases, expected, strict=True)}
    # the set is not one-sided: every verdict occurs, where it must
    for kind in ("signed", "unsigned"):
        assert statuses[f"{kind}: valid, your driver address"] == "VALID"
        assert statuses[f"{kind}: valid, the contract you trust"] == "VALID"
        assert statuses[f"{kind}: valid, wrong contract"] == "INVALID"
        assert statuses[f"{kind}: valid, which contract unknown"] == "UNVERIFIED"
        assert statuses[f"{kind}: valid, chain unreachable"] == "UNVERIFIED"
        for name, unknown in (("not deep enough", "confirmations"),
                              ("the receipt's own node", "chain node")):
            at = [c["name"] for c in cases].index(f"{kind}: valid, {name}")
            assert (expected[at]["status"], expected[at]["unknown"]) == (
                "UNVERIFIED", {unknown}), (name, expected[at])
        assert statuses[f"{kind}: record.energy_wh"] == "INVALID"
    # the payment line of a record naming another unit than the contract's: false
    another = [c["name"] for c in cases].index("valid, another unit")
    assert (expected[another]["status"], expected[another]["failed"]) == (
        "INVALID", {"payment"}), expected[another]
    # a record naming another host than the one the contract credited: false
    credited = [c["name"] for c in cases].index("valid, another host credited")
    assert (expected[credited]["status"], expected[credited]["failed"]) == (
        "INVALID", {"host"}), expected[credited]
    assert statuses["signed: signed meter data"] == "INVALID"
    assert "meter signature 1" in expected[[c["name"] for c in cases].index(
        "signed: signed meter data")]["failed"] | modules[[c["name"] for c in cases].index(
        "signed: signed meter data")]["failed"]
    assert sum(s == "INVALID" for s in statuses.values()) > 40
    for shot in SHOTS.values():
        assert (ARTIFACTS / shot).stat().st_size > 10_000



# -- signed meter data of real meters, every curve and encoding; app authorizations -------
CHAIN_ID, CONTRACT = 31337, "0x" + "ab" * 20
T0 = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)


def _sample(at: datetime, context: str, signed: dict[str, Any] | None,
            value: str = "") -> dict[str, Any]:
    return {"timestamp": at.isoformat(), "measurand": "Energy.Active.Import.Register",
            "phase": None, "context": context, "location": None, "unit": "Wh",
            "multiplier": None, "value": value,
            "format": "SignedData" if signed else "Raw", "signed": signed}


def _offline_receipt(samples: list[dict[str, Any]], *, start: str, stop: str,
                     started: datetime, stopped: datetime, tag: str, key: str | None,
                     authorization: dict[str, Any] | None = None,
                     driver: str | None = None, **fields: Any) -> dict[str, Any]:
    """A receipt whose hashes, entry and chunk digest add up (not settled on any chain);
    ``fields``: record fields set after it is priced (a price at a limit)."""
    import math

    from csms.domain.tariff import Tariff, price_minor
    from settlement.records import samples_hash

    duration = math.ceil((stopped - started).total_seconds())
    energy = int((Decimal(stop) - Decimal(start)).quantize(Decimal(1)))
    tariff = Tariff("*", Decimal("0.39"), "EUR", 2, Decimal("0.05"), Decimal("0.50"))
    record: dict[str, Any] = {
        "ledger": "7", "seq": 1, "session_id": 1, "station_id": "VEC1", "chain_station": 1,
        "host": "0x" + "cd" * 20, "connector_id": 1, "evse_id": 1, "id_tag": tag,
        "ocpp_version": "ocpp1.6", "transaction_id": "1",
        # as the central system writes them (UTC); a naive time as it is (no record's)
        "started_at": _written(started), "stopped_at": _written(stopped),
        "duration_s": duration, "meter_start_wh": start, "meter_stop_wh": stop,
        "energy_wh": max(energy, 0), "price_minor": price_minor(tariff, max(energy, 0), duration),
        "currency": "EUR", "decimals": 2, "unit": 1,
        "tariff": {"id": 1, "version": 1, "per_kwh": "0.39", "per_minute": "0.05",
                   "session_fee": "0.50"},
        "stop_reason": "Local", "samples_hash": "0x" + samples_hash(samples).hex(),
        "driver": driver, "driver_index": 1 if driver else 0,
        "kind": 1 if authorization else 0, "authorization": authorization,
        "card_commitment": None,
    }
    if any(x["signed"] for x in samples):
        record["meter_public_key"] = key
    record.update(fields)
    return _sealed(record, samples)


def _written(at: datetime) -> str:
    """A session time as settlement/worker.py writes it (a naive one, which it never
    writes, as Python writes it)."""
    return at.isoformat() if at.tzinfo is None else at.astimezone(UTC).isoformat()


def _sealed(record: dict[str, Any], samples: list[dict[str, Any]]) -> dict[str, Any]:
    """The receipt of ``record`` and its ``samples``, its samples hash, entry and chunk
    digest computed."""
    from settlement.records import chunk_digest, entry_of, samples_hash

    record = {**record, "samples_hash": "0x" + samples_hash(samples).hex()}
    rhash, packed = entry_of(record, 0)
    return {
        "voltledger_receipt": 2, "what_it_proves": "", "record": record, "samples": samples,
        "entry": {"record_hash": "0x" + rhash.hex(), "packed": hex(packed), "position": 0},
        "chunk": {"ledger": "7", "first_seq": 1, "count": 1,
                  "digest": "0x" + chunk_digest(7, 1, [(rhash, packed)]).hex()},
        "payment": {"paid": True, "amount": record["price_minor"], "unit": 1, "reason": None},
        "chain": {"chain_id": CHAIN_ID, "contract": CONTRACT, "tx_hash": "0x" + "11" * 32,
                  "block_number": 1, "rpc_hint": None},
    }


def _resigned_data(receipt: dict[str, Any], change: Callable[[dict[str, Any]], None],
                   *, sample: int = 0) -> dict[str, Any]:
    """``receipt`` with ``change`` made to one sample's signed object (outside what the
    meter signed), its hashes computed again: the receipt a station sending it gets."""
    samples = copy.deepcopy(receipt["samples"])
    change(samples[sample]["signed"])
    return _sealed(receipt["record"], samples)


def _real_meter(containers: list[dict[str, Any]], key: str | None, *, offset: int = 0,
                billed: tuple[str, str] | None = None) -> dict[str, Any]:
    """A receipt around real meters' signed records, billed from their own readings."""
    from csms.metering.ocmf import check_container, normalize_key

    pinned = normalize_key(key) if key else None
    readings = [r for c in containers for r in check_container(c, pinned).readings
                if r.kind == "import"]
    begin = next(r for r in readings if r.tx == "B")
    end = next(r for r in reversed(readings) if r.tx == "E")
    assert begin.time and end.time
    started, stopped = datetime.fromisoformat(begin.time), datetime.fromisoformat(end.time)
    if stopped <= started:
        stopped = started + timedelta(minutes=1)
    start, stop = billed or (str(begin.wh + offset), str(end.wh + offset))
    samples = [_sample(started, "Transaction.Begin", containers[0])]
    samples += [_sample(stopped, "Transaction.End", c) for c in containers[1:]]
    return _offline_receipt(samples, start=start, stop=stop, started=started, stopped=stopped,
                            tag=begin.identification or "TAG", key=pinned)


class _Meter:
    """A meter on any curve OCMF names, signing the way a given charger writes it."""

    def __init__(self, curve: Any, sa: str, digest: Any = None) -> None:
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec

        self.key = ec.generate_private_key(curve)
        self.sa, self.digest = sa, digest or hashes.SHA256()
        self.page = 0

    def public(self, form: str = "der") -> str:
        from cryptography.hazmat.primitives import serialization as ser

        pub = self.key.public_key()
        der = pub.public_bytes(ser.Encoding.DER, ser.PublicFormat.SubjectPublicKeyInfo)
        point = pub.public_bytes(ser.Encoding.X962, ser.PublicFormat.UncompressedPoint)
        return {
            "der": der.hex(),
            "pem": pub.public_bytes(ser.Encoding.PEM,
                                    ser.PublicFormat.SubjectPublicKeyInfo).decode(),
            "xy": point[1:].hex(),
            "compressed": pub.public_bytes(ser.Encoding.X962,
                                           ser.PublicFormat.CompressedPoint).hex(),
            "uk": base64.b64encode(json.dumps({"UK": der.hex()}).encode()).decode(),
            "b64": base64.b64encode(der).decode(),
        }[form]

    def container(self, tx: str, wh: int, at: datetime, tag: str, *, page: int | None = None,
                  signature: str = "der", tamper: bool = False, serial: str = "MTR-9",
                  status: str = "G", flags: str = "", unit: str = "kWh",
                  more: tuple[tuple[str, int], ...] = (),
                  spell: Callable[[str], str] | None = None,
                  sections: tuple[str, ...] = ()) -> str:
        """``more``: further readings of the same moment, (register, Wh) each; ``spell``
        rewrites the payload's text before the meter signs it (a number's spelling, a key
        twice); ``sections`` are appended after the signature (the meter's key)."""
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

        self.page += 1

        def reading(register: str, value: int) -> dict[str, Any]:
            return {"TM": at.strftime("%Y-%m-%dT%H:%M:%S,000+0000 S"), "TX": tx,
                    "RV": value / 1000, "RI": register, "RU": unit, "RT": "AC",
                    "EF": flags, "ST": status}

        payload = {"FV": "1.0", "GI": "test", "GS": "VEC1", "GV": "1.0",
                   "PG": f"T{page or self.page}", "MV": "test", "MM": "m", "MS": serial,
                   "IS": True, "IL": "NONE", "IF": [], "IT": "CENTRAL", "ID": tag,
                   "RD": [reading(r, v) for r, v in (*more, ("1-b:1.8.0", wh))]}
        text = json.dumps(payload, separators=(",", ":"))
        if spell is not None:
            spelled = spell(text)
            assert spelled != text, "the spelling changes nothing"
            text = spelled
        der = self.key.sign(text.encode(), ec.ECDSA(self.digest))
        size = (self.key.curve.key_size + 7) // 8
        r, s = decode_dss_signature(der)
        raw = r.to_bytes(size, "big") + s.to_bytes(size, "big")
        sig: dict[str, str] = {"SA": self.sa, "SD": der.hex().upper()}
        if signature == "raw":
            sig["SD"] = raw.hex()
        elif signature == "base64":
            sig.update(SE="base64", SD=base64.b64encode(der).decode())
        if tamper:
            text = text.replace(f'"TX":"{tx}"', f'"TX":"{tx}","XX":1')
        return "|".join(("OCMF", text, json.dumps(sig, separators=(",", ":")), *sections))


def _generated(meter: _Meter, *, pin: str | None = "der", message: str | None = None,
               wrap: str = "v16", start: int = 10_000, stop: int = 12_500,
               shift: timedelta = timedelta(0), tag: str = "TAG0", billed: str | None = None,
               begin_page: int | None = None, end_code: str = "E",
               end_shift: timedelta = timedelta(0), end: dict[str, Any] | None = None,
               naive: bool = False, also: tuple[tuple[str, int, timedelta], ...] = (),
               twice: bool = False, billed_start: str | None = None,
               **sign: Any) -> dict[str, Any]:
    """``sign`` goes to the begin container, ``end`` to the end container; ``also``: further
    containers of the meter between them, (TX, Wh, time after the begin) each; ``twice``:
    the begin and the end container sent twice (as a 1.6 station sends the end reading in
    MeterValues and again in StopTransaction)."""
    t1 = T0 + timedelta(minutes=30)
    begin = meter.container("B", start, T0 + shift, tag, page=begin_page, **sign)
    further = [meter.container(tx, wh, T0 + shift + after, tag) for tx, wh, after in also]
    end_container = meter.container(end_code, stop, t1 + shift + end_shift, "TAG0",
                                    **(end or {}))

    def wrapped(container: str) -> dict[str, Any]:
        if wrap == "v16":
            return {"signedData": container}
        return {"signedMeterData": base64.b64encode(container.encode()).decode(),
                "signingMethod": "ECC256", "encodingMethod": "OCMF",
                **({"publicKey": meter.public(message)} if message else {})}

    samples = [_sample(T0, "Transaction.Begin", wrapped(begin)),
               *[_sample(T0, "Sample.Periodic", wrapped(c)) for c in further],
               _sample(t1, "Transaction.End", wrapped(end_container))]
    if twice:
        samples += [_sample(T0, "Transaction.Begin", wrapped(begin)),
                    _sample(t1, "Transaction.End", wrapped(end_container))]
    started, stopped = (T0.replace(tzinfo=None), t1.replace(tzinfo=None)) if naive else (T0, t1)
    return _offline_receipt(samples, start=billed_start or str(start), stop=billed or str(stop),
                            started=started, stopped=stopped, tag="TAG0",
                            key=meter.public(pin) if pin else None)


def _whole(text: str) -> str:
    """Whole kWh written without the decimals (12.0 as 12), as a JSON serializer may."""
    return re.sub(r'"RV":(\d+)\.0,', r'"RV":\1,', text)


def _rv(written: str, instead: str) -> Callable[[str], str]:
    """The reading value ``written`` spelled ``instead`` (raw JSON text)."""
    return lambda text: text.replace(f'"RV":{written},', f'"RV":{instead},')


def _second_unit_dropped(text: str) -> str:
    """The second reading without RU: OCMF has it inherit the first one's."""
    first = text.index('"RU":"kWh",')
    second = text.index('"RU":"kWh",', first + 1)
    return text[:second] + text[second + len('"RU":"kWh",'):]


def _lem() -> dict[str, Any]:
    """The LEM DCBM record's payload as its meter wrote it, signed with a test key (its own
    key is not public)."""
    from cryptography.hazmat.primitives.asymmetric import ec

    from support.ocmf_vectors import LEM_PAYLOAD

    meter = _Meter(ec.SECP256R1(), "ECDSA-secp256r1-SHA256")
    sig = meter.key.sign(LEM_PAYLOAD.encode(), ec.ECDSA(meter.digest)).hex()
    container = f'OCMF|{LEM_PAYLOAD}|{{"SA":"{meter.sa}","SD":"{sig}"}}'
    return _real_meter([{"signedData": container}], meter.public())


def _sections_appended(count: int) -> dict[str, Any]:
    """Containers with ``count`` sections after the signature, each the meter's key (one is
    how the Transparenzsoftware takes a key; OCMF itself has three sections)."""
    from cryptography.hazmat.primitives.asymmetric import ec

    meter = _Meter(ec.SECP256R1(), "ECDSA-secp256r1-SHA256")
    keys = (meter.public(),) * count
    return _generated(meter, sections=keys, end={"sections": keys})


def _not_an_object() -> dict[str, Any]:
    samples = [_sample(T0, "Transaction.Begin", None, "10000"),
               {**_sample(T0 + timedelta(minutes=30), "Transaction.End", None, "12500"),
                "format": "SignedData", "signed": "OCMF|{}|{}"}]
    return _offline_receipt(samples, start="10000", stop="12500", started=T0,
                            stopped=T0 + timedelta(minutes=30), tag="TAG0", key=None)


def _authorized(max_amount: int, signer: Any = None, **fields: Any) -> dict[str, Any]:
    from eth_account import Account

    from settlement.eip712 import Authorization, sign

    driver = Account.create()
    auth = Authorization(driver.address, 1, 45, 10, 60, max_amount, 7, 2_000_000_000)
    signed = sign(auth, (signer or driver).key, CHAIN_ID, CONTRACT)
    samples = [_sample(T0, "Transaction.Begin", None, "10000"),
               _sample(T0 + timedelta(minutes=30), "Transaction.End", None, "12500")]
    return _offline_receipt(samples, start="10000", stop="12500", started=T0,
                            stopped=T0 + timedelta(minutes=30), tag="APP", key=None,
                            authorization=signed.as_json(), driver=driver.address.lower(),
                            **fields)


def _limited(**fields: Any) -> dict[str, Any]:
    """A card session of 2.5 kWh in 30 minutes (the tariff gives 298) with these record
    fields: a price at the session's limit."""
    samples = [_sample(T0, "Transaction.Begin", None, "10000"),
               _sample(T0 + timedelta(minutes=30), "Transaction.End", None, "12500")]
    return _offline_receipt(samples, start="10000", stop="12500", started=T0,
                            stopped=T0 + timedelta(minutes=30), tag="TAG0", key=None,
                            driver="0x" + "ab" * 20, **fields)


def _alfen_cases() -> list[tuple[str, dict[str, Any]]]:
    """Alfen's format (``AP;...``): the EVBox station simulator's real begin/end pair
    (tests/support/alfen_vectors.py), honest and forged."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    from support.alfen_vectors import (
        REFERENCE_BEGIN,
        SIM_BEGIN,
        SIM_END,
        SIM_KEY,
        signed_record,
    )

    fields = SIM_END.split(";")
    raw = bytearray(base64.b32decode(fields[4]))
    raw[46] ^= 0x01  # the end reading's value
    altered = ";".join([*fields[:4], base64.b32encode(bytes(raw)).decode(), *fields[5:]])
    pair = [{"signedData": SIM_BEGIN}, {"signedData": SIM_END}]
    cases = [
        ("Alfen (secp192r1, the EVBox simulator's pair)", _real_meter(pair, SIM_KEY)),
        ("Alfen billed 100 Wh more than signed",
         _real_meter(pair, SIM_KEY, billed=("111133", "111371"))),
        ("Alfen end record altered",
         _real_meter([pair[0], {"signedData": altered}], SIM_KEY)),
        ("Alfen begin record of another meter",
         _real_meter([{"signedData": REFERENCE_BEGIN}, pair[1]], SIM_KEY)),
        ("Alfen record cut short", _real_meter([*pair, {"signedData": SIM_END[:-20]}], SIM_KEY)),
    ]
    # readings no real record has, signed with a test key
    key = ec.generate_private_key(ec.SECP192R1())
    der = key.public_key().public_bytes(serialization.Encoding.DER,
                                        serialization.PublicFormat.SubjectPublicKeyInfo).hex()

    def generated(begin: dict[str, int], end: dict[str, int],
                  after: dict[str, int] | None = None) -> dict[str, Any]:
        """``after``: a further end record (a page later)."""
        b = {"wh": 111133, "at": 1577957836, "page": 171, **begin}
        e = {"wh": 111271, "at": 1577958035, "page": 172, **end}
        records = [signed_record(key, "0", **b), signed_record(key, "1", **e)]
        if after is not None:
            records.append(signed_record(key, "1", **{**e, "page": 173, **after}))
        return _real_meter([{"signedData": record} for record in records], der)

    return [*cases,
            ("Alfen, a test key's honest pair", generated({}, {})),
            ("Alfen begin larger than the end", generated({"wh": 111300}, {})),
            ("Alfen readings of two meter sessions", generated({"session": 86}, {})),
            ("Alfen end with an adapter error", generated({}, {"status": 1 << 31})),
            # a value of 8 bytes is scaled before it is bounded: 10^19 times 10^-5 is
            # 10^14 Wh, times 10^-4 the largest reading a register shows, times 10^-3 (a
            # further end record) none
            *[(f"Alfen readings up to 10^19 Wh times 10^{scalar}",
               generated({"wh": 10**19 - 138 * 10**-scalar, "scalar": scalar},
                         {"wh": 10**19, "scalar": scalar}))
              for scalar in (-5, -4)],
            ("Alfen end reading of 10^19 Wh times 10^-3",
             generated({}, {}, {"wh": 10**19, "scalar": -3}))]


def _blank_cases() -> list[tuple[str, dict[str, Any]]]:
    """Signed data, a key in the message, with characters around them (outside what the
    meter signed): space, tab, CR and LF are no part of a record, key or signature to either
    verifier; any other character, whitespace to Python (\\x1c, \\x85) or to JavaScript
    (\\ufeff), is part of it to both."""
    from cryptography.hazmat.primitives.asymmetric import ec

    from support.alfen_vectors import SIM_BEGIN, SIM_END, SIM_KEY

    def p256() -> _Meter:
        return _Meter(ec.SECP256R1(), "ECDSA-secp256r1-SHA256")

    v16 = _generated(p256())
    v201 = _generated(p256(), pin=None, message="der", wrap="v201")
    alfen16 = _real_meter([{"signedData": SIM_BEGIN}, {"signedData": SIM_END}], SIM_KEY)
    alfen201 = _real_meter([{"signedMeterData": base64.b64encode(SIM_BEGIN.encode()).decode()},
                            {"signedData": SIM_END}], SIM_KEY)

    def around(field: str, before: str, after: str = "",
               inside: bool = False) -> Callable[[dict[str, Any]], None]:
        def change(signed: dict[str, Any]) -> None:
            if inside:  # in the base64 text of a 2.0.1 signedMeterData
                text = base64.b64decode(signed[field]).decode()
                signed[field] = base64.b64encode((before + text + after).encode()).decode()
            else:
                signed[field] = before + signed[field] + after
        return change

    cases: list[tuple[str, dict[str, Any]]] = []
    for label, chars in BLANKS.items():
        cases += [
            (f"OCMF 1.6 record, {label} before it",
             _resigned_data(v16, around("signedData", chars))),
            (f"OCMF 1.6 record, {label} after it",
             _resigned_data(v16, around("signedData", "", chars))),
            (f"OCMF 2.0.1 record, {label} before it",
             _resigned_data(v201, around("signedMeterData", chars))),
            (f"OCMF 2.0.1 record, {label} after it in its base64",
             _resigned_data(v201, around("signedMeterData", "", chars, inside=True))),
            (f"OCMF 2.0.1 key, {label} before it",
             _resigned_data(v201, around("publicKey", chars))),
            (f"Alfen 1.6 record, {label} before it",
             _resigned_data(alfen16, around("signedData", chars))),
            (f"Alfen 1.6 record, {label} after it",
             _resigned_data(alfen16, around("signedData", "", chars))),
            (f"Alfen 2.0.1 record, {label} before it",
             _resigned_data(alfen201, around("signedMeterData", chars))),
            (f"Alfen 2.0.1 record, {label} before it in its base64",
             _resigned_data(alfen201, around("signedMeterData", chars, inside=True))),
        ]
    return cases


# characters around signed data: no part of it (space, tab, CR, LF), part of it (the rest)
BLANKS = {"space, tab, CR and LF": " \t\r\n", "\\x1c": "\x1c", "\\x85": "\x85",
          "\\ufeff": "\ufeff", "\\x0b": "\x0b"}


def _vector_cases() -> list[tuple[str, dict[str, Any]]]:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    from support.ocmf_vectors import (
        BAUER_BEGIN,
        BAUER_END,
        BAUER_KEY,
        DZG_BEGIN,
        DZG_END,
        DZG_KEY,
        ISKRA,
        ISKRA_KEY,
        KEBA,
        KEBA_KEY,
        KEBA_P30_CONTAINER,
        KEBA_P30_PUBLIC_KEY,
    )

    p30 = {"signedMeterData": base64.b64encode(KEBA_P30_CONTAINER.encode()).decode(),
           "signingMethod": "ECC256",
        "encodingMethod": "OCMF", "publicKey": KEBA_P30_PUBLIC_KEY}
    cases = [
        ("KEBA (P-256, the OCMF spec's example)", _real_meter([{"signedData": KEBA}], KEBA_KEY)),
        ("KEBA billed 40 Wh more than signed",
         _real_meter([{"signedData": KEBA}], KEBA_KEY, billed=("260", "300"))),
        ("ISKRA", _real_meter([{"signedData": ISKRA}], ISKRA_KEY)),
        ("DZG (secp256k1, begin and end apart)",
         _real_meter([{"signedData": DZG_BEGIN}, {"signedData": DZG_END}], DZG_KEY)),
        ("BAUER (transaction register, offset)",
         _real_meter([{"signedData": BAUER_BEGIN}, {"signedData": BAUER_END}], BAUER_KEY,
                     offset=50_000)),
        ("KEBA P30 (2.0.1, key in the message)", _real_meter([p30], None)),
        *_alfen_cases(),
        *_blank_cases(),
    ]
    for sa, curve in (("secp256r1", ec.SECP256R1()), ("secp384r1", ec.SECP384R1()),
                      ("secp521r1", ec.SECP521R1()), ("secp256k1", ec.SECP256K1()),
                      ("secp192r1", ec.SECP192R1()), ("brainpool256r1", ec.BrainpoolP256R1()),
                      ("brainpoolP384r1", ec.BrainpoolP384R1())):
        cases.append((f"{sa}", _generated(_Meter(curve, f"ECDSA-{sa}-SHA256"))))

    def p256() -> _Meter:
        return _Meter(ec.SECP256R1(), "ECDSA-secp256r1-SHA256")

    cases += [
        ("P-256 with SHA-512",
         _generated(_Meter(ec.SECP256R1(), "ECDSA-secp256r1-SHA512", hashes.SHA512()))),
        ("P-384, raw r||s", _generated(_Meter(ec.SECP384R1(), "ECDSA-secp384r1-SHA256"),
                                       signature="raw")),
        ("P-521, base64 signature", _generated(_Meter(ec.SECP521R1(), "ECDSA-secp521r1-SHA256"),
                                               signature="base64")),
        ("secp256k1 key as x||y in the message",
         _generated(_Meter(ec.SECP256K1(), "ECDSA-secp256k1-SHA256"), pin=None, message="xy",
                    wrap="v201")),
        ("brainpool key as PEM in the message",
         _generated(_Meter(ec.BrainpoolP256R1(), "ECDSA-brainpool256r1-SHA256"), pin=None,
                    message="pem", wrap="v201")),
        ("P-256 compressed key in the message",
         _generated(p256(), pin=None, message="compressed", wrap="v201")),
        ("P-256 key as base64 JSON in the message",
         _generated(p256(), pin=None, message="uk", wrap="v201")),
        ("no key anywhere", _generated(p256(), pin=None, wrap="v201")),
        ("payload changed after signing", _generated(p256(), tamper=True)),
        ("a P-384 key for a P-256 signature",
         _generated(_Meter(ec.SECP384R1(), "ECDSA-secp256r1-SHA256"))),
        ("readings a day before the session",
         _generated(p256(), shift=timedelta(days=-1))),
        ("pages going backwards", _generated(p256(), begin_page=9)),
        ("signed for another card", _generated(p256(), tag="04AABBCC")),
        ("billed stop above the signed one", _generated(p256(), billed="13500")),
        ("billed in kWh, signed in Wh", _generated(p256(), billed="12.5")),
        # OCMF ends a transaction with E or a termination (L, R, A, P): each is the end reading
        *[(f"ended by TX {code}", _generated(p256(), end_code=code)) for code in "LRAP"],
        ("ended by TX R, billed stop above the signed one",
         _generated(p256(), end_code="R", billed="13500")),
        # the meter's own status: not G, or the energy error flag, is not billable
        ("begin marked faulty (ST E)", _generated(p256(), status="E")),
        ("end with an energy error (EF E)", _generated(p256(), end={"flags": "E"})),
        ("a time error alone (EF t)", _generated(p256(), flags="t", end={"flags": "t"})),
        # readings that are not this session's
        ("begin and end of two meters", _generated(p256(), end={"serial": "MTR-8"})),
        ("begin later than the end", _generated(p256(), end_shift=timedelta(minutes=-31))),
        ("end an hour after the session", _generated(p256(), end_shift=timedelta(hours=1))),
        ("session times without an offset", _generated(p256(), naive=True)),
        # begin and end from one register: the total import register, not a tariff one
        ("a tariff register beside the total on both sides",
         _generated(p256(), more=(("1-b:1.8.1", 3_000),), end={"more": (("1-b:1.8.1", 4_000),)})),
        ("a tariff register beside the total at the begin only",
         _generated(p256(), more=(("1-b:1.8.1", 3_000),))),
        # a begin of the tariff register and an end of the total: each the meter's, their
        # difference no energy it measured (csms.metering.ocmf.foreign)
        ("a begin and an end of two registers",
         _generated(p256(), start=50_000, stop=77_540,
                    spell=lambda t: t.replace('"RI":"1-b:1.8.0"', '"RI":"1-b:1.8.1"'))),
        # billed from a whole step below the signed begin, where half a step is the most any
        # rounding of the meter's reading allows (csms.metering.ocmf.reconcile)
        ("billed start a whole step below the signed begin",
         _generated(p256(), start=5_000, stop=12_340, billed_start="4991", billed="12349")),
        ("billed start half a step below the signed begin",
         _generated(p256(), start=5_000, stop=12_340, billed_start="4995", billed="12349")),
        # no signed end (its last reading a C at the stop): a stop 187.5 kWh above it is
        # beyond what any charger (4 MW) delivers in the power check's minute of slack
        ("no signed end, billed far above the last signed reading",
         _generated(p256(), end_code="C", billed="200000")),
        ("no signed end, billed at the last signed reading",
         _generated(p256(), end_code="C")),
        ("LEM DCBM (import and export registers, inherited TM and TX)", _lem()),
        # how a reading is written (csms.metering.ocmf, tests/unit/csms/metering/
        # test_ocmf_hostile.py): its last digit widens the match by at most 10 Wh, its unit
        # in any case, inherited from the reading before; what no register shows, a key
        # twice and a second begin or end reading are not billed
        ("whole-kWh readings (RV 10, 12)",
         _generated(p256(), stop=12_000, spell=_whole, end={"spell": _whole})),
        ("whole-kWh readings, billed 9 Wh over",
         _generated(p256(), stop=12_000, billed="12009", spell=_whole, end={"spell": _whole})),
        ("whole-kWh readings, billed 0.5 kWh over",
         _generated(p256(), stop=12_000, billed="12500", spell=_whole, end={"spell": _whole})),
        ("a reading written to the Wh (12.500), billed 5 Wh over",
         _generated(p256(), billed="12505", end={"spell": _rv("12.5", "12.500")})),
        ("kWh spelled KWH and kwh", _generated(p256(), unit="KWH", end={"unit": "kwh"})),
        *[(f"an import register in {unit!r}", _generated(p256(), unit=unit))
          for unit in ("mWh", "MWh", "kvarh", "")],
        ("a reading inheriting its unit from the one before",
         _generated(p256(), more=(("1-b:1.8.1", 3_000),), spell=_second_unit_dropped,
                    end={"more": (("1-b:1.8.1", 4_000),), "spell": _second_unit_dropped})),
        *[(f"a begin reading of {label} kWh", _generated(p256(), spell=_rv("10.0", rv)))
          for label, rv in (("-10.0", "-10.0"), ("1e999999", "1e999999"),
                            ('"1e999999"', '"1e999999"'), ("10^400", "1" + "0" * 400),
                            ("2e12", "2e12"), ("NaN", "NaN"), ("Infinity", "Infinity"),
                            # Wh beyond 10^-30: no meter's step (and 10^7 digits for the page)
                            ("1e-10000000", "1e-10000000"),
                            ('"1e-10000000"', '"1e-10000000"'), ("1e-34", "1e-34"),
                            ("1e-33", "1e-33"))],
        ("the begin code written with spaces (TX \" B \")",
         _generated(p256(), spell=lambda t: t.replace('"TX":"B"', '"TX":" B "'))),
        # pyocmf strips TX with str.strip(): Python's whitespace, not JavaScript's trim()'s
        ("the begin code written with \\x1c and \\x85 (TX)",
         _generated(p256(), spell=lambda t: t.replace('"TX":"B"', '"TX":"\\u001cB\\u0085"'))),
        ("the begin code written with \\ufeff (TX)",
         _generated(p256(), spell=lambda t: t.replace('"TX":"B"', '"TX":"\\ufeffB"'))),
        # a reading's value in text is read as Python's Decimal() reads it (str.strip())
        ("a begin reading written with \\x1c (RV)",
         _generated(p256(), spell=_rv("10.0", '"\\u001c10.0\\u000b"'))),
        ("a current type (RT) that is not text",
         _generated(p256(), spell=lambda t: t.replace('"RT":"AC"', '"RT":1'))),
        ("the reading's value twice (RV)", _generated(p256(), spell=_rv("10.0", '9.0,"RV":10.0'))),
        ("the reading's unit twice (RU)",
         _generated(p256(), spell=lambda t: t.replace('"RU":"kWh"', '"RU":"Wh","RU":"kWh"'))),
        ("a begin reading in Arabic-Indic digits",
         _generated(p256(), spell=_rv("10.0", '"\\u0661\\u0660.0"'))),
        # OCMF cuts a container at every '|': no section may hold one (pyocmf and the
        # Transparenzsoftware cut it so); the meter's key may follow as a fourth section
        ("a '|' inside a text of the payload",
         _generated(p256(), spell=lambda t: t.replace('"GI":"test"', '"GI":"te|st"'))),
        ("the meter's key as a fourth section", _sections_appended(1)),
        ("a fifth section", _sections_appended(2)),
        ("two different begin readings of the register",
         _generated(p256(), also=(("B", 9_900, timedelta(minutes=-3)),))),
        ("two different end readings of the register",
         _generated(p256(), also=(("E", 12_600, timedelta(minutes=33)),))),
        ("the begin and the end container sent twice", _generated(p256(), twice=True)),
        ("signed meter data that is not an object", _not_an_object()),
        ("app session, the driver's authorization", _authorized(2_000)),
        ("app session above the authorized amount", _authorized(10)),
        ("app session signed by someone else", _authorized(2_000, signer=_other_account())),
        # a session priced above its limit is billed its limit (the tariff gives 298)
        ("billed at the session's limit", _limited(price_minor=250, limit_minor=250)),
        ("billed below the tariff without a limit", _limited(price_minor=250)),
        ("a limit, billed neither it nor the tariff's price",
         _limited(price_minor=260, limit_minor=250)),
        ("a limit above the tariff's price, billed the limit",
         _limited(price_minor=300, limit_minor=300)),
        ("a limit above the tariff's price, billed the tariff's price",
         _limited(price_minor=298, limit_minor=300)),
        ("a limit in text", _limited(price_minor=250, limit_minor="250")),
        ("app session billed at its limit", _authorized(250, price_minor=250, limit_minor=250)),
        ("app session billed at a limit above the authorized amount",
         _authorized(200, price_minor=250, limit_minor=250)),
    ]
    # values of another type where the record has numbers, times, readings, a tariff: the
    # verifiers must read them as Python does (int(), str(), ==, Decimal)
    named = dict(cases)
    # the DZG meter's readings (+02:00) a day after the record's session: the message gives
    # their times as the meter wrote them
    late = copy.deepcopy(named["DZG (secp256k1, begin and end apart)"])
    for name in ("started_at", "stopped_at"):
        at = datetime.fromisoformat(late["record"][name]) - timedelta(days=1)
        late["record"][name] = at.isoformat()
    cases.append(("DZG readings a day after the session", late))
    signed, app = named["secp256r1"], named["app session, the driver's authorization"]
    for name in ("seq", "chain_station", "started_at", "duration_s", "meter_start_wh",
                 "meter_stop_wh", "energy_wh", "price_minor", "decimals", "tariff", "driver",
                 "driver_index", "kind", "id_tag", "meter_public_key", "limit_minor"):
        for value in (None, 1.5, "x", [1]):
            bad = copy.deepcopy(signed)
            bad["record"][name] = value
            cases.append((f"record.{name} = {value!r}", bad))
    # readings no record can hold (not a finite number, Arabic-Indic digits, more digits than
    # a decimal context holds), prices beyond it, a start at the calendar's first day
    for name, value in (("meter_start_wh", "NaN"), ("meter_stop_wh", "Infinity"),
                        ("meter_stop_wh", "1e30"),
                        ("meter_start_wh", "\u0661\u0660\u0660\u0660\u0660"),
                        ("decimals", 30), ("decimals", 10**6),
                        ("started_at", "0001-01-01T00:00:00+00:00")):
        bad = copy.deepcopy(signed)
        bad["record"][name] = value
        cases.append((f"record.{name} = {value!r}", bad))
    # a receipt's numbers are ASCII: other scripts' digits and spaces, which Python's int()
    # and Decimal() read, are no number to either verifier
    for name, value in (("per_kwh", "\u0660.\u0663\u0669"), ("per_minute", "\uff10.05"),
                        ("session_fee", "\u00a00.50")):
        bad = copy.deepcopy(signed)
        bad["record"]["tariff"][name] = value
        cases.append((f"record.tariff.{name} = {value!r}", bad))
    for name, value in (("decimals", "\uff12"), ("energy_wh", "\u0662\u0665\u0660\u0660"),
                        ("duration_s", "\uff11\uff18\uff10\uff10"),
                        ("price_minor", "\u00a0218"), ("chain_station", "\u0661")):
        bad = copy.deepcopy(signed)
        bad["record"][name] = value
        cases.append((f"record.{name} = {value!r}", bad))
    for name in ("driver", "station", "max_amount", "nonce", "signature"):
        for value in (None, "x"):
            bad = copy.deepcopy(app)
            bad["record"]["authorization"][name] = value
            cases.append((f"authorization.{name} = {value!r}", bad))
    bad = copy.deepcopy(app)
    bad["record"]["authorization"]["max_amount"] = "\uff12\uff10\uff10\uff10"
    cases.append(("authorization.max_amount in fullwidth digits", bad))
    return cases


def _not_receipts() -> list[tuple[str, Any]]:
    """Not receipts of this version: both verifiers refuse them, in the same words."""
    app = _authorized(2_000)
    cases: list[tuple[str, Any]] = [(f"version {value!r}", {**app, "voltledger_receipt": value})
                                    for value in ("2", 1, 2.5)]
    return [*cases, ("a record hash that is not hex",
                     {**app, "entry": {**app["entry"], "record_hash": "0xzz"}}),
            ("a list", [app])]


def _other_account() -> Any:
    from eth_account import Account

    return Account.create()


async def test_the_page_checks_signed_meter_data_and_authorizations_as_csms_verify_does(
    tmp_path: Path,
) -> None:
    """Offline (no RPC: both say UNVERIFIED), every check the same: real meters' records,
    every curve OCMF names, the key and signature encodings chargers send, forged readings,
    the driver's EIP-712 authorization of app sessions."""
    _require()
    # Every case is read by the modules the page bundles, compared check for check with
    # csms verify under Node below. Through the built page in the browser (~0.3 s a
    # receipt) go the real meters, every curve and encoding of keys and signatures (the
    # bundle's cryptography), a third of the other signed-data cases, a sixth of the
    # fields of the wrong type and two of the characters around signed data.
    blank = [name for name, _ in _blank_cases()]
    cases = [{"name": name, "receipt": receipt, "options": {}}
             for name, receipt in _vector_cases()]
    typed = [c for c in cases if _WRONG_TYPE.match(c["name"])]
    rest = [c for c in cases if c["name"] not in blank and not _WRONG_TYPE.match(c["name"])]
    crypto = rest.index(next(c for c in rest if c["name"] == "no key anywhere")) + 1
    through_page = [*rest[:crypto], *rest[crypto::3], *typed[::6],
                    *(c for c in cases if c["name"] in (blank[0], blank[-1]))]
    expected = await asyncio.to_thread(_cli_verdicts, cases, tmp_path)
    got = await _page_verdicts(through_page, tmp_path, paste=True)
    _assert_agree(through_page, [expected[cases.index(c)] for c in through_page], got)
    _assert_vector_verdicts({case["name"]: want
                             for case, want in zip(cases, expected, strict=True)})


# the fields of the wrong type or form (record.seq = None, authorization.nonce = 'x', ...)
_WRONG_TYPE = re.compile(r"^(record|authorization)\.[\w.]+ (=|in) ")


def _assert_vector_verdicts(by_name: dict[str, dict[str, Any]],
                            blank: list[str] | None = None) -> None:
    """What the verifiers must say of _vector_cases (not only that they agree)."""
    proven = "the energy figure is the one the calibrated meter signed"
    # a record that commits no meter key: its signatures verify with the key its samples
    # carry, anyone's, which the verdict names without calling it the calibrated meter's
    uncommitted = "its meter data is signed by a key the record does not commit"
    no_meter_key = {"KEBA P30 (2.0.1, key in the message)",
                    "secp256k1 key as x||y in the message", "brainpool key as PEM in the message",
                    "P-256 compressed key in the message",
                    "P-256 key as base64 JSON in the message"}

    def claims(name: str) -> bool:
        """Whether the verdict says the signed readings are this session's, in the words
        of a record that commits its meter's key or of one that does not (not both)."""
        words = by_name[name]["proves"]
        if any(name.startswith(f"OCMF 2.0.1 {part}") for part in ("record", "key")) \
                or name in no_meter_key:
            assert proven not in words, name
            return uncommitted in words
        assert uncommitted not in words, name
        return proven in words

    for name in ("KEBA (P-256, the OCMF spec's example)", "DZG (secp256k1, begin and end apart)",
                 "KEBA P30 (2.0.1, key in the message)",
                 "secp256r1", "secp384r1", "secp521r1", "secp256k1", "secp192r1",
                 "brainpool256r1", "brainpoolP384r1", "P-256 with SHA-512", "P-384, raw r||s",
                 "P-521, base64 signature", "secp256k1 key as x||y in the message",
                 "brainpool key as PEM in the message", "P-256 compressed key in the message",
                 "P-256 key as base64 JSON in the message", "ended by TX L", "ended by TX R",
                 "ended by TX A", "ended by TX P", "a time error alone (EF t)",
                 "a tariff register beside the total on both sides",
                 "a tariff register beside the total at the begin only",
                 "billed start half a step below the signed begin",
                 "LEM DCBM (import and export registers, inherited TM and TX)",
                 "whole-kWh readings (RV 10, 12)", "whole-kWh readings, billed 9 Wh over",
                 "kWh spelled KWH and kwh", "a reading inheriting its unit from the one before",
                 'the begin code written with spaces (TX " B ")',
                 "the begin and the end container sent twice",
                 "the meter's key as a fourth section",
                 "Alfen (secp192r1, the EVBox simulator's pair)",
                 "Alfen, a test key's honest pair"):
        assert by_name[name]["status"] == "UNVERIFIED" and not by_name[name]["failed"], name
        assert claims(name), name
    # a stop the meter did not sign, within what a charger delivers after its last reading:
    # not proven, not failed
    honest = by_name["no signed end, billed at the last signed reading"]
    assert honest["status"] == "UNVERIFIED" and not honest["failed"], honest
    # space, tab, CR and LF around signed data are no part of it, any other character is
    for name in blank if blank is not None else [name for name, _ in _blank_cases()]:
        want = ("UNVERIFIED", set()) if "space, tab, CR and LF" in name \
            else ("INVALID", {"meter signature 1"})
        assert (by_name[name]["status"], by_name[name]["failed"]) == want, name
        assert claims(name) == (want[0] == "UNVERIFIED"), name
    # an Alfen value scaled, then bounded (10^15 Wh, what a register shows at most)
    for name in ("Alfen readings up to 10^19 Wh times 10^-5",
                 "Alfen readings up to 10^19 Wh times 10^-4"):
        assert by_name[name]["status"] == "UNVERIFIED" and not by_name[name]["failed"], name
        assert proven in by_name[name]["proves"], name
    assert by_name["Alfen end reading of 10^19 Wh times 10^-3"]["failed"] == {
        "meter signature 3"}
    # readings no meter signs, in a unit that is not energy's, a payload with a key twice:
    # the container is unreadable, its readings are not billed
    for name in ("an import register in 'mWh'", "an import register in 'MWh'",
                 "an import register in 'kvarh'", "an import register in ''",
                 *[f"a begin reading of {rv} kWh" for rv in (
                     "-10.0", "1e999999", '"1e999999"', "10^400", "2e12", "NaN", "Infinity",
                     "1e-10000000", '"1e-10000000"', "1e-34")],
                 "a current type (RT) that is not text", "the reading's value twice (RV)",
                 "the reading's unit twice (RU)", "a begin reading in Arabic-Indic digits",
                 "a '|' inside a text of the payload"):
        assert (by_name[name]["status"], by_name[name]["failed"]) == (
            "INVALID", {"meter signature 1"}), name
        assert proven not in by_name[name]["proves"], name
    for name in ("KEBA billed 40 Wh more than signed", "no key anywhere",
                 "payload changed after signing", "a P-384 key for a P-256 signature",
                 "readings a day before the session", "pages going backwards",
                 "signed for another card", "billed stop above the signed one",
                 "billed in kWh, signed in Wh", "app session above the authorized amount",
                 "app session signed by someone else"):
        assert by_name[name]["status"] == "INVALID", name
    for name, failed in (
            ("ended by TX R, billed stop above the signed one",
             {"signed readings = billed readings"}),
            # a whole kWh written 12 lets no station bill 12.5 kWh; 12.500 is to the Wh
            ("whole-kWh readings, billed 0.5 kWh over", {"signed readings = billed readings"}),
            ("a reading written to the Wh (12.500), billed 5 Wh over",
             {"signed readings = billed readings"}),
            ("two different begin readings of the register",
             {"signed readings belong to this session"}),
            ("two different end readings of the register",
             {"signed readings belong to this session"}),
            # the BAUER meter marks its readings "ST":"E", "EF":"Et"
            ("BAUER (transaction register, offset)", {"meter status"}),
            ("begin marked faulty (ST E)", {"meter status"}),
            ("end with an energy error (EF E)", {"meter status"}),
            ("begin and end of two meters", {"signed readings belong to this session"}),
            ("a begin and an end of two registers",
             {"signed readings belong to this session"}),
            ("billed start a whole step below the signed begin",
             {"signed readings = billed readings"}),
            ("no signed end, billed far above the last signed reading",
             {"signed readings = billed readings"}),
            ("begin later than the end", {"signed readings belong to this session"}),
            ("end an hour after the session", {"signed readings belong to this session"}),
            ("session times without an offset", {"record"}),
            ("DZG readings a day after the session",
             {"record hash", "signed readings belong to this session"}),
            ("signed meter data that is not an object", {"meter signature 1"}),
            ("a fifth section", {"meter signature 1", "meter signature 2"}),
            ("Alfen billed 100 Wh more than signed", {"signed readings = billed readings"}),
            ("Alfen end record altered", {"meter signature 2"}),
            # (the receipt's card is the other meter's record's: the end is not its)
            ("Alfen begin record of another meter",
             {"meter signature 1", "signed readings belong to this session"}),
            ("Alfen record cut short", {"meter signature 3"}),
            ("Alfen readings of two meter sessions", {"signed readings belong to this session"}),
            ("Alfen end with an adapter error", {"meter status"})):
        assert (by_name[name]["status"], by_name[name]["failed"]) == ("INVALID", failed), name
        assert proven not in by_name[name]["proves"], name
    # (the words of the check are compared between the two verifiers check for check)
    larger = by_name["Alfen begin larger than the end"]
    assert larger["status"] == "INVALID"
    assert "signed readings belong to this session" in larger["failed"]
    assert by_name["app session, the driver's authorization"]["passed"] >= {"authorization"}
    for name in ("billed at the session's limit",
                 "a limit above the tariff's price, billed the tariff's price",
                 "app session billed at its limit"):
        assert (by_name[name]["status"], by_name[name]["failed"]) == ("UNVERIFIED", set()), name
        assert "price" in by_name[name]["passed"], name
    for name, failed in (
            ("billed below the tariff without a limit", {"price"}),
            ("a limit, billed neither it nor the tariff's price", {"price"}),
            ("a limit above the tariff's price, billed the limit", {"price"}),
            ("a limit in text", {"price"}),
            ("app session billed at a limit above the authorized amount", {"authorization"})):
        assert (by_name[name]["status"], by_name[name]["failed"]) == ("INVALID", failed), name
    # numbers in other scripts' digits or spaces: no number (the page's rule)
    for name, failed in (
            ("record.tariff.per_kwh = '\u0660.\u0663\u0669'", {"record hash", "price"}),
            ("record.tariff.per_minute = '\uff10.05'", {"record hash", "price"}),
            ("record.tariff.session_fee = '\\xa00.50'", {"record hash", "price"}),
            ("record.decimals = '\uff12'", {"record"}),
            ("record.energy_wh = '\u0662\u0665\u0660\u0660'", {"record"}),
            ("record.duration_s = '\uff11\uff18\uff10\uff10'", {"record"}),
            ("record.price_minor = '\\xa0218'", {"record"}),
            ("record.chain_station = '\u0661'", {"record"}),
            ("authorization.max_amount in fullwidth digits", {"record hash", "authorization"})):
        assert (by_name[name]["status"], by_name[name]["failed"]) == ("INVALID", failed), name


_NODE_VERIFIER = """
import { readFileSync } from "node:fs";
const pyjson = await import(process.argv[1]);
const verifier = await import(process.argv[2]);
const out = [];
for (const receipt of pyjson.parse(readFileSync(0, "utf-8"))) {
  let v;
  try {
    v = await verifier.verifyReceipt(receipt);
  } catch (exc) {
    if (!(exc instanceof verifier.ReceiptError)) throw exc;
    out.push({ status: "ERROR", proves: exc.message, checks: [] });
    continue;
  }
  out.push({ status: v.status, proves: v.proves,
             checks: v.checks.map((c) => [c.name, c.ok, c.detail]) });
}
console.log(JSON.stringify(out));
"""
# checks whose words come from the verifiers themselves (not from a library's error text, as
# a meter signature's or an authorization's can): the same words in both
OWN_WORDS = re.compile(r"^(energy = stop - start|duration|price|signed readings = billed"
                       r" readings|meter status|signed readings belong to this session)$")


def test_the_page_verifier_gives_csms_verify_verdicts_check_for_check() -> None:
    """The page's verifier (web/verify/src, under Node: the modules the page bundles) and
    verify_receipt on _vector_cases: the same checks in the same order with the same
    outcome, the same verdict and proof, and the same words where they are the verifiers'
    own (signed meter data, energy, duration, price, and what is not a receipt). Fast (no
    browser): the browser test above runs the same receipts through the built page."""
    node = shutil.which("node")
    if node is None or not (ROOT / "web" / "node_modules" / "@noble").is_dir():
        if IN_CI:
            pytest.fail("node and web/node_modules are needed (make install)")
        pytest.skip("node and web/node_modules are needed (make install)")
    from settlement.receipts import ReceiptError, verify_receipt

    cases = [*_vector_cases(), *_not_receipts()]
    src = ROOT / "web" / "verify" / "src"
    r = subprocess.run([node, "--input-type=module", "-e", _NODE_VERIFIER,
                        (src / "pyjson.js").as_uri(), (src / "verifier.js").as_uri()],
                       input=json.dumps([receipt for _, receipt in cases]),
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    rows, by_name = [], {}
    for (name, receipt), page in zip(cases, json.loads(r.stdout), strict=True):
        try:
            verdict = verify_receipt(receipt)
        except ReceiptError as exc:  # the page's error: the same words
            python = {"status": "ERROR", "proves": str(exc), "checks": []}
        else:
            python = {"status": verdict.status, "proves": verdict.proves,
                      "checks": [[c.name, c.ok, c.detail if OWN_WORDS.match(c.name) else ""]
                                 for c in verdict.checks]}
        page["checks"] = [[n, ok, detail if OWN_WORDS.match(n) else ""]
                          for n, ok, detail in page["checks"]]
        rows.append(f"{'  ' if python == page else '!!'} {name}: {python['status']}")
        if python != page:
            rows += [f"     python {a}\n     page   {b}" for a, b in
                     zip(python["checks"], page["checks"], strict=False) if a != b]
            rows += [f"     {k}: python {python[k]!r}, page {page[k]!r}"
                     for k in ("status", "proves") if python[k] != page[k]]
        by_name[name] = {**python,
                         "failed": {c[0] for c in python["checks"] if c[1] is False},
                         "passed": {c[0] for c in python["checks"] if c[1] is True}}
    print("\n".join(rows))
    assert not any(row.startswith("!!") for row in rows), \
        "\n".join(row for row in rows if not row.startswith("  "))
    _assert_vector_verdicts(by_name)
    [belongs] = [c for c in by_name["Alfen begin larger than the end"]["checks"]
                 if c[0] == "signed readings belong to this session"]
    assert belongs[2].endswith("the begin reading (111300 Wh) is larger than the end reading"
                               " (111271 Wh)")
    # the receipt shows the cap in words (the page shows the verifier's words)
    [price] = [c for c in by_name["billed at the session's limit"]["checks"] if c[0] == "price"]
    assert price[2] == "billed at the session's limit 250, the tariff gives 298 (minor units)"


async def test_the_demo_writes_the_page_next_to_its_receipt_and_says_how_to_open_it(
    tmp_path: Path,
) -> None:
    """The file:// URL the demo prints, opened as printed: the page checks the demo's receipt
    (VALID against the demo's chain, UNVERIFIED while no node of it runs)."""
    from playwright.async_api import async_playwright

    _require()
    folder = tmp_path / "demo"
    r = await asyncio.to_thread(csms, {}, "demo", "--chain", "local", "--stations", "2",
                                "--sessions", "1", "--folder", str(folder))
    assert r.returncode == 0, r.stdout + r.stderr
    [line] = [x for x in r.stdout.splitlines() if x.startswith("or in a browser")]
    url = re.search(r"open (file://\S+), drop receipt-1.json on it and type the driver's"
                    r" address (0x[0-9a-fA-F]{40})", line)
    assert url is not None and (folder / "verify.html").is_file(), line
    assert "?" not in url.group(1)  # a link's driver is its maker's word, not the driver's
    node = await asyncio.to_thread(AnvilNode, folder / "data" / "anvil-state.json",
                                   attach=True)
    try:
        async with async_playwright() as p:
            browser = await p.chromium.launch(executable_path=str(CHROMIUM),
                                              args=["--no-sandbox"])
            try:
                page = await browser.new_page()
                statuses = []
                for rpc in (None, node.url):  # the demo's own node is gone; then a node of it
                    await page.goto(url.group(1))
                    await page.set_input_files("#file", str(folder / "receipt-1.json"))
                    await page.wait_for_selector("#loaded:not(:empty)")
                    await page.fill("#driver", url.group(2))
                    if rpc is not None:
                        await page.fill("#rpc", rpc)
                    await page.click("#check")
                    verdict = await page.wait_for_selector("#verdict[data-status]",
                                                           timeout=30_000)
                    assert verdict is not None
                    statuses.append(await verdict.get_attribute("data-status"))
            finally:
                await browser.close()
    finally:
        await asyncio.to_thread(node.stop)
    assert statuses == ["UNVERIFIED", "VALID"]


async def test_what_is_not_a_receipt_is_refused_by_both(tmp_path: Path) -> None:
    """Not a receipt of this version: `csms verify` stops with an error (exit 2), the page
    says it did not check it; neither gives a verdict."""
    _require()
    good = _authorized(2_000)
    broken: dict[str, Any] = {
        "version 1": {**good, "voltledger_receipt": 1},
        "a record hash that is not hex": {**good, "entry": {**good["entry"],
                                                           "record_hash": "0xzz"}},
        "no chunk": {k: v for k, v in good.items() if k != "chunk"},
        "a record without its driver": {**good, "record": {
            k: v for k, v in good["record"].items() if k != "driver"}},
        "not a JSON object": [],
    }
    cases = []
    for n, (name, receipt) in enumerate(broken.items()):
        path = tmp_path / f"broken-{n}.json"
        path.write_text(json.dumps(receipt), "utf-8")
        r = await asyncio.to_thread(csms, {"CSMS_DATA_DIR": str(tmp_path / "nowhere")},
                                    "verify", str(path))
        assert r.returncode == 2 and r.stderr.startswith("error:"), (name, r.stdout, r.stderr)
        cases.append({"name": name, "file": path, "options": {}})
    got = await _page_verdicts(cases, tmp_path)
    assert [g["status"] for g in got] == ["ERROR"] * len(cases)


async def test_the_page_names_the_operators_node_however_the_receipt_spells_it() -> None:
    """The page fills its RPC field from the receipt's rpc_hint (or a link's ?rpc=). A hint
    spelled with a no-break space, a byte-order mark or a line break (the field keeps none
    of them) made the page ask the operator's node and pass "chain node" as a node the
    driver chose. What the page filled in is never the driver's choice, however spelled;
    a node the driver types instead is."""
    from playwright.async_api import async_playwright

    _require()
    operator = f"http://127.0.0.1:{free_port()}"  # nothing listens: only whose node matters
    receipt = copy.deepcopy(_vector_cases()[0][1])
    seen: list[tuple[str, str, str]] = []
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        try:
            page = await browser.new_page()

            async def check(hint: str, query: str = "", typed: str | None = None) -> None:
                receipt["chain"]["rpc_hint"] = hint
                await page.goto(PAGE.as_uri() + query)
                await page.wait_for_selector("html[data-ready]")
                await page.set_input_files("#file", files=[{
                    "name": "r.json", "mimeType": "application/json",
                    "buffer": json.dumps(receipt).encode()}])
                await page.wait_for_selector("#loaded:not(:empty)")
                if typed is not None:
                    await page.fill("#rpc", typed)
                note = await page.inner_text("#rpc-note")
                await page.click("#check")
                await page.wait_for_selector("#verdict[data-status]", timeout=30_000)
                [ok] = await page.eval_on_selector_all(
                    "li.check[data-name='chain node']", "items => items.map(i => i.dataset.ok)")
                seen.append((repr(hint) + query + f" typed {typed!r}", ok, note))

            for hint in ("\u00a0" + operator, "\ufeff" + operator, operator + "\n/",
                         operator.upper() + "/", operator):
                await check(hint)
            await check("", f"?rpc={operator}")  # a link the operator handed out
            await check(operator, typed=f"http://127.0.0.1:{free_port()}")  # the driver's own
        finally:
            await browser.close()
    print("\n".join(map(str, seen)))
    *filled, typed = seen
    assert all(ok == "null" and "operator's own" in note for _, ok, note in filled), filled
    assert typed[1] == "true" and typed[2] == "", typed


def test_both_verifiers_take_the_same_spellings_for_the_receipts_node() -> None:
    """settlement/receipts.py _node and the page's sameNode: one node however it is spelled
    (case, a closing slash, blanks and invisible characters anywhere: Python's strip and
    JavaScript's trim remove different ones), and another node is another."""
    node = shutil.which("node")
    if node is None:
        if IN_CI:
            pytest.fail("node is needed (make install)")
        pytest.skip("node is needed (make install)")
    from settlement.receipts import _node

    hint = "http://op.example:8545"
    spellings = [hint, hint.upper() + "/", "\u00a0" + hint, "\ufeff" + hint, hint + "\n/",
                 " \t" + hint + "\u2028", "\x1c" + hint + "\x85", "http://op.example:8545\u200b",
                 "http://op.example:8546", "http://other.example:8545", "https://op.example:8545"]
    src = ROOT / "web" / "verify" / "src"
    r = subprocess.run([node, "--input-type=module", "-e",
                        "const v = await import(process.argv[1]);"
                        " const [hint, ...urls] = JSON.parse(process.argv[2]);"
                        " console.log(JSON.stringify(urls.map((u) => v.sameNode(u, hint))));",
                        (src / "verifier.js").as_uri(), json.dumps([hint, *spellings])],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    python = [_node(u) == _node(hint) for u in spellings]
    assert json.loads(r.stdout) == python == [True] * 8 + [False] * 3


async def test_the_session_says_paid_as_the_verifier_reads_the_receipt() -> None:
    """The page's session table said "Paid on chain: yes" for a receipt whose ``paid`` is
    0.0, [] or {} (JavaScript's truth), which the verifier read as unpaid (Python's). Now
    ``paid`` is true or false, as the central system writes it, and anything else is no
    receipt to either verifier (Python's truth read "false" as paid)."""
    from playwright.async_api import async_playwright

    _require()
    base = _vector_cases()[0][1]
    seen: list[tuple[Any, str]] = []
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        try:
            page = await browser.new_page()
            for paid in (0.0, [], {}, 0, "false", False, True, 1):
                receipt = copy.deepcopy(base)
                receipt["payment"]["paid"] = paid
                await page.goto(PAGE.as_uri())
                await page.wait_for_selector("html[data-ready]")
                await page.fill("#receipt-text", json.dumps(receipt))
                await page.click("#check")
                await page.wait_for_selector("#verdict[data-status]", timeout=30_000)
                if await page.get_attribute("#verdict", "data-status") == "ERROR":
                    seen.append((paid, await page.inner_text("#verdict")))
                    continue
                row = await page.inner_text("table.session tr:has(th:text-is('Paid on chain')) td")
                seen.append((paid, row.split(" ")[0]))
        finally:
            await browser.close()
    refused = {repr(paid): f"Not checked: payment.paid {paid!r} is not true or false"
               for paid in (0.0, [], {}, 0, "false", 1)}
    assert seen == [(paid, refused.get(repr(paid), "yes" if paid else "no"))
                    for paid, _ in seen], seen


async def test_a_pasted_receipt_is_read_as_csms_verify_reads_its_file() -> None:
    """What the driver pastes is read as ``csms verify`` reads a receipt file: a key twice
    (the first value is what a viewer shows, the last what was verified), blanks around
    the receipt that JSON has not (the page trimmed a no-break space csms verify does not
    read), an integer or nesting beyond what csms verify reads (the page said VALID) are
    refused; JSON's own blanks and a byte order mark are read."""
    from playwright.async_api import async_playwright

    _require()
    text = json.dumps(_vector_cases()[0][1])
    cases = {
        "as written": (text, None),
        "with JSON's blanks and a byte order mark": ("\ufeff\n " + text + "\n\t", None),
        "a no-break space before it": ("\u00a0" + text, "Not checked: the receipt is not JSON"),
        "a line separator after it": (text + "\u2028", "Not checked: the receipt is not JSON"),
        "the paid flag twice": (text.replace('"payment": {', '"payment": {"paid": false, ', 1),
                                "Not checked: the receipt is not JSON: the key 'paid' is in one"
                                " object twice"),
        # what csms verify does not read: an integer beyond Python's 4,300 digits, nesting
        # beyond 1,024 levels
        "an integer of 4,301 digits": (text.replace('"tariff": {', '"tariff": {"n": '
                                                    + "9" * 4301 + ", ", 1),
                                       "Not checked: the receipt is not JSON: a number of more"
                                       " than 4300 digits"),
        "nested 1,025 levels": (text.replace('"tariff": {', '"tariff": {"n": ' + "[" * 1022
                                             + "]" * 1022 + ", ", 1),
                                "Not checked: the receipt is not JSON: nested deeper than 1024"
                                " levels"),
    }
    seen: dict[str, tuple[str | None, str]] = {}
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        try:
            page = await browser.new_page()
            for name, (pasted, _) in cases.items():
                await page.goto(PAGE.as_uri())
                await page.wait_for_selector("html[data-ready]")
                await page.fill("#receipt-text", pasted)
                await page.click("#check")
                await page.wait_for_selector("#verdict[data-status]", timeout=30_000)
                seen[name] = (await page.get_attribute("#verdict", "data-status"),
                              await page.inner_text("#verdict"))
        finally:
            await browser.close()
    for name, (_, refused) in cases.items():
        status, words = seen[name]
        if refused is None:
            assert status != "ERROR", (name, words)
        else:
            assert status == "ERROR" and words.startswith(refused), (name, words)


async def test_a_receipt_file_that_is_no_utf8_is_read_by_neither(tmp_path: Path) -> None:
    """A byte that is no UTF-8 in a field no hash covers (``what_it_proves``): csms verify
    does not read the file; the page read it (File.text() puts U+FFFD in its place) and
    said what the rest of the receipt proves. Now the page does not read it either."""
    from playwright.async_api import async_playwright

    _require()
    receipt = copy.deepcopy(_vector_cases()[0][1])
    receipt["what_it_proves"] = "@"
    data = json.dumps(receipt).encode().replace(b'"what_it_proves": "@"',
                                                b'"what_it_proves": "\xff"', 1)
    assert b"\xff" in data
    file = tmp_path / "r.json"
    file.write_bytes(data)
    cli = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "csms", "verify", str(file), "--data-dir",
                         str(tmp_path / "data")], capture_output=True, text=True, timeout=120,
        env={**os.environ, "COLUMNS": "200"})
    assert cli.returncode == 2 and "cannot read receipt" in cli.stderr, cli.stderr
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        try:
            page = await browser.new_page()
            await page.goto(PAGE.as_uri())
            await page.wait_for_selector("html[data-ready]")
            # an earlier receipt loaded, then the file: nothing of the first stays
            await page.fill("#receipt-text", json.dumps(_vector_cases()[0][1]))
            await page.set_input_files("#file", str(file))
            # refused (a verdict of its own), or loaded (a selector, not a predicate: a
            # predicate polled as a string is evaluated under the page's CSP, no eval)
            await page.wait_for_selector("#verdict, #loaded:not(:empty)", state="attached")
            first = await page.inner_text("#result")
            await page.click("#check")
            await page.wait_for_selector("#verdict[data-status]", timeout=30_000)
            then = await page.inner_text("#verdict")
        finally:
            await browser.close()
    assert then.startswith("Not checked: drop a receipt file"), then
    assert first == "Not checked: r.json is not UTF-8 text: not a receipt.", first


async def test_a_driver_or_contract_the_link_fills_in_is_not_the_drivers_choice(
    csms_server: RunningServer, tmp_path: Path,
) -> None:
    """A link to the page may fill in the driver's address and the contract (``?driver=``,
    ``?contract=``): a link the operator hands out names the contract the operator chooses,
    one of its own deploying (Settlement's own code, its own escrows: the driver address in
    its link one of them), where a cheaper twin of the session settled. Taken as the
    driver's own word, the page said VALID ("the real contract": "you named ..."); what the
    link filled in is not the driver's choice (as its ?rpc= is not): UNVERIFIED, and VALID
    once the driver types their own."""
    from playwright.async_api import async_playwright

    _require()
    run = await _real_run(csms_server, tmp_path)
    node = await asyncio.to_thread(AnvilNode, run["state"], attach=True)
    receipt = json.dumps(run["receipts"]["unsigned"])
    seen: dict[str, tuple[str | None, dict[str, str]]] = {}
    try:
        async with async_playwright() as p:
            browser = await p.chromium.launch(executable_path=str(CHROMIUM),
                                              args=["--no-sandbox"])
            try:
                page = await browser.new_page()

                async def check(name: str, query: str, typed: dict[str, str]) -> None:
                    await page.goto(PAGE.as_uri() + query)
                    await page.wait_for_selector("html[data-ready]")
                    await page.fill("#receipt-text", receipt)
                    await page.fill("#rpc", node.url)  # the driver's node
                    for field, value in typed.items():
                        await page.fill(f"#{field}", value)
                    await page.click("#check")
                    verdict = await page.wait_for_selector("#verdict[data-status]",
                                                           timeout=30_000)
                    assert verdict is not None
                    checks = await page.eval_on_selector_all(
                        "li.check", "items => Object.fromEntries(items.map("
                        "i => [i.dataset.name, i.dataset.ok]))")
                    seen[name] = (await verdict.get_attribute("data-status"), checks)

                await check("link: contract", f"?contract={run['contract']}", {})
                await check("link: driver", f"?driver={run['driver']}", {})
                await check("link: both", f"?driver={run['driver']}&contract={run['contract']}",
                            {})
                await check("typed: contract", "", {"contract": run["contract"]})
                await check("typed: driver", "", {"driver": run["driver"]})
                await check("link: contract, typed: driver", f"?contract={run['contract']}",
                            {"driver": run["driver"]})
            finally:
                await browser.close()
    finally:
        await asyncio.to_thread(node.stop)
    print("\n".join(f"{k}: {v}" for k, v in seen.items()))
    for name in ("link: contract", "link: driver", "link: both"):
        status, checks = seen[name]
        assert status == "UNVERIFIED", (name, seen[name])
        assert checks["the real contract"] == "null", (name, checks)
        assert "the driver's escrow" not in checks, (name, checks)
    for name in ("typed: contract", "typed: driver", "link: contract, typed: driver"):
        assert seen[name][0] == "VALID", (name, seen[name])
