"""Which asyncio event loop ``csms serve`` runs on.

``auto`` (the default) takes uvloop where it is installed (a dependency except on
Windows, where it does not exist) and the standard loop otherwise. ``uvloop`` (libuv)
runs the same server, every connection guard included (the transport, security and
server tests run on both loops): it executes 5.8% fewer instructions a 1.6 message and
4.5% fewer a 2.0.1 one, with the same memory per connection, plain and over TLS
(docs/benchmarks.md, "uvloop by default"). ``asyncio`` is the standard selector loop.
"""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import Callable

from csms.config import EVENT_LOOPS

__all__ = ["EVENT_LOOPS", "loop_factory"]


def loop_factory(choice: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The factory of the loop for ``choice`` (None: asyncio's default). ``uvloop``
    when it is not installed raises :class:`RuntimeError`, a one-line message."""
    if choice not in EVENT_LOOPS:
        raise ValueError(f"event_loop must be one of {', '.join(EVENT_LOOPS)}: {choice!r}")
    if choice == "asyncio":
        return None
    try:
        uvloop = importlib.import_module("uvloop")
    except ImportError:
        if choice == "uvloop":
            raise RuntimeError("event_loop uvloop: the uvloop package is not installed"
                               " (pip install uvloop, or choose auto or asyncio)") from None
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory
