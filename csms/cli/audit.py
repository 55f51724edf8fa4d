"""``csms audit``: the audit log, newest first: who did what, to what, and how it ended
(the console's, the admin API's and the CLI's operator actions)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from csms.cli.common import (
    DataDirOption,
    DbOption,
    JsonOption,
    in_read,
    load_settings,
    print_json,
    print_table,
    run,
)

if TYPE_CHECKING:
    from csms.service.ports import Tx

__all__ = ["audit"]


def _short(value: Any, whole: bool, width: int = 60) -> str:
    from csms.protocol.frames import dumps  # an integer beyond 64 bits too

    text = dumps(value) if not isinstance(value, str) else value
    return text if whole or len(text) <= width else text[:width - 3] + "..."


def _actor(row: dict[str, Any]) -> str:
    """Who acted, and the name a caller of the admin API gave (X-Actor) as a claim only:
    any holder of the admin token may send any name."""
    claimed = row.get("claimed_actor")
    return row["actor"] if not claimed else f"{row['actor']} (claims {claimed})"


def audit(
    limit: Annotated[int, typer.Option(min=1, max=10_000,
                                       help="How many entries, newest first")] = 50,
    json_: JsonOption = False,
    wide: Annotated[bool, typer.Option("--wide", help="Every column, however wide the"
                                       " terminal")] = False,
    db: DbOption = None, data_dir: DataDirOption = None,
) -> None:
    """Show the audit log: each operator action (a command, a tariff, a tag, a login),
    who made it, its target, what was asked and how it ended.

    The actor is who was authenticated; "(claims NAME)" is the name an admin API caller
    gave (X-Actor: csms remote sends cli:<user>), which any holder of the admin token may
    choose."""

    async def work(tx: Tx) -> list[dict[str, Any]]:
        return await tx.list_audit(limit)

    rows = run(in_read(load_settings(db=db, data_dir=data_dir), work))
    if json_:
        print_json(rows)
        return
    print_table("Audit log", ["id", "at", "actor", "action", "target", "ok", "asked",
                              "result"],
                [[r["id"], r["at"], _actor(r), r["action"], r["target"],
                  "yes" if r["ok"] else "no", _short(r["request"], wide),
                  _short(r["result"], wide)]
                 for r in rows],
                priority=["id", "action", "target", "actor", "ok", "at", "result", "asked"],
                wide=wide)
