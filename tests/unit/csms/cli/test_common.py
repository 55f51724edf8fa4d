"""A command whose unit of work is not committed (a locked database, a full disk) ends
with one line and exit code 1, never a traceback."""

from __future__ import annotations

import pytest
import typer

from csms.cli.common import run
from csms.service.ports import StorageError


async def refused() -> None:
    raise StorageError("batch not committed: database is locked")


def test_storage_error_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(typer.Exit) as exit_:
        run(refused())
    assert exit_.value.exit_code == 1
    err = capsys.readouterr().err
    assert err.strip().count("\n") == 0 and "database is locked" in err


def test_a_process_is_alive_until_it_ends_and_a_zombie_is_gone() -> None:
    import os
    import subprocess
    import sys
    import time

    from csms.cli.common import process_alive

    assert process_alive(os.getpid())
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = time.monotonic() + 10
    while process_alive(child.pid) and time.monotonic() < deadline:
        time.sleep(0.01)  # exited, not reaped yet: a zombie
    assert not process_alive(child.pid)
    child.wait()
    assert not process_alive(child.pid)


@pytest.mark.parametrize("station", ["CP[/]", "CP[red]1", "CP\\", "CP\\[bold]x", "[@click=x]"])
def test_say_prints_a_station_s_id_as_it_is(station: str,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    """Never Rich markup; rich.markup.escape would print "CP\\" as "CP\\\\"."""
    from csms.cli.common import say

    say(station, ": ", ("queued", "bold"), " (", station, ")")
    assert capsys.readouterr().out == f"{station}: queued ({station})\n"


def test_a_table_s_title_is_not_markup(capsys: pytest.CaptureFixture[str]) -> None:
    from csms.cli.common import print_table

    print_table("Station CP[/]", ["field", "value"], [["id", "CP[red]1"]])
    out = capsys.readouterr().out
    assert "Station CP[/]" in out and "CP[red]1" in out
