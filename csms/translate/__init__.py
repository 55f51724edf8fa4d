"""OCPP payloads <-> domain/service calls, one module per version."""

from __future__ import annotations

from collections.abc import Mapping

from csms.protocol import OcppVersion
from csms.translate import v16, v201
from csms.translate.common import BootGate, Handler

__all__ = ["BootGate", "Handler", "boot_gate_for", "routes_for"]


# The one place that picks the module of a version.
_ROUTES: dict[OcppVersion, Mapping[str, Handler]] = {
    OcppVersion.V16: v16.ROUTES, OcppVersion.V201: v201.ROUTES,
}
_BOOT_GATES: dict[OcppVersion, BootGate] = {
    OcppVersion.V16: v16.BOOT_GATE, OcppVersion.V201: v201.BOOT_GATE,
}


def routes_for(version: OcppVersion) -> Mapping[str, Handler]:
    return _ROUTES[version]


def boot_gate_for(version: OcppVersion) -> BootGate:
    """What a station of ``version`` may send while its boot is not Accepted."""
    return _BOOT_GATES[version]
