"""``csms tags``: id tags (RFID cards, tokens) the stations may charge with."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import quote

import typer

from csms.cli.common import (
    AdminHost,
    AdminPort,
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
    warn,
)
from csms.config import Settings
from csms.domain.model import (
    MASTER_PASS_VERSIONS,
    IdTag,
    TagStatus,
    group_problem,
    id_tag_problem,
)

if TYPE_CHECKING:
    from csms.service.ports import Tx

__all__ = ["tags_app"]

tags_app = group("Manage id tags (RFID cards, tokens).")



@tags_app.command("add")
def tags_add(
    tag: Annotated[str, typer.Argument(help="The id tag (<= 20 chars in 1.6, 36 in 2.0.1)")],
    status: Annotated[TagStatus, typer.Option(help="accepted or blocked")] = TagStatus.ACCEPTED,
    expires: Annotated[
        str | None, typer.Option(help="Expiry as ISO 8601, e.g. 2027-01-31T00:00:00Z")
    ] = None,
    group: Annotated[str | None, typer.Option(
        help="Its group (1.6 parentIdTag, 2.0.1 groupIdToken; <= 20 chars): tags of a"
        " group may stop each other's sessions [default: none]", show_default=False)] = None,
    master: Annotated[bool, typer.Option(
        "--master/--no-master", help="A master pass: stops any session of its group (1.6);"
        " the first master's group becomes the 2.0.1 master pass group (see master-group)")]
    = False,
    admin_host: AdminHost = None,
    admin_port: AdminPort = None,
    db: DbOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Add or update an id tag."""
    from csms.service.driver import MASTER_PASS_OPTION
    from csms.service.views import iso as _iso

    if (problem := id_tag_problem(tag)) is not None:
        raise typer.BadParameter(problem)
    if group is not None and (problem := group_problem(group)) is not None:
        raise typer.BadParameter(problem, param_hint="--group")
    if master and group is None:
        raise typer.BadParameter("a master pass belongs to a group: give --group",
                                 param_hint="--master")
    expires_at = _parse_time(expires) if expires is not None else None

    async def work(tx: Tx) -> tuple[str | None, list[str]]:
        old = await tx.get_tag(tag)
        await tx.put_tag(IdTag(tag, status.value, expires_at, group, master))
        await tx.add_audit(actor(), "tags.add", tag, {
            "status": status.value, "expires_at": _iso(expires_at) if expires_at else None,
            "group": group, "master": master}, {"status": status.value}, True,
            datetime.now(UTC))
        # what the registered tag had that this command clears (an option not given)
        cleared = [] if old is None else [text for text, gone in (
            (f"an expiry ({_iso(old.expires_at)})" if old.expires_at else "",
             old.expires_at is not None and expires_at is None),
            (f"group {old.parent}", old.parent is not None and group is None),
            ("a master pass", old.master and not master)) if gone]
        current = await tx.get_central_option(MASTER_PASS_OPTION)
        if master and current is None:
            assert group is not None
            await tx.set_central_option(MASTER_PASS_OPTION, group)
            return group, cleared
        return current, cleared

    settings = load_settings(db=db, data_dir=data_dir, admin_host=admin_host,
                             admin_port=admin_port)
    master_group, cleared = run(in_unit(settings, work))
    if cleared:
        listed = ", ".join(cleared[:-1]) + (" and " if len(cleared) > 1 else "") + cleared[-1]
        warn(f"tag {tag} had {listed}: now none")
    suffix = f", expires {_iso(expires_at)}" if expires_at else ""
    if group is not None:
        suffix += f", {'master pass of' if master else 'in'} group {group}"
    typer.echo(f"tag {tag} {status.value}{suffix}")
    if master and group is not None and master_group == group:
        typer.echo(f"2.0.1 master pass group: {group} (stops any transaction, starts none)")
        _push_master_group(settings, group)
    elif master:
        warn(f"the 2.0.1 master pass group stays {master_group}: on 2.0.1 stations {tag} is"
             f" an ordinary tag of {group} (csms tags master-group {group} to change it)")
    elif group is not None and group == master_group:
        warn(f"{group} is the 2.0.1 master pass group: on 2.0.1 stations {tag} stops any"
             " transaction and starts none")


@tags_app.command("master-group")
def tags_master_group(
    group: Annotated[str | None, typer.Argument(
        help="The group whose tags are master passes on 2.0.1 stations [default: show it]",
        show_default=False)] = None,
    none: Annotated[bool, typer.Option("--none", help="No master pass group")] = False,
    json: JsonOption = False,
    admin_host: AdminHost = None,
    admin_port: AdminPort = None,
    db: DbOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Show or set the 2.0.1 master pass group (C16 MasterPassGroupId): its tags may stop
    any transaction on a 2.0.1 station and start none. Set, it goes to the connected 2.0.1
    stations now (through a running csms serve, found with --admin-host / --admin-port)
    and to every 2.0.1 station at its boot."""
    from csms.service.driver import MASTER_PASS_OPTION

    if group is not None and none:
        raise typer.BadParameter("give a group or --none, not both", param_hint="--none")
    if group is not None and (problem := group_problem(group)) is not None:
        raise typer.BadParameter(problem)
    settings = load_settings(db=db, data_dir=data_dir, admin_host=admin_host,
                             admin_port=admin_port)

    async def work(tx: Tx) -> tuple[str | None, list[str]]:
        if group is not None or none:
            await tx.set_central_option(MASTER_PASS_OPTION, group)
            await tx.add_audit(actor(), "tags.master-group", group, {"group": group},
                               {"master_pass_group": group}, True, datetime.now(UTC))
        current = await tx.get_central_option(MASTER_PASS_OPTION)
        tags = [t.tag for t in await tx.list_tags() if current and t.parent == current]
        return current, tags

    current, tags = run(in_unit(settings, work))
    if json:
        print_json({"master_pass_group": current, "tags": tags})
    elif current is None:
        typer.echo("no 2.0.1 master pass group")
    else:
        typer.echo(f"2.0.1 master pass group: {current} ({len(tags)} tags: "
                   f"{', '.join(tags) or 'none yet'})")
    if group is not None:
        _push_master_group(settings, group, quiet=json)


def _push_master_group(settings: Settings, group: str, quiet: bool = False) -> None:
    """Set AuthCtrlr.MasterPassGroupId on the connected 2.0.1 stations through the admin
    API of a running ``csms serve``; without one, the stations get it at their next boot."""
    from csms.cli.remote import admin_request
    from csms.service.driver import MASTER_PASS_VARIABLE

    def say(text: str) -> None:
        if not quiet:
            typer.echo(text)

    if settings.admin_port < 1 or not settings.admin_token_path.exists():
        say("csms serve is not running here: 2.0.1 stations get it at their next boot")
        return
    try:
        status, stations = admin_request(settings, "GET", "/stations", timeout=10, kind=list)
    except typer.Exit:  # unreachable: already said on stderr
        say("2.0.1 stations get it at their next boot")
        return
    if status != 200 or not isinstance(stations, list):
        warn(f"the connected stations could not be listed ({status}): 2.0.1 stations get"
             " it at their next boot")
        return
    for s in stations:
        if not s.get("online") or f"ocpp{s.get('ocpp_version')}" not in MASTER_PASS_VERSIONS:
            continue
        code, body = admin_request(
            settings, "POST", f"/stations/{quote(str(s['id']), safe='')}/commands/set-variables",
            {"values": {".".join(MASTER_PASS_VARIABLE): group}})
        result = body.get("response", {}).get("setVariableResult", [{}])[0] \
            if code == 200 and isinstance(body, dict) else {}
        say(f"{s['id']}: MasterPassGroupId {result.get('attributeStatus') or body}")


@tags_app.command("block")
def tags_block(
    tag: Annotated[str, typer.Argument(help="The id tag")], db: DbOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Block an id tag (it stays known, answers Blocked)."""
    _update_tag(load_settings(db=db, data_dir=data_dir), tag, "tags.block",
                status=TagStatus.BLOCKED.value)
    typer.echo(f"tag {tag} blocked")


@tags_app.command("expire")
def tags_expire(
    tag: Annotated[str, typer.Argument(help="The id tag")],
    at: Annotated[str | None, typer.Option(help="Expiry as ISO 8601 [default: now]")] = None,
    db: DbOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Set an id tag's expiry (now by default): it then answers Expired."""
    from csms.service.views import iso as _iso

    when = _parse_time(at) if at else datetime.now(UTC)
    _update_tag(load_settings(db=db, data_dir=data_dir), tag, "tags.expire", expires_at=when)
    typer.echo(f"tag {tag} expires {_iso(when)}")


def _parse_time(text: str) -> datetime:
    """An ISO 8601 time (UTC when it names no offset), one that is a time in UTC too
    (9999-12-31T23:59:59-05:00 is not: it is past the calendar's end there)."""
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise typer.BadParameter(f"not an ISO 8601 time: {text!r}") from None
    value = value if value.tzinfo else value.replace(tzinfo=UTC)
    try:
        value.astimezone(UTC)
    except OverflowError:
        raise typer.BadParameter(f"{text!r} is beyond the calendar (year 1 to 9999) in"
                                 " UTC") from None
    return value


def _update_tag(settings: Settings, tag: str, action: str, **changes: Any) -> None:
    """Change a stored tag, audited as ``action``."""
    from csms.service.views import iso as _iso

    async def work(tx: Tx) -> None:
        record = await tx.get_tag(tag)
        if record is None:
            raise CliError(f"no tag {tag!r}")
        for key, value in changes.items():
            setattr(record, key, value)
        await tx.put_tag(record)
        asked = {k: _iso(v) if isinstance(v, datetime) else v for k, v in changes.items()}
        await tx.add_audit(actor(), action, tag, asked, {
            "status": record.status,
            "expires_at": _iso(record.expires_at) if record.expires_at else None},
            True, datetime.now(UTC))

    run(in_unit(settings, work))


@tags_app.command("list")
def tags_list(json: JsonOption = False, db: DbOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """List id tags."""
    from csms.service.views import iso as _iso

    async def work(tx: Tx) -> list[IdTag]:
        return await tx.list_tags()

    tags = run(in_read(load_settings(db=db, data_dir=data_dir), work))
    rows = [{"tag": t.tag, "status": t.status, "expires_at": _iso(t.expires_at),
             "group": t.parent, "master": t.master} for t in tags]
    if json:
        print_json(rows)
        return
    print_table("Id tags", ["tag", "status", "expires", "group", "master"],
                [[r["tag"], r["status"], r["expires_at"], r["group"],
                  "yes" if r["master"] else ""] for r in rows])


