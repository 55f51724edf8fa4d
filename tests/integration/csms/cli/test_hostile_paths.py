"""What a careless operator may hand ``csms`` beyond a wrong value: a device that never
ends (/dev/zero), a pipe nobody writes to, a file name longer than the system takes, an
RPC chain whose node is down while its key is at hand, an admin host that is no host, a
node with nothing to listen on. Each is one line on stderr, a non-zero exit and no
traceback, in bounded time and memory, and nothing is made on the way."""

from __future__ import annotations

import os
import resource
import socket
import subprocess
import sys
from pathlib import Path

import pytest

# a port bound and never listening: connections to it are refused
_HELD = socket.socket()
_HELD.bind(("127.0.0.1", 0))
NOWHERE = _HELD.getsockname()[1]
LONG = "x" * 300  # beyond NAME_MAX (255)
MEMORY = 3 << 30  # the address space a command gets here: reading /dev/zero whole fails


def _bounded() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY, MEMORY))


def csms(work: Path, *args: str, env: dict[str, str] | None = None,
         ) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CSMS_")}
    return subprocess.run(
        [sys.executable, "-m", "csms", *args], cwd=work, capture_output=True, text=True,
        timeout=60, preexec_fn=_bounded,
        env={**clean, "CSMS_DB": "c.db", "CSMS_DATA_DIR": "data", "COLUMNS": "200",
             "CSMS_ADMIN_PORT": str(NOWHERE),
             **(env or {})})


def one_line(r: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in r.stderr + r.stdout, r.stderr[-1500:]
    assert r.returncode not in (0, None), (r.returncode, r.stdout[-300:])
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr[-800:]


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A database with a station S1, an admin token, a wallet key (k.json, p.txt) and a
    FIFO."""
    work = tmp_path_factory.mktemp("hostile")
    r = csms(work, "stations", "add", "S1")
    assert r.returncode == 0, r.stderr
    r = csms(work, "wallet", "new", "--keystore", "k.json", "--password-file", "p.txt")
    assert r.returncode == 0, r.stderr
    os.mkfifo(work / "fifo")
    (work / "data").mkdir(exist_ok=True)  # as the first csms serve leaves it, its token
    (work / "data" / "admin.token").write_text("some-token\n")
    return work


def files(work: Path) -> set[str]:
    return {str(p.relative_to(work)) for p in work.rglob("*")
            if not p.name.startswith("c.db")}


@pytest.mark.parametrize(("args", "env"), [
    (("verify", "/dev/zero"), {}),
    (("stations", "set-meter-key", "S1", "--file", "/dev/zero"), {}),
    (("certificates", "install", "S1", "/dev/zero"), {}),
    (("certificates", "delete", "S1", "--file", "/dev/zero"), {}),
    (("wallet", "status", "--keystore", "/dev/zero", "--password-file", "p.txt"), {}),
    (("wallet", "status", "--keystore", "k.json", "--password-file", "/dev/zero"), {}),
    (("wallet", "entries", "--keystore", "/dev/zero"), {}),
    (("firmware", "add", "/dev/zero"), {}),
    (("stations", "list"), {"CSMS_CONFIG": "/dev/zero"}),
    (("stations", "list"), {"CSMS_DB": "fifo"}),
    (("stations", "list"), {"CSMS_DB": "/dev/zero"}),
    (("stations", "list"), {"CSMS_DB": LONG}),
    (("receipt", "1", "-o", LONG), {}),
    (("wallet", "new", "--keystore", LONG, "--password-file", "new.txt"), {}),
    (("wallet", "status", "--keystore", "k.json", "--password-file", "p.txt"),
     {"CSMS_CHAIN": "http://127.0.0.1:{nowhere}"}),
    (("settle", "run"), {"CSMS_CHAIN": "http://127.0.0.1:{nowhere}",
                         "CSMS_KEYSTORE": "k.json", "CSMS_KEYSTORE_PASSWORD_FILE": "p.txt"}),
    (("settle", "run"), {"CSMS_CHAIN": "http://127.0.0.1:{nowhere}",
                         "CSMS_KEYSTORE": "/dev/zero", "CSMS_KEYSTORE_PASSWORD_FILE": "p.txt"}),
    (("settle", "run"), {"CSMS_CHAIN": "http://127.0.0.1:{nowhere}",
                         "CSMS_KEYSTORE": "k.json", "CSMS_KEYSTORE_PASSWORD_FILE": "/dev/zero"}),
    (("stations", "set-password", "S1", "--admin-host", "\x1b[2J"), {}),
    (("stations", "set-password", "S1", "--admin-host", "[red]x"), {}),
    (("remote", "reset", "S1"), {"CSMS_ADMIN_HOST": "é😀 x"}),
    (("serve", "--port", "-1"), {}),
    (("serve", "--port", "0"), {"CSMS_MQTT": "mqtt://u@127.0.0.1:1",
                                "CSMS_MQTT_PASSWORD_FILE": "/dev/zero"}),
], ids=lambda v: " ".join(v)[:60] if isinstance(v, tuple) else ",".join(
    f"{k}={x[:20]!r}" for k, x in v.items()))
def test_a_hostile_path_or_peer_is_one_line(prepared: Path, args: tuple[str, ...],
                                            env: dict[str, str]) -> None:
    before = files(prepared)
    r = csms(prepared, *args, env={k: v.replace("{nowhere}", str(NOWHERE))
                                   for k, v in env.items()})
    one_line(r)
    assert "\x1b" not in r.stderr
    assert files(prepared) == before  # no CA, token, keystore or password file made


def test_an_unreachable_rpc_node_is_named_not_quoted(prepared: Path) -> None:
    """The line says why the node did not answer, without its URL (which may hold an API
    key)."""
    r = csms(prepared, "wallet", "status", "--keystore", "k.json", "--password-file", "p.txt",
             env={"CSMS_CHAIN": f"http://user:secret@127.0.0.1:{NOWHERE}/v3/KEY"})
    one_line(r)
    assert "connection refused" in r.stderr
    assert "secret" not in r.stderr and "KEY" not in r.stderr, r.stderr
