"""``csms drivers`` (the operator's view of drivers and hosts) and ``csms wallet`` (what a
driver or a host does on chain with its own key).

The operator links a card to a driver only after the driver linked it on chain (the
commitment proves the driver's consent); a station is paid to its host only once the
host registered it on chain. A wallet is an encrypted V3 keystore; on the managed local
chain ``csms wallet new --fund`` also gives it test coins.
"""

from __future__ import annotations

import json
import math
import re
import secrets
import shlex
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from csms.cli.common import (
    SMALL_FILE,
    CliError,
    DataDirOption,
    DbOption,
    JsonOption,
    WideOption,
    actor,
    console,
    fail,
    group,
    in_read,
    in_unit,
    load_settings,
    open_chain_or_fail,
    print_json,
    print_table,
    read_limited,
    run,
    say,
    setting_option,
)
from csms.config import Settings
from csms.domain.model import IdTag, id_tag_problem
from csms.service import defaults

if TYPE_CHECKING:
    from csms.service.ports import Tx

__all__ = ["drivers_app", "set_host", "wallet_app"]

drivers_app = group("Drivers: cards linked to escrows on chain.")
wallet_app = group("A driver's or a host's own key on chain: escrow, terms, cards, app"
                   " sessions, stations, earnings.")

ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")
# the least --hours of csms wallet authorize: what the central system accepts, and time to
# hand the authorization over (the app, the operator, the remote start), rounded up
AUTHORIZATION_HANDOVER = 360
MIN_AUTHORIZATION_HOURS = math.ceil(
    (defaults.AUTHORIZATION_MIN_SECONDS + AUTHORIZATION_HANDOVER) / 36) / 100
ChainOption = Annotated[str | None, setting_option(
    "chain", "local (managed Anvil) or an http(s):// RPC URL", default="local")]
Contract = Annotated[str | None, typer.Option(
    help="The settlement contract [default: the one recorded in the data folder]")]
Keystore = Annotated[str, typer.Option(help="Your V3 keystore (csms wallet new)")]
PasswordFile = Annotated[str, typer.Option(help="The file holding its password")]


def _address(value: str, name: str) -> str:
    if not ADDRESS.fullmatch(value):
        raise typer.BadParameter("an address is 0x and 40 hex digits", param_hint=name)
    return value


def _chain(settings: Settings, contract: str | None = None) -> Any:
    """The chain of the settings with its recorded contract (or ``contract``): never
    deploys one."""
    return open_chain_or_fail(settings, deploy=False, contract=contract)


# -- the operator's side ---------------------------------------------------------------
@drivers_app.command("link")
def drivers_link(
    tag: Annotated[str, typer.Argument(help="The card's id tag")],
    driver: Annotated[str, typer.Option(help="The driver's address")],
    salt: Annotated[str, typer.Option(help="The salt the driver linked it with (0x + 64 hex)")],
    chain: ChainOption = None, data_dir: DataDirOption = None, contract: Contract = None,
    db: DbOption = None,
) -> None:
    """Charge a card to a driver's escrow: only once the driver linked it on chain."""
    from settlement.receipts import hex32
    from settlement.records import card_commitment

    _address(driver, "--driver")
    raw_salt = hex32(salt)
    if raw_salt is None:
        raise typer.BadParameter("0x and 64 hex digits", param_hint="--salt")
    if (problem := id_tag_problem(tag)) is not None:
        raise typer.BadParameter(problem)
    commitment = card_commitment(driver, tag, raw_salt)
    settings = load_settings(db=db, data_dir=data_dir, chain=chain)
    c = _chain(settings, contract)
    try:
        index = c.driver_state(driver).index
        linked = index != 0 and c.card_linked(index, commitment)
    finally:
        c.close()
    if not linked:
        fail(f"{driver} has not linked this card on chain (csms wallet link-card): not linked",
             1)

    async def work(tx: Tx) -> None:
        await tx.link_card(tag, driver, salt.lower(), "0x" + commitment.hex(),
                           datetime.now(UTC))
        known = await tx.get_tag(tag)
        if known is None:
            await tx.put_tag(IdTag(tag))  # a linked card is an accepted tag
        await tx.add_audit(actor(), "drivers.link", tag, {"driver": driver},
                           {"commitment": "0x" + commitment.hex()}, True, datetime.now(UTC))

    run(in_unit(settings, work))
    console.print(f"card {tag} is charged to driver {driver} (index {index})", markup=False)


@drivers_app.command("unlink")
def drivers_unlink(tag: Annotated[str, typer.Argument(help="The card's id tag")],
                   db: DbOption = None, data_dir: DataDirOption = None) -> None:
    """Stop charging a card to its driver's escrow."""

    async def work(tx: Tx) -> bool:
        if not await tx.unlink_card(tag):
            return False
        await tx.add_audit(actor(), "drivers.unlink", tag, {}, {}, True, datetime.now(UTC))
        return True

    if not run(in_unit(load_settings(db=db, data_dir=data_dir), work)):
        fail(f"card {tag} is linked to no driver")
    console.print(f"card {tag} unlinked", markup=False)


@drivers_app.command("list")
def drivers_list(json_: JsonOption = False, wide: WideOption = False, db: DbOption = None,
                 data_dir: DataDirOption = None) -> None:
    """Cards and the drivers they are charged to: the columns that fit the terminal (the
    driver's address and the card first), or all of them with --wide."""

    async def work(tx: Tx) -> list[dict[str, Any]]:
        return await tx.driver_cards()

    rows = run(in_read(load_settings(db=db, data_dir=data_dir), work))
    if json_:
        print_json(rows)
        return
    print_table("Cards linked to drivers", ["tag", "driver", "commitment", "linked"],
                [[r["tag"], r["driver"], r["commitment"][:18] + "...", r["linked_at"]]
                 for r in rows], priority=["driver", "tag", "linked", "commitment"],
                wide=wide)


def set_host(
    station_id: Annotated[str, typer.Argument(help="The station's id")],
    host: Annotated[str, typer.Argument(metavar="address", help="The host's address")],
    chain_station: Annotated[int, typer.Option(
        min=1, help="The index the host registered the station under (csms wallet"
        " register-station)")],
    chain: ChainOption = None, data_dir: DataDirOption = None, contract: Contract = None,
    db: DbOption = None,
) -> None:
    """Pay a station's sessions to its host: the host must have registered it on chain."""
    from settlement.records import LIMITS

    _address(host, "address")
    bits = LIMITS["chain_station"]
    if chain_station >= 2 ** bits:  # below 1: refused by the option's own bound
        fail(f"--chain-station: at most {2 ** bits - 1} (the contract's station indexes"
             f" are {bits} bits), not {chain_station}")
    settings = load_settings(db=db, data_dir=data_dir, chain=chain)
    c = _chain(settings, contract)
    try:
        registered, power = c.station(chain_station)
    finally:
        c.close()
    if registered.lower() != host.lower():
        fail(f"station {chain_station} on chain is hosted by {registered}, not {host}", 1)

    async def work(tx: Tx) -> None:
        station = await tx.get_station(station_id)
        if station is None:
            raise CliError(f"no station {station_id!r}")
        station.host_address, station.chain_station = host.lower(), chain_station
        await tx.update_station(station)
        await tx.add_audit(actor(), "stations.set-host", station_id,
                           {"host": host, "chain_station": chain_station}, {}, True,
                           datetime.now(UTC))

    run(in_unit(settings, work))
    say(f"station {station_id}: paid to {host} (chain station {chain_station},"
        f" {power / 1000:g} kW)")


# -- a driver's or a host's own key -----------------------------------------------------
def _account(keystore: str, password_file: str) -> Any:
    from eth_account import Account

    try:
        data = json.loads(read_limited(keystore, SMALL_FILE).decode("utf-8"))
        password = read_limited(password_file, SMALL_FILE).decode("utf-8").strip()
        return Account.from_key(Account.decrypt(data, password))
    except (OSError, ValueError, KeyError) as exc:
        fail(f"cannot open the keystore {keystore}: {exc}")


def _wallet(spec: str | None, data_dir: str | None, contract: str | None, keystore: str,
            password_file: str) -> tuple[Any, Any]:
    account = _account(keystore, password_file)
    # a JSON-RPC chain opened with the wallet's own key, not the operator's of the settings
    chain = open_chain_or_fail(load_settings(data_dir=data_dir, chain=spec), deploy=False,
                               contract=contract, keystore=keystore,
                               password_file=password_file)
    return chain, account


def _run(fn: Any, *args: Any) -> Any:
    from settlement.chain import ChainError

    try:
        return fn(*args)
    except ChainError as exc:
        fail(str(exc).splitlines()[0], 1)
    except Exception as exc:  # a revert from the node, with the contract's reason
        fail(" ".join(str(exc).split())[:300], 1)


@wallet_app.command("new")
def wallet_new(
    keystore: Annotated[str, typer.Option(help="Where to write the keystore")],
    password_file: Annotated[str, typer.Option(help="Where to write its password")],
    fund: Annotated[bool, typer.Option(
        help="Give it 100 test coins on the managed local chain")] = False,
    data_dir: DataDirOption = None,
) -> None:
    """Create a key (an encrypted V3 keystore and a password file, mode 0600)."""
    import os

    from eth_account import Account

    for path in (keystore, password_file):
        if Path(path).exists():
            fail(f"{path} exists: not overwritten")
    account = Account.create()
    password = secrets.token_urlsafe(24)
    written: list[str] = []
    for path, text in ((password_file, password),
                       (keystore, json.dumps(Account.encrypt(account.key, password)))):
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except OSError as exc:  # its folder is missing, is a file, is not writable
            for done in written:  # no password file left without its keystore
                os.unlink(done)
            fail(f"cannot write {path}: {exc.strerror or exc}")
        written.append(path)
        with os.fdopen(fd, "w") as f:
            f.write(text)
    if fund:
        c = _chain(load_settings(data_dir=data_dir, chain="local"))
        try:
            c.w3.provider.make_request("anvil_setBalance", [account.address, hex(10**20)])
        finally:
            c.close()
    say(f"address {account.address}")


@wallet_app.command("status")
def wallet_status(
    keystore: Keystore, password_file: PasswordFile, chain: ChainOption = None,
    data_dir: DataDirOption = None, contract: Contract = None, json_: JsonOption = False,
) -> None:
    """Your escrow, terms and earnings on chain, all read at one block (the node's latest
    when the command starts)."""
    from dataclasses import asdict

    c, account = _wallet(chain, data_dir, contract, keystore, password_file)
    try:
        block = _run(c.block_number)
        state = _run(c.driver_state, account.address, block)
        earnings = c.contract.functions.earnings(account.address)
        earned = max(0, int(_run(lambda: earnings.call(block_identifier=block))) - 1)
        info = _run(c.info, block)
    finally:
        c.close()
    out = {"address": account.address, "block": block, "driver": asdict(state),
           "earnings": earned, "contract": info}
    if json_:
        print_json(out)
        return
    say(f"{account.address}: driver {state.index or '-'}, escrow {state.balance}"
        f" (billing units of {info['unit']}), spent today {state.spent_today};"
        f" {_terms_words(state.terms)}; earned {earned} base units (at block {block})")


def _terms_words(t: Any) -> str:
    """A driver's terms (settlement.chain.Terms) as ``wallet status`` and ``wallet terms``
    say them, in billing units."""
    return (f"accepts {t.max_per_kwh}/kWh {t.max_per_minute}/min fee {t.max_session_fee},"
            f" at most {t.max_per_session} a session and {t.max_per_day} a day, cards"
            f" {'yes' if t.allow_cards else 'no'}")


@wallet_app.command("deposit")
def wallet_deposit(
    amount: Annotated[int, typer.Argument(min=1, help="Billing units (a tariff's minor"
                                           " units, e.g. cents)")],
    keystore: Keystore, password_file: PasswordFile, chain: ChainOption = None,
    data_dir: DataDirOption = None, contract: Contract = None,
) -> None:
    """Put money into your escrow."""
    from settlement import wallet

    c, account = _wallet(chain, data_dir, contract, keystore, password_file)
    try:
        _run(wallet.deposit, c, account, amount * int(c.info()["unit"]))
        balance = c.driver_state(account.address).balance
    finally:
        c.close()
    say(f"escrow of {account.address}: {balance}")


@wallet_app.command("terms")
def wallet_terms(
    keystore: Keystore, password_file: PasswordFile,
    per_kwh: Annotated[int, typer.Option(min=0, help="The most you pay per kWh")],
    per_minute: Annotated[int, typer.Option(min=0, help="... per minute")] = 0,
    session_fee: Annotated[int, typer.Option(min=0, help="... as a session fee")] = 0,
    per_session: Annotated[int, typer.Option(min=0, help="The most a session costs")] = 5000,
    per_day: Annotated[int, typer.Option(min=0, help="The most a day costs")] = 20000,
    cards: Annotated[bool, typer.Option(help="Whether card sessions may be charged")] = True,
    chain: ChainOption = None, data_dir: DataDirOption = None, contract: Contract = None,
    json_: JsonOption = False,
) -> None:
    """State what you accept (billing units); lowering applies after the notice period."""
    from dataclasses import asdict

    from settlement import wallet

    c, account = _wallet(chain, data_dir, contract, keystore, password_file)
    try:
        _run(wallet.set_terms, c, account, wallet.DriverTerms(
            per_kwh, per_minute, session_fee, per_session, per_day, cards))
        state = c.driver_state(account.address)
    finally:
        c.close()
    later = state.pending_terms
    at = datetime.fromtimestamp(state.pending_from, UTC).isoformat() if later else None
    if json_:
        print_json({"address": account.address, "terms": asdict(state.terms),
                    "pending_terms": asdict(later) if later else None, "pending_from": at})
        return
    pending = f"; from {at} (after the notice period): {_terms_words(later)}" if later else ""
    say(f"terms of {account.address} (billing units): {_terms_words(state.terms)}{pending}")


@wallet_app.command("link-card")
def wallet_link_card(
    tag: Annotated[str, typer.Argument(help="Your card's id tag (UID)")],
    keystore: Keystore, password_file: PasswordFile, chain: ChainOption = None,
    data_dir: DataDirOption = None, contract: Contract = None,
) -> None:
    """Link a card to your escrow with a fresh salt; give the tag and the salt to the
    operator (the chain sees neither)."""
    from settlement import wallet

    c, account = _wallet(chain, data_dir, contract, keystore, password_file)
    salt = wallet.new_salt()
    try:
        _run(wallet.link_card, c, account, tag, salt)
    finally:
        c.close()
    # one line, never wrapped at the terminal's width: the operator pastes it into a shell
    say(f"linked. give the operator: csms drivers link {shlex.quote(tag)} --driver"
        f" {account.address} --salt 0x{salt.hex()}", soft_wrap=True)


@wallet_app.command("authorize")
def wallet_authorize(
    keystore: Keystore, password_file: PasswordFile,
    station: Annotated[int, typer.Option(min=1, help="The station's index on chain")],
    max_amount: Annotated[int, typer.Option(min=1, help="The most this session may cost")],
    per_kwh: Annotated[int, typer.Option(min=0, help="The most per kWh")],
    per_minute: Annotated[int, typer.Option(min=0, help="The most per minute")] = 0,
    session_fee: Annotated[int, typer.Option(min=0, help="The most as a session fee")] = 0,
    hours: Annotated[float, typer.Option(
        help=f"Valid (to be settled) for; at least {MIN_AUTHORIZATION_HOURS}")] = 24.0,
    out: Annotated[str | None, typer.Option("-o", "--out", help="File to write")] = None,
    chain: ChainOption = None, data_dir: DataDirOption = None, contract: Contract = None,
) -> None:
    """Sign one app session (EIP-712): the operator starts it with csms remote start
    --authorization FILE."""
    from settlement import wallet

    if not hours >= MIN_AUTHORIZATION_HOURS:
        # the central system refuses it: the session would be stopped before it charged
        fail(f"--hours must be at least {MIN_AUTHORIZATION_HOURS}: a session is stopped"
             f" {defaults.SIGNED_STOP_AHEAD // 60} minutes before its authorization expires,"
             " to be settled in time, and the central system accepts none that leaves less"
             f" than {defaults.AUTHORIZATION_MIN_SECONDS // 60} minutes when it gets it")
    c, account = _wallet(chain, data_dir, contract, keystore, password_file)
    try:
        auth = _run(lambda: wallet.authorize(
            c, account, station, max_per_kwh=per_kwh, max_per_minute=per_minute,
            max_session_fee=session_fee, max_amount=max_amount,
            nonce=secrets.randbits(48), expiry=int(time.time() + hours * 3600)))
    finally:
        c.close()
    text = json.dumps(auth.as_json(), indent=2)
    if out:
        Path(out).write_text(text + "\n", "utf-8")
        say(f"authorization written to {out}")
    else:
        print(text)


@wallet_app.command("withdraw")
def wallet_withdraw(
    keystore: Keystore, password_file: PasswordFile,
    request: Annotated[int | None, typer.Option(
        min=1, help="Announce a withdrawal of this many billing units")] = None,
    to: Annotated[str | None, typer.Option(help="Where to send it [default: you]")] = None,
    chain: ChainOption = None, data_dir: DataDirOption = None, contract: Contract = None,
) -> None:
    """Announce a withdrawal (--request), or make the one announced once its notice passed."""
    from settlement import wallet

    if to is not None:
        _address(to, "--to")
    c, account = _wallet(chain, data_dir, contract, keystore, password_file)
    try:
        if request is not None:
            _run(wallet.request_withdrawal, c, account, request)
            state = c.driver_state(account.address)
            say(f"withdrawal of {request} announced: available from"
                f" {state.withdrawal_at} (unix time)")
        else:
            _run(wallet.withdraw, c, account, to)
            console.print("withdrawn")
    finally:
        c.close()


@wallet_app.command("register-station")
def wallet_register_station(
    keystore: Keystore, password_file: PasswordFile,
    max_power_kw: Annotated[float, typer.Option(min=0.1, max=4000,
                                                help="The station's maximum power")],
    chain: ChainOption = None, data_dir: DataDirOption = None, contract: Contract = None,
) -> None:
    """As a host, register a station you own: its sessions are paid to you."""
    from settlement import wallet

    c, account = _wallet(chain, data_dir, contract, keystore, password_file)
    try:
        index = _run(wallet.register_station, c, account, int(max_power_kw * 1000))
    finally:
        c.close()
    say(f"station {index} registered to {account.address}. give the operator:"
        f" csms stations set-host STATION_ID {account.address} --chain-station"
        f" {index}", soft_wrap=True)


@wallet_app.command("earnings")
def wallet_earnings(
    keystore: Keystore, password_file: PasswordFile,
    withdraw: Annotated[bool, typer.Option("--withdraw", help="Withdraw them")] = False,
    to: Annotated[str | None, typer.Option(help="Where to send them [default: you]")] = None,
    chain: ChainOption = None, data_dir: DataDirOption = None, contract: Contract = None,
) -> None:
    """What your stations (or the platform's fee) earned; --withdraw to any address."""
    from settlement import wallet

    if to is not None:
        _address(to, "--to")
    c, account = _wallet(chain, data_dir, contract, keystore, password_file)
    try:
        earned = max(0, int(c.contract.functions.earnings(account.address).call()) - 1)
        if withdraw and earned:
            _run(wallet.withdraw_earnings, c, account, to)
    finally:
        c.close()
    say(f"earned {earned} base units" + (" - withdrawn" if withdraw and earned
                                         else ""))
