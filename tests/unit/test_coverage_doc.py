"""docs/ocpp-coverage.md is what the code says, and every handled action is tested."""

from __future__ import annotations

import pytest

from csms.coverage import BLOCKS, DOC, Row, actions, block_of, render, rows, uncovered_blocks
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


def test_every_action_is_in_the_simulator_and_tested_against_it(table: list[Row]) -> None:
    no_sim = [f"{r.version.short} {r.action}" for r in table if not r.simulator]
    assert not no_sim, f"the simulated station neither sends nor answers: {no_sim}"
    untested = [f"{r.version.short} {r.action}" for r in table if not r.sim_tested]
    assert not untested, f"no test that drives the simulated station names them: {untested}"


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
              False, "Reservation")
    text = render([row])
    assert "| ReserveNow | Reservation | CSMS -> station | **no** | - | **no** | **no** |" \
        in text
    assert "| Reservation | 0 | **none** |" in text
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


def test_every_block_with_a_handled_action_has_a_strict_client_sample(
        table: list[Row]) -> None:
    missing = uncovered_blocks(table)
    assert not missing, f"no action of these blocks is exercised with ocpp-rpc: {missing}"


def test_a_block_without_a_sample_is_reported() -> None:
    rows_ = [Row(OcppVersion.V201, "SendLocalList", "CSMS -> station", True, (), True,
                 ("tests/e2e/x.py",), True, False, "D LocalAuthorizationListManagement"),
             Row(OcppVersion.V201, "CostUpdated", "CSMS -> station", True, (), True,
                 ("tests/e2e/y.js",), False, True, "I TariffAndCost"),
             Row(OcppVersion.V16, "ReserveNow", "CSMS -> station", False, (), False, (),
                 False, False, "Reservation")]  # not handled: nothing to sample
    assert uncovered_blocks(rows_) == ["2.0.1 D LocalAuthorizationListManagement"]


def test_blocks_follow_the_specifications() -> None:
    for version in OcppVersion:
        listed = [a for names in BLOCKS[version].values() for a in names]
        assert sorted(listed) == actions(version)  # each action in exactly one block
    # 1.6: six feature profiles (28 actions) and the security extension (11)
    assert len(BLOCKS[OcppVersion.V16]) == 7
    assert sum(len(v) for k, v in BLOCKS[OcppVersion.V16].items() if k != "Security") == 28
    assert len(BLOCKS[OcppVersion.V201]) == 16  # A ... P
    assert block_of(OcppVersion.V201, "CostUpdated") == "I TariffAndCost"
    assert block_of(OcppVersion.V201, "SetNetworkProfile") == "B Provisioning"
    assert block_of(OcppVersion.V16, "TriggerMessage") == "RemoteTrigger"
    assert block_of(OcppVersion.V16, "ExtendedTriggerMessage") == "Security"


def test_only_what_a_script_sends_or_answers_for_a_version_counts() -> None:
    from csms.coverage import _js_literals

    one_version = """
    const cli = new RPCClient({ endpoint, identity, protocols: ['ocpp2.0.1'] });
    cli.handle('CertificateSigned', () => ({ status: 'Accepted' }));
    log.csmsCalls.push({ method: 'GetBaseReport' });
    """
    found = _js_literals(one_version)
    assert found[OcppVersion.V201] == {"CertificateSigned"}  # a mere name is not a call
    assert found[OcppVersion.V16] == set()  # the script never speaks 1.6
