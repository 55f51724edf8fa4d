"""``csms contract``: deploy the settlement contract and show what its deployment fixed."""

from __future__ import annotations

import math
import re
from typing import Annotated

import typer

from csms.cli.common import (
    ChainOption,
    DataDirOption,
    JsonOption,
    KeystoreOption,
    PasswordFileOption,
    fail,
    group,
    load_settings,
    open_chain_or_fail,
    print_json,
    print_table,
    say,
    setting_option,
    warn,
)
from csms.service import defaults
from csms.service.limits import short_notice

__all__ = ["contract_app", "contract_info"]

contract_app = group("The settlement contract.")

# the least --notice-days, rounded up to four decimals (defaults.MIN_NOTICE_PERIOD)
LEAST_NOTICE_DAYS = math.ceil(defaults.MIN_NOTICE_PERIOD / 8.64) / 10000

DeployChain = Annotated[str | None, setting_option(
    "chain", "The chain to deploy on: local (managed Anvil), memory, or an http(s):// RPC URL"
    " (required)", default="")]


@contract_app.command("deploy")
def contract_deploy(
    chain: DeployChain = None, keystore: KeystoreOption = None,
    password_file: PasswordFileOption = None,
    data_dir: DataDirOption = None,
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
        help="Days before a driver's lower terms or withdrawal apply (longer than your"
        f" settlement delay; at least {LEAST_NOTICE_DAYS:g}: a driver's session is stopped"
        f" {defaults.NOTICE_STOP_AHEAD // 60} minutes before its start plus this)")] = 7.0,
) -> None:
    """Deploy the settlement contract on a chain and record its address."""
    from settlement.chain import ContractParams

    if not notice_days * 86400 >= defaults.MIN_NOTICE_PERIOD:  # nan too
        raise typer.BadParameter(
            f"at least {LEAST_NOTICE_DAYS:g} days ({defaults.MIN_NOTICE_PERIOD} s): a"
            f" driver's session is stopped {defaults.NOTICE_STOP_AHEAD // 60} minutes before"
            " its start plus the notice period, and"
            f" {defaults.MIN_NOTICE_CHARGE // 60} minutes of charging are left before",
            param_hint="--notice-days")
    for value, name in ((token, "--token"), (platform, "--platform")):
        if value is not None and not re.fullmatch(r"0x[0-9a-fA-F]{40}", value):
            raise typer.BadParameter("an address is 0x and 40 hex digits", param_hint=name)
    settings = load_settings(chain=chain, data_dir=data_dir, keystore=keystore,
                             keystore_password_file=password_file)
    if not settings.chain:
        raise typer.BadParameter("name the chain: local, memory or an http(s):// RPC URL",
                                 param_hint="--chain")
    params = ContractParams(int(notice_days * 86400), token, unit, platform, fee_bps)
    c = open_chain_or_fail(settings, params=params)
    try:
        info = c.info()
        asked = {"token": (token or "").lower() or None, "unit": unit, "fee_bps": fee_bps}
        held = {k: info[k] for k in asked}
        if held != asked:
            fail(f"the contract recorded for chain {c.chain_id} ({c.contract_address}) has"
                 f" {held}; remove it from chain.json in the data folder to deploy another", 1)
        currency = f"escrows in token {info['token']}" if info["token"] else \
            "escrows in the native coin"
        billing = "" if c.billing is None else \
            f", billing in {c.billing[0]} with {c.billing[1]} decimals"
        say(f"contract {c.contract_address} on chain {c.chain_id} ({currency},"
            f" unit {info['unit']}{billing}, fee {info['fee_bps']} bps to {info['platform']},"
            f" notice {info['notice_period']} s)")
    finally:
        c.close()


def contract_info(
    chain: ChainOption = None, data_dir: DataDirOption = None, json_: JsonOption = False,
) -> None:
    """The recorded contract: its address and what its deployment fixed."""
    settings = load_settings(chain=chain, data_dir=data_dir)
    c = open_chain_or_fail(settings, deploy=False)
    try:
        info = c.info()
        info["station_count"] = int(c.contract.functions.station_count().call())
        info["driver_count"] = int(c.contract.functions.driver_count().call())
    finally:
        c.close()
    # deployed by an earlier release, before deploy refused a shorter notice period
    flagged = short_notice(info["notice_period"])
    info["notice_below_minimum"] = flagged is not None
    if flagged is not None:
        warn(flagged)
    if json_:
        print_json(info)
        return
    print_table("Settlement contract", ["field", "value"], [[k, v] for k, v in info.items()])

