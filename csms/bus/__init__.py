"""The event bus: the outbox relay to MQTT."""

from __future__ import annotations
