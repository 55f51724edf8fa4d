"""Which operator commands carry a credential, and what the audit trail may keep of them."""

from __future__ import annotations

from typing import Any

import pytest

from csms.translate.commands import (
    REDACTED,
    carries_secret,
    new_password,
    password_accepted,
    redacted_args,
    redacted_response,
)

PW = "brand-new-password-42"


@pytest.mark.parametrize(("command", "args", "password", "secret"), [
    ("set-password", {"password": PW}, PW, True),
    ("set-config", {"key": "AuthorizationKey", "value": PW}, PW, True),
    ("set-config", {"key": "authorizationkey", "value": PW}, PW, True),
    ("set-config", {"key": "WifiPassword", "value": PW}, None, True),
    ("set-config", {"key": "HeartbeatInterval", "value": "60"}, None, False),
    ("set-variables", {"values": {"SecurityCtrlr.BasicAuthPassword": PW}}, PW, True),
    ("set-variables", {"values": {"securityctrlr.basicauthpassword": PW, "A.B": "1"}}, PW,
     True),
    ("set-variables", {"values": {"OCPPCommCtrlr.HeartbeatInterval": "60"}}, None, False),
    ("reset", {"hard": True}, None, False),
])
def test_commands_that_set_a_password_or_carry_a_secret(
    command: str, args: dict[str, Any], password: str | None, secret: bool,
) -> None:
    assert new_password(command, args) == password
    assert carries_secret(command, args) is secret
    if secret:
        assert PW not in str(redacted_args(command, args))


def test_redacted_args_keep_what_is_not_secret() -> None:
    args = {"values": {"SecurityCtrlr.BasicAuthPassword": PW, "OCPPCommCtrlr.X": "7"}}
    assert redacted_args("set-variables", args) == {
        "values": {"SecurityCtrlr.BasicAuthPassword": REDACTED, "OCPPCommCtrlr.X": "7"}}
    assert redacted_args("set-config", {"key": "AuthorizationKey", "value": PW}) == {
        "key": "AuthorizationKey", "value": REDACTED}
    assert redacted_args("reset", {"hard": True}) == {"hard": True}


def test_answers_that_leak_a_password_are_redacted() -> None:
    v16 = {"configurationKey": [{"key": "AuthorizationKey", "readonly": False, "value": PW},
                                {"key": "HeartbeatInterval", "readonly": False, "value": "60"}]}
    assert redacted_response(v16)["configurationKey"] == [
        {"key": "AuthorizationKey", "readonly": False, "value": REDACTED},
        {"key": "HeartbeatInterval", "readonly": False, "value": "60"}]
    v201 = {"getVariableResult": [{"attributeStatus": "Accepted", "attributeValue": PW,
                                   "component": {"name": "SecurityCtrlr"},
                                   "variable": {"name": "BasicAuthPassword"}}]}
    assert redacted_response(v201)["getVariableResult"][0]["attributeValue"] == REDACTED


@pytest.mark.parametrize(("action", "response", "accepted"), [
    ("ChangeConfiguration", {"status": "Accepted"}, True),
    ("ChangeConfiguration", {"status": "RebootRequired"}, False),
    ("ChangeConfiguration", {"status": "Rejected"}, False),
    ("SetVariables", {"setVariableResult": [
        {"attributeStatus": "Accepted", "component": {"name": "OCPPCommCtrlr"},
         "variable": {"name": "HeartbeatInterval"}},
        {"attributeStatus": "Rejected", "component": {"name": "SecurityCtrlr"},
         "variable": {"name": "BasicAuthPassword"}}]}, False),
    ("SetVariables", {"setVariableResult": [
        {"attributeStatus": "Accepted", "component": {"name": "SecurityCtrlr"},
         "variable": {"name": "BasicAuthPassword"}}]}, True),
])
def test_password_accepted(action: str, response: dict[str, Any], accepted: bool) -> None:
    assert password_accepted(action, response) is accepted


def test_every_command_is_built_by_both_version_modules() -> None:
    from csms.translate import (
        commands_v16,
        commands_v201,
        more_commands_v16,
        more_commands_v201,
    )
    from csms.translate.commands import COMMANDS

    for module, more in ((commands_v16, more_commands_v16),
                         (commands_v201, more_commands_v201)):
        assert not set(module.__all__) & set(more.__all__)
        assert sorted([*module.__all__, *more.__all__]) == sorted(set(COMMANDS.values()))
        for name in COMMANDS.values():
            assert callable(getattr(module, name, None) or getattr(more, name)), (
                module.__name__, name)
