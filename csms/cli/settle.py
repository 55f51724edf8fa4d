"""``csms tariffs``, ``csms settle``, ``csms contract``, ``csms receipt``, ``csms verify``."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import socket
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Annotated, Any

import typer

from csms.cli.common import (
    CliError,
    DbOption,
    JsonOption,
    console,
    fail,
    in_read,
    in_unit,
    print_json,
    print_table,
    run,
    settings_for,
    with_repo,
)
from csms.domain.tariff import Tariff
from csms.service.cluster import release_lease
from csms.service.ports import Repository, Tx

__all__ = ["contract_app", "receipt", "settle_app", "tariffs_app", "verify"]

tariffs_app = typer.Typer(help="Prices per station (versioned).", no_args_is_help=True)
settle_app = typer.Typer(help="Batch, anchor and settle completed sessions.",
                         no_args_is_help=True)
contract_app = typer.Typer(help="The settlement contract.", no_args_is_help=True)

ChainOption = Annotated[
    str, typer.Option("--chain", help="local (managed Anvil), memory, or an http(s):// RPC URL")
]
DataDir = Annotated[str | None, typer.Option("--data-dir", help="[env: CSMS_DATA_DIR]")]
Keystore = Annotated[str | None, typer.Option(help="V3 keystore of the operator key (RPC chains)")]
PasswordFile = Annotated[str | None, typer.Option(help="File holding the keystore password")]


def _decimal(text: str, name: str) -> Decimal:
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise typer.BadParameter(f"not a number: {text!r}", param_hint=name) from None
    if not value.is_finite() or value < 0:
        raise typer.BadParameter("must be a non-negative number", param_hint=name)
    return value


@tariffs_app.command("set")
def tariffs_set(
    station: Annotated[str, typer.Argument(help="Station id, or '*' for the default")],
    per_kwh: Annotated[str, typer.Option(help="Price per kWh in major units, e.g. 0.39")],
    per_minute: Annotated[str, typer.Option(help="Price per minute")] = "0",
    session_fee: Annotated[str, typer.Option(help="Fixed fee per session")] = "0",
    currency: Annotated[str, typer.Option(help="ISO 4217 code or token symbol")] = "EUR",
    decimals: Annotated[int, typer.Option(min=0, max=18, help="Minor-unit decimals")] = 2,
    valid_from: Annotated[str | None, typer.Option(help="ISO 8601 [default: now]")] = None,
    db: DbOption = None,
) -> None:
    """Set a station's tariff: a new version, valid from now (or --valid-from)."""
    prices = {n: _decimal(v, f"--{n.replace('_', '-')}") for n, v in
              (("per_kwh", per_kwh), ("per_minute", per_minute), ("session_fee", session_fee))}
    if not currency.isalnum() or len(currency) > 10:
        raise typer.BadParameter("a currency code of letters and digits", param_hint="--currency")
    try:
        start = datetime.fromisoformat(valid_from) if valid_from else datetime.now(UTC)
    except ValueError:
        raise typer.BadParameter(f"not an ISO 8601 time: {valid_from!r}") from None
    if start.tzinfo is None:
        start = start.replace(tzinfo=UTC)

    async def work(tx: Tx) -> int:
        if station != "*" and await tx.get_station(station) is None:
            raise CliError(f"no station {station!r} (use '*' for every station)")
        return await tx.add_tariff(Tariff(
            station, prices["per_kwh"], currency.upper(), decimals, prices["per_minute"],
            prices["session_fee"], valid_from=start))

    version = run(in_unit(db, work))
    typer.echo(f"tariff for {station}: version {version}, {prices['per_kwh']} {currency.upper()}"
               f"/kWh")


@tariffs_app.command("list")
def tariffs_list(json_: JsonOption = False, db: DbOption = None) -> None:
    """List tariffs (every version)."""

    async def work(tx: Tx) -> list[dict[str, Any]]:
        return [{"station_id": t.station_id, "version": t.version, "per_kwh": str(t.per_kwh),
                 "per_minute": str(t.per_minute), "session_fee": str(t.session_fee),
                 "currency": t.currency, "decimals": t.decimals,
                 "valid_from": t.valid_from.isoformat() if t.valid_from else None}
                for t in await tx.list_tariffs()]

    rows = run(in_read(db, work))
    if json_:
        print_json(rows)
        return
    print_table("Tariffs", ["station", "version", "per kWh", "per min", "fee", "currency",
                            "valid from"],
                [[r["station_id"], r["version"], r["per_kwh"], r["per_minute"],
                  r["session_fee"], r["currency"], r["valid_from"]] for r in rows])


def _open_chain(chain: str, data_dir: str, keystore: str | None, password_file: str | None,
                deploy: bool = True, params: Any = None) -> Any:
    from settlement.chain import ChainError, open_chain

    settings = settings_for(None)  # CSMS_KEYSTORE / CSMS_KEYSTORE_PASSWORD_FILE
    keystore = keystore or settings.keystore or None
    password_file = password_file or settings.keystore_password_file or None
    try:
        return open_chain(chain, data_dir, keystore=keystore, password_file=password_file,
                          deploy=deploy, params=params)
    except ChainError as exc:
        fail(str(exc), 1)


async def _settle(repo: Repository, chain_spec: str, data_dir: str, batch_size: int,
                  confirmations: int, keystore: str | None, password_file: str | None,
                  loop_forever: bool) -> Any:
    from rich.progress import Progress, SpinnerColumn, TextColumn

    from settlement.chain import ContractMissing
    from settlement.worker import LEASE, LeaseHeld, LedgerBehind, SettlementWorker

    chain = await asyncio.to_thread(_open_chain, chain_spec, data_dir, keystore, password_file)
    try:
        worker = SettlementWorker(repo, chain, batch_size=batch_size,
                                  confirmations=confirmations)
        if loop_forever:
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                with contextlib.suppress(NotImplementedError):
                    loop.add_signal_handler(sig, stop.set)
            console.print(f"settlement worker on chain {chain.chain_id} ({chain.kind});"
                          " Ctrl-C to stop")
            await worker.run_forever(stop)
            return None
        with Progress(SpinnerColumn(), TextColumn("{task.description}"),
                      console=console, transient=True) as progress:
            progress.add_task(f"settling on chain {chain.chain_id} ({chain.kind})...")
            try:
                try:
                    return await worker.run_once()
                except LeaseHeld as exc:
                    if not _gone_run_on_this_host(exc.holder):
                        raise
                    # A run killed on this machine: its lease would block us for its
                    # whole lifetime; its batches are resumed from their stored state.
                    gone = exc.holder
                    console.print(f"releasing the lease of {gone}: that run is gone")

                    async def release(tx: Tx) -> None:
                        await release_lease(tx, LEASE, gone)

                    await repo.unit(release)
                    return await worker.run_once()
            except ContractMissing as exc:
                raise CliError(str(exc)) from None
            except (LeaseHeld, LedgerBehind) as exc:
                fail(str(exc), 1)
    finally:
        await asyncio.to_thread(chain.close)


def _gone_run_on_this_host(holder: str) -> bool:
    """A lease holder named ``host:pid:token`` (a ``csms settle run``) of this machine
    whose process is not running any more. Nodes (``host:port``) never match."""
    parts = holder.split(":")
    if len(parts) != 3 or parts[0] != socket.gethostname() or not parts[1].isdigit():
        return False
    pid = int(parts[1])
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


@settle_app.command("run")
def settle_run(
    chain: ChainOption = "local", batch_size: Annotated[int, typer.Option(min=1)] = 1000,
    confirmations: Annotated[int, typer.Option(min=1)] = 1, data_dir: DataDir = None,
    keystore: Keystore = None, password_file: PasswordFile = None, json_: JsonOption = False,
    db: DbOption = None,
) -> None:
    """Settle everything pending now (batch, anchor, finalize) and exit."""
    settings = settings_for(db, data_dir=data_dir)

    async def go(repo: Repository) -> Any:
        return await _settle(repo, chain, settings.data_dir, batch_size, confirmations,
                             keystore, password_file, False)

    summary = run(with_repo(db, go))
    out = {"batches": summary.batches_created, "sessions": summary.sessions_batched,
           "finalized_batches_total": summary.finalized, "gas_used_total": summary.gas_used}
    if json_:
        print_json(out)
    else:
        console.print(f"settled {out['sessions']} session(s) in {out['batches']} batch(es);"
                      f" {out['finalized_batches_total']} batch(es) finalized in all")


@settle_app.command("worker")
def settle_worker(
    chain: ChainOption = "local", batch_size: Annotated[int, typer.Option(min=1)] = 1000,
    confirmations: Annotated[int, typer.Option(min=1)] = 1, data_dir: DataDir = None,
    keystore: Keystore = None, password_file: PasswordFile = None, db: DbOption = None,
) -> None:
    """Run the settlement loop until interrupted."""
    settings = settings_for(db, data_dir=data_dir)

    async def go(repo: Repository) -> Any:
        return await _settle(repo, chain, settings.data_dir, batch_size, confirmations,
                             keystore, password_file, True)

    run(with_repo(db, go))


@contract_app.command("deploy")
def contract_deploy(
    chain: ChainOption, keystore: Keystore = None, password_file: PasswordFile = None,
    data_dir: DataDir = None,
    token: Annotated[
        str | None, typer.Option(help="Escrows in this ERC-20 token (e.g. a stablecoin)"
                                      " instead of the native coin")
    ] = None,
    unit: Annotated[int, typer.Option(
        min=1, max=10**18, help="Token base units per billing unit (a tariff's minor unit):"
        " 10000 for a 6-decimal stablecoin billed in cents")] = 1,
    fee_bps: Annotated[int, typer.Option(
        min=0, max=2000, help="The platform's fee in basis points of each payment (fixed for"
        " the contract's life; at most 2000)")] = 0,
    platform: Annotated[str | None, typer.Option(
        help="Who receives the fee [default: the operator's account]")] = None,
    notice_days: Annotated[float, typer.Option(
        min=0.001, help="Days before a driver's lower terms or withdrawal apply (longer than"
        " your settlement delay)")] = 7.0,
) -> None:
    """Deploy the settlement contract on a chain and record its address."""
    from settlement.chain import ContractParams

    for value, name in ((token, "--token"), (platform, "--platform")):
        if value is not None and not re.fullmatch(r"0x[0-9a-fA-F]{40}", value):
            raise typer.BadParameter("an address is 0x and 40 hex digits", param_hint=name)
    settings = settings_for(None, data_dir=data_dir)
    params = ContractParams(int(notice_days * 86400), token, unit, platform, fee_bps)
    c = _open_chain(chain, settings.data_dir, keystore, password_file, params=params)
    try:
        info = c.info()
        asked = {"token": (token or "").lower() or None, "unit": unit, "fee_bps": fee_bps}
        held = {k: info[k] for k in asked}
        if held != asked:
            fail(f"the contract recorded for chain {c.chain_id} ({c.contract_address}) has"
                 f" {held}; remove it from chain.json in the data folder to deploy another", 1)
        currency = f"escrows in token {info['token']}" if info["token"] else \
            "escrows in the native coin"
        console.print(f"contract {c.contract_address} on chain {c.chain_id} ({currency},"
                      f" unit {info['unit']}, fee {info['fee_bps']} bps to {info['platform']},"
                      f" notice {info['notice_period']} s)")
    finally:
        c.close()


def contract_info(
    chain: ChainOption = "local", data_dir: DataDir = None, json_: JsonOption = False,
) -> None:
    """The recorded contract: its address and what its deployment fixed."""
    settings = settings_for(None, data_dir=data_dir)
    c = _open_chain(chain, settings.data_dir, None, None, deploy=False)
    try:
        info = c.info()
        info["station_count"] = int(c.contract.functions.station_count().call())
        info["driver_count"] = int(c.contract.functions.driver_count().call())
    finally:
        c.close()
    if json_:
        print_json(info)
        return
    print_table("Settlement contract", ["field", "value"], [[k, v] for k, v in info.items()])


def receipt(
    session_id: Annotated[int, typer.Argument(metavar="SESSION_ID")],
    output: Annotated[str | None, typer.Option("-o", "--output", help="File to write")] = None,
    db: DbOption = None,
) -> None:
    """Write the receipt of a settled session (JSON)."""
    from settlement.receipts import ReceiptNotReady, load_receipt

    async def go(repo: Repository) -> dict[str, Any]:
        try:
            return await load_receipt(repo, session_id, None)
        except ReceiptNotReady as exc:
            raise CliError(str(exc)) from None

    data = run(with_repo(db, go))
    text = json.dumps(data, indent=2)
    if output:
        Path(output).write_text(text + "\n", "utf-8")
        console.print(f"receipt of session {session_id} written to {output}")
    else:
        print(text)


def verify(
    files: Annotated[list[str], typer.Argument(
        metavar="FILE...", help="Receipts written by csms receipt (several: also checked"
        " against each other for a session billed twice)")],
    rpc: Annotated[str | None, typer.Option(help="JSON-RPC URL of the chain")] = None,
    driver: Annotated[str | None, typer.Option(
        help="Your driver address: the contract must be the one your escrow is in")] = None,
    contract: Annotated[str | None, typer.Option(
        help="The contract you trust (instead of --driver)")] = None,
    data_dir: DataDir = None,
) -> None:
    """Check receipts against the chain alone: exit 0 VALID, 1 INVALID, 3 UNVERIFIED (the
    chain could not be reached, or which contract is the real one is not known)."""
    from settlement.chain import AnvilNode, ChainError, rpc_client
    from settlement.receipts import INVALID, VALID, ReceiptError, duplicates, verify_receipt

    for value, name in ((driver, "--driver"), (contract, "--contract")):
        if value is not None and not re.fullmatch(r"0x[0-9a-fA-F]{40}", value):
            raise typer.BadParameter("an address is 0x and 40 hex digits", param_hint=name)
    receipts: list[Any] = []
    for file in files:
        try:
            receipts.append(json.loads(Path(file).read_text("utf-8")))
        except (OSError, ValueError) as exc:
            fail(f"cannot read receipt {file}: {exc}")
    settings = settings_for(None, data_dir=data_dir)
    node = None
    w3: Any = None
    if rpc:
        w3 = rpc_client(rpc)
    else:
        deployments = Path(settings.data_dir).expanduser() / "chain.json"
        first = receipts[0] if isinstance(receipts[0], dict) else {}
        chain = first.get("chain")
        chain_id = str(chain.get("chain_id") if isinstance(chain, dict) else None)
        try:
            known = json.loads(deployments.read_text("utf-8")) if deployments.exists() else {}
        except (OSError, ValueError):
            known = {}
        recorded = known.get(chain_id, {}).get("contract")
        if driver is None and contract is None and recorded:
            # the operator checking its own receipts: the contract it deployed
            contract = str(recorded)
            console.print(f"trusting contract {contract}, the one recorded in {deployments}"
                          " (a driver passes --driver ADDRESS instead)", highlight=False,
                          soft_wrap=True)
        if known.get(chain_id, {}).get("kind") == "local":
            # the running node of a `csms serve --chain local`, or one of our own
            try:
                node = AnvilNode(Path(settings.data_dir).expanduser() / "anvil-state.json",
                                 attach=True)
                w3 = rpc_client(node.url)
            except ChainError as exc:
                console.print(f"the local chain could not be started: {exc}")
    statuses = []
    try:
        for file, data in zip(files, receipts, strict=True):
            try:
                verdict = verify_receipt(data, w3, driver=driver, contract=contract)
            except ReceiptError as exc:
                fail(f"{file}: {exc}")
            if len(files) > 1:
                console.print(f"[bold]{file}[/]")
            for check in verdict.checks:
                mark = {True: "[green]ok[/]", False: "[bold red]FAIL[/]",
                        None: "[yellow]??[/]"}[check.ok]
                console.print(f"{mark}  {check.name}: {check.detail}", highlight=False)
            console.print(f"what this proves: {verdict.proves}")
            color = {VALID: "green", INVALID: "red"}.get(verdict.status, "yellow")
            console.print(f"[bold {color}]{verdict.status}[/] receipt")
            statuses.append(verdict.status)
    finally:
        if node is not None:
            node.stop()
    twice = duplicates(receipts) if len(receipts) > 1 else []
    for line in twice:
        console.print(f"[bold red]FAIL[/]  billed twice: {line}")
    if twice or INVALID in statuses:
        raise typer.Exit(1)
    if any(s != VALID for s in statuses):
        raise typer.Exit(3)
