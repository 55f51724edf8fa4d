"""``csms contract info`` and ``csms serve`` on a contract deployed by an earlier release
with a notice period below the least ``csms contract deploy`` allows now: the operator is
told what that does to drivers' sessions, on a managed local chain (Anvil)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from csms.bootstrap import open_settlement_chain
from csms.config import Settings
from csms.service import defaults
from settlement.chain import ContractParams, find_anvil
from support import IN_CI
from support.services import free_port

SHORT_NOTICE = 3600  # what csms contract deploy took before it had a least notice period


def csms(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CSMS_")}
    r = subprocess.run([sys.executable, "-m", "csms", *args], cwd=cwd, capture_output=True,
                       text=True, timeout=180,
                       env={**clean, "COLUMNS": "200", "CSMS_DB": "c.db",
                            "CSMS_DATA_DIR": "data"})
    assert "Traceback" not in r.stdout + r.stderr, r.stderr
    return r


@pytest.fixture(scope="module")
def short(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with a contract deployed on a managed local chain with a notice period of
    an hour, as an earlier release deployed it (built once a module, copied for each
    test)."""
    if find_anvil() is None:
        if IN_CI:
            pytest.fail("anvil is required (make install)")
        pytest.skip("anvil not installed: make install")
    folder = tmp_path_factory.mktemp("short")
    chain = open_settlement_chain(Settings(chain="local", data_dir=str(folder / "data")),
                                  params=ContractParams(notice_period=SHORT_NOTICE))
    try:
        assert chain.info()["notice_period"] == SHORT_NOTICE
    finally:
        chain.close()
    return folder


def copy_of(folder: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "work"
    shutil.copytree(folder, copy)
    return copy


def flagged(text: str) -> list[str]:
    return [line for line in text.splitlines() if "below the least" in line]


def test_contract_info_flags_a_notice_period_below_the_least(short: Path,
                                                             tmp_path: Path) -> None:
    work = copy_of(short, tmp_path)
    r = csms("contract", "info", "--chain", "local", cwd=work)
    assert r.returncode == 0, r.stderr
    [line] = flagged(r.stderr)
    # an hour, less the 80 minutes a session is stopped ahead of it: at its first check
    assert f"{SHORT_NOTICE} s" in line and f"{defaults.MIN_NOTICE_PERIOD} s" in line, line
    assert "stopped 80 min before its start plus the notice period" in line, line
    assert "at the first check after its start" in line, line
    r = csms("contract", "info", "--chain", "local", "--json", cwd=work)
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert (info["notice_period"], info["notice_below_minimum"]) == (SHORT_NOTICE, True)


def test_contract_info_of_a_contract_deployed_now_flags_nothing(tmp_path: Path) -> None:
    if find_anvil() is None:
        pytest.skip("anvil not installed: make install")
    r = csms("contract", "deploy", "--chain", "local", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    r = csms("contract", "info", "--chain", "local", "--json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert (info["notice_period"], info["notice_below_minimum"]) == (7 * 86400, False)
    assert not flagged(r.stderr), r.stderr


def test_serve_flags_a_notice_period_below_the_least_at_its_start(short: Path,
                                                                  tmp_path: Path) -> None:
    work = copy_of(short, tmp_path)
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CSMS_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "csms", "serve", "--port", "0", "--admin-port", "-1",
         "--files-port", "-1", "--db", "c.db", "--data-dir", "data", "--chain", "local"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=work,
        env={**clean, "COLUMNS": "200"})
    try:
        assert proc.stdout is not None
        banner = ""
        deadline = time.monotonic() + 60
        while "chain" not in banner and time.monotonic() < deadline:
            line = proc.stdout.readline()
            assert line, f"csms serve ended: {proc.poll()}"
            banner += line
    finally:
        proc.terminate()
        err = proc.communicate(timeout=30)[1]
    assert "Traceback" not in err, err[-2000:]
    [line] = flagged(err)
    assert f"{SHORT_NOTICE} s" in line and "at the first check after its start" in line, line


def test_serve_with_workers_flags_it_once(short: Path, tmp_path: Path) -> None:
    """Every worker opens the chain; only worker 0 reads the contract's figures to warn."""
    work = copy_of(short, tmp_path)
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CSMS_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "csms", "serve", "--port", str(free_port()), "--admin-port",
         "-1", "--files-port", "-1", "--db", "c.db", "--data-dir", "data", "--chain",
         "local", "--workers", "2"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=work,
        env={**clean, "COLUMNS": "200"})
    try:
        assert proc.stdout is not None
        chains = 0
        deadline = time.monotonic() + 90
        while chains < 2 and time.monotonic() < deadline:
            line = proc.stdout.readline()
            assert line, f"csms serve ended: {proc.poll()}"
            chains += line.lstrip().startswith("chain")
        assert chains == 2
        time.sleep(3)  # what a second worker would print after its chain line
    finally:
        proc.terminate()
        err = proc.communicate(timeout=60)[1]
    assert "Traceback" not in err, err[-2000:]
    [line] = flagged(err)
    assert f"{SHORT_NOTICE} s" in line, line
