"""The charging service: the use cases for what stations send, in one object.

:class:`ChargingService` combines the station use cases (:mod:`csms.service.stations`)
and the session use cases (:mod:`csms.service.sessions`, with the signed meter data
checks of :mod:`csms.service.signed_data`) over one shared state
(:mod:`csms.service.core`). The message types it takes and answers are in
:mod:`csms.service.messages`; the JSON shapes in :mod:`csms.service.views`.
"""

from __future__ import annotations

from csms.service.driver import DriverUseCases
from csms.service.messages import (
    BootDecision,
    BootInfo,
    StopInfo,
    TransactionEventIn,
    UnknownStation,
    utc_now,
)
from csms.service.reservations import ReservationUseCases
from csms.service.sessions import SessionUseCases
from csms.service.stations import new_station
from csms.service.transfers import TransferUseCases

__all__ = [
    "BootDecision",
    "BootInfo",
    "ChargingService",
    "StopInfo",
    "TransactionEventIn",
    "UnknownStation",
    "new_station",
    "utc_now",
]


class ChargingService(ReservationUseCases, TransferUseCases, SessionUseCases,
                      DriverUseCases):
    """Use cases for messages from stations (and the operator's reservations and file
    transfers, which those messages move along; what the driver sees)."""
