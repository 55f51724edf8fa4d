"""The charging domain: stations, connectors, sessions, meter samples. Stdlib only."""

from __future__ import annotations
