"""What a station chose (vendor, model, firmware, serial numbers, idTags, a fault's info, a
DataTransfer's text, a security event's or a notification's technical info, a reported
variable's value) reaches the operator's terminal as text: every command that prints what
is stored, found by walking the command tree, shows it with its control characters
escaped (no terminal sequence, no line of the station's making) and never as Rich markup;
with ``--json`` it prints valid JSON and nothing else."""

from __future__ import annotations

import asyncio
import sys
import traceback
from typing import Any

import orjson
from typer.testing import CliRunner

from csms.cli import main
from support import RunningServer
from support.cli_tree import leaves
from support.client import RawClient

# an OSC 8 hyperlink that hides where it goes, a cleared screen, a line of its own, a bell,
# a CSI in its 8-bit form, a right-to-left override, and Rich markup
HOSTILE = ["\x1b]8;;http://e\x1b\\PAY", "\x1b[2J\x1b[HOK", "a\rERROR b", "x\x07\x9b2J",
           "fw\u202egpj.exe", "[red]M[/red]", "[/]"]
# what fills the arguments of a command that shows one thing
ARGUMENTS = {"station": "CP1", "station_id": "CP1", "session_id": "1", "session": "1"}


def unshown(text: str) -> list[str]:
    """The characters a terminal would obey rather than show."""
    return sorted({c for c in text if c != "\n" and (c < " " or "\x7f" <= c <= "\x9f"
                                                      or c in "\u202e\u202d\u2066\u2067")})


async def hostile_station(server: RunningServer) -> None:
    """CP1 (OCPP 1.6) and CP2 (2.0.1) send their own strings in every field they may."""
    await server.add_station("CP1")
    await server.add_station("CP2")
    await server.add_tariff()
    text = "".join(HOSTILE)
    async with await RawClient.connect(server.url, "CP1") as c:
        await c.result("BootNotification", {
            "chargePointVendor": HOSTILE[0], "chargePointModel": HOSTILE[1],
            "firmwareVersion": HOSTILE[4], "chargePointSerialNumber": HOSTILE[5],
            "chargeBoxSerialNumber": HOSTILE[6], "iccid": HOSTILE[2],
            "imsi": HOSTILE[3], "meterType": HOSTILE[5], "meterSerialNumber": HOSTILE[0]})
        await c.result("StatusNotification", {
            "connectorId": 1, "errorCode": "OtherError", "status": "Faulted",
            "info": HOSTILE[2], "vendorId": HOSTILE[5], "vendorErrorCode": HOSTILE[3]})
        await c.result("DataTransfer", {"vendorId": HOSTILE[0], "messageId": HOSTILE[5],
                                        "data": text})
        await c.result("SecurityEventNotification", {
            "type": HOSTILE[5], "timestamp": "2026-01-01T10:00:00Z", "techInfo": text})
        started = await c.result("StartTransaction", {
            "connectorId": 2, "idTag": "[red]M[/red]\x1b[2J", "meterStart": 0,
            "timestamp": "2026-01-01T10:00:00Z"})
        await c.result("StopTransaction", {
            "transactionId": started["transactionId"], "meterStop": 1000,
            "timestamp": "2026-01-01T10:30:00Z", "idTag": "x\x1b]8;;http://e\x1b\\"})
    async with await RawClient.connect(server.url, "CP2", protocols=["ocpp2.0.1"]) as c:
        await c.result("BootNotification", {"reason": "PowerUp", "chargingStation": {
            "model": HOSTILE[1], "vendorName": HOSTILE[0], "firmwareVersion": HOSTILE[4],
            "serialNumber": HOSTILE[6]}})
        await c.result("NotifyEvent", {
            "generatedAt": "2026-01-01T10:00:00Z", "seqNo": 0, "eventData": [{
                "eventId": 1, "timestamp": "2026-01-01T10:00:00Z", "trigger": "Delta",
                "actualValue": HOSTILE[0], "techInfo": text, "eventNotificationType":
                "HardWiredNotification", "component": {"name": HOSTILE[5][:50]},
                "variable": {"name": HOSTILE[1][:50]}}]})
        await c.result("SecurityEventNotification", {
            "type": HOSTILE[2], "timestamp": "2026-01-01T10:00:00Z", "techInfo": text})
        await c.result("NotifyReport", {
            "requestId": 1, "generatedAt": "2026-01-01T10:00:00Z", "seqNo": 0,
            "reportData": [{"component": {"name": HOSTILE[5]}, "variable": {"name": "[/]"},
                            "variableAttribute": [{"value": text[:2500]}]}]})



def invoke(args: tuple[str, ...], env: dict[str, str | None]) -> tuple[int, str, str]:
    """``csms ARGS`` as the entry point runs it, in this process: its exit code and output
    (an exception that escaped it, as a traceback on stderr)."""
    code = 0
    with CliRunner().isolation(env=env) as (out, err, _):
        try:
            main(list(args))
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        except Exception:
            sys.stderr.write(traceback.format_exc())
            code = -1
        sys.stdout.flush()
        sys.stderr.flush()
        return code, out.getvalue().decode(), err.getvalue().decode()


def printing() -> list[tuple[tuple[str, ...], Any]]:
    """The commands that print what the database holds: a ``--json`` flag, and nothing
    required but the station or the session they show."""
    found = []
    for path, command in leaves():
        names = {p.name for p in command.params}
        if not {"json", "json_"} & names or "db" not in names or {
                "chain", "admin_port", "keystore"} & names:
            continue  # no list, or one of what a server or a chain holds
        if all(p.name in ARGUMENTS for p in command.params if p.required):
            found.append((path, command))
    return found


def arguments(command: Any) -> list[str]:
    args: list[str] = []
    for p in command.params:
        if p.required:
            args += [ARGUMENTS[p.name]] if p.param_type_name == "argument" else [
                p.opts[0], ARGUMENTS[p.name]]
    if "wide" in {p.name for p in command.params}:
        args.append("--wide")
    return args


async def test_a_station_s_text_is_shown_as_text_by_every_command(
        csms_server: RunningServer) -> None:
    await hostile_station(csms_server)
    commands = printing()
    assert len(commands) >= 15, [p for p, _ in commands]  # the walk found them
    env: dict[str, str | None] = {"CSMS_DB": csms_server.settings.db,
                                  "CSMS_DATA_DIR": csms_server.settings.data_dir,
                                  "COLUMNS": "400"}
    problems: list[str] = []
    shown_markup = False
    for path, command in commands:
        args = (*path, *arguments(command))
        for call in (args, (*args, "--json")):
            code, stdout, stderr = await asyncio.to_thread(invoke, call, env)
            said = f"csms {' '.join(call)}"
            if "Traceback" in stderr:
                problems.append(f"{said}: a traceback\n{stderr[-800:]}")
                continue
            if bad := unshown(stdout + stderr):
                problems.append(f"{said}: {bad} reached the terminal\n{stdout[-600:]!r}")
            if code != 0:
                problems.append(f"{said}: exit {code} {stderr[-300:]}")
            elif "--json" in call:
                try:
                    orjson.loads(stdout)
                except orjson.JSONDecodeError:
                    problems.append(f"{said}: not JSON\n{stdout[:300]!r}")
            elif "[red]M[/red]" in stdout:
                shown_markup = True
    assert not problems, "\n\n".join(problems)
    assert shown_markup  # the markup is shown as it is, not read as a style
