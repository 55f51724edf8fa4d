"""Real OCPP 2.0.1 frames that charging stations sent, played through real sockets against
a real server, and what the central system does with them.

Each frame is copied from a public log (the source is named beside it). Where the log
shows the frame as a library parsed it (snake_case keys, its own nulls), the keys are
written back in the wire's camelCase and the library's nulls dropped; nothing else is
changed. A 2.0.1 transactionId is the station's own and stays as it sent it. The frames
keep their times: csms.protocol.timestamps reads KEBA's "+0000" offsets, and a
transaction time is judged against the station's registration (earlier than 30 days
before it is ``time_implausible``, csms.service.sessions), so the KEBA is registered
before its session - and one test registers it today, to show what a replay of old
frames gets. Scaffolding around a real frame says so, and so does a hostile station's
variant of one. The energy billed is worked out by hand beside each test.

Public 2.0.1 frames of real stations are few: what was found is here (KEBA P30, EVBox
Livo, Schneider EVlink, FoxESS A-series, and EVerest's simulated AC wallbox);
tests/integration/csms/test_real_frames.py has EVerest's Updated event and the Iocharger
values.
"""

from __future__ import annotations

import asyncio
import copy
import json
from datetime import UTC, datetime
from typing import Any

from csms.domain.model import BILLING_HOLD_FLAGS
from support import RunningServer, csms_cli
from support import is_queued as queued
from support.admin import api
from support.client import RawClient
from support.ocmf_vectors import KEBA_P30_STARTED, keba_p30_ended
from support.ocmf_vectors import KEBA_P30_TX as KEBA_TX


def one(sessions: list[dict[str, Any]], txid: str) -> dict[str, Any]:
    [s] = [s for s in sessions if s["transaction_id"] == txid]
    return dict(s)


def station(server: RunningServer, station_id: str) -> dict[str, Any]:
    shown = csms_cli(server, "stations", "show", station_id, "--json")
    assert shown.returncode == 0, shown.stderr
    return dict(json.loads(shown.stdout))


async def boot201(c: RawClient) -> None:
    """Scaffolding: a BootNotification, for the stations whose boot was not published."""
    await c.result("BootNotification", {"reason": "PowerUp",
                                        "chargingStation": {"vendorName": "V", "model": "M"}})


# -- KEBA KeContact P30 (OCMF "GI":"KEBA_KCP30", "GV":"2.9.2"), a whole 2.0.1 session -----
# m-hegele/notes, dev/keba-invalid-meter-start-stop.md: the operator's central system
# logged both events in mobilityhouse/ocpp's parsed form (keys written back in camelCase,
# the library's nulls dropped). Started: its begin reading bare - no measurand, no unit,
# so the 2.0.1 defaults, Energy.Active.Import.Register in Wh. Ended: the begin and end
# registers in Wh, and beside them the meter's signed OCMF readings, whose bare value is
# the reading in kWh (the note's base64 container and key are support.ocmf_vectors'
# KEBA_P30_CONTAINER, base64-encoded, and KEBA_P30_PUBLIC_KEY - the same bytes).
KEBA = "P30_28881628"
KEBA_REGISTERED = datetime(2025, 8, 1, tzinfo=UTC)
KEBA_STARTED = KEBA_P30_STARTED
KEBA_ENDED = keba_p30_ended()  # as logged


async def keba(server: RunningServer, *events: dict[str, Any],
               registered: datetime = KEBA_REGISTERED,
               meter_keys: tuple[tuple[str, ...], ...] = (),
               ) -> tuple[list[list[Any]], list[dict[str, Any]]]:
    """The KEBA's events over one connection: the answer to each, the session after each.
    ``meter_keys``: the arguments of each ``csms stations set-meter-key KEBA`` the operator
    ran before."""
    await server.add_station(KEBA, registered_at=registered)
    await server.add_tag("3A5AA876")
    for args in meter_keys:
        r = csms_cli(server, "stations", "set-meter-key", KEBA, *args)
        assert r.returncode == 0, r.stderr
    answers: list[list[Any]] = []
    during: list[dict[str, Any]] = []
    async with await RawClient.connect(server.url, KEBA, ["ocpp2.0.1"]) as c:
        await boot201(c)
        for event in events:
            answers.append(await c.call("TransactionEvent", event))
            during.append(one(await server.sessions(KEBA), KEBA_TX))
    return answers, during


async def test_a_keba_p30_session_is_billed_from_its_begin_and_end_registers(
    csms_server: RunningServer,
) -> None:
    answers, (started, s) = await keba(csms_server, KEBA_STARTED, KEBA_ENDED)
    assert answers[0] == [3, answers[0][1], {"idTokenInfo": {"status": "Accepted"}}]
    assert answers[1][0] == 3 and answers[1][2]["idTokenInfo"]["status"] == "Accepted"
    # after Started: the bare begin reading is the outlet's import register in Wh (the
    # 2.0.1 defaults), so the session starts at 2,114,135.6 Wh with nothing delivered
    assert started["status"] == "active" and started["id_tag"] == "3A5AA876"
    assert started["meter_start_wh"] == 2114135.6 and started["energy_wh"] == 0
    assert started["flags"] == []
    # 2,133,854.3 - 2,114,135.6 = 19,718.7 Wh, billed 19,719 Wh (~3 kW for the 6.5 h from
    # 07:03:36 to 13:34:41): honest readings, no hold
    assert s["status"] == "completed" and s["energy_wh"] == 19719, s
    assert (s["meter_start_wh"], s["meter_stop_wh"]) == (2114135.6, 2133854.3)
    assert not BILLING_HOLD_FLAGS.intersection(s["flags"]), s["flags"]
    assert await queued(csms_server, s["id"])


async def test_the_keba_as_evse_2_of_a_wallbox_with_a_meter_per_evse_is_billed(
    csms_server: RunningServer,
) -> None:
    """The KEBA's session on EVSE 2 of a wallbox with a meter per EVSE (scaffolding: the
    events name EVSE 2): the station's key is EVSE 1's meter's (another meter: the KEBA
    KCP30 record's key), the operator registered the P30's key, as printed on its meter, for
    EVSE 2. The session is verified with EVSE 2's key, not the station's, and billed; the
    key the P30 sends in its events is the one registered, so no key changed."""
    from support.ocmf_vectors import KEBA_KEY, KEBA_P30_KEY, KEBA_P30_PUBLIC_KEY

    on_evse_2 = [copy.deepcopy(KEBA_STARTED), copy.deepcopy(KEBA_ENDED)]
    for event in on_evse_2:
        event["evse"] = {"id": 2, "connectorId": 1}
    answers, (_, s) = await keba(csms_server, *on_evse_2, meter_keys=(
        (KEBA_KEY,), (KEBA_P30_PUBLIC_KEY, "--evse", "2")))
    assert [a[0] for a in answers] == [3, 3]
    assert s["evse_id"] == 2 and s["energy_wh"] == 19719, s
    assert not BILLING_HOLD_FLAGS.intersection(s["flags"]), s["flags"]
    assert await queued(csms_server, s["id"])
    shown = station(csms_server, KEBA)
    assert shown["meter_public_key"] == KEBA_KEY.lower()
    assert shown["evse_meter_keys"] == [{"evse_id": 2, "public_key": KEBA_P30_KEY}]


async def test_the_keba_frames_replayed_at_a_station_registered_today_are_held(
    csms_server: RunningServer,
) -> None:
    """The same real frames, from a station registered today: their times (August 2025)
    are more than 30 days before its registration. Each event is acknowledged (the
    station must not retry them for ever), the session is held, not billed."""
    answers, (_, s) = await keba(csms_server, KEBA_STARTED, KEBA_ENDED,
                                 registered=datetime.now(UTC))
    assert [a[0] for a in answers] == [3, 3]
    assert s["status"] == "completed" and "time_implausible" in s["flags"]
    assert not await queued(csms_server, s["id"])


async def test_a_keba_ended_event_lowering_the_register_holds_the_session(
    csms_server: RunningServer,
) -> None:
    """A hostile station's variant of the KEBA's Ended event: its end register 1 Wh under
    the begin one. A register never goes back: held, never billed as a negative."""
    hostile = copy.deepcopy(KEBA_ENDED)
    hostile["meterValue"][1]["sampledValue"][0]["value"] = 2114134.6
    answers, (_, s) = await keba(csms_server, KEBA_STARTED, hostile)
    assert [a[0] for a in answers] == [3, 3]
    assert s["status"] == "completed" and "meter_went_backwards" in s["flags"], s
    assert not await queued(csms_server, s["id"])


async def test_the_keba_events_sent_again_change_nothing(csms_server: RunningServer) -> None:
    """A station that did not get an answer sends the same event again (2.0.1 use case
    E13, transaction messages are sent again): the KEBA's Started twice and its Ended
    twice, as an answer lost after each would make it. One session, the same 19,719 Wh,
    queued for settlement, no hold."""
    answers, during = await keba(csms_server, KEBA_STARTED, KEBA_STARTED, KEBA_ENDED,
                                 KEBA_ENDED)
    assert [a[0] for a in answers] == [3, 3, 3, 3]
    assert during[1]["meter_start_wh"] == 2114135.6 and during[1]["energy_wh"] == 0
    assert during[3] == during[2]
    s = during[3]
    assert s["energy_wh"] == 19719 and not BILLING_HOLD_FLAGS.intersection(s["flags"])
    assert len(await csms_server.sessions(KEBA)) == 1
    assert await queued(csms_server, s["id"])


async def test_the_keba_ended_event_alone_starts_at_its_begin_reading_and_is_held(
    csms_server: RunningServer,
) -> None:
    """The KEBA's Ended event with its Started lost (never received - a station that
    dropped its queue): acknowledged, and the session held for an operator - a
    transaction seen only at its end (``started_missing``). Its begin readings say when
    it began - 07:03:36.481 the register, 07:03:36 the meter's signed one: the session
    starts at the earliest, not at the Ended event's 13:34:41, so 19,719 Wh in 6.5 h is
    no energy "in no time" (no ``zero_duration_with_energy``). The card in the Ended event
    is not its payer (``token_not_payer``): a station could name any card it has seen in
    an Ended event alone, and whether the card began the transaction or only ended it is
    not known."""
    answers, (s,) = await keba(csms_server, KEBA_ENDED)
    assert answers[0][0] == 3 and answers[0][2]["idTokenInfo"]["status"] == "Accepted"
    assert s["status"] == "completed" and s["energy_wh"] == 19719, s
    assert s["started_at"] == "2025-08-21T07:03:36+00:00", s
    assert s["stopped_at"] == "2025-08-21T13:34:41.364000+00:00", s
    assert s["flags"] == ["started_missing", "token_not_payer"], s["flags"]
    assert not await queued(csms_server, s["id"])


async def test_an_ended_event_alone_with_a_begin_reading_from_long_ago_is_held_for_it(
    csms_server: RunningServer,
) -> None:
    """A hostile station's variant: the Ended event alone, its begin reading dated a year
    before (before the station was registered, less 30 days). The session does not start
    that far back unquestioned: the time is ``time_implausible`` besides
    ``started_missing`` - held, not billed."""
    hostile = copy.deepcopy(KEBA_ENDED)
    hostile["meterValue"][0]["timestamp"] = "2024-08-21T07:03:36.481+0000"
    hostile["meterValue"][2]["timestamp"] = "2024-08-21T07:03:36.000+0000"
    answers, (s,) = await keba(csms_server, hostile)
    assert answers[0][0] == 3
    assert {"started_missing", "time_implausible"} <= set(s["flags"]), s["flags"]
    assert not await queued(csms_server, s["id"])


# -- EVBox Livo, firmware v5.24.0;v1.46.1: its 2.0.1 BootNotification -----------------------
# lbbrhzn/ocpp#1432 (station EVB-500-019-341), as Home Assistant's ocpp integration logged
# it; the serialNumber is 25 characters, the most 2.0.1's ChargingStationType allows.
EVBOX = "EVB-500-019-341"
EVBOX_BOOT: dict[str, Any] = {"reason": "PowerUp", "chargingStation": {
    "vendorName": "EVBox", "model": "Livo", "firmwareVersion": "v5.24.0;v1.46.1",
    "serialNumber": "oVUEYQCw8pArNfVvp4SB72bw3"}}


async def test_an_evbox_livo_boot_is_accepted_and_the_station_known_by_it(
    csms_server: RunningServer,
) -> None:
    assert len(EVBOX_BOOT["chargingStation"]["serialNumber"]) == 25
    await csms_server.add_station(EVBOX)
    async with await RawClient.connect(csms_server.url, EVBOX, ["ocpp2.0.1"]) as c:
        answer = await c.call("BootNotification", EVBOX_BOOT)
    assert answer[0] == 3 and answer[2]["status"] == "Accepted", answer
    assert answer[2]["interval"] > 0 and answer[2]["currentTime"].endswith("Z")
    shown = station(csms_server, EVBOX)
    assert (shown["vendor"], shown["model"], shown["firmware_version"]) == (
        "EVBox", "Livo", "v5.24.0;v1.46.1")
    assert shown["ocpp_version"] == "2.0.1" and shown["boot"] == "accepted"


async def test_a_serial_number_one_character_too_long_is_refused_and_the_socket_lives(
    csms_server: RunningServer,
) -> None:
    """A hostile station's variant of the EVBox boot: a serialNumber of 26 characters, one
    more than ChargingStationType allows (maxLength 25). A CiString's length is part of
    its type: TypeConstraintViolation naming the field, nothing stored, and the real boot
    on the same connection is accepted."""
    await csms_server.add_station(EVBOX)
    hostile = copy.deepcopy(EVBOX_BOOT)
    hostile["chargingStation"]["serialNumber"] += "X"
    async with await RawClient.connect(csms_server.url, EVBOX, ["ocpp2.0.1"]) as c:
        refused = await c.call("BootNotification", hostile)
        assert refused[0] == 4 and refused[2] == "TypeConstraintViolation", refused
        assert "serialNumber" in refused[3]
        assert station(csms_server, EVBOX)["vendor"] is None
        answer = await c.call("BootNotification", EVBOX_BOOT)
    assert answer[0] == 3 and answer[2]["status"] == "Accepted", answer
    assert station(csms_server, EVBOX)["vendor"] == "EVBox"


# -- a 1.6 payload on a 2.0.1 connection --------------------------------------------------
# Schneider Electric EVlink Smart Wallbox, firmware 3.3.0.12 (mobilityhouse/ocpp#121): its
# BootNotification, a 1.6 payload, sent on a connection the central system had negotiated
# as "ocpp2.0"; the x's are the reporter's. FoxESS A-series firmware does the same on
# "ocpp2.0.1" connections (lbbrhzn/ocpp#2050, confirmed by the vendor; those frames were
# not published). Played here on a 2.0.1 connection.
EVLINK = "EVLINK1"
EVLINK_BOOT: dict[str, Any] = {
    "chargeBoxSerialNumber": "EVBxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
    "chargePointModel": "EVlink Smart Wallbox",
    "chargePointSerialNumber": "3N180xxxxxxxxxxxxxxxxxxxxx",
    "chargePointVendor": "Schneider Electric", "firmwareVersion": "3.3.0.12"}


async def test_a_16_boot_on_a_201_connection_is_refused_and_the_socket_lives(
    csms_server: RunningServer,
) -> None:
    """2.0.1's BootNotificationRequest requires chargingStation and reason and allows no
    other member: the 1.6 payload is answered with a CALLERROR, the station is not taken
    as booted (nothing of it stored), and the connection stays up - a 2.0.1 boot on it
    (scaffolding) is then accepted."""
    await csms_server.add_station(EVLINK)
    async with await RawClient.connect(csms_server.url, EVLINK, ["ocpp2.0.1"]) as c:
        refused = await c.call("BootNotification", EVLINK_BOOT)
        # the members 2.0.1 requires are missing: OccurrenceConstraintViolation (OCPP-J
        # 2.0.1 §4.3), naming them
        assert refused[0] == 4 and refused[2] == "OccurrenceConstraintViolation", refused
        assert "chargingStation" in refused[3] and "reason" in refused[3]
        assert station(csms_server, EVLINK)["vendor"] is None
        answer = await c.call("BootNotification", {"reason": "PowerUp", "chargingStation": {
            "vendorName": "Schneider Electric", "model": "EVlink Smart Wallbox"}})
    assert answer[0] == 3 and answer[2]["status"] == "Accepted", answer


# -- EVerest's StatusNotification ---------------------------------------------------------
# EVerest/EVerest#1835: EVerest (libocpp) simulating an AC wallbox - software, not a
# station's hardware - its connector Occupied once the vehicle was plugged in, as the
# reporter's central system logged it (its ocppMessageId, the central system's, dropped).
EVEREST_OCCUPIED: dict[str, Any] = {"timestamp": "2026-02-17T07:13:22.715Z",
                                    "connectorStatus": "Occupied", "evseId": 1,
                                    "connectorId": 1}


async def test_everests_occupied_connector_is_stored(csms_server: RunningServer) -> None:
    await csms_server.add_station("EVEREST1")
    async with await RawClient.connect(csms_server.url, "EVEREST1", ["ocpp2.0.1"]) as c:
        await boot201(c)
        answer = await c.call("StatusNotification", EVEREST_OCCUPIED)
    assert answer[0] == 3 and answer[2] == {}
    [connector] = station(csms_server, "EVEREST1")["connectors"]
    assert (connector["evse_id"], connector["connector_id"], connector["status"]) == (
        1, 1, "Occupied")
    assert connector["updated_at"].startswith("2026-02-17T07:13:22.715")


async def test_a_status_in_16s_shape_on_a_201_connection_changes_nothing(
    csms_server: RunningServer,
) -> None:
    """The FoxESS A-series firmware sends 1.6-shaped StatusNotifications on "ocpp2.0.1"
    connections (lbbrhzn/ocpp#2050, confirmed by the vendor; the frames were not
    published): EVerest's status above written in 1.6's shape (scaffolding) is refused
    - 2.0.1 requires connectorStatus and evseId (and allows no errorCode or status):
    OccurrenceConstraintViolation; no connector is stored from it, and
    the real 2.0.1 status on the same connection is then stored."""
    await csms_server.add_station("EVEREST1")
    status16 = {"connectorId": 1, "errorCode": "NoError", "status": "Preparing",
                "timestamp": "2026-02-17T07:13:22.715Z"}
    async with await RawClient.connect(csms_server.url, "EVEREST1", ["ocpp2.0.1"]) as c:
        await boot201(c)
        refused = await c.call("StatusNotification", status16)
        assert refused[0] == 4 and refused[2] == "OccurrenceConstraintViolation", refused
        assert station(csms_server, "EVEREST1")["connectors"] == []
        answer = await c.call("StatusNotification", EVEREST_OCCUPIED)
    assert answer[0] == 3 and answer[2] == {}
    assert [c["status"] for c in station(csms_server, "EVEREST1")["connectors"]] == [
        "Occupied"]


# -- FoxESS A-series: its 2.0.1 base report -------------------------------------------------
# lbbrhzn/ocpp#1858 (station birzes25a), as Home Assistant's ocpp integration logged it: the
# log is cut on both sides of each piece, so only the reportData entries it shows whole are
# kept (two pieces; the line breaks the log put inside "variableCharacteristics" and
# "variableAttribute" are taken out). The NotifyReport around them - requestId, generatedAt,
# seqNo, tbc - is scaffolding.
FOXESS = "birzes25a"
FOXESS_REPORT: list[dict[str, Any]] = [
    {"component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "OfflineThreshold"},
     "variableAttribute": [{"type": "Actual", "value": "30", "mutability": "ReadWrite"}],
     "variableCharacteristics": {"unit": "seconds", "dataType": "integer",
                                 "supportsMonitoring": False}},
    {"component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "ResetRetries"},
     "variableAttribute": [{"type": "Actual", "value": "3", "mutability": "ReadWrite"}],
     "variableCharacteristics": {"dataType": "integer", "supportsMonitoring": False}},
    {"component": {"name": "OCPPCommCtrlr"},
     "variable": {"name": "MessageAttempts", "instance": "TransactionEvent"},
     "variableAttribute": [{"type": "Actual", "value": "3", "mutability": "ReadWrite"}],
     "variableCharacteristics": {"dataType": "integer", "supportsMonitoring": False}},
    {"component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "FileTransferProtocols"},
     "variableAttribute": [{"type": "Actual", "value": "FTP, FTPS, HTTP, HTTPS",
                            "mutability": "ReadOnly"}],
     "variableCharacteristics": {"dataType": "MemberList", "supportsMonitoring": False}},
    {"component": {"name": "LocalAuthListCtrlr"}, "variable": {"name": "LocalAuthListEnabled"},
     "variableAttribute": [{"type": "Actual", "value": "true", "mutability": "ReadWrite"}],
     "variableCharacteristics": {"dataType": "boolean", "supportsMonitoring": False}},
    {"component": {"name": "LocalAuthListCtrlr"}, "variable": {"name": "BytesPerMessage"},
     "variableAttribute": [{"type": "Actual", "value": "409600", "mutability": "ReadOnly"}],
     "variableCharacteristics": {"dataType": "integer", "supportsMonitoring": False}},
    {"component": {"name": "AlignedDataCtrlr"}, "variable": {"name": "Measurands"},
     "variableAttribute": [{"type": "Actual", "value": "Energy.Active.Import.Register",
                            "mutability": "ReadWrite"}],
     "variableCharacteristics": {
         "dataType": "MemberList", "maxLimit": 128.0,
         "valuesList": "Voltage,Current.Import,Power.Active.Import,Energy.Active.Import.Register",
         "supportsMonitoring": False}},
    {"component": {"name": "AlignedDataCtrlr"}, "variable": {"name": "Interval"},
     "variableAttribute": [{"type": "Actual", "value": "0", "mutability": "ReadWrite"}],
     "variableCharacteristics": {"unit": "seconds", "dataType": "integer",
                                 "supportsMonitoring": False}},
]


async def test_a_foxess_base_report_is_stored_and_sets_no_power_bound(
    csms_server: RunningServer,
) -> None:
    """The central system asks for the base report; the FoxESS's entries come back in a
    NotifyReport and are stored as it wrote them (a MemberList whose maxLimit is the
    decimal 128.0). They name no EVSE Power: the station's reported maximum power stays
    unknown, so a session's energy is bounded by the configured default, not by a power
    read from this report."""
    await csms_server.add_station(FOXESS)
    async with await RawClient.connect(csms_server.url, FOXESS, ["ocpp2.0.1"]) as c:
        await boot201(c)
        asked = asyncio.create_task(api(
            csms_server, "POST", f"/stations/{FOXESS}/commands/get-base-report",
            {"report_base": "FullInventory", "timeout": 5}))
        async with asyncio.timeout(5):
            call = await c.calls.get()
        assert call[2] == "GetBaseReport", call
        await c.answer(call[1], {"status": "Accepted"})
        status, answer = await asked
        assert status == 200 and answer["status"] == "Accepted", answer
        report = await c.call("NotifyReport", {
            "requestId": call[3]["requestId"], "generatedAt": "2026-02-02T09:43:28Z",
            "seqNo": 0, "tbc": False, "reportData": FOXESS_REPORT})
    assert report[0] == 3 and report[2] == {}

    async def work(tx: Any) -> list[dict[str, Any]]:
        return list(await tx.device_variables(FOXESS))

    rows = {r["var_key"]: r for r in await csms_server.repo.read(work)}
    assert len(rows) == len(FOXESS_REPORT)
    assert rows["OCPPCommCtrlr.MessageAttempts[TransactionEvent]"]["value"] == "3"
    measurands = rows["AlignedDataCtrlr.Measurands"]
    assert measurands["value"] == "Energy.Active.Import.Register"
    assert (measurands["data_type"], measurands["max_limit"]) == ("MemberList", "128.0")
    assert station(csms_server, FOXESS)["reported_max_power_w"] is None
