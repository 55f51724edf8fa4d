"""Use cases of what the driver sees and who may stop a session: the running cost of a
session from its tariff (2.0.1 I02/I04 totalCost and CostUpdated, the 1.6 running-cost
DataTransfer convention), id tag groups and master passes (1.6 parentIdTag, 2.0.1
groupIdToken, C09/C16), and the station options that say what a station supports.

The running cost is read after a transaction message is stored and answered from what is
stored: it never delays nor fails the acknowledgement (the caller drops a cost it could not
compute), and a session that is held for billing gets none rather than a wrong one.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from csms.domain.model import (
    BILLING_HOLD_FLAGS,
    MASTER_PASS_VERSIONS,
    TIME_COST_PUSH_VERSIONS,
    IdTag,
    Session,
    SessionStatus,
    TagStatus,
)
from csms.domain.tariff import Tariff
from csms.service.core import ChargingCore
from csms.service.limits import price_so_far
from csms.service.ports import Tx
from csms.service.transactions import current_session, session_on_evse

__all__ = [
    "MASTER_PASS_OPTION", "MASTER_PASS_VARIABLE", "REPORT_KINDS", "RUNNING_COST_OPTION",
    "DriverUseCases", "RunningCost", "StopDecision",
    "customer_reports", "may_stop", "personal_message",
]

log = logging.getLogger("csms.service")

# station option names (Tx.get_station_option)
RUNNING_COST_OPTION = "running_cost"
# central option names (Tx.get_central_option): the group whose tags are 2.0.1 master
# passes (C16), set on 2.0.1 stations as AuthCtrlr.MasterPassGroupId
MASTER_PASS_OPTION = "master_pass_group"
MASTER_PASS_VARIABLE = ("AuthCtrlr", "MasterPassGroupId")


@dataclass(frozen=True, slots=True)
class RunningCost:
    """A session's cost so far (or final), in major units rounded to the currency."""

    session_id: int
    transaction_id: str
    total: Decimal
    currency: str
    energy_wh: int
    at: datetime
    final: bool
    tariff: Tariff


def personal_message(cost: RunningCost) -> str:
    """What the station shows the driver beside the cost (2.0.1 updatedPersonalMessage,
    <= 512 characters, plain text)."""
    kwh = (Decimal(cost.energy_wh) / 1000).quantize(Decimal("0.001"))
    what = "Total" if cost.final else "Cost so far"
    return f"{what}: {cost.total} {cost.currency} for {kwh} kWh"


@dataclass(frozen=True, slots=True)
class StopDecision:
    """Whether the tag that ended a session may end it, and the group it answers with."""

    allowed: bool
    group: str | None
    reason: str


def may_stop(owner: IdTag | None, owner_tag: str | None, stopper: IdTag | None,
             stopper_tag: str, master_group: str | None = None) -> StopDecision:
    """Who may stop a session started with ``owner_tag``: the same tag; a tag of the same
    group (1.6 §3.5.1 parentIdTag, 2.0.1 C09 groupIdToken); a master pass of that group
    (a tag added with ``--master``, limited to its own group, as 1.6 has no master pass);
    on a 2.0.1 station, any tag of the master pass group ``master_group`` (C16: its
    MasterPassGroupId), whatever the session's group. Group membership is the tag's
    recorded group only: a tag whose *name* equals a group's gains nothing by it."""
    group = stopper.parent if stopper else None
    if owner_tag is None or stopper_tag == owner_tag:
        return StopDecision(True, group, "own session")
    if stopper is None:
        return StopDecision(False, None, "unknown tag")
    if master_group is not None and stopper.parent == master_group:
        if stopper.status == TagStatus.BLOCKED:
            return StopDecision(False, group, "tag blocked")
        return StopDecision(True, group, "master pass")  # C16.FR.01/02: any transaction
    owner_group = owner.parent if owner else None
    if owner_group is None or stopper.parent != owner_group:
        return StopDecision(False, group, "not of the session's group")
    if stopper.status == TagStatus.BLOCKED:
        return StopDecision(False, group, "tag blocked")
    return StopDecision(True, group, "master pass" if stopper.master else "same group")


async def cost_of(tx: Tx, session: Session, now: datetime) -> RunningCost | None:
    """A session's cost from its tariff and stored energy, up to ``now`` while it runs;
    None without a tariff or while it is held for billing."""
    tariff = await tariff_of(tx, session)
    return None if tariff is None else priced(session, tariff, now)


async def tariff_of(tx: Tx, session: Session) -> Tariff | None:
    """The tariff a session is priced with (:func:`priced`), read in a unit: None without
    one or while the session is held for billing."""
    if session.id is None or BILLING_HOLD_FLAGS.intersection(session.flags):
        return None
    return await tx.find_tariff(session.station_id, session.started_at)


def priced(session: Session, tariff: Tariff, now: datetime) -> RunningCost:
    """A session's cost with ``tariff`` (:func:`tariff_of`), up to ``now`` while it runs:
    no storage, so it may be worked out after the unit that read them."""
    assert session.id is not None
    final = session.status is SessionStatus.COMPLETED
    end = session.stopped_at if final and session.stopped_at else now
    # whole seconds rounded up, as the settlement worker prices the session; at most the
    # session's limit, which is what the driver's escrow pays (settlement bills no more)
    price = price_so_far(tariff, session, end)
    if session.limit_minor is not None:
        price = min(price, session.limit_minor)
    total = Decimal(price).scaleb(-tariff.decimals)
    return RunningCost(session.id, session.station_transaction_id, total, tariff.currency,
                       max(0, int(session.energy_wh or 0)), end, final, tariff)


class DriverUseCases(ChargingCore):
    """The running cost, groups and stops by another tag, station options."""

    # -- the running cost ---------------------------------------------------------
    async def running_cost(self, station_id: str, transaction_id: str
                           ) -> RunningCost | None:
        """The session's cost from its tariff and stored energy; None when there is no
        such session of this station, no tariff, or the session is held for billing."""

        async def work(tx: Tx) -> RunningCost | None:
            session = await current_session(tx, station_id, transaction_id)
            return None if session is None else await self._cost_of(tx, session)

        return await self.repo.read(work)

    async def _cost_of(self, tx: Tx, session: Session) -> RunningCost | None:
        return await cost_of(tx, session, self.clock())

    async def cost_command_args(self, station_id: str, session_id: Any) -> dict[str, Any]:
        """The arguments of ``cost-updated`` for a session (named, or the station's only
        active one): its transaction, cost, energy, and whether the station announced the
        1.6 running-cost convention. ValueError when there is nothing true to send."""

        async def work(tx: Tx) -> dict[str, Any]:
            if session_id is not None:
                session = await tx.get_session(int(session_id))
                if session is None or session.station_id != station_id:
                    raise ValueError(f"no session {session_id} on {station_id}")
            else:
                active = await tx.list_sessions(station_id, True, 2)
                if not active:
                    raise ValueError(f"{station_id} has no active session")
                if len(active) > 1:
                    raise ValueError(f"{station_id} has several active sessions: name one")
                session = active[0]
            cost = await self._cost_of(tx, session)
            if cost is None:
                raise ValueError(f"session {session.id} has no cost to show (no tariff, or"
                                 " held for billing)")
            announced = await tx.get_station_option(station_id, RUNNING_COST_OPTION)
            return {"transaction_id": cost.transaction_id, "total_cost": str(cost.total),
                    "currency": cost.currency, "meter_wh": cost.energy_wh,
                    "timestamp": cost.at.isoformat().replace("+00:00", "Z"),
                    "final": cost.final, "text": personal_message(cost),
                    "kwh_price": str(cost.tariff.per_kwh),
                    "hour_price": str(cost.tariff.per_minute * 60),
                    "flat_fee": str(cost.tariff.session_fee),
                    "running_cost": announced == "on"}

        return await self.repo.read(work)

    async def running_cost_sessions(self, station_id: str) -> list[int]:
        """The active sessions of a station marked as showing the running cost (the 1.6
        convention), to which the running cost is sent at an interval."""

        async def work(tx: Tx) -> list[int]:
            if await tx.get_station_option(station_id, RUNNING_COST_OPTION) != "on":
                return []
            return [s.id for s in await tx.list_sessions(station_id, True, 100)
                    if s.id is not None]

        return await self.repo.read(work)

    async def cost_push_stations(self, connected: dict[str, str]) -> set[str]:
        """Of ``connected`` (station id -> OCPP version), the stations that may have a
        cost to push at an interval (see :meth:`costs_to_push`), found in one read: those
        marked for the running cost, and 2.0.1 stations when some tariff has a time
        component. A fleet of unmarked 1.6 stations costs one read an interval, not one
        per station."""

        async def work(tx: Tx) -> set[str]:
            marked = await tx.stations_with_option(RUNNING_COST_OPTION, "on")
            timed = any(t.per_minute > 0 for t in await tx.list_tariffs())
            return {sid for sid, version in connected.items()
                    if sid in marked or (timed and version in TIME_COST_PUSH_VERSIONS)}

        return await self.repo.read(work)

    async def costs_to_push(self, station_id: str, version: str
                            ) -> list[tuple[int, Decimal]]:
        """(session id, cost so far) of the station's active sessions whose cost is pushed
        at an interval: every one of a station marked for the running cost; on a 2.0.1
        station also each session whose tariff has a time component (its cost grows
        without a TransactionEvent to answer with it, I02.FR.01 / I03). A session held for
        billing or without a tariff has no cost and is left out."""

        async def work(tx: Tx) -> list[tuple[int, Decimal]]:
            marked = await tx.get_station_option(station_id, RUNNING_COST_OPTION) == "on"
            if not marked and version not in TIME_COST_PUSH_VERSIONS:
                return []
            out = []
            for session in await tx.list_sessions(station_id, True, 100):
                cost = await self._cost_of(tx, session)
                if cost is None or not (marked or cost.tariff.per_minute > 0):
                    continue
                out.append((cost.session_id, cost.total))
            return out

        return await self.repo.read(work)

    async def final_cost_args(self, station_id: str, transaction_id: str
                              ) -> dict[str, Any] | None:
        """The ``cost-updated`` arguments of the 1.6 FinalCost DataTransfer for a session
        the station just ended, claimed so that it goes out once: None unless the station
        is marked for the running cost, the session is completed and priced (the figure
        settlement bills: its tariff, energy and whole seconds) and not held, and it was
        not claimed before (a retried StopTransaction gets nothing again)."""
        now = self.clock()

        async def read(tx: Tx) -> RunningCost | None:
            if await tx.get_station_option(station_id, RUNNING_COST_OPTION) != "on":
                return None
            session = await tx.find_session(station_id, transaction_id)
            if session is None or session.status is not SessionStatus.COMPLETED:
                return None
            return await self._cost_of(tx, session)

        # read first: most stops are of stations not marked, and need no write
        cost = await self.repo.read(read)
        if cost is None:
            return None

        async def claim(tx: Tx) -> bool:
            return await tx.claim_final_cost(cost.session_id, station_id, str(cost.total),
                                             cost.currency, now)

        if not await self.repo.unit(claim):
            return None
        return {"transaction_id": cost.transaction_id, "total_cost": str(cost.total),
                "currency": cost.currency, "final": True, "running_cost": True,
                "text": personal_message(cost), "session": cost.session_id}

    async def final_cost_answered(self, session_id: int, answer: dict[str, Any] | None
                                  ) -> None:
        """Keep the station's answer to FinalCost (``none``: offline, no answer or a
        CALLERROR; it is not sent again)."""
        word = "none" if answer is None else str(answer.get("status", "?"))[:40]

        async def work(tx: Tx) -> None:
            await tx.set_final_cost_answer(session_id, word)

        await self.repo.unit(work)

    # -- groups and master passes ----------------------------------------------------
    async def master_pass_group(self) -> str | None:
        """The group whose tags are master passes on 2.0.1 stations (C16), if any."""

        async def work(tx: Tx) -> str | None:
            return await tx.get_central_option(MASTER_PASS_OPTION)

        return await self.repo.read(work)

    async def is_master_pass(self, tag: str) -> bool:
        """Whether ``tag`` is of the master pass group: on a 2.0.1 station it may stop any
        transaction and start none (C16)."""

        async def work(tx: Tx) -> bool:
            group = await tx.get_central_option(MASTER_PASS_OPTION)
            record = await tx.get_tag(tag) if group is not None else None
            return record is not None and record.parent == group

        return await self.repo.read(work)

    async def master_pass_answered(self, station_id: str, group: str,
                                   answer: dict[str, Any] | None) -> None:
        """Keep a station's answer to the MasterPassGroupId it was sent (SetVariables)."""
        results = (answer or {}).get("setVariableResult") or [{}]
        status = str(results[0].get("attributeStatus", "none")) if answer else "none"
        if status != "Accepted":
            log.warning("! %s: MasterPassGroupId %s not set: %s", station_id, group, status)
        await self.station_event_now(station_id, "master_pass_group",
                                     {"group": group, "status": status})

    async def tag_group(self, tag: str) -> str | None:
        """The group a known tag belongs to (answered with Authorize), else None."""

        async def work(tx: Tx) -> str | None:
            record = await tx.get_tag(tag)
            return record.parent if record else None

        return await self.repo.read(work)

    async def check_stop(self, station_id: str, transaction_id: str, tag: str,
                         evse_id: int | None = None) -> StopDecision:
        """Whether ``tag`` may have ended the station's session ``transaction_id`` (on
        ``evse_id``, a 2.0.1 event's: the transaction there, where another EVSE's took the
        id too); a stop it may not make is recorded as a security event (the session stays
        ended: the station stopped it, and transaction messages are always
        acknowledged)."""

        async def work(tx: Tx) -> tuple[StopDecision, int | None]:
            session = await current_session(tx, station_id, transaction_id)
            if session is not None and evse_id is not None \
                    and session.evse_id not in (None, evse_id):
                session = await session_on_evse(tx, session, transaction_id,
                                                evse_id) or session
            if session is None:
                return StopDecision(True, None, "no session"), None
            owner = await tx.get_tag(session.id_tag) if session.id_tag else None
            stopper = await tx.get_tag(tag)
            master = await tx.get_central_option(MASTER_PASS_OPTION) \
                if session.ocpp_version in MASTER_PASS_VERSIONS else None
            return may_stop(owner, session.id_tag, stopper, tag, master), session.id

        decision, session_id = await self.repo.read(work)
        if not decision.allowed:
            log.warning("! %s: tag %s ended session %s: %s", station_id, tag, session_id,
                        decision.reason)
            await self.station_event_now(station_id, "security", {
                "type": "StopNotAllowed", "session_id": session_id,
                "transaction_id": transaction_id, "tag": tag, "reason": decision.reason})
        return decision

    async def station_event_now(self, station_id: str, kind: str,
                                payload: dict[str, Any]) -> None:
        now = self.clock()

        async def work(tx: Tx) -> None:
            await tx.add_station_event(station_id, kind, payload, now)

        await self.repo.unit(work)

    # -- what a station supports ------------------------------------------------------
    async def set_station_option(self, station_id: str, name: str, value: str | None) -> None:
        async def work(tx: Tx) -> None:
            if await tx.get_station(station_id) is None:
                raise ValueError(f"no station {station_id!r}")
            await tx.set_station_option(station_id, name, value)

        await self.repo.unit(work)


# station event kinds of the reports a station sends about itself (csms stations reports)
REPORT_KINDS = ("display_messages", "charging_profiles", "charging_limit",
                "charging_limit_cleared", "ev_charging_needs", "ev_charging_schedule",
                "customer_information")


def customer_reports(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """NotifyCustomerInformation parts (station events, any order) assembled per request:
    the parts' data in seqNo order, complete once the part without ``tbc`` arrived and no
    seqNo before it is missing. A part sent twice counts once."""
    by_request: dict[Any, dict[int, dict[str, Any]]] = {}
    for e in events:
        p = e["payload"]
        if not isinstance(p, dict) or not isinstance(p.get("seqNo"), int):
            continue
        by_request.setdefault(p.get("requestId"), {}).setdefault(p["seqNo"], {**p,
                                                                             "ts": e["ts"]})
    out = []
    for request_id, parts in by_request.items():
        ordered = [parts[n] for n in sorted(parts)]
        last = [p["seqNo"] for p in ordered if not p.get("tbc")]
        complete = bool(last) and sorted(parts)[: last[0] + 1] == list(range(last[0] + 1))
        out.append({"request_id": request_id, "parts": len(ordered), "complete": complete,
                    "generated_at": ordered[0].get("generatedAt"),
                    "data": "".join(str(p.get("data", "")) for p in ordered)})
    return sorted(out, key=lambda r: str(r["generated_at"]), reverse=True)
