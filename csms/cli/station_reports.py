"""``csms stations reports``, ``csms stations running-cost`` and ``csms stations pnc``:
what 2.0.1 stations reported about themselves (display messages, charging profiles and
limits, the EV's charging needs and schedule, customer information), whether a 1.6
station shows the running cost the OCA DataTransfer convention sends, and whether it takes
ISO 15118 Plug & Charge over DataTransfer."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any

import typer

from csms.cli.common import (
    CliError,
    DataDirOption,
    DbOption,
    JsonOption,
    actor,
    in_read,
    in_unit,
    load_settings,
    print_json,
    print_table,
    run,
)
from csms.cli.stations import stations_app

if TYPE_CHECKING:
    from csms.service.ports import Tx

__all__ = ["stations_app"]

# the kinds of csms.service.driver.REPORT_KINDS, named here so that the command's help does
# not import the service layer at start-up (a test keeps the two equal)
REPORT_KINDS = ("display_messages", "charging_profiles", "charging_limit",
                "charging_limit_cleared", "ev_charging_needs", "ev_charging_schedule",
                "customer_information")


@stations_app.command("reports")
def stations_reports(
    station_id: Annotated[str, typer.Argument(help="The station's id")],
    kind: Annotated[str | None, typer.Option(
        help=f"Only one kind: {', '.join(REPORT_KINDS)} [default: every kind]",
        show_default=False)] = None,
    limit: Annotated[int, typer.Option(min=1, max=10000, help="At most this many per kind")]
    = 50,
    json: JsonOption = False, db: DbOption = None, data_dir: DataDirOption = None,
) -> None:
    """Show what a station reported: display messages, charging profiles and limits, EV
    charging needs and schedules, customer information (parts assembled per request)."""
    from csms.service.driver import customer_reports

    if kind is not None and kind not in REPORT_KINDS:
        raise typer.BadParameter(f"one of {', '.join(REPORT_KINDS)}", param_hint="--kind")
    kinds = [kind] if kind else list(REPORT_KINDS)

    async def work(tx: Tx) -> dict[str, list[dict[str, Any]]]:
        if await tx.get_station(station_id) is None:
            raise CliError(f"no station {station_id!r}")
        return {k: await tx.list_station_events(station_id, k, limit) for k in kinds}

    found = run(in_read(load_settings(db=db, data_dir=data_dir), work))
    out: dict[str, Any] = {
        k: [{"ts": e["ts"], "payload": e["payload"]} for e in rows]
        for k, rows in found.items() if k != "customer_information"}
    if "customer_information" in found:
        out["customer_information"] = customer_reports(found["customer_information"])
    if json:
        print_json(out)
        return
    for k, rows in out.items():
        if k == "customer_information":
            print_table("customer_information", ["request", "parts", "complete", "data"],
                        [[r["request_id"], r["parts"], r["complete"], r["data"][:200]]
                         for r in rows])
        else:
            print_table(k, ["time", "report"], [[r["ts"], str(r["payload"])[:200]]
                                                for r in rows])


@stations_app.command("running-cost")
def stations_running_cost(
    station_id: Annotated[str, typer.Argument(help="The station's id")],
    on: Annotated[bool, typer.Option(
        "--on/--off", help="The 1.6 station shows the running cost sent by the OCA"
        " DataTransfer convention (vendorId org.openchargealliance.costmsg)")] = True,
    db: DbOption = None, data_dir: DataDirOption = None,
) -> None:
    """Say whether a 1.6 station announced the running-cost DataTransfer (e.g. its
    CustomDisplayCostAndPrice configuration key is true); only then does
    `csms remote cost-updated` send it one."""
    from csms.service.driver import RUNNING_COST_OPTION

    async def work(tx: Tx) -> None:
        if await tx.get_station(station_id) is None:
            raise CliError(f"no station {station_id!r}")
        await tx.set_station_option(station_id, RUNNING_COST_OPTION, "on" if on else None)
        await tx.add_audit(actor(), "stations.running-cost", station_id, {"on": on},
                           {"running_cost": "on" if on else "off"}, True, datetime.now(UTC))

    run(in_unit(load_settings(db=db, data_dir=data_dir), work))
    typer.echo(f"{station_id}: running cost {'on' if on else 'off'}")


PNC_STATES = ("on", "off", "auto")


@stations_app.command("pnc")
def stations_pnc(
    station_id: Annotated[str, typer.Argument(help="The station's id")],
    state: Annotated[str, typer.Argument(
        help="on, off, or auto: as the station's configuration key ISO15118PnCEnabled says")],
    db: DbOption = None, data_dir: DataDirOption = None,
) -> None:
    """Say whether a 1.6 station takes ISO 15118 Plug & Charge over DataTransfer (the OCA
    application note): the certificate commands then reach it as 2.0.1 messages in a
    DataTransfer. By default (auto) it does when its configuration (csms remote get-config)
    has the key ISO15118PnCEnabled."""
    from csms.service.device_model import PNC_OPTION

    if state not in PNC_STATES:
        raise typer.BadParameter(f"one of {', '.join(PNC_STATES)}", param_hint="STATE")

    async def work(tx: Tx) -> None:
        if await tx.get_station(station_id) is None:
            raise CliError(f"no station {station_id!r}")
        await tx.set_station_option(station_id, PNC_OPTION, None if state == "auto" else state)
        await tx.add_audit(actor(), "stations.pnc", station_id, {"state": state},
                           {"pnc": state}, True, datetime.now(UTC))

    run(in_unit(load_settings(db=db, data_dir=data_dir), work))
    typer.echo(f"{station_id}: Plug & Charge over 1.6 {state}")
