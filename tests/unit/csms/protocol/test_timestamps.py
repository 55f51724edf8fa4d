"""The one timestamp policy: accept what is unambiguous, say what was assumed, refuse the
rest."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from csms.protocol.timestamps import TimestampError, is_readable, parse_timestamp


@pytest.mark.parametrize(("text", "expected", "assumed"), [
    ("2025-08-21T07:03:33Z", datetime(2025, 8, 21, 7, 3, 33, tzinfo=UTC), False),
    ("2025-08-21T07:03:33z", datetime(2025, 8, 21, 7, 3, 33, tzinfo=UTC), False),
    ("2025-08-21T09:03:33+02:00", datetime(2025, 8, 21, 7, 3, 33, tzinfo=UTC), False),
    ("2025-08-21T02:03:33-05:00", datetime(2025, 8, 21, 7, 3, 33, tzinfo=UTC), False),
    # KEBA firmware: offset without a colon, milliseconds
    ("2025-08-21T07:03:33.373+0000", datetime(2025, 8, 21, 7, 3, 33, 373000, tzinfo=UTC),
     False),
    ("2025-08-21 07:03:33Z", datetime(2025, 8, 21, 7, 3, 33, tzinfo=UTC), False),
    ("2025-08-21T07:03:33.1Z", datetime(2025, 8, 21, 7, 3, 33, 100000, tzinfo=UTC), False),
    ("2025-08-21T07:03:33,5Z", datetime(2025, 8, 21, 7, 3, 33, 500000, tzinfo=UTC), False),
    ("2025-08-21T07:03:33.123456789Z",
     datetime(2025, 8, 21, 7, 3, 33, 123456, tzinfo=UTC), False),  # kept to the microsecond
    ("2016-12-31T23:59:60Z", datetime(2016, 12, 31, 23, 59, 59, 999999, tzinfo=UTC), False),
    # Growatt: no offset at all, read as UTC and said so
    ("2025-08-21T07:03:33", datetime(2025, 8, 21, 7, 3, 33, tzinfo=UTC), True),
    ("2025-08-21T07:03:33.250", datetime(2025, 8, 21, 7, 3, 33, 250000, tzinfo=UTC), True),
])
def test_accepted(text: str, expected: datetime, assumed: bool) -> None:
    parsed = parse_timestamp(text)
    assert (parsed.value, parsed.offset_assumed) == (expected, assumed)
    assert parsed.value.tzinfo is UTC
    assert is_readable(text)


@pytest.mark.parametrize("text", [
    "20250821T070333Z",  # ISO 8601 basic format (fromisoformat reads it; OCPP does not)
    "2025-08-21T07:03Z",  # no seconds
    "2025-08-21",
    "2025-13-01T00:00:00Z", "2025-02-30T00:00:00Z", "2025-08-21T24:00:00Z",
    "2025-08-21T07:03:33+25:00", "2025-08-21T07:03:33+02:61",
    "9999-12-31T23:59:59-14:00",  # after year 9999 once in UTC
    "0001-01-01T00:00:00+01:00",  # before year 1 once in UTC
    "yesterday", "", " ", "2025-08-21T07:03:33ZZ",
])
def test_refused(text: str) -> None:
    with pytest.raises(TimestampError):
        parse_timestamp(text)
    assert not is_readable(text)


@pytest.mark.parametrize("value", [None, 1700000000, 1.5, ["2025-08-21T07:03:33Z"]])
def test_not_a_string(value: object) -> None:
    assert not is_readable(value)


def test_a_text_read_again_gives_the_same_answer_from_a_bounded_memory() -> None:
    """The schema's format check and the translation read each time: the second read is
    the first's answer; a refused text is refused every time; the memory of texts read
    stays bounded, whatever a station sends, and keeps no padded giant."""
    from csms.protocol import timestamps

    first = parse_timestamp("2025-08-21T09:03:33+02:00")
    assert parse_timestamp("2025-08-21T09:03:33+02:00") is first
    for _ in range(2):
        with pytest.raises(TimestampError):
            parse_timestamp("2025-02-30T07:03:33Z")
    for n in range(1000):
        parse_timestamp(f"2025-08-21T07:{n // 60 % 60:02d}:{n % 60:02d}Z")
        assert len(timestamps._RECENT) <= timestamps._RECENT_MAX
    padded = " " * 100_000 + "2025-08-21T07:03:33Z"
    assert parse_timestamp(padded).value == datetime(2025, 8, 21, 7, 3, 33, tzinfo=UTC)
    assert padded not in timestamps._RECENT
    assert all(len(t) <= 64 for t in timestamps._RECENT)
    # a cached answer is the fresh answer
    for text in ("2025-08-21T07:03:33.373+0000", "2025-08-21T07:03:33"):
        assert parse_timestamp(text) == timestamps._parse(text)
        assert parse_timestamp(text) == timestamps._parse(text)
