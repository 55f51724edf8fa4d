"""OCPP versions and WebSocket subprotocol negotiation."""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence

__all__ = ["OcppVersion", "choose_subprotocol"]


class OcppVersion(enum.StrEnum):
    """The OCPP-J versions spoken, named by their WebSocket subprotocol."""

    V16 = "ocpp1.6"
    V201 = "ocpp2.0.1"

    @property
    def short(self) -> str:
        return self.value.removeprefix("ocpp")

    @classmethod
    def parse(cls, text: str) -> OcppVersion:
        """Accept "1.6", "ocpp1.6", "2.0.1" or "ocpp2.0.1"."""
        t = text.strip().lower()
        if not t.startswith("ocpp"):
            t = "ocpp" + t
        try:
            return cls(t)
        except ValueError:
            raise ValueError(f"unknown OCPP version {text!r} (use 1.6 or 2.0.1)") from None


def choose_subprotocol(
    offered: Sequence[str], supported: Iterable[OcppVersion] = tuple(OcppVersion)
) -> OcppVersion | None:
    """Pick the first subprotocol in the *client's* order of preference that we support.

    OCPP-J 1.6 §4.1.2 / 2.0.1 §3.1.2: the client lists the versions it supports in
    its preferred order; with no version in common the server completes the
    handshake without the header and closes.
    """
    ours = {v.value: v for v in supported}
    for name in offered:
        v = ours.get(name.strip())
        if v is not None:
            return v
    return None
