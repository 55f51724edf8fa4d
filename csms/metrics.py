"""Prometheus metrics of one node, served as text at ``/metrics`` on the admin port."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

__all__ = ["Metrics"]


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._handled: dict[tuple[str, str], tuple[Any, Any]] = {}
        r = self.registry
        self.connected = Gauge(
            "voltledger_connected_stations", "Stations connected to this node", registry=r
        )
        self.messages = Counter(
            "voltledger_messages", "OCPP CALLs received, by action and result",
            ["action", "result"], registry=r,
        )
        self.handler_seconds = Histogram(
            "voltledger_handler_seconds", "Time to handle a station's CALL, commit included",
            ["action"], registry=r,
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
        )
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
        self.handshakes_pending = Gauge(
            "voltledger_handshakes_pending", "Connections in their TLS or HTTP handshake",
            ["listener"], registry=r,
        )
        self.handshakes_queued = Counter(
            "voltledger_handshakes_queued",
            "Connections that waited, unread, for a handshake slot", ["listener"], registry=r,
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
        self.task_up = Gauge(
            "voltledger_task_up", "1 while a background task runs, 0 while it waits to restart",
            ["task"], registry=r,
        )
        self.task_restarts = Counter(
            "voltledger_task_restarts", "Restarts of background tasks after a failure",
            ["task"], registry=r,
        )

    def handled(self, action: str, result: str, seconds: float) -> None:
        """One station CALL handled: its time and its result. The labelled children are
        kept per (action, result): ``labels()`` takes a lock and builds a key each time,
        and this runs for every message."""
        key = (action, result)
        pair = self._handled.get(key)
        if pair is None:
            pair = self._handled[key] = (self.handler_seconds.labels(action),
                                         self.messages.labels(action, result))
        pair[0].observe(seconds)
        pair[1].inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
