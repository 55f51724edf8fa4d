"""The managed Anvil node never outlives its owner, and one state file has one node."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from settlement.chain import (
    AnvilNode,
    ChainError,
    ContractMissing,
    _ephemeral_floor,
    find_anvil,
    free_local_port,
    open_chain,
    recorded_deployments,
    rpc_client,
)
from support import require_anvil
from support.services import alive

OWNER = """
import sys, time
from pathlib import Path
from settlement.chain import AnvilNode
node = AnvilNode(Path(sys.argv[1]))
print(node.port, flush=True)
time.sleep(600)
"""


@pytest.fixture(autouse=True)
def anvil_installed() -> None:
    require_anvil()


def gone_within(pid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not alive(pid)


@pytest.fixture
def owner(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], Path, dict[str, object]]]:
    """Another process that started a node on a state file, and the node's pid record."""
    state = tmp_path / "anvil-state.json"
    proc = subprocess.Popen([sys.executable, "-c", OWNER, str(state)], stdout=subprocess.PIPE,
                            text=True)
    assert proc.stdout is not None
    proc.stdout.readline()  # the node is up
    record = json.loads(state.with_name(state.name + ".pid").read_text())
    yield proc, state, record
    if proc.poll() is None:
        proc.kill()
        proc.wait()
    gone_within(int(record["anvil"]), 40)  # type: ignore[call-overload]


def test_kill_9_of_the_owner_stops_the_node_after_it_saved_its_state(
    owner: tuple[subprocess.Popen[str], Path, dict[str, object]],
) -> None:
    proc, state, record = owner
    anvil = int(record["anvil"])  # type: ignore[call-overload]
    assert alive(anvil) and record["parent"] == proc.pid
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert gone_within(anvil, 40)  # not re-parented and left running
    assert gone_within(int(record["guard"]), 10)  # type: ignore[call-overload]
    assert state.exists() and json.loads(state.read_text())  # it wrote its state
    assert not state.with_name(state.name + ".pid").exists()


def test_kill_9_of_the_guard_stops_the_node(
    owner: tuple[subprocess.Popen[str], Path, dict[str, object]],
) -> None:
    _, _, record = owner
    os.kill(int(record["guard"]), signal.SIGKILL)  # type: ignore[call-overload]
    assert gone_within(int(record["anvil"]), 40)  # type: ignore[call-overload]


def test_a_state_file_in_use_is_not_started_twice(
    owner: tuple[subprocess.Popen[str], Path, dict[str, object]],
) -> None:
    _, state, record = owner
    with pytest.raises(ChainError, match="in use by process"):
        AnvilNode(state)
    # a reader (csms verify) uses the running node instead, and leaves it running
    node = AnvilNode(state, attach=True)
    assert rpc_client(node.url).eth.block_number >= 0
    node.stop()
    assert alive(int(record["anvil"]))  # type: ignore[call-overload]


def test_a_node_left_behind_is_stopped_before_a_new_one_starts(tmp_path: Path) -> None:
    """A node whose owner and guard are gone (as an older version left them)."""
    state = tmp_path / "anvil-state.json"
    binary = find_anvil()
    assert binary is not None
    stray = subprocess.Popen([binary, "--host", "127.0.0.1", "--port", "0", "--silent",
                              "--state", str(state), "--state-interval", "1"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             start_new_session=True)
    try:
        # the node is Anvil once its process shows the command (a busy machine may not
        # have exec'd it yet: a pid file naming a process that is not Anvil is ignored)
        cmdline = Path(f"/proc/{stray.pid}/cmdline")
        deadline = time.monotonic() + 30
        while str(state) not in cmdline.read_bytes().decode(errors="replace"):
            assert time.monotonic() < deadline, "anvil did not start"
            time.sleep(0.05)
        dead_owner = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                                    capture_output=True, text=True).stdout.strip()
        state.with_name(state.name + ".pid").write_text(json.dumps({
            "anvil": stray.pid, "guard": int(dead_owner), "parent": int(dead_owner),
            "command": [binary, "--port", "1", "--state", str(state)]}))
        node = AnvilNode(state)
        try:
            assert stray.wait(5) is not None  # stopped (SIGTERM) before ours started
        finally:
            node.stop()
    finally:
        if stray.poll() is None:
            stray.kill()
            stray.wait()


STARTER = """
import sys
from pathlib import Path
from settlement.chain import AnvilNode, ChainError
print("ready", flush=True)
sys.stdin.readline()  # go
try:
    node = AnvilNode(Path(sys.argv[1]))
except ChainError as exc:
    print("refused", exc, flush=True)
else:
    print("started", node.port, flush=True)
    sys.stdin.readline()  # stop
    node.stop()
"""


def test_two_processes_starting_a_node_at_once_on_one_state_file_start_one(
    tmp_path: Path,
) -> None:
    """Two ``csms settle run`` (or a run and a driver's wallet command) started at the same
    moment on one data folder: each found no node in the pid file and started its own on
    the same state, each on its own port. Each node then writes the whole state file, the
    one that stops last over the other's: what the first settled on chain (chunks anchored,
    escrows debited) was gone from the chain the folder keeps. One of them starts the
    node; the other is refused as it is beside a running one."""
    state = tmp_path / "anvil-state.json"
    procs = [subprocess.Popen([sys.executable, "-c", STARTER, str(state)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
             for _ in range(2)]
    try:
        for proc in procs:
            assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
        for proc in procs:  # both at once, their imports done
            assert proc.stdin is not None
            proc.stdin.write("\n")
            proc.stdin.flush()
        said = sorted(proc.stdout.readline().split()[0] for proc in procs
                      if proc.stdout is not None)
        assert said == ["refused", "started"]
    finally:
        for proc in procs:
            assert proc.stdin is not None
            with contextlib.suppress(OSError):
                proc.stdin.close()
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def test_the_keystore_password_is_never_logged(tmp_path: Path,
                                               caplog: pytest.LogCaptureFixture) -> None:
    from eth_account import Account

    from settlement.chain import open_chain

    caplog.set_level(logging.DEBUG)
    password = "keystore-password-secret-1234"
    operator = Account.create()
    keystore = tmp_path / "operator.json"
    keystore.write_text(json.dumps(Account.encrypt(operator.key, password)))
    good, bad = tmp_path / "pw", tmp_path / "wrong-pw"
    good.write_text(password + "\n")
    bad.write_text(password[::-1])
    node = AnvilNode()
    try:
        rpc_client(node.url).provider.make_request(  # type: ignore[arg-type]
            "anvil_setBalance", [operator.address, hex(10**21)])
        with pytest.raises(ChainError) as refused:
            open_chain(node.url, tmp_path / "data", keystore=str(keystore),
                       password_file=str(bad))
        chain = open_chain(node.url, tmp_path / "data", keystore=str(keystore),
                           password_file=str(good))
        assert chain.operator.address == operator.address
    finally:
        node.stop()
    for text in (caplog.text, str(refused.value)):
        assert password not in text and password[::-1] not in text


def test_a_free_local_port_is_below_the_range_outgoing_connections_take() -> None:
    """The port a local chain (and every test and benchmark server) is started on: free,
    and never one the kernel would give an outgoing connection as its source port (a
    port from that range, checked free and then taken by a connection before the server
    bound it, made a benchmark's server exit in CI)."""
    floor = _ephemeral_floor()
    ports = {free_local_port() for _ in range(50)}
    assert all(p < floor for p in ports), (floor, sorted(ports))
    assert len(ports) > 40  # at random, not one after the other from one place
    for port in list(ports)[:5]:
        with socket.socket() as s:
            s.bind(("127.0.0.1", port))  # free
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        outgoing = [socket.create_connection(("127.0.0.1", held.getsockname()[1]))
                    for _ in range(20)]
        try:  # what connections take comes from the range above the floor
            assert all(c.getsockname()[1] >= floor for c in outgoing)
        finally:
            for c in outgoing:
                c.close()


def test_the_managed_keystore_opens_without_a_costly_key_derivation(tmp_path: Path) -> None:
    """The local chain's key sits beside its password: a scrypt derivation (eth_account's
    default, ~0.65 s of CPU at every open) protects nothing there. It is a V3 keystore of
    one PBKDF2 round, that the password beside it opens; one written with scrypt before
    still opens, and stays as it was."""
    from eth_account import Account

    from settlement.chain import _managed_keystore

    first = _managed_keystore(tmp_path / "new")
    data = json.loads((tmp_path / "new" / "operator.keystore.json").read_text())
    assert data["crypto"]["kdf"] == "pbkdf2" and data["crypto"]["kdfparams"]["c"] == 1
    password = (tmp_path / "new" / "operator.password").read_text()
    assert Account.from_key(Account.decrypt(data, password)).address == first.address
    assert _managed_keystore(tmp_path / "new").address == first.address  # opened again

    old = Account.create()
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "operator.password").write_text("pw")
    written = json.dumps(Account.encrypt(old.key, "pw"))  # scrypt
    (tmp_path / "old" / "operator.keystore.json").write_text(written)
    assert _managed_keystore(tmp_path / "old").address == old.address
    assert (tmp_path / "old" / "operator.keystore.json").read_text() == written


def test_a_deployment_record_that_cannot_be_read_is_refused_never_replaced(
    tmp_path: Path,
) -> None:
    """The data folder's chain.json garbled (not JSON, not an object, an entry that is not
    one): the chain is not opened (one line naming the file) and the record is left as it
    is: read as no record, a new contract would be deployed and the record of the one that
    holds the escrows written over. Without a record and without deploying: one line."""
    folder = tmp_path / "data"
    first = open_chain("local", folder)
    chain_id, address = first.chain_id, first.contract_address
    first.close()
    record = folder / "chain.json"
    assert recorded_deployments(folder)[str(chain_id)]["contract"] == address
    for garbled in ("{not json", "[]", json.dumps({str(chain_id): address})):
        record.write_text(garbled, "utf-8")
        with pytest.raises(ChainError, match=r"chain\.json") as refused:
            open_chain("local", folder)
        assert "\n" not in str(refused.value)
        assert record.read_text("utf-8") == garbled
        assert nodes_on(folder) == [], "the refused call left its node running"
    record.unlink()
    with pytest.raises(ChainError, match=f"^no contract recorded for chain {chain_id}: run"
                       " csms contract deploy$"):
        open_chain("local", folder, deploy=False)
    assert not record.exists()
    assert nodes_on(folder) == [], "the refused call left its node running"


def nodes_on(folder: Path) -> list[int]:
    """The processes running a node on the data folder's state file (Anvil and its
    guard), as the system lists them."""
    state = str(folder / "anvil-state.json").encode()
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        pid = int(cmdline.parent.name)
        try:
            if state in cmdline.read_bytes() and alive(pid):
                found.append(pid)
        except OSError:  # ended while we looked
            continue
    return found


def test_a_refused_local_chain_stops_the_node_it_started(tmp_path: Path) -> None:
    """Every refusal of ``open_chain("local")`` after its node started (a recorded contract
    the chain does not hold, a contract given that is not there) stops that node: a
    long-running process (``csms serve`` opening the chain again, a test run) is not left
    with a node per attempt, each holding the state file and a port."""
    folder = tmp_path / "data"
    first = open_chain("local", folder)
    chain_id = first.chain_id
    first.close()
    assert nodes_on(folder) == []
    nowhere = "0x" + "ab" * 20
    record = folder / "chain.json"
    kept = json.loads(record.read_text("utf-8"))
    record.write_text(json.dumps({str(chain_id): {**kept[str(chain_id)],
                                                  "contract": nowhere}}), "utf-8")
    for kwargs in ({}, {"contract": nowhere}):
        with pytest.raises(ContractMissing):
            open_chain("local", folder, **kwargs)  # type: ignore[arg-type]
        assert nodes_on(folder) == [], (kwargs, "the refused call left its node running")
    record.write_text(json.dumps(kept), "utf-8")
    again = open_chain("local", folder)  # the next attempt starts its own node
    try:
        assert nodes_on(folder)  # its guard and Anvil
    finally:
        again.close()
    assert nodes_on(folder) == []


def children_of(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(p) for p in (task / "children").read_text().split()]
    return found


def test_stop_returns_once_the_node_itself_has_ended(tmp_path: Path) -> None:
    """The process the guard starts and waits for is Anvil itself, not a launcher that
    passes SIGTERM on and exits at once (npm's ``.bin/anvil`` is one): the guard would see
    the node gone while Anvil still writes its state, :meth:`AnvilNode.stop` would return
    then, and the next start on the same state file could read half of it."""
    state = tmp_path / "anvil-state.json"
    for _ in range(3):
        node = AnvilNode(state)
        record = json.loads(state.with_name(state.name + ".pid").read_text())
        assert children_of(int(record["anvil"])) == []  # the node, not a launcher of it
        node.stop()
        assert nodes_on(tmp_path) == []
        assert json.loads(state.read_text())  # written whole before stop returned
