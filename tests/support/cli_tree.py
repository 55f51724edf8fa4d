"""Every command of ``csms``, found by walking its tree: the tests that sweep the CLI run
each command a new release adds without being told of it."""

from __future__ import annotations

from typing import Any

import typer.main

from csms.cli import app

__all__ = ["leaves"]


def leaves() -> list[tuple[tuple[str, ...], Any]]:
    """(path of names, the Click command) of every command that runs (no group)."""
    found: list[tuple[tuple[str, ...], Any]] = []

    def walk(path: tuple[str, ...], command: Any) -> None:
        subs = getattr(command, "commands", None)
        if subs is None:
            found.append((path, command))
            return
        for name in list(subs):
            walk((*path, name), subs[name])

    walk((), typer.main.get_command(app))
    return found
