"""A session stopped at what its driver will pay: the rule.

A driver's escrow pays at most a per-session amount: for a card, the per-session limit of
the driver's terms on chain; for an app session, the maximum amount the driver signed; and
never more than the escrow holds, nor than what is left of the driver's daily limit. The
contract pays no more (an entry above it is not paid), so a session that runs on is energy
the host gives away. The limit is taken when the session starts (``settlement.credit``):
the smallest of the per-session amount, what the escrow has available and what is left of
the day, after the driver's other sessions in flight and waiting authorizations, each at
its own limit. It comes from the credit check confirmed in the unit that stores the session
(``CreditDecision.session_limit``, ``Cover.limit``) or, for an app session, from the signed
authorization bound to it (the limit it was accepted with), and is kept on the session
(``Session.limit_minor``): a meter reading reads no chain. A session no driver pays (a tag
of no driver, or no settlement on the node) has no limit, and its readings cost nothing
more here.

At each reading of a session with a limit (1.6 MeterValues, 2.0.1 TransactionEvent
Updated), its price so far (its tariff over the energy so far and the whole seconds since
its start, as the running cost) and the price of one more interval like the latest - the
energy and the time between the session's previous reading (its start for the first) and
this one - are added: the energy a station delivers before a stop takes effect. When that
reaches the limit, the station is asked to stop the session (1.6 RemoteStopTransaction,
2.0.1 RequestStopTransaction), once per session: the session is flagged
``limit_reached`` and a ``limit_reached`` station event names it. A station that does not
take the stop (Rejected, no answer) gets the session, if it is still charging, flagged
``limit_stop_refused``, a billing hold: the operator decides before it is sent to be paid.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime

from csms.domain.model import Session
from csms.domain.tariff import Tariff, price_minor

__all__ = ["LIMIT_FLAG", "REFUSED_FLAG", "LimitReached", "limit_reached", "price_so_far"]

LIMIT_FLAG = "limit_reached"
REFUSED_FLAG = "limit_stop_refused"


@dataclass(frozen=True, slots=True)
class LimitReached:
    """A session to stop at its driver's limit: what was judged, for the station event and
    the stop."""

    session_id: int
    transaction_id: str
    limit_minor: int
    price_minor: int  # so far
    margin_minor: int  # the price of one more interval like the latest


def seconds_since_start(session: Session, end: datetime) -> int:
    """Whole seconds from the session's start to ``end``, rounded up, as settlement prices
    the session."""
    return max(0, math.ceil((end - session.started_at).total_seconds()))


def price_so_far(tariff: Tariff, session: Session, end: datetime) -> int:
    """The session's price in minor units over its energy so far, up to ``end``."""
    return price_minor(tariff, max(0, int(session.energy_wh or 0)),
                       seconds_since_start(session, end))


def limit_reached(tariff: Tariff, session: Session, now: datetime,
                  previous: tuple[datetime, int], reading_at: datetime) -> LimitReached | None:
    """Whether ``session`` (its energy as of the reading at ``reading_at``) is to be stopped
    at its limit: its price up to ``now`` and the price of one more interval like the one
    since ``previous`` (the time and energy of the session's reading before) reach it."""
    if session.limit_minor is None or session.id is None:
        return None
    energy = max(0, int(session.energy_wh or 0))
    duration = seconds_since_start(session, now)
    price = price_minor(tariff, energy, duration)
    step_s = max(0.0, (reading_at - previous[0]).total_seconds())
    step_wh = max(0, energy - previous[1])
    ahead = price_minor(tariff, energy + step_wh, duration + step_s)
    if ahead < session.limit_minor:
        return None
    return LimitReached(session.id, session.transaction_id, session.limit_minor, price,
                        ahead - price)
