"""``csms stations``, ``csms tags``, ``csms sessions``: registry and session records."""

from __future__ import annotations

import enum
import getpass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any

import typer

from csms.cli.common import (
    CliError,
    DbOption,
    JsonOption,
    fail,
    in_read,
    in_unit,
    print_json,
    print_table,
    run,
)
from csms.domain.energy import watts
from csms.domain.model import BootPolicy, IdTag, Session
from csms.metering.ocmf import OcmfError, normalize_key
from csms.protocol.station_id import InvalidStationId, validate_station_id
from csms.service.auth import hash_password, validate_password
from csms.service.charging import new_station
from csms.service.holds import HoldError, billing_state, decide
from csms.service.ports import Tx
from csms.service.views import iso as _iso
from csms.service.views import session_json, station_detail, stations_view

__all__ = ["session_json", "sessions_app", "stations_app", "tags_app"]

stations_app = typer.Typer(help="Register and list charging stations.", no_args_is_help=True)
tags_app = typer.Typer(help="Manage id tags (RFID cards, tokens).", no_args_is_help=True)
sessions_app = typer.Typer(help="Charging sessions.", no_args_is_help=True)


class BootChoice(enum.StrEnum):
    accepted = "accepted"
    pending = "pending"
    rejected = "rejected"


class TagStatus(enum.StrEnum):
    accepted = "accepted"
    blocked = "blocked"


# -- stations ----------------------------------------------------------------
@stations_app.command("add")
def stations_add(
    station_id: Annotated[str, typer.Argument(metavar="ID", help="Station identity (<= 48 chars)")],
    password: Annotated[
        str | None, typer.Option(help="HTTP Basic password (16-40 chars), security profile 1+")
    ] = None,
    boot: Annotated[BootChoice, typer.Option(help="Answer to BootNotification")] = (
        BootChoice.accepted
    ),
    profile: Annotated[
        int | None, typer.Option(min=0, max=3, help="Security profile 0-3")
    ] = None,
    max_power_kw: Annotated[
        float | None, typer.Option(
            min=0.1, max=10000, help="The most it delivers, in kW: more energy per minute"
            " holds a session [default: reported by the station, else 350]")
    ] = None,
    db: DbOption = None,
) -> None:
    """Register a station so that it may connect."""
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
                station_id, boot_policy=BootPolicy(boot.value), security_profile=level,
                password_hash=password_hash, max_power_w=_watts(max_power_kw),
            )
        )

    run(in_unit(db, work))
    power = f", max {max_power_kw:g} kW" if max_power_kw else ""
    typer.echo(f"station {station_id} added (boot: {boot.value}, profile {level}{power})")


def _watts(kw: float | None) -> Decimal | None:
    return None if kw is None else watts(kw)


@stations_app.command("set-max-power")
def stations_set_max_power(
    station_id: Annotated[str, typer.Argument(metavar="ID")],
    kw: Annotated[float, typer.Argument(
        metavar="KW", min=0.1, max=10000,
        help="The most the station delivers, in kW (e.g. 11, 22, 150)")],
    db: DbOption = None,
) -> None:
    """Register the station's maximum power: a session with more energy than this power
    over its duration is held from billing (energy_above_max_power)."""

    async def work(tx: Tx) -> None:
        station = await tx.get_station(station_id)
        if station is None:
            raise CliError(f"no station {station_id!r}")
        station.max_power_w = _watts(kw)
        await tx.update_station(station)
        await tx.add_audit(_actor(), "stations.set-max-power", station_id, {"kw": kw},
                           {"max_power_w": str(station.max_power_w)}, True, datetime.now(UTC))

    run(in_unit(db, work))
    typer.echo(f"station {station_id}: maximum power {kw:g} kW")


@stations_app.command("list")
def stations_list(json: JsonOption = False, db: DbOption = None) -> None:
    """List stations: online/offline, OCPP version, firmware, last seen, connector status."""
    rows = run(in_read(db, stations_view))
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
                r["firmware_version"], r["last_seen_at"],
                ", ".join(f"{c['connector_id']}:{c['status']}" for c in r["connectors"]),
            ]
            for r in rows
        ],
    )


@stations_app.command("show")
def stations_show(
    station_id: Annotated[str, typer.Argument(metavar="ID")],
    json: JsonOption = False,
    db: DbOption = None,
) -> None:
    """Show one station: state, connectors, active sessions, recent messages."""

    async def work(tx: Tx) -> dict[str, Any] | None:
        return await station_detail(tx, station_id)

    data = run(in_read(db, work))
    if data is None:
        fail(f"no station {station_id!r}")
    if json:
        print_json(data)
        return
    print_table(
        f"Station {station_id}", ["field", "value"],
        [[k, v] for k, v in data.items()
         if k not in ("connectors", "recent_events", "active_sessions")],
    )
    print_table("Connectors", ["evse", "connector", "status", "error", "since"],
                [[c["evse_id"], c["connector_id"], c["status"], c["error_code"], c["updated_at"]]
                 for c in data["connectors"]])
    print_table("Active sessions", ["id", "connector", "tag", "started", "Wh"],
                [[x["id"], x["connector_id"], x["id_tag"], x["started_at"], x["energy_wh"]]
                 for x in data["active_sessions"]])
    print_table("Recent events", ["time", "kind", "payload"],
                [[e["ts"], e["kind"], str(e["payload"])[:80]] for e in data["recent_events"]])


# -- tags --------------------------------------------------------------------
@tags_app.command("add")
def tags_add(
    tag: Annotated[str, typer.Argument(help="The id tag (<= 20 chars in 1.6, 36 in 2.0.1)")],
    status: Annotated[TagStatus, typer.Option(help="accepted or blocked")] = TagStatus.accepted,
    expires: Annotated[
        str | None, typer.Option(help="Expiry as ISO 8601, e.g. 2027-01-31T00:00:00Z")
    ] = None,
    db: DbOption = None,
) -> None:
    """Add or update an id tag."""
    if not tag or len(tag) > 36:
        raise typer.BadParameter("an id tag is 1 to 36 characters")
    expires_at = _parse_time(expires) if expires is not None else None

    async def work(tx: Tx) -> None:
        await tx.put_tag(IdTag(tag, status.value, expires_at))

    run(in_unit(db, work))
    suffix = f", expires {_iso(expires_at)}" if expires_at else ""
    typer.echo(f"tag {tag} {status.value}{suffix}")


@tags_app.command("block")
def tags_block(
    tag: Annotated[str, typer.Argument(help="The id tag")], db: DbOption = None
) -> None:
    """Block an id tag (it stays known, answers Blocked)."""
    _update_tag(db, tag, status="blocked")
    typer.echo(f"tag {tag} blocked")


@tags_app.command("expire")
def tags_expire(
    tag: Annotated[str, typer.Argument(help="The id tag")],
    at: Annotated[str | None, typer.Option(help="Expiry as ISO 8601 [default: now]")] = None,
    db: DbOption = None,
) -> None:
    """Set an id tag's expiry (now by default): it then answers Expired."""
    when = _parse_time(at) if at else datetime.now(UTC)
    _update_tag(db, tag, expires_at=when)
    typer.echo(f"tag {tag} expires {_iso(when)}")


def _parse_time(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise typer.BadParameter(f"not an ISO 8601 time: {text!r}") from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _update_tag(db: str | None, tag: str, **changes: Any) -> None:
    async def work(tx: Tx) -> None:
        record = await tx.get_tag(tag)
        if record is None:
            raise CliError(f"no tag {tag!r}")
        for key, value in changes.items():
            setattr(record, key, value)
        await tx.put_tag(record)

    run(in_unit(db, work))


@tags_app.command("list")
def tags_list(json: JsonOption = False, db: DbOption = None) -> None:
    """List id tags."""

    async def work(tx: Tx) -> list[IdTag]:
        return await tx.list_tags()

    tags = run(in_read(db, work))
    rows = [{"tag": t.tag, "status": t.status, "expires_at": _iso(t.expires_at)} for t in tags]
    if json:
        print_json(rows)
        return
    print_table("Id tags", ["tag", "status", "expires"],
                [[r["tag"], r["status"], r["expires_at"]] for r in rows])


# -- sessions ----------------------------------------------------------------
@sessions_app.command("list")
def sessions_list(
    json: JsonOption = False,
    station: Annotated[str | None, typer.Option(help="Only this station")] = None,
    active: Annotated[bool, typer.Option("--active", help="Only sessions in progress")] = False,
    limit: Annotated[int, typer.Option(min=1, help="At most this many, newest first")] = 1000,
    db: DbOption = None,
) -> None:
    """List charging sessions, newest first."""

    async def work(tx: Tx) -> list[Session]:
        return await tx.list_sessions(station, True if active else None, limit)

    rows = [session_json(s) for s in run(in_read(db, work))]
    if json:
        print_json(rows)
        return
    print_table(
        "Sessions",
        ["id", "station", "conn", "tag", "OCPP", "tx id", "started", "stopped", "kWh", "status",
         "reason"],
        [
            [
                r["id"], r["station_id"], r["connector_id"], r["id_tag"], r["ocpp_version"],
                r["transaction_id"], r["started_at"], r["stopped_at"],
                None if r["energy_wh"] is None else f"{r['energy_wh'] / 1000:.3f}",
                r["status"], r["stop_reason"],
            ]
            for r in rows
        ],
    )


@sessions_app.command("show")
def sessions_show(
    session_id: Annotated[int, typer.Argument(metavar="ID")],
    json: JsonOption = False,
    db: DbOption = None,
) -> None:
    """Show one session with its meter samples."""

    async def work(tx: Tx) -> dict[str, Any] | None:
        s = await tx.get_session(session_id)
        if s is None:
            return None
        out = session_json(s)
        out["samples"] = [
            {
                "timestamp": _iso(m.timestamp), "measurand": m.measurand, "phase": m.phase,
                "context": m.context, "location": m.location, "unit": m.unit,
                "multiplier": m.multiplier, "value": m.value, "format": m.format,
                "signed": m.signed,
            }
            for m in await tx.session_samples(session_id)
        ]
        out["billing"] = billing_state(s, s.settlement_state)
        out["signed_readings"] = await tx.signed_readings(session_id)
        return out

    data = run(in_read(db, work))
    if data is None:
        fail(f"no session {session_id}")
    if json:
        print_json(data)
        return
    print_table(
        f"Session {session_id}", ["field", "value"],
        [[k, v] for k, v in data.items() if k not in ("samples", "signed_readings")],
    )
    if data["signed_readings"]:
        print_table(
            "Signed meter readings (OCMF)", ["#", "TX", "time", "Wh", "meter", "signature"],
            [[r["container_no"], r["tx_code"], r["reading_time"], r["reading_wh"],
              r["meter_serial"], r["status"] if r["status"] == "verified"
              else f"{r['status']}: {r['detail']}"] for r in data["signed_readings"]],
        )
    print_table(
        "Meter samples", ["time", "measurand", "phase", "context", "value", "unit"],
        [[m["timestamp"], m["measurand"], m["phase"], m["context"], m["value"], m["unit"]]
         for m in data["samples"]],
    )



def _actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


def _decide(session_id: int, decision: str, reason: str | None, db: str | None) -> None:
    async def work(tx: Tx) -> dict[str, Any]:
        try:
            return await decide(tx, session_id, decision, actor=_actor(), reason=reason,
                                now=datetime.now(UTC))
        except HoldError as exc:
            raise CliError(str(exc)) from None

    result = run(in_unit(db, work))
    holds = ", ".join(result["holds"])
    verb = "released for settlement" if decision == "released" else "rejected (never settled)"
    typer.echo(f"session {session_id} {verb}; it was held for: {holds}")


ReasonOption = Annotated[
    str | None, typer.Option(help="Why (kept in the audit log)")
]


@sessions_app.command("release")
def sessions_release(
    session_id: Annotated[int, typer.Argument(metavar="ID")],
    reason: ReasonOption = None,
    db: DbOption = None,
) -> None:
    """Settle a held session as it is billed (an operator's decision, audited)."""
    _decide(session_id, "released", reason, db)


@sessions_app.command("reject")
def sessions_reject(
    session_id: Annotated[int, typer.Argument(metavar="ID")],
    reason: ReasonOption = None,
    db: DbOption = None,
) -> None:
    """Never settle a held session (it stays on record; audited)."""
    _decide(session_id, "rejected", reason, db)


@stations_app.command("set-meter-key")
def stations_set_meter_key(
    station_id: Annotated[str, typer.Argument(metavar="ID")],
    key: Annotated[
        str | None,
        typer.Argument(help="The meter's public key: hex or base64 DER, or PEM",
                       show_default=False),
    ] = None,
    file: Annotated[
        Path | None, typer.Option("--file", help="Read the key from this file (PEM, hex, base64)")
    ] = None,
    db: DbOption = None,
) -> None:
    """Register the public key of a station's Eichrecht meter (OCMF signatures)."""
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
        previous, _source = await tx.get_meter_key(station_id)
        now = datetime.now(UTC)
        await tx.set_meter_key(station_id, normalized, "operator")
        if previous is not None and previous != normalized:
            await tx.add_station_event(station_id, "security", {
                "type": "MeterKeyChanged", "pinned": previous, "received": normalized,
                "by": "operator"}, now)
        await tx.add_audit(_actor(), "stations.set-meter-key", station_id,
                           {"public_key": normalized}, {"previous": previous}, True, now)
        return previous

    previous = run(in_unit(db, work))
    change = "" if previous in (None, normalized) else " (replaces a different key)"
    typer.echo(f"meter key of {station_id} set{change}: {normalized[-16:]}")


def _read_key_file(path: Path | None) -> str:
    assert path is not None
    try:
        return path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise typer.BadParameter(f"cannot read {path}: {exc}") from None
