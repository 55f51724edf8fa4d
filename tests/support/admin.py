"""Calling the admin API of a test server over real HTTP."""

from __future__ import annotations

from typing import Any

import aiohttp

from support import RunningServer

__all__ = ["api"]


async def api(server: RunningServer, method: str, path: str, body: Any = None,
              token: str | None = "default") -> tuple[int, Any]:
    headers = {}
    if token is not None:
        headers["Authorization"] = f"Bearer {server.admin_token if token == 'default' else token}"
    async with aiohttp.ClientSession() as http, http.request(
        method, server.admin_url + path, json=body, headers=headers
    ) as response:
        if response.content_type == "application/json":
            return response.status, await response.json()
        return response.status, await response.text()
