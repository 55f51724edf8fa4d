"""``csms settle run`` shows its progress (chunks cut, sessions settled, batches waiting
for confirmations) on stderr when stderr is a terminal, and nothing more in a pipe."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
from pathlib import Path

import orjson

from support.first_hour import csms, ok


def _with_terminal_stderr(*args: str, cwd: Path) -> tuple[int, str, str]:
    """``csms`` with stdout a pipe and stderr a pseudo-terminal: (exit code, stdout,
    what the terminal received)."""
    main, side = pty.openpty()
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CSMS_")}
    env = {**clean, "COLUMNS": "120", "TERM": "xterm", "CSMS_DB": "c.db",
           "CSMS_DATA_DIR": "data"}
    env.pop("NO_COLOR", None)
    proc = subprocess.Popen([sys.executable, "-m", "csms", *args], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=side, stdin=subprocess.DEVNULL)
    os.close(side)
    seen = bytearray()
    while True:
        ready, _, _ = select.select([main], [], [], 120)
        if not ready:
            proc.kill()
            break
        try:
            chunk = os.read(main, 65536)
        except OSError:  # the terminal's other side closed: the process is gone
            break
        if not chunk:
            break
        seen += chunk
    os.close(main)
    assert proc.stdout is not None
    out = proc.stdout.read().decode()
    proc.stdout.close()
    return proc.wait(30), out, seen.decode(errors="replace")


def test_settle_run_shows_its_progress_on_a_terminal(work: Path) -> None:
    code, out, terminal = _with_terminal_stderr("settle", "run", "--chain", "memory",
                                                cwd=work)
    assert code == 0, out + terminal
    assert "settled 2 sessions in 1 batch" in out
    assert "1 chunk cut" in terminal, terminal
    assert "2 sessions settled" in terminal, terminal
    assert "chunk" not in out and "waiting" not in out


def test_settle_run_in_a_pipe_prints_no_progress(work: Path) -> None:
    r = csms("settle", "run", "--chain", "memory", cwd=work)
    ok(r)
    assert r.stdout == "settled 2 sessions in 1 batch; 1 batch finalized in all\n"
    [line] = r.stderr.splitlines()  # the in-process chain's warning, nothing more
    assert line.startswith("warning:"), r.stderr


def test_settle_run_json_is_unchanged_on_a_terminal(work: Path) -> None:
    code, out, _ = _with_terminal_stderr("settle", "run", "--chain", "memory", "--json",
                                         cwd=work)
    assert code == 0, out
    assert orjson.loads(out) == {"batches": 1, "sessions": 2, "finalized_batches_total": 1,
                                 "gas_used_total": orjson.loads(out)["gas_used_total"]}
