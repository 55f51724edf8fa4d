"""``csms serve --workers N``: N server processes on the same ports, one cluster.

Theory of operation. One process may hold at most ``ulimit -n`` sockets and uses one
core; more stations per machine need more processes. The parent starts N workers, each
a full ``csms serve`` node with its own node id (``<node>/<k>``) on the same database
(nodes share it, see :mod:`csms.service.cluster`), listening on the same ports with
``SO_REUSEPORT``, so the kernel spreads new connections over them.

On a SQLite file the workers are the only nodes it may have: the parent takes the file's
node lock (:class:`csms.bootstrap.NodeLock`) and hands its descriptor to every worker,
so that another ``csms serve`` is refused for as long as any of them lives (a kill -9 of
the parent included), and applies the migrations before any worker opens the file. The
workers' group commits then take turns on the file's write lock (WAL mode: readers never
wait), each committed before its stations are answered (:mod:`csms.storage.sqlite`).
Worker 0 alone serves the admin API and runs the settlement worker (``--chain``); every
worker opens the chain all the same, to ask a linked card's escrow before a start on it
(a worker that could not would accept every card: a driver who cannot pay charged on
the stations that reached it). The parent opens the chain first, once (a contract
deployed once, not by workers racing), and runs a ``local`` chain's node, which the
workers use; an in-process ``memory`` chain is worker 0's alone, the others ask no
escrow. Worker 0's ``/metrics`` holds every worker's, which the others answer on Unix
sockets in a folder the parent makes (:mod:`csms.metrics`). An operator command for a
station connected to another worker travels over MQTT like one for another node
(``--mqtt``; without it, only worker 0's stations take commands).

The parent only supervises: a worker that dies is started again after a pause (its
stations reconnect, to any worker); a worker that exits with an error in its first
seconds stops the whole command with it (a port in use, a database that cannot be
reached), while one ended by a signal (kill -9, the OOM killer) is started again;
SIGINT/SIGTERM stop every worker. A worker reads its settings as JSON on its standard
input (``python -m csms.cli.workers``), so it runs exactly the parent's checked settings.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from csms.cli.common import process_alive
from csms.config import Settings, SettingsError

if TYPE_CHECKING:
    from csms.bootstrap import NodeLock
    from settlement.chain import Chain

__all__ = ["remove_stale_metrics_dirs", "run_workers", "worker_settings"]

STARTUP_SECONDS = 5.0  # a worker gone this soon after its start is a failure to start
RESTART_PAUSE = 1.0
STOP_SECONDS = 30.0
METRICS_PREFIX = "csms-workers-"  # + the parent's process id + "-" + random


def worker_settings(settings: Settings, k: int, metrics_dir: str = "") -> Settings:
    """The settings of worker ``k`` (0-based) of ``settings.workers``; ``metrics_dir``:
    where the workers other than 0 answer their metrics (csms.metrics)."""
    base = settings.node_id or f"{socket.gethostname()}:{settings.port}"
    # the machine's budget of bytes in large messages, shared: N workers with the whole
    # budget each would hold N times it (each may still take one largest frame)
    large = max(settings.large_frame_budget // settings.workers, settings.max_frame_bytes)
    one = dataclasses.replace(settings, workers=1, reuse_port=True, node_id=f"{base}/{k}",
                              worker_count=settings.workers, worker_index=k,
                              metrics_dir=metrics_dir, large_frame_budget=large)
    # one admin API and one settlement worker: worker 0's (csms.bootstrap); each worker has
    # its own file listener (its stations' transfer URLs name it): the others on any free
    # port; an in-process chain is worker 0's alone (no other process reaches it)
    return one if k == 0 else dataclasses.replace(
        one, admin_port=-1, chain="" if one.chain == "memory" else one.chain,
        files_port=min(one.files_port, 0))


async def _start(settings: Settings, k: int, lock_fd: int | None = None,
                 metrics_dir: str = "") -> asyncio.subprocess.Process:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "csms.cli.workers", stdin=asyncio.subprocess.PIPE,
        pass_fds=() if lock_fd is None else (lock_fd,))
    assert proc.stdin is not None
    one = worker_settings(settings, k, metrics_dir)
    proc.stdin.write(json.dumps({"settings": dataclasses.asdict(one),
                                 "lock_fd": lock_fd}).encode())
    await proc.stdin.drain()
    proc.stdin.close()
    return proc


async def run_workers(settings: Settings, say: Callable[[str], None] = print) -> int:
    """Start and watch ``settings.workers`` workers until SIGINT/SIGTERM; the exit code."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    procs: dict[int, asyncio.subprocess.Process] = {}
    started: dict[int, float] = {}
    waits: dict[asyncio.Task[int], int] = {}
    code = 0

    lock: NodeLock | None = None
    chain: Chain | None = None

    async def launch(k: int) -> None:
        procs[k] = await _start(settings, k, None if lock is None else lock.fd, metrics_dir)
        started[k] = time.monotonic()
        waits[asyncio.ensure_future(procs[k].wait())] = k

    # what a node makes on its first start (the data folder, the built-in CA), made once
    # here so that the workers find it rather than race to make it
    try:
        settings.data_folder()
        if settings.ca_cert or settings.tls_cert or settings.admin_port >= 0:
            from csms.pki import load_or_create_ca

            load_or_create_ca(settings)
        if settings.uses_sqlite:
            lock = await _hold_sqlite(settings)
        if settings.chain and settings.chain != "memory":
            chain = await _open_chain(settings)
    except SettingsError as exc:
        if lock is not None:
            lock.release()
        say(f"error: {exc}")
        return 1
    # the workers' metrics sockets (csms.metrics): a folder of this user's only, named
    # after this process, so that one a parent killed with -9 left is removed later
    remove_stale_metrics_dirs()
    metrics_dir = tempfile.mkdtemp(prefix=f"{METRICS_PREFIX}{os.getpid()}-")
    try:
        for k in range(settings.workers):
            await launch(k)
        stopping = asyncio.ensure_future(stop.wait())
        while not stop.is_set():
            done, _ = await asyncio.wait([stopping, *waits], return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if task is stopping:
                    continue
                k = waits.pop(task)
                returncode = task.result()
                if returncode > 0 and time.monotonic() - started[k] < STARTUP_SECONDS:
                    # its own error (printed), not a signal: starting again would not help
                    say(f"error: worker {k} did not start (exit code {returncode})")
                    code = 1
                    stop.set()
                    break
                say(f"worker {k} ended (exit code {returncode}); starting it again")
                await asyncio.sleep(RESTART_PAUSE)
                if not stop.is_set():
                    await launch(k)
        stopping.cancel()
    finally:
        await _stop_all(list(procs.values()))
        shutil.rmtree(metrics_dir, ignore_errors=True)
        if chain is not None:
            await asyncio.to_thread(chain.close)
        if lock is not None:
            lock.release()
    return code


def remove_stale_metrics_dirs(folder: str | None = None) -> list[str]:
    """Remove the metrics folders of parents that are gone (killed with -9: their
    ``finally`` never ran), this user's only; return what was removed. A folder whose
    process id another process has taken since stays until that one is gone too."""
    removed = []
    root = Path(folder or tempfile.gettempdir())
    for path in root.glob(f"{METRICS_PREFIX}*-*"):
        pid_text = path.name[len(METRICS_PREFIX):].split("-", 1)[0]
        try:
            if not pid_text.isdigit() or path.is_symlink() or not path.is_dir() or \
                    path.stat().st_uid != os.getuid() or process_alive(int(pid_text)):
                continue
        except OSError:
            continue  # gone meanwhile, or not ours to read
        shutil.rmtree(path, ignore_errors=True)
        removed.append(str(path))
    return removed


async def _hold_sqlite(settings: Settings) -> NodeLock:
    """Take the SQLite file's node lock for the workers and bring its schema up to date
    (once, here: workers migrating the same file at once would collide)."""
    from csms.bootstrap import NodeLock
    from csms.service.ports import StorageError
    from csms.storage.open import open_repository

    settings.check_database()
    lock = NodeLock(settings.db)
    lock.acquire()
    try:
        repo = await open_repository(settings.db)
        await repo.close()
    except (StorageError, ValueError, OSError) as exc:
        lock.release()
        raise SettingsError(f"--db (CSMS_DB): {exc}") from None
    except BaseException:
        lock.release()
        raise
    return lock


async def _open_chain(settings: Settings) -> Chain:
    """The chain of ``--chain``, opened once before the workers: its contract deployed
    if needed, a ``local`` chain's node started (and kept until the workers stop)."""
    from csms.bootstrap import open_settlement_chain
    from settlement.chain import ChainError

    try:
        return await asyncio.to_thread(open_settlement_chain, settings)
    except ChainError as exc:
        raise SettingsError(f"--chain (CSMS_CHAIN): {str(exc).splitlines()[0]}") from None


async def _stop_all(procs: list[asyncio.subprocess.Process]) -> None:
    for proc in procs:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
    try:
        async with asyncio.timeout(STOP_SECONDS):
            for proc in procs:
                await proc.wait()
    except TimeoutError:
        for proc in procs:
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()


def _worker_main() -> None:
    """One worker: the settings as JSON on stdin, then ``csms serve`` with them."""
    import typer

    from csms.bootstrap import NodeLock
    from csms.cli.common import run
    from csms.cli.serve import _logging, _serve

    message = json.loads(sys.stdin.read())
    settings = Settings(**message["settings"])
    settings.check()
    lock_fd = message.get("lock_fd")
    lock = None if lock_fd is None else NodeLock.inherited(settings.db, int(lock_fd))
    _logging(settings.log_level)
    try:
        run(_serve(settings, lock), settings.event_loop)
    except typer.Exit as exc:  # its one line is printed already
        sys.exit(exc.exit_code)


if __name__ == "__main__":
    _worker_main()
