"""A card the central system refused at the start (1.6 Blocked, 2.0.1 NoCredit) is not
charged to the driver's escrow when a station charges anyway, through real sockets and a
real chain (py-evm).

docs/settlement.md, "Before charging": a card is accepted only while it is still linked on
chain - "a driver who unlinks a lost card is not charged for it again". A station charges
whatever the answer (offline with its authorization cache, or a dishonest one): the session
is kept, but the escrow of a driver who unlinked the card must not pay for it.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from csms.domain.model import Session
from csms.service.holds import decide
from csms.storage.open import open_repository
from settlement import wallet
from support import RunningServer
from support.chainkit import Kit
from support.client import RawClient

from .test_card_payer import charge, settled
from .test_credit import BOOT16, settling


@pytest.fixture
async def server(csms_server: RunningServer) -> RunningServer:
    return await settling(csms_server, "CP16", "CP201")


@pytest.mark.parametrize("version", ["1.6", "2.0.1"])
async def test_a_card_the_driver_unlinked_on_chain_is_not_charged_when_a_station_charges_anyway(
    server: RunningServer, version: str,
) -> None:
    kit = Kit(server.app.chain)  # type: ignore[union-attr]
    driver, _ = kit.driver(deposit=10_000)
    salt = wallet.new_salt()
    commitment = wallet.link_card(kit.chain, driver, "LOST", salt)

    async def work(tx: Any) -> None:  # the operator's csms drivers link
        await tx.link_card("LOST", driver.address, "0x" + salt.hex(), "0x" + commitment.hex(),
                           datetime.now(UTC))

    await server.repo.unit(work)
    await server.add_tag("LOST")
    # the card is lost: its driver unlinks it on chain (the operator is not told yet)
    wallet.link_card(kit.chain, driver, "LOST", salt, linked=False)
    # a thief's session: refused as the card is no longer linked, charged anyway
    refused = "Blocked" if version == "1.6" else "NoCredit"
    sid = await charge(server, version, "LOST", refused)
    row = await settled(server, sid)
    assert kit.balance(driver) == 10_000, row


async def linked_card(server: RunningServer, tag: str) -> tuple[Kit, Any]:
    """A card linked on chain (and in the operator's links) to a driver with 100.00, still
    linked, but not in the operator's tag registry."""
    kit = Kit(server.app.chain)  # type: ignore[union-attr]
    driver, _ = kit.driver(deposit=10_000)
    salt = wallet.new_salt()
    commitment = wallet.link_card(kit.chain, driver, tag, salt)

    async def work(tx: Any) -> None:
        await tx.link_card(tag, driver.address, "0x" + salt.hex(), "0x" + commitment.hex(),
                           datetime.now(UTC))

    await server.repo.unit(work)
    return kit, driver


# what the operator's registry says of a card still linked on chain, and the answer to a
# start with it (1.6, 2.0.1)
REFUSALS = {
    "expired": ("Expired", "Expired"),
    "blocked": ("Blocked", "Blocked"),
    "unregistered": ("Invalid", "Unknown"),
}


@pytest.mark.parametrize("registry", sorted(REFUSALS))
@pytest.mark.parametrize("version", ["1.6", "2.0.1"])
async def test_no_refusal_answer_charges_the_cards_driver(
    server: RunningServer, version: str, registry: str,
) -> None:
    """Whatever the refusal (the operator let the card expire, blocked it, or never
    registered it), a card the central system did not accept at the start charges its
    driver nothing: the driver's escrow pays only what an Accepted answer committed it to.
    The session is settled all the same (anchored, paid by nobody)."""
    kit, driver = await linked_card(server, "CARD")
    if registry == "expired":
        await server.add_tag("CARD", expires=datetime(2020, 1, 1, tzinfo=UTC))
    elif registry == "blocked":
        await server.add_tag("CARD", status="blocked")
    answer = REFUSALS[registry][0 if version == "1.6" else 1]
    sid = await charge(server, version, "CARD", answer)
    row = await settled(server, sid)
    assert row["settlement_state"] == "unpaid", row
    assert kit.balance(driver) == 10_000, row


async def test_a_refused_card_session_held_and_released_charges_its_driver_nothing(
    server: RunningServer,
) -> None:
    """An operator's release of a refused card's session (held for its meter) settles it
    with the payer bound at its start: nobody."""
    kit, driver = await linked_card(server, "CARD")
    await server.add_tag("CARD", status="blocked")
    async with await RawClient.connect(server.url, "CP16", ["ocpp1.6"]) as c:
        await c.result("BootNotification", BOOT16)
        started = await c.result("StartTransaction", {
            "connectorId": 1, "idTag": "CARD", "meterStart": 5000,
            "timestamp": (datetime.now(UTC) - timedelta(minutes=30)).isoformat()})
        assert started["idTagInfo"]["status"] == "Blocked", started
        await c.result("StopTransaction", {  # the register went backwards: held
            "transactionId": started["transactionId"], "meterStop": 1000,
            "timestamp": datetime.now(UTC).isoformat(), "reason": "Local"})
    sid = int(started["transactionId"])

    async def release(tx: Any) -> None:
        session = await tx.get_session(sid)
        assert "meter_went_backwards" in session.flags, session.flags
        await decide(tx, sid, "released", actor="op", reason="checked", now=datetime.now(UTC))

    await server.repo.unit(release)
    row = await settled(server, sid)
    assert row["settlement_state"] == "unpaid", row
    assert kit.balance(driver) == 10_000, row


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "postgres":
        return str(request.getfixturevalue("postgres_url"))
    return str(tmp_path / "csms.sqlite3")


async def test_a_refused_cards_session_is_bound_to_nobody(db: str) -> None:
    """The storage of both databases: a session bound with its insert to the card's
    driver, then refused (bind_no_payer), is charged to nobody and counts in no driver's
    exposure, whatever the card's link; once refused it stays so."""
    repo = await open_repository(db)
    driver = "0x" + "aa" * 20
    try:
        async def start(tx: Any) -> int:
            await tx.link_card("CARD", driver, "0x" + "01" * 32, "0x" + "0a" * 32,
                               datetime.now(UTC))
            now = datetime.now(UTC)
            sid = int(await tx.insert_session(Session(
                station_id="CP1", ocpp_version="ocpp1.6", transaction_id="", started_at=now,
                connector_id=1, evse_id=1, id_tag="CARD", auth_status="Blocked"),
                card="CARD"))
            await tx.bind_no_payer(sid, "CARD")
            await tx.bind_card(sid, "CARD")  # bound already: stays refused
            return sid

        sid = await repo.unit(start)

        async def read(tx: Any) -> tuple[Any, dict[str, int]]:
            now = int(datetime.now(UTC).timestamp())
            return await tx.session_card(sid), await tx.driver_exposure(driver, now, 2000)

        bound, exposure = await repo.read(read)
        assert bound == {"tag": "CARD", "driver": "", "salt": "", "commitment": ""}
        assert exposure["active"] == 0, exposure
    finally:
        await repo.close()
