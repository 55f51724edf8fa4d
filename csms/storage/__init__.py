"""Storage adapters behind :class:`csms.service.ports.Repository`."""

from __future__ import annotations

from csms.storage.open import open_repository

__all__ = ["open_repository"]
