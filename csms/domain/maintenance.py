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
(the station downloads), a log request (the station uploads), or a firmware publication
(2.0.1 L03: a local controller downloads the image and serves it to the stations behind
it; L04 UnpublishFirmware, recorded as a transfer of its own that moves no file). Its
``id`` is the OCPP requestId; its ``status`` is the last word heard about it (the
station's answer, then its status notifications); it is reached only through a
per-request secret token that expires.

A request for a station that is not connected is *queued* (kept with what the operator
asked for) and *sending* once a node claimed it, after the station's next accepted
BootNotification (or once it is heard on a connection it opened without one, when its last
boot was accepted); it is *cancelled* by the operator, or *expired* when its window
(a firmware update's, or the URL lifetime of the others) ended before the station came
back. Those four words are the central system's; every other status is the station's
(or Offline / Timeout / Invalid / a CALLERROR code when no answer came). A station's
notification about a request it never got (queued, cancelled, expired, never sent) is
not about that request.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

__all__ = [
    "NOT_SENT",
    "RESERVATION_TRANSITIONS",
    "FirmwareImage",
    "Reservation",
    "ReservationState",
    "Transfer",
    "TransferKind",
    "TransferState",
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
    PUBLISH = "publish"  # 2.0.1 L03 PublishFirmware
    UNPUBLISH = "unpublish"  # 2.0.1 L04 UnpublishFirmware


class TransferState(enum.StrEnum):
    """The central system's own words for a transfer (the station's are OCPP's)."""

    QUEUED = "queued"
    SENDING = "sending"
    CANCELLED = "cancelled"
    EXPIRED = "expired"
    REQUESTED = "Requested"  # recorded, the CALL about to go
    INVALID = "Invalid"  # recorded, but the CALL could not be built: never sent


# Statuses of a request the station never received. (A request being sent counts as
# sent: the station may answer and report on it before its answer is recorded.)
NOT_SENT = frozenset({TransferState.QUEUED.value, TransferState.CANCELLED.value,
                      TransferState.EXPIRED.value, TransferState.INVALID.value})


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
    md5: str | None = None  # hex; the checksum of 2.0.1 PublishFirmware (L03)


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
    locations: str | None = None  # JSON list: where a local controller published it
    queued_args: str | None = None  # JSON: the operator's arguments, while queued

    def open_at(self, now: datetime) -> bool:
        """The URL still works (never before the request is sent: no URL exists)."""
        return now < self.expires_at and self.status not in NOT_SENT

    def state_at(self, now: datetime) -> str:
        """The status, with the end of a queued request's window read from the clock."""
        if self.status == TransferState.QUEUED and self.expires_at <= now:
            return TransferState.EXPIRED.value
        return self.status

    @property
    def sent(self) -> bool:
        """The station received (or may have received) the request."""
        return self.status not in NOT_SENT


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_when(text: str, now: datetime) -> datetime:
    """An operator's time: RFC 3339 (``2026-05-01T18:00:00Z``; without an offset, UTC), a
    time relative to ``now`` (``+2h``, ``+90m``, ``-1d``, ``+30s``) or ``now``. Raises
    ValueError with a one-line message."""
    raw = text.strip()
    if raw.lower() == "now":
        return now
    digits = raw[1:-1]
    if raw[:1] in "+-" and digits.isascii() and digits.isdigit() and raw[-1:].lower() in _UNITS:
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
