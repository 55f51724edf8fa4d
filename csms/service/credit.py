"""Whether a driver's escrow covers a charge: the port the charging service asks.

A tag linked to a driver (``csms drivers link``) is charged from that driver's escrow on
chain, under the terms the driver set there. Before a station starts charging such a tag
(Authorize, a start without one, a remote start), the central system asks whether the
escrow and the terms cover another session, and answers 1.6 ``Blocked`` / 2.0.1
``NoCredit`` when they do not (issue: a charge the driver cannot be billed for is a host
unpaid). Tags linked to no driver get no opinion here (``None``): they are billed
off-chain as before. The adapter lives in ``settlement.credit`` (it reads the chain).

The check reads the chain before the unit that stores the session (or the signed
authorization); the unit then confirms it (:class:`Cover`) on what it sees of the driver's
other sessions, the driver locked in the database (a PostgreSQL advisory lock; SQLite's
writers take turns on the whole file): two starts of one driver at the same moment, on
one node or on several sharing the database, cannot both be covered by one reserve.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from csms.service.ports import Tx

__all__ = ["Cover", "CreditCheck", "CreditDecision"]

log = logging.getLogger("csms.service")


@dataclass(frozen=True, slots=True)
class CreditDecision:
    ok: bool
    reason: str = ""
    driver: str | None = None
    # of an acceptance: the most the driver's escrow pays for the session it covers, in
    # the tariff's minor units (the smallest of the driver's per-session limit - or the
    # signed maximum amount -, what the escrow has available and what is left of the
    # day's limit); the central system asks the station to stop there (csms.service.limits)
    session_limit: int | None = None
    # what the answer was judged on besides the database (the escrow and terms read from
    # the chain, the tariff): :meth:`CreditCheck.confirm` judges it again on these; of a
    # refusal of a card unlinked, what :meth:`CreditCheck.link_changes` reads its link by
    basis: Any = field(default=None, compare=False, repr=False)
    # of a refusal: the driver no longer links the card on chain (lost, stolen): the card
    # is not the driver's to be charged for, so a session a station starts on it anyway is
    # charged to nobody - if it was unlinked already at the session's start
    # (:meth:`Cover.card_unlinked_at`). Every other refusal of the escrow (a withdrawal
    # announced, a balance or day too low, terms, a chain that could not be read) leaves
    # the card its driver's: the driver could bring those about after the station
    # started, and undo them
    card_unlinked: bool = False


class CreditCheck(Protocol):
    async def check(self, station_id: str, tag: str) -> CreditDecision | None:
        """None when ``tag`` belongs to no driver; else whether a new session is covered."""
        ...

    async def check_authorization(self, station_id: str,
                                  authorization: dict[str, Any]) -> CreditDecision:
        """Whether a driver's signed app-session authorization is good for this station."""
        ...

    async def confirm(self, tx: Tx, decision: CreditDecision) -> CreditDecision:
        """``decision`` (an acceptance) judged again inside the unit that stores what it
        covers, on what that unit sees of the driver's sessions and authorizations, with
        the driver locked in the database until the unit commits: two nodes (or two
        worker processes) starting one driver at the same moment are judged one after
        the other, the second seeing the first's session. No chain read here."""
        ...

    async def link_changes(self, decision: CreditDecision
                           ) -> tuple[tuple[datetime, bool], ...] | None:
        """Of a refusal of a card unlinked now (:attr:`CreditDecision.card_unlinked`): every
        change of the card's link on chain, (its block's time, linked), oldest first; None
        when that history cannot be read. Read before the unit that stores the session,
        only for such a refusal: whether the card was unlinked at the session's start."""
        ...


@dataclass(slots=True)
class Cover:
    """The answer to "does the escrow cover a charge of this tag here", as checked before
    the unit that stores the charge, and confirmed in it (:meth:`holds`)."""

    decision: CreditDecision | None = None  # None: a tag of no driver, or no settlement
    credit: CreditCheck | None = None
    # the decision as :meth:`holds` confirmed it in the unit (the last run of the unit's)
    confirmed: CreditDecision | None = field(default=None, compare=False)
    # of a card refused as unlinked now, for a session's start: the changes of its link on
    # chain (:meth:`CreditCheck.link_changes`; None: not read, or not readable)
    link_changes: tuple[tuple[datetime, bool], ...] | None = None

    async def holds(self, tx: Tx) -> bool:
        decision = self.decision
        if decision is None:
            return True
        if decision.ok and self.credit is not None:
            decision = await self.credit.confirm(tx, decision)
            if not decision.ok:
                log.info("= %s may not charge: %s", decision.driver, decision.reason)
        self.confirmed = decision
        return decision.ok

    def card_unlinked_at(self, started_at: datetime) -> bool:
        """Whether the escrow refused the card as its driver no longer links it on chain
        (:attr:`CreditDecision.card_unlinked`) and it was not linked on chain at
        ``started_at``, the session's start (the station's time): the last change of its
        link at or before then, by block time, unlinked it, or there was none (linked only
        later). A session started on it is then charged to nobody. A card unlinked after
        the start (an offline station's start sent late, the seconds between Authorize and
        the start), or whose link history cannot be read, stays its driver's: unlinking a
        card changes only the sessions started afterwards, and a host is never left unpaid
        on a guess."""
        decision = self.confirmed if self.confirmed is not None else self.decision
        if decision is None or decision.ok or not decision.card_unlinked \
                or self.link_changes is None:
            return False
        before = [linked for at, linked in self.link_changes if at <= started_at]
        return not before or not before[-1]

    @property
    def limit(self) -> int | None:
        """The most the driver's escrow pays for the session (None: no driver pays it, or
        the escrow does not cover it): as confirmed in the unit, on the driver's other
        sessions it sees (two sessions of one driver started at once are each limited by
        what the other leaves), else as checked before it."""
        decision = self.confirmed if self.confirmed is not None else self.decision
        return decision.session_limit if decision is not None and decision.ok else None
