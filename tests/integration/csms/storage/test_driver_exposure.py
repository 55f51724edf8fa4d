"""A driver's exposure (``driver_exposure``), on SQLite and on PostgreSQL: the sessions of
its linked cards and its signed app sessions, and its authorizations not yet started."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from csms.domain.model import Session, SessionStatus, Station
from csms.service.ports import Repository, Tx

T0 = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
NOW = 1_900_000_000
DRIVER = "0x" + "ab" * 20
OTHER = "0x" + "cd" * 20


def _session(transaction_id: str, tag: str, **kw: Any) -> Session:
    return Session(station_id="CP1", ocpp_version="ocpp1.6", transaction_id=transaction_id,
                   started_at=T0, connector_id=1, evse_id=1, id_tag=tag,
                   auth_status="Accepted", meter_start_wh=Decimal(0),
                   reported_meter_start_wh=Decimal(0), **kw)


async def _authorize(tx: Tx, driver: str, tag: str, nonce: int, max_amount: int,
                     expiry: int = NOW + 3600) -> None:
    body = {"driver": driver, "max_amount": max_amount, "nonce": nonce, "expiry": expiry}
    await tx.add_authorization(driver, "CP1", tag, body, nonce, expiry, T0)


async def test_exposure_counts_cards_signed_sessions_and_waiting_authorizations(
    repo: Repository,
) -> None:
    async def setup(tx: Tx) -> None:
        await tx.insert_station(Station(id="CP1", created_at=T0))
        await tx.link_card("CARD", "0x" + "AB" * 20, "0x00", "0x00", T0)  # stored lower
        await tx.link_card("ELSE", OTHER, "0x00", "0x00", T0)
        # the card's: one in progress, one completed unpriced, one priced not settled,
        # one paid (not at stake any more)
        await tx.insert_session(_session("1", "CARD"))
        for txid, price, state in (("2", None, None), ("3", 700, "queued"),
                                   ("4", 900, "paid")):
            s = _session(txid, "CARD")
            await tx.insert_session(s)
            s.status = SessionStatus.COMPLETED
            s.stopped_at = T0
            await tx.update_session(s)
            assert s.id is not None
            if price is not None:
                await tx.set_session_settlement(s.id, price_minor=price,
                                                settlement_state=state)
        # a signed app session in progress, with its own token, bound to the driver
        app = _session("5", "APP1")
        await tx.insert_session(app)
        await _authorize(tx, DRIVER, "APP1", 1, 5_000)
        assert app.id is not None
        assert await tx.bind_authorization("CP1", "APP1", app.id, NOW) is not None
        # accepted and not started: counted at the smaller of its amount and the reserve
        await _authorize(tx, DRIVER, "APP2", 2, 500)
        await _authorize(tx, DRIVER, "APP3", 3, 9_000)
        await _authorize(tx, DRIVER, "OLD", 4, 9_000, expiry=NOW - 1)  # expired
        # another driver's
        await tx.insert_session(_session("6", "ELSE"))
        await _authorize(tx, OTHER, "APP9", 1, 9_000)

    await repo.unit(setup)
    exposure = await repo.read(lambda tx: tx.driver_exposure(DRIVER, NOW, 2_000))
    assert exposure == {"active": 2, "unpriced": 1, "pending_minor": 700, "authorized": 2,
                        "authorized_minor": 2_500}
    other = await repo.read(lambda tx: tx.driver_exposure(OTHER, NOW, 2_000))
    assert other == {"active": 1, "unpriced": 0, "pending_minor": 0, "authorized": 1,
                     "authorized_minor": 2_000}
    nobody = await repo.read(lambda tx: tx.driver_exposure("0x" + "00" * 20, NOW, 2_000))
    assert nobody == {"active": 0, "unpriced": 0, "pending_minor": 0, "authorized": 0,
                      "authorized_minor": 0}
