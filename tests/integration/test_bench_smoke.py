"""Each benchmark runs at a tiny size (no timing asserts: benchmarks are not tests)."""

from __future__ import annotations

import json
import shutil
import socket
import ssl
import subprocess
import sys
from pathlib import Path

import pytest

from support import IN_CI, require_service


@pytest.mark.parametrize("args", [
    ["bench.throughput", "--stations", "5", "--duration", "0.5", "--warmup", "0.25",
     "--ocpp", "1.6"],
    ["bench.throughput", "--stations", "4", "--duration", "0.5", "--warmup", "0.25",
     "--ocpp", "1.6", "--phases", "together"],
    ["bench.throughput", "--stations", "6", "--duration", "0.5", "--warmup", "0.25",
     "--ocpp", "2.0.1", "--workers", "2"],
    ["bench.settlement_gas", "--quick", "--batch", "20"],
    ["bench.connections", "--stations", "5", "--interval", "1"],
    ["bench.cluster", "--stations", "4", "--duration", "1"],
    ["bench.first_message", "--repeat", "1"],
])
def test_benchmark_runs(args: list[str]) -> None:
    if args[0] == "bench.cluster":
        require_service("PostgreSQL", "127.0.0.1", 5432)
        require_service("Mosquitto", "127.0.0.1", 1883)
    r = subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True,
                       timeout=180)
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout.strip().splitlines()[-1])
    assert "ratio" in result
    if args[0] == "bench.throughput":  # every server answered every call
        servers = [result["voltledger_sqlite"], result["baseline_ocpp_lib"]]
        if isinstance(result["peer_ocpp_rpc"], dict) or IN_CI:
            servers.append(result["peer_ocpp_rpc"])
            assert result["ratio_vs_fastest_peer"] is not None
        for figures in servers:
            assert figures["errors"] == 0 and figures["messages"] > 0, result
            # the tail per message type, from the same run (a 2.0.1 event's per eventType)
            assert "Authorize" in figures["p99_ms_by_action"], figures
            if "2.0.1" in args:
                assert "TransactionEvent.Updated" in figures["p99_ms_by_action"], figures
            # the server's own CPU time over the measured window (its workers' included)
            assert figures["cpu_us_per_message"] is not None, figures
        assert result["voltledger_sqlite"]["cpu_us_per_message"] > 0, result
        assert result["voltledger_sqlite"]["server_cpu_cores"] > 0, result
        assert result["cpu_ratio"] is not None, result
        assert result["workers"] == (2 if "--workers" in args else 1)
        assert result["phases"] == ("together" if "together" in args else "spread")


@pytest.mark.parametrize("args", [
    ["bench.attacks", "logins", "--attempts", "20"],
    ["bench.attacks", "datatransfer", "--seconds", "0.5"],
    ["bench.attacks", "meterflood", "--seconds", "0.5"],
    ["bench.attacks", "handshakes", "--sockets", "50", "--stations", "3", "--seconds", "5"],
])
def test_attack_benchmark_runs(args: list[str]) -> None:
    r = subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True,
                       timeout=180)
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout.strip().splitlines()[-1])
    assert result["benchmark"]


def test_meter_flood_benchmark_is_held_to_the_budget_given_to_csms_serve() -> None:
    """The flood of transaction data, with the budget given as csms serve's options."""
    r = subprocess.run([sys.executable, "-m", "bench.attacks", "meterflood", "--seconds", "1",
                        "--serve-args", "--transaction-bytes-per-s 65536"
                        " --transaction-burst-bytes 131072"],
                       capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout.strip().splitlines()[-1])
    assert result["delayed"]['voltledger_answers_delayed_total{action="MeterValues"}'] > 0
    # the burst, the rate over the second of the flood, the frame answered at its end
    assert result["bytes_answered"] <= 131072 + 65536 * 1 + result["frame_bytes"]


def test_fleet_benchmark_grows_a_fleet_on_each_server() -> None:
    r = subprocess.run(
        [sys.executable, "-m", "bench.fleet", "--fleet", "6", "12", "--servers", "voltledger",
         "ocpp-rpc", "--meter-interval", "0.5", "--heartbeat-interval", "1",
         "--session-meters", "2", "--window", "0.5", "--procs", "2", "--sources", "2",
         "--variant", "queue0=CSMS_HANDSHAKE_QUEUE=0 CSMS_PING_INTERVAL=5 --event-loop asyncio"],
        capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout.strip().splitlines()[-1])
    servers = [result["servers"]["voltledger"], result["servers"]["queue0"]]
    if "steps" in result["servers"]["ocpp-rpc"] or IN_CI:
        servers.append(result["servers"]["ocpp-rpc"])
    for figures in servers:
        sizes = [step["stations"] for step in figures["steps"]]
        assert sizes[0] == 6, figures
        for step in figures["steps"]:  # every station connected, sent and was answered
            assert step["connect_failures"] == 0 and step["dropped"] == 0, figures
            assert step["errors"] == 0 and step["messages_per_s"] > 0, figures
            # the server and the load generator were busy during the window
            assert step["server_cpu_cores"] > 0 and step["generator_cpu_cores"] > 0, figures


def test_connections_benchmark_measures_tls_per_connection() -> None:
    r = subprocess.run([sys.executable, "-m", "bench.connections", "--stations", "5",
                        "--interval", "1", "--hold", "3.5", "--tls"], capture_output=True,
                       text=True, timeout=180)
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout.strip().splitlines()[-1])
    assert result["voltledger_ws"]["connected"] == 5
    # held 3.5 s at a heartbeat a second: several heartbeats each, not the default 2.2
    assert result["voltledger_ws"]["heartbeats_per_station"] >= 3
    assert result["voltledger_wss"]["connected"] == 5  # every station over wss://
    assert result["voltledger_wss"]["heartbeats"] > 0
    assert "tls_kib_per_connection" in result


@pytest.mark.parametrize("tls12", [False, True])
def test_tls_state_benchmark_measures_openssl_alone(tls12: bool) -> None:
    r = subprocess.run([sys.executable, "-m", "bench.tls_state", "--connections", "300",
                        *(["--tls12"] if tls12 else [])], capture_output=True, text=True,
                       timeout=180)
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout.strip().splitlines()[-1])
    assert result["tls"] == ("1.2" if tls12 else "1.3")
    # a handshake adds state to a created connection, which holds more than its BIOs
    assert result["after_handshake_kib"] > result["created_kib"] > result["memory_bios_kib"]
    assert result["ratio_of_budget"] == pytest.approx(
        result["openssl_after_handshake_kib"] / 16.0, abs=0.001)
    assert result["library"] == "ssl" and result["openssl"] == ssl.OPENSSL_VERSION


@pytest.mark.parametrize("tls12", [False, True])
def test_tls_state_benchmark_measures_the_cryptography_wheels_openssl(tls12: bool) -> None:
    from OpenSSL import SSL

    r = subprocess.run([sys.executable, "-m", "bench.tls_state", "--connections", "300",
                        "--library", "pyopenssl", *(["--tls12"] if tls12 else [])],
                       capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout.strip().splitlines()[-1])
    assert result["library"] == "pyopenssl" and result["tls"] == ("1.2" if tls12 else "1.3")
    # the OpenSSL pyOpenSSL loads (the cryptography wheel's), not the ssl module's
    assert result["openssl"] == SSL.OpenSSL_version(SSL.OPENSSL_VERSION).decode()
    # its BIOs live in the connection: counted with it, not apart
    assert result["memory_bios_kib"] is None
    assert result["after_handshake_kib"] > result["created_kib"] > 0
    assert result["openssl_after_handshake_kib"] == result["after_handshake_kib"]
    assert result["ratio_of_budget"] == pytest.approx(result["after_handshake_kib"] / 16.0,
                                                      abs=0.001)


@pytest.mark.parametrize("engine", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
@pytest.mark.parametrize("reads", [False, True])
def test_storage_benchmark_runs_units_on_each_engine(engine: str, reads: bool) -> None:
    db = ["--db", "postgresql://postgres@127.0.0.1:5432/test"] if engine == "postgres" else []
    if engine == "postgres":
        require_service("PostgreSQL", "127.0.0.1", 5432)
    r = subprocess.run([sys.executable, "-m", "bench.storage", "--callers", "3", "--units",
                        "30", *db, *(["--reads"] if reads else [])],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout.strip().splitlines()[-1])
    assert result["engine"] == engine and result["units"] == 30
    # units of work share commits (and the setup is one); reads commit nothing
    if reads:
        assert result["commits"] == 1
    else:
        assert 1 < result["commits"] <= 31


@pytest.mark.postgres
def test_round_trips_benchmark_counts_both_ways() -> None:
    require_service("PostgreSQL", "127.0.0.1", 5432)
    r = subprocess.run([sys.executable, "-m", "bench.round_trips", "--stations", "3"],
                       capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout.strip().splitlines()[-1])
    for mode in ("unit_by_unit", "in_rounds"):
        assert result[mode]["messages"] == 3 * 2 * 14
        assert result[mode]["round_trips"] > 0
    assert result["in_rounds"]["batches_fallen_back_to_unit_by_unit"] == 0
    assert result["in_rounds"]["round_trips"] < result["unit_by_unit"]["round_trips"]


@pytest.mark.postgres
def test_throughput_benchmark_measures_postgres_against_the_baseline_alone() -> None:
    require_service("PostgreSQL", "127.0.0.1", 5432)
    r = subprocess.run([sys.executable, "-m", "bench.throughput", "--stations", "5",
                        "--duration", "0.5", "--warmup", "0.25", "--ocpp", "1.6", "--postgres",
                        "postgresql://postgres@127.0.0.1:5432/test", "--postgres-only",
                        "--workers", "2"],
                       capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout.strip().splitlines()[-1])
    assert isinstance(result["voltledger_sqlite"], str)  # not run
    for figures in (result["voltledger_postgres"], result["baseline_ocpp_lib"]):
        assert figures["errors"] == 0 and figures["messages"] > 0, result
    assert result["postgres_ratio"] is not None
    assert result["workers"] == 2
    # the database's own processes, over the same window (the server runs on this machine)
    assert result["voltledger_postgres"]["db_cpu_us_per_message"] > 0, result
    assert "db_cpu_us_per_message" not in result["baseline_ocpp_lib"]


def test_units_benchmark_measures_the_write_turn_of_one_and_two_processes() -> None:
    r = subprocess.run([sys.executable, "-m", "bench.units", "--stations", "4", "--messages",
                        "120", "--processes", "2", "--ocpp", "2.0.1"],
                       capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout.strip().splitlines()[-1])
    assert result["ratio"] > 0
    for run in (result["one_process"], result["2_processes"]):
        assert run["messages"] >= 120 and run["messages_per_s"] > 0, result
        # units run inside the turn; the turn is held part of the time, never more than
        # the time measured (a little slack: the processes' windows are not the same)
        assert 0 < run["unit_cpu_us"] < run["cpu_us_per_message"] * 13 / 12, result
        assert 0 < run["turn_share"] <= 1.1, result


def test_units_benchmark_against_another_checkout_runs_that_checkouts_csms(
        tmp_path: Path) -> None:
    """``--against``: one process of each code in turn, each unit timed by its message; the
    other's csms is the one imported (a copy here, told apart by its path)."""
    root = Path(__file__).resolve().parents[2]
    shutil.copytree(root / "csms", tmp_path / "csms")
    r = subprocess.run([sys.executable, "-m", "bench.units", "--stations", "3", "--messages",
                        "120", "--ocpp", "1.6", "--against", str(tmp_path), "--rounds", "1"],
                       capture_output=True, text=True, timeout=180, cwd=root)
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout.strip().splitlines()[-1])
    [mine], [theirs] = result["this"], result["other"]
    assert mine["csms"] == str(root / "csms") and theirs["csms"] == str(tmp_path / "csms")
    for run in (mine, theirs):
        assert {"MeterValues", "StartTransaction", "StopTransaction"} <= set(
            run["unit_us_by_action"]), result
        assert all(us > 0 for us in run["unit_us_by_action"].values()), result
    assert result["ratio_vs_against"]["all"] > 0 and result["rate_ratio_vs_against"] > 0


def test_throughput_benchmark_against_another_checkout_runs_that_checkouts_server(
        tmp_path: Path) -> None:
    """``--against``: this code's server and the other checkout's under the same load, in
    turn; the other's is the one run (a copy whose MeterValues handler fails: its errors
    show in its figures only), and each round gives a pair."""
    root = Path(__file__).resolve().parents[2]
    shutil.copytree(root / "csms", tmp_path / "csms")
    v16 = tmp_path / "csms" / "translate" / "v16.py"
    body = '    samples = samples_from_meter_values(p["meterValue"], notes)\n'
    assert body in v16.read_text()
    v16.write_text(v16.read_text().replace(
        body, '    raise RuntimeError("the checkout measured against")\n'))
    r = subprocess.run([sys.executable, "-m", "bench.throughput", "--stations", "4",
                        "--duration", "1", "--warmup", "0.5", "--ocpp", "1.6", "--rounds",
                        "2", "--against", str(tmp_path)],
                       capture_output=True, text=True, timeout=180, cwd=root)
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout.strip().splitlines()[-1])
    assert result["against"] == str(tmp_path) and "baseline_ocpp_lib" not in result
    mine, theirs = result["voltledger_sqlite"], result["voltledger_against"]
    assert mine["errors"] == 0 and mine["messages"] > 0, result
    assert theirs["errors"] > 0, result  # its MeterValues failed
    assert len(result["pairs"]) == len(theirs["rounds_messages_per_s"]) == 2, result
    lo, hi = result["spread"]
    assert 0 < lo <= result["ratio_vs_against"] <= hi, result
    assert result["cpu_ratio_vs_against"] > 0, result


def test_a_bad_argument_is_one_line_and_a_non_zero_exit() -> None:
    for args in (["bench.round_trips", "--db", "/tmp/x.sqlite3"],
                 ["bench.throughput", "--postgres-only"],
                 ["bench.throughput", "--workers", "0"],
                 ["bench.connections", "--hold", "0"],
                 ["bench.tls_state", "--connections", "0"],
                 ["bench.tls_state", "--library", "gnutls"],
                 ["bench.first_message", "--repeat", "0"],
                 ["bench.units", "--processes", "0"],
                 ["bench.units", "--against", "/nonexistent/checkout"],
                 ["bench.throughput", "--against", "/nonexistent/checkout"],
                 ["bench.throughput", "--rounds", "0"]):
        r = subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True,
                           timeout=60)
        assert r.returncode != 0
        assert "Traceback" not in r.stderr and r.stderr.strip().splitlines()[-1].count(
            "error") == 1, r.stderr


def test_a_server_whose_port_was_taken_starts_again_on_new_ones(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The port a benchmark chose was free when chosen; another process took it before the
    server bound it (tests and benchmarks run side by side): the server exits, and is
    started again on new ports, not waited for until a timeout."""
    from bench import common

    taken = socket.socket()  # bound, not listening: a connection to it is refused
    taken.bind(("127.0.0.1", 0))
    first = [taken.getsockname()[1]]
    real = common.free_port
    monkeypatch.setattr(common, "free_port", lambda: first.pop() if first else real())
    tried: list[int] = []

    def command(ports: list[int]) -> list[str]:
        tried.append(ports[0])
        return [sys.executable, "-m", "csms", "serve", "--port", str(ports[0]), "--db",
                str(tmp_path / "csms.sqlite3"), "--admin-port", "-1", "--data-dir",
                str(tmp_path), "--log-level", "error"]

    try:
        proc, (port,) = common.launch(command, 1, tmp_path / "serve.err")
        try:
            assert tried == [taken.getsockname()[1], port] and proc.poll() is None
        finally:
            common.stop(proc)
    finally:
        taken.close()


def test_a_server_that_cannot_start_is_reported_with_its_error_at_once(
        tmp_path: Path) -> None:
    """Its exit and its last words, not "nothing listens" after waiting out the timeout
    (that is a RuntimeError of another kind)."""
    from bench import common

    with pytest.raises(common.ServerExited, match=r"exited \(1\).*no such database engine"):
        common.launch(lambda ports: [sys.executable, "-c",
                                     "import sys; sys.exit('no such database engine')"],
                      1, tmp_path / "serve.err")
