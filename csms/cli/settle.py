"""``csms settle``: batch, anchor and settle completed sessions, once or as a loop."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
from typing import Annotated, Any

import typer

from csms.cli.common import (
    ChainOption,
    CliError,
    DataDirOption,
    DbOption,
    JsonOption,
    KeystoreOption,
    PasswordFileOption,
    console,
    fail,
    open_chain_or_fail,
    print_json,
    run,
    settings_for,
    with_repo,
)
from csms.service.cluster import release_lease
from csms.service.ports import Repository, Tx

__all__ = ["settle_app"]

settle_app = typer.Typer(help="Batch, anchor and settle completed sessions.",
                         no_args_is_help=True)


async def _settle(repo: Repository, chain_spec: str, data_dir: str, batch_size: int,
                  confirmations: int, keystore: str | None, password_file: str | None,
                  loop_forever: bool) -> Any:
    from rich.progress import Progress, SpinnerColumn, TextColumn

    from settlement.chain import ContractMissing
    from settlement.worker import LEASE, LeaseHeld, LedgerBehind, SettlementWorker

    chain = await asyncio.to_thread(open_chain_or_fail, chain_spec, data_dir, keystore,
                                    password_file)
    try:
        worker = SettlementWorker(repo, chain, batch_size=batch_size,
                                  confirmations=confirmations)
        if loop_forever:
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                with contextlib.suppress(NotImplementedError):
                    loop.add_signal_handler(sig, stop.set)
            console.print(f"settlement worker on chain {chain.chain_id} ({chain.kind});"
                          " Ctrl-C to stop")
            await worker.run_forever(stop)
            return None
        with Progress(SpinnerColumn(), TextColumn("{task.description}"),
                      console=console, transient=True) as progress:
            progress.add_task(f"settling on chain {chain.chain_id} ({chain.kind})...")
            try:
                try:
                    return await worker.run_once()
                except LeaseHeld as exc:
                    if not _gone_run_on_this_host(exc.holder):
                        raise
                    # A run killed on this machine: its lease would block us for its
                    # whole lifetime; its batches are resumed from their stored state.
                    gone = exc.holder
                    console.print(f"releasing the lease of {gone}: that run is gone")

                    async def release(tx: Tx) -> None:
                        await release_lease(tx, LEASE, gone)

                    await repo.unit(release)
                    return await worker.run_once()
            except ContractMissing as exc:
                raise CliError(str(exc)) from None
            except (LeaseHeld, LedgerBehind) as exc:
                fail(str(exc), 1)
    finally:
        await asyncio.to_thread(chain.close)


def _gone_run_on_this_host(holder: str) -> bool:
    """A lease holder named ``host:pid:token`` (a ``csms settle run``) of this machine
    whose process is not running any more. Nodes (``host:port``) never match."""
    parts = holder.split(":")
    if len(parts) != 3 or parts[0] != socket.gethostname() or not parts[1].isdigit():
        return False
    pid = int(parts[1])
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


@settle_app.command("run")
def settle_run(
    chain: ChainOption = "local", batch_size: Annotated[int, typer.Option(min=1)] = 1000,
    confirmations: Annotated[int, typer.Option(min=1)] = 1, data_dir: DataDirOption = None,
    keystore: KeystoreOption = None, password_file: PasswordFileOption = None,
    json_: JsonOption = False,
    db: DbOption = None,
) -> None:
    """Settle everything pending now (batch, anchor, finalize) and exit."""
    settings = settings_for(db, data_dir=data_dir)

    async def go(repo: Repository) -> Any:
        return await _settle(repo, chain, settings.data_dir, batch_size, confirmations,
                             keystore, password_file, False)

    summary = run(with_repo(db, go))
    out = {"batches": summary.batches_created, "sessions": summary.sessions_batched,
           "finalized_batches_total": summary.finalized, "gas_used_total": summary.gas_used}
    if json_:
        print_json(out)
    else:
        console.print(f"settled {out['sessions']} session(s) in {out['batches']} batch(es);"
                      f" {out['finalized_batches_total']} batch(es) finalized in all")


@settle_app.command("worker")
def settle_worker(
    chain: ChainOption = "local", batch_size: Annotated[int, typer.Option(min=1)] = 1000,
    confirmations: Annotated[int, typer.Option(min=1)] = 1, data_dir: DataDirOption = None,
    keystore: KeystoreOption = None, password_file: PasswordFileOption = None,
    db: DbOption = None,
) -> None:
    """Run the settlement loop until interrupted."""
    settings = settings_for(db, data_dir=data_dir)

    async def go(repo: Repository) -> Any:
        return await _settle(repo, chain, settings.data_dir, batch_size, confirmations,
                             keystore, password_file, True)

    run(with_repo(db, go))

