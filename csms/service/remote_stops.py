"""A remote stop the station accepted, and a session that charged on: the rule.

An operator stops a session remotely (``csms remote stop``, the admin API, the console:
1.6 RemoteStopTransaction, 2.0.1 RequestStopTransaction). The station's ``Accepted`` says
it will stop; nothing makes it. A station that answers ``Accepted`` and keeps charging
goes on billing the driver, and the operator, told "stop: Accepted", believes it stopped.

So an accepted remote stop is recorded: a ``remote_stop`` station event names the session,
when the central system's clock had the answer (``accepted_at``), the energy the session
had then (``energy_wh``: its running energy from the readings received so far) and when
that energy last grew (``energy_grew_at``, the central system's clock), and the session is
flagged ``remote_stop_accepted`` (:data:`STOP_ACCEPTED_FLAG`, no hold). Only a session
with that flag reads its event when it completes: the completion of every other session
costs nothing more.

At its completion such a session has charged on after the stop (:func:`charged_on`) when

* its stop is dated more than ``time_future`` after the accept and its tariff charges by
  the minute (or no tariff is found): it is billed for time after it (the station's clock
  may be off by up to ``time_future``, the drift the central system allows a station's
  times everywhere; its 10 minutes are also ample for an EV to ramp down and its station
  to end the transaction). Under a tariff by energy alone a late stop costs the driver
  nothing its energy does not show, and a 2.0.1 station whose transaction ends at the
  unplug (``TxStopPoint`` EVConnected) ends it late honestly; or
* its billed energy is above the energy it had at the accept by more than its station's
  maximum power delivers from when its energy last grew before the accept to the accept
  plus :data:`ENERGY_GRACE_S` (energy delivered before the accept but not reported yet,
  and the seconds a stop takes to open the contactor and the station to answer): energy
  grown after the stop. Both ends are the central system's clock, whatever the station
  dates its readings or its stop.

Then it is held (``charged_after_remote_stop``, :data:`CHARGED_ON_FLAG`, a billing hold)
and a ``charged_after_remote_stop`` station event gives the figures: the operator decides
before it is sent to be paid. When the stop was received says nothing by itself: an
honest station that lost its connection right after it accepted sends its stop, dated
when it stopped, once it is back, and is not held. The first accept counts: a station
that accepted and charged on, asked again, is judged from the first.

A second remote stop of a session already recorded as stopped (more than
:data:`ENERGY_GRACE_S` ago), still active, answers that the session is still charging.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from csms.domain.model import Session

__all__ = ["CHARGED_ON_FLAG", "ENERGY_GRACE_S", "EVENT", "STOP_ACCEPTED_FLAG", "AcceptedStop",
           "ChargedOn", "charged_on"]

STOP_ACCEPTED_FLAG = "remote_stop_accepted"  # a marker: its completion reads its event
CHARGED_ON_FLAG = "charged_after_remote_stop"  # a billing hold
EVENT = "remote_stop"
# seconds after an accepted stop within which energy is still the stop's: the EV ramps
# down, the contactor opens, the station answers (IEC 61851-1 gives the EV and the EVSE
# seconds for each step); a reading received within that is no charging on
ENERGY_GRACE_S = 60


@dataclass(frozen=True, slots=True)
class AcceptedStop:
    """An accepted remote stop of a session, as its ``remote_stop`` event keeps it."""
    accepted_at: datetime
    energy_wh: int
    energy_grew_at: datetime | None

    @classmethod
    def of(cls, payload: dict[str, Any]) -> AcceptedStop:
        grew = payload.get("energy_grew_at")
        return cls(datetime.fromisoformat(str(payload["accepted_at"])),
                   int(payload.get("energy_wh") or 0),
                   None if grew is None else datetime.fromisoformat(str(grew)))

    def payload(self) -> dict[str, Any]:
        return {"accepted_at": self.accepted_at.isoformat(), "energy_wh": self.energy_wh,
                "energy_grew_at": None if self.energy_grew_at is None
                else self.energy_grew_at.isoformat()}


@dataclass(frozen=True, slots=True)
class ChargedOn:
    """Why a completed session counts as charged on after its accepted stop."""
    energy_after_wh: int
    allowed_wh: int
    stop_late_s: int

    def payload(self) -> dict[str, Any]:
        return {"energy_after_wh": self.energy_after_wh, "allowed_wh": self.allowed_wh,
                "stop_late_s": self.stop_late_s}


def charged_on(stop: AcceptedStop, session: Session, max_power_w: Decimal,
               tolerance: timedelta, by_time: bool = True) -> ChargedOn | None:
    """Whether ``session``, completed, charged on after ``stop`` beyond the tolerance (see
    the module): its stop dated more than ``tolerance`` after the accept, where its price
    grows with time (``by_time``: a tariff by the minute, or none known; a 2.0.1 station
    whose transaction ends at the unplug ends it late, honestly, and its energy says
    whether it charged), or its energy grown since by more than ``max_power_w`` delivers
    from when it last grew before the accept (its start, not known) to the accept plus
    :data:`ENERGY_GRACE_S`."""
    since = stop.energy_grew_at or session.created_at or session.started_at
    unreported_s = max(0.0, (stop.accepted_at - since).total_seconds()) + ENERGY_GRACE_S
    allowed = int(max_power_w * Decimal(unreported_s) / 3600)
    after = (session.energy_wh or 0) - stop.energy_wh
    late = 0 if session.stopped_at is None \
        else int((session.stopped_at - stop.accepted_at).total_seconds())
    if after <= allowed and (late <= tolerance.total_seconds() or not by_time):
        return None
    return ChargedOn(after, allowed, late)
