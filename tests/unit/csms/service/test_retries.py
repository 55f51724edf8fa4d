"""What a 2.0.1 TransactionEvent sent again under its seqNo must repeat: the digest's lanes
and the billed register's readings of a copy (csms.service.retries); the digest of a
payload is tested with its translation (tests/unit/csms/translate/test_retry_digest.py)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from csms.domain.model import MeterSample
from csms.service.retries import APART, PARTS, billed_readings, event_digest, parts_differing

T0 = datetime(2026, 3, 1, 10, tzinfo=UTC)


def sample(value: str, **extra: object) -> MeterSample:
    return MeterSample(T0, value, **extra)  # type: ignore[arg-type]


def test_the_lanes_fill_62_bits_below_the_apart_bit() -> None:
    assert sum(bits for _, bits in PARTS) == 62 and APART == 1 << 62
    ones = event_digest([b"\xff" * 64] * len(PARTS))
    assert 0 <= ones < APART


@pytest.mark.parametrize("part", range(len(PARTS)))
def test_a_part_that_differs_is_named(part: int) -> None:
    first = [b"event", b"time", b"token", b"evse", b"meter values"]
    copy = list(first)
    copy[part] = b"something else"
    assert parts_differing(event_digest(first), event_digest(copy)) == [PARTS[part][0]]
    assert parts_differing(event_digest(first) | APART, event_digest(copy)) \
        == [PARTS[part][0]]  # the apart bit is no part
    assert parts_differing(event_digest(first), event_digest(first)) == []


def test_billed_readings_are_the_total_register_and_signed_data() -> None:
    samples = [
        sample("1.5", unit="kWh", context="Sample.Periodic"),
        sample("900", phase="L1", context="Sample.Periodic"),  # a part of the total
        sample("7000", measurand="Power.Active.Import", unit="W"),
        sample("1.5", format="SignedData", signed={"signedMeterData": "OCMF|{}|{}"}),
    ]
    assert billed_readings(samples) == [
        ["2026-03-01T10:00:00+00:00", "1500", "Sample.Periodic"],
        ["2026-03-01T10:00:00+00:00", None, "[('signedMeterData', 'OCMF|{}|{}')]"]]
    # the same readings written otherwise bill the same; a power reading bills nothing
    assert billed_readings([sample("1500.00", context="Sample.Periodic")]) \
        == billed_readings(samples[:3])
    assert billed_readings(samples[1:3]) == []


def test_billed_readings_are_a_lone_phase_register_without_a_total() -> None:
    # a single-phase charger's one register, tagged "L1-N": a session is billed from it, so
    # two copies that differ there would bill differently
    lone = [sample("1500", phase="L1-N", context="Sample.Periodic")]
    assert billed_readings(lone, phased=True) == [
        ["2026-03-01T10:00:00+00:00", "1500", "Sample.Periodic"]]
    assert billed_readings(lone, phased=True) != billed_readings(
        [sample("1900", phase="L1-N", context="Sample.Periodic")], phased=True)
    # beside a total, or one of several phases: never billed, not compared
    assert billed_readings([*lone, sample("1400", context="Sample.Periodic")], phased=True) \
        == [["2026-03-01T10:00:00+00:00", "1400", "Sample.Periodic"]]
    assert billed_readings([*lone, sample("1600", phase="L2-N")], phased=True) == []
    # a session with a total elsewhere: its phase parts bill nothing
    assert billed_readings(lone) == []
