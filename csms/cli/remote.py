"""``csms remote ...``: live commands to stations through the running server's admin API."""

from __future__ import annotations

import urllib.error
import urllib.request
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

import orjson
import typer

from csms.cli.common import JsonOption, console, fail, print_json, settings_for

__all__ = ["admin_request", "remote_app"]

remote_app = typer.Typer(
    help="Live commands to connected stations (needs a running `csms serve`).",
    no_args_is_help=True,
)

AdminUrl = Annotated[
    str | None,
    typer.Option("--admin-url", help="Admin API [default: http://127.0.0.1:<CSMS_ADMIN_PORT>]"),
]
Timeout = Annotated[float, typer.Option(min=0.1, help="Seconds to wait for the station")]


def admin_request(
    method: str, path: str, body: dict[str, Any] | None = None, *,
    admin_url: str | None = None, timeout: float = 35.0,
) -> tuple[int, Any]:
    settings = settings_for(None)
    base = admin_url or f"http://{settings.admin_host}:{settings.admin_port}"
    try:
        token = settings.admin_token_path.read_text("utf-8").strip()
    except FileNotFoundError:
        fail(f"no admin token in {settings.admin_token_path}: is `csms serve` running with"
             " the same data dir (CSMS_DATA_DIR)?", 1)
    data = orjson.dumps(body) if body is not None else None
    request = urllib.request.Request(
        base.rstrip("/") + path, data=data, method=method,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json",
                 "X-Actor": "cli"},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, orjson.loads(response.read())
    except urllib.error.HTTPError as exc:
        try:
            return exc.code, orjson.loads(exc.read())
        except orjson.JSONDecodeError:
            return exc.code, {"error": exc.reason}
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        fail(f"cannot reach the csms admin API at {base} ({reason}): is `csms serve` running?", 1)


def _command(station: str, command: str, args: dict[str, Any], json: bool, timeout: float,
             admin_url: str | None) -> None:
    status, result = admin_request(
        "POST", f"/stations/{quote(station, safe='')}/commands/{command}",
        {**args, "timeout": timeout}, admin_url=admin_url, timeout=timeout + 5,
    )
    if json:
        print_json(result)
        if status != 200:
            raise typer.Exit(1 if status != 400 else 2)
        return
    if status == 200:
        console.print(f"{station}: [bold]{result['status']}[/] ({result['action']})")
        response = result.get("response") or {}
        if response and set(response) != {"status"}:
            print_json(response)
        return
    if status == 400:
        fail(result.get("error", "bad request"))
    fail(result.get("error", f"admin API answered HTTP {status}"), 1)


@remote_app.command("start")
def start(
    station: str,
    tag: Annotated[str, typer.Option(help="Id tag to charge with")],
    connector: Annotated[int | None, typer.Option(min=1, help="Connector (EVSE in 2.0.1)")] = None,
    authorization: Annotated[str | None, typer.Option(
        help="A driver's signed app-session authorization (JSON file from csms wallet"
        " authorize): the session is paid under it")] = None,
    json: JsonOption = False, timeout: Timeout = 30, admin_url: AdminUrl = None,
) -> None:
    """Start a session remotely (1.6 RemoteStartTransaction, 2.0.1 RequestStartTransaction).

    A tag linked to a driver starts only when the driver's escrow covers it."""
    args: dict[str, Any] = {"tag": tag}
    if connector is not None:
        args["connector"] = connector
    if authorization is not None:
        try:
            args["authorization"] = orjson.loads(Path(authorization).read_bytes())
        except (OSError, ValueError) as exc:
            fail(f"cannot read the authorization {authorization}: {exc}")
    _command(station, "start", args, json, timeout, admin_url)


@remote_app.command("stop")
def stop(
    station: str,
    session: Annotated[int | None, typer.Argument(help="Session id [default: the active one]")]
    = None,
    json: JsonOption = False, timeout: Timeout = 30, admin_url: AdminUrl = None,
) -> None:
    """Stop a session remotely (1.6 RemoteStopTransaction, 2.0.1 RequestStopTransaction)."""
    _command(station, "stop", {} if session is None else {"session": session}, json, timeout,
             admin_url)


@remote_app.command("reset")
def reset(
    station: str,
    hard: Annotated[bool, typer.Option("--hard/--soft", help="Hard (immediate) or soft reset")]
    = False,
    json: JsonOption = False, timeout: Timeout = 30, admin_url: AdminUrl = None,
) -> None:
    """Reset a station."""
    _command(station, "reset", {"hard": hard}, json, timeout, admin_url)


@remote_app.command("unlock")
def unlock(
    station: str,
    connector: Annotated[int, typer.Option(min=1, help="Connector (EVSE in 2.0.1)")] = 1,
    json: JsonOption = False, timeout: Timeout = 30, admin_url: AdminUrl = None,
) -> None:
    """Unlock a connector."""
    _command(station, "unlock", {"connector": connector}, json, timeout, admin_url)


@remote_app.command("availability")
def availability(
    station: str,
    state: Annotated[str, typer.Argument(help="operative or inoperative")],
    connector: Annotated[int, typer.Option(min=0, help="0 = the whole station")] = 0,
    json: JsonOption = False, timeout: Timeout = 30, admin_url: AdminUrl = None,
) -> None:
    """Make a station or connector operative or inoperative."""
    if state.lower() not in ("operative", "inoperative"):
        raise typer.BadParameter("operative or inoperative", param_hint="STATE")
    _command(station, "availability", {"state": state, "connector": connector}, json, timeout,
             admin_url)


@remote_app.command("trigger")
def trigger(
    station: str,
    message: Annotated[str, typer.Argument(help="e.g. StatusNotification, MeterValues, Heartbeat")],
    connector: Annotated[int | None, typer.Option(min=0)] = None,
    json: JsonOption = False, timeout: Timeout = 30, admin_url: AdminUrl = None,
) -> None:
    """Ask a station to send a message now (TriggerMessage)."""
    args: dict[str, Any] = {"message": message}
    if connector is not None:
        args["connector"] = connector
    _command(station, "trigger", args, json, timeout, admin_url)


@remote_app.command("get-config")
def get_config(
    station: str, keys: Annotated[list[str] | None, typer.Argument()] = None,
    json: JsonOption = False, timeout: Timeout = 30, admin_url: AdminUrl = None,
) -> None:
    """Read configuration keys of a 1.6 station (all when none named)."""
    _command(station, "get-config", {"keys": keys or []}, json, timeout, admin_url)


@remote_app.command("set-config")
def set_config(
    station: str, key: str, value: str,
    json: JsonOption = False, timeout: Timeout = 30, admin_url: AdminUrl = None,
) -> None:
    """Change one configuration key of a 1.6 station."""
    _command(station, "set-config", {"key": key, "value": value}, json, timeout, admin_url)


@remote_app.command("get-variables")
def get_variables(
    station: str,
    variables: Annotated[list[str], typer.Argument(help="COMPONENT.VARIABLE ...")],
    json: JsonOption = False, timeout: Timeout = 30, admin_url: AdminUrl = None,
) -> None:
    """Read variables of a 2.0.1 station."""
    _command(station, "get-variables", {"variables": variables}, json, timeout, admin_url)


@remote_app.command("set-variables")
def set_variables(
    station: str,
    assignments: Annotated[list[str], typer.Argument(help="COMPONENT.VARIABLE=VALUE ...")],
    json: JsonOption = False, timeout: Timeout = 30, admin_url: AdminUrl = None,
) -> None:
    """Set variables of a 2.0.1 station."""
    values: dict[str, str] = {}
    for a in assignments:
        name, eq, value = a.partition("=")
        if not eq:
            raise typer.BadParameter(f"expected COMPONENT.VARIABLE=VALUE, got {a!r}")
        values[name] = value
    _command(station, "set-variables", {"values": values}, json, timeout, admin_url)


@remote_app.command("set-profile")
def set_profile(
    station: str,
    limit: Annotated[float, typer.Option(min=0, help="Power (W) or current (A) limit")],
    unit: Annotated[str, typer.Option(help="W or A")] = "W",
    connector: Annotated[int, typer.Option(min=0, help="0 = the whole station")] = 0,
    schedule: Annotated[
        str | None, typer.Option(help="Periods as 'SECONDS:LIMIT,...', e.g. '0:11000,3600:7400'")
    ] = None,
    json: JsonOption = False, timeout: Timeout = 30, admin_url: AdminUrl = None,
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
    _command(station, "set-profile", args, json, timeout, admin_url)


@remote_app.command("clear-profile")
def clear_profile(
    station: str, profile_id: Annotated[int | None, typer.Option(min=0)] = None,
    json: JsonOption = False, timeout: Timeout = 30, admin_url: AdminUrl = None,
) -> None:
    """Remove charging profiles (all, or one by id)."""
    _command(station, "clear-profile", {} if profile_id is None else {"profile_id": profile_id},
             json, timeout, admin_url)


@remote_app.command("data-transfer")
def data_transfer(
    station: str, vendor: str,
    message_id: Annotated[str | None, typer.Option()] = None,
    data: Annotated[str | None, typer.Option()] = None,
    json: JsonOption = False, timeout: Timeout = 30, admin_url: AdminUrl = None,
) -> None:
    """Send a vendor-specific DataTransfer."""
    _command(station, "data-transfer", {"vendor": vendor, "message_id": message_id, "data": data},
             json, timeout, admin_url)


@remote_app.command("send-local-list")
def send_local_list(
    station: str, json: JsonOption = False, timeout: Timeout = 30, admin_url: AdminUrl = None,
) -> None:
    """Push the full local authorization list (all id tags) to a station."""
    _command(station, "send-local-list", {}, json, timeout, admin_url)


@remote_app.command("local-list-version")
def local_list_version(
    station: str, json: JsonOption = False, timeout: Timeout = 30, admin_url: AdminUrl = None,
) -> None:
    """Ask a station for the version of its local authorization list."""
    _command(station, "local-list-version", {}, json, timeout, admin_url)




def set_password(
    station: Annotated[str, typer.Argument(metavar="ID")],
    password: Annotated[
        str | None, typer.Option(help="The new password (16-40 chars) [default: generated]")
    ] = None,
    json: JsonOption = False, timeout: Timeout = 30, admin_url: AdminUrl = None,
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
    status, result = admin_request(
        "POST", f"/stations/{quote(station, safe='')}/commands/set-password",
        {"password": new, "timeout": timeout}, admin_url=admin_url, timeout=timeout + 5,
    )
    if status != 200:
        fail(result.get("error", f"admin API answered HTTP {status}"), 2 if status == 400 else 1)
    if json:
        print_json({**result, **({"password": new} if generated else {})})
    elif result.get("switched"):
        console.print(f"{station}: [bold]{result['status']}[/]; the new password is in use")
        if generated:
            console.print(f"new password (shown once): {new}", markup=False)
    else:
        fail(f"{station} answered {result['status']}: the old password stays in use", 1)
