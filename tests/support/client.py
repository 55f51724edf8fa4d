"""A raw OCPP-J test client: sends exactly the frames a test writes."""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
from typing import Any

import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

__all__ = ["RawClient"]


class RawClient:
    """One WebSocket connection; answers are matched by message id."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self._ids = itertools.count(1)
        self._answers: dict[str, asyncio.Future[list[Any]]] = {}
        self.calls: asyncio.Queue[list[Any]] = asyncio.Queue()
        self.unmatched: list[list[Any]] = []
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def connect(
        cls, base_url: str, station_id: str, protocols: list[str] | None = None,
        password: str | None = None, user: str | None = None, ssl: Any = None,
        max_size: int | None = 2**20, local_addr: str | None = None,
    ) -> RawClient:
        headers = {}
        if password is not None:
            token = base64.b64encode(f"{user or station_id}:{password}".encode()).decode()
            headers["Authorization"] = f"Basic {token}"
        from urllib.parse import quote

        ws = await connect(
            f"{base_url}/{quote(station_id, safe='')}",
            subprotocols=protocols or ["ocpp1.6"],  # type: ignore[list-item]
            additional_headers=headers,
            open_timeout=5,
            ssl=ssl,
            max_size=max_size,
            # another loopback address (127.0.0.0/8) stands for another client
            **({"local_addr": (local_addr, 0)} if local_addr else {}),
        )
        return cls(ws)

    async def _read(self) -> None:
        try:
            async for text in self.ws:
                msg = orjson.loads(text)
                if msg[0] == 2:
                    await self.calls.put(msg)
                    continue
                fut = self._answers.pop(msg[1], None)
                if fut is not None and not fut.done():
                    fut.set_result(msg)
                else:
                    self.unmatched.append(msg)
        except ConnectionClosed:
            pass
        finally:
            for fut in self._answers.values():
                if not fut.done():
                    fut.set_exception(ConnectionError("closed"))

    def expect(self, message_id: str) -> asyncio.Future[list[Any]]:
        fut: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        self._answers[message_id] = fut
        return fut

    async def send_raw(self, text: str, answer_id: str | None = None,
                       timeout: float = 5) -> list[Any] | None:
        fut = self.expect(answer_id) if answer_id is not None else None
        await self.ws.send(text)
        if fut is None:
            return None
        async with asyncio.timeout(timeout):
            return await fut

    async def call(self, action: str, payload: dict[str, Any], timeout: float = 5,
                   message_id: str | None = None) -> list[Any]:
        mid = message_id or f"m{next(self._ids)}"
        try:
            text = orjson.dumps([2, mid, action, payload]).decode()
        except TypeError:  # integers beyond 64 bits: a hostile station sends them too
            text = json.dumps([2, mid, action, payload], separators=(",", ":"))
        answer = await self.send_raw(text, mid, timeout)
        assert answer is not None
        return answer

    async def result(self, action: str, payload: dict[str, Any]) -> dict[str, Any]:
        answer = await self.call(action, payload)
        assert answer[0] == 3, answer
        out: dict[str, Any] = answer[2]
        return out

    async def answer(self, message_id: str, payload: dict[str, Any]) -> None:
        await self.ws.send(orjson.dumps([3, message_id, payload]).decode())

    async def close(self) -> None:
        await self.ws.close()
        self._reader.cancel()

    async def __aenter__(self) -> RawClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
