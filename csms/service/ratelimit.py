"""Failed-login rate limiting (security profile 1-2 HTTP Basic auth). Pure; time is injected."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

__all__ = ["FailureLimiter"]


class FailureLimiter:
    """Refuse a key after ``limit`` failures within ``window`` seconds.

    Keys are remote addresses and station ids, so that neither one address
    guessing many stations' passwords nor many addresses guessing one station's
    get unlimited tries.
    """

    def __init__(
        self, limit: int = 5, window: float = 60.0,
        clock: Callable[[], float] = time.monotonic, max_keys: int = 100_000,
    ) -> None:
        self.limit = limit
        self.window = window
        self.clock = clock
        self.max_keys = max_keys
        self._failures: dict[str, deque[float]] = {}

    def _recent(self, key: str) -> deque[float] | None:
        q = self._failures.get(key)
        if q is None:
            return None
        cutoff = self.clock() - self.window
        while q and q[0] <= cutoff:
            q.popleft()
        if not q:
            del self._failures[key]
            return None
        return q

    def blocked(self, *keys: str) -> bool:
        return any((q := self._recent(k)) is not None and len(q) >= self.limit for k in keys)

    def failed(self, *keys: str) -> None:
        if len(self._failures) >= self.max_keys:
            # Bound memory under a flood of distinct keys: forget the oldest.
            self._failures.pop(next(iter(self._failures)))
        now = self.clock()
        for k in keys:
            self._failures.setdefault(k, deque()).append(now)

    def succeeded(self, *keys: str) -> None:
        for k in keys:
            self._failures.pop(k, None)
