"""Background tasks kept alive: restarted with backoff, their state visible while down.

Theory of operation. Each background task of a node (the outbox relay, the
command bus, the settlement worker, node beats, the last-seen writer) is a
coroutine ``run(stop)`` owned by one :class:`Supervisor`. When it raises, the
failure is logged, the task is marked ``down`` with the error, and it is started
again after a backoff (0.5 s doubling to ``backoff_max``, with jitter, reset
after it ran well for a minute): a database or broker outage ends by itself,
without restarting the process. A task that keeps its own retry loop (the
settlement worker) reports each step through :meth:`Supervisor.reporter` and is
``down`` while its steps fail. ``/health`` and ``/metrics`` read :meth:`states`.

States of a task: ``up`` (running, last step fine) -> ``down`` (failed, waiting
to run again, or running with failing steps) -> ``up`` ...; ``stopped`` once
the node stops it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

__all__ = ["Supervisor", "TaskState"]

log = logging.getLogger("csms.tasks")

Runner = Callable[[asyncio.Event], Awaitable[None]]


@dataclass
class TaskState:
    name: str
    state: str = "up"  # up | down | stopped
    restarts: int = 0
    failures: int = 0
    last_error: str | None = None
    since: str = ""

    def as_json(self) -> dict[str, object]:
        return {"state": self.state, "restarts": self.restarts, "failures": self.failures,
                "last_error": self.last_error, "since": self.since}


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class Supervisor:
    def __init__(
        self, *, backoff_initial: float = 0.5, backoff_max: float = 10.0,
        healthy_after: float = 60.0, grace: float = 1.0,
        on_change: Callable[[TaskState], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.healthy_after = healthy_after
        self.grace = grace
        self.on_change = on_change
        self.clock = clock
        self.stop = asyncio.Event()
        self._states: dict[str, TaskState] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}

    # -- state -------------------------------------------------------------------------
    def _set(self, name: str, state: str, error: BaseException | None = None) -> None:
        s = self._states[name]
        changed = s.state != state
        s.state = state
        if error is not None:
            s.failures += 1
            s.last_error = f"{type(error).__name__}: {error}"[:300]
        if changed:
            s.since = _now()
            if self.on_change is not None:
                self.on_change(s)

    def states(self) -> dict[str, TaskState]:
        return dict(self._states)

    def healthy(self) -> bool:
        return all(s.state != "down" for s in self._states.values())

    def reporter(self, name: str) -> Callable[[BaseException | None], None]:
        """For a task with its own retry loop: call with the error of a failed step,
        or None after a good one."""

        def report(error: BaseException | None) -> None:
            if name in self._states and not self.stop.is_set():
                self._set(name, "down" if error is not None else "up", error)

        return report

    # -- running -----------------------------------------------------------------------
    def start(self, name: str, run: Runner,
              outages: tuple[type[BaseException], ...] = ()) -> None:
        """Run ``run(stop)`` until :meth:`close`; ``outages`` are errors expected while a
        dependency is down (logged as one line, not with a traceback)."""
        if name in self._tasks:
            raise ValueError(f"task {name} is already running")
        self._states[name] = TaskState(name, since=_now())
        if self.on_change is not None:
            self.on_change(self._states[name])
        task = asyncio.get_running_loop().create_task(self._keep(name, run, outages),
                                                      name=name)
        self._tasks[name] = task

    async def _keep(self, name: str, run: Runner,
                    outages: tuple[type[BaseException], ...]) -> None:
        backoff = self.backoff_initial
        restarted = False
        while not self.stop.is_set():
            started = self.clock()
            runner = asyncio.ensure_future(run(self.stop))
            try:
                if restarted:
                    # up again once it survived a moment (or said so through a reporter)
                    done, _ = await asyncio.wait({runner}, timeout=self.grace)
                    if not done:
                        self._set(name, "up")
                await runner
                if self.stop.is_set():
                    break
                raise RuntimeError("returned without being stopped")
            except asyncio.CancelledError:
                runner.cancel()
                raise
            except Exception as exc:
                if self.stop.is_set():
                    break
                if self.clock() - started >= self.healthy_after:
                    backoff = self.backoff_initial  # it ran well for a while
                delay = backoff * random.uniform(0.8, 1.2)
                if isinstance(exc, outages):
                    log.warning("! background task %s down (%s: %s); restarting in %.1f s",
                                name, type(exc).__name__, exc, delay)
                else:
                    log.exception("! background task %s failed; restarting in %.1f s",
                                  name, delay)
                self._set(name, "down", exc)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stop.wait(), delay)
                backoff = min(backoff * 2, self.backoff_max)
                if not self.stop.is_set():
                    self._states[name].restarts += 1
                    restarted = True
        self._set(name, "stopped")

    async def close(self, timeout: float = 10.0) -> None:
        """Stop every task: ask them (``stop``), wait, then cancel what is left."""
        self.stop.set()
        for name, task in list(self._tasks.items()):
            try:
                await asyncio.wait_for(task, timeout)
            except TimeoutError:
                log.error("! background task %s did not stop in %g s; cancelled", name,
                          timeout)
            except Exception:  # never raised by _keep; logged if it ever is
                log.exception("! background task %s failed while stopping", name)
        self._tasks.clear()
