"""The counts of handled CALLs: plain numbers turned into metric families when scraped,
checked against prometheus_client's own Counter and Histogram fed the same calls."""

from __future__ import annotations

import random

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from csms.metrics import HANDLER_BUCKETS, Metrics


def without_created(text: bytes) -> list[str]:
    return [line for line in text.decode().splitlines() if "_created" not in line]


def reference(calls: list[tuple[str, str, float | None]]) -> list[str]:
    """What prometheus_client's labelled children expose for the same calls."""
    r = CollectorRegistry()
    messages = Counter("voltledger_messages", "OCPP CALLs received, by action and result",
                       ["action", "result"], registry=r)
    seconds = Histogram("voltledger_handler_seconds",
                        "Time to handle a station's CALL, commit included", ["action"],
                        registry=r, buckets=HANDLER_BUCKETS)
    for action, result, took in calls:
        if took is not None:
            seconds.labels(action).observe(took)
        messages.labels(action, result).inc()
    return without_created(generate_latest(r))


def ours(calls: list[tuple[str, str, float | None]]) -> list[str]:
    m = Metrics()
    for action, result, took in calls:
        if took is None:
            m.calls.count(action, result)
        else:
            m.handled(action, result, took)
    lines = without_created(m.render())
    names = ("voltledger_messages", "voltledger_handler_seconds")
    keep, out = False, []
    for line in lines:  # only the two families (Metrics has others)
        if line.startswith("# HELP"):
            keep = line.split()[2].startswith(names)
        if keep:
            out.append(line)
    return out


def test_every_bound_and_between_as_prometheus_counts_them() -> None:
    rng = random.Random(7)
    edges = [0.0, *HANDLER_BUCKETS, 2.5000001, 3600.0, 1e-9]
    calls: list[tuple[str, str, float | None]] = []
    for _ in range(3000):
        action = rng.choice(["Heartbeat", "MeterValues", "Authorize", "TransactionEvent"])
        result = rng.choice(["ok", "ok", "ok", "error", "refused"])
        took = rng.choice(edges) if rng.random() < 0.3 else rng.expovariate(50)
        calls.append((action, result, took))
    calls += [("-", "rejected", None), ("-", "rejected", None)]  # counted, not timed
    assert ours(calls) == reference(calls)


def test_created_times_are_kept_per_series() -> None:
    m = Metrics()
    m.handled("Heartbeat", "ok", 0.001)
    m.handled("Heartbeat", "error", 0.001)
    text = m.render().decode()
    assert text.count('voltledger_messages_created{action="Heartbeat"') == 2
    assert text.count('voltledger_handler_seconds_created{action="Heartbeat"}') == 1
    assert m.calls.value("Heartbeat", "ok") == 1 and m.calls.value("Nothing", "ok") == 0


def test_the_write_turn_is_read_when_scraped() -> None:
    m = Metrics()
    turn = [0.0, 0.0]
    m.watch_write_turn(lambda: (turn[0], turn[1]))
    turn[:] = [1.5, 0.25]
    lines = m.render().decode().splitlines()
    assert 'voltledger_storage_write_turn_seconds_total{state="held"} 1.5' in lines
    assert 'voltledger_storage_write_turn_seconds_total{state="waited"} 0.25' in lines
