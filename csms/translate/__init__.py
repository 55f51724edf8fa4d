"""OCPP payloads <-> domain/service calls, one module per version."""

from __future__ import annotations

from collections.abc import Mapping

from csms.protocol import OcppVersion
from csms.translate import v16, v201
from csms.translate.common import Handler

__all__ = ["Handler", "routes_for"]


def routes_for(version: OcppVersion) -> Mapping[str, Handler]:
    return v16.ROUTES if version is OcppVersion.V16 else v201.ROUTES
