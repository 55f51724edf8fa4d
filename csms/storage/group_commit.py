"""Group commit, shared by the SQLite and PostgreSQL adapters.

Theory of operation. Units of work queue up. A committer task takes every queued unit
(at most ``max_batch``) and hands the batch to the engine's :meth:`GroupCommit._run_batch`,
which runs the units one after another inside one database transaction, each in its own
savepoint (a failing unit rolls back alone), and commits once. Only then are the callers'
futures resolved: nothing is acknowledged before it is durable, and one commit covers
every unit that arrived meanwhile. When the transaction itself fails (the engine raises
:class:`StorageError`), nothing of the batch is known to be durable, so every caller of
the batch gets the error and no station is acknowledged; stations retry.

Up to ``parallel`` committers run at once (PostgreSQL: each batch on its own pooled
connection; SQLite: one, its single write connection). What differs per engine (how a
transaction begins, savepoints, retries, how it commits) is the engine's ``_run_batch``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from csms.service.ports import StorageError, Tx

__all__ = ["Batch", "GroupCommit", "Outcomes"]

log = logging.getLogger("csms.storage")

T = TypeVar("T")
Batch = list[tuple[Callable[[Tx], Awaitable[Any]], asyncio.Future[Any]]]
# per unit: its future, whether it succeeded, its result or its exception
Outcomes = list[tuple[asyncio.Future[Any], bool, Any]]


class GroupCommit(ABC):
    """The queue of units and its committers; an engine supplies ``_run_batch``."""

    max_batch = 512
    parallel = 1
    committer_name = "committer"

    def __init__(self) -> None:
        self._queue: Batch = []
        self._committers: set[asyncio.Task[None]] = set()
        self._closed = False
        self.commits = 0
        self.units = 0

    @abstractmethod
    async def _run_batch(self, batch: Batch) -> Outcomes:
        """Run every unit of ``batch`` in one transaction and commit it; raise
        :class:`StorageError` when the transaction itself failed."""

    async def unit(self, fn: Callable[[Tx], Awaitable[T]]) -> T:
        if self._closed:
            raise StorageError("repository is closed")
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[T] = loop.create_future()
        self._queue.append((fn, fut))
        # A finished committer may still be in the set until its done-callback runs: count
        # the running ones only, or a unit could wait with no committer to take it.
        if sum(not t.done() for t in self._committers) < self.parallel:
            # Another committer when all running ones are busy: up to ``parallel``
            # batches in flight.
            task = loop.create_task(self._commit_loop(), name=self.committer_name)
            self._committers.add(task)
            task.add_done_callback(self._committers.discard)
        # The committer owns the work: a cancelled caller cancels only its future, and
        # the unit still runs and commits (the committer skips a done future). No
        # shield(): it costs a future and two callbacks per unit.
        return await fut

    async def unit_apart(self, fn: Callable[[Tx], Awaitable[T]]) -> T:
        """A unit committed apart from the others where the engine has row locks (see
        the port); here, like any unit."""
        return await self.unit(fn)

    def _take_more(self, batch: Batch) -> None:
        """Move queued units into ``batch``, up to ``max_batch`` (an engine whose batch
        had to wait before its transaction began)."""
        room = self.max_batch - len(batch)
        if room > 0 and self._queue:
            batch.extend(self._queue[:room])
            del self._queue[:room]

    async def _commit_loop(self) -> None:
        while self._queue:
            batch = self._queue[:self.max_batch]
            del self._queue[:self.max_batch]
            try:
                outcomes = await self._run_batch(batch)
            except StorageError as exc:
                self._fail(batch, exc)
                continue
            except Exception as exc:
                # A fault no engine foresaw (a driver's internal error, a bug): the batch
                # fails as a failed transaction does, and this committer goes on with the
                # units queued behind it. Ending here instead left them waiting for a
                # committer that only the next unit would start.
                log.error("! batch of %d units failed: %r", len(batch), exc, exc_info=exc)
                self._fail(batch, StorageError(f"batch failed: {exc!r}"))
                continue
            except BaseException:
                # cancelled (event loop shutting down): leave no caller waiting forever
                self._fail(batch, StorageError("repository shut down mid-batch"))
                raise
            self.commits += 1
            self.units += len(outcomes)
            for fut, ok, value in outcomes:
                if fut.done():
                    continue
                if ok:
                    fut.set_result(value)
                else:
                    fut.set_exception(value)

    @staticmethod
    def _fail(batch: Batch, exc: StorageError) -> None:
        for _, fut in batch:
            if not fut.done():
                fut.set_exception(exc)

    async def _finish_committers(self) -> None:
        """Refuse new units and wait for the queued ones to be committed."""
        self._closed = True
        for task in list(self._committers):
            with contextlib.suppress(Exception):
                await task
