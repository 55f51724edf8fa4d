"""Whether a driver's escrow covers a charge: the port the charging service asks.

A tag linked to a driver (``csms drivers link``) is charged from that driver's escrow on
chain, under the terms the driver set there. Before a station starts charging such a tag
(Authorize, a start without one, a remote start), the central system asks whether the
escrow and the terms cover another session, and answers 1.6 ``Blocked`` / 2.0.1
``NoCredit`` when they do not (issue: a charge the driver cannot be billed for is a host
unpaid). Tags linked to no driver get no opinion here (``None``): they are billed
off-chain as before. The adapter lives in ``settlement.credit`` (it reads the chain).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

__all__ = ["CreditCheck", "CreditDecision"]


@dataclass(frozen=True, slots=True)
class CreditDecision:
    ok: bool
    reason: str = ""
    driver: str | None = None


class CreditCheck(Protocol):
    async def check(self, station_id: str, tag: str) -> CreditDecision | None:
        """None when ``tag`` belongs to no driver; else whether a new session is covered."""
        ...

    async def check_authorization(self, station_id: str,
                                  authorization: dict[str, Any]) -> CreditDecision:
        """Whether a driver's signed app-session authorization is good for this station."""
        ...
