"""A receipt names who was paid: the record's host must be the host the contract credited.

The contract pays an entry to the host that registered its station index; the record
names a host and that index. An operator that records a host's station under an index of
its own (registered by the operator key) is paid the host's sessions; the receipt must not
verify while its record names the host."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from settlement.chain import Chain
from settlement.receipts import VALID, load_receipt, verify_receipt
from settlement.worker import SettlementWorker
from support.chainkit import Kit

from .conftest import link_driver
from .test_verifier import T0, Meter, signed_session


async def test_a_record_naming_a_host_the_chain_did_not_credit_is_not_valid(
    repo: Any, memory_chain: Chain,
) -> None:
    kit = Kit(memory_chain)
    driver, _ = await link_driver(repo, kit, "TAG0")
    meter = Meter()
    sid = await signed_session(repo, meter, 10_000, 12_500,
                               meter.reading("B", 10_000, T0, "TAG0"),
                               meter.reading("E", 12_500, T0 + timedelta(minutes=30), "TAG0"))
    host, _host_index = kit.host()  # the station's real host, registered on chain
    operator_index = memory_chain.register_station(22_000)  # the operator's own index

    async def misroute(tx: Any) -> None:
        station = await tx.get_station("CP1")
        station.host_address, station.chain_station = host.address.lower(), operator_index
        await tx.update_station(station)

    await repo.unit(misroute)
    await SettlementWorker(repo, memory_chain).run_once()
    receipt = await load_receipt(repo, sid, None)
    assert receipt["record"]["host"] == host.address.lower()
    # the host earned nothing: the operator key's account was credited its session
    assert kit.earnings(host.address) == 0
    assert kit.earnings(memory_chain.operator.address) > 0
    verdict = verify_receipt(receipt, memory_chain.w3, driver=driver.address)
    assert verdict.status != VALID, [(c.name, c.ok, c.detail) for c in verdict.checks]
