"""Bad arguments of the newer commands: one line on stderr, exit code 2, no traceback, and
nothing sent (the checks run before the admin API is asked)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import pytest

from csms.service.ports import Tx
from support import RunningServer, csms_cli


def csms(server: RunningServer, *args: str) -> subprocess.CompletedProcess[str]:
    """``csms ARGS`` with the server's data folder (remote commands take no --db)."""
    return subprocess.run(
        [sys.executable, "-m", "csms", *args, "--data-dir", server.settings.data_dir],
        capture_output=True, text=True, timeout=60, env={**os.environ, "COLUMNS": "200"})


@pytest.mark.parametrize(("args", "why"), [
    (["remote", "set-display-message", "CP1", "hi", "--priority", "Loud"], "AlwaysFront"),
    (["remote", "set-display-message", "CP1", "hi", "--state", "Sleeping"], "Charging"),
    (["remote", "customer-information", "CP1"], "--tag or --customer"),
    (["remote", "customer-information", "CP1", "--tag", "T", "--no-report", "--keep"],
     "a report, a clear, or both"),
    (["remote", "set-network-profile", "CP1", "--url", "http://x"], "ws:// or wss://"),
    (["remote", "get-composite-schedule", "CP1", "--unit", "kW"], "W or A"),
    (["remote", "get-charging-profiles", "CP1", "--purpose", "Any"], "TxProfile"),
    (["stations", "reports", "NOPE"], "no station 'NOPE'"),
    (["stations", "reports", "CP1", "--kind", "passwords"], "display_messages"),
    (["stations", "running-cost", "NOPE"], "no station 'NOPE'"),
])
def test_bad_arguments_are_one_line(csms_server: RunningServer, args: list[str],
                                    why: str) -> None:
    out = csms(csms_server, *args) if args[0] == "remote" else csms_cli(csms_server, *args)
    assert out.returncode == 2, (out.stdout, out.stderr)
    assert why in out.stderr and "Traceback" not in out.stderr
    assert out.stdout == ""



async def test_running_cost_on_and_off(csms_server: RunningServer) -> None:
    await csms_server.add_station("CP1")

    async def option() -> str | None:
        async def work(tx: Tx) -> str | None:
            return await tx.get_station_option("CP1", "running_cost")

        return await csms_server.repo.read(work)  # type: ignore[no-any-return]

    for flag, word, stored in (("--on", "on", "on"), ("--off", "off", None)):
        out = await asyncio.to_thread(csms_cli, csms_server, "stations", "running-cost",
                                      "CP1", flag)
        assert (out.returncode, out.stdout) == (0, f"CP1: running cost {word}\n"), out
        assert await option() == stored
