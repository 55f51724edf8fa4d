"""Keep a managed Anvil node alive no longer than the process that started it.

``python -m settlement.anvil_guard PIDFILE PARENT_PID -- anvil ARGS...`` starts
Anvil and waits for its standard input to end. The owner (``AnvilNode``) holds
the other end of that pipe; when the owner exits in any way, ``kill -9``
included, the kernel closes it, and the guard stops Anvil with SIGTERM, on
which Anvil writes its state file. Without the guard a killed ``csms settle
run`` left Anvil running, re-parented, rewriting the state file every second
over the one the next run's node wrote, and anchored roots were lost.

If the guard itself is killed, Anvil gets SIGTERM from the kernel
(``PR_SET_PDEATHSIG``, Linux). The pid file names Anvil, the guard and the
owner, so the next start can tell a node in use from one left behind.

Before the SIGTERM the guard waits, up to :data:`MINED_WAIT_S`, until the node holds no
pending transaction (``txpool_status``). A transaction sent just before the owner died
(a settlement broadcast, then ``kill -9``) may be mid-way through being mined: Anvil's
state written then held the transaction's effect without its block (about one stop in a
hundred, a fraction of a millisecond after the transaction), and the next node had a
contract holding a chunk as settled with no transaction, receipt or event that settled
it: which sessions that chunk paid was known nowhere.

Only the standard library: this runs as its own small process, and the ``csms`` command
imports :func:`process_alive` from here (the one check of a process that is gone, for
the owner of a node and for the command's stale folders and leases).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import itertools
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

__all__ = ["main", "pending_transactions", "process_alive", "rpc", "rpc_url",
           "wait_until_mined"]

PR_SET_PDEATHSIG = 1
STOP_WAIT_S = 30.0  # Anvil writes its whole state on SIGTERM; give it time
# at most, for the node's pending transactions to be mined before it is stopped (the managed
# node mines each at once: milliseconds; one that cannot be, e.g. under --no-mining, is lost
# with the node, as a pending one always was)
MINED_WAIT_S = 5.0


def _die_with_guard() -> None:
    """In the child, before exec: SIGTERM when the guard (its parent) dies."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` runs on this machine (another user's too); a zombie, whose
    parent has not reaped it yet, is gone."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def rpc_url(command: list[str]) -> str | None:
    """The node's JSON-RPC address, from its arguments (``--host``, ``--port``)."""
    host, port = "127.0.0.1", None
    for flag, value in itertools.pairwise(command):
        if flag == "--port":
            port = value
        elif flag == "--host":
            host = value
    return None if port is None else f"http://{host}:{port}"


def rpc(url: str, method: str, *params: Any, timeout: float = 0.5) -> Any:
    """One JSON-RPC call to the node, asked once (no retry: whether a node answers is the
    question when it is stopped), over a direct connection that no HTTP proxy setting can
    divert; ``ValueError`` for the node's error."""
    import urllib.request  # here: the csms command imports this module, and this costs ~30 ms

    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method,
                       "params": list(params)}).encode()
    request = urllib.request.Request(url, body, {"Content-Type": "application/json"})
    direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with direct.open(request, timeout=timeout) as response:
        answer = json.loads(response.read())
    if "error" in answer:
        raise ValueError(f"{method}: {answer['error']}")
    return answer["result"]


def pending_transactions(url: str) -> int | None:
    """How many transactions the node holds to be mined (``txpool_status``); None when it
    does not answer."""
    try:
        return int(rpc(url, "txpool_status")["pending"], 16)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def wait_until_mined(url: str, limit: float = MINED_WAIT_S) -> None:
    """Wait, up to ``limit`` seconds, until the node holds no pending transaction: its
    state written then holds every block it mined. A node that does not answer is not
    waited for."""
    deadline = time.monotonic() + limit
    while True:
        pending = pending_transactions(url)
        if pending == 0 or pending is None or time.monotonic() >= deadline:
            return
        time.sleep(0.01)


def main(argv: list[str]) -> int:
    if len(argv) < 4 or argv[2] != "--":
        print("usage: python -m settlement.anvil_guard PIDFILE|- PARENT_PID -- ANVIL ARGS...",
              file=sys.stderr)
        return 2
    pidfile = None if argv[0] == "-" else Path(argv[0])
    parent, command = int(argv[1]), argv[3:]
    url = rpc_url(command)
    child = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, preexec_fn=_die_with_guard)
    record = {"anvil": child.pid, "guard": os.getpid(), "parent": parent,
              "command": command}
    if pidfile is not None:
        tmp = pidfile.with_name(pidfile.name + ".tmp")
        tmp.write_text(json.dumps(record), "utf-8")
        tmp.replace(pidfile)
    stopping = threading.Event()

    def kill_if_running() -> None:
        if child.poll() is None:
            child.kill()

    def stop(*_: object) -> None:
        if stopping.is_set():
            return
        stopping.set()
        if child.poll() is None:
            if url is not None:
                wait_until_mined(url)
            child.terminate()
            # a node that does not finish writing its state in time is killed
            killer = threading.Timer(STOP_WAIT_S, kill_if_running)
            killer.daemon = True
            killer.start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the owner decides, not the terminal

    def owner_gone() -> None:
        sys.stdin.buffer.read()  # returns at EOF: the owner closed the pipe or died
        stop()

    threading.Thread(target=owner_gone, daemon=True).start()
    code = child.wait()
    if pidfile is not None:
        try:
            if json.loads(pidfile.read_text("utf-8")).get("anvil") == child.pid:
                pidfile.unlink()
        except (OSError, ValueError):
            pass
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
