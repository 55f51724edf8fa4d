"""What stations' messages bring to the charging service, and what it answers: a boot and
its decision, a 1.6 StopTransaction, a 2.0.1 TransactionEvent (version-neutral enough for
the service), and the error for a station nobody registered."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal

from csms.domain.model import (
    MeterSample,
    ValueNote,
)

__all__ = [
    "BootDecision", "BootInfo", "StopInfo", "TransactionEventIn", "UnknownStation", "utc_now",
]


class UnknownStation(Exception):
    pass


@dataclass(frozen=True, slots=True)
class BootInfo:
    vendor: str | None = None
    model: str | None = None
    firmware_version: str | None = None
    serial_number: str | None = None
    reason: str | None = None
    # what else identifies the hardware, kept in the boot event under these names: 1.6
    # §6.3 charge_box_serial_number (deprecated, still sent beside the charge point's),
    # meter_type, meter_serial_number (what an Eichrecht meter's signed readings name),
    # iccid, imsi; 2.0.1 ChargingStationType.modem's iccid, imsi
    hardware: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class BootDecision:
    status: str  # Accepted | Pending | Rejected
    interval: int
    current_time: datetime
    firmware_changed: bool = False  # the station booted with another firmware than before


@dataclass(slots=True)
class StopInfo:
    """A 1.6 StopTransaction."""

    transaction_id: int
    meter_stop_wh: Decimal
    timestamp: datetime
    reason: str | None = None
    id_tag: str | None = None
    samples: list[MeterSample] = field(default_factory=list)
    notes: list[ValueNote] = field(default_factory=list)


@dataclass(slots=True)
class TransactionEventIn:
    """A 2.0.1 TransactionEvent, version-neutral enough for the service."""

    event_type: str  # Started | Updated | Ended
    timestamp: datetime
    trigger_reason: str
    seq_no: int | None  # None: beyond what can be stored (see notes); not deduplicated
    transaction_id: str
    offline: bool = False
    charging_state: str | None = None
    stopped_reason: str | None = None
    evse_id: int | None = None
    connector_id: int | None = None
    id_tag: str | None = None
    remote_start_id: int | None = None
    reservation_id: int | None = None
    samples: list[MeterSample] = field(default_factory=list)
    notes: list[ValueNote] = field(default_factory=list)
    # what a copy sent again under its seqNo must repeat (csms.service.retries); None:
    # not compared (no seqNo stored)
    digest: int | None = None



def utc_now() -> datetime:
    return datetime.now(UTC)
