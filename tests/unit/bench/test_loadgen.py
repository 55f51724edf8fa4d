"""The load generator's sessions: where each station begins, and what a latency counts under."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any

import pytest

from bench.loadgen import METERS_PER_SESSION, Station, Window, _charge, action_key, first_meters


def test_spread_first_sessions_cover_every_length_the_same_in_every_run() -> None:
    idents = [f"R0VO{i:06d}" for i in range(1, 501)]
    drawn = [first_meters(i) for i in idents]
    assert drawn == [first_meters(i, "spread") for i in idents]  # no state, no seed
    counts = Counter(drawn)
    assert set(counts) == set(range(METERS_PER_SESSION + 1))
    # no length takes more than twice its share (500 / 11 = 45)
    assert max(counts.values()) < 2 * len(idents) / (METERS_PER_SESSION + 1)


def test_together_every_station_begins_with_a_whole_session() -> None:
    assert {first_meters(f"LG{i}", "together") for i in range(100)} == {METERS_PER_SESSION}


def test_a_2_0_1_event_counts_under_its_event_type() -> None:
    station = Station("ws://x", "S1", "2.0.1")
    assert action_key(*station.start()) == "TransactionEvent.Started"
    assert action_key(*station.meter("T1")) == "TransactionEvent.Updated"
    assert action_key(*station.stop("T1")) == "TransactionEvent.Ended"
    assert action_key(*station.authorize()) == "Authorize"
    assert action_key(*Station("ws://x", "S1", "1.6").meter(5)) == "MeterValues"


class _Answering(Station):
    """A station whose calls are answered here (the sequence of its calls is the
    subject, not the network); the window closes after ``calls`` calls."""

    def __init__(self, ocpp: str, calls: int, window: Window) -> None:
        super().__init__("ws://x", "S1", ocpp)
        self.sent: list[str] = []
        self.left, self.window = calls, window

    async def call(self, action: str, payload: dict[str, Any]) -> dict[str, Any]:
        self.sent.append(action_key(action, payload))
        self.left -= 1
        if self.left == 0:
            self.window.end = 0.0
        if action == "StartTransaction":
            return {"transactionId": 1, "idTagInfo": {"status": "Accepted"}}
        return {"idTagInfo": {"status": "Accepted"}} if action == "Authorize" else {}


@pytest.mark.parametrize("ocpp,meter", [("1.6", "MeterValues"),
                                        ("2.0.1", "TransactionEvent.Updated")])
@pytest.mark.parametrize("first", [0, 3, METERS_PER_SESSION])
def test_the_first_session_has_its_meter_values_the_later_ones_ten(
        ocpp: str, meter: str, first: int) -> None:
    window = Window(0.0, time.time() + 60)
    station = _Answering(ocpp, calls=(first + 3) + 2 * (METERS_PER_SESSION + 3), window=window)
    asyncio.run(_charge(station, window, first))
    stops = [n for n, a in enumerate(station.sent) if a in ("StopTransaction",
                                                            "TransactionEvent.Ended")]
    assert stops == [first + 2, first + 2 + 13, first + 2 + 26]
    sessions = [station.sent[:stops[0] + 1], station.sent[stops[0] + 1:stops[1] + 1],
                station.sent[stops[1] + 1:]]
    assert [s.count(meter) for s in sessions] == [first, METERS_PER_SESSION,
                                                  METERS_PER_SESSION]
    assert all(s[0] == "Authorize" for s in sessions)
