from __future__ import annotations

import orjson
import pytest

from csms.protocol import (
    Call,
    Endpoint,
    Fault,
    IncomingCall,
    IncomingError,
    IncomingResult,
    OcppError,
    OcppVersion,
    SendNow,
    Unmatched,
)
from csms.protocol.rpc import ANSWERED_CACHE


def frame(*parts: object) -> str:
    return orjson.dumps(list(parts)).decode()


def central(version: OcppVersion = OcppVersion.V16) -> Endpoint:
    return Endpoint(version, handles={"Heartbeat", "MeterValues"})


def test_valid_call_is_delivered() -> None:
    ep = central()
    assert ep.receive(frame(2, "1", "Heartbeat", {})) == IncomingCall("1", "Heartbeat", {})


@pytest.mark.parametrize("value", ["230.1", "\u00e9t\u00e9", "\U0001f50c" * 100],
                         ids=["ascii", "latin", "4-byte"])
@pytest.mark.parametrize("as_bytes", [False, True])
def test_a_call_carries_the_size_of_its_frame_in_bytes(value: str, as_bytes: bool) -> None:
    """What the frame weighs on the wire and in storage: UTF-8 bytes, not characters."""
    text = frame(2, "1", "MeterValues", {"connectorId": 1, "meterValue": [
        {"timestamp": "2026-01-01T00:00:00Z", "sampledValue": [{"value": value}]}]})
    event = central().receive(text.encode() if as_bytes else text)
    assert isinstance(event, IncomingCall)
    assert event.size == len(text.encode())


@pytest.mark.parametrize(
    ("version", "text", "expected"),
    [
        (OcppVersion.V16, "garbage", [4, "-1", "FormationViolation"]),
        (OcppVersion.V201, "garbage", [4, "-1", "RpcFrameworkError"]),
        (OcppVersion.V16, frame(2, "1", "Bogus", {}), [4, "1", "NotImplemented"]),
        (OcppVersion.V201, frame(2, "1", "Bogus", {}), [4, "1", "NotImplemented"]),
        # Known to the version, but not handled by this receiver.
        (OcppVersion.V16, frame(2, "1", "Reset", {"type": "Soft"}), [4, "1", "NotSupported"]),
        (OcppVersion.V16, frame(2, "1", "Heartbeat", {"x": 1}), [4, "1", "FormationViolation"]),
        (OcppVersion.V201, frame(2, "1", "Heartbeat", {"x": 1}), [4, "1", "FormatViolation"]),
        (OcppVersion.V201, frame(7, "1", "Heartbeat", {}), [4, "1", "MessageTypeNotSupported"]),
    ],
)
def test_bad_input_is_answered(version: OcppVersion, text: str, expected: list[object]) -> None:
    event = central(version).receive(text)
    assert isinstance(event, SendNow)
    assert orjson.loads(event.text)[:3] == expected


def test_repeated_message_id_gets_the_same_answer_and_is_not_redelivered() -> None:
    ep = central()
    call = frame(2, "42", "Heartbeat", {})
    assert isinstance(ep.receive(call), IncomingCall)
    # while the first is being handled, the duplicate is dropped (the frame logged)
    assert ep.receive(call) == Unmatched(
        "duplicate of message '42' still being handled", Call("42", "Heartbeat", {}))
    answer = ep.result("42", {"currentTime": "2026-01-01T00:00:00Z"})
    again = ep.receive(call)
    assert isinstance(again, SendNow)
    assert again.text == answer


def test_the_last_answers_are_kept_for_repeats_and_no_more() -> None:
    """A station repeats the CALL it got no answer to: the last ANSWERED_CACHE answers
    are sent again from memory; an older id is handled as a new message (storage is
    idempotent for it), and a long-lived connection keeps no more than that."""
    ep = central()
    calls = [frame(2, f"hb-{i}", "Heartbeat", {}) for i in range(100)]
    answers = []
    for i, call in enumerate(calls):
        assert isinstance(ep.receive(call), IncomingCall)
        answers.append(ep.result(f"hb-{i}", {"currentTime": f"2026-01-01T00:00:{i % 60:02d}Z"}))
    for i in range(100 - ANSWERED_CACHE, 100):
        assert ep.receive(calls[i]) == SendNow(answers[i], f"repeated message id 'hb-{i}':"
                                                            " answer sent again")
    assert ep.receive(calls[99 - ANSWERED_CACHE]) == IncomingCall(
        f"hb-{99 - ANSWERED_CACHE}", "Heartbeat", {})
    assert len(ep._answered) == ANSWERED_CACHE


def test_one_outstanding_call() -> None:
    ep = central()
    mid, text = ep.call("Reset", {"type": "Soft"})
    assert orjson.loads(text) == [2, mid, "Reset", {"type": "Soft"}]
    with pytest.raises(RuntimeError):
        ep.call("Reset", {"type": "Hard"})
    assert ep.receive(frame(3, mid, {"status": "Accepted"})) == IncomingResult(
        mid, "Reset", {"status": "Accepted"}
    )
    ep.call("Reset", {"type": "Hard"})  # free again


def test_outgoing_call_is_validated() -> None:
    with pytest.raises(OcppError) as info:
        central().call("Reset", {"type": "Sideways"})
    assert info.value.fault is Fault.PROPERTY_CONSTRAINT


def test_answers_to_nothing_are_unmatched() -> None:
    ep = central()
    assert isinstance(ep.receive(frame(3, "zz", {})), Unmatched)
    mid, _ = ep.call("Reset", {"type": "Soft"})
    assert isinstance(ep.receive(frame(3, "other", {})), Unmatched)
    assert ep.pending == (mid, "Reset")


def test_a_message_id_is_quoted_in_every_reason_that_names_it() -> None:
    """A message id is any string of up to 36 characters (OCPP-J §4.1.4), line breaks
    included: the reasons, which are logged, quote it, so a station writes no line of
    its own; its CALL is still handled and answered with the id as sent."""
    ep = central()
    forged = "x)\nERROR csms.admin: y"
    unmatched = ep.receive(frame(3, forged, {}))
    assert isinstance(unmatched, Unmatched)
    assert unmatched.reason == f"answer to no pending call ({forged!r})"
    call = frame(2, forged, "Heartbeat", {})
    assert ep.receive(call) == IncomingCall(forged, "Heartbeat", {})
    duplicate = ep.receive(call)
    assert isinstance(duplicate, Unmatched) and "\n" not in duplicate.reason
    answer = ep.result(forged, {"currentTime": "2026-01-01T00:00:00Z"})
    assert orjson.loads(answer)[1] == forged
    again = ep.receive(call)
    assert again == SendNow(answer, f"repeated message id {forged!r}: answer sent again")
    assert "\n" not in again.reason


def test_call_error_and_invalid_result() -> None:
    ep = central()
    mid, _ = ep.call("Reset", {"type": "Soft"})
    ev = ep.receive(frame(4, mid, "NotSupported", "no", {}))
    assert isinstance(ev, IncomingError)
    assert ev.code == "NotSupported"
    mid, _ = ep.call("Reset", {"type": "Soft"})
    ev = ep.receive(frame(3, mid, {"status": "Maybe"}))
    assert isinstance(ev, IncomingError)
    assert ev.code == "PropertyConstraintViolation"


@pytest.mark.parametrize("version", [OcppVersion.V16, OcppVersion.V201])
@pytest.mark.parametrize("answer", [
    ["NotSupported", "no"],  # a CALLERROR without its details
    ["NotSupported", "no", None],
    ["NotSupported", 5, {}],
], ids=["callerror-without-details", "callerror-null-details", "callerror-number"])
def test_a_malformed_callerror_to_our_call_fails_it_at_once(
    version: OcppVersion, answer: list[object],
) -> None:
    """A CALLERROR to our pending CALL that is not [4, id, code, description, {details}]
    still answers that CALL: it fails now, with a FormatViolation (FormationViolation in
    1.6) that says why, instead of waiting for its whole timeout; nothing is sent back."""
    ep = central(version)
    mid, _ = ep.call("Heartbeat", {})
    ev = ep.receive(frame(4, mid, *answer))
    assert isinstance(ev, IncomingError), ev
    assert (ev.message_id, ev.action) == (mid, "Heartbeat")
    assert ev.code == ("FormationViolation" if version is OcppVersion.V16
                       else "FormatViolation")
    assert ev.description.startswith("malformed answer: a CALLERROR is"), ev.description
    assert ep.pending is None


@pytest.mark.parametrize("payload", [None, [], "Accepted"])
def test_a_callresult_without_an_object_fails_our_call_at_once(payload: object) -> None:
    ep = central()
    mid, _ = ep.call("Reset", {"type": "Soft"})
    ev = ep.receive(frame(3, mid, payload))
    assert isinstance(ev, IncomingError), ev
    assert ev.code == "FormationViolation"
    assert ev.description.startswith("malformed answer: a CALLRESULT is"), ev.description
    assert ep.pending is None


def test_a_malformed_answer_to_no_pending_call_is_unmatched() -> None:
    ep = central()
    assert isinstance(ep.receive(frame(3, "zz", None)), Unmatched)
    mid, _ = ep.call("Reset", {"type": "Soft"})
    assert isinstance(ep.receive(frame(4, "other", "GenericError", "x")), Unmatched)
    assert ep.pending == (mid, "Reset")


def test_abandon_frees_the_slot_and_late_answer_is_unmatched() -> None:
    ep = central()
    mid, _ = ep.call("Reset", {"type": "Soft"})
    ep.abandon(mid)
    assert ep.pending is None
    assert isinstance(ep.receive(frame(3, mid, {"status": "Accepted"})), Unmatched)


def test_error_answer_uses_version_code() -> None:
    ep = central(OcppVersion.V201)
    assert isinstance(ep.receive(frame(2, "5", "Heartbeat", {})), IncomingCall)
    text = ep.error("5", OcppError(Fault.FORMAT, "bad"))
    assert orjson.loads(text) == [4, "5", "FormatViolation", "bad", {}]


def test_a_reused_message_id_is_another_message_not_a_replay() -> None:
    ep = central()
    first = frame(2, "7", "Heartbeat", {})
    other = frame(2, "7", "MeterValues", {"connectorId": 1, "meterValue": [
        {"timestamp": "2026-01-01T00:00:00Z", "sampledValue": [{"value": "1"}]}]})
    assert isinstance(ep.receive(first), IncomingCall)
    # in use by a call still being handled: a clear CALLERROR, not the other's answer
    busy = ep.receive(other)
    assert isinstance(busy, SendNow)
    assert orjson.loads(busy.text)[:3] == [4, "7", "GenericError"]
    ep.result("7", {"currentTime": "2026-01-01T00:00:00Z"})
    # answered: the same id with another action is a new message
    assert ep.receive(other) == IncomingCall("7", "MeterValues", orjson.loads(other)[3])
    ep.result("7", {})
    # and the first frame again is new again (its answer was replaced)
    assert isinstance(ep.receive(first), IncomingCall)


def test_a_transient_error_is_not_replayed_for_a_repeated_message_id() -> None:
    ep = central()
    call = frame(2, "7", "Heartbeat", {})
    assert isinstance(ep.receive(call), IncomingCall)
    ep.error("7", OcppError(Fault.INTERNAL, "temporarily unable to store"), remember=False)
    # the station's retry with the same id is handled anew, then answered from memory
    assert ep.receive(call) == IncomingCall("7", "Heartbeat", {})
    text = ep.result("7", {"currentTime": "2026-01-01T00:00:00Z"})
    assert ep.receive(call) == SendNow(text, "repeated message id '7': answer sent again")


def test_the_connections_of_one_version_share_their_set_of_handled_actions() -> None:
    first, second = central(), central()
    assert first._handles is second._handles
    assert first._handles == {"Heartbeat", "MeterValues"}
    # another set is its own
    assert Endpoint(OcppVersion.V16, handles={"Heartbeat"})._handles == {"Heartbeat"}
