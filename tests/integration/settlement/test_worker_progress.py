"""What ``SettlementWorker.run_once`` tells its progress callback (``csms settle run``
shows it on a terminal): chunks cut, sessions settled, batches waiting for their
confirmations; with the real worker, a real SQLite file and the in-process chain."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from settlement.chain import Chain
from settlement.worker import RunProgress, SettlementWorker

from .conftest import add_sessions


async def test_run_once_tells_how_far_it_is(repo: Any, memory_chain: Chain) -> None:
    await add_sessions(repo, 3)
    worker = SettlementWorker(repo, memory_chain, batch_size=2, confirmations=3)
    told: list[RunProgress] = []
    tester = memory_chain.w3.provider.ethereum_tester  # type: ignore[attr-defined]

    def progress(done: RunProgress) -> None:
        told.append(replace(done))
        if done.waiting:  # the chain moves on: a block for the confirmations awaited
            tester.mine_blocks()

    summary = await worker.run_once(timeout=60, progress=progress)
    assert summary.batches_created == 2 and summary.sessions_batched == 3
    cuts = [(p.chunks_cut, p.sessions_cut) for p in told]
    assert (1, 2) in cuts and cuts[-1] == (2, 3), cuts
    assert any(p.waiting for p in told), told  # included, waiting for confirmations
    assert told[-1].sessions_settled == 3 and told[-1].waiting == 0, told[-1]
    settled = [p.sessions_settled for p in told]
    assert settled == sorted(settled), settled


async def test_no_progress_is_asked_of_a_run_without_a_listener(repo: Any,
                                                                  memory_chain: Chain) -> None:
    await add_sessions(repo, 2)
    worker = SettlementWorker(repo, memory_chain)
    summary = await worker.run_once()
    assert summary.sessions_batched == 2
    assert worker._progress == RunProgress()  # nothing counted without a listener
