"""What a new operator is told, with the real ``csms`` process, a real ``csms serve`` and
the simulated stations, when they settle on the in-process chain (``--chain memory``: gone
at exit, its receipts never verifiable) and when a listener's port is taken."""

from __future__ import annotations

import re
import socket
from pathlib import Path

import pytest

from support.first_hour import Serve, csms, ok
from support.services import free_port


def test_settling_on_the_in_process_chain_warns_that_it_is_gone_at_exit(work: Path) -> None:
    """``--chain memory`` is in the configuration table as one of three equal choices.
    Its chain lives in the process: the sessions are settled for good (never settled again
    on another chain), and their receipts can never be verified (docs/settlement.md says
    so; ``csms demo --chain memory`` says so too). ``csms settle run --chain memory`` says
    nothing."""
    r = csms("settle", "run", "--chain", "memory", cwd=work)
    ok(r)
    assert "settled 2 sessions" in r.stdout
    said = r.stderr.lower()  # a warning, apart from what the command answers
    assert "memory" in said or "in-process" in said or "in this process" in said, said
    assert "verif" in said or "gone" in said, said


def test_serving_on_the_in_process_chain_warns_that_it_is_gone_at_exit(tmp_path: Path) -> None:
    """``csms serve --chain memory`` settles every completed session on a chain gone at
    its exit, as ``csms settle run --chain memory`` does: it says so on stderr too."""
    server = Serve(tmp_path, "--chain", "memory")
    server.stop()  # the banner and its warnings are out before the server waits for a stop
    log = server.log_path.read_text()
    [line] = [x for x in log.splitlines() if x.startswith("warning:")]
    assert "--chain memory" in line and "gone" in line and "verified" in line, line


@pytest.mark.parametrize("flag", ["--port", "--admin-port", "--files-port"])
def test_a_port_in_use_names_the_flag_to_change(tmp_path: Path, flag: str) -> None:
    """docs/configuration.md: a setting that cannot be used "stops the command with one
    line naming the flag and the variable to fix". A port in use says "cannot listen:
    [Errno 98] error while attempting to bind on address ('127.0.0.1', N): address already
    in use": not which of the two listeners it was, nor which flag moves it."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        ports = {"--port": str(free_port()), "--admin-port": str(free_port()),
                 "--files-port": "-1", flag: str(taken)}
        r = csms("serve", *(x for item in ports.items() for x in item), cwd=tmp_path,
                 timeout=60)
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert "Traceback" not in r.stderr
    [line] = [x for x in r.stderr.splitlines() if x.startswith("error:")]  # after the log
    assert "already in use" in line, line
    assert str(taken) in line, line
    assert re.search(rf"(?<![-\w]){flag}(?![-\w])", line), line


def test_verify_of_a_receipt_settled_in_process_says_what_to_do(work: Path) -> None:
    """A receipt of a session settled with ``--chain memory`` names no node: ``csms
    verify`` answers "?? on chain: no RPC endpoint given: the chain was not checked" and
    UNVERIFIED, with no word of ``--rpc`` or of the in-process chain being gone."""
    ok(csms("settle", "run", "--chain", "memory", cwd=work))
    ok(csms("receipt", "1", "-o", "receipt.json", cwd=work))
    r = csms("verify", "receipt.json", cwd=work)
    assert r.returncode == 3, r.stdout + r.stderr
    [line] = [x for x in r.stdout.splitlines() if "RPC endpoint" in x]
    assert "--rpc" in line and "memory" in line and "gone" in line, line
