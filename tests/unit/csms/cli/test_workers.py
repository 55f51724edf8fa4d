"""What each worker of ``csms serve --workers`` runs with (pure)."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest

from csms.cli.workers import remove_stale_metrics_dirs, worker_settings
from csms.config import Settings, SettingsError

PG = "postgresql://postgres@127.0.0.1:5432/test"


def test_each_worker_is_a_node_of_its_own_and_only_the_first_runs_the_admin_api(
) -> None:
    settings = Settings(db=PG, workers=3, port=9000, node_id="east", chain="local",
                        admin_port=9001)
    workers = [worker_settings(settings, k, "/run/m") for k in range(3)]
    assert [w.node_id for w in workers] == ["east/0", "east/1", "east/2"]
    # each knows which it is, and where the others answer their metrics for worker 0
    assert [(w.worker_index, w.metrics_dir) for w in workers] == [
        (0, "/run/m"), (1, "/run/m"), (2, "/run/m")]
    assert all(w.workers == 1 and w.reuse_port and w.port == 9000 for w in workers)
    assert all(w.worker_count == 3 for w in workers)  # they share the machine's cores
    # every worker asks drivers' escrows on the chain (worker 0 alone settles:
    # csms.bootstrap); an in-process chain is worker 0's alone, no other process reaches it
    assert [(w.admin_port, w.chain) for w in workers] == [
        (9001, "local"), (-1, "local"), (-1, "local")]
    in_process = dataclasses.replace(settings, chain="memory")
    assert [worker_settings(in_process, k).chain for k in range(3)] == ["memory", "", ""]
    # a fixed file listener port: worker 0's; the others on any free port
    with_files = Settings(db=PG, workers=2, port=9000, files_port=9080)
    assert [worker_settings(with_files, k).files_port for k in (0, 1)] == [9080, 0]
    for w in workers:
        w.check()
        w.check_serving()


def test_the_workers_share_the_machines_large_frame_budget() -> None:
    """Each worker holds its share of the bytes in large messages, so the machine holds
    at most the budget asked (not one budget per worker); a share is never below one
    largest frame, which a station must be able to send."""
    settings = Settings(db=PG, workers=4, large_frame_budget=8 << 20, max_frame_bytes=1 << 20)
    assert [worker_settings(settings, k).large_frame_budget for k in range(4)] == [2 << 20] * 4
    few = Settings(db=PG, workers=3, large_frame_budget=2 << 20, max_frame_bytes=1 << 20)
    assert {worker_settings(few, k).large_frame_budget for k in range(3)} == {1 << 20}


def test_without_a_node_id_the_workers_are_named_after_the_host_and_port() -> None:
    w = worker_settings(Settings(db=PG, workers=2, port=9100), 1)
    assert w.node_id.endswith(":9100/1")


@pytest.mark.parametrize(("changes", "message"), [
    ({"db": ":memory:"}, "not :memory:"),
    ({"port": 0}, "fixed ports"),
    ({"tls_cert": __file__, "tls_port": 0}, "fixed ports"),
    ({"files_url": "https://files.example"}, "files-url"),
])
def test_several_workers_need_a_shared_database_and_fixed_ports(
    changes: dict[str, object], message: str
) -> None:
    settings = Settings(**{"db": PG, "workers": 2, "port": 9000, **changes})  # type: ignore[arg-type]
    with pytest.raises(SettingsError, match=message):
        settings.check_serving()


def test_workers_may_share_a_sqlite_file() -> None:
    settings = Settings(db="./csms.sqlite3", workers=3, port=9000)
    settings.check_serving()
    assert worker_settings(settings, 2).db == "./csms.sqlite3"


@pytest.mark.parametrize("workers", [0, -1, 65])
def test_a_worker_count_out_of_range_is_refused(workers: int) -> None:
    with pytest.raises(SettingsError, match="workers"):
        Settings(db=PG, workers=workers).check()


def test_a_worker_index_beyond_the_workers_is_refused() -> None:
    with pytest.raises(SettingsError,
                       match=r"^worker_index \(set by csms serve --workers\): from 0 to 1"):
        Settings(worker_count=2, worker_index=2).check()


def test_a_metrics_folder_left_by_a_parent_that_is_gone_is_removed(tmp_path: Path) -> None:
    """A parent killed with -9 never removes its workers' metrics folder; the next
    parent removes every such folder whose process is gone, and only those."""
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    stale = tmp_path / f"csms-workers-{gone.pid}-abc"
    (stale / "sub").mkdir(parents=True)
    (stale / "1.sock").write_text("")
    alive = tmp_path / f"csms-workers-{os.getpid()}-def"
    alive.mkdir()
    other = tmp_path / "csms-workers-notapid-x"
    other.mkdir()
    unrelated = tmp_path / f"something-{gone.pid}-abc"
    unrelated.mkdir()
    link = tmp_path / f"csms-workers-{gone.pid}-link"
    link.symlink_to(unrelated)
    assert remove_stale_metrics_dirs(str(tmp_path)) == [str(stale)]
    assert not stale.exists()
    assert alive.is_dir() and other.is_dir() and unrelated.is_dir() and link.is_symlink()
