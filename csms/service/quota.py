"""Quotas on what a station may make us store besides its transactions. Pure; time is injected.

A station can send DataTransfer messages, security events and status
notifications as fast as it likes, each up to the frame limit; stored whole,
one station filled the disk at ~27 MB/s, and then every station's transaction
data was refused. These payloads are therefore metered per station, per kind
and per clock hour, in bytes (each counts at least :data:`MIN_CHARGE`: a row
costs its index entries and bookkeeping however small the payload). Beyond the
quota a payload is counted and dropped, and the station still gets its answer
(the messages are informational; an error would only make it retry).

Transaction data (sessions, meter values, transaction events) is never metered:
it is what the station is paid for, and what must always find room. A second
line of defence keeps room for it on disk: payloads are not stored either when
the database has less than ``reserve`` bytes free (see ``Tx.free_space``).

A station's connections are metered too (``connection``: its ``online`` and ``offline``
events, each at :data:`MIN_CHARGE`): a station that reconnects in a loop, or two devices
with one identity that replace each other, wrote two rows, two bus events and log lines
per connection, as fast as they could reconnect. Beyond the quota the events are counted
and dropped (one note an hour, as for the others), and the station's log lines about its
connections are left out (:meth:`PayloadQuota.over`); whether the station is connected is
kept in its row, which every connection still updates. Its ``online`` events are never
dropped for the disk reserve: billing reads them (a start sent late,
``ChargingCore._connected_when``), and only a drop over the quota leaves a note.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

__all__ = ["KINDS", "MIN_CHARGE", "PayloadQuota", "Verdict", "quota_kind"]

MIN_CHARGE = 256
# quota kind -> the station event kinds it meters
KINDS: dict[str, tuple[str, ...]] = {
    "data_transfer": ("data_transfer",),
    "security": ("security",),
    "notification": ("boot", "diagnostics_status", "firmware_status", "log_status",
                     "reservation_status", "publish_firmware_status",
                     # 2.0.1 smart charging reports, display messages, customer data
                     "charging_limit", "charging_limit_cleared", "charging_profiles",
                     "ev_charging_needs", "ev_charging_schedule", "display_messages",
                     "customer_information", "notify_event",
                     # a TransactionEvent sent again with other content (once an event)
                     "seq_conflict"),
    "connection": ("online", "offline"),
}
_KIND_OF = {event: quota for quota, events in KINDS.items() for event in events}


def quota_kind(event_kind: str) -> str | None:
    """The quota a station event kind falls under, or None (not metered)."""
    return _KIND_OF.get(event_kind)


@dataclass(frozen=True, slots=True)
class Verdict:
    store: bool
    first_drop: bool = False  # the first payload dropped this hour: worth one note


class PayloadQuota:
    """Bytes stored per (station, quota kind) in the current clock hour."""

    def __init__(self, limits: Mapping[str, int], clock: Callable[[], float] = time.time,
                 max_keys: int = 200_000) -> None:
        unknown = set(limits) - set(KINDS)
        if unknown:
            raise ValueError(f"unknown quota kinds: {sorted(unknown)}")
        self.limits = dict(limits)
        self.clock = clock
        self.max_keys = max_keys
        self._hour = -1
        # (station, kind) -> [bytes charged, payloads dropped] in the current hour
        self._used: dict[tuple[str, str], list[int]] = {}

    def _bucket(self, station_id: str, kind: str) -> list[int]:
        hour = int(self.clock() // 3600)
        if hour != self._hour:
            self._hour = hour
            self._used.clear()  # a new hour: every quota starts again
        key = (station_id, kind)
        bucket = self._used.get(key)
        if bucket is None:
            if len(self._used) >= self.max_keys:
                # Bound memory under a flood of station ids: forget the oldest.
                self._used.pop(next(iter(self._used)))
            bucket = self._used[key] = [0, 0]
        return bucket

    def admit(self, station_id: str, kind: str, size: int) -> Verdict:
        """Charge ``size`` bytes of ``kind`` to the station, if its quota has room."""
        limit = self.limits.get(kind)
        if limit is None:
            return Verdict(True)
        bucket = self._bucket(station_id, kind)
        charge = max(size, MIN_CHARGE)
        if bucket[0] + charge > limit:
            bucket[1] += 1
            return Verdict(False, first_drop=bucket[1] == 1)
        bucket[0] += charge
        return Verdict(True)

    def refund(self, station_id: str, kind: str, size: int) -> None:
        """A payload admitted but not stored after all (no room on disk)."""
        if kind in self.limits:
            bucket = self._bucket(station_id, kind)
            bucket[0] = max(0, bucket[0] - max(size, MIN_CHARGE))

    def over(self, station_id: str, kind: str) -> bool:
        """Whether the station had a payload of ``kind`` dropped this hour (read only: no
        entry is made for a station that has none)."""
        if self._hour != int(self.clock() // 3600):
            return False
        bucket = self._used.get((station_id, kind))
        return bucket is not None and bucket[1] > 0

    def used(self, station_id: str, kind: str) -> tuple[int, int]:
        """(bytes stored, payloads dropped) this hour."""
        bucket = self._bucket(station_id, kind)
        return bucket[0], bucket[1]
