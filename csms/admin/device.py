"""The device model around the operator's commands: a report asked for gets a request id
the station's NotifyReport parts must carry; GetVariables / SetVariables (2.0.1) and
ChangeConfiguration (1.6) are checked against the stored model before they are sent, and
what the station answers is written back (a 1.6 GetConfiguration answer becomes the
station's model); monitors set or cleared are kept (csms.service.device_model)."""

from __future__ import annotations

from typing import Any

from csms.service.device_model import DeviceModel, ModelRefusal
from csms.service.ports import Repository
from csms.translate.commands import CommandError, is_secret_name

__all__ = ["prepare", "record"]

# command -> the kind of report its request id stands for
REPORTS = {"get-base-report": "base", "get-report": "custom",
           "get-monitoring-report": "monitoring"}
# 1.6 ChangeConfiguration answers after which the key has the new value (1.6 §7.9:
# RebootRequired: changed, effective after a reboot)
CHANGED = ("Accepted", "RebootRequired")


async def prepare(repo: Repository, station_id: str, command: str,
                  args: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
    """The command's arguments, checked against the device model, with a request id; and
    a warning (one line) for a command sent although the model cannot vouch for it."""
    model = DeviceModel(repo)
    warning = None
    try:
        if command == "set-variables" and isinstance(args.get("values"), dict):
            await model.check_set(station_id, args["values"])
        elif command == "get-variables" and isinstance(args.get("variables"), list):
            await model.check_get(station_id, [str(n) for n in args["variables"]])
        elif command == "set-config" and isinstance(args.get("key"), str):
            warning = await model.check_change(station_id, args["key"],
                                               str(args.get("value", "")))
    except ModelRefusal as exc:
        raise CommandError(str(exc)) from None
    if command in REPORTS:
        args = {**args, "request_id": await model.request_report(station_id, REPORTS[command])}
    return args, warning


async def record(repo: Repository, station_id: str, command: str, args: dict[str, Any],
                 payload: dict[str, Any], response: dict[str, Any]) -> None:
    """Keep what the station's answer says about its device model."""
    model = DeviceModel(repo)
    if command in ("get-variables", "set-variables"):
        await model.record_results(station_id, response, args.get("values"))
    elif command == "set-monitoring":
        await model.monitors_set(station_id, payload.get("setMonitoringData") or [], response)
    elif command == "clear-monitoring":
        await model.monitors_cleared(station_id, response)
    elif command == "get-config":
        await model.record_configuration(station_id, response,
                                         [str(k) for k in payload.get("key") or []],
                                         is_secret_name)
    elif command == "set-config" and response.get("status") in CHANGED:
        key = str(payload.get("key", ""))
        await model.configuration_changed(
            station_id, key, None if is_secret_name(key) else str(payload.get("value", "")))
