"""The 1.6 FinalCost a marked station shows its driver by itself is the price the driver
pays: the receipt's, after settlement on a chain (the in-process one)."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from decimal import Decimal
from typing import Any

from chargers_sim import Station
from csms.domain.tariff import Tariff
from csms.service.ports import Tx
from settlement.receipts import load_receipt
from support import LONG_AGO, RunningServer


async def test_final_cost_is_the_receipts_price(csms_server: RunningServer) -> None:
    await csms_server.stop()
    csms_server.settings = replace(csms_server.settings, chain="memory", max_wait=0.0)
    await csms_server.start()

    async def tariff(tx: Tx) -> None:  # energy, time and a session fee
        await tx.add_tariff(Tariff("*", Decimal("0.39"), "EUR", 2, per_minute=Decimal("0.05"),
                                   session_fee=Decimal("0.50"), valid_from=LONG_AGO))

    await csms_server.repo.unit(tariff)
    await csms_server.add_station("FC1")
    await csms_server.add_tag("SIMTAG")
    await csms_server.central.service.set_station_option("FC1", "running_cost", "on")
    st = Station(csms_server.url, "FC1", "1.6", seed=11, meter_interval=0.05, call_timeout=3,
                 retry_interval=0.1)
    st.config["CustomDisplayCostAndPrice"] = "true"
    await st.start()
    await st.start_session(1, "SIMTAG")
    await asyncio.sleep(0.3)  # some energy (nothing asserted on time)
    await st.stop_session(1)

    def final() -> list[dict[str, Any]]:
        return [json.loads(p["data"]) for a, p in st.received_calls
                if a == "DataTransfer" and p.get("messageId") == "FinalCost"]

    async def settled(tx: Tx) -> Any:
        return await tx.fetchone("SELECT s.id FROM sessions s JOIN batch_items bi"
                                 " ON bi.session_id = s.id JOIN batches b ON b.id = bi.batch_id"
                                 " WHERE b.state = 'finalized'")

    async with asyncio.timeout(30):
        while not final() or await csms_server.repo.read(settled) is None:
            await asyncio.sleep(0.05)
    [shown] = final()
    [s] = await csms_server.sessions("FC1")
    receipt = await load_receipt(csms_server.repo, s["id"], None)
    assert receipt["record"]["price_minor"] > 50  # more than the fee alone
    assert Decimal(str(shown["cost"])) == Decimal(receipt["record"]["price_minor"]) / 100
    await st.close()
