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


ARABIC_INDIC_12 = "%D9%A1%D9%A2"  # "١٢": digits to str.isdigit() and int(), not ASCII


@pytest.mark.parametrize("raw", ["0", "-1", str(2**63), "9" * 30, ARABIC_INDIC_12, "1e3"])
@pytest.mark.parametrize(("method", "path"), [
    ("GET", "/sessions/{}"), ("GET", "/transfers/{}/file"), ("POST", "/transfers/{}/cancel"),
])
async def test_an_id_out_of_the_database_s_range_is_400(
    csms_server: RunningServer, method: str, path: str, raw: str,
) -> None:
    status, text = await call(csms_server, method, path.format(raw))
    assert status == 400, (status, text[:120])
    assert "is an integer from 1 to 2**63-1" in text


async def test_the_largest_id_the_database_holds_is_an_id(csms_server: RunningServer) -> None:
    status, text = await call(csms_server, "GET", f"/sessions/{2**63 - 1}")
    assert (status, text) == (404, '{"error":"no session 9223372036854775807"}')


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


@pytest.mark.parametrize("csms_db", ["sqlite", pytest.param("postgres",
                                                            marks=pytest.mark.postgres)],
                         indirect=True)
async def test_an_argument_beyond_64_bits_is_audited_exactly(
    csms_server: RunningServer,
) -> None:
    """The body is read as sent: 2**70 stays 1180591620717411303424 in the audit log (it
    was 1.1805916207174113e+21)."""
    await csms_server.add_station("CP1")
    async with await RawClient.connect(csms_server.url, "CP1", ["ocpp1.6"]) as c:
        await c.result("BootNotification", {"chargePointVendor": "V", "chargePointModel": "M"})
        await csms_server.wait_connected("CP1")
        status, _ = await call(csms_server, "POST", "/stations/CP1/commands/stop",
                               {"session": 2**70})
    assert status == 400
    [entry] = await csms_server.repo.read(lambda tx: tx.list_audit(10))
    assert entry["request"] == {"session": 2**70} and type(entry["request"]["session"]) is int
    status, text = await call(csms_server, "GET", "/audit")
    assert status == 200 and '{"session":1180591620717411303424}' in text.replace(" ", "")


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


@pytest.mark.parametrize("version", ["ocpp1.6", "ocpp2.0.1"])
@pytest.mark.parametrize("connector", [-1, 0, 2**31, -(2**40)])
async def test_unlock_of_a_connector_that_is_none_is_400_audited_and_nothing_is_sent(
    csms_server: RunningServer, version: str, connector: int,
) -> None:
    """1.6 UnlockConnector's connectorId is above 0, 2.0.1's evseId 1 or more; OCPP's
    integers are 32-bit."""
    await csms_server.add_station("CP1")
    async with await RawClient.connect(csms_server.url, "CP1", [version]) as c:
        boot = ({"chargePointVendor": "V", "chargePointModel": "M"} if version == "ocpp1.6"
                else {"reason": "PowerUp", "chargingStation": {"vendorName": "V", "model": "M"}})
        await c.result("BootNotification", boot)
        await csms_server.wait_connected("CP1")
        received: list[Any] = []

        async def station() -> None:  # a station that answers whatever it is sent
            while True:
                got = await c.calls.get()
                received.append(got[3])
                await c.answer(got[1], {"status": "Unlocked"})

        answering = asyncio.create_task(station())
        status, text = await call(csms_server, "POST", "/stations/CP1/commands/unlock",
                                  {"connector": connector})
        edge, _ = await call(csms_server, "POST", "/stations/CP1/commands/unlock",
                             {"connector": 2**31 - 1})
        await asyncio.sleep(0.2)
        answering.cancel()
    assert (status, received) == (400, [{"connectorId": 2**31 - 1} if version == "ocpp1.6"
                                        else {"evseId": 2**31 - 1, "connectorId": 1}]), text
    assert f"connector must be an integer from 1 to 2147483647, not {connector}" in text
    assert edge == 200
    audit = await csms_server.repo.read(lambda tx: tx.list_audit(10))
    assert [(a["action"], a["ok"], a["request"]) for a in audit] == [
        ("unlock", True, {"connector": 2**31 - 1}), ("unlock", False, {"connector": connector})]
