"""The admin API's OpenAPI 3.1 document (served at ``/openapi.json``)."""

from __future__ import annotations

from typing import Any

from csms.translate.commands import COMMANDS

__all__ = ["openapi_document"]


def openapi_document() -> dict[str, Any]:
    bearer: list[dict[str, list[str]]] = [{"bearer": []}]
    ok = {"200": {"description": "OK", "content": {"application/json": {}}}}
    bad = {"400": {"description": "Unknown query parameter or unusable value"}}
    command_responses = {
        "200": {"description": "The station's answer"},
        "400": {"description": "Invalid arguments for this command or station"},
        "401": {"description": "Missing or wrong bearer token"},
        "404": {"description": "Unknown command"},
        "409": {"description": "Station not connected to this node"},
        "502": {"description": "Station answered with a CALLERROR"},
        "504": {"description": "Station did not answer in time"},
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "voltledger admin API", "version": "1"},
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
        "security": bearer,
        "paths": {
            "/health": {"get": {"security": [], "responses": ok}},
            "/metrics": {"get": {"description": "Prometheus text format", "responses": ok}},
            "/stations": {"get": {"responses": ok}},
            "/stations/{station_id}": {"get": {"responses": ok, "parameters": [
                {"name": "station_id", "in": "path", "required": True,
                 "schema": {"type": "string"}}]}},
            "/sessions": {"get": {"responses": {**ok, **bad}, "parameters": [
                {"name": "station", "in": "query", "schema": {"type": "string"}},
                {"name": "active", "in": "query", "schema": {"type": "boolean"}},
                {"name": "limit", "in": "query",
                 "schema": {"type": "integer", "minimum": 1, "maximum": 10000}}]}},
            "/sessions/{session_id}": {"get": {"responses": ok, "parameters": [
                {"name": "session_id", "in": "path", "required": True,
                 "schema": {"type": "integer"}}]}},
            "/audit": {"get": {"responses": {**ok, **bad}, "parameters": [
                {"name": "limit", "in": "query",
                 "schema": {"type": "integer", "minimum": 1, "maximum": 10000}}]}},
            "/stations/{station_id}/commands/{command}": {"post": {
                "description": "Send a command to a connected station and wait for its answer."
                               " Commands: " + ", ".join(sorted(COMMANDS)),
                "parameters": [
                    {"name": "station_id", "in": "path", "required": True,
                     "schema": {"type": "string"}},
                    {"name": "command", "in": "path", "required": True,
                     "schema": {"type": "string", "enum": sorted(COMMANDS)}}],
                "requestBody": {"content": {"application/json": {"schema": {"type": "object"}}}},
                "responses": command_responses,
            }},
        },
    }
