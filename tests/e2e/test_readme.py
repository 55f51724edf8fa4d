"""The README's walkthrough runs exactly as written, and its links lead somewhere."""

from __future__ import annotations

import os
import re
import socket
import subprocess
from pathlib import Path

import pytest

from settlement.chain import find_anvil
from support import IN_CI

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"


def walkthrough() -> str:
    text = README.read_text("utf-8")
    match = re.search(r"<!-- walkthrough -->\n```sh\n(.*?)```", text, re.S)
    assert match, "the README has a walkthrough block"
    return match.group(1)


def port_free(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def test_the_walkthrough_runs_as_written(tmp_path: Path) -> None:
    if find_anvil() is None:
        if IN_CI:
            pytest.fail("anvil is required (make install)")
        pytest.skip("anvil not installed: make install")
    for port in (9000, 9001):  # the defaults the walkthrough relies on
        assert port_free(port), f"port {port} is in use: the walkthrough needs it free"
    (tmp_path / ".venv").symlink_to(ROOT / ".venv")
    script = tmp_path / "walkthrough.sh"
    script.write_text(walkthrough())
    env = {k: v for k, v in os.environ.items() if not k.startswith("CSMS_")}
    r = subprocess.run(["bash", "-e", str(script)], cwd=tmp_path, capture_output=True,
                       text=True, timeout=300, env={**env, "COLUMNS": "100"})
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "VALID receipt" in r.stdout
    assert (tmp_path / "receipt.json").exists()
    assert "Traceback" not in r.stdout + r.stderr


@pytest.mark.parametrize("page", [README, *sorted((ROOT / "docs").glob("*.md"))],
                         ids=lambda p: p.name)
def test_links_lead_somewhere(page: Path) -> None:
    for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", page.read_text("utf-8")):
        if re.match(r"[a-z]+://", target):
            continue
        assert (page.parent / target).exists(), f"{page.name} links to missing {target}"
