"""The OCPP-J connection loop over an in-memory pair: one side is a Link, the other
a bare channel the test drives frame by frame."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import orjson
import pytest

from csms.link import (
    CallFailed,
    CallTimeout,
    ChannelClosed,
    Link,
    LinkClosed,
    MemoryChannel,
    TransientError,
    memory_pair,
)
from csms.protocol import Endpoint, Fault, IncomingCall, OcppError, OcppVersion


@dataclass
class Peer:
    """The far end: sends and reads raw OCPP-J frames."""

    channel: MemoryChannel

    async def send(self, *frame: Any) -> None:
        await self.channel.send(orjson.dumps(list(frame)).decode())

    async def read(self, timeout: float = 2.0) -> list[Any]:
        async with asyncio.timeout(timeout):
            text = await self.channel.receive()
        frame: list[Any] = orjson.loads(text)
        return frame

    async def nothing_for(self, seconds: float) -> bool:
        try:
            async with asyncio.timeout(seconds):
                await self.channel.receive()
        except TimeoutError:
            return True
        return False


Handler = Callable[[IncomingCall], Any]


@pytest.fixture
async def pair() -> AsyncIterator[Callable[..., tuple[Link, Peer]]]:
    tasks: list[asyncio.Task[None]] = []

    def make(handler: Handler | None = None, *, call_timeout: float = 2.0,
             **options: Any) -> tuple[Link, Peer]:
        ours, theirs = memory_pair()

        async def heartbeat(call: IncomingCall) -> dict[str, Any]:
            return {"currentTime": "2026-01-01T00:00:00Z"}

        link = Link(ours, Endpoint(OcppVersion.V16), handler or heartbeat, name="CP1",
                    call_timeout=call_timeout, **options)
        tasks.append(asyncio.create_task(link.run()))
        return link, Peer(theirs)

    yield make
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


BOOT = {"chargePointVendor": "v", "chargePointModel": "m"}
STATUS = {"connectorId": 1, "errorCode": "NoError", "status": "Available"}


async def test_calls_are_handled_one_at_a_time_in_order(pair: Any) -> None:
    running = 0
    seen: list[str] = []

    async def handler(call: IncomingCall) -> dict[str, Any]:
        nonlocal running
        running += 1
        assert running == 1, "two CALLs handled at once"
        seen.append(call.message_id)
        await asyncio.sleep(0.05 if call.message_id == "a" else 0.0)
        running -= 1
        return {"currentTime": "2026-01-01T00:00:00Z"}

    _, peer = pair(handler)
    for mid in ("a", "b", "c"):
        await peer.send(2, mid, "Heartbeat", {})
    answers = [await peer.read() for _ in range(3)]
    assert [a[1] for a in answers] == ["a", "b", "c"]
    assert [a[0] for a in answers] == [3, 3, 3]
    assert seen == ["a", "b", "c"]


async def test_one_call_in_flight_the_second_waits_for_the_first_answer(pair: Any) -> None:
    link, peer = pair()
    first = asyncio.create_task(link.call("StatusNotification", STATUS))
    second = asyncio.create_task(link.call("Heartbeat", {}))
    frame = await peer.read()
    assert frame[2] == "StatusNotification"
    assert await peer.nothing_for(0.1), "a second CALL was sent before the first was answered"
    await peer.send(3, frame[1], {})
    assert await first == {}
    frame = await peer.read()
    assert frame[2] == "Heartbeat"
    await peer.send(3, frame[1], {"currentTime": "2026-01-01T00:00:00Z"})
    assert await second == {"currentTime": "2026-01-01T00:00:00Z"}


async def test_a_call_can_be_sent_while_a_call_of_the_peer_is_handled(pair: Any) -> None:
    """What the ocpp library's ChargePoint.start() cannot do: CALL from inside a handler."""
    holder: list[Link] = []

    async def handler(call: IncomingCall) -> dict[str, Any]:
        answer = await holder[0].call("Heartbeat", {})
        return {"status": "Accepted", "interval": 1, "currentTime": answer["currentTime"]}

    link, peer = pair(handler)
    holder.append(link)
    await peer.send(2, "boot-1", "BootNotification", BOOT)
    ours = await peer.read()
    assert ours[2] == "Heartbeat"
    await peer.send(3, ours[1], {"currentTime": "2026-01-01T00:00:00Z"})
    answer = await peer.read()
    assert answer[:2] == [3, "boot-1"] and answer[2]["status"] == "Accepted"


async def test_no_answer_in_time_is_a_timeout_and_frees_the_slot(pair: Any) -> None:
    link, peer = pair(call_timeout=0.1)
    with pytest.raises(CallTimeout):
        await link.call("Heartbeat", {})
    assert link.endpoint.pending is None
    late = await peer.read()
    task = asyncio.create_task(link.call("Heartbeat", {}))
    frame = await peer.read()
    assert frame[1] != late[1]
    await peer.send(3, frame[1], {"currentTime": "2026-01-02T00:00:00Z"})
    assert (await task)["currentTime"] == "2026-01-02T00:00:00Z"


async def test_a_timeout_is_a_timeout_error(pair: Any) -> None:
    link, _ = pair()
    with pytest.raises(TimeoutError):
        await link.call("Heartbeat", {}, timeout=0.05)


async def test_the_timeout_counts_the_wait_for_the_call_slot(pair: Any) -> None:
    """A CALL queued behind one of ours that is not answered waits no longer than its own
    timeout: the wait for the one CALL slot counts, and it ends as the same CallTimeout
    (never sent, so the station never sees it)."""
    link, peer = pair(call_timeout=5)
    ahead = asyncio.create_task(link.call("Heartbeat", {}))
    first = await peer.read()
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(CallTimeout, match="not sent within"):
        await link.call("ClearCache", {}, timeout=0.1)
    assert loop.time() - started < 1
    assert link.stats.calls_sent == 1
    # the CALL ahead still gets its answer, and the slot works afterwards
    await peer.send(3, first[1], {"currentTime": "2026-01-01T00:00:00Z"})
    assert (await ahead)["currentTime"] == "2026-01-01T00:00:00Z"
    task = asyncio.create_task(link.call("ClearCache", {}, timeout=1))
    frame = await peer.read()
    assert frame[2] == "ClearCache"
    await peer.send(3, frame[1], {"status": "Accepted"})
    assert await task == {"status": "Accepted"}


async def test_waiting_and_answering_share_one_timeout(pair: Any) -> None:
    """0.3 s spent waiting for the slot leave 0.2 s of a 0.5 s timeout for the answer."""
    link, peer = pair(call_timeout=5)
    ahead = asyncio.create_task(link.call("Heartbeat", {}))
    first = await peer.read()
    loop = asyncio.get_running_loop()
    started = loop.time()
    behind = asyncio.create_task(link.call("ClearCache", {}, timeout=0.5))
    await asyncio.sleep(0.3)
    await peer.send(3, first[1], {"currentTime": "2026-01-01T00:00:00Z"})
    await ahead
    assert (await peer.read())[2] == "ClearCache"  # sent, never answered
    with pytest.raises(CallTimeout, match="did not answer"):
        await behind
    assert 0.45 < loop.time() - started < 0.9
    assert link.endpoint.pending is None


async def test_callerror_becomes_call_failed_with_its_fields(pair: Any) -> None:
    link, peer = pair()
    task = asyncio.create_task(link.call("Heartbeat", {}))
    frame = await peer.read()
    await peer.send(4, frame[1], "NotSupported", "no heartbeat here", {"hint": 1})
    with pytest.raises(CallFailed) as caught:
        await task
    assert (caught.value.code, caught.value.description, caught.value.details) == (
        "NotSupported", "no heartbeat here", {"hint": 1})
    assert link.stats.callerrors_in == 1


@pytest.mark.parametrize("answer", [
    [4, "GenericError", "no details"],  # [4, id, code, description]: details missing
    [3, None],  # [3, id, null]
])
async def test_a_malformed_answer_fails_the_call_at_once_and_is_not_answered(
    pair: Any, answer: list[Any],
) -> None:
    link, peer = pair(call_timeout=30.0)
    task = asyncio.create_task(link.call("Heartbeat", {}))
    frame = await peer.read()
    await peer.send(answer[0], frame[1], *answer[1:])
    async with asyncio.timeout(1.0):  # not the CALL's 30 s
        with pytest.raises(CallFailed) as caught:
            await task
    assert caught.value.code == "FormationViolation"
    assert "malformed answer" in caught.value.description
    assert await peer.nothing_for(0.05), "a malformed answer was answered"
    # the CALL slot is free again
    task = asyncio.create_task(link.call("Heartbeat", {}))
    frame = await peer.read()
    await peer.send(3, frame[1], {"currentTime": "2026-01-03T00:00:00Z"})
    assert (await task)["currentTime"] == "2026-01-03T00:00:00Z"


async def test_late_and_unknown_results_are_ignored(pair: Any) -> None:
    link, peer = pair(call_timeout=0.1)
    with pytest.raises(CallTimeout):
        await link.call("Heartbeat", {})
    late = await peer.read()
    task = asyncio.create_task(link.call("Heartbeat", {}))
    current = await peer.read()
    # the answer to the abandoned CALL and one to a CALL never sent change nothing
    await peer.send(3, late[1], {"currentTime": "2026-01-01T00:00:00Z"})
    await peer.send(3, "never-sent", {"currentTime": "2026-01-01T00:00:00Z"})
    await asyncio.sleep(0.02)
    assert not task.done()
    await peer.send(3, current[1], {"currentTime": "2026-01-03T00:00:00Z"})
    assert (await task)["currentTime"] == "2026-01-03T00:00:00Z"
    assert await peer.nothing_for(0.05), "an ignored answer was answered"


async def test_close_while_a_call_waits_raises_link_closed(pair: Any) -> None:
    link, peer = pair(call_timeout=5)
    task = asyncio.create_task(link.call("Heartbeat", {}))
    await peer.read()
    await peer.channel.close(1001, "going away")
    async with asyncio.timeout(1):
        with pytest.raises(LinkClosed):
            await task
    with pytest.raises(LinkClosed):
        await link.call("Heartbeat", {})


async def test_link_closed_is_a_connection_error(pair: Any) -> None:
    link, peer = pair()
    await link.close()
    with pytest.raises(ConnectionError):
        await link.call("Heartbeat", {})
    assert peer.channel.close_code == 1000


@pytest.mark.parametrize(("raised", "code"), [
    (OcppError(Fault.PROPERTY_CONSTRAINT, "bad"), "PropertyConstraintViolation"),
    (TransientError(Fault.INTERNAL, "try later"), "InternalError"),
    (RuntimeError("bug"), "InternalError"),
])
async def test_handler_failures_are_answered_with_a_callerror(
    pair: Any, raised: Exception, code: str
) -> None:
    async def handler(call: IncomingCall) -> dict[str, Any]:
        raise raised

    _, peer = pair(handler)
    await peer.send(2, "m1", "Heartbeat", {})
    answer = await peer.read()
    assert answer[:3] == [4, "m1", code]


async def test_a_transient_error_is_not_answered_from_memory(pair: Any) -> None:
    calls = 0

    async def handler(call: IncomingCall) -> dict[str, Any]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise TransientError(Fault.INTERNAL, "temporarily unable to store")
        return {"currentTime": "2026-01-01T00:00:00Z"}

    _, peer = pair(handler)
    await peer.send(2, "same", "Heartbeat", {})
    assert (await peer.read())[0] == 4
    await peer.send(2, "same", "Heartbeat", {})  # the retry is handled anew
    assert (await peer.read())[0] == 3
    assert calls == 2


async def test_bad_frames_are_answered_by_the_endpoint(pair: Any) -> None:
    told: list[str] = []
    link, peer = pair(on_send_now=lambda event: told.append(event.reason))
    await peer.send(2, "x1", "NoSuchAction", {})
    answer = await peer.read()
    assert answer[:3] == [4, "x1", "NotImplemented"]
    assert told == ["unknown action"] and link.stats.errors_sent == 1


async def test_a_binary_frame_goes_to_its_handler_and_ends_the_reading(pair: Any) -> None:
    got: list[bytes] = []

    async def on_binary(data: bytes) -> None:
        got.append(data)

    link, peer = pair(on_binary=on_binary)
    await peer.channel.send(b"\x00\x01")
    async with asyncio.timeout(1):
        while not link.closed:
            await asyncio.sleep(0.01)
    assert got == [b"\x00\x01"]


async def test_a_tap_consumes_messages_before_the_endpoint(pair: Any) -> None:
    tapped: list[str | bytes] = []

    def tap(text: str | bytes) -> bool:
        tapped.append(text)
        return True

    link, peer = pair(tap=tap)
    await peer.send(2, "t1", "Heartbeat", {})
    assert await peer.nothing_for(0.05)
    assert len(tapped) == 1 and link.stats.messages_in == 0


async def test_memory_pair_delivers_in_order_and_ends_both_sides() -> None:
    a, b = memory_pair()
    for text in ("1", "2", "3"):
        await a.send(text)
    assert [await b.receive() for _ in range(3)] == ["1", "2", "3"]
    await b.close(4000, "bye")
    with pytest.raises(ChannelClosed):
        await a.receive()
    with pytest.raises(ChannelClosed):
        await a.send("4")
    with pytest.raises(ChannelClosed):
        await b.receive()
    assert (a.close_code, a.close_reason) == (4000, "bye")


async def test_a_flooding_peer_is_read_only_as_far_as_the_queue_allows(pair: Any) -> None:
    """While a CALL is handled, the reader queues at most ``max_queued_calls`` more and
    then stops reading (back-pressure); every CALL is answered in order afterwards."""
    release = asyncio.Event()

    async def handler(call: IncomingCall) -> dict[str, Any]:
        await release.wait()
        return {"currentTime": "2026-01-01T00:00:00Z"}

    link, peer = pair(handler, max_queued_calls=3)
    for i in range(20):
        await peer.send(2, f"m{i}", "Heartbeat", {})
    await asyncio.sleep(0.1)
    # one in the handler, three queued, one in the reader's hand waiting for room
    assert link.stats.messages_in == 5
    release.set()
    answers = [await peer.read() for _ in range(20)]
    assert [a[1] for a in answers] == [f"m{i}" for i in range(20)]
    assert link.stats.messages_in == 20


def test_the_queue_of_calls_needs_room_for_one() -> None:
    ours, _ = memory_pair()
    with pytest.raises(ValueError, match="at least 1"):
        Link(ours, Endpoint(OcppVersion.V16), lambda call: None,  # type: ignore[arg-type,return-value]
             name="CP1", call_timeout=1.0, max_queued_calls=0)


def _alive(marker: str) -> bool:
    gc.collect()
    return any(type(o) is list and o == [marker] for o in gc.get_objects())


async def test_an_idle_link_keeps_nothing_of_the_last_messages(pair: Any) -> None:
    """Between messages a connection holds neither the peer's last CALL nor the answer to
    our last CALL: on an idle connection they were kilobytes each (a station's whole
    configuration after a GetConfiguration)."""

    async def handler(call: IncomingCall) -> dict[str, Any]:
        return {}

    ours_end, theirs = memory_pair()
    # without the schemas: payloads that hold lists, which the collector can find
    link = Link(ours_end, Endpoint(OcppVersion.V16, validate=False), handler, name="CP1",
                call_timeout=2.0)
    peer = Peer(theirs)
    running = asyncio.create_task(link.run())
    await peer.send(2, "in-1", "DataTransfer", {"vendorId": "v", "data": ["their-call"]})
    assert (await peer.read())[:2] == [3, "in-1"]
    ours = asyncio.create_task(link.call("GetConfiguration", {}))
    frame = await peer.read()
    await peer.send(3, frame[1], {"configurationKey": [], "unknownKey": ["our-answer"]})
    assert (await ours)["unknownKey"] == ["our-answer"]
    del ours
    await asyncio.sleep(0.05)
    try:
        assert not _alive("their-call")
        assert not _alive("our-answer")
    finally:
        running.cancel()


class _Unwritable:
    """A channel whose writes wait until it closes, then fail (a peer that reads nothing,
    cut by the transport's write timeout)."""

    def __init__(self) -> None:
        self.gone = asyncio.Event()

    async def send(self, text: str | bytes) -> None:
        await self.gone.wait()
        raise ChannelClosed

    async def receive(self) -> str | bytes:
        await self.gone.wait()
        raise ChannelClosed

    async def close(self, code: int = 1000, reason: str = "") -> None:
        self.gone.set()


async def test_a_call_cut_while_written_leaves_no_unretrieved_error() -> None:
    """The connection ends while our CALL is still being written: the reader ends first
    and fails the CALL's answer with LinkClosed, then the write fails and the caller gets
    LinkClosed from it. The answer's error is the same one, and retrieved: asyncio logged
    "Future exception was never retrieved" for each such CALL."""
    loop = asyncio.get_running_loop()
    seen: list[dict[str, Any]] = []
    before = loop.get_exception_handler()
    loop.set_exception_handler(lambda _, context: seen.append(context))
    channel = _Unwritable()

    async def nothing(call: IncomingCall) -> dict[str, Any]:
        return {}

    link = Link(channel, Endpoint(OcppVersion.V16), nothing, name="CP1", call_timeout=5)
    running = asyncio.create_task(link.run())
    try:
        call = asyncio.create_task(link.call("Heartbeat", {}))
        await asyncio.sleep(0.05)  # the CALL is being written
        await channel.close()
        with pytest.raises(LinkClosed):
            await call
        await running
        del call, running
        gc.collect()
    finally:
        loop.set_exception_handler(before)
    assert [c.get("message") for c in seen] == []
