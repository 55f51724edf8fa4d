"""An app session's authorization must leave time for the session it starts to be paid.

The contract pays a signed session only when it is settled before the signature expires;
the central system stops a signed session still charging SIGNED_STOP_AHEAD seconds before
the expiry (and cuts its chunk EXPIRY_MARGIN ahead). An authorization that expires sooner
starts a session the driver never pays: the station delivers until the stop takes effect,
the chunk lands after the expiry, the host is paid nothing."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from csms.domain.tariff import Tariff
from csms.service import defaults
from csms.service.charging import new_station
from settlement import wallet
from settlement.chain import Chain
from settlement.credit import ChainCredit
from settlement.records import SIGNED
from support.chainkit import Kit, Row

AUTHORIZATION_EXPIRED = 9  # Settlement.vy


async def test_an_authorization_expiring_before_its_session_can_be_paid_is_refused(
    repo: Any, memory_chain: Chain,
) -> None:
    kit = Kit(memory_chain)
    _host, st = kit.host()
    driver, di = kit.driver(allow_cards=False)

    async def station(tx: Any) -> None:
        s = new_station("CP1")
        s.chain_station = st
        await tx.insert_station(s)
        await tx.add_tariff(Tariff("*", Decimal("0.40"), "EUR", 2,
                                   valid_from=datetime(2000, 1, 1, tzinfo=UTC)))

    await repo.unit(station)
    # signed to expire in a minute: far inside the stop-ahead window (20 minutes)
    expiry = int(time.time()) + 60
    assert expiry - time.time() < defaults.SIGNED_STOP_AHEAD
    auth = wallet.authorize(memory_chain, driver, st, max_per_kwh=40, max_amount=500,
                            nonce=7, expiry=expiry)
    decision = await ChainCredit(repo, memory_chain).check_authorization(
        "CP1", auth.as_json())
    # what becomes of such a session on chain: settled after the expiry, never paid
    kit.advance(max(1, expiry - kit.now() + 1))
    s = kit.settle([Row(st, di, 1500, 600, 60, SIGNED, auth)])
    assert s.unpaid == {s.first_seq: AUTHORIZATION_EXPIRED}
    assert not decision.ok, ("accepted an authorization that expires before its session"
                             f" can be settled: {decision}")
