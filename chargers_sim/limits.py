"""External charging limits on a simulated station (2.0.1 K11-K13): a limit that a local
energy management system (EMS), the grid operator (SO) or another system (Other) imposes,
not the central system (CSO).

The station obeys the limit: its charging power never exceeds it, whatever the charging
profiles allow (the lowest cap wins). A 2.0.1 station reports it: NotifyChargingLimit with
the source and the limit as a schedule when it is set or changed (K11, K12), and
ClearedChargingLimit when it is released (K13); an ongoing transaction gets a
TransactionEvent with triggerReason ChargingRateChanged each time (K12.FR.04). A 1.6
station has no message for it and only obeys it. A limit set while offline is reported
after the next boot.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

from chargers_sim.connection import CallRejected
from chargers_sim.security_events import SecurityEvents

__all__ = ["EXTERNAL_SOURCES", "ExternalLimit", "ExternalLimits", "parse_external_limit"]

# ChargingLimitSourceEnumType without CSO: the central system's own limits are profiles
EXTERNAL_SOURCES = ("EMS", "SO", "Other")


@dataclass(frozen=True, slots=True)
class ExternalLimit:
    watts: float
    source: str = "EMS"
    grid_critical: bool | None = None


def parse_external_limit(text: str) -> tuple[float, str]:
    """``W[@SOURCE]`` (e.g. ``7400@SO``): the watts and the source (default EMS);
    ValueError with a one-line reason."""
    watts_text, _, source = text.partition("@")
    try:
        watts = float(watts_text)
    except ValueError:
        raise ValueError(f"not a power in W: {watts_text!r}") from None
    if not watts >= 0 or watts == float("inf"):
        raise ValueError(f"not a power in W: {watts_text!r}")
    source = source or "EMS"
    if source not in EXTERNAL_SOURCES:
        raise ValueError(f"unknown limit source {source!r} (one of: "
                         f"{', '.join(EXTERNAL_SOURCES)})")
    return watts, source


class ExternalLimits(SecurityEvents):
    """External limits of a simulated station (see the module docstring)."""

    def _setup(self) -> None:
        super()._setup()
        # EVSE (0: the whole station) -> the limit in force
        self.external_limits: dict[int, ExternalLimit] = {}
        self._unreported: set[int] = set()  # set while offline: reported after the boot
        if self.initial_external_limit is not None:
            watts, source = self.initial_external_limit
            self.external_limits[0] = ExternalLimit(watts, source)
            self._unreported.add(0)

    def cap_w(self, connector: int) -> float | None:
        caps = [c for c in (super().cap_w(connector), *(
            self.external_limits[e].watts for e in (0, connector)
            if e in self.external_limits)) if c is not None]
        return min(caps) if caps else None

    async def set_external_limit(self, watts: float, source: str = "EMS", evse: int = 0, *,
                                 grid_critical: bool | None = None) -> None:
        """An external system limits the station (``evse`` 0) or one EVSE to ``watts``."""
        if source not in EXTERNAL_SOURCES:
            raise ValueError(f"not an external limit source: {source!r}")
        self.external_limits[evse] = ExternalLimit(watts, source, grid_critical)
        self._unreported.add(evse)
        await self._report_limits()
        self._rate_changed(evse)

    async def clear_external_limit(self, evse: int = 0) -> None:
        """The external system releases its limit (K13)."""
        limit = self.external_limits.pop(evse, None)
        if limit is None:
            return
        self._unreported.discard(evse)
        message = self.rules.charging_limit_cleared_call(limit.source, evse)
        if message is not None and self.online:
            with contextlib.suppress(CallRejected, TimeoutError, ConnectionError):
                await self.call(*message)
        self._rate_changed(evse)

    async def _report_limits(self) -> None:
        if not self.online:
            return
        for evse in sorted(self._unreported):
            limit = self.external_limits.get(evse)
            if limit is None:
                continue
            message = self.rules.charging_limit_call(limit.watts, limit.source, evse,
                                                     limit.grid_critical)
            if message is not None:
                try:
                    await self.call(*message)
                except (TimeoutError, ConnectionError):
                    return  # reported after the next boot
                except CallRejected:
                    pass
            self._unreported.discard(evse)

    def _rate_changed(self, evse: int) -> None:
        for c, s in self._sessions.items():
            if evse in (0, c) and s.transaction_id is not None:
                self.rules.charging_rate_changed(self, s)
        self._limits_changed(evse)

    def _limits_changed(self, evse: int) -> None:
        """What else follows a new cap (an ISO 15118 EV renegotiates its schedule)."""

    async def _after_boot(self) -> None:
        await super()._after_boot()
        await self._report_limits()
