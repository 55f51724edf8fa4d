"""``csms serve``: run the central system until interrupted."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from typing import Annotated

import typer

from csms.bootstrap import build
from csms.cli.common import DbOption, console, run, settings_for
from csms.config import Settings

__all__ = ["serve"]


async def _serve(settings: Settings) -> None:
    app = await build(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    try:
        try:
            await app.central.start()
        except OSError as exc:
            raise ValueError(f"cannot listen on {settings.host}:{settings.port}: {exc}") from None
        console.print(
            f"[bold green]csms[/] listening on ws://{settings.host}:{app.central.port}/<station_id>"
            f"  (db: {settings.db})"
        )
        if settings.auto_register:
            console.print("[bold red]WARNING[/] --auto-register: unknown stations are accepted")
        await stop.wait()
    finally:
        await app.close()


def serve(
    host: Annotated[
        str | None, typer.Option(help="Address to listen on [default: 127.0.0.1]")
    ] = None,
    port: Annotated[int | None, typer.Option(min=0, max=65535, help="Port [default: 9000]")] = None,
    db: DbOption = None,
    auto_register: Annotated[
        bool | None,
        typer.Option("--auto-register/--no-auto-register",
                     help="Accept unknown stations (off by default)"),
    ] = None,
    heartbeat_interval: Annotated[
        int | None, typer.Option(min=1, help="Heartbeat interval sent to stations, seconds")
    ] = None,
    log_level: Annotated[str, typer.Option(help="debug, info, warning")] = "info",
) -> None:
    """Accept stations at ws://HOST:PORT/<station_id> (OCPP 1.6-J and 2.0.1)."""
    level = getattr(logging, log_level.upper(), None)
    if not isinstance(level, int):
        raise typer.BadParameter(f"unknown log level {log_level!r}")
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    settings = settings_for(
        db, host=host, port=port, auto_register=auto_register,
        heartbeat_interval=heartbeat_interval,
    )
    run(_serve(settings))
