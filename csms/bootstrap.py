"""The one place that wires settings -> adapters -> services."""

from __future__ import annotations

from dataclasses import dataclass

from csms.config import Settings
from csms.server import CentralSystem
from csms.service.charging import ChargingService
from csms.service.ports import Repository
from csms.storage import open_repository

__all__ = ["App", "build"]


@dataclass
class App:
    settings: Settings
    repo: Repository
    service: ChargingService
    central: CentralSystem

    async def close(self) -> None:
        await self.central.stop()
        await self.repo.close()


async def build(settings: Settings) -> App:
    repo = await open_repository(settings.db)
    service = ChargingService(
        repo,
        heartbeat_interval=settings.heartbeat_interval,
        boot_retry_interval=settings.boot_retry_interval,
    )
    central = CentralSystem(settings, repo, service)
    return App(settings, repo, service, central)
