"""The one place that wires settings -> adapters -> services."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from csms.admin import AdminApi, load_or_create_token
from csms.bus.commands import CommandBus
from csms.bus.relay import OUTAGES, OutboxRelay
from csms.config import Settings
from csms.domain.energy import watts
from csms.metrics import Metrics
from csms.server import CentralSystem
from csms.service.charging import ChargingService
from csms.service.cluster import beat
from csms.service.ports import Repository, StorageError, Tx
from csms.service.quota import PayloadQuota
from csms.service.supervisor import Supervisor, TaskState
from csms.storage import open_repository

__all__ = ["App", "build"]

log = logging.getLogger("csms.bootstrap")

NODE_BEAT_SECONDS = 5.0


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
    tasks: Supervisor = field(default_factory=Supervisor)
    _restarts: dict[str, int] = field(default_factory=dict)  # counted in /metrics so far

    async def start(self) -> None:
        """Listen for stations, start the admin API and the background tasks.

        Each background task is owned by ``tasks`` (csms.service.supervisor): after a
        database or broker outage it starts again with backoff, and /health and
        /metrics show it down meanwhile.
        """
        self.tasks.on_change = self._task_changed
        await self.central.start()
        await self._beat()
        self.tasks.start("node-beat", self._beating, (StorageError,))
        self.tasks.start("last-seen", self.service.run_seen_writer, (StorageError,))
        if self.admin is not None and self.settings.admin_port >= 0:
            await self.admin.start()
        if self.relay is not None:
            self.tasks.start("relay", self.relay.run, OUTAGES)
        if self.bus is not None and self.admin is not None:
            admin, bus = self.admin, self.bus

            async def handle(station_id: str, command: str, args: dict[str, Any],
                             timeout: float | None) -> tuple[int, dict[str, Any]]:
                return await admin.run_command(station_id, command, args, timeout,
                                               forwarded=True)

            async def serve_commands(stop: asyncio.Event) -> None:
                await bus.run(handle, stop)

            self.tasks.start("command-bus", serve_commands, OUTAGES)
        if self.settings.chain:
            # Imported here: web3 and the compiler are not needed without settlement.
            from settlement.chain import open_chain
            from settlement.credit import ChainCredit
            from settlement.worker import SettlementWorker

            self.chain = await asyncio.to_thread(
                open_chain, self.settings.chain, self.settings.data_dir,
                keystore=self.settings.keystore or None,
                password_file=self.settings.keystore_password_file or None)
            # drivers' escrows answer Authorize and remote starts for their linked tags
            self.service.credit = ChainCredit(self.repo, self.chain)
            worker = SettlementWorker(
                self.repo, self.chain, batch_size=self.settings.batch_size,
                max_wait=self.settings.max_wait, confirmations=self.settings.confirmations,
                publish_events=bool(self.settings.mqtt), holder=self.central.node_id)
            report = self.tasks.reporter("settlement")

            async def settle(stop: asyncio.Event) -> None:
                await worker.run_forever(stop, on_step=report)

            self.tasks.start("settlement", settle)

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

    async def close(self) -> None:
        await self.tasks.close()
        if self.admin is not None:
            await self.admin.stop()
        if self.chain is not None:
            await asyncio.to_thread(self.chain.close)
        await self.central.stop()
        with contextlib.suppress(StorageError):
            await self.service.flush_seen()
        await self.repo.close()


async def build(settings: Settings) -> App:
    repo = await open_repository(settings.db)
    metrics = Metrics()
    service = ChargingService(
        repo,
        heartbeat_interval=settings.heartbeat_interval,
        boot_retry_interval=settings.boot_retry_interval,
        publish_events=bool(settings.mqtt),
        default_max_power_w=watts(settings.default_max_power_kw),
        time_past=timedelta(days=settings.time_past_days),
        time_future=timedelta(seconds=settings.time_future_seconds),
        quota=PayloadQuota({"data_transfer": settings.quota_data_transfer,
                            "security": settings.quota_security_events,
                            "notification": settings.quota_notifications}),
        storage_reserve=settings.storage_reserve,
        on_dropped=lambda kind, reason: metrics.payloads_dropped.labels(kind, reason).inc(),
    )
    central = CentralSystem(settings, repo, service, metrics)
    tasks = Supervisor()
    bus = CommandBus(settings.mqtt, central.node_id) if settings.mqtt else None
    admin = None
    if settings.admin_port >= 0 or bus is not None:
        # Without the HTTP API a node still runs the commands other nodes forward to it.
        token = load_or_create_token(settings.admin_token_path) if settings.admin_port >= 0 \
            else ""
        admin = AdminApi(central, repo, token, metrics, settings.admin_host,
                         settings.admin_port, bus=bus, tasks=tasks,
                         public=settings.admin_public)
    relay = OutboxRelay(repo, settings.mqtt, client_id=f"voltledger-{central.node_id}") if (
        settings.mqtt) else None
    return App(settings, repo, service, central, metrics, admin, relay, bus, tasks=tasks)
