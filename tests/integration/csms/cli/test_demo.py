"""``csms demo --folder``: it never deletes what it did not create."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import typer

from csms.cli.demo import MARKER, prepare_folder


def demo(cwd: Path, folder: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "csms", "demo", "--chain", "memory",
                           "--folder", folder], cwd=cwd, capture_output=True, text=True,
                          timeout=120, env={**os.environ, "COLUMNS": "200"})


@pytest.mark.parametrize("folder", [".", "..", "$PWD", "keep", "a-file"])
def test_a_folder_the_demo_did_not_make_is_refused_and_kept(tmp_path: Path,
                                                           folder: str) -> None:
    work = tmp_path / "work"
    (work / "keep").mkdir(parents=True)
    (work / "keep" / "notes.txt").write_text("mine")
    (work / "a-file").write_text("mine too")
    (work / "mine.txt").write_text("also mine")
    r = demo(work, str(work) if folder == "$PWD" else folder)
    assert r.returncode == 2
    assert r.stderr.startswith("error: --folder ") and len(r.stderr.strip().splitlines()) == 1
    assert "Traceback" not in r.stderr
    assert (work / "keep" / "notes.txt").read_text() == "mine"
    assert (work / "a-file").read_text() == "mine too"
    assert (work / "mine.txt").read_text() == "also mine"
    assert sorted(p.name for p in work.iterdir()) == ["a-file", "keep", "mine.txt"]


def test_a_folder_an_earlier_demo_made_is_emptied(tmp_path: Path) -> None:
    folder = prepare_folder(tmp_path / "new" / "demo")  # created, with its marker
    assert (folder / MARKER).is_file()
    (folder / "receipt-1.json").write_text("{}")
    again = prepare_folder(tmp_path / "new" / "demo")
    assert again == folder and sorted(p.name for p in folder.iterdir()) == [MARKER]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert prepare_folder(empty) == empty.resolve()  # an empty folder: nothing to lose


def test_an_unwritable_place_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(typer.Exit) as exc:
        prepare_folder(tmp_path / "file" / "demo")
    assert exc.value.exit_code == 2
