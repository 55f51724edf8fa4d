"""The one place that wires settings -> adapters -> services, for every entry point.

``build`` makes a serving node (WebSocket server, admin API, outbox relay, command bus,
and the settlement chain and worker when ``settings.chain`` is set); ``build_settlement``
makes the settlement worker alone (``csms settle``); ``open_settlement_chain`` and
``settlement_worker`` are the pieces both use, and that ``csms contract``, ``csms demo``
and the wallet commands use too. Nothing here reads the environment: everything comes
from :class:`csms.config.Settings`.

Heavy adapters (websockets, aiohttp, web3, the Vyper compiler) are imported only by the
functions that need them, so a command that only reads the database starts fast.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from csms.config import Settings, SettingsError
from csms.domain.energy import watts
from csms.metrics import Metrics, read_worker_metrics, serve_worker_metrics
from csms.service import defaults
from csms.service.charging import ChargingService
from csms.service.cluster import beat
from csms.service.limits import LimitReached
from csms.service.ports import Repository, StorageError, Tx
from csms.service.quota import PayloadQuota
from csms.service.supervisor import Supervisor, TaskState
from csms.storage import open_repository
from csms.storage.sqlite import SqliteRepository

if TYPE_CHECKING:
    from csms.admin import AdminApi
    from csms.bus.commands import CommandBus
    from csms.bus.relay import OutboxRelay
    from csms.files import FileServer
    from csms.server import CentralSystem
    from settlement.chain import Chain, ContractParams
    from settlement.worker import SettlementWorker

__all__ = [
    "App",
    "NodeLockHeld",
    "Settlement",
    "build",
    "build_settlement",
    "charging_service",
    "open_settlement_chain",
    "settlement_worker",
]

log = logging.getLogger("csms.bootstrap")

NODE_BEAT_SECONDS = 5.0


def charging_service(settings: Settings, repo: Repository, **more: Any) -> ChargingService:
    """The service with the settings every node's has (its intervals, its plausibility
    checks); ``more``: what only ``csms serve`` adds (quotas, metrics' callbacks). An
    operator's command that completes a session (``csms sessions close``) judges it as a
    node would."""
    return ChargingService(
        repo,
        heartbeat_interval=settings.heartbeat_interval,
        boot_retry_interval=settings.boot_retry_interval,
        publish_events=bool(settings.mqtt),
        default_max_power_w=watts(settings.default_max_power_kw),
        time_past=timedelta(days=settings.time_past_days),
        time_future=timedelta(seconds=settings.time_future_seconds),
        connection_liveness=timedelta(seconds=settings.ping_interval + settings.ping_timeout)
        if settings.ping_interval > 0 and settings.ping_timeout > 0 else None,
        **more,
    )


# -- settlement ----------------------------------------------------------------------
def open_settlement_chain(settings: Settings, *, deploy: bool = True,
                          params: ContractParams | None = None,
                          contract: str | None = None, keystore: str | None = None,
                          password_file: str | None = None, attach: bool = False) -> Chain:
    """The chain ``settings.chain`` names (``local`` when empty), with the operator key of
    the settings (or ``keystore`` / ``password_file``: a driver's or a host's own key).
    Blocking: call it in a thread from async code. Raises ``settlement.chain.ChainError``,
    or :class:`SettingsError` for a data folder it cannot use. ``attach``: a ``local``
    chain's node that another process runs (the parent of ``csms serve --workers``).
    """
    # Imported here: web3 and the compiler are not needed without settlement.
    from settlement.chain import ContractParams, open_chain

    settings.data_folder()  # the chain's state, the contract's record, the compiler cache
    billing = settings.billing_unit  # recorded with a contract deployed now
    params = replace(params or ContractParams(), currency=billing.currency,
                     decimals=billing.decimals)
    return open_chain(settings.chain or "local", settings.data_dir,
                      keystore=keystore or settings.keystore or None,
                      password_file=password_file or settings.keystore_password_file or None,
                      deploy=deploy, params=params, contract=contract, attach=attach)


def settlement_worker(settings: Settings, repo: Repository, chain: Chain, *,
                      holder: str | None = None) -> SettlementWorker:
    """The settlement worker with the batching and finality of the settings."""
    from settlement.worker import SettlementWorker

    return SettlementWorker(repo, chain, batch_size=settings.batch_size,
                            max_wait=settings.max_wait, confirmations=settings.confirmations,
                            publish_events=bool(settings.mqtt), holder=holder,
                            billing=settings.billing_unit)


@dataclass
class Settlement:
    """A settlement worker on its own (``csms settle``): its database and its chain."""

    settings: Settings
    repo: Repository
    chain: Chain
    worker: SettlementWorker

    async def close(self) -> None:
        await asyncio.to_thread(self.chain.close)
        await self.repo.close()


async def build_settlement(settings: Settings) -> Settlement:
    """Open the database, then the chain (deploying the contract where it is missing)."""
    repo = await open_repository(settings.db)
    try:
        chain = await asyncio.to_thread(open_settlement_chain, settings)
    except BaseException:
        await repo.close()
        raise
    return Settlement(settings, repo, chain, settlement_worker(settings, repo, chain))


# -- one node on a SQLite file ---------------------------------------------------------
class NodeLockHeld(SettingsError):
    """Another ``csms serve`` uses this SQLite file (one node, or the workers of one
    ``csms serve --workers``, per file)."""


class NodeLock:
    """An exclusive ``flock`` on ``<db>.lock`` for as long as a node serves a SQLite file.

    The kernel drops the lock when the process ends, however it ends, so a node killed
    with -9 never blocks its restart. The file stays (removing it would race with a node
    starting); it holds the pid of the node that has the lock, for the message.
    """

    def __init__(self, db: str) -> None:
        # the file itself, whatever name or link reaches it
        real = Path(db).expanduser().resolve()
        self.path = real.with_name(real.name + ".lock")
        self._fd: int | None = None

    def acquire(self) -> None:
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise SettingsError(f"--db (CSMS_DB): cannot create the lock file {self.path}:"
                                f" {exc.strerror or exc}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 64).decode("ascii", "replace").strip() or "?"
            os.close(fd)
            raise NodeLockHeld(
                f"another csms serve (pid {holder}) is using {self.path.with_suffix('')}:"
                " one csms serve per SQLite file (--workers N for several processes);"
                " nodes on several machines need PostgreSQL and MQTT"
                " (docs/configuration.md)") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    @property
    def fd(self) -> int | None:
        """The locked descriptor: ``csms serve --workers`` hands it to its workers, which
        share the lock (one open file), so that it is held while any of them lives."""
        return self._fd

    @classmethod
    def inherited(cls, db: str, fd: int) -> NodeLock:
        """The lock of the parent ``csms serve --workers``, through its descriptor ``fd``."""
        lock = cls(db)
        lock._fd = fd
        return lock

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the last descriptor drops the flock
            self._fd = None


# -- a serving node ------------------------------------------------------------------
@dataclass
class App:
    settings: Settings
    repo: Repository
    service: ChargingService
    central: CentralSystem
    metrics: Metrics
    admin: AdminApi | None = None
    relay: OutboxRelay | None = None
    bus: CommandBus | None = None
    chain: Any = None
    worker: Any = None
    tasks: Supervisor = field(default_factory=Supervisor)
    lock: NodeLock | None = None
    files: FileServer | None = None  # firmware downloads and log uploads
    # csms serve --workers: a worker other than 0 answers its metrics here (csms.metrics)
    metrics_server: asyncio.Server | None = None
    _restarts: dict[str, int] = field(default_factory=dict)  # counted in /metrics so far
    # stops asked by check_limits, waiting for their answers
    _limit_stops: set[asyncio.Task[None]] = field(default_factory=set)

    async def start(self) -> None:
        """Listen for stations, start the admin API and the background tasks.

        Each background task is owned by ``tasks`` (csms.service.supervisor): after a
        database or broker outage it starts again with backoff, and /health and
        /metrics show it down meanwhile.
        """
        self.tasks.on_change = self._task_changed
        if self.settings.metrics_dir and self.settings.worker_index > 0:
            self.metrics_server = await serve_worker_metrics(
                self.settings.metrics_dir, self.settings.worker_index, self.metrics.render)
        await self.central.start()
        await self._beat()
        self.tasks.start("node-beat", self._beating, (StorageError,))
        self.tasks.start("last-seen", self.service.run_seen_writer, (StorageError,))
        if self.files is not None:
            await self.files.start()
            if self.admin is not None:
                self.admin.operator.maintenance.files = self.files
        if self.admin is not None and self.settings.admin_port >= 0:
            await self.admin.start()
        if self.relay is not None:
            from csms.bus.relay import OUTAGES

            self.tasks.start("relay", self.relay.run, OUTAGES)
        if self.bus is not None and self.admin is not None:
            from csms.bus.relay import OUTAGES
            from csms.server import CLOSE_REPLACED

            admin, bus, central = self.admin, self.bus, self.central

            async def handle(station_id: str, command: str, args: dict[str, Any],
                             timeout: float | None) -> tuple[int, dict[str, Any]]:
                if command == CLOSE_REPLACED:  # a node's own, not an operator's
                    return await central.close_replaced(station_id, args)
                return await admin.run_command(station_id, command, args, timeout,
                                               forwarded=True)

            async def serve_commands(stop: asyncio.Event) -> None:
                await bus.run(handle, stop)

            self.tasks.start("command-bus", serve_commands, OUTAGES)
        if self.admin is not None:
            # requests queued for a station while it was offline: sent at its next
            # accepted boot on this node, or once it is heard here without one if its
            # last boot was accepted, and looked for again every so often
            self.central.on_boot = self.admin.send_queued
            self.tasks.start("queued-requests", self._queued_requests, (StorageError,))
        if self.admin is not None and self.settings.cost_update_interval > 0:
            self.tasks.start("cost-updates", self._cost_updates, (StorageError,))
        self.tasks.start("session-limits", self._session_limits, (StorageError,))
        if self.settings.event_retention_days > 0:
            self.tasks.start("event-retention", self._event_retention, (StorageError,))
        certs = self.service.certificates
        if certs is not None:
            from csms.renewal import run_renewal

            central = self.central

            async def renew(stop: asyncio.Event) -> None:
                await run_renewal(central, certs, stop)

            self.tasks.start("cert-renewal", renew, (StorageError,))
        if self.settings.chain:
            # every worker of a `csms serve --workers` asks the drivers' escrows (a station's
            # start is judged on the worker it reached), on the node of a local chain their
            # parent runs (csms.cli.workers); worker 0 alone settles
            chain = await asyncio.to_thread(open_settlement_chain, self.settings,
                                            attach=self.settings.worker_count > 1)
            self.attach_chain(chain)
            if self.settings.worker_index == 0:
                worker = settlement_worker(self.settings, self.repo, chain,
                                           holder=self.central.node_id)
                self.worker = worker
                report = self.tasks.reporter("settlement")

                async def settle(stop: asyncio.Event) -> None:
                    await worker.run_forever(stop, on_step=report)

                self.tasks.start("settlement", settle)

    def attach_chain(self, chain: Chain) -> None:
        """Settle on ``chain`` (closed with the app); drivers' escrows on it answer
        Authorize and remote starts for their linked tags."""
        from settlement.credit import ChainCredit

        self.chain = chain
        self.service.credit = ChainCredit(self.repo, chain,
                                          billing=self.settings.billing_unit)

    def _task_changed(self, state: TaskState) -> None:
        self.metrics.task_up.labels(state.name).set(1 if state.state == "up" else 0)
        missing = state.restarts - self._restarts.get(state.name, 0)
        if missing > 0:
            self.metrics.task_restarts.labels(state.name).inc(missing)
            self._restarts[state.name] = state.restarts

    async def _beat(self) -> None:
        node = self.central.node_id

        async def work(tx: Tx) -> None:
            await beat(tx, node, datetime.now(UTC))

        await self.repo.unit(work)

    async def _beating(self, stop: asyncio.Event) -> None:
        """Tell the other nodes this one is alive (see csms.service.cluster); a beat that
        cannot be stored is raised, and the supervisor beats again after a backoff."""
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), NODE_BEAT_SECONDS)
            if stop.is_set():
                return
            await self._beat()

    async def _queued_requests(self, stop: asyncio.Event) -> None:
        """Every ``QUEUE_SWEEP_SECONDS``: mark queued requests whose window ended expired,
        and send those of stations connected here that may get them (booted on this node,
        or heard on a connection opened without a BootNotification while their last boot
        was accepted: one queued while its station was booting or reconnecting here; each
        is claimed once, whichever node or task tries)."""
        assert self.admin is not None
        admin = self.admin
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), defaults.QUEUE_SWEEP_SECONDS)
            if stop.is_set():
                return
            await self.service.expire_queued()

            async def waiting(tx: Tx) -> set[str]:
                return {t.station_id for t in await tx.queued_transfers(None, 10_000)}

            for station_id in await self.repo.read(waiting):
                conn = self.central.connections.get(station_id)
                if conn is not None and conn.may_send_queued and not stop.is_set():
                    await admin.send_queued(station_id)

    async def _cost_updates(self, stop: asyncio.Event) -> None:
        """Every ``cost_update_interval`` seconds, send the cost so far of this node's
        stations' sessions that get it by themselves (csms.service.driver costs_to_push:
        1.6 RunningCost to marked stations, 2.0.1 CostUpdated to marked stations and for
        tariffs with a time component), each only when it differs from the last one tried.
        A station that answers with a CALLERROR or not at all is tried again at the next
        interval at the earliest, and only with a changed cost."""
        assert self.admin is not None
        last: dict[tuple[str, int], Decimal] = {}
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.settings.cost_update_interval)
            live: set[tuple[str, int]] = set()
            connections = dict(self.central.connections)
            candidates = await self.service.cost_push_stations(
                {sid: conn.version.value for sid, conn in connections.items()})
            for station_id in sorted(candidates):
                conn = connections[station_id]
                if stop.is_set():
                    return
                for session_id, total in await self.service.costs_to_push(
                        station_id, conn.version.value):
                    key = (station_id, session_id)
                    live.add(key)
                    if last.get(key) == total:
                        continue
                    last[key] = total
                    status, result = await self.admin.run_command(
                        station_id, "cost-updated", {"session": session_id}, forwarded=True)
                    if status != 200:
                        log.info("= %s: no running cost for session %s: %s", station_id,
                                 session_id, result.get("error"))
            for key in set(last) - live:  # ended, held, or the station went away
                del last[key]

    async def _event_retention(self, stop: asyncio.Event) -> None:
        """At start and then hourly, delete the station events older than
        ``event_retention_days`` (csms.service.retention), on one node of a cluster at a
        time (a lease)."""
        from csms.service.retention import PruneResult, run_retention

        def swept(result: PruneResult) -> None:
            if not result.stopped:  # a node without the lease saw only part of them
                self.metrics.events_kept.set(result.kept)

        await run_retention(self.repo, self.settings.event_retention_days,
                            self.central.node_id, lambda: datetime.now(UTC), stop,
                            on_pruned=self.metrics.events_pruned.inc, on_swept=swept)

    async def _session_limits(self, stop: asyncio.Event) -> None:
        """Every ``LIMIT_CHECK_SECONDS``: :meth:`check_limits`."""
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), defaults.LIMIT_CHECK_SECONDS)
            if stop.is_set():
                return
            await self.check_limits()

    async def check_limits(self) -> list[int]:
        """Look at the sessions with a limit of the stations connected to this node, between
        their readings (csms.service.limits): those due are asked to stop, each in a task of
        its own (a station slow to answer holds no other), and each answer is kept as a
        reading's stop's is. The ids of the sessions looked at."""
        from csms.protocol import OcppError
        from csms.server import CallFailed, CallTimeout, StationOffline
        from csms.translate.commands import builder_for

        connections = dict(self.central.connections)
        if not connections:
            return []
        looked, due = await self.service.limits_due(self.central.node_id, connections.keys())

        async def ask(station_id: str, reached: LimitReached) -> None:
            built = builder_for(connections[station_id].version, "stop")(
                {"transaction_id": reached.transaction_id})
            answer: dict[str, Any] | None = None
            try:
                answer = await self.central.call(station_id, built.action, built.payload)
            except (StationOffline, CallTimeout, CallFailed, OcppError) as exc:
                log.warning("! %s %s not answered: %r", station_id, built.action, exc)
            await self.service.limit_stop_answered(station_id, reached, built.action, answer)

        for station_id, reached in due:
            task = asyncio.get_running_loop().create_task(
                ask(station_id, reached), name=f"{station_id}:limit-stop")
            self._limit_stops.add(task)
            task.add_done_callback(self._limit_stops.discard)
        return looked

    async def close(self) -> None:
        try:
            await self.tasks.close()
            for task in list(self._limit_stops):
                task.cancel()
            if self.metrics_server is not None:
                self.metrics_server.close()
            if self.admin is not None:
                await self.admin.stop()
            if self.files is not None:
                await self.files.stop()
            if self.chain is not None:
                await asyncio.to_thread(self.chain.close)
            await self.central.stop()
            with contextlib.suppress(StorageError):
                await self.service.flush_seen()
            await self.repo.close()
        finally:
            if self.lock is not None:
                self.lock.release()


async def build(settings: Settings, lock: NodeLock | None = None) -> App:
    """A serving node. On a SQLite file, one node at a time (:class:`NodeLock`), or the
    workers of one ``csms serve --workers`` (``lock``: the lock their parent holds)."""
    # Imported here: the server's dependencies are not needed by the other commands.
    from csms.admin import AdminApi, load_or_create_token
    from csms.bus.commands import CommandBus
    from csms.bus.relay import OutboxRelay
    from csms.server import CentralSystem

    broker = settings.mqtt_broker()  # its password file read once, before anything opens
    if lock is None and settings.uses_sqlite and settings.db != ":memory:":
        settings.check_database()
        lock = NodeLock(settings.db)
        lock.acquire()
    try:
        if settings.admin_port >= 0 or settings.chain or settings.files_port >= 0:
            settings.data_folder()  # the admin token, the chain's state, station files
        repo = await open_repository(settings.db, settings.worker_count)
    except BaseException:
        if lock is not None:
            lock.release()
        raise
    metrics = Metrics()
    if isinstance(repo, SqliteRepository):
        metrics.watch_write_turn(repo.write_turn_seconds, lambda: repo.runs_again)
    ca = None
    if settings.ca_cert or settings.tls_cert or settings.admin_port >= 0:
        # the CA that signs stations' CSRs, trusted for their client certificates
        from csms.pki import load_or_create_ca, trusting_settings

        try:
            settings.data_folder()
            ca = load_or_create_ca(settings)
        except BaseException:
            await repo.close()
            if lock is not None:
                lock.release()
            raise
        settings = trusting_settings(settings, ca)
    service = charging_service(
        settings, repo,
        quota=PayloadQuota({"data_transfer": settings.quota_data_transfer,
                            "security": settings.quota_security_events,
                            "notification": settings.quota_notifications,
                            "connection": settings.quota_connection_events}),
        storage_reserve=settings.storage_reserve,
        on_dropped=lambda kind, reason: metrics.payloads_dropped.labels(kind, reason).inc(),
    )
    service.transfer_hours = settings.transfer_hours
    central = CentralSystem(settings, repo, service, metrics)
    service.outbound = central
    service.boot_get_configuration = settings.boot_get_configuration
    service.max_connectors = settings.max_connectors
    if ca is not None:
        from csms.iso15118 import LocalIso15118Provider
        from csms.service.certificates import CertificateUseCases, CsrLimiter

        service.certificates = CertificateUseCases(
            repo, ca, organisation=settings.ca_organisation, days=settings.cert_days,
            renew_before=timedelta(days=settings.cert_renew_days),
            limiter=CsrLimiter(settings.csr_limit), outbound=central,
            iso15118=LocalIso15118Provider(repo, ca, settings.ev_cert_dir),
            sign_v2g=settings.v2g_sign)
    tasks = Supervisor()
    bus = None
    if broker is not None:
        # the nodes of one database sign their commands and answers with its secret
        from csms.service.cluster import bus_secret

        try:
            secret = await repo.unit(bus_secret)
        except BaseException:
            await repo.close()
            if lock is not None:
                lock.release()
            raise
        bus = CommandBus(broker, central.node_id, secret=secret, repo=repo,
                         on_dropped=lambda reason: metrics.bus_dropped.labels(reason).inc())
        central.bus = bus  # a station's connection left on another node is closed there
    admin = None
    try:
        if settings.admin_port >= 0 or bus is not None:
            # Without the HTTP API a node still runs the commands other nodes forward to it.
            token = ""
            if settings.admin_port >= 0:
                token = load_or_create_token(settings.admin_token_path)
            admin = AdminApi(central, repo, token, metrics, settings.admin_host,
                             settings.admin_port, bus=bus, tasks=tasks,
                             public=settings.admin_public,
                             hosts=settings.admin_host_names,
                             request_timeout=settings.handshake_timeout)
            if settings.metrics_dir and settings.worker_index == 0 and settings.worker_count > 1:
                folder, count = settings.metrics_dir, settings.worker_count
                admin.other_workers = lambda: read_worker_metrics(folder, count)
    except BaseException:
        await repo.close()
        if lock is not None:
            lock.release()
        raise
    relay = OutboxRelay(repo, broker, client_id=f"voltledger-{central.node_id}",
                        on_skipped=metrics.outbox_skipped.inc) if broker is not None else None
    files = None
    if settings.files_port >= 0:
        from csms.files import FileServer

        files = FileServer(settings, service, metrics)
    return App(settings, repo, service, central, metrics, admin, relay, bus, tasks=tasks,
               lock=lock, files=files)

