"""Many simulated stations at once, each running a number of charging sessions."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from chargers_sim.connection import UNREACHABLE_GRACE
from chargers_sim.station import ConnectFailed, Station
from csms.protocol import OcppVersion

__all__ = ["Fleet", "FleetSummary", "start_all"]


async def start_all(stations: list[Station], connect_rate: float, timeout: float, *,
                    fail_fast: bool = False,
                    unreachable_grace: float = UNREACHABLE_GRACE) -> None:
    """Start the stations, ``connect_rate`` per second; the first failure is raised as
    itself (the others are cancelled)."""
    try:
        async with asyncio.TaskGroup() as tg:
            for st in stations:
                tg.create_task(st.start(timeout, fail_fast=fail_fast,
                                        unreachable_grace=unreachable_grace))
                await asyncio.sleep(1.0 / connect_rate)
    except ExceptionGroup as group:
        for kind in (ConnectFailed, TimeoutError):
            found = group.subgroup(kind)
            if found is not None:
                first: BaseException = found
                while isinstance(first, BaseExceptionGroup):
                    first = first.exceptions[0]
                raise first from None
        raise


@dataclass
class FleetSummary:
    stations: int = 0
    sessions: int = 0
    energy_wh: int = 0
    messages: int = 0
    errors: int = 0
    per_station: dict[str, list[int]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"stations": self.stations, "sessions": self.sessions,
                "kwh": round(self.energy_wh / 1000, 3), "energy_wh": self.energy_wh,
                "messages": self.messages, "errors": self.errors}


class Fleet:
    """``count`` stations named ``{prefix}{i:05d}``; ``mix`` alternates 1.6 and 2.0.1."""

    def __init__(
        self, url: str, count: int, version: OcppVersion | str = OcppVersion.V16, *,
        prefix: str = "SIM", mix: bool = False, password: str | None = None,
        seed: int | None = None, connect_rate: float = 200.0, **station_options: Any,
    ) -> None:
        base = version if isinstance(version, OcppVersion) else OcppVersion.parse(version)
        self.connect_rate = connect_rate
        self.stations = [
            Station(
                url, f"{prefix}{i:05d}",
                (OcppVersion.V201 if i % 2 == 0 else OcppVersion.V16) if mix else base,
                password=password, seed=None if seed is None else seed + i, **station_options,
            )
            for i in range(1, count + 1)
        ]

    async def start(self, timeout: float = 60.0, *, fail_fast: bool = False,
                    unreachable_grace: float = UNREACHABLE_GRACE) -> None:
        """Connect every station, at most ``connect_rate`` new connections per second.

        Raises the first station's failure by itself (TimeoutError, or with
        ``fail_fast`` :class:`~chargers_sim.connection.ConnectFailed`), not in a group.
        """
        await start_all(self.stations, self.connect_rate, timeout, fail_fast=fail_fast,
                        unreachable_grace=unreachable_grace)

    async def run_sessions(
        self, sessions: int, seconds: float, id_tag: Callable[[int], str] | str = "SIMTAG",
        on_session: Callable[[Station], None] | None = None,
    ) -> FleetSummary:
        async def one(i: int, st: Station) -> None:
            tag = id_tag(i) if callable(id_tag) else id_tag
            for _ in range(sessions):
                await st.start_session(1, tag)
                await asyncio.sleep(seconds)
                await st.stop_session(1)
                if on_session is not None:
                    on_session(st)
            await st.drain()

        async with asyncio.TaskGroup() as tg:
            for i, st in enumerate(self.stations, 1):
                tg.create_task(one(i, st))
        return self.summary()

    def summary(self) -> FleetSummary:
        out = FleetSummary(stations=len(self.stations))
        for st in self.stations:
            out.sessions += len(st.completed)
            out.energy_wh += sum(c.energy_wh for c in st.completed)
            out.messages += st.messages_sent
            out.errors += st.errors
            out.per_station[st.station_id] = [c.energy_wh for c in st.completed]
        return out

    async def close(self) -> None:
        await asyncio.gather(*(st.close() for st in self.stations), return_exceptions=True)
