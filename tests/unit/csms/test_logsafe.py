"""Credentials never reach a log line: the redaction table and the filter."""

from __future__ import annotations

import logging

import pytest

from csms.logsafe import REDACTED, SecretFilter, redact

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
    f"Settings(mqtt='mqtt://node:{PW}@broker:1883', mqtt_ca='')",
    f"cannot reach mqtts://op%40site:{PW}@[::1]:8883",
    f"db=postgresql://voltledger:{PW}@db.example:5432/csms",
])
def test_credentials_are_redacted(line: str) -> None:
    safe = redact(line)
    assert PW not in safe and BASIC not in safe and REDACTED in safe


@pytest.mark.parametrize("line", [
    '[2,"1","ChangeConfiguration",{"key":"HeartbeatInterval","value":"60"}]',
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
