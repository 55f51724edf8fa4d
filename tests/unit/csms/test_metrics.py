"""The counts of handled CALLs: plain numbers turned into metric families when scraped,
checked against prometheus_client's own Counter and Histogram fed the same calls."""

from __future__ import annotations

import random
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from csms.metrics import (
    HANDLER_BUCKETS,
    NODE_WIDE,
    Metrics,
    merge_workers,
    read_worker_metrics,
    serve_worker_metrics,
    worker_socket,
)


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
    turn = [0.0, 0.0, 0.0]
    m.watch_write_turn(lambda: (turn[0], turn[1], turn[2]))
    turn[:] = [1.5, 0.25, 0.125]
    lines = m.render().decode().splitlines()
    assert 'voltledger_storage_write_turn_seconds_total{state="held"} 1.5' in lines
    assert 'voltledger_storage_write_turn_seconds_total{state="waited"} 0.25' in lines
    assert 'voltledger_storage_write_turn_seconds_total{state="before_batch"} 0.125' in lines


def test_batches_run_again_are_read_when_scraped() -> None:
    m = Metrics()
    again = [0]
    m.watch_write_turn(lambda: (0.0, 0.0, 0.0), lambda: again[0])
    again[0] = 3
    assert "voltledger_storage_batches_run_again_total 3.0" in m.render().decode().splitlines()


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def samples(text: bytes) -> Samples:
    from prometheus_client.parser import text_string_to_metric_families

    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text.decode())
            for s in family.samples}


def worker(connected: int, heartbeats: int, backlog: int) -> str:
    m = Metrics()
    m.connected.set(connected)
    for _ in range(heartbeats):
        m.handled("Heartbeat", "ok", 0.003)
    m.connections_cut.labels("ping_flood").inc()
    m.settlement_backlog.set(backlog)  # read from the database by worker 0 only
    m.sessions.labels("active").set(backlog)
    return m.render().decode()


def test_the_workers_metrics_are_served_with_their_worker_label() -> None:
    """csms serve --workers: worker 0's /metrics holds every worker's families, each
    sample labelled with its worker; the families read from the database are worker 0's
    alone; a worker that did not answer is missing from the count of those scraped."""
    text = merge_workers([worker(3, 5, 7), worker(4, 2, 0), None])
    got = samples(text)
    assert got[("voltledger_connected_stations", (("worker", "0"),))] == 3
    assert got[("voltledger_connected_stations", (("worker", "1"),))] == 4
    assert ("voltledger_connected_stations", (("worker", "2"),)) not in got
    hb = (("action", "Heartbeat"), ("result", "ok"))
    assert got[("voltledger_messages_total", (*hb, ("worker", "0")))] == 5
    assert got[("voltledger_messages_total", (*hb, ("worker", "1")))] == 2
    assert got[("voltledger_handler_seconds_count", (("action", "Heartbeat"),
                                                     ("worker", "1")))] == 2
    assert got[("voltledger_handler_seconds_bucket", (("action", "Heartbeat"), ("le", "0.005"),
                                                      ("worker", "0")))] == 5
    assert got[("voltledger_connections_cut_total", (("reason", "ping_flood"),
                                                     ("worker", "1")))] == 1
    assert got[("voltledger_settlement_backlog", ())] == 7  # worker 0's, unlabelled
    assert got[("voltledger_sessions", (("status", "active"),))] == 7
    assert not [k for k in got if k[0] in NODE_WIDE and dict(k[1]).get("worker")]
    assert got[("voltledger_workers", ())] == 3
    assert got[("voltledger_workers_scraped", ())] == 2
    # one HELP and TYPE a family: a valid exposition
    types = [line.split()[2] for line in text.decode().splitlines()
             if line.startswith("# TYPE")]
    assert len(types) == len(set(types))


async def test_a_worker_answers_its_metrics_on_its_socket(tmp_path: Path) -> None:
    """Real Unix sockets: worker 1 answers; worker 2 has no socket (stopped); worker 3
    accepts and never answers (stuck): both are None, the second after the timeout."""
    import asyncio

    served = await serve_worker_metrics(str(tmp_path), 1, lambda: b"# one\n")

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # until worker 0 gives up and closes
        writer.close()

    stuck = await asyncio.start_unix_server(silent, path=str(worker_socket(str(tmp_path), 3)))
    try:
        assert await read_worker_metrics(str(tmp_path), 4, timeout=0.3) == [
            "# one\n", None, None]
    finally:
        served.close()
        stuck.close()
    # a new life of worker 1 replaces the socket file its killed one left behind
    again = await serve_worker_metrics(str(tmp_path), 1, lambda: b"# two\n")
    try:
        assert await read_worker_metrics(str(tmp_path), 2) == ["# two\n"]
    finally:
        again.close()
