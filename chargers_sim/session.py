"""A simulated charging session and the transaction messages it queues (plain data)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

__all__ = ["CompletedSession", "Session", "TxMessage", "now"]


def now() -> str:
    """The current time as OCPP writes it (UTC, milliseconds)."""
    at = datetime.now(UTC)
    return at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z"


@dataclass
class CompletedSession:
    connector: int
    id_tag: str
    transaction_id: str | None
    meter_start_wh: int
    meter_stop_wh: int
    reason: str

    @property
    def energy_wh(self) -> int:
        return self.meter_stop_wh - self.meter_start_wh


@dataclass
class Session:
    connector: int
    id_tag: str
    meter_start_wh: int
    started: float  # loop time
    transaction_id: str | None = None  # 1.6: known once StartTransaction is answered
    seq_no: int = 0
    confirmed: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None
    stop_reason: str = "Local"
    pagination: int = 0
    reservation_id: int | None = None  # the reservation the session started on
    stop_tag: str | None = None  # 2.0.1: the token presented to end it (E07, C16)
    token_type: str = "ISO14443"  # 2.0.1 IdTokenEnumType: eMAID for Plug & Charge


@dataclass
class TxMessage:
    action: str
    payload: dict[str, Any]
    session: Session
    attempts: int = 0
