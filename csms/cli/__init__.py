"""The ``csms`` command (Typer + Rich): assembles the command groups of this package.

One module per group or command: ``serve``, ``stations``, ``tags``, ``sessions``,
``remote``, ``tariffs``, ``settle``, ``contract``, ``receipt``, ``verify``, ``parties``
(``drivers`` and ``wallet``; ``wallet_entries`` adds ``wallet entries``) and ``demo``;
``common`` holds their shared options and output.

The root group lists each top-level command with the first paragraph of its help
(``COMMANDS``) and imports and builds one only when a call names it (``lazy``): a call
builds the one command or group it runs. A group's loader also registers the commands
other modules add to it (``stations set-password``, ``remote get-report``...).
"""

from __future__ import annotations

import sys
from functools import cache
from typing import Annotated

import typer
from typer.models import CommandInfo, TyperInfo

from csms.cli.common import err_console, invocation, setting_option
from csms.cli.lazy import Entry, LazyGroup, command_info, group_info

__all__ = ["COMMANDS", "app", "main"]


def _serve() -> CommandInfo:
    from csms.cli.serve import serve

    return command_info("serve", serve)


def _receipt() -> CommandInfo:
    from csms.cli.receipt import receipt

    return command_info("receipt", receipt)


def _verify() -> CommandInfo:
    from csms.cli.verify import verify

    return command_info("verify", verify)


def _audit() -> CommandInfo:
    from csms.cli.audit import audit

    return command_info("audit", audit)


def _demo() -> CommandInfo:
    from csms.cli.demo import demo

    return command_info("demo", demo)


@cache  # registers the commands of other modules once
def _stations() -> TyperInfo:
    from csms.cli import parties, remote, retention, station_reports, stations, variables

    assert station_reports.stations_app is stations.stations_app  # stations reports...
    stations.stations_app.command("set-password")(remote.set_password)
    stations.stations_app.command("set-host")(parties.set_host)
    stations.stations_app.command("variables")(variables.station_variables)
    stations.stations_app.command("monitors")(variables.station_monitors)
    stations.stations_app.command("events")(variables.station_events)
    stations.stations_app.command("prune-events")(retention.prune_events)
    return group_info("stations", stations.stations_app)


def _tags() -> TyperInfo:
    from csms.cli.tags import tags_app

    return group_info("tags", tags_app)


def _sessions() -> TyperInfo:
    from csms.cli.sessions import sessions_app

    return group_info("sessions", sessions_app)


@cache  # registers the commands of other modules once
def _remote() -> TyperInfo:
    from csms.cli import remote, remote_more, variables

    assert remote_more.remote_app is remote.remote_app  # more remote commands, registered
    for name, fn in (("get-base-report", variables.get_base_report),
                     ("get-report", variables.get_report),
                     ("set-monitoring", variables.set_monitoring),
                     ("clear-monitoring", variables.clear_monitoring),
                     ("set-monitoring-base", variables.set_monitoring_base),
                     ("set-monitoring-level", variables.set_monitoring_level),
                     ("get-monitoring-report", variables.get_monitoring_report)):
        remote.remote_app.command(name)(fn)
    return group_info("remote", remote.remote_app)


def _tariffs() -> TyperInfo:
    from csms.cli.tariffs import tariffs_app

    return group_info("tariffs", tariffs_app)


def _settle() -> TyperInfo:
    from csms.cli.settle import settle_app

    return group_info("settle", settle_app)


@cache  # registers ``info`` once
def _contract() -> TyperInfo:
    from csms.cli.contract import contract_app, contract_info

    contract_app.command("info")(contract_info)
    return group_info("contract", contract_app)


def _drivers() -> TyperInfo:
    from csms.cli.parties import drivers_app

    return group_info("drivers", drivers_app)


@cache  # registers ``entries`` once
def _wallet() -> TyperInfo:
    from csms.cli.parties import wallet_app
    from csms.cli.wallet_entries import wallet_entries

    wallet_app.command("entries")(wallet_entries)
    return group_info("wallet", wallet_app)


def _certificates() -> TyperInfo:
    from csms.cli.certificates import certificates_app

    return group_info("certificates", certificates_app)


def _ca() -> TyperInfo:
    from csms.cli.certificates import ca_app

    return group_info("ca", ca_app)


def _reservations() -> TyperInfo:
    from csms.cli.reservations import reservations_app

    return group_info("reservations", reservations_app)


def _firmware() -> TyperInfo:
    from csms.cli.firmware import firmware_app

    return group_info("firmware", firmware_app)


def _logs() -> TyperInfo:
    from csms.cli.logs import logs_app

    return group_info("logs", logs_app)


# the top-level commands in the order of the listing (Typer's: the commands, then the
# groups), each with the first paragraph of its help (a test checks them against the
# built commands)
COMMANDS: dict[str, Entry] = {
    "serve": Entry("Accept stations at ws://HOST:PORT/<station_id> (OCPP 1.6-J and 2.0.1).",
                   _serve),
    "receipt": Entry("Write the receipt of a settled session (JSON).", _receipt),
    "verify": Entry("Check receipts against the chain alone: exit 0 VALID, 1 INVALID,"
                    " 3 UNVERIFIED (the chain could not be reached, which contract is the"
                    " real one is not known, the settle block is not deep enough, or the"
                    " node is the one the receipt names).", _verify),
    "audit": Entry("Show the audit log: each operator action (a command, a tariff, a tag,"
                   " a login), who made it, its target, what was asked and how it ended.",
                   _audit),
    "demo": Entry("Run the whole story: charge, store, price, anchor, verify a receipt,"
                  " catch a forgery.", _demo),
    "stations": Entry("Register and list charging stations.", _stations),
    "tags": Entry("Manage id tags (RFID cards, tokens).", _tags),
    "sessions": Entry("Charging sessions.", _sessions),
    "remote": Entry("Live commands to connected stations (needs a running `csms serve`).",
                    _remote),
    "tariffs": Entry("Prices per station (versioned).", _tariffs),
    "settle": Entry("Batch, anchor and settle completed sessions.", _settle),
    "contract": Entry("The settlement contract.", _contract),
    "drivers": Entry("Drivers: cards linked to escrows on chain.", _drivers),
    "wallet": Entry("A driver's or a host's own key on chain: escrow, terms, cards,"
                    " app sessions, stations, earnings.", _wallet),
    "certificates": Entry("Station certificates: install, list and delete roots on a"
                          " station (live), renew, and what the CA issued.", _certificates),
    "ca": Entry("The CA that signs stations' certificate requests (security profile 3).",
                _ca),
    "reservations": Entry("Reservations of connectors (made with csms remote reserve).",
                          _reservations),
    "firmware": Entry("Firmware images and updates of stations.", _firmware),
    "logs": Entry("Logs uploaded by stations (diagnostics, security log).", _logs),
}


class _Root(LazyGroup):
    entries = COMMANDS


app = typer.Typer(
    name="csms",
    help="voltledger central system: OCPP 1.6-J / 2.0.1 with on-chain settlement.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode=None,
    cls=_Root,
)


@app.callback()
def _root(config: Annotated[str | None, setting_option(
    "config", "Settings file (TOML, setting names as keys): below flags and CSMS_*"
    " variables, above the defaults", "--config", default="none")] = None) -> None:
    invocation.config = config


def main(argv: list[str] | None = None) -> None:
    """Entry point: usage errors print one line on stderr and exit 2."""
    # a NUL byte no path, setting or id may hold (the OS passes none in a process's
    # arguments; a caller of main may)
    if any("\x00" in arg for arg in argv or ()):
        err_console.print("error: an argument holds a NUL byte", markup=False)
        sys.exit(2)
    try:
        result = app(args=argv, standalone_mode=False)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        err_console.print("aborted", markup=False)
        sys.exit(130)
    except typer.TyperException as exc:  # usage errors (bad option, bad value...)
        if type(exc).__name__ == "NoArgsIsHelpError":
            print(exc.format_message(), file=sys.stderr)
            sys.exit(2)
        ctx = getattr(exc, "ctx", None)
        hint = f" (see: {ctx.command_path} --help)" if ctx is not None else ""
        from csms.logsafe import visible

        message = visible(" ".join(exc.format_message().split()))
        err_console.print(f"error: {message}{hint}", markup=False, highlight=False)
        sys.exit(2)
    except OSError as exc:  # a file or a peer no command's own check caught: one line
        from csms.logsafe import visible

        said = (f"{exc.filename}: {exc.strerror}" if exc.filename and exc.strerror
                else (str(exc).strip().splitlines() or [type(exc).__name__])[0])
        err_console.print(f"error: {visible(said)}", markup=False, highlight=False)
        sys.exit(1)
    sys.exit(result if isinstance(result, int) else 0)
