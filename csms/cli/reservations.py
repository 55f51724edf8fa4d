"""``csms reservations``: the connectors reserved for drivers' tags (csms remote reserve)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any

import typer

from csms.cli.common import (
    MAX_ID,
    DataDirOption,
    DbOption,
    JsonOption,
    group,
    in_read,
    known_station,
    load_settings,
    print_json,
    print_table,
    run,
)

if TYPE_CHECKING:
    from csms.domain.maintenance import Reservation
    from csms.service.ports import Tx

__all__ = ["reservations_app"]

reservations_app = group("Reservations of connectors (made with csms remote reserve).")


@reservations_app.command("list")
def reservations_list(
    json: JsonOption = False,
    station: Annotated[str | None, typer.Option(help="Only this station")] = None,
    limit: Annotated[int, typer.Option(min=1, max=MAX_ID,
                                       help="At most this many, newest first")] = 1000,
    db: DbOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """List reservations, newest first, with their state (requested, accepted, refused,
    failed, used, cancelled, removed, expired)."""
    from csms.service.maintenance_views import reservation_json

    async def work(tx: Tx) -> list[Reservation]:
        await known_station(tx, station)
        return await tx.list_reservations(station, limit)

    settings = load_settings(db=db, data_dir=data_dir)
    now = datetime.now(UTC)
    rows: list[dict[str, Any]] = [reservation_json(r, now)
                                  for r in run(in_read(settings, work))]
    if json:
        print_json(rows)
        return
    print_table("Reservations", ["id", "station", "conn", "tag", "until", "status", "answer",
                                 "session"],
                [[r["id"], r["station_id"], r["connector_id"], r["id_tag"],
                  (r["expires_at"] or "")[:19], r["status"], r["answer"], r["session_id"]]
                 for r in rows])
