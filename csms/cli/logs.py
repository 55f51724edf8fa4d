"""``csms logs``: diagnostics and security logs requested from stations (1.6 GetDiagnostics,
GetLog; 2.0.1 GetLog), uploaded to this central system's file listener, listed and
fetched by the operator. Uploaded files are kept under the data folder
(``<data-dir>/logs``) of the node that received them."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from csms.cli.common import (
    MAX_ID,
    DataDirOption,
    DbOption,
    JsonOption,
    fail,
    group,
    in_read,
    known_station,
    load_settings,
    print_json,
    print_table,
    run,
    say,
)
from csms.cli.remote import AdminHost, AdminPort, Timeout, _check_time, _command, target

if TYPE_CHECKING:
    from csms.domain.maintenance import Transfer
    from csms.service.ports import Tx

__all__ = ["logs_app"]

logs_app = group("Logs uploaded by stations (diagnostics, security log).")

LOG_TYPES = ("Diagnostics", "SecurityLog")


@logs_app.command("request")
def logs_request(
    station: Annotated[str, typer.Argument(help="The station's id")],
    type: Annotated[str, typer.Option(
        "--type", help="Diagnostics or SecurityLog")] = "Diagnostics",
    since: Annotated[str | None, typer.Option(
        help="Oldest entries wanted (RFC 3339 or -1d)", show_default="all")] = None,
    until: Annotated[str | None, typer.Option(
        help="Newest entries wanted (RFC 3339 or -1h)", show_default="now")] = None,
    json: JsonOption = False, timeout: Timeout = 30, admin_host: AdminHost = None,
    admin_port: AdminPort = None, data_dir: DataDirOption = None,
) -> None:
    """Ask a station to upload a log (GetDiagnostics / GetLog); prints the request id. For
    a station that is not connected the request is queued and sent after its next
    accepted BootNotification (csms logs cancel ID while it waits)."""
    if type not in LOG_TYPES:
        raise typer.BadParameter("Diagnostics or SecurityLog", param_hint="--type")
    args: dict[str, Any] = {"type": type}
    if since is not None:
        args["since"] = _check_time(since, "--since")
    if until is not None:
        args["until"] = _check_time(until, "--until")
    _command(station, "get-log", args, target(json, timeout, admin_host, admin_port,
                                              data_dir))


@logs_app.command("cancel")
def logs_cancel(
    request: Annotated[int, typer.Argument(min=1, max=MAX_ID,
                                           help="The queued request's id (csms logs"
                                                       " list)")],
    json: JsonOption = False, admin_host: AdminHost = None, admin_port: AdminPort = None,
    data_dir: DataDirOption = None,
) -> None:
    """Cancel a log request still queued for a station that is offline."""
    from csms.cli.firmware import cancel_queued

    cancel_queued(request, ["log"], json, admin_host, admin_port, data_dir)


@logs_app.command("list")
def logs_list(
    json: JsonOption = False,
    station: Annotated[str | None, typer.Option(help="Only this station")] = None,
    limit: Annotated[int, typer.Option(min=1, max=MAX_ID,
                                       help="At most this many, newest first")] = 1000,
    db: DbOption = None, data_dir: DataDirOption = None,
) -> None:
    """Log requests, newest first: the station's last status and the uploaded file."""
    from csms.domain.maintenance import TransferKind
    from csms.service.maintenance_views import transfer_json

    async def work(tx: Tx) -> list[Transfer]:
        await known_station(tx, station)
        return await tx.list_transfers(TransferKind.LOG, station, limit)

    now = datetime.now(UTC)
    rows = [transfer_json(t, now) for t in run(in_read(load_settings(
        db=db, data_dir=data_dir), work))]
    if json:
        print_json(rows)
        return
    print_table("Logs", ["id", "station", "type", "status", "file", "bytes", "uploaded"],
                [[r["id"], r["station_id"], r["log_type"], r["status"], r["file_name"],
                  r["size"], (r["uploaded_at"] or "")[:19]] for r in rows])


@logs_app.command("get")
def logs_get(
    request: Annotated[int, typer.Argument(min=1, max=MAX_ID,
                                           help="The log request's id (csms logs list)")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Where to write the file")],
    force: Annotated[bool, typer.Option("--force", help="Replace an existing file")] = False,
    db: DbOption = None, data_dir: DataDirOption = None,
) -> None:
    """Write an uploaded log to a file."""
    from csms.domain.maintenance import TransferKind
    from csms.filestore import log_path

    async def work(tx: Tx) -> Transfer | None:
        return await tx.get_transfer(request)

    settings = load_settings(db=db, data_dir=data_dir)
    transfer = run(in_read(settings, work))
    if transfer is None or transfer.kind is not TransferKind.LOG:
        fail(f"no log request {request} (csms logs list)")
    if transfer.uploaded_at is None:
        fail(f"log request {request} has no upload yet (status {transfer.status})", 1)
    source = log_path(settings.data_folder(create=False), request)
    if not source.is_file():
        fail(f"the upload of request {request} is not in {source.parent}: was it received"
             " by another node, or with another --data-dir?", 1)
    if output.exists() and not force:
        fail(f"{output} exists (--force replaces it)")
    try:
        shutil.copyfile(source, output)
    except OSError as exc:
        fail(f"cannot write {output}: {exc.strerror or exc}", 1)
    say(f"{output}: {transfer.size} bytes from {transfer.station_id}"
        f" ({transfer.file_name})")  # the station's name for it, shown escaped
