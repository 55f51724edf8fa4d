"""OCPP-J framing, error codes and schema validation.

Pure: no I/O and no asyncio. Both the central system and the simulated stations
use it, so nothing here may import any other part of the project.
"""

from __future__ import annotations

from csms.protocol.errors import Fault, OcppError, error_code
from csms.protocol.frames import (
    Call,
    CallError,
    CallResult,
    Frame,
    FrameError,
    encode,
    parse_frame,
)
from csms.protocol.rpc import (
    Endpoint,
    IncomingCall,
    IncomingError,
    IncomingResult,
    SendNow,
    Unmatched,
)
from csms.protocol.station_id import InvalidStationId, station_id_from_path
from csms.protocol.validation import Validator
from csms.protocol.versions import OcppVersion, choose_subprotocol

__all__ = [
    "Call",
    "CallError",
    "CallResult",
    "Endpoint",
    "Fault",
    "Frame",
    "FrameError",
    "IncomingCall",
    "IncomingError",
    "IncomingResult",
    "InvalidStationId",
    "OcppError",
    "OcppVersion",
    "SendNow",
    "Unmatched",
    "Validator",
    "choose_subprotocol",
    "encode",
    "error_code",
    "parse_frame",
    "station_id_from_path",
]
