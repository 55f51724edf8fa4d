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
  the file may also use raw frames), "interop" a script of the strict ocpp-rpc client.

Which side starts each message is protocol knowledge (the specifications' message lists),
the one table here written by hand.
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
from csms.translate import routes_for
from csms.translate.commands import COMMANDS, builder_for

__all__ = ["DOC", "Row", "actions", "render", "rows"]

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
    from csms.cli import app

    found: dict[str, str] = {}
    for group in app.registered_groups:
        assert group.typer_instance is not None
        for cmd in group.typer_instance.registered_commands:
            found.setdefault(cmd.name or "", f"csms {group.name} {cmd.name}")
            # `csms firmware update` sends update-firmware, `publish` publish-firmware
            found.setdefault(f"{cmd.name}-{group.name}", f"csms {group.name} {cmd.name}")
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


def _js_literals(text: str) -> dict[OcppVersion, set[str]]:
    """The quoted names of an interop script, per version: a script branches on
    ``protocol === 'ocpp1.6'`` (the 2.0.1 messages in its ``else``); what is outside the
    branch serves both versions, unless the script offers one version only."""
    names = re.compile(r"""['"]([A-Za-z0-9.]+)['"]""")
    marker = re.search(r"if \(protocol === 'ocpp1\.6'\) \{", text)
    if marker is None:
        both = set(names.findall(text))
        # a script that offers one version only (protocols: ['ocpp1.6']) counts for it
        only = re.search(r"protocols: \['(ocpp1\.6|ocpp2\.0\.1)'\]", text)
        if only is not None:
            return {v: both if v.value == only.group(1) else set() for v in OcppVersion}
        return {v: both for v in OcppVersion}
    depth, i = 1, marker.end()
    while depth and i < len(text):  # the end of the 1.6 branch
        depth += {"{": 1, "}": -1}.get(text[i], 0)
        i += 1
    v16 = text[marker.end():i]
    rest = text[i:]
    other = re.match(r"\s*else\s*\{", rest)
    v201, after = "", rest
    if other is not None:
        depth, j = 1, other.end()
        while depth and j < len(rest):
            depth += {"{": 1, "}": -1}.get(rest[j], 0)
            j += 1
        v201, after = rest[other.end():j], rest[j:]
    common = set(names.findall(text[:marker.start()] + after))
    return {OcppVersion.V16: common | set(names.findall(v16)),
            OcppVersion.V201: common | set(names.findall(v201))}


def _test_files() -> Iterable[tuple[str, dict[OcppVersion, set[str]], bool]]:
    """(path, string literals per version, drives the simulator) of each test over real
    sockets. A Python file counts for a version it names (``"1.6"``, ``"ocpp2.0.1"``...)."""
    for folder in ("integration", "e2e"):
        for path in sorted((ROOT / "tests" / folder).rglob("*")):
            rel = path.relative_to(ROOT).as_posix()
            if path.suffix == ".py":
                tree = ast.parse(path.read_text("utf-8"))
                sim = any(isinstance(n, ast.ImportFrom) and (n.module or "").startswith(
                    "chargers_sim") for n in ast.walk(tree))
                lits = _literals(tree)
                yield rel, {v: lits if lits & _VERSION_NAMES[v] else set()
                            for v in OcppVersion}, sim
            elif path.suffix == ".js":
                yield rel, _js_literals(path.read_text("utf-8")), False


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
                           any(r.endswith(".js") for r, _ in tests)))
    return out


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
        "drives it; interop: a script of the strict `ocpp-rpc` client names it). 1.6 has no",
        "display messages, charging-profile reports, transaction status, customer",
        "information or network profiles: those rows exist for 2.0.1 only.",
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
            "| action | direction | handled | operator command | simulator | tested |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
        for r in mine:
            marks = [m for m, on in (("sim", r.sim_tested), ("interop", r.interop)) if on]
            # one file (the first by name) keeps the table stable as tests are added
            tested_text = "**no**" if not r.tests else (
                f"`{r.tests[0].removeprefix('tests/')}`"
                + (f" ({', '.join(marks)})" if marks else ""))
            lines.append(
                f"| {r.action} | {r.direction} | {_yes(r.handled)} | "
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
