"""What the console's pages show, read through the storage port a page at a time.

Every list is paginated by an index (``csms/storage/migrations/*/0030_console.sql``):
stations and tags in id order after a cursor, sessions, batches and the audit log newest
first before a cursor. The records' JSON shapes are those of the admin API and the CLI
(:mod:`csms.service.views`); this module only adds what a page needs around them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from csms.domain.energy import ENERGY_REGISTER, register_wh
from csms.domain.model import MeterSample, Session, SessionStatus
from csms.metering.ocmf import VERIFIED
from csms.service.billing import BillingState
from csms.service.cluster import live_nodes
from csms.service.holds import hold_fields, notice_period
from csms.service.ports import Tx
from csms.service.views import iso, price_text, session_json, session_price, station_json

__all__ = [
    "HELD_SCAN",
    "PAGE_SIZE",
    "POWER",
    "SESSION_STATUSES",
    "Page",
    "batch_page",
    "batches_page",
    "overview",
    "session_page",
    "sessions_page",
    "stations_page",
    "watts",
]

PAGE_SIZE = 50
POWER = "Power.Active.Import"
SESSION_STATUSES = ("active", "completed", "held")
# How many held sessions the overview counts and the held filter reads at once: held
# sessions wait for an operator, there are few; beyond this the count reads "500+".
HELD_SCAN = 500
_POWER_FACTOR = {"w": Decimal(1), "kw": Decimal(1000)}


@dataclass(slots=True)
class Page:
    rows: list[dict[str, Any]]
    next_cursor: str | None  # the cursor of the next page, None on the last one


def watts(value: str, unit: str | None, multiplier: int | None) -> Decimal | None:
    """A power reading in W (units W or kW, with the 2.0.1 multiplier), or None."""
    factor = _POWER_FACTOR.get((unit or "W").lower())
    if factor is None or abs(multiplier or 0) > 24:
        return None
    try:
        number = Decimal(str(value).strip())
    except InvalidOperation:
        return None
    if not number.is_finite():
        return None
    return number.scaleb(multiplier or 0) * factor


def _power_by_session(rows: list[dict[str, Any]]) -> dict[int, Decimal]:
    """A session's power: its total reading, or the sum of its phases when it sent no total."""
    totals: dict[int, Decimal] = {}
    phases: dict[int, Decimal] = {}
    for r in rows:
        w = watts(r["value"], r["unit"], r["multiplier"])
        if w is None:
            continue
        if r["phase"]:
            phases[r["session_id"]] = phases.get(r["session_id"], Decimal(0)) + w
        else:
            totals[r["session_id"]] = w
    return {sid: totals.get(sid, phases.get(sid, Decimal(0)))
            for sid in set(totals) | set(phases)}


async def overview(tx: Tx, now: datetime) -> dict[str, Any]:
    """The overview's figures: stations online, active sessions and their power now,
    energy of the sessions stopped today (UTC), settlement backlog, held sessions."""
    by_node = await tx.count_stations_by_node()
    live = await live_nodes(tx, now)
    total = sum(by_node.values())
    online = sum(n for node, n in by_node.items() if node is not None and node in live)
    counts = await tx.count_sessions()
    active = await tx.list_sessions_page(station_id=None, id_tag=None, status="active",
                                         before=None, limit=1000)
    power = _power_by_session(await tx.latest_power_samples(
        [s.id for s in active if s.id is not None], POWER))
    midnight = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    held = await tx.held_sessions(None, HELD_SCAN)
    return {
        "stations": total, "online": online, "offline": total - online,
        "active_sessions": counts.get("active", 0),
        "completed_sessions": counts.get("completed", 0),
        "power_w": int(sum(power.values(), Decimal(0))),
        "power_sessions": len(power),
        "energy_today_wh": await tx.energy_stopped_since(midnight),
        "backlog": await tx.settlement_backlog(),
        "held": len(held), "held_more": len(held) >= HELD_SCAN,
    }


async def stations_page(tx: Tx, after: str | None, limit: int = PAGE_SIZE) -> Page:
    stations = await tx.list_stations_page(after, limit + 1)
    more = len(stations) > limit
    stations = stations[:limit]
    connectors: dict[str, list[dict[str, Any]]] = {}
    for c in await tx.list_connectors_of([s.id for s in stations]):
        connectors.setdefault(c["station_id"], []).append(c)
    live = await live_nodes(tx, datetime.now(UTC))
    rows = [station_json(s, connectors.get(s.id, []), live) for s in stations]
    return Page(rows, stations[-1].id if more and stations else None)


def _session_row(s: Session, notice_s: int | None, now: datetime) -> dict[str, Any]:
    """A session of the lists and its page: as ``csms sessions show --json`` (its billing
    and, held, its time to decide it by: csms.service.holds.hold_fields), with its price."""
    return {**session_json(s), **hold_fields(s, notice_s, now),
            "price_minor": s.price_minor, "currency": s.currency}


async def minor_digits(tx: Tx) -> dict[str, int]:
    """Each currency's minor digits, from the tariffs charged in it, for the prices of the
    lists (a session's own page reads its tariff's); a currency whose tariffs disagree is
    left out, and its prices are shown in minor units."""
    seen: dict[str, set[int]] = {}
    for t in await tx.list_tariffs():
        seen.setdefault(t.currency, set()).add(t.decimals)
    return {currency: next(iter(d)) for currency, d in seen.items() if len(d) == 1}


async def sessions_page(
    tx: Tx, *, station: str | None, tag: str | None, status: str | None,
    before: int | None, limit: int = PAGE_SIZE,
) -> Page:
    """Sessions newest first; ``status`` active, completed or held."""
    if status == "held":
        # held is read from flags: among the sessions the worker has not taken
        found: list[Session] = []
        cursor = before
        while len(found) <= limit:
            chunk = await tx.held_sessions(cursor, HELD_SCAN)
            found += [s for s in chunk if (station is None or s.station_id == station)
                      and (tag is None or s.id_tag == tag)]
            if len(chunk) < HELD_SCAN:
                break
            cursor = chunk[-1].id
        sessions = found
    else:
        sessions = await tx.list_sessions_page(station_id=station, id_tag=tag, status=status,
                                               before=before, limit=limit + 1)
    more = len(sessions) > limit
    sessions = sessions[:limit]
    notice, now = await notice_period(tx), datetime.now(UTC)
    return Page([_session_row(s, notice, now) for s in sessions],
                str(sessions[-1].id) if more and sessions else None)


def _curve(samples: list[MeterSample], started: datetime | None,
           meter_start: Decimal | None) -> dict[str, list[Any]]:
    """Seconds since the start, energy in Wh since the session's meter start (or its first
    reading), power in W."""
    t0 = started.timestamp() if started else None
    energy: dict[float, float] = {}
    power: dict[float, float] = {}
    first = meter_start
    for m in samples:
        at = m.timestamp.timestamp()
        t0 = at if t0 is None else t0
        x = round(at - t0, 3)
        wh = register_wh(m)
        if wh is not None:
            first = wh if first is None else first
            energy[x] = float(wh - first)
        elif m.measurand == POWER and not m.phase:
            w = watts(m.value, m.unit, m.multiplier)
            if w is not None:
                power[x] = float(w)
    xs = sorted(set(energy) | set(power))
    return {"t": xs, "energy_wh": [energy.get(x) for x in xs],
            "power_w": [power.get(x) for x in xs]}


async def session_page(tx: Tx, session_id: int) -> dict[str, Any] | None:
    """One session: the record, its curve, signed readings, billing and its batch."""
    s = await tx.get_session(session_id)
    if s is None:
        return None
    samples = await tx.session_samples(session_id)
    signed = await tx.signed_readings(session_id)
    settlement = await tx.session_settlement(session_id) or {}
    batch_id = await tx.batch_of_session(session_id)
    batch = await tx.get_batch(batch_id) if batch_id is not None else None
    curve = _curve(samples, s.started_at, s.meter_start_wh)
    readings = [e for e in curve["energy_wh"] if e is not None]
    price = await session_price(tx, s)
    # held: by when to release or reject it (its decide_by, None while no settlement worker
    # has read the contract's notice period) and whether that is near or passed
    row = _session_row(s, await notice_period(tx), datetime.now(UTC))
    return {
        "session": row,
        # as ``csms sessions show`` writes it: with its tariff's minor digits
        "price": None if s.price_minor is None else price_text(
            s.price_minor, s.currency, price["decimals"]),
        "curve": curve,
        "energy_so_far_wh": int(readings[-1]) if readings else 0,
        "samples": len(samples),
        "energy_samples": sum(1 for m in samples if m.measurand == ENERGY_REGISTER),
        "signed": signed,
        "signed_ok": sum(1 for r in signed if r["status"] == VERIFIED),
        "settlement": settlement,
        "batch": None if batch is None else {
            "id": batch["id"], "state": batch["state"], "tx_hash": batch.get("tx_hash"),
            "gas_used": batch.get("gas_used")},
        "receipt_ready": batch is not None and batch["state"] == "finalized",
        "held": row["billing"] == BillingState.HELD,
        "active": s.status is SessionStatus.ACTIVE,
    }


async def batches_page(tx: Tx, before: int | None, limit: int = 20) -> Page:
    """Settlement batches newest first, each with what its sessions paid (per state and
    currency); the sessions themselves are on the batch's page."""
    batches = await tx.list_batches_page(before, limit + 1)
    more = len(batches) > limit
    batches = batches[:limit]
    summaries: dict[int, list[dict[str, Any]]] = {}
    for r in await tx.batch_summaries([int(b["id"]) for b in batches]):
        summaries.setdefault(int(r["batch_id"]), []).append(r)
    rows = [{**b, "summary": summaries.get(int(b["id"]), [])} for b in batches]
    return Page(rows, str(batches[-1]["id"]) if more and batches else None)


async def batch_page(tx: Tx, batch_id: int) -> dict[str, Any] | None:
    """One batch and each of its sessions with what it paid."""
    batch = await tx.get_batch(batch_id)
    if batch is None:
        return None
    keep = ("id", "state", "root", "count", "chain_id", "contract", "nonce", "tx_hash",
            "block_number", "gas_used", "error", "created_at", "updated_at", "first_seq")
    return {**{k: batch.get(k) for k in keep}, "sessions": await tx.batch_sessions(batch_id),
            "summary": await tx.batch_summaries([batch_id])}


def when(value: str | datetime | None) -> str:
    """A time for a table cell: UTC to the second."""
    if value is None:
        return ""
    at = datetime.fromisoformat(value) if isinstance(value, str) else value
    return (iso(at) or "")[:19].replace("T", " ")
