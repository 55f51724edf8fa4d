"""``csms stations prune-events``: the retention of station events, now (csms serve runs
it hourly by itself: csms.service.retention)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Any

import typer

from csms.cli.common import (
    DataDirOption,
    DbOption,
    JsonOption,
    err_console,
    fail,
    load_settings,
    print_json,
    run,
    say,
    with_repo,
)

if TYPE_CHECKING:
    from csms.service.ports import Repository
    from csms.service.retention import PruneResult

__all__ = ["prune_events"]

MAX_DAYS = 36500.0  # a century: what a time before it can be computed for


def prune_events(
    older_than: Annotated[float | None, typer.Option(
        "--older-than", metavar="DAYS", min=0, max=MAX_DAYS,
        help="Delete the events stored more than DAYS days ago (0: every event up to now)"
        " [default: the retention setting, CSMS_EVENT_RETENTION_DAYS]")] = None,
    json: JsonOption = False, db: DbOption = None, data_dir: DataDirOption = None,
) -> None:
    """Delete station events past retention now, in short units: those stored more than
    --older-than days ago, except those naming a session whose billing is not final yet
    (held, queued, in a chunk not final...), which stay until it is."""
    settings = load_settings(db=db, data_dir=data_dir)
    days = settings.event_retention_days if older_than is None else older_than
    if older_than is None and days == 0:
        fail("--older-than: give DAYS (the retention setting CSMS_EVENT_RETENTION_DAYS is 0:"
             " events are kept for ever)")
    before = datetime.now(UTC) - timedelta(days=days)

    async def work(repo: Repository) -> PruneResult:
        return await _prune(repo, before)

    result = run(with_repo(settings, work))
    if json:
        print_json({"older_than_days": days, "before": before.isoformat(),
                    **result.as_json()})
        return
    say(("deleted", "bold"), f" {result.deleted} station events stored before"
        f" {before.isoformat(timespec='seconds')} in {result.units} units")
    if result.kept:
        say(f"kept {result.kept} older ones that name a session not settled yet"
            " (csms sessions list shows its billing)")


async def _prune(repo: Repository, before: datetime) -> PruneResult:
    """:func:`csms.service.retention.prune_station_events` with a progress display on
    stderr (a terminal's: none in a pipe or a file)."""
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from csms.service.retention import prune_station_events

    with Progress(SpinnerColumn(), TextColumn("{task.description}"),
                  TextColumn("{task.completed} deleted"), TimeElapsedColumn(),
                  console=err_console, transient=True,
                  disable=not err_console.is_terminal) as progress:
        task: Any = progress.add_task("deleting station events past retention", total=None)

        def step(done: int, _unit: int) -> None:
            progress.update(task, completed=done)

        return await prune_station_events(repo, before, progress=step)
