"""A simulated charging station that behaves like firmware, for OCPP 1.6-J and 2.0.1.

The station is built in layers, one module each:

* :mod:`chargers_sim.connection` -- connect (with backoff and fallback addresses),
  boot, heartbeat, status notifications, and its CALLs over the shared
  :class:`~csms.link.Link`;
* :mod:`chargers_sim.transactions` -- charging sessions and the transaction message
  queue that survives disconnections;
* :mod:`chargers_sim.faults` -- faults a test injects (dropped network, offline,
  raw frames, repeated message ids);
* :mod:`chargers_sim.handlers` -- answers to the central system's CALLs;
* :mod:`chargers_sim.driver` -- more answers: the authorization cache, profiles and
  composite schedules, display messages, costs, every triggered message;
* :mod:`chargers_sim.pnc_v16` -- ISO 15118 Plug & Charge over DataTransfer (1.6, ``pnc``);
* :mod:`chargers_sim.security_events` -- the security events it reports;
* :mod:`chargers_sim.limits` -- external charging limits (an EMS, the grid operator);
* :mod:`chargers_sim.pnc_v201` -- ISO 15118 Plug & Charge with 2.0.1's messages: the EV's
  contract certificate, its charging needs and schedule (``pnc``).

What differs between 1.6 and 2.0.1 is in :mod:`chargers_sim.v16` and
:mod:`chargers_sim.v201` (same function names), picked once in
:mod:`chargers_sim.versions`.
"""

from __future__ import annotations

from chargers_sim.connection import (
    CallRejected,
    ConnectFailed,
    StationRefused,
    Unreachable,
    backoff_delay,
)
from chargers_sim.pnc_v201 import PlugAndCharge201
from chargers_sim.session import CompletedSession

__all__ = [
    "CallRejected", "CompletedSession", "ConnectFailed", "Station", "StationRefused",
    "Unreachable", "backoff_delay",
]


class Station(PlugAndCharge201):
    """One simulated station (see the module docstring)."""
