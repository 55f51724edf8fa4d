"""The dependency rule of DESIGN.md, checked on every module's imports."""

from __future__ import annotations

import ast
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
    ("csms.storage", ("csms.domain", "csms.service", "csms.storage")),
    ("csms.bus", ("csms.domain", "csms.service", "csms.bus", "csms.config")),
    ("chargers_sim", ("chargers_sim", "csms.protocol")),
    ("settlement", ("settlement", "csms.domain", "csms.metering", "csms.service", "csms.storage",
                    "csms.config")),
]
# third-party adapters: library -> module prefixes that may import it
ADAPTER_LIBS = {
    "websockets": ("csms.server", "csms.transport", "chargers_sim"),
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
