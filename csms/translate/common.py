"""Helpers shared by the version modules."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from csms.domain.energy import MAX_REGISTER_WH
from csms.domain.model import ValueNote
from csms.protocol import Fault, OcppError
from csms.protocol.timestamps import TimestampError, parse_timestamp
from csms.service.charging import ChargingService
from csms.service.sessions import LimitReached
from csms.translate.command_args import BuiltCall

__all__ = [
    "BootGate", "Handler", "Notes", "at_once", "data_transfer", "notification", "ocpp_time",
    "parse_time", "stop_at_limit", "stored_status",
]

# What the storage keeps in an integer column (SQLite INTEGER, PostgreSQL BIGINT).
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1

# (service, station id, payload) -> response payload
Handler = Callable[[ChargingService, str, dict[str, Any]], Awaitable[dict[str, Any]]]


async def at_once(*reads: Awaitable[Any] | None, together: bool = True) -> list[Any]:
    """The reads one answer needs, awaited together rather than one after another (on
    PostgreSQL, one batch of reads: csms.storage.postgres); None in place of a read not
    made gives None. ``together=False`` (the repository's ``reads_together``: SQLite)
    awaits them in turn, which is as fast where a read does not wait, without a task
    for each (~7 us). A single read is awaited as it is."""
    made = [r for r in reads if r is not None]
    if not made:  # most TransactionEvents: no future made by gather() for nothing
        return [None] * len(reads)
    if len(made) == 1 or not together:
        results = []
        for n, read in enumerate(made):
            try:
                results.append(await read)
            except BaseException:
                for rest in made[n + 1:]:  # never started: no "never awaited" warning
                    close = getattr(rest, "close", None)
                    if close is not None:
                        close()
                raise
    else:
        results = list(await asyncio.gather(*made))
    given = iter(results)
    return [None if r is None else next(given) for r in reads]


def parse_time(text: str) -> datetime:
    """An OCPP dateTime under the timestamp policy (csms.protocol.timestamps), for messages
    that may be refused: an unreadable one is a CALLERROR."""
    try:
        return parse_timestamp(text).value
    except TimestampError as exc:
        raise OcppError(Fault.PROPERTY_CONSTRAINT, str(exc)) from None


class Notes:
    """Values of one transaction message that cannot be taken as sent.

    Transaction messages are always acknowledged (DESIGN.md), so instead of refusing the
    message, an unreadable time becomes the receive time and a number beyond what can be
    stored becomes None; the value is kept verbatim as a :class:`ValueNote` and the
    session is flagged (and held, see ``BILLING_HOLD_FLAGS``).
    """

    def __init__(self, received: datetime) -> None:
        self.received = received
        self.items: list[ValueNote] = []

    def time(self, text: Any, field: str) -> datetime:
        try:
            parsed = parse_timestamp(text)
        except TimestampError as exc:
            self.items.append(ValueNote("time_unreadable", field, str(text)[:256], str(exc)))
            return self.received
        if parsed.offset_assumed:
            self.items.append(ValueNote("time_offset_assumed", field, str(text),
                                        "no UTC offset: read as UTC"))
        return parsed.value

    def register_wh(self, value: Any, field: str) -> Decimal:
        """A 1.6 meterStart/meterStop (an integer in Wh, 1.6 §6.45); noted when it is no
        meter's reading (it is then never billed, see csms.domain.energy)."""
        wh = Decimal(int(value))
        if not 0 <= wh <= MAX_REGISTER_WH:  # an import register counts up from 0
            self.items.append(ValueNote("value_out_of_range", field, str(value)[:256],
                                        f"beyond any meter register (0 to {MAX_REGISTER_WH}"
                                        " Wh)"))
        return wh

    def int64(self, value: Any, field: str) -> int | None:
        number = int(value)
        if INT64_MIN <= number <= INT64_MAX:
            return number
        self.items.append(ValueNote("value_out_of_range", field, str(value)[:256],
                                    "beyond a 64-bit integer"))
        return None


def ocpp_time(value: datetime) -> str:
    """Format a UTC time the way stations expect: milliseconds and 'Z'."""
    value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


async def data_transfer(svc: ChargingService, station_id: str, p: dict[str, Any]) -> dict[str, Any]:
    """DataTransfer, either version: stored, and answered truthfully - no vendor extension is
    implemented (1.6 §7.23 / 2.0.1 DataTransferStatusEnumType)."""
    await svc.station_event(station_id, "data_transfer", p)
    return {"status": "UnknownVendorId"}


def stop_at_limit(svc: ChargingService, station_id: str, reached: LimitReached | None,
                  stop: Callable[[dict[str, Any]], BuiltCall]) -> None:
    """Ask the station to stop a session that reached what its driver pays (see
    csms.service.limits), with the version's remote stop (``stop``: its operator command's
    builder), once the answer to the station's message is out; its answer is kept."""
    if reached is None or svc.outbound is None:
        return
    built = stop({"transaction_id": reached.transaction_id})

    async def answered(answer: dict[str, Any] | None) -> None:
        await svc.limit_stop_answered(station_id, reached, built.action, answer)

    svc.outbound.after_reply(station_id, built.action, built.payload, answered)


def notification(kind: str) -> Handler:
    """A handler that stores a notification as a station event and answers ``{}``."""

    async def handler(svc: ChargingService, station_id: str, p: dict[str, Any]) -> dict[str, Any]:
        await svc.station_event(station_id, kind, p)
        return {}

    return handler


def stored_status(kind: str) -> Handler:
    """A handler for a notification answered with a status (2.0.1 NotifyEVChargingNeeds,
    NotifyEVChargingSchedule): Accepted once stored, i.e. processed (the schema's meaning:
    it does not promise a new charging schedule); Rejected when the station's quota
    dropped it."""

    async def handler(svc: ChargingService, station_id: str, p: dict[str, Any]) -> dict[str, Any]:
        if await svc.station_event(station_id, kind, p):
            return {"status": "Accepted"}
        return {"status": "Rejected", "statusInfo": {
            "reasonCode": "QuotaExceeded",
            "additionalInfo": "too much stored from this station this hour"}}

    return handler


# The central system's CALL -> the station's actions its payload asks for.
Asks = Callable[[Mapping[str, Any]], tuple[str, ...]]


@dataclass(frozen=True, slots=True)
class BootGate:
    """What a version lets a station send once its latest BootNotification was answered
    Pending or Rejected: on the connection, or as stored when it has not booted on the
    connection yet (a station whose boot was Accepted, or that never booted, is served as
    usual).

    ``refuses``: anything but BootNotification is then answered with a CALLERROR
    SecurityError, not acted on; ``asks``: the central system's CALLs that ask a Pending
    station for messages, each with the actions its payload asks for: those are let
    through while the station is Pending once asked (Rejected lets nothing through);
    ``rule``: the behaviour in a sentence, with the clause it follows (the coverage doc
    prints it)."""

    refuses: bool
    rule: str
    asks: Mapping[str, Asks] = field(default_factory=dict)

    def refused(self, action: str, status: str, asked: frozenset[str]) -> bool:
        """Whether a station whose latest boot was answered ``status`` is refused
        ``action`` (``asked``: the actions the central system asked it for since)."""
        if not self.refuses or status == "Accepted" or action == "BootNotification":
            return False
        return status != "Pending" or action not in asked

    def asked_for(self, action: str, payload: Mapping[str, Any]) -> tuple[str, ...]:
        """The station's actions the central system's CALL ``action`` asks for."""
        ask = self.asks.get(action)
        return () if ask is None else ask(payload)
