"""2.0.1 TransactionEvents a buggy or hostile station sends, over real sockets on a real
SQLite file: a transactionId reused on another EVSE or after its transaction ended, a token
accepted after a refused one, an empty transactionId. What the central system bills must
be what each EVSE delivered, to the token that authorized it, or be held."""

from __future__ import annotations

from typing import Any

import pytest

from support import RunningServer, is_queued, station_events
from support.client import RawClient

from .test_sessions_v201 import event, reading

# the storage backends, as tests/conftest.py runs its BOTH_BACKENDS modules
BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]

E1 = {"id": 1, "connectorId": 1}
E2 = {"id": 2, "connectorId": 1}


def token(tag: str) -> dict[str, str]:
    return {"idToken": tag, "type": "ISO14443"}


@pytest.fixture
async def station(csms_server: RunningServer) -> Any:
    await csms_server.add_station("EV1")
    for tag in ("A", "B"):
        await csms_server.add_tag(tag)
    await csms_server.add_tariff()
    client = await RawClient.connect(csms_server.url, "EV1", ["ocpp2.0.1"])
    await client.result("BootNotification", {
        "chargingStation": {"vendorName": "V", "model": "M"}, "reason": "PowerUp"})
    yield client
    await client.close()


async def card_of(server: RunningServer, session_id: int) -> str | None:
    async def work(tx: Any) -> str | None:
        row = await tx.session_card(session_id)
        return None if row is None else str(row["tag"])

    tag: str | None = await server.repo.read(work)
    return tag


async def auth_of(server: RunningServer, session_id: int) -> str | None:
    async def work(tx: Any) -> str | None:
        session = await tx.get_session(session_id)
        return None if session is None else session.auth_status

    status: str | None = await server.repo.read(work)
    return status


# seqNo per transaction from 0 (each EVSE's counter), or one counter for the station
@pytest.mark.parametrize("seqs", [(0, 0, 1, 1), (0, 1, 2, 3)], ids=["per-evse", "station"])
async def test_a_transaction_id_reused_on_another_evse_does_not_bill_its_energy_to_the_first(
    csms_server: RunningServer, station: RawClient, seqs: tuple[int, int, int, int],
) -> None:
    # a station numbering transactions per EVSE: both EVSEs' first transaction is "1".
    # EVSE 1 delivers 1 kWh to A; EVSE 2, whose register reads far higher, 10 kWh to B
    s_a, s_b, end_b, end_a = seqs
    for body in [
        event("Started", s_a, "2026-03-01T10:00:00Z", txid="1", idToken=token("A"), evse=E1,
              meterValue=[reading("2026-03-01T10:00:00Z", 1000, "Transaction.Begin")]),
        event("Started", s_b, "2026-03-01T10:05:00Z", txid="1", idToken=token("B"), evse=E2,
              **({"meterValue": [reading("2026-03-01T10:05:00Z", 50000, "Transaction.Begin")]}
                 if s_b == 0 else {})),  # the second variant: no begin reading of B
        event("Ended", end_b, "2026-03-01T11:00:00Z", txid="1", evse=E2,
              meterValue=[reading("2026-03-01T11:00:00Z", 60000, "Transaction.End")]),
        event("Ended", end_a, "2026-03-01T11:00:00Z", txid="1", evse=E1,
              meterValue=[reading("2026-03-01T11:00:00Z", 2000, "Transaction.End")]),
    ]:
        answer: Any = await station.call("TransactionEvent", body)
        assert answer[0] == 3, answer
    [a] = [s for s in await csms_server.sessions("EV1") if s["id_tag"] == "A"]
    # A's card is billed for EVSE 1's 1 kWh at most, or the session is held for the operator
    assert not (await is_queued(csms_server, a["id"]) and a["energy_wh"] > 1000), a
    # both: EVSE 1's 1 kWh, on A's card; every event of A's named EVSE 1
    assert a["energy_wh"] == 1000 and await card_of(csms_server, a["id"]) == "A", a
    # EVSE 2's transaction is B's session: recorded, on B's card, held for the operator
    [b] = [s for s in await csms_server.sessions("EV1") if s["id"] != a["id"]]
    assert (b["id_tag"], b["status"]) == ("B", "completed")
    assert "shared_transaction_id" in b["flags"]
    assert await card_of(csms_server, b["id"]) == "B" and not await is_queued(csms_server, b["id"])
    # its 10 kWh when its Started carried the begin reading (else: held, its start missing)
    assert b["energy_wh"] == 10000 or s_b != 0, b
    assert await station_events(csms_server, "EV1", "evse_mismatch") == []


# the new transaction numbered from seqNo 0 as every transaction is (E01), or on from the
# first one's
@pytest.mark.parametrize("seqs", [(0, 1), (2, 3)], ids=["from-0", "numbered-on"])
async def test_a_transaction_id_reused_after_its_end_does_not_lose_the_new_transaction(
    csms_server: RunningServer, station: RawClient, seqs: tuple[int, int],
) -> None:
    # a station whose transaction counter restarted (a reset, a firmware update): its next
    # transaction is "1" again
    for body in [
        event("Started", 0, "2026-03-01T10:00:00Z", txid="1", idToken=token("A"), evse=E1,
              meterValue=[reading("2026-03-01T10:00:00Z", 1000, "Transaction.Begin")]),
        event("Ended", 1, "2026-03-01T11:00:00Z", txid="1", evse=E1,
              meterValue=[reading("2026-03-01T11:00:00Z", 11000, "Transaction.End")]),
    ]:
        await station.result("TransactionEvent", body)
    [first] = await csms_server.sessions("EV1")
    # the next day, B charges 20 kWh on the same EVSE; B's token is answered Accepted
    started = await station.result("TransactionEvent", event(
        "Started", seqs[0], "2026-03-02T10:00:00Z", txid="1", idToken=token("B"), evse=E1,
        meterValue=[reading("2026-03-02T10:00:00Z", 11000, "Transaction.Begin")]))
    await station.result("TransactionEvent", event(
        "Ended", seqs[1], "2026-03-02T11:00:00Z", txid="1", evse=E1,
        meterValue=[reading("2026-03-02T11:00:00Z", 31000, "Transaction.End")]))
    sessions = await csms_server.sessions("EV1")
    billed = ("started_at", "stopped_at", "energy_wh", "id_tag")
    [again] = [s for s in sessions if s["id"] == first["id"]]
    assert [again[k] for k in billed] == [first[k] for k in billed]  # billed as it was
    # B's 20 kWh are in a session (held for the operator will do); not dropped as a retry
    # of the first transaction's events after B was let charge
    assert started["idTokenInfo"]["status"] != "Accepted" or any(
        s["energy_wh"] == 20000 and s["id"] != first["id"] for s in sessions), sessions
    # both: B's session, its 20 kWh on B's card, held for the operator to release
    [new] = [s for s in sessions if s["id"] != first["id"]]
    assert (new["id_tag"], new["energy_wh"], new["status"]) == ("B", 20000, "completed")
    assert "reused_transaction_id" in new["flags"] and await card_of(csms_server, new["id"]) == "B"
    assert not await is_queued(csms_server, new["id"])
    assert await is_queued(csms_server, first["id"])  # the first billed as before


async def test_a_token_accepted_after_a_refused_one_pays_for_the_session(
    csms_server: RunningServer, station: RawClient,
) -> None:
    # E02/E05: the transaction starts at plug-in; the first card is unknown and the station
    # deauthorizes; the driver then presents B, accepted, and charges 10 kWh on it
    for body in [
        event("Started", 0, "2026-03-01T10:00:00Z", txid="t", evse=E1,
              triggerReason="CablePluggedIn",
              meterValue=[reading("2026-03-01T10:00:00Z", 1000, "Transaction.Begin")]),
        event("Updated", 1, "2026-03-01T10:01:00Z", txid="t", idToken=token("NOBODY"),
              triggerReason="Authorized"),
        event("Updated", 2, "2026-03-01T10:02:00Z", txid="t", idToken=token("B"),
              triggerReason="Authorized"),
        event("Ended", 3, "2026-03-01T11:00:00Z", txid="t", triggerReason="EVCommunicationLost",
              meterValue=[reading("2026-03-01T11:00:00Z", 11000, "Transaction.End")]),
    ]:
        answer = await station.result("TransactionEvent", body)
        if body.get("idToken") == token("B"):
            assert answer["idTokenInfo"]["status"] == "Accepted"
    [s] = await csms_server.sessions("EV1")
    assert s["energy_wh"] == 10000
    # the card that authorized the charging pays, or the session waits for the operator:
    # not settled on the refused card's "nobody pays"
    assert await card_of(csms_server, s["id"]) == "B" \
        or not await is_queued(csms_server, s["id"]), (s, await card_of(csms_server, s["id"]))
    # both: B pays, as an Accepted token at the start would, and nothing holds it
    assert (s["id_tag"], await auth_of(csms_server, s["id"])) == ("B", "Accepted"), s
    assert not [f for f in s["flags"] if f.startswith("auth_")], s  # NOBODY's refusal
    assert await card_of(csms_server, s["id"]) == "B" and await is_queued(csms_server, s["id"])


async def test_an_empty_transaction_id_is_one_transaction(
    csms_server: RunningServer, station: RawClient,
) -> None:
    # transactionId "" is valid by the schema (a string of at most 36 characters)
    for body in [
        event("Started", 0, "2026-03-01T10:00:00Z", txid="", idToken=token("A"), evse=E1,
              meterValue=[reading("2026-03-01T10:00:00Z", 1000, "Transaction.Begin")]),
        event("Updated", 1, "2026-03-01T10:30:00Z", txid="",
              meterValue=[reading("2026-03-01T10:30:00Z", 5000, "Sample.Periodic")]),
        event("Ended", 2, "2026-03-01T11:00:00Z", txid="",
              meterValue=[reading("2026-03-01T11:00:00Z", 11000, "Transaction.End")]),
    ]:
        await station.result("TransactionEvent", body)
    sessions = await csms_server.sessions("EV1")
    # one session, its 10 kWh counted (held or not), not a session per event of 0 Wh each
    assert [(s["id_tag"], s["energy_wh"], s["status"]) for s in sessions] == [
        ("A", 10000, "completed")], sessions


@pytest.mark.parametrize("csms_db", BACKENDS, indirect=True)
async def test_one_transaction_id_on_two_evses_at_once_is_two_sessions(
    csms_server: RunningServer, station: RawClient,
) -> None:
    # a station numbering its transactions per EVSE: A on EVSE 1 and B on EVSE 2 are both
    # transaction "1", each numbered from seqNo 0; each event names its EVSE
    for body in [
        event("Started", 0, "2026-03-01T10:00:00Z", txid="1", idToken=token("A"), evse=E1,
              meterValue=[reading("2026-03-01T10:00:00Z", 1000, "Transaction.Begin")]),
        event("Started", 0, "2026-03-01T10:05:00Z", txid="1", idToken=token("B"), evse=E2,
              meterValue=[reading("2026-03-01T10:05:00Z", 50000, "Transaction.Begin")]),
        event("Updated", 1, "2026-03-01T10:30:00Z", txid="1", evse=E2,
              meterValue=[reading("2026-03-01T10:30:00Z", 55000, "Sample.Periodic")]),
        event("Updated", 1, "2026-03-01T10:30:00Z", txid="1", evse=E1,
              meterValue=[reading("2026-03-01T10:30:00Z", 1500, "Sample.Periodic")]),
        event("Ended", 2, "2026-03-01T11:00:00Z", txid="1", evse=E2,
              meterValue=[reading("2026-03-01T11:00:00Z", 60000, "Transaction.End")]),
        event("Ended", 2, "2026-03-01T11:00:00Z", txid="1", evse=E1,
              meterValue=[reading("2026-03-01T11:00:00Z", 2000, "Transaction.End")]),
    ]:
        answer = await station.result("TransactionEvent", body)
        if "idToken" in body:  # each driver let charge
            assert answer["idTokenInfo"]["status"] == "Accepted"
    a, b = sorted(await csms_server.sessions("EV1"), key=lambda s: s["id"])
    # A: EVSE 1's 1 kWh, billed as any session
    assert (a["id_tag"], a["evse_id"], a["energy_wh"], a["status"]) == ("A", 1, 1000,
                                                                        "completed")
    assert await is_queued(csms_server, a["id"]), a
    # B: EVSE 2's 10 kWh recorded, on B's card, held for the operator to release, stored
    # under an id no station sends
    assert (b["id_tag"], b["evse_id"], b["energy_wh"], b["status"]) == ("B", 2, 10000,
                                                                        "completed")
    assert "shared_transaction_id" in b["flags"] and not await is_queued(csms_server, b["id"])
    assert await card_of(csms_server, b["id"]) == "B"
    assert len(b["transaction_id"]) > 36 and b["transaction_id"].startswith("1 ")
    [shared] = await station_events(csms_server, "EV1", "shared_transaction_id")
    assert (shared["session_id"], shared["beside_session_id"], shared["transaction_id"]) == (
        b["id"], a["id"], "1")


@pytest.mark.parametrize("csms_db", BACKENDS, indirect=True)
async def test_an_event_naming_no_evse_while_both_run_is_neither_s(
    csms_server: RunningServer, station: RawClient,
) -> None:
    # E01: a station names the EVSE in the first event after the EV is connected, and may
    # leave it out later: while two transactions "1" run, such an event is nobody's
    for body in [
        event("Started", 0, "2026-03-01T10:00:00Z", txid="1", idToken=token("A"), evse=E1,
              meterValue=[reading("2026-03-01T10:00:00Z", 1000, "Transaction.Begin")]),
        event("Started", 0, "2026-03-01T10:05:00Z", txid="1", idToken=token("B"), evse=E2,
              meterValue=[reading("2026-03-01T10:05:00Z", 50000, "Transaction.Begin")]),
        event("Updated", 1, "2026-03-01T10:30:00Z", txid="1",
              meterValue=[reading("2026-03-01T10:30:00Z", 99000, "Sample.Periodic")]),
    ]:
        await station.result("TransactionEvent", body)
    a, b = sorted(await csms_server.sessions("EV1"), key=lambda s: s["id"])
    assert a["energy_wh"] in (None, 0) and b["energy_wh"] in (None, 0), (a, b)
    assert "evse_mismatch" in a["flags"] and "evse_mismatch" in b["flags"]
    # their Ended events name their EVSEs: each its own energy, both held
    for body in [
        event("Ended", 2, "2026-03-01T11:00:00Z", txid="1", evse=E1,
              meterValue=[reading("2026-03-01T11:00:00Z", 2000, "Transaction.End")]),
        event("Ended", 2, "2026-03-01T11:00:00Z", txid="1", evse=E2,
              meterValue=[reading("2026-03-01T11:00:00Z", 60000, "Transaction.End")]),
    ]:
        await station.result("TransactionEvent", body)
    a, b = sorted(await csms_server.sessions("EV1"), key=lambda s: s["id"])
    assert (a["energy_wh"], b["energy_wh"]) == (1000, 10000)
    assert not await is_queued(csms_server, a["id"])
    assert not await is_queued(csms_server, b["id"])
    kept = await station_events(csms_server, "EV1", "evse_mismatch")
    assert sorted(e["session_id"] for e in kept) == [a["id"], b["id"]]
    assert {e["event_evse_id"] for e in kept} == {None}


async def test_once_one_of_them_ended_an_event_naming_no_evse_is_the_other_s(
    csms_server: RunningServer, station: RawClient,
) -> None:
    for body in [
        event("Started", 0, "2026-03-01T10:00:00Z", txid="1", idToken=token("A"), evse=E1,
              meterValue=[reading("2026-03-01T10:00:00Z", 1000, "Transaction.Begin")]),
        event("Started", 0, "2026-03-01T10:05:00Z", txid="1", idToken=token("B"), evse=E2,
              meterValue=[reading("2026-03-01T10:05:00Z", 50000, "Transaction.Begin")]),
        event("Ended", 1, "2026-03-01T10:30:00Z", txid="1", evse=E1,
              meterValue=[reading("2026-03-01T10:30:00Z", 2000, "Transaction.End")]),
        # B's, the one transaction "1" still running
        event("Ended", 1, "2026-03-01T11:00:00Z", txid="1",
              meterValue=[reading("2026-03-01T11:00:00Z", 60000, "Transaction.End")]),
    ]:
        await station.result("TransactionEvent", body)
    a, b = sorted(await csms_server.sessions("EV1"), key=lambda s: s["id"])
    assert (a["energy_wh"], a["status"], b["energy_wh"], b["status"]) == (
        1000, "completed", 10000, "completed")
    assert await is_queued(csms_server, a["id"]) and not await is_queued(csms_server, b["id"])


async def test_each_driver_may_stop_the_transaction_on_its_evse(
    csms_server: RunningServer, station: RawClient,
) -> None:
    for body in [
        event("Started", 0, "2026-03-01T10:00:00Z", txid="1", idToken=token("A"), evse=E1),
        event("Started", 0, "2026-03-01T10:05:00Z", txid="1", idToken=token("B"), evse=E2),
    ]:
        await station.result("TransactionEvent", body)
    # B stops B's transaction on EVSE 2; B may not stop A's on EVSE 1
    stopped = await station.result("TransactionEvent", event(
        "Ended", 1, "2026-03-01T11:00:00Z", txid="1", evse=E2, idToken=token("B")))
    assert stopped["idTokenInfo"]["status"] == "Accepted"
    assert await station_events(csms_server, "EV1", "security") == []
    refused = await station.result("TransactionEvent", event(
        "Ended", 1, "2026-03-01T11:00:00Z", txid="1", evse=E1, idToken=token("B")))
    assert refused["idTokenInfo"]["status"] == "Invalid"


# -- what a hostile station might try with the fixes above ----------------------------


async def test_a_token_in_an_event_of_another_evse_pays_for_nothing(
    csms_server: RunningServer, station: RawClient,
) -> None:
    # a transaction started at plug-in on EVSE 1, no token yet; an event of its id on
    # EVSE 2 brings A's card: A pays for neither EVSE's energy
    for body in [
        event("Started", 0, "2026-03-01T10:00:00Z", txid="t", evse=E1,
              triggerReason="CablePluggedIn",
              meterValue=[reading("2026-03-01T10:00:00Z", 1000, "Transaction.Begin")]),
        event("Updated", 1, "2026-03-01T10:01:00Z", txid="t", idToken=token("A"), evse=E2,
              triggerReason="Authorized"),
        event("Ended", 2, "2026-03-01T11:00:00Z", txid="t", evse=E1,
              triggerReason="EVCommunicationLost",
              meterValue=[reading("2026-03-01T11:00:00Z", 11000, "Transaction.End")]),
    ]:
        await station.result("TransactionEvent", body)
    [s] = await csms_server.sessions("EV1")
    assert s["id_tag"] is None and await card_of(csms_server, s["id"]) is None, s
    assert "evse_mismatch" in s["flags"] and not await is_queued(csms_server, s["id"])


async def test_the_ended_transaction_s_retries_start_no_new_one(
    csms_server: RunningServer, station: RawClient,
) -> None:
    first_events = [
        event("Started", 0, "2026-03-01T10:00:00Z", txid="1", idToken=token("A"), evse=E1,
              meterValue=[reading("2026-03-01T10:00:00Z", 1000, "Transaction.Begin")]),
        event("Ended", 1, "2026-03-01T11:00:00Z", txid="1", evse=E1,
              meterValue=[reading("2026-03-01T11:00:00Z", 11000, "Transaction.End")]),
    ]
    for body in first_events:
        await station.result("TransactionEvent", body)
    [first] = await csms_server.sessions("EV1")
    # its events sent again (an answer lost), and a Started dated within it under another
    # seqNo (a station trying to start the ended transaction again, to bill it anew)
    for body in [*first_events, event(
            "Started", 2, "2026-03-01T10:30:00Z", txid="1", idToken=token("A"), evse=E1,
            meterValue=[reading("2026-03-01T10:30:00Z", 6000, "Transaction.Begin")])]:
        await station.result("TransactionEvent", body)
    billed = ("started_at", "stopped_at", "meter_start_wh", "meter_stop_wh", "energy_wh",
              "id_tag", "status")
    [again] = await csms_server.sessions("EV1")
    assert [again[k] for k in billed] == [first[k] for k in billed], again
    assert await is_queued(csms_server, first["id"])


async def test_the_ended_transaction_s_retry_does_not_end_the_new_one(
    csms_server: RunningServer, station: RawClient,
) -> None:
    # the old transaction's Ended sent again once the new one under its id has started
    # (numbered from 0, as every transaction): it is the old one's, dated before the new
    # start, and ends nothing of the new one (which would then bill the old one's time)
    ended = event("Ended", 1, "2026-03-01T11:00:00Z", txid="1", evse=E1,
                  meterValue=[reading("2026-03-01T11:00:00Z", 11000, "Transaction.End")])
    for body in [
        event("Started", 0, "2026-03-01T10:00:00Z", txid="1", idToken=token("A"), evse=E1,
              meterValue=[reading("2026-03-01T10:00:00Z", 1000, "Transaction.Begin")]),
        ended,
        event("Started", 0, "2026-03-02T10:00:00Z", txid="1", idToken=token("B"), evse=E1,
              meterValue=[reading("2026-03-02T10:00:00Z", 11000, "Transaction.Begin")]),
        ended,
    ]:
        await station.result("TransactionEvent", body)
    first, new = sorted(await csms_server.sessions("EV1"), key=lambda s: s["id"])
    assert (first["id_tag"], first["energy_wh"], first["status"]) == ("A", 10000, "completed")
    assert (new["id_tag"], new["status"], new["stopped_at"]) == ("B", "active", None), new
    # the new transaction's own events reach it; its running cost names the station's id
    answer = await station.result("TransactionEvent", event(
        "Ended", 1, "2026-03-02T11:00:00Z", txid="1", evse=E1,
        meterValue=[reading("2026-03-02T11:00:00Z", 15000, "Transaction.End")]))
    assert "idTokenInfo" not in answer
    [again] = [s for s in await csms_server.sessions("EV1") if s["id"] == new["id"]]
    assert (again["energy_wh"], again["status"]) == (4000, "completed")


async def test_an_accepted_payer_is_never_replaced(
    csms_server: RunningServer, station: RawClient,
) -> None:
    # A accepted at the start; the station then sends B's card, accepted too: A pays
    for body in [
        event("Started", 0, "2026-03-01T10:00:00Z", txid="t", idToken=token("A"), evse=E1,
              meterValue=[reading("2026-03-01T10:00:00Z", 1000, "Transaction.Begin")]),
        event("Updated", 1, "2026-03-01T10:02:00Z", txid="t", idToken=token("B"),
              triggerReason="Authorized"),
        event("Ended", 2, "2026-03-01T11:00:00Z", txid="t",
              meterValue=[reading("2026-03-01T11:00:00Z", 11000, "Transaction.End")]),
    ]:
        await station.result("TransactionEvent", body)
    [s] = await csms_server.sessions("EV1")
    assert s["id_tag"] == "A" and await card_of(csms_server, s["id"]) == "A"


async def test_a_refused_payer_gives_way_only_to_an_accepted_token(
    csms_server: RunningServer, station: RawClient,
) -> None:
    # the first card unknown, a blocked one after it (refused as well), then B presented
    # to stop it: none of them is accepted to authorize the charging, none takes over
    await csms_server.add_tag("C", "blocked")
    for body in [
        event("Started", 0, "2026-03-01T10:00:00Z", txid="t", evse=E1, idToken=token("NOBODY"),
              meterValue=[reading("2026-03-01T10:00:00Z", 1000, "Transaction.Begin")]),
        event("Updated", 1, "2026-03-01T10:02:00Z", txid="t", idToken=token("C"),
              triggerReason="Authorized"),
        event("Updated", 2, "2026-03-01T10:50:00Z", txid="t", idToken=token("B"),
              triggerReason="StopAuthorized"),
        event("Ended", 3, "2026-03-01T11:00:00Z", txid="t", idToken=token("B"),
              meterValue=[reading("2026-03-01T11:00:00Z", 11000, "Transaction.End")]),
    ]:
        await station.result("TransactionEvent", body)
    [s] = await csms_server.sessions("EV1")
    assert (s["id_tag"], await auth_of(csms_server, s["id"])) == ("NOBODY", "Unknown"), s
    assert (await card_of(csms_server, s["id"])) == "NOBODY"


async def test_a_1_6_start_is_still_numbered_by_the_central_system(
    csms_server: RunningServer,
) -> None:
    await csms_server.add_station("CP16")
    await csms_server.add_tag("A")
    client = await RawClient.connect(csms_server.url, "CP16", ["ocpp1.6"])
    try:
        await client.result("BootNotification", {"chargePointVendor": "V",
                                                 "chargePointModel": "M"})
        answers = [await client.result("StartTransaction", {
            "connectorId": c, "idTag": "A", "meterStart": 0,
            "timestamp": "2026-03-01T10:00:00Z"}) for c in (1, 2)]
    finally:
        await client.close()
    ids = {a["transactionId"] for a in answers}
    assert len(ids) == 2 and all(isinstance(i, int) and i > 0 for i in ids)
    assert {s["transaction_id"] for s in await csms_server.sessions("CP16")} == {
        str(i) for i in ids}


async def test_a_transaction_id_taken_again_and_again_is_a_session_each_time(
    csms_server: RunningServer, station: RawClient,
) -> None:
    # a station that numbers from "1" after every reboot: three days, three transactions;
    # day 2's Ended sent again once day 3's has started stays day 2's
    def day(n: int, wh: int) -> list[dict[str, Any]]:
        return [
            event("Started", 0, f"2026-03-0{n}T10:00:00Z", txid="1", idToken=token("A"),
                  evse=E1, meterValue=[reading(f"2026-03-0{n}T10:00:00Z", wh,
                                               "Transaction.Begin")]),
            event("Ended", 1, f"2026-03-0{n}T11:00:00Z", txid="1", evse=E1,
                  meterValue=[reading(f"2026-03-0{n}T11:00:00Z", wh + n * 1000,
                                      "Transaction.End")]),
        ]

    one, two, three = day(1, 1000), day(2, 2000), day(3, 4000)
    for body in [*one, *two, three[0], two[1], three[1]]:
        await station.result("TransactionEvent", body)
    sessions = sorted(await csms_server.sessions("EV1"), key=lambda s: s["id"])
    assert [(s["started_at"][:10], s["energy_wh"], s["status"]) for s in sessions] == [
        ("2026-03-01", 1000, "completed"), ("2026-03-02", 2000, "completed"),
        ("2026-03-03", 3000, "completed")], sessions
    assert ["reused_transaction_id" in s["flags"] for s in sessions] == [False, True, True]
    assert [await is_queued(csms_server, s["id"]) for s in sessions] == [True, False, False]


async def test_a_token_presented_only_to_stop_a_session_without_one_does_not_pay(
    csms_server: RunningServer, station: RawClient,
) -> None:
    # a station charges at plug-in with no token and names A's card in the stop: A is not
    # made to pay for a charge nobody authorized
    for body in [
        event("Started", 0, "2026-03-01T10:00:00Z", txid="t", evse=E1,
              triggerReason="CablePluggedIn",
              meterValue=[reading("2026-03-01T10:00:00Z", 1000, "Transaction.Begin")]),
        event("Ended", 1, "2026-03-01T11:00:00Z", txid="t", idToken=token("A"),
              meterValue=[reading("2026-03-01T11:00:00Z", 11000, "Transaction.End")]),
    ]:
        await station.result("TransactionEvent", body)
    [s] = await csms_server.sessions("EV1")
    assert s["id_tag"] is None and await card_of(csms_server, s["id"]) is None, s
    assert "token_not_payer" in s["flags"]


async def test_a_second_started_on_the_other_evse_does_not_take_its_session_over(
    csms_server: RunningServer, station: RawClient,
) -> None:
    # B charges on EVSE 2 under A's transactionId; the station sends another Started on
    # EVSE 2 with A's card, and one naming no EVSE with A's card while both run: B pays for
    # EVSE 2, A for EVSE 1 only
    for body in [
        event("Started", 0, "2026-03-01T10:00:00Z", txid="1", idToken=token("A"), evse=E1,
              meterValue=[reading("2026-03-01T10:00:00Z", 1000, "Transaction.Begin")]),
        event("Started", 0, "2026-03-01T10:05:00Z", txid="1", idToken=token("B"), evse=E2,
              meterValue=[reading("2026-03-01T10:05:00Z", 50000, "Transaction.Begin")]),
        event("Started", 1, "2026-03-01T10:06:00Z", txid="1", idToken=token("A"), evse=E2),
        event("Updated", 2, "2026-03-01T10:07:00Z", txid="1", idToken=token("A"),
              triggerReason="Authorized"),
        event("Ended", 3, "2026-03-01T11:00:00Z", txid="1", evse=E2,
              meterValue=[reading("2026-03-01T11:00:00Z", 60000, "Transaction.End")]),
        event("Ended", 1, "2026-03-01T11:00:00Z", txid="1", evse=E1,
              meterValue=[reading("2026-03-01T11:00:00Z", 2000, "Transaction.End")]),
    ]:
        await station.result("TransactionEvent", body)
    a, b = sorted(await csms_server.sessions("EV1"), key=lambda s: s["id"])
    assert (a["id_tag"], a["energy_wh"], await card_of(csms_server, a["id"])) == ("A", 1000, "A")
    assert (b["id_tag"], b["energy_wh"], await card_of(csms_server, b["id"])) == ("B", 10000, "B")
    assert not await is_queued(csms_server, b["id"])
