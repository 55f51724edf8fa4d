"""``csms stations``: the station registry (add, list, show, maximum power, meter keys,
per station or per EVSE).

``set-password`` (live, through the admin API) and ``set-host`` (checked on chain) are
attached to this group by ``csms.cli``; their code lives in ``remote`` and ``parties``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from csms.cli.common import (
    MAX_ID,
    SMALL_FILE,
    CliError,
    DataDirOption,
    DbOption,
    JsonOption,
    WideOption,
    actor,
    fail,
    group,
    in_read,
    in_unit,
    load_settings,
    print_json,
    print_table,
    read_limited,
    run,
    short_time,
    warn,
)
from csms.domain.energy import watts
from csms.domain.model import BootPolicy

if TYPE_CHECKING:
    from csms.service.ports import Tx

__all__ = ["stations_app"]

stations_app = group("Register and list charging stations.")



@stations_app.command("add")
def stations_add(
    station_id: Annotated[str, typer.Argument(help="Station identity (<= 48 chars)")],
    password: Annotated[
        str | None, typer.Option(
            help="HTTP Basic password (16-40 chars), security profile 1+ [default: none:"
            " profile 0, anyone who knows the id connects as the station]",
            show_default=False)
    ] = None,
    boot: Annotated[BootPolicy, typer.Option(help="Answer to BootNotification")] = (
        BootPolicy.ACCEPTED
    ),
    profile: Annotated[
        int | None, typer.Option(
            min=0, max=3, help="Security profile 0-3 [default: 1 with --password, else 0]",
            show_default=False)
    ] = None,
    max_power_kw: Annotated[
        float | None, typer.Option(
            min=0.1, max=10000, help="The most it delivers, in kW: more energy per minute"
            " holds a session [default: reported by the station, else 350]")
    ] = None,
    db: DbOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Register a station so that it may connect."""
    from csms.protocol.station_id import InvalidStationId, validate_station_id
    from csms.service.auth import hash_password, validate_password
    from csms.service.charging import new_station

    try:
        validate_station_id(station_id)
        if password is not None:
            validate_password(password)
    except (InvalidStationId, ValueError) as exc:
        raise typer.BadParameter(str(exc)) from None
    level = profile if profile is not None else (1 if password else 0)
    if level in (1, 2) and password is None:
        raise typer.BadParameter("security profile 1 and 2 need --password")
    password_hash = hash_password(password) if password else None

    async def work(tx: Tx) -> None:
        if await tx.get_station(station_id) is not None:
            raise CliError(f"station {station_id!r} already exists")
        await tx.insert_station(
            new_station(
                station_id, boot_policy=boot, security_profile=level,
                password_hash=password_hash, max_power_w=_watts(max_power_kw),
            )
        )
        # never the password, nor its hash: whether one was set
        await tx.add_audit(actor(), "stations.add", station_id, {
            "boot": boot.value, "profile": level, "password": password is not None,
            "max_power_kw": max_power_kw}, {"security_profile": level}, True,
            datetime.now(UTC))

    run(in_unit(load_settings(db=db, data_dir=data_dir), work))
    power = f", max {max_power_kw:g} kW" if max_power_kw else ""
    typer.echo(f"station {station_id} added (boot: {boot.value}, profile {level}{power})")
    if password is None and level == 0:  # nothing checked: see csms.server
        warn(f"station {station_id} has no password (security profile 0): anyone who knows"
             " its id can connect as it and report sessions billed to its drivers; give it"
             f" one with `csms stations set-password {station_id}` once it is connected"
             " (csms serve running), or add stations with --password")


def _watts(kw: float | None) -> Decimal | None:
    return None if kw is None else watts(kw)


@stations_app.command("set-max-power")
def stations_set_max_power(
    station_id: Annotated[str, typer.Argument(help="The station's id")],
    kw: Annotated[float, typer.Argument(
        metavar="kw", min=0.1, max=10000,
        help="The most the station delivers, in kW (e.g. 11, 22, 150)")],
    db: DbOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Register the station's maximum power: a session with more energy than this power
    over its duration is held from billing (energy_above_max_power)."""

    async def work(tx: Tx) -> None:
        station = await tx.get_station(station_id)
        if station is None:
            raise CliError(f"no station {station_id!r}")
        station.max_power_w = _watts(kw)
        await tx.update_station(station)
        await tx.add_audit(actor(), "stations.set-max-power", station_id, {"kw": kw},
                           {"max_power_w": str(station.max_power_w)}, True, datetime.now(UTC))

    run(in_unit(load_settings(db=db, data_dir=data_dir), work))
    typer.echo(f"station {station_id}: maximum power {kw:g} kW")


@stations_app.command("list")
def stations_list(json: JsonOption = False, wide: WideOption = False, db: DbOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """List stations: online/offline, OCPP version, firmware, last seen, connector status;
    the columns that fit the terminal (id, online, connectors and last seen first), or all
    of them with --wide."""
    from csms.service.views import stations_view

    rows = run(in_read(load_settings(db=db, data_dir=data_dir), stations_view))
    if json:
        print_json(rows)
        return
    print_table(
        "Stations",
        ["id", "online", "OCPP", "boot", "profile", "vendor / model", "firmware", "last seen",
         "connectors"],
        [
            [
                r["id"], "online" if r["online"] else "offline", r["ocpp_version"], r["boot"],
                r["security_profile"],
                " / ".join(x for x in (r["vendor"], r["model"]) if x),
                r["firmware_version"], short_time(r["last_seen_at"]),
                ", ".join(f"{c['connector_id']}:{c['status']}" for c in r["connectors"]),
            ]
            for r in rows
        ],
        priority=["id", "online", "connectors", "last seen", "OCPP", "profile", "boot",
                  "firmware", "vendor / model"],
        wide=wide,
    )


@stations_app.command("show")
def stations_show(
    station_id: Annotated[str, typer.Argument(help="The station's id")],
    json: JsonOption = False,
    db: DbOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Show one station: state, connectors, active sessions, recent messages."""
    from csms.service.views import station_detail

    async def work(tx: Tx) -> dict[str, Any] | None:
        return await station_detail(tx, station_id)

    data = run(in_read(load_settings(db=db, data_dir=data_dir), work))
    if data is None:
        fail(f"no station {station_id!r}")
    if json:
        print_json(data)
        return
    print_table(
        f"Station {station_id}", ["field", "value"],
        [[k, v] for k, v in data.items()
         if k not in ("connectors", "recent_events", "active_sessions", "evse_meter_keys")],
    )
    if data["evse_meter_keys"]:
        print_table("Meter keys per EVSE", ["evse", "public key"],
                    [[k["evse_id"], k["public_key"]] for k in data["evse_meter_keys"]])
    print_table("Connectors", ["evse", "connector", "status", "error", "since"],
                [[c["evse_id"], c["connector_id"], c["status"], c["fault"], c["updated_at"]]
                 for c in data["connectors"]])
    print_table("Active sessions", ["id", "connector", "tag", "started", "Wh"],
                [[x["id"], x["connector_id"], x["id_tag"], x["started_at"], x["energy_wh"]]
                 for x in data["active_sessions"]])
    print_table("Recent events", ["time", "kind", "payload"],
                [[e["ts"], e["kind"], str(e["payload"])[:80]] for e in data["recent_events"]])



@stations_app.command("set-meter-key")
def stations_set_meter_key(
    station_id: Annotated[str, typer.Argument(help="The station's id")],
    key: Annotated[
        str | None,
        typer.Argument(help="The meter's public key: hex or base64 DER, PEM, or base32 (Alfen)",
                       show_default=False),
    ] = None,
    file: Annotated[
        Path | None, typer.Option("--file", help="Read the key from this file (PEM, hex, base64)")
    ] = None,
    evse: Annotated[
        int | None, typer.Option(
            "--evse", min=1, max=MAX_ID, show_default=False,
            help="The EVSE (1.6: connector) whose meter this is, for a station with a"
                 " calibrated meter per EVSE [default: the station's key, for its EVSEs"
                 " without a key of their own]")
    ] = None,
    db: DbOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Register the public key of a station's Eichrecht meter (OCMF or Alfen signatures),
    or with --evse of one EVSE's meter: that EVSE's sessions are verified with it."""
    from csms.metering.ocmf import OcmfError, normalize_key
    from csms.service.signed_data import session_meter_key

    if (key is None) == (file is None):
        raise typer.BadParameter("give the key or --file, not both")
    text = key if key is not None else _read_key_file(file)
    try:
        normalized = normalize_key(text)
    except OcmfError as exc:
        raise typer.BadParameter(str(exc)) from None

    async def work(tx: Tx) -> str | None:
        if await tx.get_station(station_id) is None:
            raise CliError(f"no station {station_id!r}")
        # the key the station's (or the EVSE's) sessions were verified with until now
        previous = (await session_meter_key(tx, station_id, evse)).key
        now = datetime.now(UTC)
        if evse is None:
            await tx.set_meter_key(station_id, normalized, "operator")
        else:
            await tx.set_evse_meter_key(station_id, evse, normalized)
        if previous is not None and previous != normalized:
            await tx.add_station_event(station_id, "security", {
                "type": "MeterKeyChanged", "pinned": previous, "received": normalized,
                "by": "operator", **_evse_field(evse)}, now)
        await tx.add_audit(actor(), "stations.set-meter-key", station_id,
                           {"public_key": normalized, **_evse_field(evse)},
                           {"previous": previous}, True, now)
        return previous

    previous = run(in_unit(load_settings(db=db, data_dir=data_dir), work))
    change = "" if previous in (None, normalized) else " (replaces a different key)"
    typer.echo(f"meter key of {_meter_of(station_id, evse)} set{change}: {normalized[-16:]}")


@stations_app.command("remove-meter-key")
def stations_remove_meter_key(
    station_id: Annotated[str, typer.Argument(help="The station's id")],
    evse: Annotated[int, typer.Option(
        "--evse", min=1, max=MAX_ID, show_default=False,
        help="The EVSE (1.6: connector) whose key to remove")],
    db: DbOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Remove the meter key registered for one EVSE: its sessions are verified with the
    station's key again (a station's own key is replaced with set-meter-key, never
    removed: a station without one would have the next key it sends pinned)."""
    from csms.service.signed_data import session_meter_key

    async def work(tx: Tx) -> None:
        if await tx.get_station(station_id) is None:
            raise CliError(f"no station {station_id!r}")
        previous = (await tx.get_evse_meter_keys(station_id)).get(evse)
        if previous is None:
            raise CliError(f"no meter key registered for EVSE {evse} of {station_id}")
        await tx.set_evse_meter_key(station_id, evse, None)
        now = datetime.now(UTC)
        station_key = (await session_meter_key(tx, station_id, None)).key
        if station_key != previous:
            await tx.add_station_event(station_id, "security", {
                "type": "MeterKeyChanged", "pinned": previous, "received": station_key,
                "by": "operator", "evse_id": evse}, now)
        await tx.add_audit(actor(), "stations.remove-meter-key", station_id,
                           {"evse_id": evse}, {"previous": previous}, True, now)

    run(in_unit(load_settings(db=db, data_dir=data_dir), work))
    typer.echo(f"meter key of {_meter_of(station_id, evse)} removed: its sessions are"
               " verified with the station's key")


def _evse_field(evse: int | None) -> dict[str, int]:
    return {} if evse is None else {"evse_id": evse}


def _meter_of(station_id: str, evse: int | None) -> str:
    return station_id if evse is None else f"{station_id} EVSE {evse}"


def _read_key_file(path: Path | None) -> str:
    assert path is not None
    try:
        return read_limited(path, SMALL_FILE).decode()
    except (OSError, UnicodeDecodeError) as exc:
        raise typer.BadParameter(f"cannot read {path}: {exc}") from None
