"""``csms wallet entries``: a host's view, from the chain alone, of each entry the operator
settled for its stations, paid or not and why (:mod:`settlement.host_entries`)."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, cast

import typer

from csms.cli.common import (
    SMALL_FILE,
    DataDirOption,
    JsonOption,
    WideOption,
    err_console,
    fail,
    load_settings,
    print_json,
    print_table,
    read_limited,
    say,
)
from csms.cli.parties import ADDRESS, Contract, _address

if TYPE_CHECKING:
    from eth_typing import HexStr

__all__ = ["wallet_entries"]


def _host_of(keystore: str, password_file: str | None) -> str:
    """The address of a V3 keystore: decrypted with its password when given, else the
    address the keystore names (reading needs no key)."""
    from eth_account import Account

    try:
        data = json.loads(read_limited(keystore, SMALL_FILE).decode("utf-8"))
        if password_file is not None:
            password = read_limited(password_file, SMALL_FILE).decode("utf-8").strip()
            return str(Account.from_key(Account.decrypt(data, password)).address)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        fail(f"cannot open the keystore {keystore}: {exc}")
    named = "0x" + str(data.get("address", "") if isinstance(data, dict) else "").removeprefix(
        "0x")
    if not ADDRESS.fullmatch(named):
        fail(f"the keystore {keystore} names no address: give --password-file")
    return named


def _major(amount: int, decimals: int | None) -> str | None:
    if decimals is None:
        return None
    return f"{Decimal(amount).scaleb(-decimals):.{decimals}f}"


def wallet_entries(
    keystore: Annotated[str | None, typer.Option(
        help="Your V3 keystore (csms wallet new): its address")] = None,
    password_file: Annotated[str | None, typer.Option(
        help="Its password: the address decrypted from the key [default: the address the"
        " keystore names]")] = None,
    host: Annotated[str | None, typer.Option(
        help="The host's address (instead of --keystore: reading needs no key)")] = None,
    rpc: Annotated[str | None, typer.Option(
        help="JSON-RPC URL of the chain [default: the managed local chain of the data"
        " folder]")] = None,
    contract: Contract = None,
    from_block: Annotated[int | None, typer.Option(
        min=0, help="Read the chunks settled from this block on [default: the contract's"
        " first block, or 0 where the data folder does not record it]")] = None,
    log_window: Annotated[int, typer.Option(
        min=1, help="The widest block range of one eth_getLogs (narrower where the node"
        " refuses it)")] = 10_000,
    confirmations: Annotated[int | None, typer.Option(
        min=1, help="Read everything at the block with this many confirmations (that block"
        " and the blocks on top of it up to the node's latest, as csms verify counts them;"
        " 1: the latest block): a chunk settled in a later block is not listed yet, as it"
        " could still be reorganised away. Default: 1 on a local test chain (Anvil,"
        " Hardhat, Ganache, py-evm), 64 on any other (two epochs: when a block of Ethereum"
        " is final)")] = None,
    json_: JsonOption = False, wide: WideOption = False, data_dir: DataDirOption = None,
) -> None:
    """As a host, each entry the operator settled for your stations, from the chain alone:
    paid or not and the contract's reason, and what the contract credited you next to
    your earnings.

    Your stations are the indexes the contract registered to your address; a session the
    operator never settled is on no chain and is not listed. Everything is read at one
    block, --confirmations deep: a chunk settled after it is not listed yet."""
    if (host is None) == (keystore is None):
        fail("give your address: --host ADDRESS or --keystore FILE (one of them)")
    if host is not None:
        _address(host, "--host")
    if contract is not None:
        _address(contract, "--contract")
    # the chain's libraries after the arguments: a wrong one is told without loading them
    from settlement.chain import (
        AnvilNode,
        ChainError,
        SettlementReader,
        recorded_deployments,
        rpc_client,
    )
    from settlement.contract import is_settlement_code
    from settlement.receipts import default_confirmations

    address = host if host is not None else _host_of(str(keystore), password_file)
    settings = load_settings(data_dir=data_dir)
    recorded = recorded_deployments(settings.data_dir)
    node = None
    try:
        if rpc is not None:
            w3 = rpc_client(rpc)
        else:
            local = [r for r in recorded.values() if isinstance(r, dict)
                     and r.get("kind") == "local"]
            if not local:
                fail(f"no managed local chain recorded in {settings.data_dir}: give --rpc URL"
                     " (and --contract)")
            # the running node of a `csms serve --chain local`, or one of our own
            node = AnvilNode(Path(settings.data_dir).expanduser() / "anvil-state.json",
                             attach=True)
            w3 = rpc_client(node.url)
        chain_id = int(w3.eth.chain_id)
        record = recorded.get(str(chain_id))
        record = record if isinstance(record, dict) else {}
        if contract is None:
            contract = record.get("contract")
            if not isinstance(contract, str) or not ADDRESS.fullmatch(contract):
                fail(f"no contract recorded for chain {chain_id} in {settings.data_dir}:"
                     " give --contract ADDRESS")
        same = str(record.get("contract", "")).lower() == contract.lower()
        reader = SettlementReader(w3, contract, log_window)
        code = reader.code()
        if not code:
            fail(f"there is no contract at {contract} on chain {chain_id}", 1)
        if not is_settlement_code(code):  # its events and entries mean nothing
            fail(f"the code at {contract} is not voltledger's Settlement contract", 1)
        deploy_tx = record.get("deploy_tx") if same else None
        if isinstance(deploy_tx, str):  # no log of the contract is older
            reader.first_block = int(w3.eth.get_transaction_receipt(
                cast("HexStr", deploy_tx))["blockNumber"])
        depth = default_confirmations(chain_id) if confirmations is None else confirmations
        head = reader.block_number()
        if depth > head + 1:
            fail(f"the chain has {head + 1} blocks (0..{head}): none is {depth} confirmations"
                 " deep (--confirmations N, at most the chain's blocks)", 1)
        result = _read(reader, address, from_block, head - depth + 1)
        currency, decimals = _billing(reader, record if same else {}, result.to_block)
    except ChainError as exc:
        fail(str(exc).splitlines()[0], 1)
    except typer.Exit:
        raise
    except Exception as exc:  # the node cannot be reached, or answers an error
        fail(f"cannot read the chain: {' '.join(str(exc).split())[:300]}", 1)
    finally:
        if node is not None:
            node.stop()
    _show(result, currency, decimals, json_, wide, depth, head)


def _read(reader: Any, address: str, from_block: int | None, to_block: int) -> Any:
    """:func:`settlement.host_entries.host_entries` with a progress display on stderr (a
    terminal's: none in a pipe or a file)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from settlement.host_entries import host_entries

    words = {"blocks": "reading the contract's events (blocks)",
             "chunks": "reading the settled chunks"}
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  console=err_console, transient=True,
                  disable=not err_console.is_terminal) as progress:
        tasks: dict[str, Any] = {}

        def step(what: str, done: int, total: int) -> None:
            if what not in tasks:
                tasks[what] = progress.add_task(words[what], total=total)
            progress.update(tasks[what], completed=done, total=total)

        return host_entries(reader, address, from_block=from_block, to_block=to_block,
                            progress=step)


def _billing(reader: Any, record: dict[str, Any], block: int) -> tuple[str | None, int | None]:
    """(currency, decimals) of a billing unit: as the data folder recorded the contract's
    deployment, else from its ERC-20 token's decimals when its unit is a power of ten of
    them (no currency then); (None, None) when neither tells."""
    if isinstance(record.get("currency"), str) and isinstance(record.get("decimals"), int):
        return record["currency"], record["decimals"]
    unit = reader.unit(block)
    power = len(str(unit)) - 1
    token = reader.token(block)
    if unit != 10**power or token is None:
        return None, None
    token_decimals = reader.token_decimals(token, block)
    if token_decimals is None or token_decimals < power:
        return None, None
    return None, token_decimals - power


def _show(r: Any, currency: str | None, decimals: int | None, json_: bool,
          wide: bool, confirmations: int, head: int) -> None:
    net = r.credited
    if r.withdrawn is not None:
        agrees: bool | None = net == r.earnings + r.withdrawn
    else:
        agrees = None
    if json_:
        print_json({
            "host": r.host, "contract": r.contract, "stations": r.stations,
            "from_block": r.from_block, "to_block": r.to_block,
            "confirmations": confirmations, "head": head, "chunks": r.chunks,
            "unit": r.unit, "fee_bps": r.fee_bps, "currency": currency, "decimals": decimals,
            "entries": [{
                "ledger": str(e.ledger), "seq": e.seq, "station": e.station,
                "energy_wh": e.energy_wh, "duration_s": e.duration_s, "amount": e.amount,
                "amount_major": _major(e.amount, decimals),
                "kind": "app" if e.kind == 1 else "card" if e.kind == 0 else e.kind,
                "paid": e.paid, "reason": e.reason, "reason_name": e.reason_name,
                "tx_hash": e.tx_hash, "block": e.block} for e in r.entries],
            "unreadable": [{"tx_hash": u.tx_hash, "block": u.block, "ledger": str(u.ledger),
                            "first_seq": u.first_seq, "why": u.why} for u in r.unreadable],
            "paid": r.paid, "credited": net, "earnings": r.earnings,
            "withdrawn": r.withdrawn, "agrees": agrees, "is_platform": r.is_platform})
        return
    unit_words = f" {currency}" if currency else ""
    print_table(
        f"Entries settled for the stations of {r.host} (blocks {r.from_block}..{r.to_block})",
        ["ledger", "seq", "station", "Wh", "s", "amount", "paid", "tx", "block"],
        [[str(e.ledger), e.seq, e.station, e.energy_wh, e.duration_s,
          f"{e.amount}" + (f" ({_major(e.amount, decimals)}{unit_words})"
                           if decimals is not None else ""),
          "paid" if e.paid else f"UNPAID {e.reason_name}", e.tx_hash, e.block]
         for e in r.entries],
        priority=["seq", "paid", "amount", "station", "Wh", "s", "block", "ledger", "tx"],
        wide=wide)
    say(f"read at block {r.to_block}, {confirmations} confirmation"
        f"{'' if confirmations == 1 else 's'} deep (the node's latest block is {head}):"
        " a chunk settled in a later block is not listed yet")
    stations = ", ".join(map(str, r.stations)) or "none"
    unpaid = sum(1 for e in r.entries if not e.paid)
    say(f"stations {stations}; {len(r.entries)} entries in {r.chunks} settled chunks,"
        f" {unpaid} unpaid; paid {r.paid} billing units of {r.unit} base units"
        + (f" ({_major(r.paid, decimals)}{unit_words})" if decimals is not None else ""))
    say(f"credited to you (less the platform's fee of {r.fee_bps / 100:g}%): {net} base"
        f" units; earnings() now {r.earnings}"
        + (f", withdrawn {r.withdrawn}" if r.withdrawn is not None else ""))
    for u in r.unreadable:
        say(("!", "bold red"), f" chunk {u.first_seq} of ledger {u.ledger} ({u.tx_hash},"
            f" block {u.block}) not read: {u.why}", soft_wrap=True)
    if r.is_platform:
        say("you also receive the platform's fee: earnings() holds it too")
    elif agrees is True:
        say(("agrees", "green"), ": credited = earnings() + withdrawn")
    elif agrees is False:
        say(("differs", "bold red"), f": credited {net}, earnings() + withdrawn"
            f" {r.earnings + r.withdrawn}")
    else:
        say("read from a later block than the contract's first: not compared with"
            " earnings()")
