"""The device model around the operator's commands (2.0.1): a report asked for gets a
request id the station's NotifyReport parts must carry; GetVariables / SetVariables are
checked against the stored model before they are sent, and what the station answers is
written back; monitors set or cleared are kept (csms.service.device_model)."""

from __future__ import annotations

from typing import Any

from csms.service.device_model import DeviceModel, ModelRefusal
from csms.service.ports import Repository
from csms.translate.commands import CommandError

__all__ = ["prepare", "record"]

# command -> the kind of report its request id stands for
REPORTS = {"get-base-report": "base", "get-report": "custom",
           "get-monitoring-report": "monitoring"}


async def prepare(repo: Repository, station_id: str, command: str,
                  args: dict[str, Any]) -> dict[str, Any]:
    """The command's arguments, checked against the device model, with a request id."""
    model = DeviceModel(repo)
    try:
        if command == "set-variables" and isinstance(args.get("values"), dict):
            await model.check_set(station_id, args["values"])
        elif command == "get-variables" and isinstance(args.get("variables"), list):
            await model.check_get(station_id, [str(n) for n in args["variables"]])
    except ModelRefusal as exc:
        raise CommandError(str(exc)) from None
    if command in REPORTS:
        return {**args, "request_id": await model.request_report(station_id, REPORTS[command])}
    return args


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
