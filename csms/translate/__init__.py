"""OCPP payloads <-> domain/service calls, one module per version."""

from __future__ import annotations

from collections.abc import Mapping

from csms.protocol import OcppVersion
from csms.translate import v16, v201
from csms.translate.common import Handler

__all__ = ["Handler", "routes_for"]


# The one place that picks the module of a version.
_ROUTES: dict[OcppVersion, Mapping[str, Handler]] = {
    OcppVersion.V16: v16.ROUTES, OcppVersion.V201: v201.ROUTES,
}


def routes_for(version: OcppVersion) -> Mapping[str, Handler]:
    return _ROUTES[version]
