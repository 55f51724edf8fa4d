"""The 2.0.1 device model on the command line: ``csms stations variables / monitors /
events`` (what the database holds) and the ``csms remote`` commands that fill it
(reports) or change it (monitors)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from csms.cli.common import (
    DataDirOption,
    DbOption,
    JsonOption,
    fail,
    in_read,
    load_settings,
    print_json,
    print_table,
    run,
)
from csms.cli.remote import AdminHost, AdminPort, Station, Timeout, _command, target

if TYPE_CHECKING:
    from csms.service.ports import Tx

__all__ = [
    "clear_monitoring", "get_base_report", "get_monitoring_report", "get_report",
    "set_monitoring", "set_monitoring_base", "set_monitoring_level", "station_events",
    "station_monitors", "station_variables",
]

REPORT_BASES = ("FullInventory", "ConfigurationInventory", "SummaryInventory")
MONITOR_TYPES = ("UpperThreshold", "LowerThreshold", "Delta", "Periodic",
                 "PeriodicClockAligned")
MONITORING_BASES = ("All", "FactoryDefault", "HardWiredOnly")


async def _known(tx: Tx, station_id: str) -> bool:
    return await tx.get_station(station_id) is not None


def station_variables(
    station_id: Annotated[str, typer.Argument(help="The station's id")],
    component: Annotated[str | None, typer.Option(
        help="Only this component [default: all]")] = None,
    json: JsonOption = False, db: DbOption = None, data_dir: DataDirOption = None,
) -> None:
    """A station's device model: a 2.0.1 station's as its reports described it (csms remote
    get-base-report fills it), a 1.6 station's configuration keys under component OCPP16
    (csms remote get-config fills it; a key it did not know shows as unknown)."""

    async def work(tx: Tx) -> list[dict[str, Any]] | None:
        if not await _known(tx, station_id):
            return None
        return await tx.device_variables(station_id, component)

    rows = run(in_read(load_settings(db=db, data_dir=data_dir), work))
    if rows is None:
        fail(f"no station {station_id!r}")
    if json:
        print_json(rows)
        return
    print_table(f"Device model of {station_id}",
                ["variable", "value", "mutability", "type", "unit", "min", "max", "values"],
                [[r["var_key"], r["value"],
                  "unknown key" if r.get("unknown") else r["mutability"], r["data_type"],
                  r["unit"],
                  r["min_limit"], r["max_limit"], r["values_list"]] for r in rows],
                priority=["variable", "value", "mutability", "type", "unit", "min", "max",
                          "values"])


def station_monitors(
    station_id: Annotated[str, typer.Argument(help="The station's id")],
    json: JsonOption = False, db: DbOption = None, data_dir: DataDirOption = None,
) -> None:
    """A 2.0.1 station's variable monitors (set here, or reported by it)."""

    async def work(tx: Tx) -> list[dict[str, Any]] | None:
        if not await _known(tx, station_id):
            return None
        return await tx.list_monitors(station_id)

    rows = run(in_read(load_settings(db=db, data_dir=data_dir), work))
    if rows is None:
        fail(f"no station {station_id!r}")
    if json:
        print_json(rows)
        return
    print_table(f"Monitors of {station_id}", ["id", "variable", "type", "value", "severity"],
                [[r["monitor_id"], r["var_key"], r["type"], r["value"], r["severity"]]
                 for r in rows])


def station_events(
    station_id: Annotated[str, typer.Argument(help="The station's id")],
    limit: Annotated[int, typer.Option(min=1, max=10000, help="The newest this many")] = 100,
    json: JsonOption = False, db: DbOption = None, data_dir: DataDirOption = None,
) -> None:
    """Events a 2.0.1 station notified (NotifyEvent: monitors tripped, problems), newest
    first."""

    async def work(tx: Tx) -> list[dict[str, Any]] | None:
        if not await _known(tx, station_id):
            return None
        return await tx.list_station_events(station_id, "notify_event", limit)

    rows = run(in_read(load_settings(db=db, data_dir=data_dir), work))
    if rows is None:
        fail(f"no station {station_id!r}")
    events = [{"received_at": r["ts"], **e} for r in rows
              for e in (r["payload"].get("eventData") or [])]
    if json:
        print_json(events)
        return
    print_table(f"Events of {station_id}",
                ["received", "event", "trigger", "component", "variable", "value", "monitor"],
                [[e["received_at"], e.get("eventId"), e.get("trigger"),
                  (e.get("component") or {}).get("name"), (e.get("variable") or {}).get("name"),
                  e.get("actualValue"), e.get("variableMonitoringId")] for e in events])


def get_base_report(
    station: Station,
    report_base: Annotated[str, typer.Option(help=f"One of {', '.join(REPORT_BASES)}")]
    = "FullInventory",
    json: JsonOption = False, timeout: Timeout = 30, admin_host: AdminHost = None,
    admin_port: AdminPort = None, data_dir: DataDirOption = None,
) -> None:
    """Ask a 2.0.1 station for a base report (GetBaseReport); its NotifyReport parts fill
    the device model (csms stations variables)."""
    if report_base not in REPORT_BASES:
        raise typer.BadParameter(f"one of {', '.join(REPORT_BASES)}",
                                 param_hint="--report-base")
    _command(station, "get-base-report", {"report_base": report_base},
             target(json, timeout, admin_host, admin_port, data_dir))


def get_report(
    station: Station,
    variables: Annotated[list[str] | None, typer.Argument(
        help="COMPONENT or COMPONENT.VARIABLE ... [default: all]", show_default=False)]
    = None,
    criteria: Annotated[list[str] | None, typer.Option(
        "--criterion", help="Active, Available, Enabled or Problem (repeat)",
        show_default=False)] = None,
    json: JsonOption = False, timeout: Timeout = 30, admin_host: AdminHost = None,
    admin_port: AdminPort = None, data_dir: DataDirOption = None,
) -> None:
    """Ask a 2.0.1 station for a report of some components or variables (GetReport)."""
    _command(station, "get-report", {"variables": variables or [], "criteria": criteria or []},
             target(json, timeout, admin_host, admin_port, data_dir))


def set_monitoring(
    station: Station,
    variable: Annotated[str, typer.Argument(help="COMPONENT.VARIABLE to watch")],
    type: Annotated[str, typer.Option("--type", help=f"One of {', '.join(MONITOR_TYPES)}")],
    value: Annotated[float, typer.Option(help="Threshold, delta or interval")],
    severity: Annotated[int, typer.Option(min=0, max=9, help="0 danger ... 9 debug")] = 5,
    transaction: Annotated[bool, typer.Option(
        "--transaction/--always", help="Only during a transaction")] = False,
    monitor_id: Annotated[int | None, typer.Option(
        "--id", help="Replace this monitor [default: a new one]")] = None,
    json: JsonOption = False, timeout: Timeout = 30, admin_host: AdminHost = None,
    admin_port: AdminPort = None, data_dir: DataDirOption = None,
) -> None:
    """Set a variable monitor on a 2.0.1 station (SetVariableMonitoring)."""
    if type not in MONITOR_TYPES:
        raise typer.BadParameter(f"one of {', '.join(MONITOR_TYPES)}", param_hint="--type")
    monitor: dict[str, Any] = {"variable": variable, "type": type, "value": value,
                               "severity": severity, "transaction": transaction}
    if monitor_id is not None:
        monitor["id"] = monitor_id
    _command(station, "set-monitoring", {"monitors": [monitor]},
             target(json, timeout, admin_host, admin_port, data_dir))


def clear_monitoring(
    station: Station,
    ids: Annotated[list[int], typer.Argument(help="Monitor ids")],
    json: JsonOption = False, timeout: Timeout = 30, admin_host: AdminHost = None,
    admin_port: AdminPort = None, data_dir: DataDirOption = None,
) -> None:
    """Remove variable monitors from a 2.0.1 station (ClearVariableMonitoring)."""
    _command(station, "clear-monitoring", {"ids": ids},
             target(json, timeout, admin_host, admin_port, data_dir))


def set_monitoring_base(
    station: Station,
    base: Annotated[str, typer.Argument(help=f"One of {', '.join(MONITORING_BASES)}")],
    json: JsonOption = False, timeout: Timeout = 30, admin_host: AdminHost = None,
    admin_port: AdminPort = None, data_dir: DataDirOption = None,
) -> None:
    """Which monitors a 2.0.1 station keeps (SetMonitoringBase)."""
    if base not in MONITORING_BASES:
        raise typer.BadParameter(f"one of {', '.join(MONITORING_BASES)}", param_hint="base")
    _command(station, "set-monitoring-base", {"base": base},
             target(json, timeout, admin_host, admin_port, data_dir))


def set_monitoring_level(
    station: Station,
    severity: Annotated[int, typer.Argument(min=0, max=9, help="Report events up to this"
                                            " severity (0 danger ... 9 debug)")],
    json: JsonOption = False, timeout: Timeout = 30, admin_host: AdminHost = None,
    admin_port: AdminPort = None, data_dir: DataDirOption = None,
) -> None:
    """The least severe events a 2.0.1 station reports (SetMonitoringLevel)."""
    _command(station, "set-monitoring-level", {"severity": severity},
             target(json, timeout, admin_host, admin_port, data_dir))


def get_monitoring_report(
    station: Station,
    variables: Annotated[list[str] | None, typer.Argument(
        help="COMPONENT or COMPONENT.VARIABLE ... [default: all]", show_default=False)]
    = None,
    json: JsonOption = False, timeout: Timeout = 30, admin_host: AdminHost = None,
    admin_port: AdminPort = None, data_dir: DataDirOption = None,
) -> None:
    """Ask a 2.0.1 station for its monitors (GetMonitoringReport); NotifyMonitoringReport
    fills csms stations monitors."""
    _command(station, "get-monitoring-report", {"variables": variables or []},
             target(json, timeout, admin_host, admin_port, data_dir))
