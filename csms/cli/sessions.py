"""``csms sessions``: charging session records, the operator's decision on held ones, and the
close of an active one whose stop is not coming."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any

import typer

from csms.cli.common import (
    MAX_ID,
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
    known_station,
    load_settings,
    print_json,
    print_table,
    run,
    short_time,
    warn,
    with_repo,
)
from csms.config import Settings

if TYPE_CHECKING:
    from csms.domain.model import Session
    from csms.service.ports import Repository, Tx

__all__ = ["sessions_app"]

sessions_app = group("Charging sessions.")



@sessions_app.command("list")
def sessions_list(
    json: JsonOption = False,
    station: Annotated[str | None, typer.Option(help="Only this station")] = None,
    active: Annotated[bool, typer.Option("--active", help="Only sessions in progress")] = False,
    limit: Annotated[int, typer.Option(
        min=1, max=MAX_ID, help="At most this many, newest first (a warning on stderr"
        " says when there are more)")] = 1000,
    wide: WideOption = False,
    db: DbOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """List charging sessions, newest first: the columns that fit the terminal (id,
    station, status, kWh and start first), or all of them with --wide. A held session
    shows the time to decide it by (release or reject): after it, the driver may have
    withdrawn and a release may leave the host unpaid."""
    from csms.service.holds import hold_fields, notice_period
    from csms.service.views import session_json

    async def work(tx: Tx) -> tuple[list[Session], int | None]:
        await known_station(tx, station)
        # one more than shown: whether the list was cut
        return (await tx.list_sessions(station, True if active else None,
                                       min(limit + 1, MAX_ID)), await notice_period(tx))

    settings = load_settings(db=db, data_dir=data_dir)
    found, notice = run(in_read(settings, work))
    now = datetime.now(UTC)
    rows = [{**session_json(s), **hold_fields(s, notice, now)} for s in found[:limit]]
    if len(found) > limit:
        warn(f"the list stops at --limit {limit}: there are more sessions (a higher --limit"
             " shows them)")
    if json:
        print_json(rows)
        return

    def deadline(r: dict[str, Any]) -> str | None:
        at, state = r["decide_by"], r["decide_by_state"]
        if at is None:
            return None
        return short_time(at) if state == "ahead" else f"{short_time(at)} ({state})"

    columns = ["id", "station", "conn", "tag", "OCPP", "tx id", "started", "stopped", "kWh",
               "status", "reason", "decide by"]
    priority = ["id", "station", "status", "decide by", "kWh", "started", "stopped", "conn",
                "tag", "OCPP", "tx id", "reason"]
    held = any(r["decide_by"] is not None for r in rows)
    print_table(
        "Sessions",
        columns if held else columns[:-1],
        [
            [
                r["id"], r["station_id"], r["connector_id"], r["id_tag"], r["ocpp_version"],
                r["transaction_id"], short_time(r["started_at"]),
                short_time(r["stopped_at"]),
                None if r["energy_wh"] is None else f"{r['energy_wh'] / 1000:.3f}",
                r["status"], r["stop_reason"],
                *([deadline(r)] if held else []),
            ]
            for r in rows
        ],
        priority=priority if held else [c for c in priority if c != "decide by"],
        wide=wide,
    )


@sessions_app.command("show")
def sessions_show(
    session_id: Annotated[int, typer.Argument(min=1, max=MAX_ID, help="The session's id")],
    json: JsonOption = False,
    db: DbOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Show one session with its meter samples; a held one with the time to decide it
    by (decide_by: its start plus the contract's notice period, less an hour to settle)."""
    from csms.service.holds import hold_fields, notice_period
    from csms.service.views import iso as _iso
    from csms.service.views import price_text, session_json, session_price

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
        # held: by when to release or reject it (None: not held, or no settlement worker
        # has read the contract's notice period yet), and whether that is near or passed
        out.update(hold_fields(s, await notice_period(tx), datetime.now(UTC)))
        price = await session_price(tx, s)
        decimals = price.pop("decimals")
        out.update(price)
        if s.price_minor is not None:  # what the console shows too
            out["price_text"] = price_text(s.price_minor, s.currency, decimals)
        out["signed_readings"] = await tx.signed_readings(session_id)
        return out

    data = run(in_read(load_settings(db=db, data_dir=data_dir), work))
    if data is None:
        fail(f"no session {session_id}")
    text = data.pop("price_text", None)  # the price as the console shows it
    if json:
        print_json(data)
        return
    state = data.pop("decide_by_state")  # said in decide_by's text
    if data["billing"] == "held" and data["decide_by"] is None:
        data["decide_by"] = ("not known yet: no settlement worker has read the contract's"
                             " notice period")
    elif state == "passed":
        data["decide_by"] += (" (passed: the driver's notice period may have run out,"
                              " releasing it may leave the host unpaid)")
    elif state == "near":
        data["decide_by"] += " (near: release or reject it before)"
    elif data["decide_by"] is None:
        del data["decide_by"]  # not held
    minor = data["price_minor"]
    if minor is not None:  # priced: in major units where its tariff's decimals are known
        data["price"] = (f"{text} ({minor} minor units)" if data["price"] is not None
                         else text)
    print_table(
        f"Session {session_id}", ["field", "value"],
        [[k, v] for k, v in data.items()
         if k not in ("samples", "signed_readings", "price_minor", "currency")],
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






def _decide(session_id: int, decision: str, reason: str | None,
            settings: Settings) -> None:
    from csms.service.holds import HoldError, decide

    async def work(tx: Tx) -> dict[str, Any]:
        try:
            return await decide(tx, session_id, decision, actor=actor(), reason=reason,
                                now=datetime.now(UTC))
        except HoldError as exc:
            raise CliError(str(exc)) from None

    result = run(in_unit(settings, work))
    holds = ", ".join(result["holds"])
    verb = "released for settlement" if decision == "released" else "rejected (never settled)"
    typer.echo(f"session {session_id} {verb}; it was held for: {holds}")


ReasonOption = Annotated[
    str | None, typer.Option(help="Why (kept in the audit log)")
]


@sessions_app.command("release")
def sessions_release(
    session_id: Annotated[int, typer.Argument(min=1, max=MAX_ID, help="The session's id")],
    reason: ReasonOption = None,
    db: DbOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Settle a held session as it is billed (an operator's decision, audited)."""
    _decide(session_id, "released", reason, load_settings(db=db, data_dir=data_dir))


@sessions_app.command("reject")
def sessions_reject(
    session_id: Annotated[int, typer.Argument(min=1, max=MAX_ID, help="The session's id")],
    reason: ReasonOption = None,
    db: DbOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Never settle a held session (it stays on record; audited)."""
    _decide(session_id, "rejected", reason, load_settings(db=db, data_dir=data_dir))


@sessions_app.command("close")
def sessions_close(
    session_id: Annotated[int, typer.Argument(min=1, max=MAX_ID, help="The session's id")],
    reason: ReasonOption = None,
    db: DbOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Close an active session whose stop is not coming (a stop the station lost): at its
    last reading, billed from its readings only, held for release or rejection (audited).
    Its real stop, if it comes while it is held, completes it."""
    from csms.bootstrap import charging_service
    from csms.service.holds import HoldError

    settings = load_settings(db=db, data_dir=data_dir)

    async def work(repo: Repository) -> dict[str, Any]:
        try:  # the completion's plausibility checks are a node's
            return await charging_service(settings, repo).close_session(
                session_id, actor=actor(), reason=reason)
        except HoldError as exc:
            raise CliError(str(exc)) from None

    result = run(with_repo(settings, work))
    kwh = (result["energy_wh"] or 0) / 1000
    typer.echo(f"session {session_id} closed at {result['stopped_at']}, {kwh:.3f} kWh from"
               f" its readings; held for: {', '.join(result['holds'])}"
               " (release or reject it)")
