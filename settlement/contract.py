"""Compile the Vyper contract in-process (cached by source hash; never hand-edited), and
the fingerprint of its deployed code that a receipt's verifier compares with the chain.

``Settlement.build.json`` is the compiler's output (ABI and creation code) for the
committed source and the pinned ``vyper``: :func:`compiled` takes it when both match
(compiling takes ~3 s of CPU in every new process: a first ``csms contract deploy``,
``csms serve --chain``, each test's node), and compiles otherwise. The same test keeps it
equal to what ``vyper`` compiles.

The code a deployed contract holds (``eth_getCode``) is the compiled runtime code followed
by the values of its immutables (operator, platform, fee, notice period, token, unit,
domain separator: 32 bytes each). The transaction that created it carries the compiled
creation code followed by the constructor's ABI-encoded arguments: a contract whose own
creation code wrote its storage before returning the genuine runtime code differs there.
``Settlement.code.json`` holds keccak256 of the runtime code and of the creation code and
their lengths, so a verifier needs no compiler (the driver's page reads the same file);
``tests/integration/settlement/test_verifier.py`` keeps it (and the build) equal to what
``vyper`` compiles from ``Settlement.vy``: regenerate both with ``python -m
settlement.contract`` after changing the contract.

A deployed contract cannot be changed, and the receipts of its sessions stay the drivers':
``earlier`` in ``Settlement.code.json`` lists the fingerprints of earlier releases of the
contract whose receipts verify the same way (the contract of 24-bit station indexes: an
entry of a station below 2^24 is the same word in both, and it registered no other), kept
by ``python -m settlement.contract``. A release that fixed a hole a receipt relies on is
never listed there.
"""

from __future__ import annotations

import hashlib
import json
from importlib import metadata, resources
from pathlib import Path
from typing import Any

__all__ = ["CONTRACT_NAME", "build_of_source", "code_fingerprint", "compiled",
           "fingerprint_of_source", "is_settlement_code", "is_settlement_creation", "source"]

CONTRACT_NAME = "Settlement.vy"
FINGERPRINT_NAME = "Settlement.code.json"
BUILD_NAME = "Settlement.build.json"


def source() -> str:
    return resources.files("settlement").joinpath("contracts", CONTRACT_NAME).read_text("utf-8")


_compiled: dict[str, dict[str, Any]] = {}  # per process: compiling takes about a second


def compiled(cache_dir: str | Path | None = None) -> dict[str, Any]:
    """ABI and bytecode of the contract: the committed build where it is of this source and
    the installed ``vyper``, else compiled with the ``vyper`` package on first use."""
    text = source()
    version = metadata.version("vyper")
    key = hashlib.sha256(f"{version}\n{text}".encode()).hexdigest()[:16]
    cache = Path(cache_dir).expanduser() / f"Settlement-{key}.json" if cache_dir else None
    if cache is not None and cache.is_file():
        data: dict[str, Any] = json.loads(cache.read_text("utf-8"))
        return data
    if key not in _compiled:
        digest = hashlib.sha256(text.encode()).hexdigest()
        built = _committed_build()
        if built.get("source_sha256") == digest and built.get("vyper") == version \
                and _is_fingerprinted(built):
            _compiled[key] = {k: built[k] for k in ("abi", "bytecode", "vyper", "source_sha256")}
        else:
            _compiled[key] = build_of_source()
    data = _compiled[key]
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_text(json.dumps(data), "utf-8")
    return data


def _committed_build() -> dict[str, Any]:
    try:
        data: dict[str, Any] = json.loads(resources.files("settlement").joinpath(
            "contracts", BUILD_NAME).read_text("utf-8"))
    except (OSError, ValueError):
        return {}  # none shipped, or unreadable: compiled
    return data


def _is_fingerprinted(built: dict[str, Any]) -> bool:
    """Whether a build's creation code is the one ``Settlement.code.json`` names (a build
    edited by hand, or left behind by a merge, is compiled again instead of deployed for
    every verifier to refuse)."""
    from eth_hash.auto import keccak

    try:
        creation = bytes.fromhex(str(built["bytecode"]).removeprefix("0x"))
    except (KeyError, ValueError):
        return False
    fp = code_fingerprint()
    return len(creation) == int(fp["creation_size"]) \
        and "0x" + bytes(keccak(creation)).hex() == fp["creation_keccak"]


def build_of_source() -> dict[str, Any]:
    """What ``Settlement.build.json`` must hold: the contract compiled from the source
    with the installed ``vyper``."""
    import vyper

    text = source()
    out = vyper.compile_code(text, output_formats=["abi", "bytecode"])
    return {"abi": out["abi"], "bytecode": out["bytecode"], "vyper": vyper.__version__,
            "source_sha256": hashlib.sha256(text.encode()).hexdigest()}


def fingerprint_of_source() -> dict[str, Any]:
    """What ``Settlement.code.json`` must hold, compiled from the source (needs ``vyper``)."""
    import vyper
    from eth_hash.auto import keccak

    text = source()
    out = vyper.compile_code(text, output_formats=["abi", "bytecode", "bytecode_runtime",
                                                   "layout"])
    runtime = bytes.fromhex(out["bytecode_runtime"].removeprefix("0x"))
    creation = bytes.fromhex(out["bytecode"].removeprefix("0x"))
    immutables = sum(int(v["length"]) for v in out["layout"].get("code_layout", {}).values())
    [constructor] = [f for f in out["abi"] if f["type"] == "constructor"]
    static = {"address", "bool", "bytes32", *(f"uint{n}" for n in range(8, 257, 8))}
    if not all(a["type"] in static for a in constructor["inputs"]):
        raise ValueError("the constructor takes an argument of variable length")
    return {"contract": CONTRACT_NAME, "vyper": vyper.__version__,
            "source_sha256": hashlib.sha256(text.encode()).hexdigest(),
            "runtime_keccak": "0x" + bytes(keccak(runtime)).hex(),
            "runtime_size": len(runtime), "immutables_size": immutables,
            "creation_keccak": "0x" + bytes(keccak(creation)).hex(),
            "creation_size": len(creation),
            "constructor_args_size": 32 * len(constructor["inputs"])}


def code_fingerprint() -> dict[str, Any]:
    """The committed fingerprint of the contract's deployed code (no compiler needed)."""
    data: dict[str, Any] = json.loads(resources.files("settlement").joinpath(
        "contracts", FINGERPRINT_NAME).read_text("utf-8"))
    return data


def _releases(fingerprint: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The fingerprint of this release's code, then the earlier ones it verifies."""
    fp = fingerprint or code_fingerprint()
    return [fp, *fp.get("earlier", [])]


def is_settlement_code(code: bytes, fingerprint: dict[str, Any] | None = None) -> bool:
    """Whether ``code`` (as ``eth_getCode`` returns it) is this project's Settlement
    contract (this release's or an ``earlier`` one): its runtime code exactly, followed by
    immutables of the expected length."""
    from eth_hash.auto import keccak

    for fp in _releases(fingerprint):
        size = int(fp["runtime_size"])
        if len(code) == size + int(fp["immutables_size"]) \
                and "0x" + bytes(keccak(code[:size])).hex() == fp["runtime_keccak"]:
            return True
    return False


def is_settlement_creation(data: bytes, fingerprint: dict[str, Any] | None = None) -> bool:
    """Whether ``data`` (a contract creation transaction's input) is this project's
    Settlement creation code exactly (this release's or an ``earlier`` one), followed by
    the constructor's arguments (ABI-encoded, 32 bytes each): the contract's storage was
    then written by its own code only."""
    from eth_hash.auto import keccak

    for fp in _releases(fingerprint):
        size = int(fp["creation_size"])
        if len(data) == size + int(fp["constructor_args_size"]) \
                and "0x" + bytes(keccak(data[:size])).hex() == fp["creation_keccak"]:
            return True
    return False


if __name__ == "__main__":  # python -m settlement.contract: regenerate fingerprint and build
    folder = Path(__file__).parent / "contracts"
    kept = {"earlier": code_fingerprint().get("earlier", [])}  # releases deployed before
    for name, data in ((FINGERPRINT_NAME, {**fingerprint_of_source(), **kept}),
                       (BUILD_NAME, build_of_source())):
        (folder / name).write_text(json.dumps(data, indent=2) + "\n", "utf-8")
        print(f"wrote {folder / name}")
