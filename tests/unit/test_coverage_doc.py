"""docs/ocpp-coverage.md is what the code says, and every handled action is tested."""

from __future__ import annotations

import pytest

from csms.coverage import DOC, Row, actions, render, rows
from csms.protocol import OcppVersion


@pytest.fixture(scope="module")
def table() -> list[Row]:
    return rows()


def test_the_committed_table_is_the_generated_one(table: list[Row]) -> None:
    assert DOC.read_text("utf-8") == render(table), (
        "docs/ocpp-coverage.md is stale: run `python -m csms.coverage --write`")


def test_every_handled_action_is_tested(table: list[Row]) -> None:
    untested = [f"{r.version.short} {r.action}" for r in table if r.handled and not r.tested]
    assert not untested, f"handled but no test over real sockets names them: {untested}"


def test_every_action_of_both_versions_is_listed(table: list[Row]) -> None:
    v16, v201 = actions(OcppVersion.V16), actions(OcppVersion.V201)
    # 1.6: the six feature profiles (28 actions) and the security extension (11)
    assert len(v16) == 39 and {"ExtendedTriggerMessage", "SignedUpdateFirmware",
                               "GetCompositeSchedule", "ReserveNow"} <= set(v16)
    assert len(v201) == 64 and {"CostUpdated", "NotifyEVChargingNeeds",
                                "SetNetworkProfile", "Get15118EVCertificate"} <= set(v201)
    assert [(r.version, r.action) for r in table] == [
        *((OcppVersion.V16, a) for a in v16), *((OcppVersion.V201, a) for a in v201)]


def test_directions_and_commands(table: list[Row]) -> None:
    by = {(r.version.short, r.action): r for r in table}
    assert by["1.6", "DataTransfer"].direction == "both"
    assert by["2.0.1", "NotifyDisplayMessages"].direction == "station -> CSMS"
    assert by["2.0.1", "CostUpdated"].commands == ("csms remote cost-updated",)
    assert "csms remote trigger" in by["1.6", "ExtendedTriggerMessage"].commands
    assert "csms stations set-password" in by["2.0.1", "SetVariables"].commands


def test_the_table_can_say_no() -> None:
    row = Row(OcppVersion.V16, "ReserveNow", "CSMS -> station", False, (), False, (), False,
              False)
    text = render([row])
    assert "| ReserveNow | CSMS -> station | **no** | - | **no** | **no** |" in text
    assert "1 actions: 0 handled, 0 of them tested." in text


def test_an_interop_script_counts_per_version_branch() -> None:
    from csms.coverage import _js_literals

    script = """
    cli.handle('Reset', () => ({ status: 'Accepted' }));
    if (protocol === 'ocpp1.6') {
      answer('DataTransfer', () => ({ status: 'Accepted' }));
      r.start = await cli.call('StartTransaction', { connectorId: 1 });
    } else {
      answer('CostUpdated', () => ({}));
    }
    await cli.call('Heartbeat', {});
    """
    found = _js_literals(script)
    assert {"Reset", "Heartbeat", "DataTransfer", "StartTransaction"} <= found[OcppVersion.V16]
    assert "CostUpdated" not in found[OcppVersion.V16]
    assert {"Reset", "Heartbeat", "CostUpdated"} <= found[OcppVersion.V201]
    assert not {"DataTransfer", "StartTransaction"} & found[OcppVersion.V201]
