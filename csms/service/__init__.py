"""Use cases of the central system: ingest what stations send, answer them."""

from __future__ import annotations
