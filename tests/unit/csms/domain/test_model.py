"""Sessions' transaction ids (csms.domain.model): which the central system assigns, and
the id a 2.0.1 transaction that reused an ended one's transactionId is stored under."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from csms.domain.model import (
    OCPP16,
    OCPP201,
    TRANSACTION_ID_MAX,
    Session,
    numbered_by_central_system,
    reused_after,
    reused_transaction_id,
    shared_beside,
    shared_transaction_id,
    station_transaction_id,
)

T0 = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)


def test_only_a_1_6_session_without_an_id_is_numbered_by_the_central_system() -> None:
    assert numbered_by_central_system(OCPP16, "")
    assert not numbered_by_central_system(OCPP16, "7")
    # 2.0.1: the station's id, "" among them (a string of at most 36 characters)
    assert not numbered_by_central_system(OCPP201, "")


@pytest.mark.parametrize("txid", [
    "", "1", "x" * TRANSACTION_ID_MAX,
    # an id of the station's that looks like a stored one: still the station's own
    "1 reused after session 00000005",
    ("1 reused after session " + "0" * 16)[:TRANSACTION_ID_MAX],
])
def test_a_reused_transaction_id_is_no_station_s_and_gives_the_station_s_back(
        txid: str) -> None:
    stored = reused_transaction_id(txid, 5)
    assert len(stored) > TRANSACTION_ID_MAX  # no message of a station names it
    assert station_transaction_id(stored) == txid and reused_after(stored) == 5
    assert station_transaction_id(txid) == txid and reused_after(txid) is None
    # taken again after that one ended too
    again = reused_transaction_id(txid, 12)
    assert again != stored and station_transaction_id(again) == txid
    assert reused_after(again) == 12
    session = Session("CP1", OCPP201, stored, T0)
    assert session.station_transaction_id == txid


@pytest.mark.parametrize("txid", [
    "", "1", "x" * TRANSACTION_ID_MAX,
    # ids of the station's that look like stored ones: still the station's own
    "1 on EVSE 2 beside session 5",
    ("1 on EVSE " + "0" * 19 + "2 beside session " + "0" * 15 + "5")[:TRANSACTION_ID_MAX],
])
def test_a_transaction_id_shared_by_two_evses_is_no_station_s_and_gives_it_back(
        txid: str) -> None:
    stored = shared_transaction_id(txid, 2, 5)
    assert len(stored) > TRANSACTION_ID_MAX  # no message of a station names it
    assert station_transaction_id(stored) == txid and shared_beside(stored) == 5
    assert shared_beside(txid) is None and reused_after(stored) is None
    # one per EVSE and per session beside
    assert len({stored, shared_transaction_id(txid, 3, 5),
                shared_transaction_id(txid, 2, 6)}) == 3
    assert Session("CP1", OCPP201, stored, T0).station_transaction_id == txid
