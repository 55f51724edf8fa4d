"""The admin API against inputs an operator's script can send by mistake: every one is
a 4xx with a clear message, never a 500, and a refused command is audited like its
siblings."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest
from yarl import URL

from support import RunningServer
from support.client import RawClient

SUPERSCRIPT_TWO = "%C2%B2"  # "²": str.isdigit() says yes, int() says no
HUGE = "9" * 5000  # beyond int()'s 4300 digits


async def call(server: RunningServer, method: str, path: str,
               body: Any = None) -> tuple[int, str]:
    """``path`` sent as it is written (already percent-encoded)."""
    headers = {"Authorization": f"Bearer {server.admin_token}"}
    async with aiohttp.ClientSession() as http, http.request(
        method, URL(server.admin_url + path, encoded=True), json=body, headers=headers,
    ) as r:
        return r.status, await r.text()


@pytest.mark.parametrize("path", [
    f"/sessions?limit={SUPERSCRIPT_TWO}",
    f"/audit?limit={SUPERSCRIPT_TWO}",
    f"/reservations?limit={SUPERSCRIPT_TWO}",
    f"/transfers?limit={SUPERSCRIPT_TWO}",
    f"/audit?limit={HUGE}",
    f"/sessions?limit={HUGE}",
])
async def test_a_limit_that_is_not_an_integer_is_400(csms_server: RunningServer,
                                                     path: str) -> None:
    status, text = await call(csms_server, "GET", path)
    assert status == 400, (status, text[:120])
    assert "limit must be an integer" in text


@pytest.mark.parametrize(("method", "path"), [
    ("GET", "/sessions/" + "9" * 30),
    ("GET", f"/transfers/{SUPERSCRIPT_TWO}/file"),
    ("POST", f"/transfers/{SUPERSCRIPT_TWO}/cancel"),
])
async def test_an_id_in_the_path_that_is_no_record_id_is_4xx(
    csms_server: RunningServer, method: str, path: str,
) -> None:
    status, text = await call(csms_server, method, path)
    assert status in (400, 404), (status, text[:120])
    assert "error" in text


@pytest.mark.parametrize("session", ["abc", 2**70, [1]])
async def test_stop_with_a_session_that_is_not_an_id_is_400_and_audited(
    csms_server: RunningServer, session: Any,
) -> None:
    await csms_server.add_station("CP1")
    async with await RawClient.connect(csms_server.url, "CP1", ["ocpp1.6"]) as c:
        await c.result("BootNotification", {"chargePointVendor": "V", "chargePointModel": "M"})
        await csms_server.wait_connected("CP1")
        status, text = await call(csms_server, "POST", "/stations/CP1/commands/stop",
                                  {"session": session})
    assert status == 400, (status, text[:120])
    audit = await csms_server.repo.read(lambda tx: tx.list_audit(10))
    assert [(a["action"], a["ok"]) for a in audit] == [("stop", False)]


@pytest.mark.parametrize("timeout", ["abc", [1], -1])
async def test_a_timeout_that_is_not_a_positive_number_is_400_and_nothing_is_sent(
    csms_server: RunningServer, timeout: Any,
) -> None:
    await csms_server.add_station("CP1")
    async with await RawClient.connect(csms_server.url, "CP1", ["ocpp1.6"]) as c:
        await c.result("BootNotification", {"chargePointVendor": "V", "chargePointModel": "M"})
        await csms_server.wait_connected("CP1")

        received: list[str] = []

        async def station() -> None:  # a station that answers whatever it is sent
            while True:
                got = await c.calls.get()
                received.append(got[2])
                await c.answer(got[1], {"status": "Accepted"})

        answering = asyncio.create_task(station())
        status, text = await call(csms_server, "POST", "/stations/CP1/commands/reset",
                                  {"timeout": timeout})
        await asyncio.sleep(0.2)
        answering.cancel()
    # -1 today: the Reset is sent (and carried out by the station), the API says 504
    assert (status, received) == (400, []), (status, received, text[:120])
