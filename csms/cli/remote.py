"""``csms remote ...``: live commands to stations through the running server's admin API.

The admin API is found where ``csms serve`` put it: ``--admin-host`` and ``--admin-port``
(the same options and variables as ``csms serve``), its token in the data folder.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

import orjson
import typer

from csms.cli.common import (
    MAX_ID,
    SMALL_FILE,
    AdminHost,
    AdminPort,
    DataDirOption,
    DbOption,
    JsonOption,
    actor,
    console,
    fail,
    group,
    load_settings,
    print_json,
    read_limited,
    say,
    warn,
)
from csms.config import MAX_COMMAND_TIMEOUT, Settings

# AdminHost and AdminPort are common's, also named here for the modules importing them here
__all__ = ["AdminHost", "AdminPort", "admin_request", "remote_app"]

remote_app = group("Live commands to connected stations (needs a running `csms serve`).")

Station = Annotated[str, typer.Argument(help="The station's id")]
Timeout = Annotated[float, typer.Option(min=0.1, max=MAX_COMMAND_TIMEOUT,
                                        help="Seconds to wait for the station")]


@dataclass(frozen=True, slots=True)
class Target:
    """Where a command goes, how long it may take, and how its answer is printed."""

    settings: Settings
    timeout: float
    json: bool


def target(json: bool, timeout: float, admin_host: str | None, admin_port: int | None,
           data_dir: str | None, db: str | None = None) -> Target:
    return Target(load_settings(admin_host=admin_host, admin_port=admin_port,
                                data_dir=data_dir, db=db), timeout, json)


def admin_request(
    settings: Settings, method: str, path: str, body: dict[str, Any] | None = None, *,
    timeout: float = 35.0, kind: type = dict,
) -> tuple[int, Any]:
    """The status and the JSON answer of a request to the admin API: a ``kind`` (a dict,
    or a list for a listing); an error's answer that is no JSON object is
    ``{"error": <the reason>}``. A success that is not JSON of that kind (another service
    at the port: a page, a proxy's answer) is one line and exit 1."""
    import urllib.error
    import urllib.request

    from csms.protocol.frames import loads  # integers beyond 64 bits exactly

    base = f"http://{_admin_address(settings.admin_host)}:{settings.admin_port}"
    if settings.admin_port < 1:
        fail("the admin API is off (--admin-port -1): give the port csms serve uses")
    try:
        token = settings.admin_token_path.read_text("utf-8").strip()
    except FileNotFoundError:
        fail(f"no admin token in {settings.admin_token_path}: is `csms serve` running with"
             " the same data folder (--data-dir, CSMS_DATA_DIR)?", 1)
    except OSError as exc:
        fail(f"cannot read the admin token {settings.admin_token_path}:"
             f" {exc.strerror or exc}", 1)
    try:
        data = orjson.dumps(body) if body is not None else None
    except TypeError as exc:  # an integer beyond 64 bits
        fail(f"a value out of range: {exc}")
    # who runs the command, as the other commands write it to the audit log (an HTTP
    # header is Latin-1: a user name beyond ASCII goes escaped)
    who = actor().encode("ascii", "backslashreplace").decode("ascii")
    request = urllib.request.Request(
        base + path, data=data, method=method,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json",
                 "X-Actor": who},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as exc:
        try:
            answer = loads(exc.read())
        except (ValueError, OSError):
            answer = None
        return exc.code, answer if isinstance(answer, dict) else {"error": str(exc.reason)}
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        fail(f"cannot reach the csms admin API at {base} ({reason}): is `csms serve` running?", 1)
    try:
        answer = loads(raw)
    except ValueError:
        answer = None
    if not isinstance(answer, kind):
        fail(f"{base} answered HTTP {status} with {'no JSON' if answer is None else 'JSON'}"
             f" the csms admin API does not send: is it the admin API of `csms serve`"
             " (--admin-host, --admin-port)?", 1)
    return status, answer


# a DNS name: labels of letters, digits and hyphens, dot separated
_HOST_NAME = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)(?:\.(?!-)[A-Za-z0-9-]{1,63}(?<!-))*\.?")


def _admin_address(host: str) -> str:
    """The host of the admin API's URL: an address (IPv6 in brackets) or a DNS name; every
    interface (empty, 0.0.0.0, ::) is this machine's loopback. Anything else is one line
    and exit 2 (a control character or a bracket was a traceback from urllib)."""
    import ipaddress

    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        if len(host) > 253 or not _HOST_NAME.fullmatch(host):
            fail(f"--admin-host (CSMS_ADMIN_HOST): {host!r} is not a host name or address")
        return host
    if address.version == 6:
        return "[::1]" if address.is_unspecified else f"[{host}]"
    return host


def _unknown_station(to: Target, station: str) -> bool:
    """Whether the server does not know ``station`` at all (not merely offline)."""
    status, _ = admin_request(to.settings, "GET", f"/stations/{quote(station, safe='')}",
                              timeout=10)
    return status == 404


def _command(station: str, command: str, args: dict[str, Any], to: Target,
             warning: str | None = None) -> None:
    """Send ``command`` and print the answer; ``warning`` is printed once the station
    took the command (not when the command failed: the error is the one line then)."""

    status, result = admin_request(
        to.settings, "POST", f"/stations/{quote(station, safe='')}/commands/{command}",
        {**args, "timeout": to.timeout}, timeout=to.timeout + 5,
    )
    if status == 409 and _unknown_station(to, station):
        fail(f"no station {station!r} (csms stations list shows the known ones)")
    if warning is not None and status == 200:
        warn(warning)
    if status == 200 and result.get("warning") and not to.json:
        warn(str(result["warning"]))
    if to.json:
        print_json(result)
        if status not in (200, 202):
            raise typer.Exit(1 if status != 400 else 2)
        return
    if status == 202:  # a request kept for a station that is offline
        say(station, ": ", ("queued", "bold"), f" (request {result.get('request_id')}):"
            " sent when it is back (after an accepted BootNotification, or once it is"
            " heard if its last boot was accepted)")
        return
    if status == 200:
        via = f" in {result['via']}" if result.get("via") else ""
        say(station, ": ", (str(result["status"]), "bold"),
            f" ({result['action']}{via})")  # a station's words
        response = result.get("response") or {}
        if response and set(response) != {"status"}:
            print_json(response)
        return
    if status == 400:
        fail(result.get("error", "bad request"))
    fail(result.get("error", f"admin API answered HTTP {status}"), 1)


def _tag_known(settings: Settings, tag: str) -> bool | None:
    """Whether the database of the settings knows ``tag``; None when that database is
    not here to ask (a SQLite file that does not exist is not created)."""
    import asyncio

    from csms.cli.common import CliError, in_read
    from csms.service.ports import Tx

    if settings.uses_sqlite and not Path(settings.db).expanduser().is_file():
        return None

    async def work(tx: Tx) -> bool:
        return await tx.get_tag(tag) is not None

    try:
        return asyncio.run(in_read(settings, work))
    except (CliError, ValueError):
        return None


@remote_app.command("start")
def start(
    station: Station,
    tag: Annotated[str, typer.Option(help="Id tag to charge with")],
    connector: Annotated[int | None, typer.Option(min=1, help="Connector (EVSE in 2.0.1)")] = None,
    authorization: Annotated[str | None, typer.Option(
        help="A driver's signed app-session authorization (JSON file from csms wallet"
        " authorize): the session is paid under it")] = None,
    json: JsonOption = False, timeout: Timeout = 30, admin_host: AdminHost = None,
    admin_port: AdminPort = None, data_dir: DataDirOption = None, db: DbOption = None,
) -> None:
    """Start a session remotely (1.6 RemoteStartTransaction, 2.0.1 RequestStartTransaction).

    A tag linked to a driver starts only when the driver's escrow covers it. A tag the
    database (--db) does not know is sent all the same, with a warning: the station may
    know it from its own list."""
    to = target(json, timeout, admin_host, admin_port, data_dir, db)
    args: dict[str, Any] = {"tag": tag}
    if connector is not None:
        args["connector"] = connector
    if authorization is not None:
        try:
            args["authorization"] = orjson.loads(read_limited(authorization, SMALL_FILE))
        except (OSError, ValueError) as exc:
            fail(f"cannot read the authorization {authorization}: {exc}")
    warning = None
    if _tag_known(to.settings, tag) is False:
        warning = (f"tag {tag!r} is unknown to this central system (csms tags add {tag}):"
                   " the station may refuse to charge with it")
    _command(station, "start", args, to, warning)


@remote_app.command("stop")
def stop(
    station: Station,
    session: Annotated[int | None, typer.Argument(
        min=1, max=MAX_ID, help="Session id [default: the active one]")]
    = None,
    json: JsonOption = False, timeout: Timeout = 30, admin_host: AdminHost = None,
    admin_port: AdminPort = None, data_dir: DataDirOption = None,
) -> None:
    """Stop a session remotely (1.6 RemoteStopTransaction, 2.0.1 RequestStopTransaction)."""
    to = target(json, timeout, admin_host, admin_port, data_dir)
    _command(station, "stop", {} if session is None else {"session": session}, to)


@remote_app.command("reset")
def reset(
    station: Station,
    hard: Annotated[bool, typer.Option("--hard/--soft", help="Hard (immediate) or soft reset")]
    = False,
    json: JsonOption = False, timeout: Timeout = 30, admin_host: AdminHost = None,
    admin_port: AdminPort = None, data_dir: DataDirOption = None,
) -> None:
    """Reset a station."""
    to = target(json, timeout, admin_host, admin_port, data_dir)
    _command(station, "reset", {"hard": hard}, to)


@remote_app.command("unlock")
def unlock(
    station: Station,
    connector: Annotated[int, typer.Option(min=1, help="Connector (EVSE in 2.0.1)")] = 1,
    json: JsonOption = False, timeout: Timeout = 30, admin_host: AdminHost = None,
    admin_port: AdminPort = None, data_dir: DataDirOption = None,
) -> None:
    """Unlock a connector."""
    to = target(json, timeout, admin_host, admin_port, data_dir)
    _command(station, "unlock", {"connector": connector}, to)


@remote_app.command("availability")
def availability(
    station: Station,
    state: Annotated[str, typer.Argument(help="operative or inoperative")],
    connector: Annotated[int, typer.Option(min=0, help="0 = the whole station")] = 0,
    json: JsonOption = False, timeout: Timeout = 30, admin_host: AdminHost = None,
    admin_port: AdminPort = None, data_dir: DataDirOption = None,
) -> None:
    """Make a station or connector operative or inoperative."""
    if state.lower() not in ("operative", "inoperative"):
        raise typer.BadParameter("operative or inoperative", param_hint="state")
    to = target(json, timeout, admin_host, admin_port, data_dir)
    _command(station, "availability", {"state": state, "connector": connector}, to)


@remote_app.command("trigger")
def trigger(
    station: Station,
    message: Annotated[str, typer.Argument(help="e.g. StatusNotification, MeterValues, Heartbeat")],
    connector: Annotated[int | None, typer.Option(
        min=0, help="The connector (EVSE in 2.0.1) the message is about")] = None,
    json: JsonOption = False, timeout: Timeout = 30, admin_host: AdminHost = None,
    admin_port: AdminPort = None, data_dir: DataDirOption = None,
) -> None:
    """Ask a station to send a message now (TriggerMessage); V2GCertificate asks a 1.6
    Plug & Charge station for a V2G CSR (in a DataTransfer)."""
    args: dict[str, Any] = {"message": message}
    if connector is not None:
        args["connector"] = connector
    _command(station, "trigger", args, target(json, timeout, admin_host, admin_port, data_dir))


@remote_app.command("get-config")
def get_config(
    station: Station, keys: Annotated[list[str] | None, typer.Argument(
        help="Configuration keys [default: all]", show_default=False)] = None,
    json: JsonOption = False, timeout: Timeout = 30, admin_host: AdminHost = None,
    admin_port: AdminPort = None, data_dir: DataDirOption = None,
) -> None:
    """Read configuration keys of a 1.6 station (all when none named); the answer is
    stored as the station's device model (csms stations variables)."""
    to = target(json, timeout, admin_host, admin_port, data_dir)
    _command(station, "get-config", {"keys": keys or []}, to)


@remote_app.command("set-config")
def set_config(
    station: Station, key: str, value: str,
    json: JsonOption = False, timeout: Timeout = 30, admin_host: AdminHost = None,
    admin_port: AdminPort = None, data_dir: DataDirOption = None,
) -> None:
    """Change one configuration key of a 1.6 station (checked against its stored
    configuration: a ReadOnly key is refused, one it did not report is sent with a
    warning)."""
    to = target(json, timeout, admin_host, admin_port, data_dir)
    _command(station, "set-config", {"key": key, "value": value}, to)


@remote_app.command("get-variables")
def get_variables(
    station: Station,
    variables: Annotated[list[str], typer.Argument(help="COMPONENT.VARIABLE ...")],
    json: JsonOption = False, timeout: Timeout = 30, admin_host: AdminHost = None,
    admin_port: AdminPort = None, data_dir: DataDirOption = None,
) -> None:
    """Read variables of a 2.0.1 station."""
    to = target(json, timeout, admin_host, admin_port, data_dir)
    _command(station, "get-variables", {"variables": variables}, to)


@remote_app.command("set-variables")
def set_variables(
    station: Station,
    assignments: Annotated[list[str], typer.Argument(help="COMPONENT.VARIABLE=VALUE ...")],
    json: JsonOption = False, timeout: Timeout = 30, admin_host: AdminHost = None,
    admin_port: AdminPort = None, data_dir: DataDirOption = None,
) -> None:
    """Set variables of a 2.0.1 station."""
    values: dict[str, str] = {}
    for a in assignments:
        name, eq, value = a.partition("=")
        if not eq:
            raise typer.BadParameter(f"expected COMPONENT.VARIABLE=VALUE, got {a!r}")
        values[name] = value
    to = target(json, timeout, admin_host, admin_port, data_dir)
    _command(station, "set-variables", {"values": values}, to)


@remote_app.command("set-profile")
def set_profile(
    station: Station,
    limit: Annotated[float, typer.Option(min=0, help="Power (W) or current (A) limit")],
    unit: Annotated[str, typer.Option(help="W or A")] = "W",
    connector: Annotated[int, typer.Option(min=0, help="0 = the whole station")] = 0,
    schedule: Annotated[
        str | None, typer.Option(help="Periods as 'SECONDS:LIMIT,...', e.g. '0:11000,3600:7400'")
    ] = None,
    json: JsonOption = False, timeout: Timeout = 30, admin_host: AdminHost = None,
    admin_port: AdminPort = None, data_dir: DataDirOption = None,
) -> None:
    """Limit charging power or current with a default charging profile."""
    if unit.upper() not in ("W", "A"):
        raise typer.BadParameter("W or A", param_hint="--unit")
    args: dict[str, Any] = {"limit": limit, "unit": unit.upper(), "connector": connector}
    if schedule:
        try:
            args["schedule"] = [
                [int(p.split(":")[0]), float(p.split(":")[1])] for p in schedule.split(",")
            ]
        except (ValueError, IndexError):
            raise typer.BadParameter("use SECONDS:LIMIT,...", param_hint="--schedule") from None
    _command(station, "set-profile", args, target(json, timeout, admin_host, admin_port, data_dir))


@remote_app.command("clear-profile")
def clear_profile(
    station: Station, profile_id: Annotated[int | None, typer.Option(
        min=0, help="The charging profile to remove [default: all]")] = None,
    json: JsonOption = False, timeout: Timeout = 30, admin_host: AdminHost = None,
    admin_port: AdminPort = None, data_dir: DataDirOption = None,
) -> None:
    """Remove charging profiles (all, or one by id)."""
    _command(station, "clear-profile", {} if profile_id is None else {"profile_id": profile_id},
             target(json, timeout, admin_host, admin_port, data_dir))


@remote_app.command("data-transfer")
def data_transfer(
    station: Station, vendor: str,
    message_id: Annotated[str | None, typer.Option(help="The vendor's message id")] = None,
    data: Annotated[str | None, typer.Option(help="The data, as text")] = None,
    json: JsonOption = False, timeout: Timeout = 30, admin_host: AdminHost = None,
    admin_port: AdminPort = None, data_dir: DataDirOption = None,
) -> None:
    """Send a vendor-specific DataTransfer."""
    _command(station, "data-transfer", {"vendor": vendor, "message_id": message_id, "data": data},
             target(json, timeout, admin_host, admin_port, data_dir))


@remote_app.command("send-local-list")
def send_local_list(
    station: Station, json: JsonOption = False, timeout: Timeout = 30,
    admin_host: AdminHost = None, admin_port: AdminPort = None, data_dir: DataDirOption = None,
) -> None:
    """Push the full local authorization list (all id tags) to a station."""
    to = target(json, timeout, admin_host, admin_port, data_dir)
    _command(station, "send-local-list", {}, to)


@remote_app.command("local-list-version")
def local_list_version(
    station: Station, json: JsonOption = False, timeout: Timeout = 30,
    admin_host: AdminHost = None, admin_port: AdminPort = None, data_dir: DataDirOption = None,
) -> None:
    """Ask a station for the version of its local authorization list."""
    to = target(json, timeout, admin_host, admin_port, data_dir)
    _command(station, "local-list-version", {}, to)


def set_password(
    station: Annotated[str, typer.Argument(help="The station's id")],
    password: Annotated[
        str | None, typer.Option(help="The new password (16-40 chars) [default: generated]")
    ] = None,
    json: JsonOption = False, timeout: Timeout = 30, admin_host: AdminHost = None,
    admin_port: AdminPort = None, data_dir: DataDirOption = None,
) -> None:
    """Rotate a station's password: pushed to it, switched once it accepts.

    1.6: ChangeConfiguration AuthorizationKey; 2.0.1: SetVariables
    SecurityCtrlr.BasicAuthPassword.
    """
    import secrets

    from csms.service.auth import validate_password

    generated = password is None
    new = password or secrets.token_urlsafe(24)[:32]
    try:
        validate_password(new)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--password") from None
    to = target(json, timeout, admin_host, admin_port, data_dir)
    status, result = admin_request(
        to.settings, "POST", f"/stations/{quote(station, safe='')}/commands/set-password",
        {"password": new, "timeout": timeout}, timeout=timeout + 5,
    )
    if status == 409 and _unknown_station(to, station):
        fail(f"no station {station!r} (csms stations list shows the known ones)")
    if status != 200:
        fail(result.get("error", f"admin API answered HTTP {status}"), 2 if status == 400 else 1)
    if json:
        print_json({**result, **({"password": new} if generated else {})})
    elif result.get("switched"):
        say(station, ": ", (str(result["status"]), "bold"), "; the new password is in use")
        if generated:
            console.print(f"new password (shown once): {new}", markup=False)
    else:
        fail(f"{station} answered {result['status']}: the old password stays in use", 1)


def _check_time(text: str, option: str) -> str:
    """A time option checked here already (RFC 3339 or +2h); sent as given."""
    from datetime import UTC, datetime

    from csms.domain.maintenance import parse_when

    try:
        parse_when(text, datetime.now(UTC))
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint=option) from None
    return text


@remote_app.command("reserve")
def reserve(
    station: Station,
    tag: Annotated[str, typer.Option(help="The id tag the connector is kept for")],
    until: Annotated[str, typer.Option(
        help="When the reservation ends: RFC 3339 (2026-05-01T18:00:00Z) or relative"
        " (+2h, +30m); at most 7 days ahead")],
    connector: Annotated[int, typer.Option(
        min=0, help="Connector (EVSE in 2.0.1); 0: any")] = 0,
    json: JsonOption = False, timeout: Timeout = 30, admin_host: AdminHost = None,
    admin_port: AdminPort = None, data_dir: DataDirOption = None,
) -> None:
    """Reserve a connector for a tag until a time (ReserveNow); prints the reservation id.

    The station keeps the connector for that tag; a transaction by another tag on it is
    refused. The reservation ends when the tag starts charging, when it expires or when
    it is cancelled (csms remote cancel-reservation; csms reservations list)."""
    to = target(json, timeout, admin_host, admin_port, data_dir)
    _command(station, "reserve", {"tag": tag, "until": _check_time(until, "--until"),
                                  "connector": connector}, to)


@remote_app.command("cancel-reservation")
def cancel_reservation(
    station: Station,
    reservation: Annotated[int, typer.Argument(min=1, max=MAX_ID,
                                               help="The reservation id")],
    json: JsonOption = False, timeout: Timeout = 30, admin_host: AdminHost = None,
    admin_port: AdminPort = None, data_dir: DataDirOption = None,
) -> None:
    """Cancel a live reservation (CancelReservation)."""
    to = target(json, timeout, admin_host, admin_port, data_dir)
    _command(station, "cancel-reservation", {"reservation": reservation}, to)
