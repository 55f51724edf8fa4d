"""A driver's signed app sessions and linked cards attacked, through real sockets, the
admin API and the py-evm chain: a greedy driver who replays or outlives a signature, a
stranger who knows an app session's tag, an operator who bills what the driver did not
sign or link."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from csms.domain.tariff import Tariff
from settlement import wallet
from settlement.eip712 import Authorization, sign
from settlement.records import SIGNED
from support import RunningServer
from support.chainkit import Kit, Row
from support.client import RawClient

from .test_credit import BOOT16, _on_chain, _remote_start, command, link, settling, start16
from .test_worker import malleated


@pytest.fixture
async def server(csms_server: RunningServer) -> RunningServer:
    return await settling(csms_server, "CP16", "CP16B")


@contextlib.asynccontextmanager
async def online(server: RunningServer) -> AsyncIterator[tuple[RawClient, RawClient]]:
    """CP16 and CP16B connected and booted (a remote start needs its station)."""
    async with await RawClient.connect(server.url, "CP16", ["ocpp1.6"]) as a, \
            await RawClient.connect(server.url, "CP16B", ["ocpp1.6"]) as b:
        await a.result("BootNotification", BOOT16)
        await b.result("BootNotification", BOOT16)
        yield a, b


async def stored(server: RunningServer) -> list[dict[str, Any]]:
    async def work(tx: Any) -> list[dict[str, Any]]:
        return list(await tx.fetchall("SELECT * FROM session_authorizations ORDER BY id"))

    return await server.repo.read(work)


def app_driver(server: RunningServer) -> tuple[Kit, Any]:
    kit = Kit(server.app.chain)  # type: ignore[union-attr]
    driver, _ = kit.driver(deposit=10_000, allow_cards=False)
    return kit, driver


async def test_one_signature_starts_one_session(server: RunningServer) -> None:
    """The same signed authorization offered again - for another tag, at another station,
    after its session settled - is refused; the contract would pay it once only."""
    kit, driver = app_driver(server)
    idx = await _on_chain(server, kit, "CP16", "CP16B")
    auth = wallet.authorize(kit.chain, driver, idx["CP16"], max_per_kwh=40, max_amount=900,
                            nonce=1, expiry=int(time.time()) + 7200)
    async with online(server) as (c, _):
        status, body = await _remote_start(server, c, "CP16",
                                           {"tag": "APP1", "authorization": auth.as_json()})
        assert status == 200, body
        for station, tag in (("CP16", "APP2"), ("CP16", "APP1"), ("CP16B", "APP1")):
            status, body = await command(server, station,
                                         {"tag": tag, "authorization": auth.as_json()})
            assert status == 400 and body["error"].startswith("authorization refused"), body
            if station == "CP16":  # a clear reason, not the database's
                assert "nonce 1 is used" in body["error"], body
        assert await start16(c, "APP1") == "Accepted"
        assert await start16(c, "APP2") == "Invalid"  # nothing signed for APP2
    assert len(await stored(server)) == 1


async def test_a_signature_for_another_chain_or_contract_is_refused(
    server: RunningServer,
) -> None:
    kit, driver = app_driver(server)
    idx = await _on_chain(server, kit, "CP16")
    terms = Authorization(driver.address, idx["CP16"], 40, 0, 0, 900, 1,
                          int(time.time()) + 7200)
    contract = kit.chain.contract_address
    assert contract is not None
    other_contract = "0x" + "11" * 20
    async with online(server):
        for chain_id, at in ((kit.chain.chain_id + 1, contract), (kit.chain.chain_id,
                                                                   other_contract)):
            signed = sign(terms, driver.key, chain_id, at)
            status, body = await command(server, "CP16", {"tag": "APP1",
                                                          "authorization": signed.as_json()})
            assert status == 400 and "not signed by its driver" in body["error"], body
    assert await stored(server) == []


async def test_a_nonce_the_contract_used_is_refused(server: RunningServer) -> None:
    """Another central system settled the driver's nonce 5 on the same contract: a new
    authorization with nonce 5 would be settled unpaid (NONCE_USED), so it is refused."""
    kit, driver = app_driver(server)
    idx = await _on_chain(server, kit, "CP16")
    elsewhere = wallet.authorize(kit.chain, driver, idx["CP16"], max_per_kwh=40,
                                 max_amount=900, nonce=5, expiry=kit.now() + 7200)
    index = kit.chain.driver_state(driver.address).index
    settled = kit.settle([Row(idx["CP16"], index, 1000, 600, 39, SIGNED, elsewhere)])
    assert settled.unpaid == {}
    again = wallet.authorize(kit.chain, driver, idx["CP16"], max_per_kwh=40, max_amount=800,
                             nonce=5, expiry=int(time.time()) + 7200)
    async with online(server):
        status, body = await command(server, "CP16", {"tag": "APP1",
                                                      "authorization": again.as_json()})
    assert status == 400 and "nonce 5 is used" in body["error"], body
    assert await stored(server) == []


def _malformed(good: dict[str, Any]) -> list[Any]:
    cases: list[Any] = [[], "0x00", 7, {}]
    cases += [{k: v for k, v in good.items() if k != drop} for drop in good]
    for field in ("station", "max_per_kwh", "max_per_minute", "max_session_fee",
                  "max_amount", "nonce", "expiry"):
        for value in (2**256, 2**64, -1, 1.5, 900.0, True, "abc", "", None, [1], {"n": 1},
                      "0x10", " 12", "1_000"):
            cases.append({**good, field: value})
    for value in ("zz" * 65, "0x" + "00" * 64, "0x" + "00" * 66, "", 123, None,
                  "0x" + "ff" * 65, good["signature"][:-2] + "1d"):
        cases.append({**good, "signature": value})
    for value in ("not-an-address", 5, "", None, "0x" + "00" * 21,
                  good["driver"].removeprefix("0x")):
        cases.append({**good, "driver": value})
    return cases


async def test_malformed_authorizations_get_a_clear_4xx_and_nothing_is_stored(
    server: RunningServer,
) -> None:
    kit, driver = app_driver(server)
    idx = await _on_chain(server, kit, "CP16")
    good = wallet.authorize(kit.chain, driver, idx["CP16"], max_per_kwh=40, max_amount=900,
                            nonce=1, expiry=int(time.time()) + 7200).as_json()
    async with online(server):
        for bad in _malformed(good):
            status, body = await command(server, "CP16", {"tag": "APP1",
                                                          "authorization": bad})
            assert status == 400, (bad, body)
            assert "authoriz" in body["error"] and "Traceback" not in body["error"], body
    assert await stored(server) == []


async def test_a_signature_in_another_encoding_is_refused(server: RunningServer) -> None:
    """The driver's signature with v as 35 + parity, or with s in the upper half of the
    curve's order, recovers the driver all the same, but the contract reads signatures in
    EIP-2098's compact form (and the receipt page takes v as 27 or 28): refused at the
    remote start, with the form wallets sign in named, like any malformed authorization."""
    kit, driver = app_driver(server)
    idx = await _on_chain(server, kit, "CP16")
    good = wallet.authorize(kit.chain, driver, idx["CP16"], max_per_kwh=40, max_amount=900,
                            nonce=1, expiry=int(time.time()) + 7200).as_json()
    async with online(server) as (c, _):
        for form in ("eip155_v", "high_s"):
            bad = {**good, "signature": malleated(good["signature"], form)}
            status, body = await command(server, "CP16", {"tag": "APP1",
                                                          "authorization": bad})
            assert status == 400 and "lower half" in body["error"], (form, body)
        assert await stored(server) == []
        status, body = await _remote_start(server, c, "CP16",
                                           {"tag": "APP1", "authorization": good})
        assert status == 200, body


async def bound_to(server: RunningServer, session_id: int) -> dict[str, Any] | None:
    async def work(tx: Any) -> dict[str, Any] | None:
        return await tx.authorization_of(session_id)

    return await server.repo.read(work)


async def test_a_tariff_raised_after_the_signature_starts_no_signed_session(
    server: RunningServer,
) -> None:
    """The driver signed for at most 0.40/kWh; the tariff becomes 0.55 before the car is
    plugged in. The contract would refuse the session (ABOVE_PRICES) and the host would
    charge for nothing: the start is refused and nothing is bound to the signature."""
    kit, driver = app_driver(server)
    idx = await _on_chain(server, kit, "CP16")
    auth = wallet.authorize(kit.chain, driver, idx["CP16"], max_per_kwh=40, max_amount=900,
                            nonce=1, expiry=int(time.time()) + 7200)
    async with online(server) as (c, _):
        status, body = await _remote_start(server, c, "CP16",
                                           {"tag": "APP1", "authorization": auth.as_json()})
        assert status == 200, body

        async def raise_tariff(tx: Any) -> None:
            await tx.add_tariff(Tariff("CP16", Decimal("0.55"), "EUR", 2,
                                       valid_from=datetime(2000, 1, 1, tzinfo=UTC)))

        await server.repo.unit(raise_tariff)
        assert await start16(c, "APP1") == "Invalid"
    [session] = await server.sessions("CP16")
    assert await bound_to(server, session["id"]) is None
    assert len(await stored(server)) == 1  # still the driver's, for a session in its terms


async def test_an_app_session_tag_is_not_a_card(server: RunningServer) -> None:
    """A signature waiting for the tag of someone's card would pay for that card's next
    session at the station (and a card holder's start would take it): refused."""
    kit, _card_driver = await link(server, "BOBCARD")
    await server.add_tag("PLAINCARD")
    _kit, driver = app_driver(server)
    idx = await _on_chain(server, kit, "CP16")
    async with online(server):
        for nonce, tag in enumerate(("BOBCARD", "PLAINCARD"), start=1):
            auth = wallet.authorize(kit.chain, driver, idx["CP16"], max_per_kwh=40,
                                    max_amount=900, nonce=nonce,
                                    expiry=int(time.time()) + 7200)
            status, body = await command(server, "CP16", {"tag": tag,
                                                          "authorization": auth.as_json()})
            assert status == 400 and "a token of its own" in body["error"], body
    assert await stored(server) == []


async def test_a_card_the_driver_unlinked_on_chain_is_not_charged(
    server: RunningServer,
) -> None:
    """A driver whose card was stolen unlinks it on chain: the operator's row still
    charges it to the driver's escrow (the contract pays a card session without seeing the
    card), so the central system asks the chain whether the card is still linked."""
    kit, driver = await link(server, "STOLEN")
    async with online(server) as (c, _):
        assert (await c.result("Authorize", {"idTag": "STOLEN"}))["idTagInfo"]["status"] \
            == "Accepted"
        card = await server.repo.read(lambda tx: tx.card_of("STOLEN"))
        wallet.link_card(kit.chain, driver, "STOLEN", bytes.fromhex(card["salt"][2:]),
                         linked=False)
        server.app.service.credit.forget(driver.address.lower())  # type: ignore[union-attr]
        assert (await c.result("Authorize", {"idTag": "STOLEN"}))["idTagInfo"]["status"] \
            == "Blocked"
        assert await start16(c, "STOLEN") == "Blocked"
