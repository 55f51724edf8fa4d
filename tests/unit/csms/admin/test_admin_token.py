"""The admin token file: made whole (mode 0600) or not at all, and a file that holds no
token replaced, never read as the empty token."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from csms.admin.api import load_or_create_token


def test_the_first_start_writes_a_private_token(tmp_path: Path) -> None:
    path = tmp_path / "data" / "admin.token"
    token = load_or_create_token(path)
    assert len(token) >= 32
    assert path.read_text() == token + "\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(p.name for p in path.parent.iterdir()) == ["admin.token"]
    assert load_or_create_token(path) == token  # kept


@pytest.mark.parametrize("content", ["", "\n", " \t\r\n"])
def test_a_file_without_a_token_is_replaced(tmp_path: Path, content: str) -> None:
    path = tmp_path / "admin.token"
    path.write_text(content)
    path.chmod(0o644)
    token = load_or_create_token(path)
    assert token.strip() == token and len(token) >= 32
    assert path.read_text() == token + "\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600  # not the mode the empty file had
    assert sorted(p.name for p in tmp_path.iterdir()) == ["admin.token"]
