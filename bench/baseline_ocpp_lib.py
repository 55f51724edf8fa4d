"""The baseline central system: written the way the ``ocpp`` library's own example is.

``ocpp.v16.ChargePoint`` / ``ocpp.v201.ChargePoint`` subclasses with ``@on``
handlers, one ``start()`` loop per connection, the library's default schema
validation (jsonschema in a thread pool), no persistence at all. It answers
what the load generator sends; it is what the benchmarks compare against.

    python -m bench.baseline_ocpp_lib --port 9100
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import logging
import os
from datetime import UTC, datetime
from typing import Any

import websockets
from ocpp.routing import on
from ocpp.v16 import ChargePoint as ChargePoint16
from ocpp.v16 import call_result as result16
from ocpp.v16.enums import AuthorizationStatus, RegistrationStatus
from ocpp.v201 import ChargePoint as ChargePoint201
from ocpp.v201 import call_result as result201

__all__ = ["main", "serve"]

# The interval the baseline gives in BootNotification answers: the benchmarks set it to
# the one they give voltledger (same variable), so both see the same heartbeat load.
HEARTBEAT_INTERVAL = int(os.environ.get("CSMS_HEARTBEAT_INTERVAL", "300"))

_txids = itertools.count(1)


def _now() -> str:
    return datetime.now(UTC).isoformat()


class Baseline16(ChargePoint16):
    @on("BootNotification")
    def on_boot(self, **kwargs: Any) -> Any:
        return result16.BootNotification(current_time=_now(), interval=HEARTBEAT_INTERVAL,
                                         status=RegistrationStatus.accepted)

    @on("Heartbeat")
    def on_heartbeat(self, **kwargs: Any) -> Any:
        return result16.Heartbeat(current_time=_now())

    @on("StatusNotification")
    def on_status(self, **kwargs: Any) -> Any:
        return result16.StatusNotification()

    @on("Authorize")
    def on_authorize(self, **kwargs: Any) -> Any:
        return result16.Authorize(id_tag_info={"status": AuthorizationStatus.accepted})

    @on("StartTransaction")
    def on_start(self, **kwargs: Any) -> Any:
        return result16.StartTransaction(transaction_id=next(_txids),
                                         id_tag_info={"status": AuthorizationStatus.accepted})

    @on("StopTransaction")
    def on_stop(self, **kwargs: Any) -> Any:
        return result16.StopTransaction()

    @on("MeterValues")
    def on_meter_values(self, **kwargs: Any) -> Any:
        return result16.MeterValues()


class Baseline201(ChargePoint201):
    @on("BootNotification")
    def on_boot(self, **kwargs: Any) -> Any:
        return result201.BootNotification(current_time=_now(), interval=HEARTBEAT_INTERVAL,
                                          status="Accepted")

    @on("Heartbeat")
    def on_heartbeat(self, **kwargs: Any) -> Any:
        return result201.Heartbeat(current_time=_now())

    @on("StatusNotification")
    def on_status(self, **kwargs: Any) -> Any:
        return result201.StatusNotification()

    @on("Authorize")
    def on_authorize(self, **kwargs: Any) -> Any:
        return result201.Authorize(id_token_info={"status": "Accepted"})

    @on("TransactionEvent")
    def on_transaction_event(self, **kwargs: Any) -> Any:
        if kwargs.get("id_token"):
            return result201.TransactionEvent(id_token_info={"status": "Accepted"})
        return result201.TransactionEvent()

    @on("MeterValues")
    def on_meter_values(self, **kwargs: Any) -> Any:
        return result201.MeterValues()


async def on_connect(websocket: Any) -> None:
    station_id = websocket.request.path.strip("/").split("/")[-1]
    if websocket.subprotocol == "ocpp2.0.1":
        await Baseline201(station_id, websocket).start()
    else:
        await Baseline16(station_id, websocket).start()


async def serve(host: str, port: int, ready: asyncio.Event | None = None) -> None:
    async with websockets.serve(
        on_connect, host, port, subprotocols=["ocpp1.6", "ocpp2.0.1"],  # type: ignore[list-item]
    ):  # websockets' defaults, as in the library's example (keepalive pings every 20 s)
        if ready is not None:
            ready.set()
        await asyncio.Future()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9100)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args.host, args.port))


if __name__ == "__main__":
    main()
