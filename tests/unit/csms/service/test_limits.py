"""The rule that stops a session at what its driver pays (csms.service.limits)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from csms.domain.model import Session, reused_transaction_id
from csms.domain.tariff import Tariff
from csms.service import defaults
from csms.service.limits import (
    EXPIRING_FLAG,
    LIMIT_FLAG,
    NOTICE_FLAG,
    REFUSED_FLAG,
    LimitReached,
    limit_overrun,
    limit_reached,
    notice_stop_at,
    price_so_far,
    short_notice,
    stop_between_readings,
)

T0 = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
PER_KWH = Tariff("*", Decimal("0.39"))  # 39 minor units a kWh
PER_MINUTE = Tariff("*", Decimal(0), per_minute=Decimal("0.10"), session_fee=Decimal("0.50"))


def session(energy_wh: int | None, limit: int | None = 100) -> Session:
    return Session("CP1", "ocpp1.6", "7", T0, energy_wh=energy_wh, limit_minor=limit, id=7)


def minutes(n: float) -> datetime:
    return T0 + timedelta(minutes=n)


def test_the_price_so_far_and_one_more_interval_reach_the_limit() -> None:
    # 86 so far; the interval before was 700 Wh (27): 113 reaches 100
    assert limit_reached(PER_KWH, session(2200), minutes(3), (minutes(2), 1500),
                         minutes(3)) == LimitReached(7, "7", 100, 86, 27)
    # 59 so far and 20 for one more 500 Wh: 79
    assert limit_reached(PER_KWH, session(1500), minutes(2), (minutes(1), 1000),
                         minutes(2)) is None


def test_reaching_it_exactly_stops() -> None:
    # 2564 Wh is 100 (99.996 rounded); the interval before added nothing
    assert limit_reached(PER_KWH, session(2564), minutes(3), (minutes(3), 2564),
                         minutes(3)) == LimitReached(7, "7", 100, 100, 0)
    assert limit_reached(PER_KWH, session(2550), minutes(3), (minutes(3), 2550),
                         minutes(3)) is None  # 99.45: 99


def test_the_time_counts_up_to_now_and_the_interval_s_time_with_it() -> None:
    # 0.50 fee and 0.10 a minute: 30 minutes are 350; 5 more minutes are 50
    s = session(0, limit=400)
    assert limit_reached(PER_MINUTE, s, minutes(30), (minutes(25), 0),
                         minutes(30)) == LimitReached(7, "7", 400, 350, 50)
    assert limit_reached(PER_MINUTE, s, minutes(30), (minutes(26), 0), minutes(30)) is None
    # a reading dated before the one before (a station's clock) adds no time
    assert limit_reached(PER_MINUTE, s, minutes(30), (minutes(31), 0), minutes(30)) is None


def test_a_session_without_a_limit_is_never_stopped() -> None:
    assert limit_reached(PER_KWH, session(10**9, limit=None), minutes(60), (T0, 0),
                         minutes(60)) is None


def test_the_price_so_far_is_the_running_cost_s() -> None:
    # whole seconds rounded up, energy as stored (none: nothing)
    assert price_so_far(PER_MINUTE, session(None), T0 + timedelta(seconds=0.2)) == 50 + 0
    assert price_so_far(PER_MINUTE, session(None), minutes(1)) == 60
    assert price_so_far(PER_KWH, session(1000), minutes(1)) == 39


def test_between_readings_the_time_until_the_next_check_counts() -> None:
    # 0.50 fee and 0.10 a minute, no reading: 35 minutes are 400, 34.5 are 395 and 5 more
    # for the next 30 s; 34 minutes are 390 and 5
    s = session(0, limit=400)
    assert stop_between_readings(PER_MINUTE, s, minutes(34.5), 30, None, 1200) == \
        LimitReached(7, "7", 400, 395, 5)
    assert stop_between_readings(PER_MINUTE, s, minutes(34), 30, None, 1200) is None
    # the energy so far counts, with no more of it until the next check
    assert stop_between_readings(PER_KWH, session(2564), minutes(3), 30, None,
                                 1200) == LimitReached(7, "7", 100, 100, 0)
    assert stop_between_readings(PER_KWH, session(2550), minutes(600), 30, None,
                                 1200) is None


def test_a_signed_session_is_stopped_ahead_of_its_signature_s_expiry() -> None:
    s = session(1000, limit=10_000)
    expiry = int(minutes(60).timestamp())
    # stopped when the signature expires within the margin after the next check
    assert stop_between_readings(PER_KWH, s, minutes(60 - 20.5), 30, expiry, 1200) == \
        LimitReached(7, "7", 10_000, 39, 0, EXPIRING_FLAG)
    assert stop_between_readings(PER_KWH, s, minutes(60 - 20.6), 30, expiry, 1200) is None
    assert stop_between_readings(None, s, minutes(59), 30, expiry, 1200) == \
        LimitReached(7, "7", 10_000, 0, 0, EXPIRING_FLAG)  # no tariff: no price
    # at its limit first: that is the reason given
    assert stop_between_readings(PER_KWH, session(2564), minutes(59), 30, expiry,
                                 1200) == LimitReached(7, "7", 100, 100, 0)


def test_a_session_is_stopped_ahead_of_its_driver_s_notice_counted_from_its_start() -> None:
    day = 86_400
    s = session(1000, limit=10_000)
    at = notice_stop_at(s, 7 * day, 4800)
    assert at == T0 + timedelta(days=7, seconds=-4800)
    assert notice_stop_at(s, None, 4800) is None  # no worker has read the notice yet
    # stopped when that time comes before the next check, not a check earlier
    assert stop_between_readings(PER_KWH, s, at - timedelta(seconds=30), 30, None, 1200,
                                 at) == LimitReached(7, "7", 10_000, 39, 0, NOTICE_FLAG)
    assert stop_between_readings(PER_KWH, s, at - timedelta(seconds=31), 30, None, 1200,
                                 at) is None
    # a signature expiring first, or the limit, is the reason given
    expiry = int(at.timestamp())
    first = stop_between_readings(PER_KWH, s, at, 30, expiry, 1200, at)
    assert first is not None and first.reason == EXPIRING_FLAG
    assert stop_between_readings(PER_KWH, session(2564), at, 30, None, 1200, at) == \
        LimitReached(7, "7", 100, 100, 0)
    # counted from the earlier of the station's start and when it was stored: a station
    # dating its start later does not put the stop off
    late = Session("CP1", "ocpp1.6", "7", T0 + timedelta(days=3), energy_wh=1000,
                   limit_minor=10_000, id=7, created_at=T0)
    assert notice_stop_at(late, 7 * day, 4800) == at
    # a session without a limit is never stopped for it
    assert stop_between_readings(PER_KWH, session(1000, limit=None), at, 30, None, 1200,
                                 at) is None


def _first_stop(notice_s: int, check_at: float) -> float:
    """Seconds from a driver's session's start to the first of the node's checks (every
    LIMIT_CHECK_SECONDS, the first ``check_at`` after the start) that stops it at its
    notice."""
    s = session(0, limit=10_000)
    at = notice_stop_at(s, notice_s, defaults.NOTICE_STOP_AHEAD)
    t = check_at
    while stop_between_readings(None, s, T0 + timedelta(seconds=t),
                                defaults.LIMIT_CHECK_SECONDS, None,
                                defaults.SIGNED_STOP_AHEAD, at) is None:
        t += defaults.LIMIT_CHECK_SECONDS
    return t


def test_a_notice_period_below_the_least_is_one_line_of_what_it_does() -> None:
    """A contract deployed before csms contract deploy took at least MIN_NOTICE_PERIOD:
    each session a driver's escrow pays is stopped NOTICE_STOP_AHEAD before its start plus
    the notice period; the line says when that is, as the check does it."""
    least = defaults.MIN_NOTICE_PERIOD
    assert short_notice(least) is None and short_notice(7 * 86_400) is None
    line = short_notice(3600)
    assert line is not None
    assert "3600 s" in line and f"below the least csms contract deploy allows ({least} s)" \
        in line, line
    assert "stopped 80 min before its start plus the notice period" in line, line
    assert line.endswith("so every such session is stopped at the first check after its"
                         " start (one every 30 s)"), line
    assert {_first_stop(3600, t) for t in (0.5, 15, 30)} == {0.5, 15, 30}
    # 4830 s: stopped at the first check too, wherever it falls
    assert short_notice(4830) == line.replace("3600 s", "4830 s")
    assert {_first_stop(4830, t) for t in (0.5, 15, 30)} == {0.5, 15, 30}
    for notice, words in ((6000, "after at most 20 min of charging"),
                          (least - 1, "after at most 60 min 29 s of charging")):
        line = short_notice(notice)
        assert line is not None and line.endswith(
            f"so every such session is stopped {words}"), line
        left = notice - defaults.NOTICE_STOP_AHEAD
        assert all(left - 30 <= _first_stop(notice, t) <= left for t in (0.5, 15, 30))


def test_between_readings_a_session_without_a_limit_is_never_stopped() -> None:
    assert stop_between_readings(PER_MINUTE, session(10**9, limit=None), minutes(600), 30,
                                 int(T0.timestamp()), 1200) is None


def completed(energy_wh: int, stop_minutes: float, limit: int | None = 100,
              *flags: str) -> Session:
    s = Session("CP1", "ocpp1.6", "7", T0, energy_wh=energy_wh, limit_minor=limit, id=7,
                meter_start_wh=0, meter_stop_wh=energy_wh, stopped_at=minutes(stop_minutes))
    s.flags = list(flags)
    return s


def test_a_session_far_past_its_limit_with_no_reading_ran_past_it_unasked() -> None:
    # 30 kWh in an hour, no reading to stop it at: 1170 at the tariff, a limit of 100
    assert limit_overrun(PER_KWH, completed(30_000, 60), []) == (1170, 0)
    # a reading at its start or its stop is no interval inside it
    assert limit_overrun(PER_KWH, completed(30_000, 60),
                         [(T0, Decimal(0)), (minutes(60), Decimal(30_000))]) == (1170, 0)


def test_past_its_limit_by_at_most_one_interval_like_its_latest_is_honest() -> None:
    # a reading at 1200 Wh (47, 47 for one more: 94, no stop asked), stopped at 2700 Wh
    # (105): past the limit by less than the interval before (47)
    assert limit_overrun(PER_KWH, completed(2700, 2), [(minutes(1), Decimal(1200))]) is None
    # ... stopped at 4000 Wh (156): more than one interval past it
    assert limit_overrun(PER_KWH, completed(4000, 2),
                         [(minutes(1), Decimal(1200))]) == (156, 47)
    # the interval is the latest: 1200 Wh, then 100 Wh more (4)
    assert limit_overrun(PER_KWH, completed(2700, 3), [
        (minutes(2), Decimal(1300)), (minutes(1), Decimal(1200))]) == (105, 4)


def test_within_its_limit_stopped_at_it_or_without_one_it_is_not_an_overrun() -> None:
    assert limit_overrun(PER_KWH, completed(2500, 60), []) is None  # 98
    # a stop was asked (taken or not): paid its limit, held for a refused stop only
    for flags in ((LIMIT_FLAG,), (EXPIRING_FLAG,), (LIMIT_FLAG, REFUSED_FLAG)):
        assert limit_overrun(PER_KWH, completed(30_000, 60, 100, *flags), []) is None
    assert limit_overrun(PER_KWH, completed(30_000, 60, None), []) is None
    # the session fee counts once, not in the margin: 0.50 + 0.10 a minute, a reading at 5
    # minutes (50), stopped at 10 (150, limit 60): past it by 90, more than 50
    assert limit_overrun(PER_MINUTE, completed(0, 10, 60),
                         [(minutes(5), Decimal(0))]) == (150, 50)


def test_a_stop_names_the_transaction_by_the_station_s_id() -> None:
    # a 2.0.1 transaction stored under the id of one that reused an ended one's (the
    # station knows it by "1": its RequestStopTransaction names "1")
    reused = Session("CP1", "ocpp2.0.1", reused_transaction_id("1", 3), T0,
                     energy_wh=2200, limit_minor=100, id=7)
    assert limit_reached(PER_KWH, reused, minutes(3), (minutes(2), 1500),
                         minutes(3)) == LimitReached(7, "1", 100, 86, 27)
