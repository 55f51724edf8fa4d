"""Station identity from the WebSocket URL path.

OCPP-J 1.6 §3.1.1 / 2.0.1 §3.1.1: the station id is the last path segment,
percent-encoded; 2.0.1 limits identities to 48 characters and forbids ':'
(it separates user and password in HTTP Basic auth, security profile 1).
"""

from __future__ import annotations

import re
from urllib.parse import unquote, urlsplit

__all__ = [
    "MAX_STATION_ID_LENGTH",
    "InvalidStationId",
    "station_id_from_path",
    "validate_station_id",
]

MAX_STATION_ID_LENGTH = 48
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class InvalidStationId(ValueError):
    pass


def validate_station_id(station_id: str) -> str:
    if not station_id:
        raise InvalidStationId("station id is empty")
    if len(station_id) > MAX_STATION_ID_LENGTH:
        raise InvalidStationId(f"station id longer than {MAX_STATION_ID_LENGTH} characters")
    if ":" in station_id:
        raise InvalidStationId("station id must not contain ':'")
    if "/" in station_id or _CONTROL.search(station_id):
        raise InvalidStationId("station id must not contain '/' or control characters")
    return station_id


def station_id_from_path(path: str) -> str:
    """Return the decoded station id of a request path such as ``/ocpp/CP%2D1``."""
    raw_path = urlsplit(path).path
    segments = [s for s in raw_path.split("/") if s]
    if not segments:
        raise InvalidStationId("no station id in the URL path")
    try:
        decoded = unquote(segments[-1], errors="strict")
    except UnicodeDecodeError:
        raise InvalidStationId("station id is not valid UTF-8") from None
    return validate_station_id(decoded)
