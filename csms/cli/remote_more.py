"""More ``csms remote ...`` commands: the authorization cache, composite schedules and
charging profiles, transaction status, customer information, network profiles, display
messages and the driver's running cost."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from csms.cli.common import MAX_ID, DataDirOption, JsonOption
from csms.cli.remote import (
    AdminHost,
    AdminPort,
    Station,
    Timeout,
    _command,
    remote_app,
    target,
)

__all__ = ["remote_app"]

MessageId = Annotated[int, typer.Option("--id", min=0, help="The display message's id")]
Purpose = ("ChargingStationExternalConstraints", "ChargingStationMaxProfile",
           "TxDefaultProfile", "TxProfile")
Priorities = ("AlwaysFront", "InFront", "NormalCycle")
States = ("Charging", "Faulted", "Idle", "Unavailable")


def _one_of(value: str | None, allowed: tuple[str, ...], hint: str) -> str | None:
    if value is not None and value not in allowed:
        raise typer.BadParameter(f"one of {', '.join(allowed)}", param_hint=hint)
    return value


@remote_app.command("clear-cache")
def clear_cache(
    station: Station, json: JsonOption = False, timeout: Timeout = 30,
    admin_host: AdminHost = None, admin_port: AdminPort = None, data_dir: DataDirOption = None,
) -> None:
    """Empty a station's authorization cache (ClearCache)."""
    _command(station, "clear-cache", {}, target(json, timeout, admin_host, admin_port, data_dir))


@remote_app.command("get-composite-schedule")
def get_composite_schedule(
    station: Station,
    connector: Annotated[int, typer.Option(min=0, help="Connector (EVSE in 2.0.1); 0 = the"
                                                    " whole station")] = 0,
    duration: Annotated[int, typer.Option(min=1, help="Seconds from now")] = 3600,
    unit: Annotated[str | None, typer.Option(
        help="W or A [default: the station's choice]", show_default=False)] = None,
    json: JsonOption = False, timeout: Timeout = 30, admin_host: AdminHost = None,
    admin_port: AdminPort = None, data_dir: DataDirOption = None,
) -> None:
    """Ask what limit a station will apply (GetCompositeSchedule)."""
    args: dict[str, Any] = {"connector": connector, "duration": duration}
    if unit is not None:
        if unit.upper() not in ("W", "A"):
            raise typer.BadParameter("W or A", param_hint="--unit")
        args["unit"] = unit.upper()
    _command(station, "get-composite-schedule", args,
             target(json, timeout, admin_host, admin_port, data_dir))


@remote_app.command("get-charging-profiles")
def get_charging_profiles(
    station: Station,
    connector: Annotated[int | None, typer.Option(
        min=0, help="Only this EVSE [default: every one]", show_default=False)] = None,
    purpose: Annotated[str | None, typer.Option(
        help="Only this purpose, e.g. TxDefaultProfile [default: every one]",
        show_default=False)] = None,
    profile_id: Annotated[int | None, typer.Option(
        min=0, help="Only this profile [default: every one]", show_default=False)] = None,
    json: JsonOption = False, timeout: Timeout = 30, admin_host: AdminHost = None,
    admin_port: AdminPort = None, data_dir: DataDirOption = None,
) -> None:
    """Ask a 2.0.1 station for its charging profiles (GetChargingProfiles); they arrive in
    ReportChargingProfiles: csms stations reports STATION --kind charging_profiles."""
    args: dict[str, Any] = {}
    if connector is not None:
        args["connector"] = connector
    if _one_of(purpose, Purpose, "--purpose"):
        args["purpose"] = purpose
    if profile_id is not None:
        args["profile_id"] = profile_id
    _command(station, "get-charging-profiles", args,
             target(json, timeout, admin_host, admin_port, data_dir))


@remote_app.command("get-transaction-status")
def get_transaction_status(
    station: Station,
    transaction: Annotated[str | None, typer.Argument(
        help="The station's transaction id [default: none, only the message queue]",
        show_default=False)] = None,
    json: JsonOption = False, timeout: Timeout = 30, admin_host: AdminHost = None,
    admin_port: AdminPort = None, data_dir: DataDirOption = None,
) -> None:
    """Ask a 2.0.1 station whether transaction messages are queued, and whether a
    transaction is still going on (GetTransactionStatus)."""
    _command(station, "get-transaction-status",
             {} if transaction is None else {"transaction_id": transaction},
             target(json, timeout, admin_host, admin_port, data_dir))


@remote_app.command("customer-information")
def customer_information(
    station: Station,
    tag: Annotated[str | None, typer.Option(help="The customer's id tag",
                                            show_default=False)] = None,
    customer: Annotated[str | None, typer.Option(help="A customer identifier instead",
                                                 show_default=False)] = None,
    report: Annotated[bool, typer.Option("--report/--no-report",
                                         help="Ask for what the station keeps")] = True,
    clear: Annotated[bool, typer.Option("--clear/--keep", help="Make it forget them")]
    = False,
    json: JsonOption = False, timeout: Timeout = 30, admin_host: AdminHost = None,
    admin_port: AdminPort = None, data_dir: DataDirOption = None,
) -> None:
    """Ask a 2.0.1 station what it keeps about a customer, or make it forget
    (CustomerInformation); the report arrives in NotifyCustomerInformation:
    csms stations reports STATION --kind customer_information."""
    if (tag is None) == (customer is None):
        raise typer.BadParameter("give --tag or --customer", param_hint="--tag")
    if not report and not clear:
        raise typer.BadParameter("ask for a report, a clear, or both", param_hint="--report")
    args: dict[str, Any] = {"report": report, "clear": clear}
    args.update({"tag": tag} if tag is not None else {"customer": customer})
    _command(station, "customer-information", args,
             target(json, timeout, admin_host, admin_port, data_dir))


@remote_app.command("set-network-profile")
def set_network_profile(
    station: Station,
    url: Annotated[str, typer.Option(help="The central system's ws:// or wss:// address")],
    slot: Annotated[int, typer.Option(min=0, help="The configuration slot")] = 1,
    security_profile: Annotated[int | None, typer.Option(
        min=0, max=3, help="Security profile [default: 2 for wss://, 1 for ws://]",
        show_default=False)] = None,
    apn: Annotated[str | None, typer.Option(help="A cellular access point name",
                                            show_default=False)] = None,
    apn_user: Annotated[str | None, typer.Option(help="Its user name",
                                                 show_default=False)] = None,
    apn_password: Annotated[str | None, typer.Option(
        help="Its password (never logged nor audited)", show_default=False)] = None,
    json: JsonOption = False, timeout: Timeout = 30, admin_host: AdminHost = None,
    admin_port: AdminPort = None, data_dir: DataDirOption = None,
) -> None:
    """Give a 2.0.1 station a network connection profile (SetNetworkProfile)."""
    if not url.startswith(("ws://", "wss://")):
        raise typer.BadParameter("a ws:// or wss:// address", param_hint="--url")
    args: dict[str, Any] = {"url": url, "slot": slot}
    for key, value in (("security_profile", security_profile), ("apn", apn),
                       ("apn_user", apn_user), ("apn_password", apn_password)):
        if value is not None:
            args[key] = value
    _command(station, "set-network-profile", args,
             target(json, timeout, admin_host, admin_port, data_dir))


@remote_app.command("set-display-message")
def set_display_message(
    station: Station,
    text: Annotated[str, typer.Argument(help="The message (<= 512 characters)")],
    message_id: MessageId = 1,
    language: Annotated[str | None, typer.Option(help="RFC 5646 language, e.g. en, de-DE",
                                                 show_default=False)] = None,
    priority: Annotated[str, typer.Option(help="AlwaysFront, InFront or NormalCycle")]
    = "NormalCycle",
    state: Annotated[str | None, typer.Option(
        help="Only while Charging, Faulted, Idle or Unavailable [default: always]",
        show_default=False)] = None,
    transaction: Annotated[str | None, typer.Option(
        help="Only during this transaction", show_default=False)] = None,
    json: JsonOption = False, timeout: Timeout = 30, admin_host: AdminHost = None,
    admin_port: AdminPort = None, data_dir: DataDirOption = None,
) -> None:
    """Show a message on a 2.0.1 station's display (SetDisplayMessage)."""
    args: dict[str, Any] = {"text": text, "message_id": message_id,
                            "priority": _one_of(priority, Priorities, "--priority")}
    if language:
        args["language"] = language
    if _one_of(state, States, "--state"):
        args["state"] = state
    if transaction:
        args["transaction_id"] = transaction
    _command(station, "set-display-message", args,
             target(json, timeout, admin_host, admin_port, data_dir))


@remote_app.command("get-display-messages")
def get_display_messages(
    station: Station,
    message_id: Annotated[int | None, typer.Option(
        "--id", min=0, help="Only this message [default: every one]",
        show_default=False)] = None,
    json: JsonOption = False, timeout: Timeout = 30, admin_host: AdminHost = None,
    admin_port: AdminPort = None, data_dir: DataDirOption = None,
) -> None:
    """Ask a 2.0.1 station for its display messages (GetDisplayMessages); they arrive in
    NotifyDisplayMessages: csms stations reports STATION --kind display_messages."""
    _command(station, "get-display-messages",
             {} if message_id is None else {"message_id": message_id},
             target(json, timeout, admin_host, admin_port, data_dir))


@remote_app.command("clear-display-message")
def clear_display_message(
    station: Station, message_id: MessageId, json: JsonOption = False,
    timeout: Timeout = 30, admin_host: AdminHost = None, admin_port: AdminPort = None,
    data_dir: DataDirOption = None,
) -> None:
    """Remove a message from a 2.0.1 station's display (ClearDisplayMessage)."""
    _command(station, "clear-display-message", {"message_id": message_id},
             target(json, timeout, admin_host, admin_port, data_dir))


@remote_app.command("cost-updated")
def cost_updated(
    station: Station,
    session: Annotated[int | None, typer.Argument(
        min=1, max=MAX_ID, help="Session id [default: the active one]")]
    = None,
    json: JsonOption = False, timeout: Timeout = 30, admin_host: AdminHost = None,
    admin_port: AdminPort = None, data_dir: DataDirOption = None,
) -> None:
    """Send a session's cost so far, from its tariff, to the station's display (2.0.1
    CostUpdated; 1.6: the OCA RunningCost DataTransfer, to stations that announced it)."""
    _command(station, "cost-updated", {} if session is None else {"session": session},
             target(json, timeout, admin_host, admin_port, data_dir))
