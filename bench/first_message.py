"""The first message of each action after a restart, against the same action warm.

A restarted worker compiles what it needs on first use (the schema checks above all), its
event loop blocked meanwhile: when thousands of stations reconnect after a deploy, every
station in that worker waits for it. For each OCPP version, a fresh ``csms serve`` and one
station: the first answer of each action, then the median of the next ``--repeat`` of the
same action (the baseline, in the same run). ``ratio`` is the worst first/warm over the
actions; ``--against`` runs the same against another checkout's ``csms``, for a before
and after.

    python -m bench.first_message
    python -m bench.first_message --against /path/to/an/older/checkout
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from collections.abc import Callable
from typing import Any

import websockets

from bench.common import server
from bench.loadgen import now_text

__all__ = ["main", "measure"]

Payload = Callable[[int], dict[str, Any]]


def _actions(ocpp: str) -> list[tuple[str, Payload]]:
    """The messages a reconnecting station sends, in its order; a payload of call ``n``."""
    status: Payload
    if ocpp == "1.6":
        status = lambda n: {"connectorId": 1, "errorCode": "NoError",  # noqa: E731
                            "status": "Available", "timestamp": now_text()}
        return [
            ("BootNotification", lambda n: {"chargePointVendor": "V",
                                            "chargePointModel": "M"}),
            ("StatusNotification", status),
            ("Heartbeat", lambda n: {}),
            ("Authorize", lambda n: {"idTag": "TAG1"}),
            ("StartTransaction", lambda n: {"connectorId": 1, "idTag": "TAG1",
                                            "meterStart": 1000, "timestamp": now_text()}),
            ("MeterValues", lambda n: {"connectorId": 1, "transactionId": 1, "meterValue": [
                {"timestamp": now_text(), "sampledValue": [
                    {"value": str(1000 + n), "measurand": "Energy.Active.Import.Register",
                     "unit": "Wh"}]}]}),
            ("StopTransaction", lambda n: {"transactionId": 1, "meterStop": 2000,
                                           "timestamp": now_text()}),
        ]

    def event(kind: str) -> Payload:
        return lambda n: {
            "eventType": kind, "timestamp": now_text(), "triggerReason": "MeterValuePeriodic",
            "seqNo": n if kind == "Updated" else 0, "transactionInfo": {"transactionId": "T1"},
            "evse": {"id": 1, "connectorId": 1},
            "meterValue": [{"timestamp": now_text(), "sampledValue": [
                {"value": 1000 + n, "measurand": "Energy.Active.Import.Register"}]}]}

    status = lambda n: {"timestamp": now_text(), "connectorStatus": "Available",  # noqa: E731
                        "evseId": 1, "connectorId": 1}
    return [
        ("BootNotification", lambda n: {"reason": "PowerUp", "chargingStation": {
            "model": "M", "vendorName": "V"}}),
        ("StatusNotification", status),
        ("Heartbeat", lambda n: {}),
        ("Authorize", lambda n: {"idToken": {"idToken": "TAG1", "type": "ISO14443"}}),
        ("TransactionEvent", event("Started")),
        ("TransactionEvent.Updated", event("Updated")),
    ]


async def _station(port: int, ocpp: str, repeat: int) -> dict[str, dict[str, float]]:
    sub = "ocpp1.6" if ocpp == "1.6" else "ocpp2.0.1"
    figures: dict[str, dict[str, float]] = {}
    async with websockets.connect(f"ws://127.0.0.1:{port}/ocpp/FIRST{sub[4:]}",
                                  subprotocols=[websockets.Subprotocol(sub)]) as ws:
        n = 0
        for name, payload in _actions(ocpp):
            action = name.split(".")[0]
            times = []
            for k in range(1 + repeat):
                n += 1
                started = time.perf_counter()
                await ws.send(json.dumps([2, str(n), action, payload(k + 1)]))
                answer = json.loads(await ws.recv())
                while answer[0] == 2:  # the server's own call (after a boot): declined
                    await ws.send(json.dumps([4, answer[1], "NotSupported", "", {}]))
                    answer = json.loads(await ws.recv())
                times.append((time.perf_counter() - started) * 1e3)
                if answer[0] != 3:
                    raise RuntimeError(f"{action}: {answer}")
            warm = statistics.median(times[1:])
            figures[name] = {"first_ms": round(times[0], 2), "warm_ms": round(warm, 3),
                             "first_over_warm": round(times[0] / warm, 1)}
    return figures


def measure(repeat: int = 20, against: str | None = None) -> dict[str, Any]:
    result: dict[str, Any] = {"benchmark": "first_message", "repeat": repeat}
    for label, cwd in (("voltledger", None), *((("against", against),) if against else ())):
        by_version = {}
        for ocpp in ("1.6", "2.0.1"):
            with server("voltledger", cwd=cwd) as (port, _proc):
                time.sleep(0.3)  # the worker's start, not its first message
                by_version[ocpp] = asyncio.run(_station(port, ocpp, repeat))
        result[label] = by_version

    def worst(figures: dict[str, Any], key: str) -> float:
        return float(max(a[key] for v in figures.values() for a in v.values()))

    result["first_ms_max"] = worst(result["voltledger"], "first_ms")
    result["ratio"] = worst(result["voltledger"], "first_over_warm")
    if against:
        result["against_first_ms_max"] = worst(result["against"], "first_ms")
        result["ratio_vs_against"] = round(
            result["first_ms_max"] / result["against_first_ms_max"], 3)
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=20,
                        help="warm messages of each action after the first")
    parser.add_argument("--against", default=None, help="another checkout to compare with")
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    print(json.dumps(measure(args.repeat, args.against)))


if __name__ == "__main__":
    main()
