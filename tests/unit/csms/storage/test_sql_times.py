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
