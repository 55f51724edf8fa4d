from __future__ import annotations

import pytest

from csms.protocol import Call, CallError, CallResult, Fault, FrameError, encode, parse_frame
from csms.protocol.frames import (
    MAX_DESCRIPTION_LENGTH,
    MAX_ERROR_CODE_LENGTH,
    MAX_FRAME_DEPTH,
    encode_result,
    frame_of,
    split_frame,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('[2,"1","Heartbeat",{}]', Call("1", "Heartbeat", {})),
        ('[3,"abc",{"currentTime":"x"}]', CallResult("abc", {"currentTime": "x"})),
        ('[4,"9","NotImplemented","no",{}]', CallError("9", "NotImplemented", "no", {})),
        (b'[2,"1","Heartbeat",{}]', Call("1", "Heartbeat", {})),
    ],
)
def test_parse_valid(text: str, expected: object) -> None:
    assert parse_frame(text) == expected


@pytest.mark.parametrize(
    ("text", "fault", "message_id", "answerable"),
    [
        ("not json", Fault.RPC_FRAMEWORK, "-1", True),
        ("", Fault.RPC_FRAMEWORK, "-1", True),
        ("{}", Fault.RPC_FRAMEWORK, "-1", True),
        ("[]", Fault.RPC_FRAMEWORK, "-1", True),
        ("[2]", Fault.RPC_FRAMEWORK, "-1", True),
        ('[2, 5, "Heartbeat", {}]', Fault.RPC_FRAMEWORK, "-1", True),
        ('[2, "", "Heartbeat", {}]', Fault.RPC_FRAMEWORK, "-1", True),
        ('[2, "' + "x" * 37 + '", "Heartbeat", {}]', Fault.RPC_FRAMEWORK, "-1", True),
        ('["2", "7", "Heartbeat", {}]', Fault.RPC_FRAMEWORK, "7", True),
        ('[true, "7", "Heartbeat", {}]', Fault.RPC_FRAMEWORK, "7", True),
        ('[2, "7", "Heartbeat"]', Fault.RPC_FRAMEWORK, "7", True),
        ('[2, "7", 12, {}]', Fault.RPC_FRAMEWORK, "7", True),
        ('[2, "7", "Heartbeat", []]', Fault.FORMAT, "7", True),
        ('[2, "7", "Heartbeat", "x"]', Fault.FORMAT, "7", True),
        ('[9, "7", "Heartbeat", {}]', Fault.MESSAGE_TYPE_NOT_SUPPORTED, "7", True),
        ('[3, "7"]', Fault.FORMAT, "7", False),
        ('[4, "7", "X"]', Fault.FORMAT, "7", False),
    ],
)
def test_parse_invalid(text: str, fault: Fault, message_id: str, answerable: bool) -> None:
    with pytest.raises(FrameError) as info:
        parse_frame(text)
    assert info.value.fault is fault
    assert info.value.message_id == message_id
    assert info.value.answerable is answerable


@pytest.mark.parametrize("text", [
    '[2,"1","Heartbeat",{}]', b'[2,"1","Heartbeat",{}]', '[3,"abc",{"currentTime":"x"}]',
    '[4,"9","' + "C" * 60 + '","' + "d" * 300 + '",{"k":1}]'])
def test_a_split_frame_is_the_parsed_frame(text: str | bytes) -> None:
    assert frame_of(*split_frame(text)) == parse_frame(text)


@pytest.mark.parametrize("payload", [{}, {"a": [1, "é", None, 2**63 - 1]}, {"x": {"y": 1.5}}])
def test_a_result_is_encoded_as_its_frame(payload: dict[str, object]) -> None:
    assert encode_result("7", payload) == encode(CallResult("7", payload))


def test_encode_round_trip() -> None:
    for frame in (
        Call("1", "Heartbeat", {}),
        CallResult("2", {"a": 1}),
        CallError("3", "GenericError", "oops", {"k": "v"}),
    ):
        assert parse_frame(encode(frame)) == frame


def test_encode_truncates_long_description() -> None:
    text = encode(CallError("3", "GenericError", "x" * 1000, {}))
    parsed = parse_frame(text)
    assert isinstance(parsed, CallError)
    assert len(parsed.description) == 255


def test_a_received_callerror_is_cut_to_its_limits() -> None:
    """A station's CALLERROR may carry a frame-long code and description; what is kept
    (and may be logged or stored) is cut to 2.0.1's 255 characters of description and
    MAX_ERROR_CODE_LENGTH of code (the standard codes are at most 29)."""
    parsed = parse_frame(f'[4,"9","{"E" * 1000}","{"password" * 8000}",{{}}]')
    assert isinstance(parsed, CallError)
    assert parsed.code == "E" * MAX_ERROR_CODE_LENGTH
    assert parsed.description == ("password" * 8000)[:MAX_DESCRIPTION_LENGTH]


def test_numbers_beyond_64_bits_and_a_double_are_read_exactly() -> None:
    big = 123456789012345678901234567890
    frame = parse_frame(f'[2,"1","X",{{"a":{big},"b":1e400,"c":"{"9" * 32}"}}]')
    assert isinstance(frame, Call)
    assert frame.payload == {"a": big, "b": float("inf"), "c": "9" * 32}
    assert parse_frame(f'[2,"1","X",{{"a":{big}}}]'.encode()).payload == {"a": big}  # type: ignore[union-attr]
    with pytest.raises(FrameError):
        parse_frame('[2,"1","X",{"a":NaN}]')  # not JSON


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1" * 18, False),
        ("1" * 19, True),
        ('{"a":-' + "9" * 25 + "}", True),
        ('{"a":1234567890.1234567890}', False),  # a dot breaks the run
        ('{"t":"2026-12-01T17:18:21.123456789Z","v":12345678901234567}', False),
        ("é" + "7" * 20 + "€", True),
        ("٣" * 40, False),  # Arabic-Indic digits: only ever inside a string
        ("", False),
    ],
)
def test_long_digit_runs_are_found_in_text_and_bytes(text: str, expected: bool) -> None:
    from csms.protocol.frames import has_long_digit_run

    assert has_long_digit_run(text) is expected
    assert has_long_digit_run(text.encode()) is expected


def test_integers_just_beyond_64_bits_are_read_exactly() -> None:
    # orjson turns both into floats: 2**64 (20 digits) and -2**63 - 1 (19 digits).
    frame = parse_frame(f'[2,"1","X",{{"a":{2**64},"b":{2**64 - 1},"c":{-(2**63) - 1}}}]')
    assert frame.payload == {  # type: ignore[union-attr]
        "a": 2**64, "b": 2**64 - 1, "c": -(2**63) - 1}


@pytest.mark.parametrize("as_bytes", [False, True])
def test_nul_characters_are_read_as_the_replacement_character(as_bytes: bool) -> None:
    text = '[2,"1","X",{"a\\u0000":"b\\u0000c","l":[{"d":"\\u0000"}],"n":1}]'
    frame = parse_frame(text.encode() if as_bytes else text)
    assert frame.payload == {  # type: ignore[union-attr]
        "a\ufffd": "b\ufffdc", "l": [{"d": "\ufffd"}], "n": 1}


def test_an_escaped_backslash_before_u0000_is_text_not_a_nul() -> None:
    frame = parse_frame('[2,"1","X",{"a":"\\\\u0000"}]')
    assert frame.payload == {"a": "\\u0000"}  # type: ignore[union-attr]


def test_a_nul_deep_in_a_nested_payload_is_a_frame_error_not_a_crash() -> None:
    deep = '{"a":' * 1000 + '"\\u0000"' + "}" * 1000
    try:
        frame = parse_frame(f'[2,"1","X",{deep}]')
    except FrameError as exc:  # too deep for the parser, or beyond MAX_FRAME_DEPTH
        assert (exc.fault, str(exc)) in {
            (Fault.RPC_FRAMEWORK, "invalid JSON: nested too deep"),
            (Fault.FORMAT, "nested deeper than 128 levels")}, exc
    else:
        inner = frame.payload  # type: ignore[union-attr]
        for _ in range(1000):
            inner = inner["a"]
        assert inner == "\ufffd"


@pytest.mark.parametrize("as_bytes", [False, True])
def test_lone_surrogates_are_read_as_the_replacement_character(as_bytes: bool) -> None:
    text = '[2,"1","X",{"a":"x\\ud800","\\udfff":["\\ud83d\\ude00"]}]'
    frame = parse_frame(text.encode() if as_bytes else text)
    assert frame.payload == {  # type: ignore[union-attr]
        "a": "x\ufffd", "\ufffd": ["\U0001f600"]}


def test_dumps_writes_an_integer_beyond_64_bits_exactly() -> None:
    import json
    from datetime import UTC, datetime

    from csms.protocol.frames import dumps

    at = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    value = {"session": 2**70, "at": at, "name": "Zoë"}
    for indent in (False, True):
        text = dumps(value, indent=indent)
        assert json.loads(text) == {"session": 2**70, "at": at.isoformat(), "name": "Zoë"}
    assert dumps({"a": [1, 2]}) == '{"a":[1,2]}'  # orjson's, compact


def _call_nested(levels: int, *, in_dict: bool = False, text: str = "") -> str:
    """A CALL nested ``levels`` deep, its array included (its payload is the second)."""
    inner = '{"a":' * (levels - 2) + "1" + "}" * (levels - 2) if in_dict \
        else "[" * (levels - 2) + "]" * (levels - 2)
    return f'[2,"m1","DataTransfer",{{"vendorId":"V","t":"{text}","data":{inner}}}]'


@pytest.mark.parametrize("in_dict", [False, True])
@pytest.mark.parametrize("as_bytes", [False, True])
def test_a_frame_nested_beyond_the_limit_is_refused_by_its_id(in_dict: bool,
                                                              as_bytes: bool) -> None:
    at_limit = _call_nested(MAX_FRAME_DEPTH, in_dict=in_dict)
    beyond = _call_nested(MAX_FRAME_DEPTH + 1, in_dict=in_dict)
    assert split_frame(at_limit.encode() if as_bytes else at_limit)[0] == 2
    with pytest.raises(FrameError) as err:
        split_frame(beyond.encode() if as_bytes else beyond)
    assert (err.value.fault, err.value.message_id, err.value.answerable) == (
        Fault.FORMAT, "m1", True)
    assert err.value.description == f"nested deeper than {MAX_FRAME_DEPTH} levels"


def test_brackets_in_strings_and_wide_frames_do_not_count_as_nesting() -> None:
    many = "[" * (MAX_FRAME_DEPTH * 4)  # in a string: walked, nothing nested
    assert split_frame(_call_nested(3, text=many))[0] == 2
    wide = '[2,"m1","DataTransfer",{"vendorId":"V","data":[' + ",".join(
        ["[[{}]]"] * 1000) + "]}]"  # 4,000 containers, 6 levels
    assert split_frame(wide)[0] == 2


def test_an_answer_nested_beyond_the_limit_is_never_answered() -> None:
    deep = "[" * MAX_FRAME_DEPTH + "]" * MAX_FRAME_DEPTH
    with pytest.raises(FrameError) as err:
        split_frame(f'[3,"m7",{{"x":{deep}}}]')
    assert (err.value.fault, err.value.message_id, err.value.answerable) == (
        Fault.FORMAT, "m7", False)
