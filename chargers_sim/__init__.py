"""Simulated charging stations (OCPP 1.6-J and 2.0.1) and a load generator.

Imports only :mod:`csms.protocol` and the OCPP-J connection loop :mod:`csms.link`
from the central system.
"""

from __future__ import annotations

from chargers_sim.fleet import Fleet, FleetSummary
from chargers_sim.station import (
    CallRejected,
    CompletedSession,
    ConnectFailed,
    Station,
    StationRefused,
    Unreachable,
)
from chargers_sim.transactions import StartRefused

__all__ = ["CallRejected", "CompletedSession", "ConnectFailed", "Fleet", "FleetSummary",
           "StartRefused", "Station", "StationRefused", "Unreachable"]
