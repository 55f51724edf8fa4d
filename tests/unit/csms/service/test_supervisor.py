"""The supervisor's state table: up -> down (failed, backoff) -> up ...; stopped at the end."""

from __future__ import annotations

import asyncio
import logging

import pytest

from csms.service.supervisor import Supervisor, TaskState


class Flaky:
    """A task that fails ``failures`` times, then runs until stopped."""

    def __init__(self, failures: int, error: type[Exception] = ConnectionError) -> None:
        self.failures = failures
        self.error = error
        self.starts = 0
        self.running = asyncio.Event()

    async def __call__(self, stop: asyncio.Event) -> None:
        self.starts += 1
        if self.starts <= self.failures:
            raise self.error(f"down #{self.starts}")
        self.running.set()
        await stop.wait()


async def test_restarts_with_backoff_until_it_runs() -> None:
    seen: list[tuple[str, str]] = []
    sup = Supervisor(backoff_initial=0.01, backoff_max=0.04, grace=0.01,
                     on_change=lambda s: seen.append((s.name, s.state)))
    task = Flaky(4)
    sup.start("relay", task, (ConnectionError,))
    await asyncio.wait_for(task.running.wait(), 5)
    await asyncio.sleep(0.05)
    state = sup.states()["relay"]
    assert (state.state, state.restarts, state.failures) == ("up", 4, 4)
    assert state.last_error == "ConnectionError: down #4"
    assert sup.healthy()
    await sup.close()
    assert sup.states()["relay"].state == "stopped"
    # down from the first failure until a restart survived; no flicker in between
    assert [state for _, state in seen] == ["up", "down", "up", "stopped"]


async def test_down_while_waiting_to_restart() -> None:
    sup = Supervisor(backoff_initial=10, grace=0.01)
    sup.start("node-beat", Flaky(1), (ConnectionError,))
    await asyncio.sleep(0.05)
    assert sup.states()["node-beat"].state == "down"
    assert not sup.healthy()
    await sup.close()  # stopping does not wait for the backoff


async def test_unexpected_errors_are_logged_with_their_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sup = Supervisor(backoff_initial=0.01, grace=0.01)
    task = Flaky(1, KeyError)
    sup.start("worker", task, (ConnectionError,))
    await asyncio.wait_for(task.running.wait(), 5)
    await sup.close()
    [record] = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert record.exc_info is not None and "worker" in record.getMessage()


async def test_a_task_that_returns_on_its_own_is_started_again() -> None:
    calls = 0

    async def quits(stop: asyncio.Event) -> None:
        nonlocal calls
        calls += 1
        if calls > 2:
            await stop.wait()

    sup = Supervisor(backoff_initial=0.01, grace=0.01)
    sup.start("bus", quits)
    await asyncio.sleep(0.2)
    assert calls == 3 and sup.states()["bus"].state == "up"
    await sup.close()


async def test_reporter_marks_a_self_retrying_task() -> None:
    sup = Supervisor()
    report = sup.reporter("settlement")
    stepped = asyncio.Event()

    async def worker(stop: asyncio.Event) -> None:
        report(ConnectionRefusedError("database down"))
        stepped.set()
        await stop.wait()

    sup.start("settlement", worker)
    await stepped.wait()
    state: TaskState = sup.states()["settlement"]
    assert state.state == "down" and "database down" in (state.last_error or "")
    report(None)
    assert sup.states()["settlement"].state == "up"
    await sup.close()
