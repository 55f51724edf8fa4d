"""The ``csms`` command (Typer + Rich): assembles the command groups of this package.

One module per group or command: ``serve``, ``stations``, ``tags``, ``sessions``,
``remote``, ``tariffs``, ``settle``, ``contract``, ``receipt``, ``verify``, ``parties``
(``drivers`` and ``wallet``) and ``demo``; ``common`` holds their shared options and output.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from csms.cli import audit as _audit
from csms.cli import certificates as _certificates
from csms.cli import contract as _contract
from csms.cli import demo as _demo
from csms.cli import firmware as _firmware
from csms.cli import logs as _logs
from csms.cli import parties as _parties
from csms.cli import receipt as _receipt
from csms.cli import remote as _remote
from csms.cli import remote_more as _remote_more
from csms.cli import reservations as _reservations
from csms.cli import serve as _serve
from csms.cli import sessions as _sessions
from csms.cli import settle as _settle
from csms.cli import station_reports as _station_reports
from csms.cli import stations as _stations
from csms.cli import tags as _tags
from csms.cli import tariffs as _tariffs
from csms.cli import variables as _variables
from csms.cli import verify as _verify
from csms.cli.common import err_console, invocation, setting_option

__all__ = ["app", "main"]

app = typer.Typer(
    name="csms",
    help="voltledger central system: OCPP 1.6-J / 2.0.1 with on-chain settlement.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode=None,
)


@app.callback()
def _root(config: Annotated[str | None, setting_option(
    "config", "Settings file (TOML, setting names as keys): below flags and CSMS_*"
    " variables, above the defaults", "--config", default="none")] = None) -> None:
    invocation.config = config


app.command("serve")(_serve.serve)
app.add_typer(_stations.stations_app, name="stations")
app.add_typer(_tags.tags_app, name="tags")
app.add_typer(_sessions.sessions_app, name="sessions")
app.add_typer(_remote.remote_app, name="remote")
assert _remote_more.remote_app is _remote.remote_app  # more remote commands, registered
assert _station_reports.stations_app is _stations.stations_app  # stations reports...
_stations.stations_app.command("set-password")(_remote.set_password)
app.add_typer(_tariffs.tariffs_app, name="tariffs")
app.add_typer(_settle.settle_app, name="settle")
app.add_typer(_contract.contract_app, name="contract")
app.add_typer(_parties.drivers_app, name="drivers")
app.add_typer(_parties.wallet_app, name="wallet")
_stations.stations_app.command("set-host")(_parties.set_host)
_contract.contract_app.command("info")(_contract.contract_info)
app.command("receipt")(_receipt.receipt)
app.command("verify")(_verify.verify)
app.command("audit")(_audit.audit)
app.command("demo")(_demo.demo)
app.add_typer(_certificates.certificates_app, name="certificates")
app.add_typer(_certificates.ca_app, name="ca")
_stations.stations_app.command("variables")(_variables.station_variables)
_stations.stations_app.command("monitors")(_variables.station_monitors)
_stations.stations_app.command("events")(_variables.station_events)
for _name, _fn in (("get-base-report", _variables.get_base_report),
                   ("get-report", _variables.get_report),
                   ("set-monitoring", _variables.set_monitoring),
                   ("clear-monitoring", _variables.clear_monitoring),
                   ("set-monitoring-base", _variables.set_monitoring_base),
                   ("set-monitoring-level", _variables.set_monitoring_level),
                   ("get-monitoring-report", _variables.get_monitoring_report)):
    _remote.remote_app.command(_name)(_fn)
app.add_typer(_reservations.reservations_app, name="reservations")
app.add_typer(_firmware.firmware_app, name="firmware")
app.add_typer(_logs.logs_app, name="logs")


def main(argv: list[str] | None = None) -> None:
    """Entry point: usage errors print one line on stderr and exit 2."""
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
        message = " ".join(exc.format_message().split())
        err_console.print(f"error: {message}{hint}", markup=False, highlight=False)
        sys.exit(2)
    sys.exit(result if isinstance(result, int) else 0)
