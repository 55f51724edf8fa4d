"""Times as the storage writes and reads them (csms.storage.sql.dt_to_db / dt_from_db)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from csms.storage.sql import dt_from_db, dt_to_db

AT = datetime(2026, 3, 1, 10, 0, 0, 5, tzinfo=UTC)


@pytest.mark.parametrize("value", [
    AT,
    AT.replace(tzinfo=None),  # naive: taken as UTC
    AT.astimezone(timezone(timedelta(hours=2))),  # another offset: the same instant
    AT.replace(tzinfo=timezone(timedelta(0))),  # a zero offset that is not UTC itself
    AT.astimezone(timezone(timedelta(hours=-9, minutes=-30))),
])
def test_every_time_is_written_as_the_same_utc_text(value: datetime) -> None:
    assert dt_to_db(value) == "2026-03-01T10:00:00.000005+00:00"
    assert dt_from_db(dt_to_db(value)) == AT


def test_no_time_is_null() -> None:
    assert dt_to_db(None) is None
    assert dt_from_db(None) is None


def test_whole_seconds_keep_their_microseconds_so_texts_sort_as_times() -> None:
    texts = [dt_to_db(AT.replace(microsecond=0)), dt_to_db(AT), dt_to_db(AT + timedelta(1))]
    assert texts == sorted(texts)
    assert texts[0] == "2026-03-01T10:00:00.000000+00:00"


def test_the_text_is_isoformats_for_any_time() -> None:
    """The text is written by orjson, not isoformat() (a quarter of its instructions): the
    same text as isoformat()'s with its fraction always written, over the whole range of
    datetime (years 1 and 9999), whole seconds, fractions with trailing zeros, offsets of
    either sign, a subclass of datetime and naive times."""
    import random

    class Stamp(datetime):
        pass

    def expected(value: datetime) -> str:
        value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        return value.isoformat(timespec="microseconds")

    rng = random.Random(18)
    start = datetime(1, 1, 2, tzinfo=UTC)
    span = (datetime(9999, 12, 30, tzinfo=UTC) - start) // timedelta(microseconds=1)
    edges = [start, datetime(9999, 12, 30, 23, 59, 59, 999999, tzinfo=UTC),
             AT.replace(microsecond=0), AT.replace(microsecond=500000), AT.replace(microsecond=10),
             Stamp(2026, 3, 1, 10, 0, 0, 5, tzinfo=UTC)]
    values = edges + [start + timedelta(microseconds=rng.randrange(span)) for _ in range(20000)]
    for i, value in enumerate(values):
        if i % 5 == 1:
            value = value.replace(microsecond=0)
        if i % 7 == 2:
            value = value.astimezone(timezone(timedelta(minutes=rng.randrange(-720, 721))))
        if i % 11 == 3:
            value = value.replace(tzinfo=None)
        assert dt_to_db(value) == expected(value), value
