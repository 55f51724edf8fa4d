"""Headless Chromium for the web tests: Debian's ``chromium`` (never a downloaded browser),
driven by Playwright for Python; screenshots go to ``tmp/artifacts/<test>/``."""

from __future__ import annotations

from pathlib import Path

import pytest

from support import IN_CI

__all__ = ["ARTIFACTS", "CHROMIUM", "LAUNCH_ARGS", "require_browser"]

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
LAUNCH_ARGS = ["--no-sandbox"]
ARTIFACTS = ROOT / "tmp" / "artifacts"


def require_browser(*missing: str) -> None:
    """Skip with the reason outside CI; under CI=true whatever is missing is a failure.
    ``missing``: what else the caller found missing."""
    gone = list(missing)
    if not CHROMIUM.exists():
        gone.append("chromium (apt-get install chromium)")
    try:
        import playwright  # noqa: F401
    except ImportError:
        gone.append("playwright for Python (pip install -e '.[dev]')")
    if gone:
        reason = "this browser test needs " + ", ".join(gone)
        if IN_CI:
            pytest.fail(reason)
        pytest.skip(reason)
