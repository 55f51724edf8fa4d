"""The admin HTTP API inside ``csms serve``: live commands, status, metrics.

- :mod:`csms.admin.api`: HTTP routing, the bearer token, query parsing, read endpoints;
- :mod:`csms.admin.operator`: the operator's use cases (commands to stations);
- :mod:`csms.admin.openapi`: the OpenAPI document.
"""

from __future__ import annotations

from csms.admin.api import AdminApi, AdminNotPublic, is_loopback, load_or_create_token
from csms.admin.openapi import openapi_document
from csms.admin.operator import COMMAND_RESULTS, OperatorCommands, command_labels

__all__ = [
    "COMMAND_RESULTS", "AdminApi", "AdminNotPublic", "OperatorCommands", "command_labels",
    "is_loopback", "load_or_create_token", "openapi_document",
]
