"""The OCPP coverage table (docs/ocpp-coverage.md), generated from the code.

Run ``python -m csms.coverage`` to print it, ``--write`` to update the doc. Every action
comes from the official JSON schemas shipped by the ``ocpp`` package (1.6 with the security
extension, 2.0.1 Part 2); the other columns are read from the code, never written by hand:

* handled: a station's message has a route (csms.translate ``routes_for``); a central
  system's message is the CALL of an operator command's builder (csms.translate.commands)
  or a follow-up the central system sends by itself after answering a station
  (``after_reply(station, "Action", ...)``, e.g. CertificateSigned);
* operator command: the ``csms`` command that sends it;
* simulator: the simulated station (chargers_sim) answers it, or sends it (its code names
  the action);
* tested: test files under tests/integration and tests/e2e that name the action as a
  string literal together with the version (a real server, real sockets); "sim" marks
  an action the simulated station handles, named in a file that drives it (file-level:
  the file may also use raw frames);
* interop: a script of the strict ocpp-rpc client (tests/e2e/interop/*.js) exercises it
  for the version: the script sends it (``cli.call('Action', ...)``) or answers it
  (``cli.handle('Action', ...)``, or its own ``answer('Action', ...)`` function) in the code
  that runs for that version (a script branches on ``protocol === 'ocpp1.6'``, or speaks
  one version only: ``protocols: ['ocpp2.0.1']``), and a Python test under tests/e2e
  runs the script (names its file);
* block: the functional block of 2.0.1 Part 2 (A Security ... P DataTransfer) or the 1.6
  feature profile (Core ... RemoteTrigger, and Security for the security extension).

Each version's section also says what a station whose BootNotification was answered
Pending or Rejected may send (the ``rule`` of its csms.translate ``boot_gate_for``).

Which side starts each message and which block it belongs to is protocol knowledge (the
specifications' message lists and their functional blocks / feature profiles), the two
tables here written by hand.
"""

from __future__ import annotations

import ast
import inspect
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from csms.protocol import OcppVersion
from csms.translate import boot_gate_for, routes_for
from csms.translate.commands import COMMANDS, builder_for

__all__ = ["BLOCKS", "DOC", "Row", "actions", "block_of", "block_summary", "render", "rows",
           "uncovered_blocks"]

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "ocpp-coverage.md"

# The schemas' folder and file suffix of a request, per version.
_SCHEMAS: dict[OcppVersion, tuple[str, str]] = {
    OcppVersion.V16: ("v16", ""), OcppVersion.V201: ("v201", "Request"),
}
# Messages a station sends (1.6 §4 and the security whitepaper; 2.0.1 Part 2 §1); every
# other action is sent by the central system. DataTransfer goes both ways.
_FROM_STATION: dict[OcppVersion, frozenset[str]] = {
    OcppVersion.V16: frozenset({
        "Authorize", "BootNotification", "DataTransfer", "DiagnosticsStatusNotification",
        "FirmwareStatusNotification", "Heartbeat", "LogStatusNotification", "MeterValues",
        "SecurityEventNotification", "SignCertificate", "SignedFirmwareStatusNotification",
        "StartTransaction", "StatusNotification", "StopTransaction"}),
    OcppVersion.V201: frozenset({
        "Authorize", "BootNotification", "ClearedChargingLimit", "DataTransfer",
        "FirmwareStatusNotification", "Get15118EVCertificate", "GetCertificateStatus",
        "Heartbeat", "LogStatusNotification", "MeterValues", "NotifyChargingLimit",
        "NotifyCustomerInformation", "NotifyDisplayMessages", "NotifyEVChargingNeeds",
        "NotifyEVChargingSchedule", "NotifyEvent", "NotifyMonitoringReport", "NotifyReport",
        "PublishFirmwareStatusNotification", "ReportChargingProfiles",
        "ReservationStatusUpdate", "SecurityEventNotification", "SignCertificate",
        "StatusNotification", "TransactionEvent"}),
}
_BOTH_WAYS = frozenset({"DataTransfer"})
# How a version is named in a test file (any of these string literals).
_VERSION_NAMES: dict[OcppVersion, frozenset[str]] = {
    OcppVersion.V16: frozenset({"ocpp1.6", "1.6"}),
    OcppVersion.V201: frozenset({"ocpp2.0.1", "2.0.1"}),
}
# The simulator's per-version modules end with the version; the others serve both.
_SIM_SUFFIX: dict[OcppVersion, str] = {OcppVersion.V16: "v16", OcppVersion.V201: "v201"}

# The functional block of each action: 1.6 §3 "Feature Profiles" (and the security
# whitepaper's messages, Security), 2.0.1 Part 2 functional blocks A-P (the block whose use
# cases define the message).
_V16_PROFILES: dict[str, tuple[str, ...]] = {
    "Core": ("Authorize", "BootNotification", "ChangeAvailability", "ChangeConfiguration",
             "ClearCache", "DataTransfer", "GetConfiguration", "Heartbeat", "MeterValues",
             "RemoteStartTransaction", "RemoteStopTransaction", "Reset", "StartTransaction",
             "StatusNotification", "StopTransaction", "UnlockConnector"),
    "FirmwareManagement": ("DiagnosticsStatusNotification", "FirmwareStatusNotification",
                           "GetDiagnostics", "UpdateFirmware"),
    "LocalAuthListManagement": ("GetLocalListVersion", "SendLocalList"),
    "Reservation": ("CancelReservation", "ReserveNow"),
    "SmartCharging": ("ClearChargingProfile", "GetCompositeSchedule", "SetChargingProfile"),
    "RemoteTrigger": ("TriggerMessage",),
    "Security": ("CertificateSigned", "DeleteCertificate", "ExtendedTriggerMessage",
                 "GetInstalledCertificateIds", "GetLog", "InstallCertificate",
                 "LogStatusNotification", "SecurityEventNotification", "SignCertificate",
                 "SignedFirmwareStatusNotification", "SignedUpdateFirmware"),
}
_V201_BLOCKS: dict[str, tuple[str, ...]] = {
    "A Security": ("CertificateSigned", "SecurityEventNotification", "SignCertificate"),
    "B Provisioning": ("BootNotification", "GetBaseReport", "GetReport", "GetVariables",
                       "NotifyReport", "Reset", "SetNetworkProfile", "SetVariables"),
    "C Authorization": ("Authorize", "ClearCache"),
    "D LocalAuthorizationListManagement": ("GetLocalListVersion", "SendLocalList"),
    "E Transactions": ("GetTransactionStatus", "TransactionEvent"),
    "F RemoteControl": ("RequestStartTransaction", "RequestStopTransaction", "TriggerMessage",
                        "UnlockConnector"),
    "G Availability": ("ChangeAvailability", "Heartbeat", "StatusNotification"),
    "H Reservation": ("CancelReservation", "ReservationStatusUpdate", "ReserveNow"),
    "I TariffAndCost": ("CostUpdated",),
    "J MeterValues": ("MeterValues",),
    "K SmartCharging": ("ClearChargingProfile", "ClearedChargingLimit", "GetChargingProfiles",
                        "GetCompositeSchedule", "NotifyChargingLimit", "NotifyEVChargingNeeds",
                        "NotifyEVChargingSchedule", "ReportChargingProfiles",
                        "SetChargingProfile"),
    "L FirmwareManagement": ("FirmwareStatusNotification", "PublishFirmware",
                             "PublishFirmwareStatusNotification", "UnpublishFirmware",
                             "UpdateFirmware"),
    "M ISO15118CertificateManagement": ("DeleteCertificate", "Get15118EVCertificate",
                                        "GetCertificateStatus", "GetInstalledCertificateIds",
                                        "InstallCertificate"),
    "N Diagnostics": ("ClearVariableMonitoring", "CustomerInformation", "GetLog",
                      "GetMonitoringReport", "LogStatusNotification", "NotifyCustomerInformation",
                      "NotifyEvent", "NotifyMonitoringReport", "SetMonitoringBase",
                      "SetMonitoringLevel", "SetVariableMonitoring"),
    "O DisplayMessage": ("ClearDisplayMessage", "GetDisplayMessages", "NotifyDisplayMessages",
                         "SetDisplayMessage"),
    "P DataTransfer": ("DataTransfer",),
}
_BLOCK_WORD = {OcppVersion.V16: "feature profile", OcppVersion.V201: "functional block"}
BLOCKS: dict[OcppVersion, dict[str, tuple[str, ...]]] = {
    OcppVersion.V16: _V16_PROFILES, OcppVersion.V201: _V201_BLOCKS,
}


def block_of(version: OcppVersion, action: str) -> str:
    """The functional block (2.0.1) or feature profile (1.6) of an action."""
    for block, names in BLOCKS[version].items():
        if action in names:
            return block
    raise KeyError(f"{version.short} {action} has no functional block")


def actions(version: OcppVersion) -> list[str]:
    """Every action of the version: one request schema each."""
    folder, suffix = _SCHEMAS[version]
    names = []
    for entry in resources.files("ocpp").joinpath(folder, "schemas").iterdir():
        stem = entry.name.removesuffix(".json")
        if not entry.name.endswith(".json") or stem.endswith("Response"):
            continue
        if suffix and not stem.endswith(suffix):
            continue
        names.append(stem.removesuffix(suffix) if suffix else stem)
    return sorted(names)


def _literals(tree: ast.AST) -> set[str]:
    return {n.value for n in ast.walk(tree)
            if isinstance(n, ast.Constant) and isinstance(n.value, str)}


def _built_actions(version: OcppVersion) -> dict[str, list[str]]:
    """Action -> the operator commands whose builder makes that CALL for the version."""
    out: dict[str, list[str]] = {}
    for command in COMMANDS:
        source = inspect.getsource(builder_for(version, command))
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "BuiltCall" \
                    and node.args and isinstance(node.args[0], ast.Constant):
                out.setdefault(str(node.args[0].value), []).append(command)
    return out


def _followups() -> set[str]:
    """Actions the central system sends by itself after an answer: the literal action of
    every ``after_reply(station, "Action", ...)`` call in csms/."""
    found: set[str] = set()
    for path in sorted((ROOT / "csms").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text("utf-8"))):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "after_reply" \
                    and len(node.args) > 1 and isinstance(node.args[1], ast.Constant):
                found.add(str(node.args[1].value))
    return found


def _cli_names() -> dict[str, str]:
    """API command name -> the ``csms`` command line that sends it."""
    import typer
    import typer.core

    from csms.cli import app

    found: dict[str, str] = {}
    # the command tree as a call builds it (the root builds a group when it is looked up)
    for group_name, group in typer.main.get_command(app).commands.items():  # type: ignore[attr-defined]
        if not isinstance(group, typer.core.TyperGroup):
            continue
        for name in group.commands:
            found.setdefault(name, f"csms {group_name} {name}")
            # `csms firmware update` sends update-firmware, `publish` publish-firmware
            found.setdefault(f"{name}-{group_name}", f"csms {group_name} {name}")
    return {c: found[c] for c in COMMANDS if c in found}


def _simulator(version: OcppVersion) -> tuple[set[str], set[str]]:
    """(actions the simulated station answers, actions its code names)."""
    from chargers_sim import Station

    answered = set(Station("ws://127.0.0.1:9", "COVERAGE", version)._handlers())
    named: set[str] = set()
    other = {s for v, s in _SIM_SUFFIX.items() if v is not version}
    for path in sorted((ROOT / "chargers_sim").glob("*.py")):
        if any(path.stem.endswith(s) for s in other):
            continue
        named |= _literals(ast.parse(path.read_text("utf-8")))
    return answered, named


# what a strict-client script sends or answers: cli.call('X'... / cli.handle('X'... / answer('X'
_JS_EXERCISED = re.compile(r"""\b(?:call|handle|answer)\(\s*['"]([A-Za-z0-9]+)['"]""")
_JS_PROTOCOLS = re.compile(r"""protocols:\s*\[([^\]]*)\]""")
_JS_VERSION = {"ocpp1.6": OcppVersion.V16, "ocpp2.0.1": OcppVersion.V201}


def _block_end(text: str, start: int) -> int:
    """The index after the ``}`` closing the block opened just before ``start``."""
    depth, i = 1, start
    while depth and i < len(text):
        depth += {"{": 1, "}": -1}.get(text[i], 0)
        i += 1
    return i


def _js_literals(text: str) -> dict[OcppVersion, set[str]]:
    """The actions an interop script exercises, per version: those it sends or answers.
    A script branches on ``protocol === 'ocpp1.6'`` (the 2.0.1 messages in its ``else``);
    what is outside the branch serves every version the script speaks (all, unless its
    ``protocols: [...]`` names them)."""
    spoken = set(OcppVersion)
    declared = _JS_PROTOCOLS.search(text)
    if declared is not None:
        named = {_JS_VERSION[n] for n in re.findall(r"""['"](ocpp[0-9.]+)['"]""",
                                                        declared.group(1))
                 if n in _JS_VERSION}
        if named:
            spoken = named
    marker = re.search(r"if \(protocol === 'ocpp1\.6'\) \{", text)
    if marker is None:
        both = set(_JS_EXERCISED.findall(text))
        return {v: both if v in spoken else set() for v in OcppVersion}
    i = _block_end(text, marker.end())
    v16 = text[marker.end():i]
    rest = text[i:]
    other = re.match(r"\s*else\s*\{", rest)
    v201, after = "", rest
    if other is not None:
        j = _block_end(rest, other.end())
        v201, after = rest[other.end():j], rest[j:]
    common = set(_JS_EXERCISED.findall(text[:marker.start()] + after))
    found = {OcppVersion.V16: common | set(_JS_EXERCISED.findall(v16)),
             OcppVersion.V201: common | set(_JS_EXERCISED.findall(v201))}
    return {v: found[v] if v in spoken else set() for v in OcppVersion}


def _test_files() -> Iterable[tuple[str, dict[OcppVersion, set[str]], bool]]:
    """(path, string literals per version, drives the simulator) of each test over real
    sockets. A Python file counts for a version it names (``"1.6"``, ``"ocpp2.0.1"``...);
    an interop script counts only when a Python test under tests/e2e names its file (it
    is run), for what it exercises (:func:`_js_literals`)."""
    python: list[tuple[str, ast.AST]] = []
    scripts: list[Path] = []
    for folder in ("integration", "e2e"):
        for path in sorted((ROOT / "tests" / folder).rglob("*")):
            if path.suffix == ".py":
                python.append((path.relative_to(ROOT).as_posix(),
                               ast.parse(path.read_text("utf-8"))))
            elif path.suffix == ".js":
                scripts.append(path)
    run = set()
    for rel, tree in python:
        if rel.startswith("tests/e2e/"):
            run |= _literals(tree)
    for rel, tree in python:
        sim = any(isinstance(n, ast.ImportFrom) and (n.module or "").startswith(
            "chargers_sim") for n in ast.walk(tree))
        lits = _literals(tree)
        yield rel, {v: lits if lits & _VERSION_NAMES[v] else set() for v in OcppVersion}, sim
    for path in scripts:
        if path.name in run:
            yield path.relative_to(ROOT).as_posix(), _js_literals(path.read_text("utf-8")), False


@dataclass(frozen=True, slots=True)
class Row:
    version: OcppVersion
    action: str
    direction: str  # "station -> CSMS", "CSMS -> station" or "both"
    handled: bool
    commands: tuple[str, ...]  # the csms command lines that send it
    simulator: bool
    tests: tuple[str, ...]
    sim_tested: bool
    interop: bool
    block: str = ""

    @property
    def tested(self) -> bool:
        return bool(self.tests)


def rows() -> list[Row]:
    cli = _cli_names()
    files = list(_test_files())
    followups = _followups()
    out = []
    for version in OcppVersion:
        routes = routes_for(version)
        built = _built_actions(version)
        answered, named = _simulator(version)
        for action in actions(version):
            from_station = action in _FROM_STATION[version]
            to_station = action in _BOTH_WAYS or not from_station
            direction = "both" if from_station and to_station else (
                "station -> CSMS" if from_station else "CSMS -> station")
            handled = (not from_station or action in routes) and (
                not to_station or action in built or action in followups)
            commands = tuple(sorted(cli.get(c, f"(API) {c}") for c in built.get(action, [])))
            sim = (not from_station or action in named) and (
                not to_station or action in answered)
            tests = [(rel, is_sim) for rel, lits, is_sim in files
                     if action in lits[version]]
            out.append(Row(version, action, direction, handled, commands, sim,
                           tuple(r for r, _ in tests), sim and any(s for _, s in tests),
                           any(r.endswith(".js") for r, _ in tests),
                           block_of(version, action)))
    return out


def block_summary(table: list[Row], version: OcppVersion) -> list[tuple[str, int, list[str]]]:
    """(block, actions handled, the handled actions the strict client exercises) per block
    of the version, in the specification's order."""
    out = []
    for block in BLOCKS[version]:
        mine = [r for r in table if r.version is version and r.block == block]
        if not mine:
            continue
        out.append((block, sum(r.handled for r in mine),
                    [r.action for r in mine if r.handled and r.interop]))
    return out


def uncovered_blocks(table: list[Row]) -> list[str]:
    """The blocks with a handled action but none exercised against the strict client."""
    return [f"{v.short} {block}" for v in OcppVersion
            for block, handled, interop in block_summary(table, v) if handled and not interop]


def _yes(flag: bool) -> str:
    return "yes" if flag else "**no**"


def render(table: list[Row] | None = None) -> str:
    table = rows() if table is None else table
    lines = [
        "# OCPP coverage",
        "",
        "<!-- generated by `python -m csms.coverage --write`; a test fails when this file",
        "     differs from what the code says (tests/unit/test_coverage_doc.py) -->",
        "",
        "Every action of OCPP 1.6-J (all feature profiles and the security extension) and",
        "OCPP 2.0.1 (every message of Part 2), listed from the official JSON schemas, with",
        "what the code does with it. How each column is read from the code is in the",
        "docstring of `csms/coverage.py`: *handled* is a route for a station's message or an",
        "operator command's builder (or a follow-up it sends by itself, such as",
        "CertificateSigned) for the central system's; *simulator* the simulated",
        "station answers (or sends) it; *tested* names a test file over real sockets that",
        "uses it, the first by name (sim: the simulated station handles it and the file",
        "drives it; interop: a script of the strict `ocpp-rpc` client, run by a test, sends",
        "or answers it for that version). 1.6 has no",
        "display messages, charging-profile reports, transaction status, customer",
        "information or network profiles: those rows exist for 2.0.1 only.",
        "",
        "*block* is the 2.0.1 functional block of Part 2 (A Security ... P DataTransfer) or",
        "the 1.6 feature profile (Security: the security extension). The first table of each",
        "version says per block which actions a script of the strict `ocpp-rpc` client",
        "exercises (sends or answers, in a test that runs it); a test fails when a block",
        "with a handled action has none.",
        "",
    ]
    for version in OcppVersion:
        mine = [r for r in table if r.version is version]
        handled = sum(r.handled for r in mine)
        tested = sum(r.handled and r.tested for r in mine)
        lines += [
            f"## OCPP {version.short}",
            "",
            f"{len(mine)} actions: {handled} handled, {tested} of them tested.",
            "",
            f"**A boot not Accepted.** {boot_gate_for(version).rule}",
            "",
            f"| {_BLOCK_WORD[version]} | handled | exercised with the strict client |",
            "| --- | --- | --- |",
        ]
        for block, n, interop in block_summary(mine, version):
            lines.append(f"| {block} | {n} | {', '.join(interop) or '**none**'} |")
        lines += [
            "",
            "| action | block | direction | handled | operator command | simulator | tested |",
            "| --- | --- | --- | --- | --- | --- | --- |",
        ]
        for r in mine:
            marks = [m for m, on in (("sim", r.sim_tested), ("interop", r.interop)) if on]
            # one file (the first by name) keeps the table stable as tests are added
            tested_text = "**no**" if not r.tests else (
                f"`{r.tests[0].removeprefix('tests/')}`"
                + (f" ({', '.join(marks)})" if marks else ""))
            lines.append(
                f"| {r.action} | {r.block} | {r.direction} | {_yes(r.handled)} | "
                f"{', '.join(f'`{c}`' for c in r.commands) or '-'} | {_yes(r.simulator)} | "
                f"{tested_text} |")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    text = render()
    if "--write" in argv:
        DOC.write_text(text, "utf-8")
        print(f"wrote {DOC.relative_to(ROOT)}")
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
