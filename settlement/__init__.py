"""Settlement: Merkle batches of completed sessions, anchored on an EVM chain, and receipts."""

from __future__ import annotations
