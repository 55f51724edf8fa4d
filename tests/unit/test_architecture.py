"""The dependency rule of DESIGN.md, checked on every module's imports."""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("csms", "chargers_sim", "settlement")

# module prefix -> project prefixes it may import
ALLOWED: list[tuple[str, tuple[str, ...]]] = [
    ("csms.protocol", ("csms.protocol",)),
    ("csms.domain", ("csms.domain",)),
    ("csms.metering", ("csms.metering",)),
    ("csms.service", ("csms.domain", "csms.metering", "csms.service")),
    ("csms.translate", ("csms.domain", "csms.service", "csms.translate", "csms.protocol")),
    # storage and the bus write and read JSON with the protocol layer's codec (pure; it
    # imports nothing else of the project): integers beyond 64 bits both ways, one text
    ("csms.storage", ("csms.domain", "csms.service", "csms.storage", "csms.protocol.frames")),
    ("csms.bus", ("csms.domain", "csms.service", "csms.bus", "csms.config",
                  "csms.protocol.frames")),
    ("csms.link", ("csms.link", "csms.protocol")),
    ("chargers_sim", ("chargers_sim", "csms.protocol", "csms.link")),
    ("settlement", ("settlement", "csms.domain", "csms.metering", "csms.service", "csms.storage",
                    "csms.config")),
]
# third-party adapters: library -> module prefixes that may import it
ADAPTER_LIBS = {
    "websockets": ("csms.server", "csms.transport", "csms.link", "chargers_sim"),
    "aiosqlite": ("csms.storage",),
    "asyncpg": ("csms.storage",),
    "aiomqtt": ("csms.bus",),
    "web3": ("settlement.chain",),
    "eth_tester": ("settlement.chain",),
}


def modules() -> list[tuple[str, Path]]:
    found = []
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            rel = path.relative_to(ROOT).with_suffix("")
            parts = list(rel.parts)
            if parts[-1] == "__init__":
                parts.pop()
            found.append((".".join(parts), path))
    return found


def imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text("utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


@pytest.mark.parametrize(("module", "path"), modules(), ids=lambda v: str(v))
def test_dependency_rule(module: str, path: Path) -> None:
    imported = imports_of(path)
    for prefix, allowed in ALLOWED:
        if under(module, prefix):
            project = {i for i in imported if i.split(".")[0] in PACKAGES}
            bad = {i for i in project if not any(under(i, a) for a in allowed)}
            assert not bad, f"{module} must not import {sorted(bad)}"
    for lib, owners in ADAPTER_LIBS.items():
        if any(under(i, lib) for i in imported):
            assert any(under(module, o) for o in owners), f"{module} must not import {lib}"


def test_domain_is_stdlib_only() -> None:
    for module, path in modules():
        if under(module, "csms.domain"):
            third_party = {
                i.split(".")[0] for i in imports_of(path)
                if i.split(".")[0] not in sys.stdlib_module_names and not under(i, "csms")
            }
            assert third_party <= {"__future__"}, f"{module} imports {third_party}"


# SQL lives in csms.storage only; the environment is read in csms.config (and the storage
# adapters, which may take a server's own variables).
SQL_OWNERS = ("csms.storage",)
ENVIRON_OWNERS = ("csms.storage", "csms.config")
SQL_START = re.compile(
    r"\s*(SELECT\s+(.*\sFROM\s|\w+\()|INSERT\s+INTO\s|UPDATE\s+\w+\s+SET\s|DELETE\s+FROM\s|CREATE\s+"
    r"(TABLE|INDEX|UNIQUE|VIEW|TRIGGER)\s|ALTER\s+TABLE\s|DROP\s+(TABLE|INDEX)\s|WITH\s+\w+"
    r"(\s*\([^)]*\))?\s+AS\s*\()",
    re.IGNORECASE | re.DOTALL,
)


def sql_strings(tree: ast.AST) -> list[tuple[int, str]]:
    """String literals (and f-strings' leading text) that start like an SQL statement."""
    found = []
    for node in ast.walk(tree):
        text: str | None = None
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            text = node.value
        elif isinstance(node, ast.JoinedStr) and node.values:
            first = node.values[0]
            if isinstance(first, ast.Constant) and isinstance(first.value, str):
                text = first.value
        if text is not None and SQL_START.match(text):
            found.append((getattr(node, "lineno", 0), text[:60]))
    return found


def environ_uses(tree: ast.AST) -> list[int]:
    """Lines reading the process environment: os.environ, os.getenv, environ imported."""
    names = ("environ", "getenv", "environb")
    lines = []
    for node in ast.walk(tree):
        attribute = (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                     and node.value.id == "os" and node.attr in names)
        imported = (isinstance(node, ast.ImportFrom) and node.module == "os"
                    and any(a.name in names for a in node.names))
        if attribute or imported:
            lines.append(getattr(node, "lineno", 0))
    return lines


@pytest.mark.parametrize(("module", "path"), modules(), ids=lambda v: str(v))
def test_sql_and_environment_stay_in_their_modules(module: str, path: Path) -> None:
    tree = ast.parse(path.read_text("utf-8"))
    if not any(under(module, o) for o in SQL_OWNERS):
        assert not sql_strings(tree), f"{module} holds SQL: {sql_strings(tree)}"
    if not any(under(module, o) for o in ENVIRON_OWNERS):
        assert not environ_uses(tree), f"{module} reads os.environ at lines {environ_uses(tree)}"


@pytest.mark.parametrize("source", [
    'q = "SELECT id FROM sessions"',
    'q = "SELECT pg_backend_pid()"',
    'q = "select id from sessions"',
    'q = ("INSERT INTO nodes (id) VALUES (?)"\n     " ON CONFLICT DO NOTHING")',
    'q = f"UPDATE outbox SET published_at = ? WHERE id IN ({marks})"',
    'q = "DELETE FROM leases WHERE name = ?"',
    'q = "  create table t (id INTEGER)"',
    'q = "WITH recent AS (SELECT 1) SELECT * FROM recent"',
])
def test_sql_strings_are_found(source: str) -> None:
    assert sql_strings(ast.parse(source))


@pytest.mark.parametrize("source", [
    '"""Update a station\'s tariff."""',
    'help = "Delete the card link of a tag"',
    'msg = "select a station first"',
    'msg = "with care"',
])
def test_prose_is_not_sql(source: str) -> None:
    assert not sql_strings(ast.parse(source))


@pytest.mark.parametrize("source", [
    "import os\nkey = os.environ.get('CSMS_KEYSTORE')",
    "import os\nkey = os.getenv('CSMS_KEYSTORE')",
    "from os import environ\nkey = environ['X']",
])
def test_environment_reads_are_found(source: str) -> None:
    assert environ_uses(ast.parse(source))

# Libraries that do I/O or run an event loop: never in the sans-I/O protocol layer.
IO_LIBS = ("asyncio", "websockets", "trio", "anyio", "socket")


def test_protocol_is_sans_io() -> None:
    checked = 0
    for module, path in modules():
        if under(module, "csms.protocol"):
            checked += 1
            io = {i for i in imports_of(path) if any(under(i, lib) for lib in IO_LIBS)}
            assert not io, f"{module} imports {sorted(io)}: csms.protocol does no I/O"
    assert checked > 0


# Per-version knowledge lives in per-version modules with the same function names; the
# rest of the code picks a module once (a table keyed by OcppVersion) and never asks
# which version it speaks.
VERSION_SCOPE = ("csms", "chargers_sim", "settlement")
PER_VERSION_MODULES = {
    "csms.translate.v16", "csms.translate.v201",
    "csms.translate.commands_v16", "csms.translate.commands_v201",
    "chargers_sim.v16", "chargers_sim.v201",
    "csms.translate.more_commands_v16", "csms.translate.more_commands_v201",
    "chargers_sim.more_v16", "chargers_sim.more_v201",
}
VERSION_LITERALS = {"ocpp1.6", "ocpp2.0.1", "1.6", "2.0.1"}


def _is_version(node: ast.expr) -> bool:
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
        return node.value.id == "OcppVersion" and node.attr in ("V16", "V201")
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute):
        return node.value.attr == "OcppVersion" and node.attr in ("V16", "V201")
    if isinstance(node, ast.Name):  # the domain's constants
        return node.id in ("OCPP16", "OCPP201")
    return isinstance(node, ast.Constant) and node.value in VERSION_LITERALS


def version_branches(source: str) -> list[int]:
    """Lines that compare something with an OCPP version (``is``, ``==``, ``in``...)."""
    lines = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Compare):
            operands = [node.left, *node.comparators]
            if any(_is_version(o) for o in operands):
                lines.append(node.lineno)
            for o in operands:
                if isinstance(o, ast.Tuple | ast.List | ast.Set) and any(
                        _is_version(e) for e in o.elts):
                    lines.append(node.lineno)
        elif isinstance(node, ast.match_case) and _is_version_pattern(node.pattern):
            lines.append(node.pattern.lineno)
    return sorted(set(lines))


def _is_version_pattern(pattern: ast.pattern) -> bool:
    if isinstance(pattern, ast.MatchValue):
        return _is_version(pattern.value)
    if isinstance(pattern, ast.MatchOr):
        return any(_is_version_pattern(p) for p in pattern.patterns)
    return False


@pytest.mark.parametrize("source", [
    "if version is OcppVersion.V16: pass",
    "x = a if v is not OcppVersion.V201 else b",
    "ok = st.version == OcppVersion.V16",
    "if p.OcppVersion.V201 != version: pass",
    "if ws.subprotocol == 'ocpp2.0.1': pass",
    "if version in (OcppVersion.V16,): pass",
    "if args.ocpp == '1.6': pass",
    "match version:\n    case OcppVersion.V16: pass",
    "if session.ocpp_version == OCPP201: pass",
])
def test_version_branch_is_caught(source: str) -> None:
    assert version_branches(source)


@pytest.mark.parametrize("source", [
    "MODULES = {OcppVersion.V16: v16, OcppVersion.V201: v201}",
    "def f(version=OcppVersion.V16): pass",
    "if version is None: pass",
])
def test_a_table_of_versions_is_not_a_branch(source: str) -> None:
    assert version_branches(source) == []



def test_no_version_branching_outside_per_version_modules() -> None:
    offenders = []
    for module, path in modules():
        if any(under(module, s) for s in VERSION_SCOPE) and module not in PER_VERSION_MODULES:
            offenders += [f"{path.relative_to(ROOT)}:{n}"
                          for n in version_branches(path.read_text("utf-8"))]
    assert not offenders, ("version branches outside the per-version modules (move the"
                           f" difference into v16/v201): {offenders}")
