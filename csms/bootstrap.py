"""The one place that wires settings -> adapters -> services."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

from csms.admin import AdminApi, load_or_create_token
from csms.bus.relay import OutboxRelay
from csms.config import Settings
from csms.metrics import Metrics
from csms.server import CentralSystem
from csms.service.charging import ChargingService
from csms.service.ports import Repository
from csms.storage import open_repository

__all__ = ["App", "build"]

log = logging.getLogger("csms.bootstrap")


@dataclass
class App:
    settings: Settings
    repo: Repository
    service: ChargingService
    central: CentralSystem
    metrics: Metrics
    admin: AdminApi | None = None
    relay: OutboxRelay | None = None
    chain: Any = None
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    async def start(self) -> None:
        """Listen for stations, start the admin API and the background workers."""
        await self.central.start()
        if self.admin is not None:
            await self.admin.start()
        if self.relay is not None:
            self._tasks.append(asyncio.create_task(self.relay.run(self._stop), name="relay"))
        if self.settings.chain:
            # Imported here: web3 and the compiler are not needed without settlement.
            from settlement.chain import open_chain
            from settlement.worker import SettlementWorker

            self.chain = await asyncio.to_thread(open_chain, self.settings.chain,
                                                 self.settings.data_dir)
            worker = SettlementWorker(
                self.repo, self.chain, batch_size=self.settings.batch_size,
                max_wait=self.settings.max_wait, confirmations=self.settings.confirmations,
                publish_events=bool(self.settings.mqtt), payee=self.settings.payee or None)
            self._tasks.append(asyncio.create_task(worker.run_forever(self._stop),
                                                   name="settlement"))

    async def close(self) -> None:
        self._stop.set()
        for task in self._tasks:
            try:
                await asyncio.wait_for(task, 10)
            except Exception:  # a worker's failure is logged, never lost
                log.exception("! background task %s failed", task.get_name())
        self._tasks.clear()
        if self.admin is not None:
            await self.admin.stop()
        if self.chain is not None:
            await asyncio.to_thread(self.chain.close)
        await self.central.stop()
        await self.repo.close()


async def build(settings: Settings) -> App:
    repo = await open_repository(settings.db)
    metrics = Metrics()
    service = ChargingService(
        repo,
        heartbeat_interval=settings.heartbeat_interval,
        boot_retry_interval=settings.boot_retry_interval,
        publish_events=bool(settings.mqtt),
    )
    central = CentralSystem(settings, repo, service, metrics)
    admin = None
    if settings.admin_port >= 0:
        admin = AdminApi(
            central, repo, load_or_create_token(settings.admin_token_path), metrics,
            settings.admin_host, settings.admin_port,
        )
    relay = OutboxRelay(repo, settings.mqtt, client_id=f"voltledger-{central.node_id}") if (
        settings.mqtt) else None
    return App(settings, repo, service, central, metrics, admin, relay)
