"""``csms serve``: run the central system until interrupted.

Its options are settings (csms.config): each flag overrides its ``CSMS_*`` variable and
the settings file; the settings are checked before anything starts, and the whole node
is built by csms.bootstrap.
"""

from __future__ import annotations

import contextlib
import logging
from typing import TYPE_CHECKING, Annotated

import typer

from csms.cli.common import (
    IN_PROCESS_CHAIN,
    DataDirOption,
    DbOption,
    KeystoreOption,
    PasswordFileOption,
    console,
    fail,
    load_settings,
    run,
    say,
    setting_error,
    setting_option,
    warn,
)
from csms.config import (
    COMPRESSION_MODES,
    EVENT_LOOPS,
    LOG_LEVELS,
    MAX_WORKERS,
    Settings,
    SettingsError,
)

if TYPE_CHECKING:
    from csms.bootstrap import NodeLock
    from settlement.chain import Chain

__all__ = ["serve"]


def _describe_db(db: str) -> str:
    """The database for the console: a URL without its password."""
    if db.startswith(("postgresql://", "postgres://")):
        from csms.storage.postgres import describe_dsn

        return describe_dsn(db)
    return db


def _line(label: str, value: str) -> None:
    """One banner line: never broken inside a path or URL (the terminal may wrap it)."""
    console.print(f"  {label:<7}{value}", soft_wrap=True, highlight=False, markup=False)


async def _contract_warnings(chain: Chain) -> None:
    """What the operator is to know of the contract settled on: a notice period below the
    least ``csms contract deploy`` allows (one deployed by an earlier release stops every
    driver's session early, csms.service.limits.short_notice)."""
    import asyncio

    from csms.service.limits import short_notice

    try:
        info = await asyncio.to_thread(chain.info)
    except Exception as exc:  # the settlement worker reads it again, and says why it cannot
        warn(f"the contract's figures could not be read: {' '.join(str(exc).split())}")
        return
    flagged = short_notice(int(info["notice_period"]))
    if flagged is not None:
        warn(flagged)


async def _serve(settings: Settings, lock: NodeLock | None = None) -> None:
    # Imported here: the server's dependencies are not needed by the other commands.
    import asyncio
    import signal

    from csms.bootstrap import build

    app = await build(settings, lock)
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
        say(("csms", "bold green"), f" listening on ws://{settings.host}:"
            f"{app.central.port}/<station_id>", soft_wrap=True)
        if app.central.tls_port is not None:
            _line("TLS", f"wss://{settings.host}:{app.central.tls_port}/<station_id>")
        _line("db", _describe_db(settings.db))
        _line("node", app.central.node_id)
        if app.admin is not None and settings.admin_port >= 0:
            _line("admin", f"http://{settings.admin_host}:{app.admin.port}")
            _line("token", str(settings.admin_token_path))
            if settings.admin_public:
                say(("WARNING", "bold red"), " --admin-public: the admin API is reachable"
                    f" on {settings.admin_host or 'every interface'}, beyond this machine;"
                    " its bearer token is all that protects it")
        if app.relay is not None:
            _line("mqtt", f"{app.relay.broker.url} (events published)")  # never its password
        if app.chain is not None:
            _line("chain", f"{app.chain.chain_id} ({app.chain.kind}), "
                  + ("settling" if app.worker is not None else "escrows checked here"))
            if app.chain.kind == "memory":
                warn(IN_PROCESS_CHAIN)
            if settings.worker_index == 0:  # one warning a node, not one a worker
                await _contract_warnings(app.chain)
        if settings.auto_register:
            console.print("[bold red]WARNING[/] --auto-register: unknown stations are accepted")
        if not settings.validate:
            warn("CSMS_VALIDATE=false: OCPP messages are not checked against their schemas;"
                 " a station's malformed messages reach the central system as they are")
        await stop.wait()
    finally:
        await app.close()


def _logging(level_name: str) -> None:
    level = getattr(logging, level_name.upper())
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    # websockets says "connection open" / "connection closed" at INFO for every station
    # connection: thousands of lines an hour. Ours says what matters; theirs at debug only.
    logging.getLogger("websockets").setLevel(logging.DEBUG if level <= logging.DEBUG
                                             else max(level, logging.WARNING))
    from csms import logsafe

    logsafe.install()  # no credential in any line, whatever the level


def serve(
    host: Annotated[str | None, setting_option("host", "Address to listen on")] = None,
    port: Annotated[int | None, setting_option(
        "port", "Port (-1: no ws:// listener, 0: any free port)", min=-1, max=65535)] = None,
    db: DbOption = None,
    auto_register: Annotated[bool | None, setting_option(
        "auto_register", "Accept unknown stations", "--auto-register/--no-auto-register")] = None,
    auto_register_per_hour: Annotated[int | None, setting_option(
        "auto_register_per_hour", "Stations one address (IPv6: /64) may auto-register in an"
        " hour; beyond it 429 (0: no limit)", min=0)] = None,
    heartbeat_interval: Annotated[int | None, setting_option(
        "heartbeat_interval", "Heartbeat interval sent to stations, seconds", min=1)] = None,
    admin_port: Annotated[int | None, setting_option(
        "admin_port", "Admin API port (-1: off, 0: any free port)", min=-1,
        max=65535)] = None,
    admin_host: Annotated[str | None, setting_option(
        "admin_host", "Admin API address; beyond loopback only with --admin-public")] = None,
    admin_public: Annotated[bool | None, setting_option(
        "admin_public", "Allow --admin-host beyond loopback (warned about)",
        "--admin-public/--no-admin-public")] = None,
    admin_hosts: Annotated[str | None, setting_option(
        "admin_hosts", "Host names the admin API answers besides localhost and its"
        " addresses, comma separated (a reverse proxy's public name; *: any)",
        default="-")] = None,
    mqtt: Annotated[str | None, setting_option(
        "mqtt", "Publish events to, and route commands through, the broker at"
        " mqtt://[user[:password]@]host[:port] (mqtts:// over TLS)", default="off")] = None,
    mqtt_ca: Annotated[str | None, setting_option(
        "mqtt_ca", "PEM CA of the mqtts:// broker's certificate",
        default="the system's CAs")] = None,
    mqtt_password_file: Annotated[str | None, setting_option(
        "mqtt_password_file", "File holding the MQTT broker password (the user is in"
        " --mqtt)", default="-")] = None,
    node_id: Annotated[str | None, setting_option(
        "node_id", "This node's name", default="<hostname>:<port>")] = None,
    tls_cert: Annotated[str | None, setting_option(
        "tls_cert", "PEM certificate (chain): serve wss:// (profiles 2, 3)",
        default="none")] = None,
    tls_key: Annotated[str | None, setting_option(
        "tls_key", "PEM private key of --tls-cert", default="in --tls-cert")] = None,
    tls_port: Annotated[int | None, setting_option(
        "tls_port", "wss:// port", min=0, max=65535)] = None,
    client_ca: Annotated[str | None, setting_option(
        "client_ca", "PEM CA of station client certificates (profile 3)",
        default="none")] = None,
    ca_cert: Annotated[str | None, setting_option(
        "ca_cert", "PEM CA certificate that signs stations' CSRs",
        default="built in, under --data-dir")] = None,
    ca_key: Annotated[str | None, setting_option(
        "ca_key", "PEM private key of --ca-cert", default="none")] = None,
    chain: Annotated[str | None, setting_option(
        "chain", "Settle on this chain while serving: local, memory, or an http(s):// RPC"
        " URL", default="off")] = None,
    batch_size: Annotated[int | None, setting_option(
        "batch_size", "Sessions per settlement batch", min=1, max=1000)] = None,
    max_wait: Annotated[float | None, setting_option(
        "max_wait", "Seconds a completed session waits for a fuller batch", min=0)] = None,
    keystore: KeystoreOption = None,
    password_file: PasswordFileOption = None,
    data_dir: DataDirOption = None,
    ws_compression: Annotated[str | None, setting_option(
        "ws_compression", "permessage-deflate: stateless (per message, no memory per idle"
        f" connection), context, off (one of {', '.join(COMPRESSION_MODES)})")] = None,
    event_loop: Annotated[str | None, setting_option(
        "event_loop", "The event loop: auto (uvloop where installed), uvloop, asyncio (standard)"
        f" (one of {', '.join(EVENT_LOOPS)})")] = None,
    log_level: Annotated[str | None, setting_option(
        "log_level", f"One of {', '.join(LOG_LEVELS)}")] = None,
    files_host: Annotated[str | None, setting_option(
        "files_host", "Address of the station file listener (firmware, logs)",
        default="--host")] = None,
    files_port: Annotated[int | None, setting_option(
        "files_port", "Station file listener port (-1: off, 0: any free port)", min=-1,
        max=65535)] = None,
    files_url: Annotated[str | None, setting_option(
        "files_url", "Base URL stations are given for files (a proxy, a public name)",
        default="http(s)://files-host:files-port")] = None,
    max_upload_bytes: Annotated[int | None, setting_option(
        "max_upload_bytes", "Largest log file a station may upload, bytes", min=1)] = None,
    transfer_hours: Annotated[float | None, setting_option(
        "transfer_hours", "Hours a log upload URL works", min=0.001)] = None,
    workers: Annotated[int | None, setting_option(
        "workers", "Server processes sharing the ports, each a node (SQLite: of this machine)",
        min=1, max=MAX_WORKERS)] = None,
    transaction_bytes_per_s: Annotated[int | None, setting_option(
        "transaction_bytes_per_s", "A station's budget of transaction message bytes a"
        " second; beyond it (and its burst) answers wait, at most 5 s each (0: no budget)",
        min=0)] = None,
    transaction_burst_bytes: Annotated[int | None, setting_option(
        "transaction_burst_bytes", "Transaction message bytes a station may send at once"
        " before its budget applies", min=0)] = None,
    event_retention_days: Annotated[float | None, setting_option(
        "event_retention_days", "Days station events are kept; older ones are deleted"
        " hourly, except those an unsettled session needs (0: kept for ever)",
        min=0)] = None,
) -> None:
    """Accept stations at ws://HOST:PORT/<station_id> (OCPP 1.6-J and 2.0.1)."""
    settings = load_settings(
        db=db, host=host, port=port, auto_register=auto_register,
        auto_register_per_hour=auto_register_per_hour,
        heartbeat_interval=heartbeat_interval, admin_port=admin_port, mqtt=mqtt,
        mqtt_ca=mqtt_ca, mqtt_password_file=mqtt_password_file,
        admin_host=admin_host, admin_public=admin_public, admin_hosts=admin_hosts,
        node_id=node_id, data_dir=data_dir, tls_cert=tls_cert, tls_key=tls_key,
        tls_port=tls_port, client_ca=client_ca, ca_cert=ca_cert, ca_key=ca_key, chain=chain,
        batch_size=batch_size,
        max_wait=max_wait, ws_compression=ws_compression, log_level=log_level,
        event_loop=event_loop,
        keystore=keystore, keystore_password_file=password_file, files_host=files_host,
        files_port=files_port, files_url=files_url, max_upload_bytes=max_upload_bytes,
        transfer_hours=transfer_hours, workers=workers,
        transaction_bytes_per_s=transaction_bytes_per_s,
        transaction_burst_bytes=transaction_burst_bytes,
        event_retention_days=event_retention_days,
    )
    try:
        settings.check_serving()
        settings.check_database()
        settings.data_folder(create=False)  # made by the node once it holds its database
    except SettingsError as exc:
        fail(setting_error(exc))
    _logging(settings.log_level)
    if settings.workers > 1:
        from csms.cli.workers import run_workers

        say(("csms", "bold green"), f" {settings.workers} workers on ws://{settings.host}:"
            f"{settings.port}/<station_id>", soft_wrap=True)
        code = run(run_workers(settings, lambda line: console.print(
            line, markup=False, highlight=False)))
        if code:
            raise typer.Exit(code)
        return
    run(_serve(settings), settings.event_loop)

