"""The charging service's use cases on the in-memory storage fake: boot, heartbeat,
connections, status, authorization with and without a driver's credit, 1.6 and 2.0.1
transactions (retries, offline replay, foreign transactions), meter values, holds, signed
meter data and payload quotas. The same cases run over real sockets and databases in
tests/integration; these pin the rules in milliseconds."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from csms.domain.model import (
    AuthStatus,
    BootPolicy,
    ErrorDetail,
    IdTag,
    MeterSample,
    SessionStatus,
    ValueNote,
)
from csms.service.charging import (
    BootInfo,
    ChargingService,
    StopInfo,
    TransactionEventIn,
    UnknownStation,
    new_station,
)
from csms.service.credit import CreditDecision
from csms.service.quota import PayloadQuota
from support.memory import MemoryRepository, MemoryState
from support.ocmf_vectors import KEBA, KEBA_KEY

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
T0 = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
T1 = T0 + timedelta(hours=1)
LONG_AGO = datetime(2019, 1, 1, tzinfo=UTC)


class Credit:
    """The drivers' escrows as the service sees them (settlement.credit on chain)."""

    def __init__(self, refused: dict[str, str] | None = None) -> None:
        self.refused = refused or {}
        self.authorizations: list[dict[str, Any]] = []

    async def check(self, station_id: str, tag: str) -> CreditDecision | None:
        if tag in self.refused:
            return CreditDecision(False, self.refused[tag], "0xdriver")
        return None

    async def check_authorization(self, station_id: str,
                                  authorization: dict[str, Any]) -> CreditDecision:
        self.authorizations.append(authorization)
        ok = authorization.get("max_amount", 0) > 0
        return CreditDecision(ok, "" if ok else "max amount is zero", authorization["driver"])

    async def confirm(self, tx: Any, decision: CreditDecision) -> CreditDecision:
        return decision  # nothing changes between the check and the unit here


@pytest.fixture
def state() -> MemoryState:
    s = MemoryState()
    for sid in ("CP1", "CP2"):
        s.stations[sid] = new_station(sid)
        s.stations[sid].created_at = LONG_AGO
    s.stations["PENDING"] = new_station("PENDING", boot_policy=BootPolicy.PENDING)
    s.stations["NO"] = new_station("NO", boot_policy=BootPolicy.REJECTED)
    s.tags["T1"] = IdTag("T1")
    s.tags["OLD"] = IdTag("OLD", expires_at=NOW - timedelta(days=1))
    s.tags["BAD"] = IdTag("BAD", status="blocked")
    return s


@pytest.fixture
def repo(state: MemoryState) -> MemoryRepository:
    return MemoryRepository(state)


@pytest.fixture
def service(repo: MemoryRepository) -> ChargingService:
    return ChargingService(repo, publish_events=True, clock=lambda: NOW,
                           heartbeat_interval=300, boot_retry_interval=30)


def wh(at: datetime, value: int | str, **kw: Any) -> MeterSample:
    return MeterSample(timestamp=at, value=str(value), **kw)


def topics(state: MemoryState) -> list[str]:
    return [e["topic"].removeprefix("voltledger/") for e in state.outbox]


def kinds(state: MemoryState, station_id: str = "CP1") -> list[str]:
    return [e["kind"] for e in state.station_events if e["station_id"] == station_id]


# -- stations -----------------------------------------------------------------------------
@pytest.mark.parametrize(("station", "status", "interval"), [
    ("CP1", "Accepted", 300), ("PENDING", "Pending", 30), ("NO", "Rejected", 30)])
async def test_boot_answers_by_the_station_policy_and_records_the_station(
    service: ChargingService, state: MemoryState, station: str, status: str, interval: int,
) -> None:
    decision = await service.boot(station, "ocpp1.6", BootInfo("ACME", "W1", "2.1", "SN9"))
    assert (decision.status, decision.interval, decision.current_time) == (status, interval, NOW)
    stored = state.stations[station]
    assert (stored.ocpp_version, stored.vendor, stored.model, stored.firmware_version,
            stored.serial_number, stored.last_boot_at) == ("ocpp1.6", "ACME", "W1", "2.1",
                                                           "SN9", NOW)
    assert kinds(state, station) == ["boot"]
    assert topics(state) == [f"{station}/boot"]
    assert state.outbox[0]["payload"]["status"] == status


async def test_boot_of_an_unknown_station_is_refused_and_stores_nothing(
    service: ChargingService, state: MemoryState,
) -> None:
    with pytest.raises(UnknownStation):
        await service.boot("NOBODY", "ocpp2.0.1", BootInfo())
    assert "NOBODY" not in state.stations and state.station_events == []


async def test_heartbeats_are_written_together_on_flush(
    service: ChargingService, state: MemoryState, repo: MemoryRepository,
) -> None:
    assert await service.heartbeat("CP1") == NOW
    assert await service.heartbeat("CP2") == NOW
    assert state.stations["CP1"].last_seen_at is None  # not yet: written in one unit
    units = repo.units
    await service.flush_seen()
    assert repo.units == units + 1
    assert state.stations["CP1"].last_seen_at == NOW == state.stations["CP2"].last_seen_at


async def test_connection_and_status_changes(service: ChargingService, state: MemoryState) -> None:
    since = await service.connection_changed("CP1", True, "ocpp1.6", node="n1")
    assert state.stations["CP1"].connected_node == "n1"
    await service.status("CP1", 1, 1, "Charging", None, T0)
    assert state.connectors["CP1", 1, 1]["status"] == "Charging"
    assert state.connectors["CP1", 1, 1]["updated_at"] == T0.isoformat()
    await service.connection_changed("CP1", False, "ocpp1.6", node="other")
    assert state.stations["CP1"].connected_node == "n1"  # only its own node clears it
    await service.connection_changed("CP1", False, "ocpp1.6", node="n1", since=since)
    assert state.stations["CP1"].connected_node is None
    assert kinds(state) == ["online", "offline", "offline"]
    # the other node's end of a connection that was not the station's changes nothing:
    # kept in the station's events, not published
    assert topics(state) == ["CP1/online", "CP1/status", "CP1/offline"]
    events = [e["payload"] for e in state.station_events]
    assert events[1] == {"ocpp_version": "ocpp1.6", "connected_at": None, "superseded": True}
    assert events[0]["connected_at"] == events[2]["connected_at"] == since.isoformat()
    assert "superseded" not in events[2]


async def test_a_fault_keeps_what_the_station_said_of_it(
        service: ChargingService, state: MemoryState) -> None:
    """1.6 §6.47 info, vendorId, vendorErrorCode: stored with the connector and in the
    published status event (EVerest sends every fault as OtherError, the error in them)."""
    detail = ErrorDetail("evse_manager/connector_1", "org.charin.uec.v1", "MREC1")
    assert await service.status("CP1", 1, 1, "Faulted", "OtherError", T0, error=detail)
    row = state.connectors["CP1", 1, 1]
    assert (row["error_code"], row["error_info"], row["vendor_id"],
            row["vendor_error_code"]) == ("OtherError", "evse_manager/connector_1",
                                          "org.charin.uec.v1", "MREC1")
    published = dict(state.outbox[-1]["payload"])
    del published["event_id"]
    assert published == {
        "evse_id": 1, "connector_id": 1, "status": "Faulted", "error_code": "OtherError",
        "info": "evse_manager/connector_1", "vendor_id": "org.charin.uec.v1",
        "vendor_error_code": "MREC1"}
    # cleared with the next status that carries none
    await service.status("CP1", 1, 1, "Available", None, T0, error=ErrorDetail())
    assert state.connectors["CP1", 1, 1]["error_info"] is None
    assert "info" not in state.outbox[-1]["payload"]


async def test_a_station_stores_at_most_max_connectors(
        service: ChargingService, state: MemoryState) -> None:
    """Invented EVSE or connector ids add no row beyond the limit: each is answered,
    counted as a ConnectorLimit security event, and its status is not published; the
    connectors stored keep their updates."""
    service.max_connectors = 3
    for n in range(1, 6):
        assert await service.status("CP1", n, 1, "Available", None, T0) is (n <= 3)
    assert await service.status("CP1", 2, 1, "Charging", None, T0)
    assert sorted(k[1:] for k in state.connectors if k[0] == "CP1") == [(1, 1), (2, 1), (3, 1)]
    assert state.connectors["CP1", 2, 1]["status"] == "Charging"
    limits = [e["payload"] for e in state.station_events if e["kind"] == "security"]
    assert limits == [{"type": "ConnectorLimit", "evse_id": n, "connector_id": 1,
                       "limit": 3} for n in (4, 5)]
    assert topics(state).count("CP1/status") == 4
    # another station has its own
    assert await service.status("CP2", 9, 1, "Available", None, T0)


async def test_a_boot_event_keeps_what_identifies_the_hardware(
        service: ChargingService, state: MemoryState) -> None:
    hardware = {"charge_box_serial_number": "serial1", "meter_serial_number": "1DZG001"}
    await service.boot("CP1", "ocpp1.6", BootInfo("V", "M", None, "serial2",
                                                   hardware=hardware))
    payload = state.station_events[-1]["payload"]
    assert payload["serial_number"] == "serial2"
    assert payload["charge_box_serial_number"] == "serial1"
    assert payload["meter_serial_number"] == "1DZG001"
    assert state.stations["CP1"].serial_number == "serial2"


@pytest.mark.parametrize(("tag", "expected"), [
    ("T1", AuthStatus.ACCEPTED), ("OLD", AuthStatus.EXPIRED), ("BAD", AuthStatus.BLOCKED),
    ("NEW", AuthStatus.UNKNOWN)])
async def test_authorize(service: ChargingService, tag: str, expected: AuthStatus) -> None:
    status, _ = await service.authorize(tag, "CP1")
    assert status is expected


async def test_authorize_refuses_a_driver_whose_escrow_does_not_cover(
    service: ChargingService,
) -> None:
    service.credit = Credit({"T1": "escrow below the session maximum"})
    assert (await service.authorize("T1", "CP1"))[0] is AuthStatus.NO_CREDIT
    assert await service.refusal("CP1", "T1") == "escrow below the session maximum"
    assert await service.covered("CP1", "OTHER")


async def test_an_app_session_authorization_accepts_its_token_once_bound(
    service: ChargingService, state: MemoryState,
) -> None:
    with pytest.raises(ValueError, match="need settlement"):
        await service.accept_authorization("CP1", "APP1", {"driver": "0xD", "nonce": 1})
    service.credit = Credit()
    auth = {"driver": "0xD", "nonce": 7, "expiry": int(NOW.timestamp()) + 600, "max_amount": 5}
    with pytest.raises(ValueError, match="max amount is zero"):
        await service.accept_authorization("CP1", "APP1", {**auth, "max_amount": 0})
    aid = await service.accept_authorization("CP1", "APP1", auth)
    assert state.authorizations[0]["start_state"] == "sent"  # the remote start's answer
    await service.remote_start_answered(aid, "CP1", "APP1", "Accepted")
    assert (await service.authorize("APP1", "CP1"))[0] is AuthStatus.ACCEPTED
    assert (await service.authorize("APP1", "CP2"))[0] is AuthStatus.UNKNOWN
    with pytest.raises(ValueError, match="authorization refused"):
        await service.accept_authorization("CP1", "APP1", auth)  # the nonce is spent
    # started as the remote start asked (a start dated before it is held, see
    # tests/integration/settlement/test_backdated_start.py)
    txid, status, _ = await service.start_transaction("CP1", 1, "APP1", Decimal(0), NOW)
    assert status is AuthStatus.ACCEPTED
    [session] = state.sessions.values()
    assert session.flags == [] and session.auth_status == "Accepted"
    assert state.authorizations[0]["session_id"] == session.id == txid


async def test_reported_max_power_is_kept(service: ChargingService, state: MemoryState) -> None:
    await service.reported_max_power("CP1", Decimal(11000))
    assert state.stations["CP1"].reported_max_power_w == Decimal(11000)


async def test_station_payloads_within_quota_and_the_disk_reserve(
    repo: MemoryRepository, state: MemoryState,
) -> None:
    dropped: list[tuple[str, str]] = []
    service = ChargingService(repo, clock=lambda: NOW, storage_reserve=1000,
                              quota=PayloadQuota({"data_transfer": 600}),
                              on_dropped=lambda kind, reason: dropped.append((kind, reason)))
    assert await service.station_event("CP1", "data_transfer", {"data": "x" * 100})
    assert not await service.station_event("CP1", "data_transfer", {"data": "x" * 500})
    assert dropped == [("data_transfer", "quota")]
    assert kinds(state) == ["data_transfer", "quota"]
    state.free_space = 10  # below the reserve: kept for transaction data
    assert not await service.station_event("CP2", "data_transfer", {"data": "y"})
    assert dropped[-1] == ("data_transfer", "reserve")
    assert await service.station_event("CP2", "boot_log", {"anything": 1})  # not metered


# -- 1.6 transactions -----------------------------------------------------------------------
async def test_a_16_session_from_start_to_stop(service: ChargingService,
                                               state: MemoryState) -> None:
    txid, status, _ = await service.start_transaction("CP1", 1, "T1", Decimal(1000), T0)
    assert status is AuthStatus.ACCEPTED
    await service.meter_values("CP1", 1, str(txid), [wh(T0 + timedelta(minutes=30), 2500)])
    session = state.sessions[txid]
    assert (session.status, session.energy_wh) == (SessionStatus.ACTIVE, 1500)
    auth = await service.stop_transaction("CP1", StopInfo(txid, Decimal(4500), T1, None, "T1"))
    assert auth is AuthStatus.ACCEPTED
    session = state.sessions[txid]
    assert (session.status, session.energy_wh, session.stop_reason) == (
        SessionStatus.COMPLETED, 3500, "Local")  # 1.6 §7.45: Local when omitted
    assert session.flags == []
    assert txid in state.settlement_queue
    assert topics(state) == ["CP1/session/started", "CP1/session/updated",
                             "CP1/session/completed"]
    completed = state.outbox[-1]["payload"]
    assert completed["energy_wh"] == 3500 and completed["ocpp_version"] == "1.6"


async def test_a_retried_start_gets_the_same_transaction_id(
    service: ChargingService, state: MemoryState,
) -> None:
    first = await service.start_transaction("CP1", 1, "T1", Decimal(10), T0)
    again = await service.start_transaction("CP1", 1, "T1", Decimal(10), T0)
    other = await service.start_transaction("CP1", 1, "T1", Decimal(10), T1)
    assert first[0] == again[0] != other[0]
    assert len(state.sessions) == 2


@pytest.mark.parametrize(("tag", "status", "flag"), [
    ("NEW", AuthStatus.UNKNOWN, "auth_unknown"), ("BAD", AuthStatus.BLOCKED, "auth_blocked"),
    ("OLD", AuthStatus.EXPIRED, "auth_expired")])
async def test_a_start_for_a_refused_tag_is_stored_and_flagged(
    service: ChargingService, state: MemoryState, tag: str, status: AuthStatus, flag: str,
) -> None:
    txid, answered, _ = await service.start_transaction("CP1", 1, tag, Decimal(0), T0)
    assert answered is status
    assert state.sessions[txid].flags == [flag]


async def test_a_start_without_credit_is_stored_and_flagged(
    service: ChargingService, state: MemoryState,
) -> None:
    service.credit = Credit({"T1": "no escrow"})
    txid, status, _ = await service.start_transaction("CP1", 1, "T1", Decimal(0), T0)
    assert status is AuthStatus.NO_CREDIT
    assert state.sessions[txid].flags == ["auth_nocredit"]


async def test_a_stop_retry_changes_nothing(service: ChargingService,
                                            state: MemoryState) -> None:
    txid, _, _ = await service.start_transaction("CP1", 1, "T1", Decimal(0), T0)
    await service.stop_transaction("CP1", StopInfo(txid, Decimal(500), T1))
    before = [e["topic"] for e in state.outbox]
    await service.stop_transaction("CP1", StopInfo(txid, Decimal(900), T1))
    assert state.sessions[txid].energy_wh == 500
    assert [e["topic"] for e in state.outbox] == before


async def test_a_stop_for_an_unknown_transaction_is_stored_and_held(
    service: ChargingService, state: MemoryState,
) -> None:
    await service.stop_transaction("CP1", StopInfo(77, Decimal(900), T1, "Remote", "T1"))
    await service.stop_transaction("CP1", StopInfo(77, Decimal(900), T1, "Remote", "T1"))
    # one session (the second stop is a retry), under an id the central system never
    # assigns (77 may be one it assigns later)
    [session] = state.sessions.values()
    assert session.transaction_id == "unknown-77" and "unknown_transaction" in session.flags
    assert session.status is SessionStatus.COMPLETED and session.stop_reason == "Remote"
    assert state.settlement_queue == {}
    assert "billing_hold" in kinds(state)


async def test_another_stations_transaction_is_acknowledged_but_not_applied(
    service: ChargingService, state: MemoryState,
) -> None:
    txid, _, _ = await service.start_transaction("CP1", 1, "T1", Decimal(0), T0)
    await service.stop_transaction("CP2", StopInfo(txid, Decimal(900), T1))
    await service.meter_values("CP2", 1, str(txid), [wh(T1, 5)])
    assert state.sessions[txid].status is SessionStatus.ACTIVE
    events = [e["payload"] for e in state.station_events if e["station_id"] == "CP2"]
    assert [(e["type"], e["action"]) for e in events] == [
        ("ForeignTransaction", "StopTransaction"), ("ForeignTransaction", "MeterValues")]


async def test_a_meter_going_backwards_holds_the_session(
    service: ChargingService, state: MemoryState,
) -> None:
    txid, _, _ = await service.start_transaction("CP1", 1, "T1", Decimal(5000), T0)
    await service.stop_transaction("CP1", StopInfo(txid, Decimal(4000), T1))
    session = state.sessions[txid]
    assert "meter_went_backwards" in session.flags
    assert txid not in state.settlement_queue
    [hold] = [e for e in state.station_events if e["kind"] == "billing_hold"]
    assert hold["payload"]["session_id"] == txid


async def test_energy_beyond_the_stations_power_holds_the_session(
    service: ChargingService, state: MemoryState,
) -> None:
    state.stations["CP1"].max_power_w = Decimal(1000)  # 1 kW: at most 1 kWh in the hour
    txid, _, _ = await service.start_transaction("CP1", 1, "T1", Decimal(0), T0)
    await service.stop_transaction("CP1", StopInfo(txid, Decimal(50_000), T1))
    assert "energy_above_max_power" in state.sessions[txid].flags
    assert state.settlement_queue == {}


async def test_times_the_station_cannot_have_sent_are_flagged(
    service: ChargingService, state: MemoryState,
) -> None:
    future = NOW + timedelta(days=2)
    txid, _, _ = await service.start_transaction("CP1", 1, "T1", Decimal(0), future)
    assert "time_implausible" in state.sessions[txid].flags
    [event] = [e for e in state.station_events if e["kind"] == "time_implausible"]
    assert event["payload"]["times"] == [future.isoformat()]


async def test_values_not_taken_are_kept_verbatim(service: ChargingService,
                                                  state: MemoryState) -> None:
    note = ValueNote("value_out_of_range", "meterStart", "1e400", "beyond 64 bits")
    quiet = ValueNote("time_offset_assumed", "timestamp", "2026-03-01T10:00:00", "")
    txid, _, _ = await service.start_transaction("CP1", 1, "T1", Decimal(0), T0,
                                                 notes=[note, quiet])
    assert state.sessions[txid].flags == ["value_out_of_range", "time_offset_assumed"]
    [kept] = [e["payload"] for e in state.station_events if e["kind"] == "value_not_taken"]
    assert (kept["field"], kept["value"]) == ("meterStart", "1e400")


async def test_meter_values_without_a_transaction_touch_no_session(
    service: ChargingService, state: MemoryState,
) -> None:
    txid, _, _ = await service.start_transaction("CP1", 1, "T1", Decimal(0), T0)
    await service.meter_values("CP1", 0, str(txid), [wh(T1, 999_999)])  # connector 0
    await service.meter_values("CP1", 1, None, [wh(T1, 999_999)])  # clock-aligned
    assert state.sessions[txid].energy_wh is None
    assert [r["session_id"] for r in state.samples] == [None, None]


async def test_late_samples_after_the_stop_are_kept_and_flagged(
    service: ChargingService, state: MemoryState,
) -> None:
    txid, _, _ = await service.start_transaction("CP1", 1, "T1", Decimal(0), T0)
    await service.stop_transaction("CP1", StopInfo(txid, Decimal(100), T1))
    before = len(state.samples)
    # late, and dated where no station can be: kept, but nothing billed changes
    await service.meter_values("CP1", 1, str(txid), [wh(datetime(2099, 1, 1, tzinfo=UTC), 900)])
    session = state.sessions[txid]
    assert session.energy_wh == 100 and "late_samples" in session.flags
    assert "time_implausible" not in session.flags and txid in state.settlement_queue
    # the reading is the station's, not the session's (whose readings are the record's)
    assert [(r["session_id"], r["transaction_id"]) for r in state.samples[before:]] == [
        (None, str(txid))]
    assert "late_data" in kinds(state)


async def test_a_failing_unit_leaves_nothing_behind(service: ChargingService,
                                                    state: MemoryState) -> None:
    def broken() -> datetime:
        raise RuntimeError("clock broke")

    txid, _, _ = await service.start_transaction("CP1", 1, "T1", Decimal(0), T0)
    before = (dict(state.sessions), list(state.samples), list(state.outbox))
    service.clock = broken
    with pytest.raises(RuntimeError):
        await service.stop_transaction("CP1", StopInfo(txid, Decimal(100), T1,
                                                       samples=[wh(T1, 100)]))
    assert (state.sessions[txid].status, state.samples, state.outbox) == (
        SessionStatus.ACTIVE, before[1], before[2])


# -- 2.0.1 transactions ---------------------------------------------------------------------
def ev(kind: str, seq: int, at: datetime, *, samples: list[MeterSample] | None = None,
       **kw: Any) -> TransactionEventIn:
    return TransactionEventIn(kind, at, "Authorized", seq, "TX-1", evse_id=1, connector_id=1,
                              samples=samples or [], **kw)


async def test_a_201_session_from_started_to_ended(service: ChargingService,
                                                   state: MemoryState) -> None:
    assert await service.transaction_event(
        "CP1", ev("Started", 0, T0, id_tag="T1",
                  samples=[wh(T0, 1, unit="kWh")])) is AuthStatus.ACCEPTED
    await service.transaction_event("CP1", ev("Updated", 1, T0 + timedelta(minutes=5),
                                              samples=[wh(T0 + timedelta(minutes=5), 2500)]))
    [session] = state.sessions.values()
    assert (session.energy_wh, session.last_seq_no, session.id_tag) == (1500, 1, "T1")
    await service.transaction_event("CP1", ev("Ended", 2, T1, stopped_reason="EVDisconnected",
                                              samples=[wh(T1, 4000)]))
    [session] = state.sessions.values()
    assert (session.status, session.energy_wh, session.stop_reason) == (
        SessionStatus.COMPLETED, 3000, "EVDisconnected")
    assert session.flags == []  # 2.0.1 readings always come from samples: nothing odd
    assert session.id in state.settlement_queue
    assert topics(state) == ["CP1/session/started", "CP1/session/updated",
                             "CP1/session/completed"]


async def test_201_retries_are_deduplicated_by_seq_no(service: ChargingService,
                                                      state: MemoryState) -> None:
    await service.transaction_event("CP1", ev("Started", 0, T0, samples=[wh(T0, 0)]))
    await service.transaction_event("CP1", ev("Updated", 1, T0, samples=[wh(T0, 100)]))
    await service.transaction_event("CP1", ev("Updated", 1, T0, samples=[wh(T0, 100)]))
    assert len(state.samples) == 2 and len(state.outbox) == 2


async def test_an_ended_event_numbered_as_an_earlier_event_completes_the_session(
    service: ChargingService, state: MemoryState,
) -> None:
    """A station whose seqNo counter restarted (a reboot mid-transaction) sends its Ended
    event under a seqNo an Updated event already had. It is no retry of that event (an
    Ended stored before would have completed the session): the session completes as the
    station reports it, not left active to be closed without its stop (``stop_lost``,
    held: the host unpaid until an operator releases it). The repeat is a station event."""
    await service.transaction_event("CP1", ev("Started", 0, T0, samples=[wh(T0, 0)]))
    for seq in (1, 2):
        await service.transaction_event("CP1", ev("Updated", seq, T0 + timedelta(minutes=seq),
                                                  samples=[wh(T0 + timedelta(minutes=seq),
                                                              1000 * seq)]))
    await service.transaction_event("CP1", ev("Ended", 1, T1, stopped_reason="Local",
                                              samples=[wh(T1, 3000)]))
    [session] = state.sessions.values()
    assert (session.status, session.energy_wh, session.stop_reason) == (
        SessionStatus.COMPLETED, 3000, "Local")
    assert session.id in state.settlement_queue
    [repeat] = [e["payload"] for e in state.station_events if e["kind"] == "seq_reused"]
    assert (repeat["seq_no"], repeat["event_type"]) == (1, "Ended")
    # the same Ended sent again is a retry: nothing more
    events = len(state.station_events)
    await service.transaction_event("CP1", ev("Ended", 1, T1, stopped_reason="Local",
                                              samples=[wh(T1, 3000)]))
    assert len(state.station_events) == events
    assert topics(state).count("CP1/session/completed") == 1


async def test_an_offline_replay_is_stored_in_any_order_and_flagged(
    service: ChargingService, state: MemoryState,
) -> None:
    # the station was offline: its queued events arrive, Ended before Started
    await service.transaction_event("CP1", ev("Ended", 2, T1, offline=True,
                                              samples=[wh(T1, 3000)]))
    await service.transaction_event("CP1", ev("Started", 0, T0, offline=True,
                                              samples=[wh(T0, 1000)]))
    await service.transaction_event("CP1", ev("Updated", 1, T0, offline=True))
    [session] = state.sessions.values()
    assert {"started_missing", "offline_events"} <= set(session.flags)
    assert session.status is SessionStatus.COMPLETED
    assert session.id not in state.settlement_queue  # started_missing: held


async def test_a_second_started_event_does_not_move_the_start(
    service: ChargingService, state: MemoryState,
) -> None:
    """A hostile station sends Started again, seqNo in order, back-dated four hours, to
    bill the driver five hours of a per-minute tariff for one hour's charge (and five
    hours' room for energy under the station's power): the start the session was
    authorized, priced and shown on stands; the repeated Started is a station event."""
    await service.transaction_event("CP1", ev("Started", 0, T0, id_tag="T1",
                                              samples=[wh(T0, 1000)]))
    await service.transaction_event("CP1", ev("Updated", 1, T0 + timedelta(minutes=30),
                                              samples=[wh(T0 + timedelta(minutes=30), 5000)]))
    early = T0 - timedelta(hours=4)
    await service.transaction_event("CP1", ev("Started", 2, early))
    await service.transaction_event("CP1", ev("Ended", 3, T1, samples=[wh(T1, 10000)]))
    [session] = state.sessions.values()
    assert (session.started_at, session.stopped_at, session.energy_wh) == (T0, T1, 9000)
    [again] = [e["payload"] for e in state.station_events if e["kind"] == "started_again"]
    assert again == {"session_id": session.id, "transaction_id": "TX-1", "seq_no": 2,
                     "started_at": T0.isoformat(), "timestamp": early.isoformat()}


async def test_a_started_event_after_later_events_names_the_start(
    service: ChargingService, state: MemoryState,
) -> None:
    """Replayed out of order (an Updated first), the Started event still says when the
    transaction began."""
    await service.transaction_event("CP1", ev("Updated", 1, T0 + timedelta(minutes=30),
                                              offline=True))
    await service.transaction_event("CP1", ev("Started", 0, T0, offline=True, id_tag="T1"))
    [session] = state.sessions.values()
    assert session.started_at == T0 and "started_missing" in session.flags
    assert "started_again" not in kinds(state)


async def test_a_started_event_after_the_late_started_does_not_move_the_start(
    service: ChargingService, state: MemoryState,
) -> None:
    """A transaction seen first in an Updated event (``started_missing``) takes its start
    from the one Started event that comes later; a hostile station sending Started again,
    back-dated four hours, moves it no further (``started_again``, as for a session that
    had its Started first)."""
    await service.transaction_event("CP1", ev("Updated", 1, T0 + timedelta(minutes=30),
                                              offline=True))
    await service.transaction_event("CP1", ev("Started", 0, T0, offline=True, id_tag="T1"))
    early = T0 - timedelta(hours=4)
    await service.transaction_event("CP1", ev("Started", 2, early))
    [session] = state.sessions.values()
    assert session.started_at == T0
    [again] = [e["payload"] for e in state.station_events if e["kind"] == "started_again"]
    assert (again["started_at"], again["timestamp"]) == (T0.isoformat(), early.isoformat())


async def test_a_started_event_after_the_events_it_precedes_does_not_move_the_start(
    service: ChargingService, state: MemoryState,
) -> None:
    """A Started event numbered after the events already seen is no start of theirs (E01:
    a transaction's events are numbered from its Started on): the session created by the
    Updated event keeps its start, the back-dated Started is a station event."""
    start = T0 + timedelta(minutes=30)
    await service.transaction_event("CP1", ev("Updated", 0, start, id_tag="T1"))
    early = T0 - timedelta(hours=4)
    await service.transaction_event("CP1", ev("Started", 1, early))
    [session] = state.sessions.values()
    assert session.started_at == start and "started_missing" in session.flags
    assert "started_again" in kinds(state)


async def test_a_seq_no_gap_is_flagged_and_recorded(service: ChargingService,
                                                    state: MemoryState) -> None:
    await service.transaction_event("CP1", ev("Started", 0, T0))
    await service.transaction_event("CP1", ev("Updated", 3, T0))
    [session] = state.sessions.values()
    assert "seq_gap" in session.flags
    [gap] = [e["payload"] for e in state.station_events if e["kind"] == "seq_gap"]
    assert (gap["expected"], gap["received"]) == (1, 3)


async def test_201_unknown_tag_and_no_credit(service: ChargingService,
                                             state: MemoryState) -> None:
    assert await service.transaction_event(
        "CP1", ev("Started", 0, T0, id_tag="NEW")) is AuthStatus.UNKNOWN
    service.credit = Credit({"T1": "no escrow"})
    started = TransactionEventIn("Started", T0, "Authorized", 0, "TX-2", evse_id=1,
                                 connector_id=1, id_tag="T1")
    assert await service.transaction_event("CP1", started) is AuthStatus.NO_CREDIT
    flags = {s.transaction_id: s.flags for s in state.sessions.values()}
    assert flags == {"TX-1": ["auth_unknown"], "TX-2": ["auth_nocredit"]}


class Decided(Credit):
    """The escrows' answers as decisions: why a card may not charge, its cause included."""

    def __init__(self, decisions: dict[str, CreditDecision],
                 changes: tuple[tuple[datetime, bool], ...] | None = None) -> None:
        super().__init__()
        self.decisions = decisions
        self.changes = changes  # the chain's link history of an unlinked card

    async def check(self, station_id: str, tag: str) -> CreditDecision | None:
        return self.decisions.get(tag)

    async def link_changes(self, decision: CreditDecision
                           ) -> tuple[tuple[datetime, bool], ...] | None:
        return self.changes


DRIVER = "0xdriver"
# what the escrow says of a card (None: accepted there), its registry entry, and who pays a
# session started on it at T0 and sent at NOW (a station charges whatever the answer)
PAYERS = {
    # the escrow: the driver can announce a withdrawal, spend the day's limit, lower
    # terms... after the station started, and undo it: the card stays its driver's
    "no_credit": (CreditDecision(False, "the escrow covers 0, a session needs 2000", DRIVER),
                  IdTag("CARD"), DRIVER),
    "chain_unreadable": (CreditDecision(False, "the driver's escrow cannot be read now",
                                        DRIVER), IdTag("CARD"), DRIVER),
    # the card unlinked on chain before the session's start: not the driver's any more
    # (lost, stolen)
    "unlinked": (CreditDecision(False, "unlinked", DRIVER, card_unlinked=True),
                 IdTag("CARD"), ""),
    # unlinked on chain after the session's start (an offline station's start sent late):
    # the driver's when the station started
    "unlinked_after_the_start": (CreditDecision(False, "unlinked", DRIVER, card_unlinked=True),
                                 IdTag("CARD"), DRIVER),
    # linked on chain only after the session's start, unlinked since: it was not the
    # driver's card when the station started
    "linked_only_after_the_start": (CreditDecision(False, "unlinked", DRIVER,
                                                   card_unlinked=True), IdTag("CARD"), ""),
    # unlinked now, but when is not readable from the chain: no guess against the host
    "unlinked_when_unreadable": (CreditDecision(False, "unlinked", DRIVER, card_unlinked=True),
                                 IdTag("CARD"), DRIVER),
    # the operator's registry: blocked (reported stolen), unknown, expired before the start
    "blocked": (None, IdTag("CARD", status="blocked"), ""),
    "unknown": (None, None, ""),
    "expired_before_the_start": (None, IdTag("CARD", expires_at=T0 - timedelta(seconds=1)),
                                 ""),
    # valid when the session started, expired when the station (offline) sent its start
    "expired_after_the_start": (None, IdTag("CARD", expires_at=T0 + timedelta(minutes=1)),
                                DRIVER),
}


# the chain's history of the card's link (block time, linked) where the escrow refused it
# as unlinked now (None: not readable)
LINK_CHANGES: dict[str, tuple[tuple[datetime, bool], ...] | None] = {
    "unlinked": ((T0 - timedelta(days=3), True), (T0 - timedelta(minutes=5), True),
                 (T0 - timedelta(seconds=1), False)),
    "unlinked_after_the_start": ((T0 - timedelta(days=3), True), (T0 - timedelta(hours=1),
                                                                  False),
                                 (T0 - timedelta(minutes=10), True),
                                 (T0 + timedelta(seconds=1), False)),
    "linked_only_after_the_start": ((T0 + timedelta(minutes=1), True),
                                    (T0 + timedelta(hours=1), False)),
    "unlinked_when_unreadable": None,
}


@pytest.mark.parametrize("version", ["1.6", "2.0.1"])
@pytest.mark.parametrize("cause", sorted(PAYERS))
async def test_a_refused_cards_payer_follows_the_refusals_cause(
    service: ChargingService, state: MemoryState, version: str, cause: str,
) -> None:
    """A card refused at the start charges nobody only when it was not its driver's to be
    charged for when the session started, by a cause the driver cannot bring about after
    the station started: unlinked on chain before the start (the chain's link history, by
    block time), blocked or unknown in the registry, expired before the start. Refused by
    the escrow, or by a chain that could not be read, unlinked after the start or at a time
    the chain does not tell, it stays its driver's (the contract's own checks decide what it
    pays)."""
    decision, tag, payer = PAYERS[cause]
    service.credit = Decided({"CARD": decision} if decision is not None else {},
                             LINK_CHANGES.get(cause))
    state.cards["CARD"] = {"driver": DRIVER, "salt": "0x01", "commitment": "0x0a"}
    if tag is not None:
        state.tags["CARD"] = tag
    if version == "1.6":
        _, status, _ = await service.start_transaction("CP1", 1, "CARD", Decimal(0), T0)
    else:
        status = await service.transaction_event("CP1", TransactionEventIn(
            "Started", T0, "Authorized", 0, "TX-C", evse_id=1, connector_id=1, id_tag="CARD"))
    assert status is not AuthStatus.ACCEPTED
    [session] = state.sessions.values()
    assert session.id is not None
    assert state.session_cards[session.id]["driver"] == payer, status


# -- a 2.0.1 token first presented after a start without one (E03) --------------------------


def _late(kind: str, seq: int, at: datetime, trigger: str, **kw: Any) -> TransactionEventIn:
    return TransactionEventIn(kind, at, trigger, seq, "TX-L", **kw)


async def _started_without_token(service: ChargingService, state: MemoryState) -> None:
    """A transaction started at plug-in on EVSE 1, no token; CARD is DRIVER's card."""
    state.tags["CARD"] = IdTag("CARD")
    state.cards["CARD"] = {"driver": DRIVER, "salt": "0x01", "commitment": "0x0a"}
    assert await service.transaction_event("CP1", _late(
        "Started", 0, T0, "CablePluggedIn", evse_id=1, connector_id=1,
        samples=[wh(T0, 1000, context="Transaction.Begin")])) is None


def _not_payer(state: MemoryState) -> list[str]:
    """The reasons of the token_not_payer events."""
    return [e["payload"]["reason"] for e in state.station_events
            if e["kind"] == "token_not_payer"]


@pytest.mark.parametrize("stop", ["Ended", "StopAuthorized", "MasterPass"])
async def test_a_token_presented_only_to_stop_a_session_started_without_one_pays_nothing(
    service: ChargingService, state: MemoryState, stop: str,
) -> None:
    """A hostile station charges at plug-in with no token, then names a driver's card in
    the events that stop it: the driver pays nothing of it (nor does a master pass's
    holder, C16, whose stop is no more than that)."""
    await _started_without_token(service, state)
    if stop == "MasterPass":
        state.tags["CARD"] = IdTag("CARD", parent="MASTERS")
        state.central_options["master_pass_group"] = "MASTERS"
    if stop == "StopAuthorized":
        await service.transaction_event("CP1", _late(
            "Updated", 1, T1 - timedelta(minutes=1), "StopAuthorized", id_tag="CARD"))
    await service.transaction_event("CP1", _late(
        "Ended", 2, T1, "StopAuthorized", id_tag="CARD",
        samples=[wh(T1, 11000, context="Transaction.End")]))
    [session] = state.sessions.values()
    assert session.id is not None and session.energy_wh == 10000
    assert session.id_tag is None and session.id not in state.session_cards, (
        session.id_tag, state.session_cards)
    if stop == "MasterPass":
        assert "token_not_payer" not in session.flags and _not_payer(state) == []
    else:
        assert "token_not_payer" in session.flags and set(_not_payer(state)) == {
            "presented_to_stop"}


@pytest.mark.parametrize(("decision", "tag", "answer"), [
    # the driver's escrow does not cover a charge: NoCredit, not the payer
    (CreditDecision(False, "the escrow covers 0, a session needs 2000", DRIVER),
     IdTag("CARD"), AuthStatus.NO_CREDIT),
    # unknown to the registry, blocked in it
    (None, None, AuthStatus.UNKNOWN),
    (None, IdTag("CARD", status="blocked"), AuthStatus.BLOCKED),
], ids=["no-credit", "unknown", "blocked"])
async def test_a_token_presented_late_and_refused_is_not_the_payer(
    service: ChargingService, state: MemoryState, decision: CreditDecision | None,
    tag: IdTag | None, answer: AuthStatus,
) -> None:
    await _started_without_token(service, state)
    service.credit = Decided({"CARD": decision} if decision is not None else {})
    if tag is None:
        del state.tags["CARD"]
    else:
        state.tags["CARD"] = tag
    assert await service.transaction_event("CP1", _late(
        "Updated", 1, T0 + timedelta(minutes=1), "Authorized", id_tag="CARD")) is answer
    [session] = state.sessions.values()
    assert session.id_tag is None and session.id not in state.session_cards
    assert session.limit_minor is None and _not_payer(state) == [answer.value]


async def test_a_token_presented_late_and_covered_pays_within_its_limit(
    service: ChargingService, state: MemoryState,
) -> None:
    """E03: a transaction started at plug-in, the driver's card presented after it: it pays,
    with the checks of a token at the start (the escrow's limit)."""
    await _started_without_token(service, state)
    service.credit = Decided({"CARD": CreditDecision(True, "", DRIVER, session_limit=500)})
    assert await service.transaction_event("CP1", _late(
        "Updated", 1, T0 + timedelta(minutes=1), "Authorized",
        id_tag="CARD")) is AuthStatus.ACCEPTED
    [session] = state.sessions.values()
    assert session.id is not None
    assert (session.id_tag, session.auth_status, session.limit_minor) == (
        "CARD", "Accepted", 500)
    assert state.session_cards[session.id]["driver"] == DRIVER and _not_payer(state) == []


# -- signed meter data ----------------------------------------------------------------------
async def test_a_signed_meter_record_is_verified_and_wins(
    service: ChargingService, state: MemoryState,
) -> None:
    state.meter_keys["CP1"] = (KEBA_KEY, "operator")
    t0 = datetime(2019, 8, 13, 10, 3, 15, tzinfo=UTC)
    t1 = datetime(2019, 8, 13, 10, 3, 36, tzinfo=UTC)
    txid, _, _ = await service.start_transaction("CP1", 1, "T1", Decimal(260), t0)
    signed = wh(t1, KEBA, context="Transaction.End", format="SignedData",
                signed={"signedData": KEBA})
    await service.stop_transaction("CP1", StopInfo(txid, Decimal(260), t1, "Local", None,
                                                   samples=[signed]))
    session = state.sessions[txid]
    assert session.flags == [] and session.energy_wh == 0
    assert [(r["tx_code"], r["status"]) for r in state.signed[txid]] == [
        ("B", "verified"), ("E", "verified")]
    assert txid in state.settlement_queue


async def test_a_stop_below_an_unsigned_reading_is_settled_by_the_meters_signed_stop(
    service: ChargingService, state: MemoryState,
) -> None:
    """meterStop (260 Wh) below an unsigned periodic reading (1,300 Wh, more than a
    reading's digits allow) is a register that went backwards, unless the meter signed the
    register at the stop: it signed 259.7 Wh, the stop reported; billed as signed, not
    held."""
    state.meter_keys["CP1"] = (KEBA_KEY, "operator")
    t0 = datetime(2019, 8, 13, 10, 3, 15, tzinfo=UTC)
    t1 = datetime(2019, 8, 13, 10, 3, 36, tzinfo=UTC)
    txid, _, _ = await service.start_transaction("CP1", 1, "T1", Decimal(260), t0)
    await service.meter_values("CP1", 1, str(txid), [wh(t0 + timedelta(seconds=10), 1300)])
    signed = wh(t1, KEBA, context="Transaction.End", format="SignedData",
                signed={"signedData": KEBA})
    await service.stop_transaction("CP1", StopInfo(txid, Decimal(260), t1, "Local", None,
                                                   samples=[signed]))
    session = state.sessions[txid]
    assert "meter_went_backwards" not in session.flags, session.flags
    assert txid in state.settlement_queue
    # unsigned, the same readings are held
    other, _, _ = await service.start_transaction("CP1", 2, "T1", Decimal(260), t0)
    await service.meter_values("CP1", 2, str(other), [wh(t0 + timedelta(seconds=10), 1300)])
    await service.stop_transaction("CP1", StopInfo(other, Decimal(260), t1))
    assert "meter_went_backwards" in state.sessions[other].flags
    assert other not in state.settlement_queue


async def test_a_tampered_signed_record_holds_the_session(
    service: ChargingService, state: MemoryState,
) -> None:
    state.meter_keys["CP1"] = (KEBA_KEY, "operator")
    tampered = KEBA.replace('"RV":0.2597', '"RV":0.3597')
    assert tampered != KEBA
    t1 = datetime(2019, 8, 13, 10, 3, 36, tzinfo=UTC)
    txid, _, _ = await service.start_transaction("CP1", 1, "T1", Decimal(260), t1)
    signed = wh(t1, tampered, context="Transaction.End", format="SignedData",
                signed={"signedData": tampered})
    await service.stop_transaction("CP1", StopInfo(txid, Decimal(360), t1, samples=[signed]))
    assert "signature_invalid" in state.sessions[txid].flags
    assert txid not in state.settlement_queue


async def test_the_first_meter_key_is_pinned(service: ChargingService,
                                             state: MemoryState) -> None:
    from chargers_sim.ocmf import MeterSigner

    signer = MeterSigner.generate("M1")
    container = signer.container(station_id="CP1", id_tag="T1", register_wh=2000, at=T1,
                                 kind="E", pagination=1)
    txid, _, _ = await service.start_transaction("CP1", 1, "T1", Decimal(1000), T0)
    sample = wh(T1, "", context="Transaction.End", format="SignedData",
                signed=signer.signed_meter_value(container))
    await service.stop_transaction("CP1", StopInfo(txid, Decimal(2000), T1, samples=[sample]))
    key, source = state.meter_keys["CP1"]
    assert key is not None and source == "first_use"
    pinned = [e["payload"] for e in state.station_events if e["kind"] == "security"]
    assert pinned[0]["type"] == "MeterKeyPinned"
