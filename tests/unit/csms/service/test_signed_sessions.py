"""Sessions are not billed from signed meter data (OCMF) that Eichrecht, or the project's own
receipt verifier, would not bill from. In-memory storage, containers signed with a test key."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from csms.domain.model import MeterSample
from csms.service.charging import ChargingService, StopInfo, TransactionEventIn
from support.memory import MemoryRepository, MemoryState, station_state

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
T0 = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
T1 = T0 + timedelta(hours=1)
KEY = ec.generate_private_key(ec.SECP256R1())
KEY_DER = KEY.public_key().public_bytes(serialization.Encoding.DER,
                                        serialization.PublicFormat.SubjectPublicKeyInfo)


def ocmf_time(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%S,000+0000 S")


def container(tx: str, kwh: str, at: datetime, *, ms: str = "SN-1", pg: str = "T1",
              ident: str = "T1", st: str = "G", ef: str = "") -> str:
    text = ('{"FV":"1.0","GI":"ACME","GS":"CP1","GV":"1","PG":"%s","MV":"ACME","MM":"M1",'  # noqa: UP031
            '"MS":"%s","IS":true,"IL":"NONE","IF":[],"IT":"CENTRAL","ID":"%s","RD":[{"TM":"%s",'
            '"TX":"%s","RV":%s,"RI":"1-0:1.8.0","RU":"kWh","RT":"AC","EF":"%s","ST":"%s"}]}'
            ) % (pg, ms, ident, ocmf_time(at), tx, kwh, ef, st)
    sig = KEY.sign(text.encode(), ec.ECDSA(hashes.SHA256())).hex()
    return f'OCMF|{text}|{{"SA":"ECDSA-secp256r1-SHA256","SD":"{sig}"}}'


def signed_sample(at: datetime, c: str, context: str) -> MeterSample:
    smv = {"signedMeterData": base64.b64encode(c.encode()).decode(),
           "signingMethod": "ECDSA-secp256r1-SHA256", "encodingMethod": "OCMF"}
    return MeterSample(timestamp=at, value="0", context=context, format="SignedData",
                       signed=smv)


@pytest.fixture
def state() -> MemoryState:
    s = station_state("T1")
    s.meter_keys["CP1"] = (KEY_DER.hex(), "operator")
    return s


@pytest.fixture
def service(state: MemoryState) -> ChargingService:
    return ChargingService(MemoryRepository(state), clock=lambda: NOW)


def ev(kind: str, seq: int, at: datetime, samples: list[MeterSample],
       **kw: Any) -> TransactionEventIn:
    return TransactionEventIn(kind, at, "Authorized", seq, "TX-1", evse_id=1, connector_id=1,
                              samples=samples, **kw)


async def session201(service: ChargingService, state: MemoryState, begin: str,
                     end: str) -> Any:
    """A 2.0.1 station that signs its Transaction.Begin / End readings (as a KEBA P30 does):
    the signed readings are the only ones, so they are billed."""
    await service.transaction_event("CP1", ev("Started", 0, T0, [
        signed_sample(T0, begin, "Transaction.Begin")], id_tag="T1"))
    await service.transaction_event("CP1", ev("Ended", 1, T1, [
        signed_sample(T1, end, "Transaction.End")], stopped_reason="EVDisconnected"))
    [session] = state.sessions.values()
    return session


# settlement/receipts.py::_belongs (and docs/settlement.md, Receipts) call a receipt with
# such readings INVALID: "readings of several meters", "outside the session", "pages go
# backwards", "the meter signed them for X, not T1". The central system bills them.
@pytest.mark.parametrize(("name", "begin", "end"), [
    ("another meter's end reading",
     container("B", "1.000", T0, ms="SN-1", pg="T1"),
     container("E", "11.000", T1, ms="SN-2", pg="T2")),
    ("readings replayed from a session a year before",
     container("B", "1.000", T0 - timedelta(days=365), pg="T1"),
     container("E", "11.000", T1 - timedelta(days=365), pg="T2")),
    ("readings the meter signed for another driver's token",
     container("B", "1.000", T0, ident="OTHER", pg="T1"),
     container("E", "11.000", T1, ident="OTHER", pg="T2")),
    ("begin and end swapped in time and pages",
     container("B", "1.000", T1, pg="T9"),
     container("E", "11.000", T0, pg="T2")),
])
async def test_signed_readings_that_do_not_belong_to_the_session_are_not_billed(
    service: ChargingService, state: MemoryState, name: str, begin: str, end: str,
) -> None:
    session = await session201(service, state, begin, end)
    assert [r["status"] for r in state.signed[session.id]] == ["verified"] * 2
    assert session.id not in state.settlement_queue, (
        f"{name}: queued, billed {session.energy_wh} Wh, flags {session.flags}")


# OCMF ST "G" is the only good meter status, EF "E" an energy error: such readings are not
# billable (pyocmf.compliance METER_STATUS / ERROR_FLAGS, the Transparenzsoftware).
@pytest.mark.parametrize(("st", "ef"), [("E", "E"), ("M", ""), ("G", "E")])
async def test_readings_the_meter_marks_as_faulty_are_not_billed(
    service: ChargingService, state: MemoryState, st: str, ef: str,
) -> None:
    session = await session201(service, state, container("B", "1.000", T0, st=st, ef=ef),
                               container("E", "11.000", T1, pg="T2", st=st, ef=ef))
    assert session.id not in state.settlement_queue, (
        f"ST={st} EF={ef}: queued, billed {session.energy_wh} Wh, flags {session.flags}")


@pytest.mark.parametrize("end_code", ["L", "R", "A", "P"])
async def test_a_16_stop_above_the_signed_termination_reading_is_held(
    service: ChargingService, state: MemoryState, end_code: str,
) -> None:
    # the meter signed 10.000 -> 12.000 kWh and ended with a termination reading (OCMF TX
    # L/R/A/P); the station reports meterStop 20,000 Wh
    txid, _, _ = await service.start_transaction("CP1", 1, "T1", Decimal(10000), T0)
    samples = [signed_sample(T0, container("B", "10.000", T0), "Transaction.Begin"),
               signed_sample(T1, container(end_code, "12.000", T1, pg="T2"),
                             "Transaction.End")]
    await service.stop_transaction("CP1", StopInfo(txid, Decimal(20000), T1, "Local", None,
                                                   samples=samples))
    session = state.sessions[txid]
    assert session.id not in state.settlement_queue, (
        f"queued, billed {session.energy_wh} Wh (signed 2000 Wh), flags {session.flags}")


async def test_control_a_well_formed_signed_session_is_queued(
    service: ChargingService, state: MemoryState,
) -> None:
    session = await session201(service, state, container("B", "1.000", T0),
                               container("E", "11.000", T1, pg="T2"))
    assert (session.energy_wh, session.id in state.settlement_queue) == (10000, True)


async def test_control_the_same_16_stop_with_an_e_reading_is_held(
    service: ChargingService, state: MemoryState,
) -> None:
    txid, _, _ = await service.start_transaction("CP1", 1, "T1", Decimal(10000), T0)
    samples = [signed_sample(T0, container("B", "10.000", T0), "Transaction.Begin"),
               signed_sample(T1, container("E", "12.000", T1, pg="T2"), "Transaction.End")]
    await service.stop_transaction("CP1", StopInfo(txid, Decimal(20000), T1, "Local", None,
                                                   samples=samples))
    assert "signed_energy_mismatch" in state.sessions[txid].flags
    assert txid not in state.settlement_queue


async def test_a_begin_reading_held_while_running_is_settled_by_the_signed_one(
    service: ChargingService, state: MemoryState,
) -> None:
    """An unsigned begin reading that contradicts meterStart holds the running session (the
    signatures are checked once it completes); the meter's signed begin reading, the
    meterStart's, then settles the start: billed, and the hold gone."""
    txid, _, _ = await service.start_transaction("CP1", 1, "T1", Decimal(10000), T0)
    await service.meter_values("CP1", 1, str(txid), [
        MeterSample(T0, "11000", context="Transaction.Begin"),
        signed_sample(T0, container("B", "10.000", T0), "Transaction.Begin")])
    assert "begin_readings_differ" in state.sessions[txid].flags
    await service.stop_transaction("CP1", StopInfo(txid, Decimal(12000), T1, "Local", None,
                                                   samples=[signed_sample(T1, container(
                                                       "E", "12.000", T1, pg="T2"),
                                                       "Transaction.End")]))
    session = state.sessions[txid]
    assert "begin_readings_differ" not in session.flags, session.flags
    assert (session.energy_wh, txid in state.settlement_queue) == (2000, True)
