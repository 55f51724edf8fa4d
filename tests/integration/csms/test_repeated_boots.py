"""A 1.6 station that boots again and again on one connection without answering the
GetConfiguration each accepted boot brings, over real sockets: what the central system
queues for it must stay bounded, and the operator's commands must not wait behind it."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace

import pytest

from support import RunningServer
from support.client import RawClient

BOOT16 = {"chargePointVendor": "V", "chargePointModel": "M", "firmwareVersion": "1.0"}
BOOTS = 30


@pytest.fixture
async def reading_server(csms_server: RunningServer) -> RunningServer:
    """As `csms serve` runs it (GetConfiguration after a 1.6 boot), with a short call
    timeout."""
    await csms_server.stop()
    csms_server.settings = replace(csms_server.settings, boot_get_configuration=True,
                                   call_timeout=1)
    await csms_server.start()
    return csms_server


def queued_for(server: RunningServer, station_id: str) -> int:
    return sum(1 for t in server.central._after_reply
               if t.get_name().startswith(f"{station_id}:") and not t.done())


async def test_repeated_boots_queue_calls_without_bound(reading_server: RunningServer) -> None:
    server = reading_server
    await server.add_station("CP1")
    async with await RawClient.connect(server.url, "CP1", ["ocpp1.6"]) as c:
        for _ in range(BOOTS):  # each answered at once; the GetConfigurations never are
            assert (await c.result("BootNotification", BOOT16))["status"] == "Accepted"
        await asyncio.sleep(0.2)
        # one GetConfiguration at a time is what the station can be asked; the others
        # wait for the connection's one CALL slot, each up to call_timeout
        assert queued_for(server, "CP1") <= 2, queued_for(server, "CP1")


async def test_an_operator_command_is_not_wedged_behind_repeated_boots(
        reading_server: RunningServer) -> None:
    server = reading_server
    await server.add_station("CP1")
    async with await RawClient.connect(server.url, "CP1", ["ocpp1.6"]) as c:
        for _ in range(BOOTS):
            await c.result("BootNotification", BOOT16)

        async def answer_clear_cache() -> None:
            while True:
                msg = await c.calls.get()
                if msg[2] == "ClearCache":
                    await c.answer(msg[1], {"status": "Accepted"})

        answering = asyncio.create_task(answer_clear_cache())
        try:
            started = time.monotonic()
            # timeout=2: the station answers ClearCache at once; at most one
            # GetConfiguration (call_timeout 1 s) may be in flight ahead of it
            try:
                async with asyncio.timeout(6):
                    answer = await server.call("CP1", "ClearCache", {}, timeout=2)
            except TimeoutError:
                pytest.fail(f"the operator's ClearCache (timeout=2 s) got no answer in"
                            f" {time.monotonic() - started:.1f} s: it waits behind"
                            f" {queued_for(server, 'CP1')} queued GetConfigurations")
            assert answer == {"status": "Accepted"}
        finally:
            answering.cancel()


CONFIG = {"configurationKey": [{"key": "HeartbeatInterval", "readonly": False,
                                "value": "60"}]}


async def next_get_configuration(c: RawClient, within: float = 3) -> list[object]:
    async with asyncio.timeout(within):
        while True:
            msg = await c.calls.get()
            if msg[2] == "GetConfiguration":
                return msg


async def test_a_boot_after_the_read_was_answered_reads_again(
        reading_server: RunningServer) -> None:
    """Once the boot's GetConfiguration is answered, the next boot that calls for one (here
    with another firmware) gets one."""
    server = reading_server
    await server.add_station("CP1")
    async with await RawClient.connect(server.url, "CP1", ["ocpp1.6"]) as c:
        assert (await c.result("BootNotification", BOOT16))["status"] == "Accepted"
        first = await next_get_configuration(c)
        await c.answer(str(first[1]), CONFIG)
        await asyncio.sleep(0.2)  # the answer recorded, the read no longer pending
        assert queued_for(server, "CP1") == 0
        assert (await c.result("BootNotification", {**BOOT16, "firmwareVersion": "1.1"})
                )["status"] == "Accepted"
        second = await next_get_configuration(c)
        assert second[1] != first[1]
        await c.answer(str(second[1]), CONFIG)


async def test_a_boot_while_the_read_is_pending_adds_none_and_after_it_failed_reads_again(
        reading_server: RunningServer) -> None:
    server = reading_server
    await server.add_station("CP1")
    async with await RawClient.connect(server.url, "CP1", ["ocpp1.6"]) as c:
        await c.result("BootNotification", BOOT16)
        first = await next_get_configuration(c)
        for _ in range(3):  # while the first is in flight: none more
            await c.result("BootNotification", BOOT16)
        with pytest.raises(TimeoutError):
            await next_get_configuration(c, within=0.5)
        # unanswered: it fails at call_timeout (1 s), then a boot reads again
        await asyncio.sleep(1)
        assert queued_for(server, "CP1") == 0
        await c.result("BootNotification", BOOT16)
        second = await next_get_configuration(c)
        assert second[1] != first[1]
        await c.answer(str(second[1]), CONFIG)
