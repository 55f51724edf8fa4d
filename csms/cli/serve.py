"""``csms serve``: run the central system until interrupted."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from pathlib import Path
from typing import Annotated

import typer

from csms.cli.common import DbOption, console, run, settings_for
from csms.config import COMPRESSION_MODES, Settings

__all__ = ["serve"]


def _describe_db(db: str) -> str:
    """The database for the console: a URL without its password."""
    if db.startswith(("postgresql://", "postgres://")):
        from csms.storage.postgres import describe_dsn

        return describe_dsn(db)
    return db


async def _serve(settings: Settings) -> None:
    # Imported here: the server's dependencies are not needed by the other commands.
    from csms.bootstrap import build
    from csms.bus.relay import parse_mqtt_url

    app = await build(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    try:
        try:
            await app.start()
        except OSError as exc:
            raise ValueError(f"cannot listen: {exc}") from None
        # AdminNotPublic is a ValueError: one line on stderr, exit code 2
        console.print(
            f"[bold green]csms[/] listening on ws://{settings.host}:{app.central.port}/<station_id>"
            f"  (db: {_describe_db(settings.db)}, node: {app.central.node_id})"
        )
        if app.central.tls_port is not None:
            console.print(f"TLS: wss://{settings.host}:{app.central.tls_port}/<station_id>")
        if app.admin is not None and settings.admin_port >= 0:
            console.print(
                f"admin API on http://{settings.admin_host}:{app.admin.port}"
                f" (token in {settings.data_dir}/admin.token)"
            )
            if settings.admin_public:
                console.print("[bold red]WARNING[/] --admin-public: the admin API is reachable"
                              f" on {settings.admin_host or 'every interface'}, beyond this"
                              " machine; its bearer token is all that protects it")
        if settings.mqtt:
            host, port = parse_mqtt_url(settings.mqtt)  # without any user:password
            console.print(f"publishing events to mqtt://{host}:{port}")
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
    admin_port: Annotated[
        int | None, typer.Option(min=-1, max=65535,
                                 help="Admin API port (-1: off) [default: 9001]")
    ] = None,
    admin_host: Annotated[
        str | None, typer.Option(help="Admin API address [default: 127.0.0.1]; beyond"
                                      " loopback only with --admin-public")
    ] = None,
    admin_public: Annotated[
        bool | None, typer.Option("--admin-public/--no-admin-public",
                                  help="Allow --admin-host beyond loopback (warned about)")
    ] = None,
    mqtt: Annotated[
        str | None, typer.Option(help="Publish events to mqtt://host:port")
    ] = None,
    node_id: Annotated[
        str | None, typer.Option(help="This node's name [default: <hostname>:<port>]")
    ] = None,
    tls_cert: Annotated[
        str | None, typer.Option(help="PEM certificate (chain): serve wss:// (profiles 2, 3)")
    ] = None,
    tls_key: Annotated[str | None, typer.Option(help="PEM private key of --tls-cert")] = None,
    tls_port: Annotated[
        int | None, typer.Option(min=0, max=65535, help="wss:// port [default: 9443]")
    ] = None,
    client_ca: Annotated[
        str | None, typer.Option(help="PEM CA of station client certificates (profile 3)")
    ] = None,
    chain: Annotated[
        str | None, typer.Option(help="Settle on this chain while serving: local, memory, or"
                                      " an http(s):// RPC URL [default: off]")
    ] = None,
    batch_size: Annotated[int | None, typer.Option(min=1, help="Sessions per batch")] = None,
    max_wait: Annotated[
        float | None, typer.Option(min=0, help="Seconds before a partial batch is anchored")
    ] = None,
    data_dir: Annotated[
        str | None, typer.Option(help="Folder for the admin token, chain state, caches")
    ] = None,
    ws_compression: Annotated[
        str | None, typer.Option(help="permessage-deflate: stateless (per message, no memory"
                                      " per idle connection), context, off [default: stateless]")
    ] = None,
    log_level: Annotated[str, typer.Option(help="debug, info, warning")] = "info",
) -> None:
    """Accept stations at ws://HOST:PORT/<station_id> (OCPP 1.6-J and 2.0.1)."""
    level = getattr(logging, log_level.upper(), None)
    if not isinstance(level, int):
        raise typer.BadParameter(f"unknown log level {log_level!r}")
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    from csms import logsafe

    logsafe.install()  # no credential in any line, whatever the level
    settings = settings_for(
        db, host=host, port=port, auto_register=auto_register,
        heartbeat_interval=heartbeat_interval, admin_port=admin_port, mqtt=mqtt,
        admin_host=admin_host, admin_public=admin_public,
        node_id=node_id, data_dir=data_dir, tls_cert=tls_cert, tls_key=tls_key,
        tls_port=tls_port, client_ca=client_ca, chain=chain, batch_size=batch_size,
        max_wait=max_wait, ws_compression=ws_compression,
    )
    if settings.ws_compression not in COMPRESSION_MODES:
        raise typer.BadParameter(f"choose one of {', '.join(COMPRESSION_MODES)}",
                                 param_hint="--ws-compression")
    for name in ("tls_cert", "tls_key", "client_ca"):
        path = getattr(settings, name)
        if path and not Path(path).is_file():
            hint = "--" + name.replace("_", "-")
            raise typer.BadParameter(f"no such file: {path}", param_hint=hint)
    if settings.admin_port >= 0 and not settings.admin_public:
        from csms.admin import is_loopback

        if not is_loopback(settings.admin_host):
            raise typer.BadParameter(
                f"{settings.admin_host or 'every interface'} is beyond this machine; add"
                " --admin-public (CSMS_ADMIN_PUBLIC=true) to expose the admin API there",
                param_hint="--admin-host")
    if settings.client_ca and not settings.tls_cert:
        raise typer.BadParameter("--client-ca needs --tls-cert", param_hint="--client-ca")
    if settings.mqtt:
        from csms.bus.relay import parse_mqtt_url

        try:
            parse_mqtt_url(settings.mqtt)
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="--mqtt") from None
    run(_serve(settings))
