"""Every ``csms`` command, found by walking the command tree itself (a new command is
covered without a line here), given what an operator can mistype: a missing argument, text
for a number, a negative number, 10**30, a float for an integer, an unknown station /
session / tag, an empty string, a NUL byte or a line break, a path that does not exist or is
a folder, a database that is a text file, a folder or an unreachable PostgreSQL server, a
data folder that cannot be one.

Each one ends with an exit code other than 0, exactly one line on stderr, no traceback, and
nothing changed (the database's content, the data folder, the working folder). The cases
run through ``csms.cli.main`` in this process (the real application, some 1,500 calls); a
handful of them run as real ``csms`` processes too, to show that the two agree. Each list
prints valid JSON with ``--json``, and a table or a line on an empty database.
"""

from __future__ import annotations

import hashlib
import inspect
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import traceback
import types
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from types import FrameType
from typing import Any

import orjson
import pytest
import typer.main
from typer.testing import CliRunner

from csms.cli import main
from support.cli_tree import leaves

HUGE = str(10**30)
# a port bound and never listening, held while the tests run: connections to it are
# refused (the admin API, the chain's RPC, a PostgreSQL server), and nothing else takes it
_HELD = socket.socket()
_HELD.bind(("127.0.0.1", 0))
NOWHERE = _HELD.getsockname()[1]
# what fills the arguments a case is not about, by name (else by type): known ones, so
# that the case's own value is what is wrong
FILLERS: dict[str, str] = {
    "station": "S1", "station_id": "S1", "stations": "S1", "tag": "T1", "kw": "22",
    "state": "on", "key": "K", "value": "1", "message": "Heartbeat", "variables": "C.V",
    "variable": "C.V", "assignments": "C.V=1", "host": "0x" + "11" * 20, "driver":
    "0x" + "22" * 20, "salt": "0x" + "33" * 32, "per_kwh": "1", "until":
    "2030-01-01T00:00:00+00:00", "url": "ws://127.0.0.1:1/x", "text": "hi", "vendor": "V",
    "ids": "1", "base": "All", "type": "UpperThreshold", "version": "1.0", "files":
    "none.json", "file": "none.bin", "output": "out.bin", "keystore": "none.json",
    "password_file": "none.txt", "group": "G1",
}
BY_TYPE = {int: "1", float: "1"}
# the settings every command takes from the environment, not the operator's own
NOT_CASES = {"db", "data_dir", "help", "config"}
# ids of no row: a station, a tag, a session / request / reservation
UNKNOWN = {"station": "NOSUCH", "station_id": "NOSUCH", "stations": "NOSUCH",
           "tag": "NOSUCH", "session_id": "424242", "session": "424242",
           "request": "424242", "reservation": "424242"}
# what names a path: it is given one that does not exist and a folder
PATHS = {"file", "files", "output", "out", "keystore", "password_file", "sign_with", "cert",
         "tls_cert", "tls_key", "mqtt_ca", "mqtt_password_file", "folder", "contract_abi",
         "ca_cert", "ca_key"}
# what must name something: an empty one, a NUL byte or a line break is refused
IDS = {"station", "station_id", "stations", "tag", "group"}
# where a path that does not exist yet may be made (the rest are read)
MADE = {"output", "out", "folder"}
# commands that make what they are given, not find it
CREATES = {("stations", "add"), ("tags", "add")}
# commands that run until stopped once their arguments are good: only what must be
# refused before they start
LONG_RUNNING = {("serve",), ("demo",), ("settle", "worker")}
# the files they read before they start
READ_FIRST = {"tls_cert", "tls_key", "client_ca", "ca_cert", "ca_key", "mqtt_ca"}



COMMANDS = leaves()


def _declared(hint: Any) -> Any:
    """The type a parameter's annotation declares: ``Annotated`` and ``| None`` taken off."""
    while True:
        origin = typing.get_origin(hint)
        if origin is typing.Annotated:
            hint = typing.get_args(hint)[0]
        elif origin in (typing.Union, types.UnionType):
            kinds = [a for a in typing.get_args(hint) if a is not type(None)]
            if len(kinds) != 1:
                return hint
            hint = kinds[0]
        else:
            return hint


# each parameter's declared type, read from the command's function (not from the CLI
# library's own parameter objects)
ANNOTATIONS: dict[int, Any] = {}
for _, _command in COMMANDS:
    _hints = typing.get_type_hints(inspect.unwrap(_command.callback), include_extras=True)
    ANNOTATIONS.update({id(p): _declared(_hints[p.name]) for p in _command.params})


def annotation(param: Any) -> Any:
    return ANNOTATIONS[id(param)]


def option_key(param: Any) -> tuple[Any, ...]:
    return (param.name, param.opts[0], annotation(param), *bounds(param), param.help)


def bounds(param: Any) -> tuple[Any, Any]:
    """A number parameter's range, which its Click range type holds."""
    return getattr(param.type, "min", None), getattr(param.type, "max", None)


def owners() -> dict[tuple[Any, ...], tuple[str, ...]]:
    """The first command of each option many share (--timeout, --admin-port of every
    remote command, the same help and all): its wrong values are tried on that one."""
    found: dict[tuple[Any, ...], tuple[str, ...]] = {}
    for path, command in COMMANDS:
        for param in command.params:
            if param.param_type_name == "option":
                found.setdefault(option_key(param), path)
    return found


OWNERS = owners()


@dataclass(frozen=True)
class Case:
    """A call; ``refused``: it must end non-zero (else: it may also succeed, as long as
    it shows no traceback and, refused, one line and no change)."""

    why: str
    args: tuple[str, ...]
    env: tuple[tuple[str, str], ...] = ()
    refused: bool = True


def flag(param: Any) -> bool:
    return bool(getattr(param, "is_flag", False))


def filler(param: Any) -> str:
    if param.name in FILLERS:
        return FILLERS[param.name]
    kind = annotation(param)
    if isinstance(kind, type) and issubclass(kind, Enum):
        return str(next(iter(kind)).value)
    return BY_TYPE.get(kind, "x")


def with_value(command: Any, target: Any, value: str) -> tuple[str, ...]:
    """The command's required parameters filled, and ``target`` given ``value``."""
    args: list[str] = []
    for param in command.params:
        if param.name in NOT_CASES or flag(param):
            continue
        if param is target:
            chosen = value
        elif param.required:
            chosen = filler(param)
        else:
            continue
        if param.param_type_name == "argument":
            args.append(chosen)
        else:
            args += [param.opts[0], chosen]
    return tuple(args)


def hostile_values(path: tuple[str, ...], param: Any) -> list[tuple[str, str, bool]]:
    """(why, value, whether it must be refused) for ``param``."""
    kind = annotation(param)
    low = bounds(param)[0]
    if kind is int:
        values = [("text for an integer", "abc", True), ("a float for an integer", "1.5", True),
                  ("10**30", HUGE, path[0] != "wallet")]  # the wallet's amounts: uint256
        if low is None or low > -5:
            values.append(("a negative number", "-5", param.name != "monitor_id"))
        return values
    if kind is float:
        values = [("text for a number", "abc", True), ("not a number", "nan", True),
                  ("infinity", "inf", True), ("10**30", HUGE, True)]
        if low is None or low > -5:
            values.append(("a negative number", "-5", True))
        return values
    if isinstance(kind, type) and issubclass(kind, Enum):
        return [("no such choice", "bogus", True), ("an empty string", "", True)]
    if path in LONG_RUNNING:  # only a file it reads: a free string may start it
        if param.name not in READ_FIRST:
            return []
        return [("a path that does not exist", "nowhere/none", True),
                ("a folder", "folder", True)]
    if param.name == "chain":
        return []  # an empty one is the default chain: a managed node started
    named = param.name in IDS
    values = [("an empty string", "", named), ("a NUL byte", "a\x00b", True),
              ("a line break", "a\nb", named)]
    if param.name in PATHS or kind is Path:
        made = param.name in MADE or path == ("wallet", "new")
        values += [("a path that does not exist", "nowhere/none", not made),
                   ("a folder", "folder", param.name != "folder")]
    return values


def cases(path: tuple[str, ...], command: Any) -> list[Case]:
    found: list[Case] = []
    params = [p for p in command.params if p.name not in NOT_CASES and not flag(p)]
    if any(p.required for p in params):
        found.append(Case("no arguments", path))
    for param in params:
        if param.param_type_name == "option" and OWNERS[option_key(param)] != path:
            continue  # tried on its first command
        for why, value, refused in hostile_values(path, param):
            found.append(Case(f"{param.name}: {why}", path + with_value(command, param, value),
                              refused=refused))
        if param.name in UNKNOWN and path not in LONG_RUNNING:
            found.append(Case(f"{param.name}: unknown",
                              path + with_value(command, param, UNKNOWN[param.name]),
                              refused=path not in CREATES))
    if path in LONG_RUNNING:
        return found
    base = path + with_value(command, None, "")
    names = {p.name for p in command.params}
    if "db" in names:
        found += [Case("CSMS_DB: a text file", base, (("CSMS_DB", "notes.txt"),)),
                  Case("CSMS_DB: a folder", base, (("CSMS_DB", "folder"),)),
                  Case("CSMS_DB: a folder that does not exist", base,
                       (("CSMS_DB", "nowhere/c.db"),)),
                  Case("CSMS_DB: PostgreSQL on a port where none listens", base,
                       (("CSMS_DB", f"postgresql://postgres@127.0.0.1:{NOWHERE}/x"),)),
                  Case("CSMS_DB: a PostgreSQL database that does not exist", base,
                       (("CSMS_DB", "postgresql://postgres@127.0.0.1:5432/voltledger_none"),)),
                  Case("--db: a text file", (*base, "--db", "notes.txt"))]
    if "data_dir" in names:  # a command that keeps nothing there may do without it
        found += [Case("CSMS_DATA_DIR: a text file", base, (("CSMS_DATA_DIR", "notes.txt"),),
                       refused=False),
                  Case("CSMS_DATA_DIR: below a file", base,
                       (("CSMS_DATA_DIR", "notes.txt/data"),), refused=False),
                  Case("CSMS_DATA_DIR: not writable (/proc)", base,
                       (("CSMS_DATA_DIR", "/proc/voltledger"),), refused=False)]
    return found


@dataclass
class Outcome:
    code: int | None
    stdout: str
    stderr: str
    crash: str = ""


class Hung(Exception):
    pass


def _hung(signum: int, frame: FrameType | None) -> None:
    raise Hung


RUNNER = CliRunner()


def invoke(args: tuple[str, ...], env: dict[str, str | None]) -> Outcome:
    """``csms ARGS`` as the entry point runs it, in this process: its exit code, its
    output, and the traceback of an exception that escaped it."""
    crash = ""
    code: int | None = 0
    previous = signal.signal(signal.SIGALRM, _hung)
    signal.alarm(20)
    try:
        with RUNNER.isolation(input="", env=env) as (out, err, _):
            try:
                main(list(args))
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 1
            except BaseException:  # what reaches the operator as a traceback
                crash = traceback.format_exc()
                code = None
            sys.stdout.flush()
            sys.stderr.flush()
            stdout, stderr = out.getvalue().decode(), err.getvalue().decode()
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    return Outcome(code, stdout, stderr, crash)


def state(work: Path) -> dict[str, str]:
    """What a command may not change: the database's rows, every file under the folder."""
    found: dict[str, str] = {}
    for p in sorted(work.rglob("*")):
        rel = str(p.relative_to(work))
        if p.name == "c.db":
            with sqlite3.connect(p) as c:
                found[rel] = hashlib.sha256(
                    "\n".join(c.iterdump()).encode()).hexdigest()
        elif p.name.startswith("c.db-"):
            continue  # the journal of the database, checked by its rows
        else:
            found[rel] = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "/"
    return found


def environment(work: Path) -> dict[str, str | None]:
    env: dict[str, str | None] = {k: None for k in os.environ if k.startswith("CSMS_")}
    env.update({"CSMS_DB": str(work / "c.db"), "CSMS_DATA_DIR": str(work / "data"),
                "CSMS_ADMIN_PORT": str(NOWHERE), "CSMS_CHAIN": f"http://127.0.0.1:{NOWHERE}",
                "COLUMNS": "200"})
    return env


def process(work: Path, *args: str, env: dict[str, str] | None = None,
            ) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CSMS_")}
    return subprocess.run([sys.executable, "-m", "csms", *args], cwd=work, capture_output=True,
                          text=True, timeout=60,
                          env={**clean, **{k: v for k, v in environment(work).items()
                                           if v is not None}, **(env or {})})


@pytest.fixture(scope="module")
def initialised(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A database with a station S1, a card T1 and a tariff; a text file, a folder."""
    work = tmp_path_factory.mktemp("initialised")
    for args in (("stations", "add", "S1", "--password", "0123456789abcdef"),
                 ("tags", "add", "T1"), ("tariffs", "set", "S1", "--per-kwh", "0.39")):
        r = process(work, *args)
        assert r.returncode == 0, r.stderr
    (work / "data").mkdir(exist_ok=True)  # as the first csms serve leaves it
    (work / "notes.txt").write_text("not a database\n")
    (work / "folder").mkdir()
    return work


@pytest.fixture
def work(initialised: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    import shutil

    copy = tmp_path / "work"
    shutil.copytree(initialised, copy)
    monkeypatch.chdir(copy)
    yield copy


def problems_of(case: Case, outcome: Outcome, changed: list[str]) -> list[str]:
    said = f"csms {' '.join(map(repr, case.args))} {dict(case.env) or ''} ({case.why})"
    if outcome.crash:
        return [f"{said}: a traceback\n{outcome.crash[-1500:]}"]
    found = []
    if "Traceback" in outcome.stderr + outcome.stdout:
        found.append(f"{said}: a traceback\n{outcome.stderr[-1500:]}")
    elif outcome.code == 0:
        if case.refused:
            found.append(f"{said}: exit 0\n{outcome.stdout[-300:]}{outcome.stderr[-300:]}")
        return found  # what it changed, it was asked to
    elif len(outcome.stderr.strip().splitlines()) != 1:
        found.append(f"{said}: exit {outcome.code}, stderr of"
                     f" {len(outcome.stderr.strip().splitlines())} lines\n"
                     f"{outcome.stderr[-800:]}")
    if changed:
        found.append(f"{said}: changed {changed}")
    return found


@pytest.mark.parametrize(("path", "command"), COMMANDS, ids=[" ".join(p) for p, _ in COMMANDS])
def test_every_wrong_input_is_one_line_and_changes_nothing(
        work: Path, path: tuple[str, ...], command: Any) -> None:
    problems: list[str] = []
    before = state(work)
    base = environment(work)
    if path == ("serve",):
        base["CSMS_CHAIN"] = None  # what it checks before it starts (the chain: below)
    for case in cases(path, command):
        env = {**base, **{k: str(work / v) if not v.startswith(("/", "postgresql:")) else v
                          for k, v in case.env}}
        outcome = invoke(case.args, env)
        after = state(work)
        changed = sorted(k for k in before.keys() | after.keys()
                         if before.get(k) != after.get(k))
        problems += problems_of(case, outcome, changed)
        before = after
    assert not problems, "\n\n".join(problems)


def lists() -> list[tuple[tuple[str, ...], Any]]:
    """The commands that print what is stored (a table, or JSON with ``--json``): a
    ``--json`` flag, nothing required."""
    return [(path, command) for path, command in COMMANDS
            if path not in LONG_RUNNING and {"json", "json_"} & {p.name for p in command.params}
            and not any(p.required for p in command.params)]


LISTS = lists()


@pytest.mark.parametrize("empty", [False, True], ids=["initialised", "empty"])
def test_every_list_prints_json_or_a_table(work: Path, empty: bool) -> None:
    """With ``--json``: valid JSON and nothing else on stdout; without it: a table or a
    line. A list that needs no server and no chain prints, on an empty database too."""
    assert len(LISTS) >= 15, [p for p, _ in LISTS]  # the walk found them
    env = environment(work)
    if empty:
        (work / "empty").mkdir()
        env.update({"CSMS_DB": str(work / "empty" / "c.db"),
                    "CSMS_DATA_DIR": str(work / "empty" / "data")})
    problems: list[str] = []
    for path, command in LISTS:
        names = {p.name for p in command.params}
        local = "db" in names and not {"chain", "admin_port"} & names
        for args in ((*path, "--json"), path):
            case = Case("a list", args, refused=False)
            outcome = invoke(args, env)
            problems += problems_of(case, outcome, [])
            if outcome.code != 0:
                if local:
                    problems.append(f"csms {' '.join(args)}: exit {outcome.code}"
                                    f" {outcome.stderr[-300:]}")
                continue
            if "--json" in args:
                try:
                    orjson.loads(outcome.stdout)
                except orjson.JSONDecodeError:
                    problems.append(f"csms {' '.join(args)}: not JSON\n{outcome.stdout[:300]}")
            elif not outcome.stdout.strip():
                problems.append(f"csms {' '.join(args)}: printed nothing")
    assert not problems, "\n\n".join(problems)


# a few cases as real processes: what the operator's shell gets is what main gives here
PROCESSES = [
    ("sessions", "show", HUGE),
    ("stations", "set-max-power", "S1", "nan"),
    ("contract", "deploy", "--notice-days", "inf"),
    ("stations", "show", "NOSUCH"),
    ("tags", "add", "a\nb"),
    ("serve", "--host", "a\nb", "--port", "0"),
    ("serve", "--heartbeat-interval", HUGE),
]


@pytest.mark.parametrize("args", PROCESSES, ids=lambda a: " ".join(a))
def test_a_real_process_says_what_main_says(work: Path, args: tuple[str, ...]) -> None:
    before = state(work)
    r = process(work, *args)
    assert "Traceback" not in r.stdout + r.stderr, r.stderr
    assert r.returncode != 0 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert state(work) == before
    outcome = invoke(args, environment(work))
    # the same line, but the name the command was called by (its usage hint)
    assert (outcome.code, outcome.stderr.split(" (see: ")[0]) == (
        r.returncode, r.stderr.split(" (see: ")[0]), (outcome, r)


@pytest.mark.parametrize(("extra", "named"), [
    ((), "--keystore"),
    (("--keystore", "nowhere.json", "--password-file", "notes.txt"), "--keystore"),
    (("--keystore", "notes.txt", "--password-file", "folder"), "--password-file"),
])
def test_serve_on_an_rpc_chain_without_its_key_refuses_to_start(
        work: Path, extra: tuple[str, ...], named: str) -> None:
    """The settlement chain of ``csms serve`` is opened once it listens: an RPC chain
    without a keystore and its password file is refused before (it was a traceback, after
    the node had registered itself and made its CA)."""
    before = state(work)
    r = process(work, "serve", "--port", "0", "--admin-port", "-1", "--files-port", "-1",
                *extra, env={"CSMS_CHAIN": f"http://127.0.0.1:{NOWHERE}"})
    assert "Traceback" not in r.stderr, r.stderr[-1500:]
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert r.stderr.startswith(f"error: {named} "), r.stderr
    assert state(work) == before


def test_a_chain_error_in_a_command_s_work_is_one_line() -> None:
    """A ``ChainError`` raised inside :func:`csms.cli.common.run` (an RPC chain opened
    by the work itself) is one line and exit 1."""
    from csms.cli.common import run
    from settlement.chain import ChainError

    async def work() -> None:
        raise ChainError("the node answered nothing\nsecond line")

    with RUNNER.isolation() as (_, err, _all):
        with pytest.raises(SystemExit) as exc:
            try:
                run(work())
            except typer.Exit as stop:
                raise SystemExit(stop.exit_code) from None
        assert exc.value.code == 1
        assert err.getvalue().decode() == "error: the node answered nothing\n"
