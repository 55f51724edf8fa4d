"""The operator console in Debian's chromium (Playwright), on a running central system with
simulated stations of both versions, a driver's escrow on the managed local chain (Anvil)
and the settlement worker in the serving node.

The story an operator lives: log in, see the stations come online, start a session from
the console on each station, watch the energy grow, stop it, see it settled and paid,
download the receipt, open it in the driver's receipt page: VALID; one digit changed:
INVALID. A screenshot of every page is saved under tmp/artifacts/console/.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

from chargers_sim import Fleet
from settlement.chain import ContractParams, find_anvil, open_chain
from support import RunningServer
from support.browser import ARTIFACTS, CHROMIUM, LAUNCH_ARGS, require_browser
from support.chainkit import link_stations_and_card

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "web" / "verify" / "dist" / "verify.html"
VENDOR = ROOT / "csms" / "admin" / "console" / "static" / "vendor" / "htmx.min.js"
SHOTS = ARTIFACTS / "console"
TAG = "CONSOLE-DRIVER"
STATIONS = ("CON00001", "CON00002")  # the fleet's names: 1.6, then 2.0.1


def _require() -> None:
    missing = []
    if find_anvil() is None:
        missing.append("anvil (make install)")
    for built in (PAGE, VENDOR):
        if not built.exists():
            missing.append(f"{built.relative_to(ROOT)} (make install)")
    require_browser(*missing)


async def _paying_driver(server: RunningServer, data_dir: Path) -> dict[str, Any]:
    """A host with the stations on chain, a driver whose escrow pays for TAG.

    The simulated stations charge in compressed time (a second counts as a minute): at
    2 kW they look like 120 kW, so the stations are registered with 350 kW."""
    from eth_account import Account

    from settlement import wallet

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
        indexes = {sid: await asyncio.to_thread(wallet.register_station, chain, host,
                                                 350_000)
                   for sid in STATIONS}
    finally:
        await asyncio.to_thread(chain.close)
    await server.add_tariff("0.39")
    for sid in STATIONS:
        await server.add_station(sid)

    await link_stations_and_card(server.repo, host.address, indexes, TAG, driver.address,
                                 salt, commitment)
    return {"driver": driver.address}


async def test_an_operator_charges_settles_and_checks_a_receipt_in_the_console(
    csms_server: RunningServer, tmp_path: Path,
) -> None:
    _require()
    from playwright.async_api import async_playwright, expect

    SHOTS.mkdir(parents=True, exist_ok=True)
    data_dir = tmp_path / "chain"
    await csms_server.stop()
    csms_server.settings = replace(csms_server.settings, data_dir=str(data_dir))
    await csms_server.start()  # writes the admin token into the data folder
    parties = await _paying_driver(csms_server, data_dir)
    await csms_server.stop()
    csms_server.settings = replace(csms_server.settings, chain="local", max_wait=0.0)
    await csms_server.start()  # now with the settlement worker on the local chain
    assert csms_server.app is not None and csms_server.app.chain is not None
    rpc = csms_server.app.chain.rpc_url
    console = csms_server.admin_url + "/console"
    fleet = Fleet(csms_server.url, 2, mix=True, prefix="CON", meter_interval=0.3, seed=3,
                  power_kw=2, signed=True)
    errors: list[str] = []
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
        try:
            context = await browser.new_context(viewport={"width": 1280, "height": 900},
                                                accept_downloads=True)
            page = await context.new_page()
            page.on("console", lambda m: errors.append(f"{m.text} {m.location}")
                    if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("response", lambda r: errors.append(f"{r.status} {r.url}")
                    if r.status >= 400 else None)

            # log in with the token, once
            await page.goto(console + "/")
            assert page.url.endswith("/console/login")
            await page.screenshot(path=str(SHOTS / "login.png"))
            await page.fill("#token", "wrong")
            await page.click("#login")
            await expect(page.locator("#login-error")).to_have_text("wrong token")
            await page.fill("#token", csms_server.admin_token)
            await page.click("#login")
            await page.wait_for_url(console + "/")
            errors.clear()  # the wrong token's 401, as the browser logs it
            await expect(page.locator("#stations-online")).to_have_text("0")

            # the stations come online: the overview changes without a reload
            await fleet.start()
            await expect(page.locator("#stations-online")).to_have_text("2", timeout=15_000)
            await page.screenshot(path=str(SHOTS / "overview.png"), full_page=True)
            await page.click("nav >> text=Stations")
            await expect(page.locator("tr[data-station] td.online")).to_have_count(2)
            await page.screenshot(path=str(SHOTS / "stations.png"), full_page=True)

            sessions: dict[str, str] = {}
            for sid in STATIONS:
                # start from the console; the session appears on the station's page
                await page.goto(f"{console}/stations/{sid}")
                await page.fill("#cmd-start input[name=tag]", TAG)
                await page.fill("#cmd-start input[name=connector]", "1")
                await page.click("#cmd-start button")
                await expect(page.locator("#command-result [data-command=start]")) \
                    .to_have_attribute("data-status", "Accepted", timeout=15_000)
                link = page.locator("#active-sessions a[data-session]")
                await expect(link).to_have_count(1, timeout=15_000)
                sessions[sid] = str(await link.get_attribute("data-session"))
                if sid == STATIONS[0]:
                    await page.screenshot(path=str(SHOTS / "station.png"), full_page=True)

                # its energy grows while the page is open
                await page.goto(f"{console}/sessions/{sessions[sid]}")
                energy = page.locator("#session-energy")
                await page.wait_for_function(
                    "() => Number(document.querySelector('#session-energy').dataset.wh) > 0",
                    timeout=15_000)
                first = int(str(await energy.get_attribute("data-wh")))
                await page.wait_for_function(
                    f"() => Number(document.querySelector('#session-energy').dataset.wh)"
                    f" > {first}", timeout=15_000)
                await page.wait_for_function(
                    "() => Number(document.querySelector('#chart').dataset.points) > 1")
                await expect(page.locator("#chart canvas")).to_have_count(1)
                if sid == STATIONS[1]:
                    await page.screenshot(path=str(SHOTS / "session-charging.png"),
                                          full_page=True)

                # stop it from the console
                await page.goto(f"{console}/stations/{sid}")
                await page.click("#cmd-stop button")
                await expect(page.locator("#command-result [data-command=stop]")) \
                    .to_have_attribute("data-status", "Accepted", timeout=15_000)

            # settled by the node's worker: paid, with the transaction, live on the page
            for sid in STATIONS:
                await page.goto(f"{console}/sessions/{sessions[sid]}")
                await expect(page.locator("#billing")).to_have_attribute(
                    "data-state", "paid", timeout=60_000)
                await expect(page.locator("#receipt")).to_have_count(1, timeout=15_000)
                await expect(page.locator("#signed")).to_contain_text("verified")
            await page.screenshot(path=str(SHOTS / "session-settled.png"), full_page=True)
            async with page.expect_download() as download_info:
                await page.click("#receipt")
            receipt_file = tmp_path / "receipt.json"
            await (await download_info.value).save_as(str(receipt_file))
            receipt = json.loads(receipt_file.read_text("utf-8"))
            assert receipt["payment"]["paid"]
            energy_wh = receipt["record"]["energy_wh"]
            assert energy_wh > 0

            await page.goto(console + "/sessions")
            await expect(page.locator("tr[data-session]")).to_have_count(2)
            await page.screenshot(path=str(SHOTS / "sessions.png"), full_page=True)
            await page.click("nav >> text=Settlement")
            batch = page.locator("section.batch").first
            await expect(batch).to_contain_text("finalized")
            await expect(batch).to_contain_text("0x")
            await expect(batch.locator(".paid")).to_contain_text("1 paid")
            await page.screenshot(path=str(SHOTS / "settlement.png"), full_page=True)
            await batch.locator("h2 a").click()
            await expect(page.locator("tr[data-session]")).to_contain_text("paid")
            await page.screenshot(path=str(SHOTS / "batch.png"), full_page=True)
            for name in ("tags", "tariffs", "audit"):
                await page.goto(f"{console}/{name}")
                await page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)
            audit = page.locator("tr[data-audit]")
            # a wrong token, the login, two starts and two stops
            await expect(audit).to_have_count(6)
            await expect(audit.filter(has_text="console@127.0.0.1")).to_have_count(6)
            await expect(audit.filter(has_text="console.login")).to_have_count(2)

            # the driver's receipt page: the downloaded receipt is VALID, one digit less
            # of energy is INVALID
            tampered = json.loads(receipt_file.read_text("utf-8"))
            tampered["record"]["energy_wh"] = energy_wh - 1 if energy_wh % 10 else energy_wh + 1
            tampered_file = tmp_path / "tampered.json"
            tampered_file.write_text(json.dumps(tampered), "utf-8")
            checker = await context.new_page()
            for path, want, shot in ((receipt_file, "VALID", "receipt-valid.png"),
                                     (tampered_file, "INVALID", "receipt-tampered.png")):
                await checker.goto(PAGE.as_uri())
                await checker.wait_for_selector("html[data-ready]")
                await checker.set_input_files("#file", str(path))
                await checker.wait_for_selector("#loaded:not(:empty)")
                await checker.fill("#rpc", rpc)
                await checker.fill("#driver", parties["driver"])
                await checker.click("#check")
                verdict = checker.locator("#verdict[data-status]")
                await expect(verdict).to_have_attribute("data-status", want, timeout=30_000)
                await checker.screenshot(path=str(SHOTS / shot), full_page=True)
            # the strict CSP let every script run: nothing was refused, nothing failed
            assert not errors, errors
            # logging out ends the login: the live stream's reconnections are refused (401)
            await page.click("text=Log out")
            await page.wait_for_url(console + "/login")
            await page.goto(console + "/")
            assert page.url.endswith("/console/login")
        finally:
            await browser.close()
            await fleet.close()
    print(f"screenshots of the console: {SHOTS}")
