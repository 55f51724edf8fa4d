"""Compile the Vyper contract in-process (cached by source hash; never hand-edited)."""

from __future__ import annotations

import hashlib
import json
from importlib import resources
from pathlib import Path
from typing import Any

__all__ = ["CONTRACT_NAME", "compiled", "source"]

CONTRACT_NAME = "Settlement.vy"


def source() -> str:
    return resources.files("settlement").joinpath("contracts", CONTRACT_NAME).read_text("utf-8")


_compiled: dict[str, dict[str, Any]] = {}  # per process: compiling takes about a second


def compiled(cache_dir: str | Path | None = None) -> dict[str, Any]:
    """ABI and bytecode of the contract; compiled with the ``vyper`` package on first use."""
    text = source()
    import vyper

    key = hashlib.sha256(f"{vyper.__version__}\n{text}".encode()).hexdigest()[:16]
    cache = Path(cache_dir).expanduser() / f"Settlement-{key}.json" if cache_dir else None
    if cache is not None and cache.is_file():
        data: dict[str, Any] = json.loads(cache.read_text("utf-8"))
        return data
    if key not in _compiled:
        out = vyper.compile_code(text, output_formats=["abi", "bytecode"])
        _compiled[key] = {"abi": out["abi"], "bytecode": out["bytecode"],
                          "vyper": vyper.__version__,
                          "source_sha256": hashlib.sha256(text.encode()).hexdigest()}
    data = _compiled[key]
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_text(json.dumps(data), "utf-8")
    return data
