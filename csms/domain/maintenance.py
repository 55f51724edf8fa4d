"""Reservations and file transfers (firmware updates, log uploads): plain records and their
lifecycles, one state table each. No I/O.

Theory of operation. A reservation is *requested* when the operator sends ReserveNow,
*accepted* or *refused* by the station's answer (*failed* when no answer came), and an
accepted one ends *used* (a transaction started with it), *cancelled* (CancelReservation
accepted), *removed* (2.0.1 ReservationStatusUpdate Removed) or *expired* (its expiry
passed, or 2.0.1 ReservationStatusUpdate Expired). Expiry is also read from the clock:
an accepted reservation past its expiry is expired whether or not anyone wrote it down
(1.6 has no message for it).

A transfer is one request to a station that moves a file over HTTP: a firmware update
(the station downloads) or a log request (the station uploads). Its ``id`` is the OCPP
requestId; its ``status`` is the last word heard about it (the station's answer, then its
status notifications); it is reached only through a per-request secret token that
expires.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

__all__ = [
    "RESERVATION_TRANSITIONS",
    "FirmwareImage",
    "Reservation",
    "ReservationState",
    "Transfer",
    "TransferKind",
    "check_reservation_transition",
    "parse_when",
]


class ReservationState(enum.StrEnum):
    REQUESTED = "requested"
    ACCEPTED = "accepted"
    REFUSED = "refused"
    FAILED = "failed"
    USED = "used"
    CANCELLED = "cancelled"
    REMOVED = "removed"
    EXPIRED = "expired"


_R = ReservationState
RESERVATION_TRANSITIONS: dict[ReservationState, frozenset[ReservationState]] = {
    _R.REQUESTED: frozenset({_R.ACCEPTED, _R.REFUSED, _R.FAILED}),
    _R.ACCEPTED: frozenset({_R.USED, _R.CANCELLED, _R.REMOVED, _R.EXPIRED}),
    _R.REFUSED: frozenset(),
    _R.FAILED: frozenset(),
    _R.USED: frozenset(),
    _R.CANCELLED: frozenset(),
    _R.REMOVED: frozenset(),
    _R.EXPIRED: frozenset(),
}


def check_reservation_transition(before: ReservationState, after: ReservationState) -> bool:
    """Whether a reservation may go from ``before`` to ``after`` (the table above)."""
    return after in RESERVATION_TRANSITIONS[before]


@dataclass(slots=True)
class Reservation:
    station_id: str
    connector_id: int  # 1.6 connector / 2.0.1 EVSE; 0: any (1.6) or none named (2.0.1)
    id_tag: str
    expires_at: datetime
    created_at: datetime
    status: ReservationState = ReservationState.REQUESTED
    answer: str | None = None  # the station's word (Accepted, Occupied, Faulted...)
    session_id: int | None = None
    parent_tag: str | None = None
    updated_at: datetime | None = None
    id: int | None = None

    def state_at(self, now: datetime) -> ReservationState:
        """The state, with expiry read from the clock."""
        if self.status is ReservationState.ACCEPTED and self.expires_at <= now:
            return ReservationState.EXPIRED
        return self.status

    def live(self, now: datetime) -> bool:
        """Holds its connector now: accepted and not expired."""
        return self.state_at(now) is ReservationState.ACCEPTED

    def covers(self, connector_id: int | None) -> bool:
        """A transaction on ``connector_id`` is on this reservation's connector."""
        return self.connector_id == 0 or connector_id is None \
            or connector_id == self.connector_id

    def holder(self, tag: str | None, parent: str | None) -> bool:
        """``tag`` (with its parent) may use the reservation (1.6 §5.13: the idTag or
        one with the same parentIdTag)."""
        if tag is None:
            return False
        return tag == self.id_tag or (parent is not None and parent == self.parent_tag)

    def move(self, to: ReservationState, now: datetime) -> bool:
        """Go to ``to`` if the state table allows it, expiry read from the clock first (a
        reservation past its expiry expired before anything else happened to it). True
        when it went to ``to``."""
        before = self.status
        self.status = self.state_at(now)
        if check_reservation_transition(self.status, to):
            self.status = to
        if self.status is not before:
            self.updated_at = now
        return self.status is to and before is not to


class TransferKind(enum.StrEnum):
    FIRMWARE = "firmware"
    LOG = "log"


@dataclass(slots=True)
class FirmwareImage:
    version: str
    file_name: str
    size: int
    sha256: str
    created_at: datetime
    signature: str | None = None  # base64, over the file (SignedUpdateFirmware)
    signing_cert: str | None = None  # PEM
    id: int | None = None


@dataclass(slots=True)
class Transfer:
    kind: TransferKind
    station_id: str
    token_hash: str  # sha256 of the URL's token, hex; the token itself is never stored
    expires_at: datetime
    created_at: datetime
    status: str = "Requested"
    firmware_id: int | None = None
    log_type: str | None = None  # Diagnostics | SecurityLog
    file_name: str | None = None  # as the station named it (display only)
    size: int | None = None
    uploaded_at: datetime | None = None
    updated_at: datetime | None = None
    detail: str | None = None  # the request's options, as JSON text
    id: int | None = None

    def open_at(self, now: datetime) -> bool:
        """The URL still works."""
        return now < self.expires_at


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_when(text: str, now: datetime) -> datetime:
    """An operator's time: RFC 3339 (``2026-05-01T18:00:00Z``; without an offset, UTC), a
    time relative to ``now`` (``+2h``, ``+90m``, ``-1d``, ``+30s``) or ``now``. Raises
    ValueError with a one-line message."""
    raw = text.strip()
    if raw.lower() == "now":
        return now
    if raw[:1] in "+-" and raw[1:-1].isdigit() and raw[-1:].lower() in _UNITS:
        amount = int(raw[1:-1]) * _UNITS[raw[-1].lower()]
        if amount > 10 * 365 * 86400:
            raise ValueError(f"{text!r} is too far from now")
        return now + timedelta(seconds=amount if raw[0] == "+" else -amount)
    try:
        value = datetime.fromisoformat(raw.replace("z", "Z"))
    except ValueError:
        raise ValueError(f"{text[:40]!r} is no time: give RFC 3339 (2026-05-01T18:00:00Z)"
                         " or a relative time (+2h, +30m, -1d)") from None
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
