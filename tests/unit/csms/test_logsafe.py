"""Credentials never reach a log line: the redaction table and the filter."""

from __future__ import annotations

import logging

import pytest

from csms.logsafe import MAX_MESSAGE_CHARS, REDACTED, SecretFilter, redact, visible

PW = "brand-new-password-42"
BASIC = "Q1AxOnMzY3JldC1zdGF0aW9uLXBhc3N3MHJk"


@pytest.mark.parametrize("line", [
    f"< Authorization: Basic {BASIC}",
    f"authorization: bearer {PW}",
    f'> CP1 [2,"a-1","ChangeConfiguration",{{"key":"AuthorizationKey","value":"{PW}"}}]',
    f'[2,"x","SetVariables",{{"setVariableData":[{{"component":{{"name":"SecurityCtrlr"}},'
    f'"variable":{{"name":"BasicAuthPassword"}},"attributeValue":"{PW}"}}]}}]',
    f"{{'password': '{PW}'}}",
    f'{{"values": {{"SecurityCtrlr.BasicAuthPassword": "{PW}"}}}}',
    f'[3,"1",{{"configurationKey":[{{"key":"AuthorizationKey","readonly":false,'
    f'"value":"{PW}"}}]}}]',
    # the station's own order of fields: the value before the name that makes it secret,
    # or another object between them (JSON objects have no order)
    f'[3,"1",{{"configurationKey":[{{"value":"{PW}","key":"AuthorizationKey",'
    f'"readonly":false}}]}}]',
    f'[3,"1",{{"configurationKey":[{{"readonly":false,"value":"{PW}",'
    f'"key":"AuthorizationKey"}}]}}]',
    f'[3,"1",{{"getVariableResult":[{{"attributeStatus":"Accepted","attributeValue":"{PW}",'
    f'"component":{{"name":"SecurityCtrlr"}},"variable":{{"name":"BasicAuthPassword"}}}}]}}]',
    f'[3,"1",{{"getVariableResult":[{{"variable":{{"name":"BasicAuthPassword"}},'
    f'"component":{{"name":"SecurityCtrlr"}},"attributeValue":"{PW}"}}]}}]',
    f"{{'attributeValue': '{PW}', 'variable': {{'name': 'BasicAuthPassword'}}}}",
    # a report's attributes: the values are in the variable's list of attributes
    f'[2,"1","NotifyReport",{{"requestId":1,"reportData":[{{"component":{{"name":"Sec'
    f'urityCtrlr"}},"variable":{{"name":"BasicAuthPassword"}},"variableAttribute":[{{'
    f'"type":"Actual","value":"{PW}"}},{{"type":"Target","value":"{PW}"}}]}}]}}]',
    f'[2,"1","NotifyReport",{{"reportData":[{{"variableAttribute":[{{"value":"{PW}"}}],'
    f'"variable":{{"name":"BasicAuthPassword"}},"component":{{"name":"SecurityCtrlr"}}}}]}}]',
    f"Settings(mqtt='mqtt://node:{PW}@broker:1883', mqtt_ca='')",
    f"cannot reach mqtts://op%40site:{PW}@[::1]:8883",
    f"db=postgresql://voltledger:{PW}@db.example:5432/csms",
])
def test_credentials_are_redacted(line: str) -> None:
    safe = redact(line)
    assert PW not in safe and BASIC not in safe and REDACTED in safe


@pytest.mark.parametrize("line", [
    '[2,"1","ChangeConfiguration",{"key":"HeartbeatInterval","value":"60"}]',
    # the values next to a credential's are not the credential's
    '[3,"1",{"configurationKey":[{"value":"60","key":"HeartbeatInterval"},'
    '{"key":"AuthorizationKey","readonly":false}]}]',
    '[2,"1","NotifyReport",{"reportData":[{"variable":{"name":"BasicAuthPassword"},'
    '"variableAttribute":[{"mutability":"WriteOnly"}]},{"component":{"name":"OCPPCommCtrlr"'
    '},"variable":{"name":"HeartbeatInterval"},"variableAttribute":[{"value":"60"}]}]}]',
    "= CP1 connected (ocpp1.6) from ('127.0.0.1', 5555)",
    "basic idea", "the key is fine",
    "= MQTT connected to mqtts://node@[::1]:8883", "http://127.0.0.1:9001/health",
    "listening on ws://0.0.0.0:9000/<station_id>",
])
def test_other_lines_are_left_alone(line: str) -> None:
    assert redact(line) == line


def test_the_filter_rewrites_header_records() -> None:
    record = logging.LogRecord("websockets.server", logging.DEBUG, __file__, 1, "< %s: %s",
                               ("Authorization", f"Basic {BASIC}"), None)
    assert SecretFilter().filter(record)
    assert record.getMessage() == f"< Authorization: {REDACTED}"


MEGABYTE = 1 << 20


@pytest.mark.parametrize(("hostile", "tail"), [
    # a quote, then a name word repeated: the former last pattern backtracked over every
    # "password" for each one (64 KB held the event loop for seconds)
    ("'" + "password" * (MEGABYTE // 8), f' {{"password": "{PW}"}}'),
    ("'password' " * (MEGABYTE // 11), f' {{"password": "{PW}"}}'),
    # scheme characters with word boundaries everywhere: a URL was tried from each one
    ("a." * (MEGABYTE // 2), f" mqtt://node:{PW}@broker"),
    ('"key":"AuthorizationKey",' * (MEGABYTE // 25),
     f'{{"key":"AuthorizationKey","value":"{PW}"}}'),
    ('"variable":{"name":"BasicAuthPassword",' * (MEGABYTE // 40),
     f'{{"variable":{{"name":"BasicAuthPassword"}},"attributeValue":"{PW}"}}'),
    ("authorization " * (MEGABYTE // 14), f"authorization: bearer {PW}"),
])
def test_a_megabyte_of_hostile_text_is_redacted_to_its_end(hostile: str, tail: str) -> None:
    """Text made to make a pattern try again from everywhere is still read through (each
    pattern reads it in one pass), and a credential after it is still found."""
    safe = redact(hostile + tail)
    assert PW not in safe and safe.endswith(redact(tail)) and REDACTED in redact(tail)


def test_a_long_message_is_cut_before_it_is_redacted() -> None:
    """What a station sent may reach a log line (an error's description, a frame at debug
    level): the filter cuts the line to MAX_MESSAGE_CHARS first, so no line costs more
    than that to redact, and says how much it left out."""
    hostile = "'" + "password" * (MEGABYTE // 8)
    record = logging.LogRecord("csms.server", logging.WARNING, __file__, 1,
                               "! %s %s not answered: %r", ("CP1", f"{{'password': '{PW}'}}",
                                                            hostile), None)
    whole = record.getMessage()
    assert SecretFilter().filter(record)
    message = record.getMessage()
    assert PW not in message and REDACTED in message
    assert len(message) < MAX_MESSAGE_CHARS + 100
    assert message.endswith(f"... [{len(whole) - MAX_MESSAGE_CHARS} more characters not logged]")


def test_a_short_message_is_left_as_it_is() -> None:
    record = logging.LogRecord("csms.server", logging.INFO, __file__, 1, "= %s %s",
                               ("CP1", "x" * (MAX_MESSAGE_CHARS - 6)), None)
    assert SecretFilter().filter(record)
    assert record.args is not None
    assert record.getMessage() == f"= CP1 {'x' * (MAX_MESSAGE_CHARS - 6)}"


@pytest.mark.parametrize(("text", "shown"), [
    ("tag\nERROR forged", "tag\\x0aERROR forged"),
    ("\x1b]8;;http://e\x1b\\x", "\\x1b]8;;http://e\\x1b\\x"),
    ("csi\x9b2J", "csi\\x9b2J"),  # a C1 CSI, obeyed by some terminals without ESC
    ("1.0\u202egpj.exe", "1.0\\u202egpj.exe"),  # a right-to-left override
    ("zero\u200bwidth\ufeff", "zero\\u200bwidth\\ufeff"),
    ("lone\ud800", "lone\\ud800"),  # no encoding writes it: printed, it was an error
    ("Grüße, 電気 ⚡", "Grüße, 電気 ⚡"),  # what is shown stays as it is
])
def test_visible_escapes_what_a_terminal_would_obey(text: str, shown: str) -> None:
    assert visible(text) == shown
    assert "\n" not in visible(text) and visible(text).encode("utf-8")  # one line, writable


def _logged_with_traceback(exc: BaseException) -> str:
    """What a handler with the filter writes of ``log.exception`` while ``exc`` is handled
    (chained to the error it was raised from)."""
    import io

    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    handler.addFilter(SecretFilter())
    log = logging.getLogger("csms.test_logsafe")
    log.addHandler(handler)
    log.propagate = False
    try:
        try:
            raise KeyError("the first\nERROR csms.admin: forged by the cause")
        except KeyError as cause:
            raise exc from cause
    except BaseException:
        log.exception("! the handler failed")
    finally:
        log.removeHandler(handler)
    return out.getvalue()


def test_an_exception_s_text_writes_no_line_of_its_own_nor_a_credential() -> None:
    """An exception's message may quote what a station sent (or a URL with its password):
    the traceback's frames are ours and keep their lines, the message of every exception
    of the chain is one line, escaped and redacted as a record's message is."""
    text = _logged_with_traceback(ValueError(
        f"bad idTag 'x\nERROR csms.admin: forged' at db=postgresql://u:{PW}@db:5432/x"
        "\x1b]8;;http://e\x1b\\"))
    assert PW not in text and REDACTED in text
    lines = text.splitlines()
    assert not [line for line in lines if line.startswith("ERROR csms.admin")], text
    assert "\x1b" not in text
    assert lines[0] == "ERROR csms.test_logsafe: ! the handler failed"
    # the traceback is still there: both exceptions, their frames and the chain's words
    assert any(line.startswith("KeyError: ") for line in lines)
    assert any(line.startswith("ValueError: bad idTag 'x\\x0aERROR") for line in lines)
    assert "The above exception was the direct cause" in text
    assert sum(line.startswith('  File "') for line in lines) >= 2


def test_an_exception_group_s_messages_stay_under_its_margin() -> None:
    """A TaskGroup's error (an exception group) formats its messages under a margin: a
    line break in one is indented there, never a line of its own at the start."""
    text = _logged_with_traceback(ExceptionGroup(f"group\nERROR at mqtt://n:{PW}@b", [
        ValueError("one\nERROR forged"), OSError(f"mqtt://n:{PW}@broker")]))
    assert PW not in text
    assert not [line for line in text.splitlines()[1:] if line and not line.startswith(
        ("Traceback", " ", "KeyError", "The above"))], text


def test_unshown_as_json_escapes_what_a_terminal_obeys_and_keeps_the_value() -> None:
    """JSON encoders escape C0 controls only: a C1 CSI (0x9b), DEL or a bidi override in a
    station's string reached the terminal of ``csms ... --json`` as it was."""
    import json

    from csms.logsafe import unshown_as_json

    value = {"vendor": "a\x9b2J\x7f", "firmware": "fw\u202egpj.exe", "ok": ["é", "[red]x"]}
    text = json.dumps(value, ensure_ascii=False, indent=2)
    shown = unshown_as_json(text)
    assert json.loads(shown) == value
    assert not any(c in shown for c in "\x9b\x7f\u202e")
    assert "\\u009b" in shown and "\\u202e" in shown and "é" in shown
    assert shown.count("\n") == text.count("\n")  # the indent's line breaks are kept
