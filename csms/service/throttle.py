"""A byte budget per station for its transaction messages. Pure; time is injected.

Transaction data (MeterValues, StartTransaction, StopTransaction, TransactionEvent) is
never metered by :mod:`csms.service.quota`: it is what the station is paid for, and it is
always acknowledged and stored (an error makes the station retry and finally drop it).
Unchecked, one station sending MeterValues of the frame limit as fast as it is answered
made the database grow by ~6.5 MB/s (docs/reliability.md) until the disk was full, and
then every station's transaction data was refused.

A station waits for the answer to each CALL before it sends the next (OCPP-J 1.6 / 2.0.1
§4.1.1), so the central system slows a station down by answering later: nothing refused,
nothing dropped. Each station has a token bucket of ``burst`` bytes refilled at
``rate`` bytes a second; a transaction message takes its frame's size from it, and at
least ``min_charge`` bytes: what storing even a small one costs (a StartTransaction of ~130
bytes makes a session row, its index entries and events, ~0.5 to ~1.3 KB). Charged by their
frames alone, small messages went ~10 times past the budget on disk: a station starting
sessions on ever new connectors made ~500,000 session rows before its first wait. When the
bucket holds the frame, the answer goes at once (an honest station never waits: its
bucket stays full); when not, the answer waits until it would, but never longer than
``max_delay`` (below any station's call timeout: the station must not time out and send
the message again). What a wait so capped leaves uncovered is forgiven, so a station
that stops sending is back to a full bucket ``burst / rate + max_delay`` seconds later.

A station's bucket outlives its connection until it is full again (a station cannot get a
new burst by reconnecting); then it is forgotten, since a forgotten bucket is a full one.
Memory is one small entry per station connected and per station gone for less than that
time, and at most ``max_stations`` in all.

The buckets are this process's: a station holds one connection at a time, and its bucket is
in the process that holds it. A station that reconnects to another worker of ``csms serve
--workers`` or another node starts with that process's bucket for it (full if it has none),
so a flooder moving between N processes gets up to N bursts and N times the rate. What the
budget protects is the shared database's disk, so it is meant per station across the
server; that hand-over (the bucket kept in the database when a connection ends, read when
the next one is made) is not built (docs/reliability.md says so).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["MAX_DELAY", "NO_DELAY", "TRANSACTION_ACTIONS", "Delay", "TransactionThrottle"]

# the station CALLs that carry transaction data (1.6 and 2.0.1)
TRANSACTION_ACTIONS = frozenset({"MeterValues", "StartTransaction", "StopTransaction",
                                 "TransactionEvent"})
# seconds an answer is held at most: well below the call timeouts stations use (10 to 60 s)
MAX_DELAY = 5.0


@dataclass(frozen=True, slots=True)
class Delay:
    seconds: float = 0.0
    first: bool = False  # the station's first delayed answer since its bucket was full


NO_DELAY = Delay()


class _Bucket:
    __slots__ = ("at", "delayed", "tokens")

    def __init__(self, tokens: float, at: float) -> None:
        self.tokens = tokens  # bytes; below 0 while an answer waits for them
        self.at = at  # when ``tokens`` was last brought up to date
        self.delayed = 0  # answers delayed since the bucket was last full


class TransactionThrottle:
    """Token buckets of frame bytes per station; ``rate`` 0 turns the throttle off."""

    def __init__(self, rate: float, burst: int, max_delay: float = MAX_DELAY,
                 clock: Callable[[], float] = time.monotonic,
                 max_stations: int = 200_000, min_charge: int = 0) -> None:
        if rate < 0 or burst < 0 or max_delay < 0 or min_charge < 0:
            raise ValueError("rate, burst, max_delay and min_charge must not be negative")
        self.rate = float(rate)
        self.min_charge = min_charge
        self.burst = float(burst)
        self.max_delay = max_delay
        self.clock = clock
        self.max_stations = max_stations
        self._buckets: dict[str, _Bucket] = {}
        # stations gone (their last connection closed) with a bucket not yet full, in the
        # order they left: forgotten once full for certain
        self._gone: OrderedDict[str, float] = OrderedDict()

    @property
    def enabled(self) -> bool:
        return self.rate > 0

    def __len__(self) -> int:
        """Stations with a bucket kept (for tests: memory is bounded)."""
        return len(self._buckets)

    def _refill(self, bucket: _Bucket, now: float) -> None:
        if now > bucket.at:
            bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.at) * self.rate)
            bucket.at = now
            if bucket.tokens >= self.burst:
                bucket.delayed = 0  # full again: its next flood is reported as a new one

    def charge(self, station_id: str, size: int) -> Delay:
        """Take a transaction message of ``size`` bytes (at least ``min_charge``) from the
        station's bucket: how long its answer waits (0 while the bucket holds it)."""
        if self.rate <= 0:
            return NO_DELAY
        now = self.clock()
        self._sweep(now)
        bucket = self._buckets.get(station_id)
        if bucket is None:
            if len(self._buckets) >= self.max_stations:
                self._evict()
            bucket = self._buckets[station_id] = _Bucket(self.burst, now)
        else:
            self._gone.pop(station_id, None)  # it is back
            self._refill(bucket, now)
        bucket.tokens -= max(size, self.min_charge)
        if bucket.tokens >= 0:
            return NO_DELAY
        # the answer goes once the bytes are back, at most max_delay from now; what that
        # leaves uncovered is forgiven
        bucket.tokens = max(bucket.tokens, -self.rate * self.max_delay)
        bucket.delayed += 1
        return Delay(-bucket.tokens / self.rate, first=bucket.delayed == 1)

    def left(self, station_id: str) -> None:
        """The station's connection closed (and no other replaced it): its bucket is
        forgotten once full."""
        bucket = self._buckets.get(station_id)
        if bucket is None:
            return
        now = self.clock()
        self._refill(bucket, now)
        if bucket.tokens >= self.burst:
            del self._buckets[station_id]
            self._gone.pop(station_id, None)
        else:
            self._gone[station_id] = now
            self._gone.move_to_end(station_id)
        self._sweep(now)

    def _sweep(self, now: float) -> None:
        """Forget the stations gone long enough for their buckets to be full."""
        refill = self.burst / self.rate + self.max_delay if self.rate > 0 else 0.0
        gone = self._gone
        while gone:
            station_id, since = next(iter(gone.items()))
            if since + refill > now:
                break
            del gone[station_id]
            self._buckets.pop(station_id, None)

    def _evict(self) -> None:
        """Room for one more bucket: a gone station's first, else the oldest."""
        if self._gone:
            station_id, _ = self._gone.popitem(last=False)
        else:
            station_id = next(iter(self._buckets))
        self._buckets.pop(station_id, None)

    def tokens(self, station_id: str) -> float:
        """The bytes in the station's bucket now (a full one when it has none)."""
        bucket = self._buckets.get(station_id)
        if bucket is None:
            return self.burst
        self._refill(bucket, self.clock())
        return bucket.tokens
