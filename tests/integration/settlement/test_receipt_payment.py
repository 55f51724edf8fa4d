"""The receipt's payment lines against the chain: whether the entry was paid, and why not.

The receipt page shows a driver "Paid on chain: no (reason)" from the receipt's own
``payment.reason``, which neither verifier held to the chain: an operator wrote another
reason than the contract's (the escrow too low, where the contract found no escrow of the
driver at all) and the receipt was VALID."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from settlement.chain import Chain
from settlement.receipts import INVALID, VALID, ReceiptError, load_receipt
from settlement.worker import SettlementWorker
from support.chainkit import Kit

from .conftest import add_sessions, link_driver, verify_receipt

NO_ESCROW, ESCROW_TOO_LOW = 2, 11  # the contract's reason codes (Settlement.vy)


async def _settled(repo: Any, chain: Chain) -> tuple[dict[str, Any], dict[str, Any], str]:
    """A paid receipt (TAG0, the driver's card) and an unpaid one (TAG1, no one's card)."""
    driver, _ = await link_driver(repo, Kit(chain), "TAG0")
    ids = await add_sessions(repo, 2)
    await SettlementWorker(repo, chain).run_once()
    paid = await load_receipt(repo, ids[0], None)
    unpaid = await load_receipt(repo, ids[1], None)
    return paid, unpaid, driver.address


async def test_the_unpaid_reason_on_the_receipt_is_the_chains(repo: Any, chain: Chain) -> None:
    paid, unpaid, driver = await _settled(repo, chain)
    contract = chain.contract_address
    assert (paid["payment"]["paid"], paid["payment"]["reason"]) == (True, None)
    assert (unpaid["payment"]["paid"], unpaid["payment"]["reason"]) == (False, NO_ESCROW)
    assert verify_receipt(paid, chain.w3, driver=driver).status == VALID
    assert verify_receipt(unpaid, chain.w3, contract=contract).status == VALID
    forged: list[tuple[dict[str, Any], dict[str, Any]]] = []
    for receipt, reason, options in ((unpaid, ESCROW_TOO_LOW, {"contract": contract}),
                                     (unpaid, None, {"contract": contract}),
                                     (paid, ESCROW_TOO_LOW, {"driver": driver})):
        bad = copy.deepcopy(receipt)
        bad["payment"]["reason"] = reason
        forged.append((bad, options))
    for bad, options in forged:
        verdict = verify_receipt(bad, chain.w3, same_detail=("payment",), **options)
        assert verdict.status == INVALID, bad["payment"]
        assert [c.name for c in verdict.checks if c.ok is False] == ["payment"]


@pytest.mark.parametrize("reason", ["2", 2.0, True])
async def test_an_unpaid_reason_that_is_no_integer_is_not_read(
        repo: Any, memory_chain: Chain, reason: Any) -> None:
    _, unpaid, _ = await _settled(repo, memory_chain)
    unpaid["payment"]["reason"] = reason
    with pytest.raises(ReceiptError, match=r"payment\.reason"):
        verify_receipt(unpaid, memory_chain.w3, contract=memory_chain.contract_address)
