"""The settlement worker's clock against the chain's: a signed app session is paid only
while its signature holds, by the chain's time (the contract's block timestamp)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from settlement import wallet
from settlement import worker as worker_module
from settlement.chain import Chain
from settlement.worker import SettlementWorker
from support.chainkit import Kit

from .conftest import add_sessions

# add_sessions: session 1 has 700 Wh at 0.40 EUR/kWh
PRICE_1 = 28


async def test_a_worker_whose_clock_runs_behind_still_settles_an_app_session_in_time(
    repo: Any, memory_chain: Chain, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An app session completes with 10 minutes left on its driver's signature. The node
    running the worker has a clock 10 minutes behind: by it the session was queued 10
    minutes in the future (the queue time is the charging node's) and the signature has
    20 minutes left, beyond the wait and the 15-minute margin, so it waits for a fuller
    chunk: 11 minutes, by which time the chain refuses the expired signature and the host
    is never paid. When a signature expires is the chain's time: the chunk should be cut
    at once."""
    kit = Kit(memory_chain)
    driver, _ = kit.driver(allow_cards=False)
    [sid] = await add_sessions(repo, 1)
    station = memory_chain.register_station(22_000)

    async def prepare(tx: Any) -> None:
        st = await tx.get_station("CP1")
        st.chain_station = station
        await tx.update_station(st)
        auth = wallet.authorize(memory_chain, driver, station, max_per_kwh=40,
                                max_amount=1_000, nonce=1, expiry=kit.now() + 600)
        aid = await tx.add_authorization(driver.address, "CP1", "TAG0", auth.as_json(), 1,
                                         auth.expiry, datetime.now(UTC))
        await tx.remote_start_accepted(aid, kit.now() + 60)
        assert await tx.bind_authorization("CP1", "TAG0", sid, kit.now()) is not None
        # started half an hour ago (the driver's notice is days away), completed now, as
        # the charging node queues it
        session = await tx.get_session(sid)
        session.stopped_at = datetime.now(UTC)
        session.started_at = session.stopped_at - timedelta(minutes=30)
        await tx.update_session(session)
        await tx.dequeue_settlement(sid)
        await tx.enqueue_settlement(sid, datetime.now(UTC))

    await repo.unit(prepare)
    behind = {"by": timedelta(minutes=10)}
    monkeypatch.setattr(worker_module, "_now", lambda: datetime.now(UTC) - behind["by"])
    worker = SettlementWorker(repo, memory_chain)  # waits up to 60 s for a fuller chunk

    async def a_pass() -> None:  # what run_forever does each second
        await worker.advance()
        await worker.build_batches()
        await worker.advance()

    await a_pass()
    # 11 minutes on, for the chain and for the worker's clock
    kit.advance(660)
    behind["by"] -= timedelta(seconds=660)
    await a_pass()

    async def state(tx: Any) -> Any:
        return await tx.session_settlement(sid)

    settled = await repo.read(state)
    assert (settled["settlement_state"], settled["unpaid_reason"]) == ("paid", None)
    assert kit.balance(driver) == 10**6 - PRICE_1
