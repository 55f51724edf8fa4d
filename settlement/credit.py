"""The chain's answer to "may this tag charge here": the driver's escrow and terms.

Implements :class:`csms.service.credit.CreditCheck` for the charging service. A new session
is covered when the driver still links the card on chain and accepts card sessions (for a
card), the station's tariff is within the prices the driver accepts, and what is left of
the escrow - less the withdrawal it announced and what is at stake - and of its daily
limit - less what the chain counts as spent today and what is at stake - still covers a
reserve: the smaller of its per-session limit and ``reserve_minor``. At stake are the price
of the driver's sessions not yet settled, each of its sessions in progress or not yet
priced at its own limit (the reserve for one without; nothing for one in progress whose
station has sent nothing for it for ``SILENT_GRACE_S``: csms.service.holds), and each
authorization accepted and not yet started at the limit its session gets. Terms the
driver is lowering count as already lowered. Chain reads are cached for a few seconds;
when the chain cannot be read the answer is no (a host is never left unpaid on a guess).

Floors. A per-session limit (or a signed maximum amount) below ``limit_floor_minor``
(``defaults.SESSION_LIMIT_FLOOR``) is refused: the session is stopped at a reading once its
price nears its limit, and a limit of a few cents is mostly what the station delivers
before the stop takes effect (a completed session far beyond its limit with no stop asked
is held: ``csms.service.limits``). A signed authorization must leave
``defaults.AUTHORIZATION_MIN_SECONDS`` before its expiry: the session it starts is stopped
``defaults.SIGNED_STOP_AHEAD`` before the expiry so that its chunk is settled in time (the
contract pays no signed entry after it), and one accepted closer to its expiry is a session
the host delivers and is never paid for.

An acceptance carries the most the driver's escrow pays for the session
(``session_limit``), where the session is stopped (``csms.service.limits``): the smallest of
its per-session limit (for a card the driver's terms, for an app session the signed
maximum amount), what the escrow has available at its start and what is left of the day's
limit, both after what is at stake. So sessions of one driver in flight together never get
more than the escrow holds. An acceptance is judged again, and its limit taken again, by
:meth:`ChainCredit.confirm` inside the unit that stores the session (or the authorization),
on the chain state it was judged on and the exposure that unit reads with the driver
locked (``Tx.lock_driver``): two starts of one driver on two nodes are limited each by what
the other leaves.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime
from typing import Any

from csms.domain.tariff import BillingUnit, minor_prices
from csms.service import defaults
from csms.service.credit import CreditDecision
from csms.service.ports import Repository, Tx
from settlement.chain import Chain, DriverState, Terms
from settlement.eip712 import Authorization, recover

__all__ = ["ChainCredit"]

log = logging.getLogger("settlement.credit")


class ChainCredit:
    def __init__(self, repo: Repository, chain: Chain, *, reserve_minor: int = 2000,
                 cache_seconds: float = 5.0,
                 limit_floor_minor: int = defaults.SESSION_LIMIT_FLOOR,
                 billing: BillingUnit = defaults.BILLING_UNIT) -> None:
        self.repo = repo
        self.chain = chain
        # the contract's billing unit, the unit of the driver's accepted prices: a tariff
        # in another is refused (its minor units are not the terms')
        self.billing = billing
        self.reserve_minor = reserve_minor
        # the least limit a session may get (never above the reserve): a driver's terms or
        # signature below it are refused, whatever the escrow holds
        self.limit_floor_minor = min(limit_floor_minor, reserve_minor)
        self.cache_seconds = cache_seconds
        self._states: dict[str, tuple[float, DriverState]] = {}
        self._cards: dict[tuple[str, str], tuple[float, bool]] = {}

    async def _state(self, driver: str) -> DriverState:
        cached = self._states.get(driver)
        if cached is not None and time.monotonic() - cached[0] < self.cache_seconds:
            return cached[1]
        state = await asyncio.to_thread(self.chain.driver_state, driver)
        self._states[driver] = (time.monotonic(), state)
        return state

    async def _linked(self, driver: str, index: int, commitment: str) -> bool:
        """Whether the driver's card (its commitment) is linked on chain now."""
        cached = self._cards.get((driver, commitment))
        if cached is not None and time.monotonic() - cached[0] < self.cache_seconds:
            return cached[1]
        linked = await asyncio.to_thread(self.chain.card_linked, index,
                                         bytes.fromhex(commitment.removeprefix("0x")))
        self._cards[driver, commitment] = (time.monotonic(), linked)
        return linked

    def forget(self, driver: str) -> None:
        self._states.pop(driver, None)
        for key in [k for k in self._cards if k[0] == driver]:
            del self._cards[key]

    async def check(self, station_id: str, tag: str) -> CreditDecision | None:
        async def work(tx: Tx) -> tuple[Any, Any, dict[str, int]]:
            card = await tx.card_of(tag)
            if card is None:
                return None, None, {}
            return (card, await tx.find_tariff(station_id, datetime.now(UTC)),
                    await tx.driver_exposure(str(card["driver"]), int(time.time()),
                                             self.reserve_minor))

        card, tariff, exposure = await self.repo.read(work)
        if card is None:
            return None
        driver = str(card["driver"])
        try:
            state = await self._state(driver)
            # the driver may have unlinked it since (a lost card): the contract pays a card
            # session without seeing the card, so the link is asked here
            linked = state.index != 0 and await self._linked(driver, state.index,
                                                             str(card["commitment"]))
        except Exception as exc:  # the chain is down: no guess
            log.warning("! escrow of %s not readable: %s", driver, exc)
            return CreditDecision(False, "the driver's escrow cannot be read now", driver)
        if state.index == 0:
            return CreditDecision(False, "the driver has no escrow", driver)
        if not linked:  # basis: the card's commitment, for its link history
            return CreditDecision(False, "the driver has not linked this card on chain"
                                  " (or unlinked it)", driver, card_unlinked=True,
                                  basis=str(card["commitment"]))
        terms = state.terms_ahead(int(time.time()))
        if not terms.allow_cards:
            return CreditDecision(False, "the driver accepts no card sessions", driver)
        return self._covers(driver, state, terms, tariff, exposure)

    async def link_changes(self, decision: CreditDecision
                           ) -> tuple[tuple[datetime, bool], ...] | None:
        """The changes of the link of a card refused as unlinked now, from the contract's
        CardLinked events (block times); None when the chain's logs cannot be read (the
        driver stays the payer, as for an unreadable chain). Not cached: read only for a
        start refused so, a rare answer."""
        if not decision.card_unlinked or decision.driver is None \
                or not isinstance(decision.basis, str):
            return None
        commitment = bytes.fromhex(decision.basis.removeprefix("0x"))
        try:
            changes = await asyncio.to_thread(self.chain.card_link_changes, decision.driver,
                                              commitment)
        except Exception as exc:  # a node down, or one that refuses the logs
            log.warning("! card links of %s not readable: %s", decision.driver, exc)
            return None
        return tuple((datetime.fromtimestamp(at, UTC), linked) for at, linked in changes)

    async def confirm(self, tx: Tx, decision: CreditDecision) -> CreditDecision:
        if not decision.ok or decision.basis is None or decision.driver is None:
            return decision
        state, terms, tariff = decision.basis
        await tx.lock_driver(decision.driver)
        exposure = await tx.driver_exposure(decision.driver, int(time.time()),
                                            self.reserve_minor)
        return self._covers(decision.driver, state, terms, tariff, exposure)

    def _covers(self, driver: str, state: DriverState, terms: Terms, tariff: Any,
                exposure: dict[str, int]) -> CreditDecision:
        if tariff is not None:
            refused = self.billing.refuses(tariff)
            if refused is not None:
                # its minor prices would be compared with the terms in the wrong unit (and
                # the worker holds such a session: no one would be paid for it)
                return CreditDecision(False, refused, driver)
            asked = minor_prices(tariff)
            accepted = (terms.max_per_kwh, terms.max_per_minute, terms.max_session_fee)
            if any(a > b for a, b in zip(asked, accepted, strict=True)):
                return CreditDecision(False, f"the tariff {asked} (per kWh, per minute, fee)"
                                      f" is above what the driver accepts {accepted}", driver)
        if terms.max_per_session < self.limit_floor_minor:
            # a session is stopped at a reading once its price nears its limit: a limit of
            # a few cents is mostly what the station delivers before the stop takes effect
            return CreditDecision(False, f"a session limit of {terms.max_per_session} (the"
                                  " driver's limit per session, or the amount it signed) is"
                                  f" below the {self.limit_floor_minor} a session needs at"
                                  " the least", driver)
        reserve = min(terms.max_per_session, self.reserve_minor)
        # what is at stake and not yet taken on chain: the price of sessions not yet
        # settled, each session in progress or not yet priced at its limit (a reserve for
        # one without), and each authorization accepted and not yet started at the limit
        # its session gets
        at_stake = exposure.get("pending_minor", 0) + exposure.get("in_flight_minor", 0) \
            + exposure.get("unlimited", 0) * reserve + exposure.get("authorized_minor", 0)
        available = state.balance - state.withdrawal_amount - at_stake
        if available < reserve:
            return CreditDecision(False, f"the escrow covers {max(available, 0)}, a session"
                                  f" needs {reserve}", driver)
        # the day's limit: what the chain counts as spent today, and what is at stake
        # (it is taken from today's limit when settled today)
        day_left = terms.max_per_day - state.spent_today - at_stake
        if day_left < reserve:
            return CreditDecision(False, "the driver's daily limit is reached", driver)
        # the session may cost no more than the contract pays for it, the escrow holds now
        # and the day has left
        limit = min(terms.max_per_session, available, day_left)
        return CreditDecision(True, "", driver, limit, (state, terms, tariff))

    async def check_authorization(self, station_id: str,
                                  authorization: dict[str, Any]) -> CreditDecision:
        try:
            auth = Authorization.from_request(authorization)
            signer = recover(auth, self.chain.chain_id, self.chain.contract_address or "")
        except ValueError as exc:
            return CreditDecision(False, str(exc))
        if signer.lower() != auth.driver.lower():
            return CreditDecision(False, "the authorization is not signed by its driver")
        left = auth.expiry - int(time.time())
        if left <= 0:
            return CreditDecision(False, "the authorization has expired")
        if left < defaults.AUTHORIZATION_MIN_SECONDS:
            # the session it starts is stopped SIGNED_STOP_AHEAD before the expiry, for its
            # chunk to be settled in time (the contract pays no signed entry after it)
            return CreditDecision(False, f"the authorization expires in {left} s: a session"
                                  f" needs {defaults.AUTHORIZATION_MIN_SECONDS} s (stopped"
                                  f" {defaults.SIGNED_STOP_AHEAD} s before the expiry to be"
                                  " settled in time)", auth.driver)

        async def work(tx: Tx) -> tuple[Any, Any, dict[str, int]]:
            station = await tx.get_station(station_id)
            return (station, await tx.find_tariff(station_id, datetime.now(UTC)),
                    await tx.driver_exposure(auth.driver, int(time.time()),
                                             self.reserve_minor))

        station, tariff, exposure = await self.repo.read(work)
        if station is None or station.chain_station != auth.station:
            return CreditDecision(False, f"the authorization is for station {auth.station},"
                                  " not this one", auth.driver)
        try:
            state = await self._state(auth.driver)
        except Exception as exc:
            log.warning("! escrow of %s not readable: %s", auth.driver, exc)
            return CreditDecision(False, "the driver's escrow cannot be read now", auth.driver)
        if state.index == 0:
            return CreditDecision(False, "the driver has no escrow", auth.driver)
        try:
            used = await asyncio.to_thread(self.chain.nonce_used, auth.driver, auth.nonce)
        except Exception as exc:
            log.warning("! nonces of %s not readable: %s", auth.driver, exc)
            return CreditDecision(False, "the driver's escrow cannot be read now", auth.driver)
        if used:  # the contract would not pay it again
            return CreditDecision(False, f"the driver's nonce {auth.nonce} is used already"
                                  " (settled on chain)", auth.driver)
        signed = Terms(auth.max_per_kwh, auth.max_per_minute, auth.max_session_fee,
                       auth.max_amount, state.terms_ahead(int(time.time())).max_per_day, True)
        return self._covers(auth.driver, state, signed, tariff, exposure)
