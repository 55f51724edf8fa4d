"""The rule for a session that charged on after a remote stop its station accepted
(csms.service.remote_stops)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from csms.domain.model import Session
from csms.service.remote_stops import ENERGY_GRACE_S, AcceptedStop, charged_on

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
ACCEPTED = T0 + timedelta(hours=2)
POWER = Decimal(22_000)
TOLERANCE = timedelta(minutes=10)


def completed(energy_wh: int, stopped_after: timedelta) -> Session:
    return Session("CP1", "1.6", "1", T0, energy_wh=energy_wh,
                   stopped_at=ACCEPTED + stopped_after)


# the energy had at the accept, its last growth one minute before it
STOP = AcceptedStop(ACCEPTED, 14_000, ACCEPTED - timedelta(minutes=1))
# 22 kW over that minute and the grace
ALLOWED = int(POWER * (60 + ENERGY_GRACE_S) / 3600)


@pytest.mark.parametrize(("energy_wh", "stopped_after", "held"), [
    (14_000, timedelta(seconds=5), False),  # stopped at once
    (14_000 + ALLOWED, timedelta(seconds=5), False),  # delivered before the stop, unreported
    (14_000 + ALLOWED + 1, timedelta(seconds=5), True),  # more than the station delivers
    (14_000, TOLERANCE, False),  # a clock off by the tolerance
    (14_000, TOLERANCE + timedelta(seconds=1), True),  # billed for time after the stop
    (14_000, -timedelta(minutes=30), False),  # a clock behind: dated before the accept
])
def test_charged_on(energy_wh: int, stopped_after: timedelta, held: bool) -> None:
    assert (charged_on(STOP, completed(energy_wh, stopped_after), POWER, TOLERANCE)
            is not None) is held


def test_unreported_energy_is_counted_from_the_last_growth() -> None:
    """A station that reported nothing for an hour before the accept delivered up to an
    hour of power since: its stop's energy is no charging on."""
    stop = AcceptedStop(ACCEPTED, 14_000, ACCEPTED - timedelta(hours=1))
    assert charged_on(stop, completed(14_000 + 20_000, timedelta(seconds=5)), POWER,
                      TOLERANCE) is None
    assert charged_on(stop, completed(14_000 + 23_000, timedelta(seconds=5)), POWER,
                      TOLERANCE) is not None


def test_the_event_payload_reads_back() -> None:
    assert AcceptedStop.of({"session_id": 1, **STOP.payload()}) == STOP
    bare = AcceptedStop(ACCEPTED, 0, None)
    assert AcceptedStop.of(bare.payload()) == bare


def test_a_late_stop_holds_only_a_session_priced_by_time() -> None:
    """A stop dated long after the accept costs a driver nothing under a tariff by energy
    alone (a 2.0.1 transaction that ends at the unplug ends late honestly); under one by
    the minute (or none known) it is time billed after the stop."""
    session = completed(14_000, timedelta(minutes=30))
    assert charged_on(STOP, session, POWER, TOLERANCE, by_time=False) is None
    assert charged_on(STOP, session, POWER, TOLERANCE, by_time=True) is not None
    grown = completed(14_000 + 30_000, timedelta(minutes=30))
    assert charged_on(STOP, grown, POWER, TOLERANCE, by_time=False) is not None
