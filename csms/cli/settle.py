"""``csms settle``: batch, anchor and settle completed sessions, once or as a loop."""

from __future__ import annotations

import contextlib
import os
import signal
from typing import TYPE_CHECKING, Annotated, Any

from csms.cli.common import (
    IN_PROCESS_CHAIN,
    ChainOption,
    CliError,
    DataDirOption,
    DbOption,
    JsonOption,
    KeystoreOption,
    PasswordFileOption,
    err_console,
    fail,
    group,
    load_settings,
    print_json,
    process_alive,
    run,
    say,
    setting_option,
    warn,
)
from csms.config import Settings

if TYPE_CHECKING:
    from csms.service.ports import Tx

__all__ = ["settle_app"]

settle_app = group("Batch, anchor and settle completed sessions.")


async def _settle_once(settings: Settings) -> Any:
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from csms.bootstrap import build_settlement
    from csms.service.cluster import release_lease
    from settlement.chain import ChainError, ContractMissing
    from settlement.worker import LEASE, LeaseHeld, LedgerBehind, RunProgress

    settings.check_database()  # a SettingsError: one line (run)
    try:
        part = await build_settlement(settings)
    except ChainError as exc:
        fail(str(exc).splitlines()[0], 1)
    chain, worker = part.chain, part.worker
    if chain.kind == "memory":
        warn(IN_PROCESS_CHAIN)
    try:
        # on a terminal's stderr only: a pipe or a file gets the plain answer alone
        with Progress(SpinnerColumn(), TextColumn("{task.description}"),
                      TimeElapsedColumn(), console=err_console, transient=True,
                      disable=not err_console.is_terminal) as progress:
            task: Any = progress.add_task(
                f"settling on chain {chain.chain_id} ({chain.kind})...", total=None)

            def show(done: RunProgress) -> None:
                waiting = (f"; {_batches(done.waiting)} waiting for confirmations"
                           if done.waiting else "")
                progress.update(task, description=(
                    f"{_chunks(done.chunks_cut)} cut ({_sessions(done.sessions_cut)}),"
                    f" {_sessions(done.sessions_settled)} settled{waiting}"))

            report = None if progress.disable else show
            try:
                try:
                    return await worker.run_once(progress=report)
                except LeaseHeld as exc:
                    if not _gone_run_on_this_host(exc.holder):
                        raise
                    # A run killed on this machine: its lease would block us for its
                    # whole lifetime; its batches are resumed from their stored state.
                    gone = exc.holder
                    say(f"releasing the lease of {gone}: that run is gone")

                    async def release(tx: Tx) -> None:
                        await release_lease(tx, LEASE, gone)

                    await part.repo.unit(release)
                    return await worker.run_once(progress=report)
            except ContractMissing as exc:
                raise CliError(str(exc)) from None
            except (LeaseHeld, LedgerBehind) as exc:
                fail(str(exc), 1)
    finally:
        await part.close()


async def _settle_forever(settings: Settings, as_json: bool) -> None:
    import asyncio

    from csms.bootstrap import build_settlement
    from settlement.chain import ChainError
    from settlement.states import BatchState

    settings.check_database()  # a SettingsError: one line (run)
    try:
        part = await build_settlement(settings)
    except ChainError as exc:
        fail(str(exc).splitlines()[0], 1)
    chain, worker = part.chain, part.worker
    if chain.kind == "memory":
        warn(IN_PROCESS_CHAIN)
    try:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, stop.set)
        if as_json:
            print_json({"event": "started", "chain_id": chain.chain_id, "kind": chain.kind,
                        "contract": chain.contract_address, "batch_size": worker.batch_size,
                        "max_wait": worker.max_wait})
        else:
            say(f"settlement worker on chain {chain.chain_id} ({chain.kind});"
                " Ctrl-C to stop")

        def step(error: BaseException | None) -> None:
            if error is not None and as_json:
                print_json({"event": "error", "error": " ".join(str(error).split())})

        await worker.run_forever(stop, on_step=step)

        async def totals(tx: Tx) -> tuple[int, int]:
            return await tx.batch_totals(BatchState.FINALIZED.value)

        finalized, gas = await part.repo.read(totals)
        if as_json:
            print_json({"event": "stopped", "finalized_batches_total": finalized,
                        "gas_used_total": gas})
        else:
            say(f"stopped; {_batches(finalized)} finalized in all")
    finally:
        await part.close()


def _batches(n: int) -> str:
    return f"{n} batch" if n == 1 else f"{n} batches"


def _chunks(n: int) -> str:
    return f"{n} chunk" if n == 1 else f"{n} chunks"


def _sessions(n: int) -> str:
    return f"{n} session" if n == 1 else f"{n} sessions"


def _gone_run_on_this_host(holder: str) -> bool:
    """A lease holder named ``host:pid:token`` (a ``csms settle run``) of this machine
    whose process is not running any more. Nodes (``host:port``) never match."""
    import socket

    parts = holder.split(":")
    if len(parts) != 3 or parts[0] != socket.gethostname() or not parts[1].isdigit():
        return False
    pid = int(parts[1])
    return pid != os.getpid() and not process_alive(pid)


BatchSize = Annotated[int | None, setting_option(
    "batch_size", "Sessions per batch (at most 1000)", min=1, max=1000)]
Confirmations = Annotated[int | None, setting_option(
    "confirmations", "Blocks on top of a batch before it is final (0: by the chain,"
    " 1 on local test chains, 64 on any other)", min=0)]
MaxWait = Annotated[float | None, setting_option(
    "max_wait", "Seconds a completed session waits for a fuller batch", min=0)]


@settle_app.command("run")
def settle_run(
    chain: ChainOption = None, batch_size: BatchSize = None,
    confirmations: Confirmations = None, data_dir: DataDirOption = None,
    keystore: KeystoreOption = None, password_file: PasswordFileOption = None,
    json_: JsonOption = False, db: DbOption = None,
) -> None:
    """Settle everything pending now (batch, anchor, finalize) and exit."""
    settings = load_settings(chain=chain or None, batch_size=batch_size,
                             confirmations=confirmations, data_dir=data_dir,
                             keystore=keystore, keystore_password_file=password_file,
                             db=db)
    summary = run(_settle_once(settings))
    out = {"batches": summary.batches_created, "sessions": summary.sessions_batched,
           "finalized_batches_total": summary.finalized, "gas_used_total": summary.gas_used}
    if json_:
        print_json(out)
    else:
        say(f"settled {_sessions(out['sessions'])} in {_batches(out['batches'])};"
            f" {_batches(out['finalized_batches_total'])} finalized in all")


@settle_app.command("worker")
def settle_worker(
    chain: ChainOption = None, batch_size: BatchSize = None,
    confirmations: Confirmations = None, max_wait: MaxWait = None,
    data_dir: DataDirOption = None, keystore: KeystoreOption = None,
    password_file: PasswordFileOption = None, json_: JsonOption = False,
    db: DbOption = None,
) -> None:
    """Run the settlement loop until interrupted (one worker per database settles; others
    stand by)."""
    settings = load_settings(chain=chain or None, batch_size=batch_size,
                             confirmations=confirmations, max_wait=max_wait,
                             data_dir=data_dir, keystore=keystore,
                             keystore_password_file=password_file, db=db)
    run(_settle_forever(settings, json_))
