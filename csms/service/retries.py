"""What a 2.0.1 TransactionEvent sent again under its seqNo must repeat. Pure.

A station that gets no answer to a TransactionEvent sends the same message again (2.0.1
E: transaction-related messages are retried until the CSMS answers; seqNo numbers a
transaction's events one by one, from its Started event's 0), and the central system
answers a retry as the first, taking nothing of it twice (DESIGN.md: 2.0.1 dedupes on
station, transactionId and seqNo). A copy that says something else is no retry: a
faulty station, or one that rewrites what it sent (an honest station whose second copy
carries other meter values loses them: the first copy is the one kept). It changes
nothing billed either way, but is recorded where it was dropped unseen.

Each event's :func:`event_digest` is stored with its seqNo, one integer (csms.storage,
``tx_events.digest``). It is made of lanes, one per part of the event
(:data:`PARTS`), each of the part as the station wrote it (a retry is the message sent
again; its ``offline`` flag, which a station may set on a retry, and its key are left
out): two digests that differ say which parts differ (:func:`parts_differing`), without
the event being stored. The meter values' lane is the widest; where it differs, the
copies' readings of the billed register are compared as numbers with those the session
stored (:func:`billed_readings`): a copy writing the same readings otherwise (1500.0 for
1500, another order) is recorded, never held. A lane is a truncated
CRC-32: a copy that differs in one part only is missed once in 2^bits (about one in
a thousand for the event's header, one in four million for its meter values); a station
that searches for such a copy gains nothing by it (the first copy stays the billed one).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from zlib import crc32

from csms.domain.energy import lone_phase_readings, register_readings
from csms.domain.model import MeterSample

__all__ = ["APART", "PARTS", "billed_readings", "event_digest", "parts_differing"]

# the parts of an event and the bits of its digest each takes, lowest first (62 bits in
# all: a positive 64-bit integer in either database)
PARTS: tuple[tuple[str, int], ...] = (
    # eventType, triggerReason, chargingState, stoppedReason, remoteStartId, reservationId,
    # numberOfPhasesUsed, cableMaxCurrent
    ("event", 10),
    ("timestamp", 10),
    ("id_token", 10),
    ("evse", 10),
    ("meter_value", 22),
)

# beside the lanes: the event came after its session completed, its readings kept apart
# from the session's (late data): a copy of it that differs bills nothing either way
APART = 1 << 62


def event_digest(parts: Sequence[bytes]) -> int:
    """The digest of an event's :data:`PARTS` (their wire text, in that order: the
    translation writes them out, csms.translate.v201), lanes lowest first."""
    # CRC-32: stable across processes and nodes (the digest is stored), ~20x cheaper than
    # SHA-256 on every event; a crafted collision is as easy against a few truncated bits
    # of either, and gains its sender nothing (the first copy stays the billed one).
    # The lanes of PARTS written out: this runs for every event
    event, timestamp, id_token, evse, meter_value = parts
    return (crc32(event) & 0x3FF | (crc32(timestamp) & 0x3FF) << 10
            | (crc32(id_token) & 0x3FF) << 20 | (crc32(evse) & 0x3FF) << 30
            | (crc32(meter_value) & 0x3FFFFF) << 40)


def parts_differing(kept: int, sent: int) -> list[str]:
    """The parts (:data:`PARTS`) in which two events' digests differ, in that order."""
    out: list[str] = []
    shift = 0
    for part, bits in PARTS:
        mask = ((1 << bits) - 1) << shift
        if kept & mask != sent & mask:
            out.append(part)
        shift += bits
    return out


def billed_readings(samples: Iterable[MeterSample],
                    phased: bool = False) -> list[list[str | None]]:
    """What of ``samples`` a session is billed from: the readings of its total import
    register (csms.domain.energy ``register_readings``: time, Wh, context), and its signed
    meter data (time and the signed data as sent), sorted; two copies of an event whose
    lists differ would bill differently. ``phased``: the session's only register is one
    phase's (``lone_phase_readings``), which bills it (``billed_energy``): that
    register's readings are read too."""
    samples = list(samples)
    found = register_readings(samples)
    if phased and not found.readings:
        found = lone_phase_readings(samples) or found
    out: list[list[str | None]] = [
        [at.isoformat(), format(wh.normalize(), "f"), context]
        for at, wh, context, *_ in found.readings]
    out += [[s.timestamp.isoformat(), None, repr(sorted((str(k), str(v))
                                                        for k, v in s.signed.items()))]
            for s in samples if s.signed is not None]
    return sorted(out, key=repr)
