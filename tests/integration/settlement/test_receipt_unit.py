"""A receipt's payment line against the chain: the base units a billing unit is worth.

The contract holds its unit (token base units per billing unit, set at its deploy); the
record names one too, and the receipt says "N x unit base units were taken from the
driver's escrow". A dishonest operator writes the record before it is settled (every hash
then matches what the chain holds): the unit it names must still be the contract's. On
Anvil the receipt page's verifier (under Node) reaches the same checks, verdict and words.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from csms.domain.model import MeterSample, Session, SessionStatus
from csms.domain.tariff import BillingUnit, Tariff
from csms.service.charging import new_station
from settlement.chain import Chain
from settlement.receipts import INVALID, VALID, load_receipt
from settlement.worker import SettlementWorker
from support.chainkit import Kit

from .conftest import link_driver, verify_receipt

T0 = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)


async def card_session(repo: Any, tariff: Tariff | None = None) -> int:
    async def work(tx: Any) -> int:
        await tx.insert_station(new_station("CP1"))
        await tx.add_tariff(tariff or Tariff("*", Decimal("0.40"), "EUR", 2,
                                             valid_from=datetime(2000, 1, 1, tzinfo=UTC)))
        s = Session(station_id="CP1", ocpp_version="ocpp1.6", transaction_id="",
                    started_at=T0, stopped_at=T0 + timedelta(minutes=30), connector_id=1,
                    evse_id=1, id_tag="TAG0", meter_start_wh=Decimal(10_000),
                    meter_stop_wh=Decimal(12_500), energy_wh=2_500,
                    status=SessionStatus.COMPLETED, stop_reason="Local")
        sid = await tx.insert_session(s)
        await tx.add_samples("CP1", [
            MeterSample(T0, "10000", context="Transaction.Begin"),
            MeterSample(T0 + timedelta(minutes=30), "12500", context="Transaction.End")],
            session_id=sid, evse_id=1, connector_id=1, transaction_id=s.transaction_id)
        await tx.enqueue_settlement(sid, T0)
        return int(sid)

    return int(await repo.unit(work))


async def settled_receipt(repo: Any, chain: Chain, unit: int | None) -> tuple[Any, dict[str, Any]]:
    """A card session settled by a worker that writes ``unit`` into the record (None: the
    contract's, as an honest worker does), and its receipt."""
    kit = Kit(chain)
    driver, _ = await link_driver(repo, kit, "TAG0")
    sid = await card_session(repo)
    worker = SettlementWorker(repo, chain)
    if unit is not None:
        worker._contract = {**chain.info(), "unit": unit}
    await worker.run_once()
    return driver, await load_receipt(repo, sid, None)


async def test_a_record_naming_another_unit_than_the_contracts_is_invalid(
        repo: Any, chain: Chain) -> None:
    assert chain.info()["unit"] == 1  # the contract: one base unit per billing unit
    # the operator's worker writes another unit into the record it settles
    driver, receipt = await settled_receipt(repo, chain, 10**16)
    assert receipt["record"]["unit"] == receipt["payment"]["unit"] == 10**16
    verdict = verify_receipt(receipt, chain.w3, driver=driver.address,
                             same_detail=("payment",))
    payment = next(c for c in verdict.checks if c.name == "payment")
    # the driver read "100 x 10000000000000000 base units were taken": not what the chain did
    assert verdict.status == INVALID, (payment.ok, payment.detail)
    assert [c.name for c in verdict.checks if c.ok is False] == ["payment"]
    assert payment.detail == (
        "100 x 1 base units were taken from the driver's escrow (driver 1) and credited to"
        " the host; the record says a billing unit is 10000000000000000 base units, the"
        " contract 1; the receipt says 100 x 10000000000000000")


async def test_the_payment_line_names_the_contracts_unit(repo: Any, chain: Chain) -> None:
    driver, receipt = await settled_receipt(repo, chain, None)
    verdict = verify_receipt(receipt, chain.w3, driver=driver.address,
                             same_detail=("payment",))
    payment = next(c for c in verdict.checks if c.name == "payment")
    assert verdict.status == VALID, [(c.name, c.ok, c.detail) for c in verdict.checks]
    assert payment.detail == ("100 x 1 base units were taken from the driver's escrow"
                              " (driver 1) and credited to the host")


async def test_a_receipt_naming_another_unit_than_its_record_is_invalid(
        repo: Any, chain: Chain) -> None:
    driver, receipt = await settled_receipt(repo, chain, None)
    receipt["payment"]["unit"] = 10**16
    verdict = verify_receipt(receipt, chain.w3, driver=driver.address,
                             same_detail=("payment",))
    assert [c.name for c in verdict.checks if c.ok is False] == ["payment"]
    assert verdict.checks[-1].detail.endswith("; the receipt says 100 x 10000000000000000")


async def token_receipt(repo: Any, chain: Chain, decimals: int,
                        unit: int = 10_000) -> tuple[Any, dict[str, Any]]:
    """A card session settled on a contract whose escrows hold a 6-decimal token, one
    billing unit ``unit`` base units (10,000: a cent), by a worker billing a tariff with
    ``decimals`` (an honest one: 2), and its receipt."""
    kit = Kit(chain)
    token = kit.deploy("TestToken")
    chain.deploy(3600, token.address, unit, None, 0)
    driver, _ = await link_driver(repo, kit, "TAG0", unit * 10**6, token=token)
    sid = await card_session(repo, Tariff("*", Decimal("0.40"), "EUR", decimals,
                                          valid_from=datetime(2000, 1, 1, tzinfo=UTC)))
    await SettlementWorker(repo, chain, billing=BillingUnit("EUR", decimals)).run_once()
    return driver, await load_receipt(repo, sid, None)


async def test_a_record_in_the_token_ledgers_unit_is_valid(repo: Any, chain: Chain) -> None:
    driver, receipt = await token_receipt(repo, chain, 2)
    verdict = verify_receipt(receipt, chain.w3, driver=driver.address,
                             same_detail=("payment",))
    assert verdict.status == VALID, [(c.name, c.ok, c.detail) for c in verdict.checks]


async def test_a_record_in_other_decimals_than_the_token_ledgers_is_invalid(
        repo: Any, chain: Chain) -> None:
    """The operator's worker bills 2.5 kWh at 0.400 with 3 decimals: 1000 billing units,
    which the contract takes as cents (10.00 of a 6-decimal token), while the record reads
    1.000 EUR. Every hash matches; the token's decimals and the contract's unit say a
    billing unit has 2 decimals."""
    driver, receipt = await token_receipt(repo, chain, 3)
    assert receipt["record"]["decimals"] == 3 and receipt["record"]["price_minor"] == 1000
    verdict = verify_receipt(receipt, chain.w3, driver=driver.address,
                             same_detail=("payment",))
    assert verdict.status == INVALID, [(c.name, c.ok, c.detail) for c in verdict.checks]
    assert [c.name for c in verdict.checks if c.ok is False] == ["payment"]
    payment = next(c for c in verdict.checks if c.name == "payment")
    assert payment.detail.endswith(
        "; the record's amounts have 3 decimals, the contract's billing unit 2 (10000 base"
        " units of a token with 6 decimals)"), payment.detail


async def test_a_record_on_a_token_of_another_currency_is_valid(repo: Any,
                                                               chain: Chain) -> None:
    """Billed in euro cents, escrows in a 6-decimal dollar token: a cent is 10,800 base
    units of it (the rate the operator deployed with, the contract knows no currency). No
    power of ten: the token's decimals say nothing of the record's, which are not misread
    (both verifiers)."""
    driver, receipt = await token_receipt(repo, chain, 2, unit=10_800)
    verdict = verify_receipt(receipt, chain.w3, driver=driver.address,
                             same_detail=("payment",))
    assert verdict.status == VALID, [(c.name, c.ok, c.detail) for c in verdict.checks]
