"""``csms tags``: id tags (RFID cards, tokens) the stations may charge with."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

import typer

from csms.cli.common import (
    CliError,
    DataDirOption,
    DbOption,
    JsonOption,
    group,
    in_read,
    in_unit,
    load_settings,
    print_json,
    print_table,
    run,
)
from csms.config import Settings
from csms.domain.model import IdTag, TagStatus
from csms.service.ports import Tx
from csms.service.views import iso as _iso

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
        "--master/--no-master", help="A master pass: stops any session of its group")]
    = False,
    db: DbOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Add or update an id tag."""
    if not tag or len(tag) > 36:
        raise typer.BadParameter("an id tag is 1 to 36 characters")
    if group is not None and not 0 < len(group) <= 20:
        raise typer.BadParameter("a group is 1 to 20 characters (1.6 parentIdTag)",
                                 param_hint="--group")
    if master and group is None:
        raise typer.BadParameter("a master pass belongs to a group: give --group",
                                 param_hint="--master")
    expires_at = _parse_time(expires) if expires is not None else None

    async def work(tx: Tx) -> None:
        await tx.put_tag(IdTag(tag, status.value, expires_at, group, master))

    run(in_unit(load_settings(db=db, data_dir=data_dir), work))
    suffix = f", expires {_iso(expires_at)}" if expires_at else ""
    if group is not None:
        suffix += f", {'master pass of' if master else 'in'} group {group}"
    typer.echo(f"tag {tag} {status.value}{suffix}")


@tags_app.command("block")
def tags_block(
    tag: Annotated[str, typer.Argument(help="The id tag")], db: DbOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Block an id tag (it stays known, answers Blocked)."""
    _update_tag(load_settings(db=db, data_dir=data_dir), tag, status=TagStatus.BLOCKED.value)
    typer.echo(f"tag {tag} blocked")


@tags_app.command("expire")
def tags_expire(
    tag: Annotated[str, typer.Argument(help="The id tag")],
    at: Annotated[str | None, typer.Option(help="Expiry as ISO 8601 [default: now]")] = None,
    db: DbOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Set an id tag's expiry (now by default): it then answers Expired."""
    when = _parse_time(at) if at else datetime.now(UTC)
    _update_tag(load_settings(db=db, data_dir=data_dir), tag, expires_at=when)
    typer.echo(f"tag {tag} expires {_iso(when)}")


def _parse_time(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise typer.BadParameter(f"not an ISO 8601 time: {text!r}") from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _update_tag(settings: Settings, tag: str, **changes: Any) -> None:
    async def work(tx: Tx) -> None:
        record = await tx.get_tag(tag)
        if record is None:
            raise CliError(f"no tag {tag!r}")
        for key, value in changes.items():
            setattr(record, key, value)
        await tx.put_tag(record)

    run(in_unit(settings, work))


@tags_app.command("list")
def tags_list(json: JsonOption = False, db: DbOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """List id tags."""

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


