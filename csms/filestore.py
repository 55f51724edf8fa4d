"""Where the central system keeps the files stations move: firmware images and uploaded
logs, under the data folder. Paths are built from what the central system chose (an
image's SHA-256, a request's id), never from a name a station or an operator sent, so no
name can reach beyond these folders."""

from __future__ import annotations

import re
from pathlib import Path

__all__ = ["display_name", "firmware_path", "log_path"]

_HEX64 = re.compile(r"[0-9a-f]{64}")
_UNSAFE = re.compile(r"[^A-Za-z0-9._+-]")


def firmware_path(data_dir: str | Path, sha256: str) -> Path:
    """The stored image with this SHA-256 (hex)."""
    if not _HEX64.fullmatch(sha256):
        raise ValueError("not a SHA-256")
    return Path(data_dir).expanduser() / "firmware" / f"{sha256}.bin"


def log_path(data_dir: str | Path, request_id: int) -> Path:
    """The log uploaded for the request ``request_id``."""
    return Path(data_dir).expanduser() / "logs" / f"{int(request_id)}.log"


def display_name(name: str | None, fallback: str = "upload.log") -> str:
    """A name a station sent, for display and downloads only: its last path part, plain
    characters, at most 100 of them."""
    if not name:
        return fallback
    last = re.split(r"[\\/]", name)[-1]
    cleaned = _UNSAFE.sub("_", last).lstrip(".")[:100]
    return cleaned or fallback
