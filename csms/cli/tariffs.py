"""``csms tariffs``: prices per station, versioned (a new version per change)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Annotated, Any

import typer

from csms.cli.common import (
    CliError,
    DataDirOption,
    DbOption,
    JsonOption,
    actor,
    group,
    in_read,
    in_unit,
    load_settings,
    print_json,
    print_table,
    run,
)

if TYPE_CHECKING:
    from csms.service.ports import Tx

__all__ = ["tariffs_app"]

tariffs_app = group("Prices per station (versioned).")


def _decimal(text: str, name: str) -> Decimal:
    from csms.domain.tariff import parse_price

    try:
        return parse_price(text)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint=name) from None


@tariffs_app.command("set")
def tariffs_set(
    station: Annotated[str, typer.Argument(help="Station id, or '*' for the default")],
    per_kwh: Annotated[str, typer.Option(help="Price per kWh in major units, e.g. 0.39")],
    per_minute: Annotated[str, typer.Option(help="Price per minute")] = "0",
    session_fee: Annotated[str, typer.Option(help="Fixed fee per session")] = "0",
    currency: Annotated[str | None, typer.Option(
        help="ISO 4217 code or token symbol; only the settlement's is taken"
        " [default: CSMS_BILLING_CURRENCY, EUR]")] = None,
    decimals: Annotated[int | None, typer.Option(
        min=0, max=18, help="Minor-unit decimals; only the settlement's are taken"
        " [default: CSMS_BILLING_DECIMALS, 2]")] = None,
    valid_from: Annotated[str | None, typer.Option(help="ISO 8601 [default: now]")] = None,
    db: DbOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Set a station's tariff: a new version, valid from now (or --valid-from).

    Refused when it would reprice a session already stored: --valid-from may not be
    before the start of a session that had a tariff (sessions held for having none are
    priced by it), nor more than time_future_seconds before now while a tariff is in
    force for the station (it would price sessions an offline station reports later).
    Refused in a currency or decimals other than the settlement's billing
    unit (billing_currency, billing_decimals): its prices would be charged in the wrong
    unit."""
    from csms.domain.tariff import Tariff
    from csms.service.tariffs import TariffRefused, TariffUnitRefused, set_tariff

    prices = {n: _decimal(v, f"--{n.replace('_', '-')}") for n, v in
              (("per_kwh", per_kwh), ("per_minute", per_minute), ("session_fee", session_fee))}
    settings = load_settings(db=db, data_dir=data_dir)
    billing = settings.billing_unit
    currency = billing.currency if currency is None else currency
    decimals = billing.decimals if decimals is None else decimals
    if not currency.isalnum() or len(currency) > 10:
        raise typer.BadParameter("a currency code of letters and digits", param_hint="--currency")
    try:
        start = datetime.fromisoformat(valid_from) if valid_from else datetime.now(UTC)
    except ValueError:
        raise typer.BadParameter(f"not an ISO 8601 time: {valid_from!r}") from None
    if start.tzinfo is None:
        start = start.replace(tzinfo=UTC)
    try:
        start.astimezone(UTC)
    except OverflowError:
        raise typer.BadParameter(f"{valid_from!r} is beyond the calendar (year 1 to 9999)"
                                 " in UTC", param_hint="--valid-from") from None

    async def work(tx: Tx) -> int:
        if station != "*" and await tx.get_station(station) is None:
            raise CliError(f"no station {station!r} (use '*' for every station)")
        try:
            return await set_tariff(tx, Tariff(
                station, prices["per_kwh"], currency.upper(), decimals, prices["per_minute"],
                prices["session_fee"], valid_from=start), actor(), billing=billing,
                clock_tolerance=timedelta(seconds=settings.time_future_seconds))
        except TariffRefused as exc:
            raise CliError(f"{exc} (--valid-from: default now)") from None
        except TariffUnitRefused as exc:
            raise CliError(str(exc)) from None

    version = run(in_unit(settings, work))
    code = currency.upper()
    typer.echo(f"tariff for {station}: version {version}, {prices['per_kwh']} {code}/kWh,"
               f" {prices['per_minute']} {code}/min, session fee {prices['session_fee']}"
               f" {code}, valid from {start.isoformat(timespec='seconds')}")


@tariffs_app.command("list")
def tariffs_list(json_: JsonOption = False, db: DbOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """List tariffs (every version)."""

    async def work(tx: Tx) -> list[dict[str, Any]]:
        return [{"station_id": t.station_id, "version": t.version, "per_kwh": str(t.per_kwh),
                 "per_minute": str(t.per_minute), "session_fee": str(t.session_fee),
                 "currency": t.currency, "decimals": t.decimals,
                 "valid_from": t.valid_from.isoformat() if t.valid_from else None}
                for t in await tx.list_tariffs()]

    rows = run(in_read(load_settings(db=db, data_dir=data_dir), work))
    if json_:
        print_json(rows)
        return
    print_table("Tariffs", ["station", "version", "per kWh", "per min", "fee", "currency",
                            "valid from"],
                [[r["station_id"], r["version"], r["per_kwh"], r["per_minute"],
                  r["session_fee"], r["currency"], r["valid_from"]] for r in rows])

