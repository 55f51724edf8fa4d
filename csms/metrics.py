"""Prometheus metrics of one node, served as text at ``/metrics`` on the admin port.

A node of several processes (``csms serve --workers N``) serves them from worker 0, the
one with the admin port: every other worker answers its own metrics on a Unix socket in a
folder its parent made for them (:func:`serve_worker_metrics`), worker 0 reads them when
scraped (:func:`read_worker_metrics`) and serves the families of every process with a
``worker`` label, those it reads from the database once (:data:`NODE_WIDE`), and how many
workers answered (:func:`merge_workers`).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from bisect import bisect_left
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

__all__ = ["NODE_WIDE", "HandledCalls", "Metrics", "WriteTurn", "merge_workers",
           "read_worker_metrics", "serve_worker_metrics", "worker_socket"]

# The families the node serving /metrics reads from the database when scraped: one value
# for the node, not one per process (the other workers never set them).
NODE_WIDE = frozenset({"voltledger_sessions", "voltledger_settlement_backlog",
                       "voltledger_settlement_gas_used", "voltledger_outbox_pending"})
WORKER_METRICS_TIMEOUT = 2.0  # seconds worker 0 waits for another worker's metrics

HANDLER_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5)


class HandledCalls:
    """``voltledger_messages`` (CALLs by action and result) and
    ``voltledger_handler_seconds`` (their time, by action), kept as plain numbers and
    turned into metric families when ``/metrics`` is read. prometheus_client's labelled
    children took a lock for every increment and walked the buckets for every observation
    (1.7% of the server's loop, for every message); here a message costs two dictionary
    updates and a bisection. Updated on the event loop only; a scrape reads copies."""

    def __init__(self, registry: CollectorRegistry,
                 buckets: tuple[float, ...] = HANDLER_BUCKETS) -> None:
        self.bounds = buckets
        self._les = [repr(float(b)) for b in buckets] + ["+Inf"]  # as prometheus writes "le"
        self._counts: dict[tuple[str, str], int] = {}
        self._created: dict[tuple[str, str], float] = {}
        # per action: the count of each bucket (not cumulative; the last one is +Inf),
        # then the sum of the seconds
        self._seconds: dict[str, list[float]] = {}
        self._since: dict[str, float] = {}  # when each action's histogram began
        registry.register(self)

    def handled(self, action: str, result: str, seconds: float) -> None:
        """One CALL handled: its result and the time it took."""
        self.count(action, result)
        h = self._seconds.get(action)
        if h is None:
            self._since[action] = time.time()  # first: a scrape finds it for every action
            h = self._seconds[action] = [0.0] * (len(self.bounds) + 2)
        h[bisect_left(self.bounds, seconds)] += 1  # the bucket "le" bounds it
        h[-1] += seconds

    def count(self, action: str, result: str) -> None:
        """One CALL counted without a time (a frame refused before it was read)."""
        key = (action, result)
        n = self._counts.get(key)
        if n is None:
            self._created[key] = time.time()  # before the count, as _since above
            n = 0
        self._counts[key] = n + 1

    def value(self, action: str, result: str) -> int:
        """How many CALLs of ``action`` ended with ``result``."""
        return self._counts.get((action, result), 0)

    @staticmethod
    def _families() -> tuple[CounterMetricFamily, HistogramMetricFamily]:
        """The two families, without samples."""
        return (CounterMetricFamily("voltledger_messages",
                                    "OCPP CALLs received, by action and result",
                                    labels=["action", "result"]),
                HistogramMetricFamily("voltledger_handler_seconds",
                                      "Time to handle a station's CALL, commit included",
                                      labels=["action"]))

    def describe(self) -> list[Metric]:
        return list(self._families())

    def collect(self) -> Iterator[Metric]:
        messages, seconds = self._families()
        for key, n in list(self._counts.items()):
            messages.add_metric(key, n, created=self._created.get(key))
        yield messages
        for action, h in list(self._seconds.items()):
            counts, total, running = h[:-1], h[-1], 0.0
            buckets = []
            for le, c in zip(self._les, counts, strict=True):
                running += c
                buckets.append((le, running))
            seconds.add_metric([action], buckets, total)
            seconds.samples.append(Sample("voltledger_handler_seconds_created",
                                          {"action": action}, self._since[action]))
        yield seconds


class WriteTurn:
    """``voltledger_storage_write_turn_seconds_total{state}``: the seconds this process
    held a SQLite file's write turn (``held``: BEGIN to the end of COMMIT) and waited for
    it (``waited``: another process writing), read from the repository when scraped; of
    the seconds held, ``before_batch`` were before the process's event loop ran the batch
    (it was finishing other work: a turn no process writes in).
    While one process holds the turn no other writes: held (of every process on the
    file) near one second a second means writes never pause, and another process cannot
    add a message a second (docs/benchmarks.md)."""

    def __init__(self, registry: CollectorRegistry,
                 read: Callable[[], tuple[float, float, float]],
                 runs_again: Callable[[], int] | None = None) -> None:
        self._read = read
        self._runs_again = runs_again
        registry.register(self)

    @staticmethod
    def _family() -> CounterMetricFamily:
        return CounterMetricFamily(
            "voltledger_storage_write_turn_seconds",
            "Seconds this process held the database's write turn, and waited for it",
            labels=["state"])

    @staticmethod
    def _runs_again_family() -> CounterMetricFamily:
        # a batch's units run without a savepoint each; one that wrote and then failed
        # sends its batch back to run again unit by unit (csms.storage.sqlite): many of
        # these mean a station whose messages fail so, or a fault
        return CounterMetricFamily(
            "voltledger_storage_batches_run_again",
            "Write batches run again unit by unit because a unit wrote and then failed")

    def describe(self) -> list[Metric]:
        families: list[Metric] = [self._family()]
        if self._runs_again is not None:
            families.append(self._runs_again_family())
        return families

    def collect(self) -> Iterator[Metric]:
        family = self._family()
        held, waited, before_batch = self._read()
        family.add_metric(["held"], held)
        family.add_metric(["waited"], waited)
        family.add_metric(["before_batch"], before_batch)
        yield family
        if self._runs_again is not None:
            again = self._runs_again_family()
            again.add_metric([], self._runs_again())
            yield again


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.connected = Gauge(
            "voltledger_connected_stations", "Stations connected to this node", registry=r
        )
        self.calls = HandledCalls(r)
        self.sessions = Gauge(
            "voltledger_sessions", "Charging sessions by status", ["status"], registry=r
        )
        self.settlement_backlog = Gauge(
            "voltledger_settlement_backlog", "Completed sessions waiting for settlement",
            registry=r,
        )
        self.gas_spent = Gauge(
            "voltledger_settlement_gas_used", "Gas used by settlement transactions", registry=r
        )
        self.outbox_pending = Gauge(
            "voltledger_outbox_pending", "Bus events not yet published", registry=r
        )
        self.commands = Counter(
            "voltledger_operator_commands", "Operator commands by command and result",
            ["command", "result"], registry=r,
        )
        self.outbox_skipped = Counter(
            "voltledger_outbox_skipped", "Bus events skipped unpublished: the MQTT client"
            " refused them, or their publish failed again and again (see the log)", registry=r,
        )
        self.bus_dropped = Counter(
            "voltledger_bus_dropped", "Command bus messages dropped (unsigned, badly signed,"
            " stale, replayed, for another node...), by reason", ["reason"], registry=r,
        )
        self.handshakes_pending = Gauge(
            "voltledger_handshakes_pending", "Connections in their TLS or HTTP handshake",
            ["listener"], registry=r,
        )
        self.handshakes_queued = Counter(
            "voltledger_handshakes_queued",
            "Connections that waited, unread, for a handshake slot", ["listener"], registry=r,
        )
        self.handshakes_reserved = Counter(
            "voltledger_handshakes_reserved",
            "Handshake slots beyond max_handshakes taken by known clients (addresses"
            " registered stations logged in from)", ["listener"], registry=r,
        )
        self.connections_cut = Counter(
            "voltledger_connections_cut", "Connections closed or dropped by the server's limits",
            ["reason"], registry=r,
        )
        self.password_checks = Counter(
            "voltledger_password_checks", "Station password checks (scrypt) by result",
            ["result"], registry=r,
        )
        self.logins_refused = Counter(
            "voltledger_logins_refused", "Station logins refused before the upgrade, by reason",
            ["reason"], registry=r,
        )
        self.payloads_dropped = Counter(
            "voltledger_payloads_dropped", "Station payloads not stored (quota or reserve)",
            ["kind", "reason"], registry=r,
        )
        # answers to transaction messages held back by the station's byte budget
        # (csms.service.throttle), by action: how many, and the seconds they waited
        self.answers_delayed = Counter(
            "voltledger_answers_delayed", "Answers to transaction messages delayed by the"
            " station's byte budget, by action", ["action"], registry=r,
        )
        self.answers_delayed_seconds = Counter(
            "voltledger_answers_delayed_seconds", "Seconds answers to transaction messages"
            " waited for the station's byte budget, by action", ["action"], registry=r,
        )
        self.events_pruned = Counter(
            "voltledger_station_events_pruned", "Station events deleted past their retention"
            " period", registry=r,
        )
        self.events_kept = Gauge(
            "voltledger_station_events_kept", "Station events past their retention period"
            " kept at the last sweep, for sessions whose billing is not final", registry=r,
        )
        self.task_up = Gauge(
            "voltledger_task_up", "1 while a background task runs, 0 while it waits to restart",
            ["task"], registry=r,
        )
        self.task_restarts = Counter(
            "voltledger_task_restarts", "Restarts of background tasks after a failure",
            ["task"], registry=r,
        )

    def watch_write_turn(self, read: Callable[[], tuple[float, float, float]],
                         runs_again: Callable[[], int] | None = None) -> None:
        """Serve the write turn's seconds (SQLite), read by ``read`` when scraped, and
        the batches run again unit by unit (``runs_again``)."""
        WriteTurn(self.registry, read, runs_again)

    def handled(self, action: str, result: str, seconds: float) -> None:
        """One station CALL handled: its time and its result."""
        self.calls.handled(action, result, seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)


def worker_socket(folder: str, k: int) -> Path:
    """Where worker ``k`` answers its metrics (``csms serve --workers``)."""
    return Path(folder) / f"worker-{k}.sock"


async def serve_worker_metrics(folder: str, k: int,
                               render: Callable[[], bytes]) -> asyncio.Server:
    """Answer every connection to :func:`worker_socket` with ``render()`` (this process's
    metrics, as text), then close it. A socket file left by this worker's previous life
    (killed) is replaced."""
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            writer.write(render())
            await writer.drain()
        except OSError:
            pass  # worker 0 gave up waiting
        finally:
            writer.close()

    return await asyncio.start_unix_server(answer, path=str(worker_socket(folder, k)))


async def read_worker_metrics(folder: str, count: int,
                              timeout: float = WORKER_METRICS_TIMEOUT) -> list[str | None]:
    """The metrics of workers 1 to ``count - 1``, each as text, or None for one that did
    not answer within ``timeout`` (stopped, starting again after a crash)."""
    async def one(k: int) -> str | None:
        writer = None
        try:
            async with asyncio.timeout(timeout):
                reader, writer = await asyncio.open_unix_connection(
                    str(worker_socket(folder, k)))
                return (await reader.read()).decode()
        except (OSError, TimeoutError, UnicodeDecodeError):
            return None
        finally:
            if writer is not None:
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()

    return list(await asyncio.gather(*(one(k) for k in range(1, count))))


class _Families:
    """A collector of families made beforehand."""

    def __init__(self, families: list[Metric]) -> None:
        self._families = families

    def collect(self) -> Iterator[Metric]:
        return iter(self._families)


def merge_workers(texts: Sequence[str | None]) -> bytes:
    """The metrics of a node of several worker processes, from ``texts[k]``, worker
    ``k``'s (worker 0's first; None: a worker that did not answer). Each family of a
    process has its samples with a ``worker`` label (counters start again from zero when
    a worker does: labelled apart, Prometheus's rates see a reset, not a fall); the
    :data:`NODE_WIDE` ones are worker 0's, without it. ``voltledger_workers`` and
    ``voltledger_workers_scraped`` say how many workers the node has and how many this
    scrape holds."""
    merged: dict[str, Metric] = {}
    for k, text in enumerate(texts):
        if text is None:
            continue
        for family in text_string_to_metric_families(text):
            node_wide = family.name in NODE_WIDE
            if node_wide and k != 0:
                continue
            into = merged.get(family.name)
            if into is None:
                into = merged[family.name] = Metric(family.name, family.documentation,
                                                    family.type, family.unit)
            worker = str(k)
            into.samples.extend(
                s if node_wide else s._replace(labels={**s.labels, "worker": worker})
                for s in family.samples)
    families = list(merged.values())
    families.append(GaugeMetricFamily(
        "voltledger_workers", "Worker processes of this node (csms serve --workers)",
        value=len(texts)))
    families.append(GaugeMetricFamily(
        "voltledger_workers_scraped",
        "Worker processes whose metrics this scrape holds (the others did not answer)",
        value=sum(text is not None for text in texts)))
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Families(families))
    return generate_latest(registry)
