"""Reservations' state table, expiry by the clock, who may use one, and operators' times."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from csms.domain.maintenance import (
    RESERVATION_TRANSITIONS,
    Reservation,
    ReservationState,
    check_reservation_transition,
    parse_when,
)

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
S = ReservationState
ENDS = {S.REFUSED, S.FAILED, S.USED, S.CANCELLED, S.REMOVED, S.EXPIRED}


def reservation(**kw: object) -> Reservation:
    fields: dict[str, object] = {"station_id": "CP1", "connector_id": 1, "id_tag": "TAG",
                                 "expires_at": NOW + timedelta(hours=1), "created_at": NOW}
    fields.update(kw)
    return Reservation(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize("before", list(S))
@pytest.mark.parametrize("after", list(S))
def test_state_table(before: ReservationState, after: ReservationState) -> None:
    allowed = {(S.REQUESTED, S.ACCEPTED), (S.REQUESTED, S.REFUSED), (S.REQUESTED, S.FAILED),
               (S.ACCEPTED, S.USED), (S.ACCEPTED, S.CANCELLED), (S.ACCEPTED, S.REMOVED),
               (S.ACCEPTED, S.EXPIRED)}
    assert check_reservation_transition(before, after) is ((before, after) in allowed)
    assert set(RESERVATION_TRANSITIONS) == set(S)
    if before in ENDS:
        assert not RESERVATION_TRANSITIONS[before]


def test_expiry_is_read_from_the_clock() -> None:
    r = reservation(status=S.ACCEPTED)
    assert r.live(NOW) and r.state_at(NOW) is S.ACCEPTED
    later = r.expires_at
    assert not r.live(later) and r.state_at(later) is S.EXPIRED
    # once past its expiry it cannot be used or cancelled: it expired first
    assert not r.move(S.USED, later) and r.status is S.EXPIRED
    assert not reservation(status=S.REQUESTED).live(NOW)


@pytest.mark.parametrize(("tag", "parent", "holder"), [
    ("TAG", None, True), ("OTHER", None, False), ("OTHER", "GROUP", True),
    ("OTHER", "ELSE", False), (None, None, False),
])
def test_holder(tag: str | None, parent: str | None, holder: bool) -> None:
    assert reservation(parent_tag="GROUP").holder(tag, parent) is holder
    assert reservation().holder(tag, parent) is (tag == "TAG")


@pytest.mark.parametrize(("connector", "reserved", "covers"), [
    (1, 1, True), (2, 1, False), (2, 0, True), (None, 1, True),
])
def test_covers(connector: int | None, reserved: int, covers: bool) -> None:
    assert reservation(connector_id=reserved).covers(connector) is covers


@pytest.mark.parametrize(("text", "expected"), [
    ("now", NOW),
    ("+2h", NOW + timedelta(hours=2)),
    ("+90m", NOW + timedelta(minutes=90)),
    ("-1d", NOW - timedelta(days=1)),
    ("+30s", NOW + timedelta(seconds=30)),
    ("2026-05-01T18:00:00Z", datetime(2026, 5, 1, 18, tzinfo=UTC)),
    ("2026-05-01T20:00:00+02:00", datetime(2026, 5, 1, 18, tzinfo=UTC)),
    ("2026-05-01T18:00:00", datetime(2026, 5, 1, 18, tzinfo=UTC)),
])
def test_parse_when(text: str, expected: datetime) -> None:
    assert parse_when(text, NOW) == expected


@pytest.mark.parametrize("text", ["tomorrow", "+2", "+h", "2h", "+2y", "", "+9999999999d",
                                  "2026-13-01T00:00:00Z"])
def test_parse_when_refuses(text: str) -> None:
    with pytest.raises(ValueError):
        parse_when(text, NOW)
