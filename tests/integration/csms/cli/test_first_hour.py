"""The mistakes of an operator's first hour, made with the real ``csms`` process.

Each one ends with an exit code other than 0, exactly one line on stderr, no
traceback, and every file that was there before still there, unchanged.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.client import RawClient
from support.services import free_port


def csms(*args: str, cwd: Path, env: dict[str, str] | None = None,
         timeout: float = 60) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CSMS_")}
    return subprocess.run([sys.executable, "-m", "csms", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout,
                          env={**clean, "COLUMNS": "80", **(env or {})})


def snapshot(folder: Path) -> dict[str, bytes | None]:
    """Every path under ``folder``: a file's bytes, None for a folder."""
    return {str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else None)
            for p in sorted(folder.rglob("*"))}


def kept(before: dict[str, bytes | None], folder: Path) -> None:
    after = snapshot(folder)
    for path, content in before.items():
        assert path in after, f"{path} was deleted"
        assert after[path] == content, f"{path} was changed"


def one_line_error(r: subprocess.CompletedProcess[str], *words: str, code: int | None = None,
                   ) -> str:
    assert r.returncode != 0, (r.stdout, r.stderr)
    if code is not None:
        assert r.returncode == code, (r.returncode, r.stderr)
    assert "Traceback" not in r.stderr + r.stdout, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def work(tmp_path: Path) -> Path:
    """A working folder with a few files of the operator's own."""
    (tmp_path / "a-folder").mkdir()
    (tmp_path / "a-folder" / "mine.txt").write_text("mine")
    (tmp_path / "notes.txt").write_text("not a database, my notes\n" * 50)
    (tmp_path / "random.bin").write_bytes(os.urandom(8192))
    return tmp_path


# -- 1. tracebacks on ordinary mistakes ------------------------------------------------
@pytest.mark.parametrize(
    ("db", "words"),
    [
        ("a-folder", ("--db", "a-folder", "folder")),
        ("notes.txt", ("--db", "notes.txt", "not a SQLite database")),
        ("random.bin", ("--db", "random.bin", "not a SQLite database")),
        ("notes.txt/inside.db", ("--db", "does not exist")),
        ("/proc/voltledger-test.db", ("database",)),  # a folder nothing can be made in
    ],
)
@pytest.mark.parametrize("command", [["stations", "list"], ["tags", "add", "T1"],
                                     ["sessions", "list"], ["receipt", "1"]])
def test_a_db_that_is_no_database_is_one_line(work: Path, db: str, words: tuple[str, ...],
                                               command: list[str]) -> None:
    before = snapshot(work)
    one_line_error(csms(*command, "--db", db, cwd=work), *words)
    kept(before, work)
    assert set(snapshot(work)) == set(before)  # nothing made either


@pytest.mark.parametrize("db", ["a-folder", "notes.txt", "/proc/voltledger-test.db"])
def test_serve_on_a_db_that_is_no_database_is_one_line(work: Path, db: str) -> None:
    before = snapshot(work)
    r = csms("serve", "--db", db, "--port", "0", "--admin-port", "-1", cwd=work)
    one_line_error(r, code=2)
    kept(before, work)


@pytest.mark.parametrize(
    ("data_dir", "words"),
    [
        ("notes.txt", ("--data-dir", "notes.txt", "is a file")),
        ("notes.txt/sub", ("--data-dir", "cannot create")),
        ("/proc/voltledger-test", ("--data-dir", "cannot create")),
    ],
)
def test_serve_with_a_data_dir_it_cannot_use_is_one_line(work: Path, data_dir: str,
                                                          words: tuple[str, ...]) -> None:
    before = snapshot(work)
    r = csms("serve", "--db", "c.db", "--port", "0", "--admin-port", "0", "--data-dir",
             data_dir, cwd=work)
    one_line_error(r, *words, code=2)
    kept(before, work)


@pytest.mark.parametrize("command", [["settle", "run", "--chain", "memory"],
                                     ["contract", "info", "--chain", "memory"],
                                     ["remote", "reset", "CP1"]])
def test_other_commands_with_a_data_dir_that_is_a_file_are_one_line(
        work: Path, command: list[str]) -> None:
    before = snapshot(work)
    r = csms(*command, "--data-dir", "notes.txt", cwd=work)
    one_line_error(r, "notes.txt")
    kept(before, work)


@pytest.mark.parametrize(("output", "words"), [
    ("a-folder", ("-o a-folder", "a folder")),
    ("missing/receipt.json", ("-o missing/receipt.json", "does not exist")),
])
def test_receipt_output_it_cannot_write_is_one_line(work: Path, output: str,
                                                    words: tuple[str, ...]) -> None:
    assert csms("stations", "list", "--db", "c.db", cwd=work).returncode == 0
    before = snapshot(work)
    one_line_error(csms("receipt", "1", "-o", output, "--db", "c.db", cwd=work), *words,
                   code=2)
    kept(before, work)
    assert not (work / "missing").exists()


@pytest.fixture(scope="module")
def receipt(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """A real receipt: the demo's, settled on the in-process chain."""
    folder = tmp_path_factory.mktemp("demo")
    r = csms("demo", "--chain", "memory", "--stations", "2", "--sessions", "1", "--folder",
             str(folder / "out"), cwd=folder, timeout=120)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    data: dict[str, object] = json.loads((folder / "out" / "receipt-1.json").read_text())
    return data


@pytest.mark.parametrize("change", [
    {"chain": "x"}, {"samples": "x"}, {"record": []}, {"record": None}, {"entry": 5},
    {"payment": []}, {"voltledger_receipt": "two"},
])
def test_verify_a_receipt_with_a_part_of_the_wrong_type_is_one_line(
        work: Path, receipt: dict[str, object], change: dict[str, object]) -> None:
    (work / "bad.json").write_text(json.dumps({**receipt, **change}))
    before = snapshot(work)
    one_line_error(csms("verify", "bad.json", "--data-dir", "data", cwd=work), "bad.json",
                   code=2)
    kept(before, work)


@pytest.mark.parametrize("change", [
    {"energy_wh": "x"}, {"tariff": "x"}, {"started_at": 5}, {"samples_hash": 7},
    {"meter_start_wh": []},
])
def test_verify_a_record_field_of_the_wrong_type_is_invalid(
        work: Path, receipt: dict[str, object], change: dict[str, object]) -> None:
    record = dict(receipt["record"])  # type: ignore[call-overload]
    record.update(change)
    (work / "bad.json").write_text(json.dumps({**receipt, "record": record}))
    r = csms("verify", "bad.json", "--data-dir", "data", cwd=work)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "INVALID receipt" in r.stdout and "Traceback" not in r.stdout + r.stderr


@pytest.mark.parametrize("samples", [
    [{"value": [], "timestamp": 3, "signed": "x"}], [1, 2], [{"signed": {"a": []}}],
])
def test_verify_samples_of_the_wrong_shape_are_invalid_or_one_line(
        work: Path, receipt: dict[str, object], samples: list[object]) -> None:
    (work / "bad.json").write_text(json.dumps({**receipt, "samples": samples}))
    r = csms("verify", "bad.json", "--data-dir", "data", cwd=work)
    assert "Traceback" not in r.stdout + r.stderr, r.stderr
    if r.returncode == 2:
        one_line_error(r, "bad.json")
    else:
        assert r.returncode == 1 and "INVALID receipt" in r.stdout, r.stdout + r.stderr


def test_a_good_receipt_before_a_bad_one_gives_no_verdict(
        work: Path, receipt: dict[str, object]) -> None:
    (work / "good.json").write_text(json.dumps(receipt))
    (work / "bad.json").write_text(json.dumps({**receipt, "chain": "x"}))
    r = csms("verify", "good.json", "bad.json", "--data-dir", "data", cwd=work)
    one_line_error(r, "bad.json", code=2)
    assert "receipt" not in r.stdout  # every file is read before any verdict


# -- 2. One csms serve per SQLite file ---------------------------------------------
class Serve:
    """``csms serve`` as a process on a SQLite file."""

    def __init__(self, work: Path, db: str = "c.db") -> None:
        self.port, self.admin_port = free_port(), free_port()
        self.log = (work / f"serve-{self.port}.log").open("w")
        clean = {k: v for k, v in os.environ.items() if not k.startswith("CSMS_")}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "csms", "serve", "--db", db, "--port", str(self.port),
             "--admin-port", str(self.admin_port), "--data-dir", "data"],
            cwd=work, stdout=self.log, stderr=subprocess.STDOUT,
            env={**clean, "COLUMNS": "80"})
        deadline = time.monotonic() + 30
        while not (work / "data" / "admin.token").exists() or not _listening(self.port):
            assert self.proc.poll() is None, (work / f"serve-{self.port}.log").read_text()
            assert time.monotonic() < deadline, "csms serve did not start"
            time.sleep(0.1)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(20)
        self.log.close()


def _listening(port: int) -> bool:
    import socket

    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture
def serving(work: Path) -> Iterator[Serve]:
    server = Serve(work)
    try:
        yield server
    finally:
        server.stop()


def test_a_second_serve_on_the_same_sqlite_file_refuses_to_start(work: Path,
                                                                 serving: Serve) -> None:
    r = csms("serve", "--db", "c.db", "--port", str(free_port()), "--admin-port",
             str(free_port()), "--data-dir", "data2", cwd=work)
    line = one_line_error(r, "one csms serve per SQLite file", "PostgreSQL", code=2)
    assert "c.db" in line
    assert not (work / "data2").exists()
    # the first one keeps working: it serves stations and its admin API answers
    assert serving.proc.poll() is None and _listening(serving.port)
    r = csms("remote", "reset", "CP1", "--admin-port", str(serving.admin_port),
             "--data-dir", "data", cwd=work)
    one_line_error(r, "no station 'CP1'", code=2)  # the API answered: CP1 is not known


def test_a_killed_server_does_not_block_its_restart(work: Path) -> None:
    first = Serve(work)
    first.stop(signal.SIGKILL)
    assert (work / "c.db.lock").exists()  # left behind, as by any crash
    again = Serve(work)  # starts: the lock went with the process
    try:
        assert again.proc.poll() is None
    finally:
        again.stop()
    assert again.proc.returncode == 0


def test_the_same_file_under_another_name_is_the_same_database(work: Path,
                                                               serving: Serve) -> None:
    r = csms("serve", "--db", str(work / "c.db"), "--port", str(free_port()),
             "--admin-port", "-1", "--data-dir", "data", cwd=work)
    one_line_error(r, "one csms serve per SQLite file", code=2)


# -- 3. unknown ids ---------------------------------------------------------------------
def test_unknown_ids_are_refused(work: Path) -> None:
    assert csms("stations", "add", "CP1", "--db", "c.db", cwd=work).returncode == 0
    one_line_error(csms("tariffs", "set", "NOPE", "--per-kwh", "0.3", "--db", "c.db",
                        cwd=work), "no station 'NOPE'", code=2)
    assert csms("tariffs", "set", "CP1", "--per-kwh", "0.3", "--db", "c.db",
                cwd=work).returncode == 0
    one_line_error(csms("receipt", "999", "--db", "c.db", cwd=work), "no session 999", code=2)
    one_line_error(csms("sessions", "show", "999", "--db", "c.db", cwd=work),
                   "no session 999", code=2)


def test_remote_commands_to_an_unknown_station(work: Path, serving: Serve) -> None:
    assert csms("stations", "add", "CP1", "--db", "c.db", cwd=work).returncode == 0
    options = ["--admin-port", str(serving.admin_port), "--data-dir", "data", "--db", "c.db"]
    r = csms("remote", "start", "NOPE", "--tag", "T1", *options, cwd=work)
    line = one_line_error(r, "no station 'NOPE'", code=2)
    assert "not connected" not in line
    r = csms("stations", "set-password", "NOPE", *options[:4], cwd=work)
    one_line_error(r, "no station 'NOPE'", code=2)
    # a known station that is offline: that is what it says
    one_line_error(csms("remote", "reset", "CP1", *options[:4], cwd=work), "not connected",
                   code=1)


async def test_remote_start_with_an_unknown_tag_warns(work: Path, serving: Serve) -> None:
    assert csms("stations", "add", "CP1", "--db", "c.db", cwd=work).returncode == 0
    assert csms("tags", "add", "KNOWN", "--db", "c.db", cwd=work).returncode == 0
    options = ["--admin-port", str(serving.admin_port), "--data-dir", "data", "--db", "c.db"]
    async with await RawClient.connect(f"ws://127.0.0.1:{serving.port}", "CP1") as c:
        await c.result("BootNotification", {"chargePointVendor": "V", "chargePointModel": "M"})
        # csms serve reads a new 1.6 station's configuration after its boot
        call = await asyncio.wait_for(c.calls.get(), 20)
        assert call[2] == "GetConfiguration"
        await c.answer(call[1], {"configurationKey": []})
        for tag, warned in (("UNKNOWNTAG", True), ("KNOWN", False)):
            cli = asyncio.create_task(asyncio.to_thread(
                csms, "remote", "start", "CP1", "--tag", tag, *options, cwd=work))
            call = await asyncio.wait_for(c.calls.get(), 20)
            await c.answer(call[1], {"status": "Accepted"})
            r = await cli
            assert r.returncode == 0, r.stderr
            assert call[2] == "RemoteStartTransaction" and call[3]["idTag"] == tag
            assert "CP1: Accepted" in r.stdout
            if warned:
                [line] = r.stderr.strip().splitlines()
                assert line.startswith("warning: tag 'UNKNOWNTAG' is unknown"), line
            else:
                assert r.stderr == ""


# -- settings: a file, variables, flags ---------------------------------------------------
def test_settings_come_from_the_file_below_variables_and_flags(work: Path) -> None:
    (work / "csms.toml").write_text('db = "from-file.db"\n')
    assert csms("--config", "csms.toml", "stations", "add", "CP1", cwd=work).returncode == 0
    assert (work / "from-file.db").is_file()
    r = csms("stations", "list", "--json", cwd=work, env={"CSMS_CONFIG": "csms.toml"})
    assert [s["id"] for s in json.loads(r.stdout)] == ["CP1"]
    r = csms("stations", "list", "--json", cwd=work,
             env={"CSMS_CONFIG": "csms.toml", "CSMS_DB": "from-env.db"})
    assert json.loads(r.stdout) == [] and (work / "from-env.db").is_file()
    r = csms("--config", "csms.toml", "stations", "list", "--json", "--db", "flag.db",
             cwd=work, env={"CSMS_DB": "from-env.db"})
    assert json.loads(r.stdout) == [] and (work / "flag.db").is_file()


@pytest.mark.parametrize(("file", "env", "words"), [
    ("porte = 1\n", {}, ("csms.toml", "no setting 'porte'")),
    ("port = 'x'\n", {}, ("csms.toml", "port = 'x' is not a valid int")),
    ("", {"CSMS_PORT": "abc"}, ("CSMS_PORT='abc' is not a valid int",)),
    # named by its flag where the command takes one (serve), else by the variable alone
    # (tests/integration/csms/cli/test_settings_errors.py)
    ("", {"CSMS_WS_COMPRESSION": "gzip"}, ("CSMS_WS_COMPRESSION", "choose one of")),
])
def test_a_wrong_setting_is_one_line(work: Path, file: str, env: dict[str, str],
                                     words: tuple[str, ...]) -> None:
    (work / "csms.toml").write_text(file)
    before = snapshot(work)
    for command in (["stations", "list"], ["serve"]):
        r = csms("--config", "csms.toml", *command, "--db", "c.db", cwd=work, env=env)
        one_line_error(r, *words, code=2)
    kept(before, work)
    assert not (work / "c.db").exists()


# -- 4. consistent options ------------------------------------------------------------------
def test_settle_worker_takes_max_wait_and_json_like_settle_run(work: Path) -> None:
    assert csms("stations", "list", "--db", "c.db", cwd=work).returncode == 0
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CSMS_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "csms", "settle", "worker", "--chain", "memory", "--max-wait",
         "5", "--batch-size", "10", "--json", "--db", "c.db", "--data-dir", "data"],
        cwd=work, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**clean, "COLUMNS": "80"})
    assert proc.stdout is not None
    lines = []
    while True:  # the JSON object it prints when it starts, over several lines
        line = proc.stdout.readline()
        assert line, proc.communicate()
        lines.append(line)
        if line.startswith("}"):
            break
    started = json.loads("".join(lines))
    assert started["event"] == "started" and started["kind"] == "memory"
    assert (started["max_wait"], started["batch_size"]) == (5.0, 10)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    stopped = json.loads(out)
    assert stopped == {"event": "stopped", "finalized_batches_total": 0, "gas_used_total": 0}


def test_a_link_to_the_sqlite_file_is_the_same_database(work: Path, serving: Serve) -> None:
    (work / "link.db").symlink_to(work / "c.db")
    r = csms("serve", "--db", "link.db", "--port", str(free_port()), "--admin-port", "-1",
             cwd=work)
    one_line_error(r, "one csms serve per SQLite file", code=2)
