"""How often a repeated warning is logged: the first time and every thousandth after it.

Whoever makes a warning repeat (a station over its quota, strangers on the broker, a
flood of connections) would otherwise decide how fast the node's log grows; the count
itself is kept whole (metrics, ``dropped`` counters), only its log lines are thinned.
Pure: the caller keeps the count.
"""

from __future__ import annotations

__all__ = ["LOG_EVERY", "worth_logging"]

LOG_EVERY = 1000


def worth_logging(count: int) -> bool:
    """Whether the ``count``-th occurrence (1 for the first) of a warning is logged."""
    return count == 1 or count % LOG_EVERY == 0
