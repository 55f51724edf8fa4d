"""``csms demo``: the whole story on embedded defaults, in under a minute.

A SQLite file, the central system on a loopback port, simulated stations of
both OCPP versions charging, settlement on the managed local chain (or the
in-process one with ``--chain memory``), a receipt written and verified, then a
tampered copy that fails verification. Everything it starts, it stops.
"""

from __future__ import annotations

import copy
import json
import shutil
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from csms.cli.common import console, fail, run, say

__all__ = ["demo"]


async def _demo(folder: Path, chain_spec: str, stations: int, sessions: int) -> bool:
    import asyncio
    from decimal import Decimal

    from eth_account import Account
    from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
    from rich.table import Table
    from rich.text import Text

    from chargers_sim import Fleet
    from csms.bootstrap import build, open_settlement_chain, settlement_worker
    from csms.config import Settings
    from csms.domain.model import IdTag
    from csms.domain.tariff import Tariff
    from csms.service.charging import new_station
    from csms.service.ports import Tx
    from csms.service.views import session_json
    from settlement import wallet
    from settlement.chain import ContractParams
    from settlement.receipts import load_receipt, verify_receipt

    settings = Settings(db=str(folder / "demo.sqlite3"), port=0, admin_port=-1,
                        data_dir=str(folder / "data"), chain=chain_spec)
    # the node is built without settling; the demo settles once, when it chooses to
    node_settings = replace(settings, chain="")
    progress = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                        TextColumn("{task.completed}/{task.total}"), TimeElapsedColumn(),
                        console=console)
    tag = "DEMO-DRIVER"
    with progress:
        step = progress.add_task("starting the central system", total=8)
        app = await build(node_settings)
        chain = None
        try:
            ids = [f"DEMO{i:05d}" for i in range(1, stations + 1)]

            async def setup(tx: Tx) -> None:
                for sid in ids:
                    await tx.insert_station(new_station(sid))
                await tx.put_tag(IdTag(tag))
                await tx.add_tariff(Tariff("*", Decimal("0.39"), "EUR", 2,
                                           session_fee=Decimal("0.50")))

            await app.repo.unit(setup)
            await app.start()
            url = f"ws://127.0.0.1:{app.central.port}"
            progress.update(step, advance=1,
                            description=f"starting the {chain_spec} chain (contract deploy)")
            chain = await asyncio.to_thread(open_settlement_chain, settings,
                                            params=ContractParams(fee_bps=500))
            app.attach_chain(chain)  # closed with the app; Authorize asks the escrow
            progress.update(step, advance=1, description="two hosts register their stations,"
                                                          " a driver funds an escrow")
            hosts = [Account.create(), Account.create()]
            driver = Account.create()
            for account in (*hosts, driver):
                await asyncio.to_thread(wallet.fund_on_dev_chain, chain, account.address)
            registered = {}
            for n, sid in enumerate(ids):
                host = hosts[n % 2]
                registered[sid] = (host.address, await asyncio.to_thread(
                    wallet.register_station, chain, host, 22_000))
            terms = wallet.DriverTerms(max_per_kwh=45, max_session_fee=60,
                                       max_per_session=2_000, max_per_day=10_000)
            await asyncio.to_thread(wallet.set_terms, chain, driver, terms)
            await asyncio.to_thread(wallet.deposit, chain, driver, 5_000)
            salt = wallet.new_salt()
            commitment = await asyncio.to_thread(wallet.link_card, chain, driver, tag, salt)

            async def link(tx: Tx) -> None:
                for sid, (host_address, index) in registered.items():
                    station = await tx.get_station(sid)
                    assert station is not None
                    station.host_address, station.chain_station = host_address.lower(), index
                    await tx.update_station(station)
                await tx.link_card(tag, driver.address, "0x" + salt.hex(),
                                   "0x" + commitment.hex(), datetime.now(UTC))

            await app.repo.unit(link)
            progress.update(step, advance=1, description=f"{stations} stations connecting"
                                                          " (1.6 and 2.0.1)")
            fleet = Fleet(url, stations, mix=True, prefix="DEMO", seed=42, meter_interval=0.1,
                          power_kw=22, signed=True)
            await fleet.start()
            progress.update(step, advance=1,
                            description=f"charging: {stations * sessions} sessions")
            summary = await fleet.run_sessions(sessions, 1.0, tag)
            await fleet.close()
            progress.update(step, advance=1, description="settling: check, anchor and pay")
            worker = settlement_worker(settings, app.repo, chain)
            settled = await worker.run_once()
            progress.update(step, advance=1, description="writing and verifying a receipt")
            receipt = await load_receipt(app.repo, 1, chain.rpc_url)
            (folder / "receipt-1.json").write_text(json.dumps(receipt, indent=2))
            good = verify_receipt(receipt, chain.w3, driver=driver.address)
            progress.update(step, advance=1, description="tampering with a copy")
            tampered = copy.deepcopy(receipt)
            tampered["record"]["energy_wh"] += 1
            (folder / "receipt-1-tampered.json").write_text(json.dumps(tampered, indent=2))
            bad = verify_receipt(tampered, chain.w3, driver=driver.address)
            escrow = chain.driver_state(driver.address).balance
            earned = [max(0, int(chain.contract.functions.earnings(h.address).call()) - 1)
                      for h in hosts]
            fee = max(0, int(chain.contract.functions.earnings(
                chain.operator.address).call()) - 1)
            progress.update(step, advance=1, description="done")

            async def rows(tx: Tx) -> list[dict[str, Any]]:
                out = []
                for s in reversed(await tx.list_sessions()):
                    assert s.id is not None
                    price = await tx.session_settlement(s.id)
                    out.append({**session_json(s), **(price or {})})
                return out

            sessions_rows = await app.repo.read(rows)
        finally:
            await app.close()

    table = Table(title="voltledger demo: sessions")
    for col in ("id", "station", "OCPP", "kWh", "price", "paid"):
        table.add_column(col)
    for r in sessions_rows:
        table.add_row(str(r["id"]), Text(r["station_id"]), r["ocpp_version"],
                      f"{(r['energy_wh'] or 0) / 1000:.3f}",
                      f"{(r['price_minor'] or 0) / 100:.2f} {r['currency'] or ''}",
                      str(r.get("settlement_state")))
    console.print(table)
    simulated = sum(sum(v) for v in summary.per_station.values())
    stored = sum(r["energy_wh"] or 0 for r in sessions_rows)
    charged = sum(r["price_minor"] or 0 for r in sessions_rows
                  if r.get("settlement_state") == "paid")
    say(f"energy reported by the stations: {simulated} Wh; stored by the central"
        f" system: {stored} Wh ({'exact' if simulated == stored else 'MISMATCH'})")
    chain_id = chain.chain_id if chain else "?"
    say(f"settlement: {settled.sessions_batched} sessions in"
        f" {settled.batches_created} chunk(s) on chain {chain_id},"
        f" {settled.gas_used} gas")
    say(f"driver {driver.address}: escrow 50.00 -> {escrow / 100:.2f} EUR;"
        f" hosts earned {earned[0] / 100:.2f} and {earned[1] / 100:.2f} EUR, the"
        f" platform's 5% fee {fee / 100:.2f} EUR (paid {charged / 100:.2f})")
    verdict_ok = good.valid and not bad.valid and sum(earned) + fee == charged
    say(f"receipt {folder / 'receipt-1.json'}: ",
        ("VALID", "bold green") if good.valid else (good.status, "bold red"))
    failed = [c.name for c in bad.checks if c.ok is False]
    say("tampered copy (energy +1 Wh): ",
        ("rejected", "bold green") if not bad.valid else ("ACCEPTED", "bold red"),
        f" (failed: {', '.join(failed)})")
    say(f"what a receipt proves: {good.proves}")
    if chain_spec == "local":
        say(f"check it yourself: csms verify {folder / 'receipt-1.json'} --driver"
            f" {driver.address} --data-dir {folder / 'data'}", highlight=False,
            soft_wrap=True)
    else:
        console.print("the in-process chain is gone with this run: run csms demo --chain local"
                      " for a receipt you can check yourself")
    page = _receipt_page(folder)
    if page is not None:
        # no ?driver= in the link: what a link fills in is its maker's word (the
        # operator's), not the driver's, and the page says UNVERIFIED on it
        say(f"or in a browser, without Python: open {page.as_uri()}, drop receipt-1.json on"
            f" it and type the driver's address {driver.address} (it fills in the node the"
            " receipt names, the operator's: its word alone gives UNVERIFIED; a"
            " driver gives the RPC URL of a node of the chain they choose)",
            highlight=False, soft_wrap=True)
    return verdict_ok and simulated == stored and summary.errors == 0


MARKER = ".voltledger-demo"
# the driver's receipt page, built by `make install` (web/verify, docs/settlement.md)
RECEIPT_PAGE = Path(__file__).resolve().parents[2] / "web" / "verify" / "dist" / "verify.html"


def _receipt_page(folder: Path) -> Path | None:
    """The receipt page copied next to the receipt; None (said) when it was not built."""
    if not RECEIPT_PAGE.is_file():
        console.print("the receipt page was not built (make install builds"
                      " web/verify/dist/verify.html)")
        return None
    return Path(shutil.copyfile(RECEIPT_PAGE, folder / "verify.html"))


def prepare_folder(path: Path) -> Path:
    """The demo's folder, empty: created, or emptied only when an earlier demo made it
    (its marker file is there). Never the current directory or one above it."""
    resolved = path.expanduser().resolve()
    here = Path.cwd().resolve()
    if resolved == here or resolved in here.parents:
        fail(f"--folder {path}: the current directory or one above it; give a new folder")
    if resolved.exists() and not resolved.is_dir():
        fail(f"--folder {path}: a file, not a folder")
    if resolved.is_dir() and any(resolved.iterdir()):
        if not (resolved / MARKER).is_file():
            fail(f"--folder {path}: not empty and not made by csms demo; nothing deleted."
                 " Give a new folder")
        shutil.rmtree(resolved)
    try:
        resolved.mkdir(parents=True, exist_ok=True)
        (resolved / MARKER).write_text("made by csms demo: emptied by the next csms demo\n")
    except OSError as exc:
        fail(f"--folder {path}: {exc.strerror or exc}")
    return resolved


def demo(
    chain: Annotated[str, typer.Option(help="local (managed Anvil) or memory (in-process)")]
    = "local",
    stations: Annotated[int, typer.Option(min=2, max=200, help="Simulated stations")] = 6,
    sessions: Annotated[int, typer.Option(min=1, max=20, help="Sessions per station")] = 2,
    folder: Annotated[str, typer.Option(
        help="Where the demo keeps its files: a new folder, or one an earlier demo made"
             " (emptied first); any other folder is refused")]
    = "./demo-output",
) -> None:
    """Run the whole story: charge, store, price, anchor, verify a receipt, catch a forgery."""
    if chain not in ("local", "memory"):
        raise typer.BadParameter("local or memory", param_hint="--chain")
    path = prepare_folder(Path(folder))
    ok = run(_demo(path, chain, stations, sessions))
    if not ok:
        raise typer.Exit(1)
