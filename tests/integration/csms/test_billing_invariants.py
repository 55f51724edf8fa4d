"""Billing invariants under generated transaction messages of a hostile or broken station.

Each example is a new station, connected (by the central system's clock) two hours
before, that sends a generated sequence over a real socket to a server storing in a
SQLite file: 1.6 StartTransaction / MeterValues / StopTransaction on two connectors
(register readings in Wh and kWh, with contexts, phases, times in and out of order, stale
transaction ids, a second start on a connector, a stop before any reading), or 2.0.1
TransactionEvent Started / Updated / Ended on two EVSEs (seqNo gaps and repeats, the
offline flag, Ended without Started, unitOfMeasure with a multiplier, begin readings
with half a Wh, one transaction id on two EVSEs, no signed data). Messages are repeated,
dropped or swapped, and the station may close its connection and open a new one on the
way (a reconnect made to send a start dated back). Every session it completed must then
hold:

- energy >= 0, and for a session queued for settlement no more than the largest register
  value the station sent for the transaction less the smallest (in whole Wh, rounded as
  the receipts' verifiers round it: half to even);
- no session queued twice, no two queued sessions of one transaction;
- queued with no hold flag (its price is then price_minor of its energy and duration), or
  held with a flag of ``BILLING_HOLD_FLAGS`` saying why;
- queued only with a duration >= 0 and no longer than the central system saw it (from
  the transaction's first message to its last answer) plus the clock's tolerance; a start
  kept offline (before the first connection, by the station's clock corrected by its
  stop's lag) is the design's exception (csms.service.core ``start_sent_late``).

Seeded (derandomized): a failure reproduces with the same examples.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from csms.domain.model import BILLING_HOLD_FLAGS, Session, SessionStatus
from csms.domain.tariff import Tariff, price_minor
from csms.service import defaults
from csms.service.ports import Tx
from support import LONG_AGO, RunningServer
from support.client import RawClient

EXAMPLES = 1000
BASE_WH = 100_000
CONNECTED_AGO = timedelta(hours=2)
TOLERANCE = defaults.TIME_FUTURE
counter = itertools.count(1)

# A session as a station means it: its clock's offset from ours, how long it says it
# ran, its register at the start, the register's steps, each reading's unit, context,
# phase and where in the session it falls; then what goes wrong (an end reading off, a
# stop off the readings). Sessions run in milliseconds of our time: the duration is the
# station's claim, its clock's offset the same for start and stop unless jittered.
READING = st.fixed_dictionaries({
    "step": st.sampled_from([0, 1, 7, 250, 999, 1500, 1500, 1500, -1, -200]),
    "unit": st.sampled_from(["Wh", "Wh", "kWh"]),
    "context": st.sampled_from([None, "Sample.Periodic", "Sample.Periodic", "Sample.Periodic",
                                "Transaction.Begin", "Transaction.End", "Sample.Clock"]),
    "phase": st.sampled_from([None, None, None, "L1", "L2-N"]),
    "at": st.floats(-0.2, 1.2), "jitter": st.sampled_from([0, 0, 0, 0, 0, 0, 5, -5, -900, 900])})
PLAN = st.fixed_dictionaries({
    "connector": st.sampled_from([1, 1, 2]),
    "offset": st.sampled_from([0, 0, 3, -3, 120, -120, -3600, 3600, -7300]),
    "duration": st.sampled_from([0, 1, 30, 300, 300, 590, 590, 620, 1200, 5400]),
    "start_jitter": st.sampled_from([0, 0, 0, 0, 0, 2, -2, -660, -1800, 660]),
    "stop_jitter": st.sampled_from([0, 0, 0, 0, 0, 2, -2, -660, 660]),
    "start_wh": st.sampled_from([BASE_WH, BASE_WH, 0, 5]),
    "readings": st.lists(READING, max_size=4),
    "stop_delta": st.sampled_from([0, 0, 0, 0, 0, 0, 1, -1, -999, 999, 40_000, -BASE_WH]),
    "stop_data": st.booleans(),  # 1.6: the readings in the stop's transactionData
    "seq_steps": st.lists(st.sampled_from([1, 1, 1, 1, 1, 2, 0]), min_size=8, max_size=8),
    "offline": st.sampled_from([False, False, False, True]),
    # 2.0.1: a begin reading with half a Wh; the transaction's id (two plans may share one)
    "half": st.sampled_from([False, False, False, True]),
    "name": st.sampled_from([0, 1]),
})
MUTATION = st.one_of(
    st.tuples(st.just("dup"), st.integers(0, 20)),
    st.tuples(st.just("swap"), st.integers(0, 20)),
    st.tuples(st.just("drop"), st.integers(0, 20)),
)
SCRIPT = st.fixed_dictionaries({
    "plans": st.lists(PLAN, min_size=1, max_size=2),
    "merge": st.lists(st.booleans(), min_size=16, max_size=16),
    "mutations": st.lists(MUTATION, max_size=2),
    "reconnect": st.sampled_from([None, None, None, 0, 1, 2]),
})


def messages(plans: list[dict[str, Any]], merge: list[bool],
             mutations: list[tuple[str, int]]) -> list[tuple[int, str, Any]]:
    """The sessions' messages, (plan, kind, detail), interleaved and mutated."""
    lists: list[list[tuple[int, str, Any]]] = []
    for i, plan in enumerate(plans):
        ms: list[tuple[int, str, Any]] = [(i, "start", None)]
        if not plan["stop_data"]:
            ms += [(i, "reading", r) for r in range(len(plan["readings"]))]
        ms.append((i, "stop", None))
        lists.append(ms)
    out: list[tuple[int, str, Any]] = []
    picks = iter(merge)
    while any(lists):
        first = len(lists) == 1 or not lists[1] or (bool(lists[0]) and next(picks, True))
        which = 0 if first else 1
        out.append(lists[which].pop(0))
    for kind, at in mutations:
        if not out:
            break
        at %= len(out)
        if kind == "dup":
            out.insert(at, out[at])
        elif kind == "drop":
            out.pop(at)
        elif at + 1 < len(out):
            out[at], out[at + 1] = out[at + 1], out[at]
    return out


def register(plan: dict[str, Any]) -> tuple[list[int], int]:
    """The register at each reading, and the stop's value."""
    wh, values = BASE_WH if plan["start_wh"] < 10 else plan["start_wh"], []
    for r in plan["readings"]:
        wh += r["step"]
        values.append(wh)
    return values, wh + plan["stop_delta"]


def times(plan: dict[str, Any]) -> tuple[int, list[int], int]:
    """The station's times of start, readings and stop, as seconds from our now."""
    start = plan["offset"] - plan["duration"] + plan["start_jitter"]
    readings = [plan["offset"] - plan["duration"] + round(r["at"] * plan["duration"])
                + r["jitter"] for r in plan["readings"]]
    return start, readings, plan["offset"] + plan["stop_jitter"]


@dataclass
class Seen:
    """What the station sent for one transaction, and when (our clock)."""

    values: list[float] = field(default_factory=list)
    first: datetime | None = None
    last: datetime | None = None

    def sent(self, at: datetime, answered: datetime, *values: float) -> None:
        self.first = self.first or at
        self.last = answered
        self.values.extend(values)


def stamp(skew: int) -> str:
    return (datetime.now(UTC) + timedelta(seconds=skew)).strftime("%Y-%m-%dT%H:%M:%SZ")


def kwh(wh: int) -> str:
    return f"{Decimal(wh).scaleb(-3):f}"


def sampled16(r: dict[str, Any], wh: int) -> dict[str, Any]:
    return {"value": kwh(wh) if r["unit"] == "kWh" else str(wh),
            "measurand": "Energy.Active.Import.Register", "unit": r["unit"],
            **({"context": r["context"]} if r["context"] else {}),
            **({"phase": r["phase"]} if r["phase"] else {})}


def sampled201(r: dict[str, Any], wh: int) -> dict[str, Any]:
    # kWh as a unit, or Wh with a multiplier of 3 (phase "L2-N" picks it): kWh either way
    scaled = r["unit"] == "kWh" or r["phase"] == "L2-N"
    unit = ({"unit": "kWh"} if r["unit"] == "kWh" else {"unit": "Wh", "multiplier": 3}) \
        if scaled else {"unit": "Wh"}
    return {"value": float(Decimal(wh).scaleb(-3)) if scaled else wh,
            "measurand": "Energy.Active.Import.Register", "unitOfMeasure": unit,
            **({"context": r["context"]} if r["context"] else {}),
            **({"phase": "L1"} if r["phase"] == "L1" else {})}


def meter_value(plan: dict[str, Any], k: int, version: str) -> dict[str, Any]:
    r, wh, at = plan["readings"][k], register(plan)[0][k], times(plan)[1][k]
    sampled = sampled16 if version == "ocpp1.6" else sampled201
    return {"timestamp": stamp(at), "sampledValue": [sampled(r, wh)]}


async def connect(server: RunningServer, station: str, version: str) -> RawClient:
    """``station`` connected and booted ``CONNECTED_AGO`` before now by our clock."""
    assert server.app is not None
    service = server.app.service
    real: Callable[[], datetime] = service.clock
    service.clock = lambda: datetime.now(UTC) - CONNECTED_AGO
    try:
        c = await RawClient.connect(server.url, station, [version])
        await c.result("BootNotification", {
            "chargePointVendor": "V", "chargePointModel": "M"} if version == "ocpp1.6" else {
            "reason": "PowerUp", "chargingStation": {"vendorName": "V", "model": "M"}})
    finally:
        service.clock = real
    return c


@dataclass
class Link:
    """The station's connection, made again (closed, a new one opened now) before its
    message numbered ``reconnect``: a station that reconnects to send a start dated back."""

    server: RunningServer
    station: str
    version: str
    c: RawClient
    reconnect: int | None
    sent: int = 0

    async def call(self, action: str, payload: dict[str, Any]) -> list[Any]:
        if self.sent == self.reconnect:
            await self.c.close()
            self.c = await RawClient.connect(self.server.url, self.station, [self.version])
        self.sent += 1
        return await self.c.call(action, payload)


async def run16(c: Link, script: dict[str, Any]) -> dict[str, Seen]:
    seen: dict[str, Seen] = {}
    plans = script["plans"]
    txids: dict[int, str] = {}
    for i, kind, k in messages(plans, script["merge"], script["mutations"]):
        plan, at = plans[i], datetime.now(UTC)
        values, stop_wh = register(plan)
        t_start, _, t_stop = times(plan)
        if kind == "start":
            answer = await c.call("StartTransaction", {
                "connectorId": plan["connector"], "idTag": "T1", "meterStart": plan["start_wh"],
                "timestamp": stamp(t_start)})
            assert answer[0] == 3, answer
            txids[i] = str(answer[2]["transactionId"])
            seen.setdefault(txids[i], Seen()).sent(at, datetime.now(UTC), plan["start_wh"])
        elif kind == "reading":
            txid = txids.get(i)
            answer = await c.call("MeterValues", {
                "connectorId": plan["connector"],
                **({"transactionId": int(txid)} if txid else {}),
                "meterValue": [meter_value(plan, k, "ocpp1.6")]})
            assert answer[0] == 3, answer
            if txid:
                seen[txid].sent(at, datetime.now(UTC), values[k])
        else:
            txid = txids.get(i, "999999")
            data = [meter_value(plan, n, "ocpp1.6") for n in range(len(values))] \
                if plan["stop_data"] else []
            answer = await c.call("StopTransaction", {
                "transactionId": int(txid), "meterStop": stop_wh, "timestamp": stamp(t_stop),
                **({"transactionData": data} if data else {})})
            assert answer[0] == 3, answer
            seen.setdefault(txid, Seen()).sent(at, datetime.now(UTC), stop_wh,
                                               *(values if data else []))
    return seen


async def run201(c: Link, script: dict[str, Any]) -> dict[str, Seen]:
    seen: dict[str, Seen] = {}
    plans = script["plans"]
    seq: dict[int, int] = {}
    for i, kind, k in messages(plans, script["merge"], script["mutations"]):
        plan, at = plans[i], datetime.now(UTC)
        values, stop_wh = register(plan)
        t_start, _, t_stop = times(plan)
        txid = f"tx{plan['name']}"
        steps = plan["seq_steps"]
        seq[i] = 0 if i not in seq else seq[i] + steps[seq[i] % len(steps)]
        sent: list[float] = []
        if kind == "start":
            event, when, trigger = "Started", t_start, "Authorized"
            begin = plan["start_wh"] + (0.5 if plan["half"] else 0)
            mv = [{"timestamp": stamp(t_start), "sampledValue": [
                {"value": begin, "context": "Transaction.Begin"}]}]
            sent = [begin]
        elif kind == "reading":
            event, when, trigger = "Updated", times(plan)[1][k], "MeterValuePeriodic"
            mv, sent = [meter_value(plan, k, "ocpp2.0.1")], [values[k]]
        else:
            event, when, trigger = "Ended", t_stop, "StopAuthorized"
            mv = [{"timestamp": stamp(t_stop), "sampledValue": [
                {"value": stop_wh, "context": "Transaction.End"}]}]
            if plan["stop_data"]:
                mv += [meter_value(plan, n, "ocpp2.0.1") for n in range(len(values))]
                sent = list(values)
            sent.append(stop_wh)
        answer = await c.call("TransactionEvent", {
            "eventType": event, "timestamp": stamp(when), "seqNo": seq[i],
            "triggerReason": trigger, "transactionInfo": {"transactionId": txid},
            **({"offline": True} if plan["offline"] else {}),
            **({"idToken": {"idToken": "T1", "type": "ISO14443"}} if event == "Started"
               else {}),
            "evse": {"id": plan["connector"], "connectorId": 1}, "meterValue": mv})
        assert answer[0] == 3, answer
        seen.setdefault(txid, Seen()).sent(at, datetime.now(UTC), *sent)
    return seen


Stored = tuple[list[Session], list[int], dict[str, tuple[Decimal, Decimal] | None]]


async def stored(server: RunningServer, station: str) -> Stored:
    """The station's sessions, the ids of those in the settlement queue, and the prices
    (per kWh, per minute) of the tariff valid at each session's start."""
    async def work(tx: Tx) -> Stored:
        sessions = await tx.list_sessions(station)
        rows = await tx.fetchall(
            "SELECT q.session_id FROM settlement_queue q JOIN sessions s"
            " ON s.id = q.session_id WHERE s.station_id = ?", station)
        tariffs: dict[str, tuple[Decimal, Decimal] | None] = {}
        for s in sessions:
            t = await tx.find_tariff(station, s.started_at)
            tariffs[s.transaction_id] = (t.per_kwh, t.per_minute) if t else None
        return sessions, [int(r["session_id"]) for r in rows], tariffs

    result: Stored = await server.repo.read(work)
    return result


def check(sessions: list[Session], queue: list[int], seen: dict[str, Seen],
          connected: datetime, tariff: Tariff,
          tariffs: dict[str, tuple[Decimal, Decimal] | None]) -> None:
    assert len(queue) == len(set(queue)), f"a session queued twice: {queue}"
    queued = [s for s in sessions if s.id in set(queue)]
    txids = [s.transaction_id for s in queued]
    assert len(txids) == len(set(txids)), f"two sessions of one transaction queued: {txids}"
    for s in sessions:
        if s.status != SessionStatus.COMPLETED:
            assert s.id not in queue, f"session {s.id} queued while {s.status}"
            continue
        what = f"session {s.transaction_id} {s.flags} energy {s.energy_wh}"
        assert s.energy_wh is None or s.energy_wh >= 0, what
        holds = BILLING_HOLD_FLAGS.intersection(s.flags)
        if s.id not in queue:
            assert holds, f"{what}: completed, neither queued nor held"
            continue
        assert not holds, f"{what}: queued with hold flags"
        sent = seen.get(s.transaction_id)
        assert sent is not None and sent.values, f"{what}: queued, nothing sent for it"
        energy = s.energy_wh or 0
        # whole Wh, by the rule the receipts' verifiers check (half to even)
        span = Decimal(str(max(sent.values))) - Decimal(str(min(sent.values)))
        assert energy <= int(span.quantize(Decimal(1), rounding=ROUND_HALF_EVEN)), \
            f"{what}: queued beyond the readings sent {min(sent.values)}..{max(sent.values)}"
        assert s.stopped_at is not None and sent.first is not None and sent.last is not None
        duration = math.ceil((s.stopped_at - s.started_at).total_seconds())
        assert duration >= 0, f"{what}: queued with a duration of {duration} s"
        # the worker prices it by the tariff valid at its start, from these two figures
        assert tariffs[s.transaction_id] == (tariff.per_kwh, tariff.per_minute), what
        assert s.price_minor in (None, price_minor(tariff, energy, duration)), what
        lag = sent.last - s.stopped_at
        if s.started_at + lag < connected + timedelta(seconds=60):
            continue  # a start kept offline, sent once the station was back
        longest = (sent.last - sent.first + TOLERANCE).total_seconds() + 5
        assert duration <= longest, \
            f"{what}: queued {duration} s, seen {(sent.last - sent.first).total_seconds()} s"


TARIFF = Tariff("*", Decimal("0.39"), "EUR", 2, per_minute=Decimal("0.05"),
                valid_from=LONG_AGO)


async def setup(server: RunningServer) -> None:
    async def work(tx: Tx) -> None:
        if await tx.find_tariff("X", datetime.now(UTC)) is None:
            await tx.add_tariff(TARIFF)

    await server.repo.unit(work)
    await server.add_tag("T1")


async def example(server: RunningServer, version: str, script: dict[str, Any]) -> None:
    await setup(server)
    station = f"B{next(counter)}"
    await server.add_station(station)
    link = Link(server, station, version, await connect(server, station, version),
                script["reconnect"])
    connected = datetime.now(UTC) - CONNECTED_AGO
    try:
        seen = await (run16(link, script) if version == "ocpp1.6" else run201(link, script))
    finally:
        await link.c.close()
    sessions, queue, tariffs = await stored(server, station)
    check(sessions, queue, seen, connected, TARIFF, tariffs)


@settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(script=SCRIPT)
async def test_1_6_sessions_keep_the_billing_invariants(csms_server: RunningServer,
                                                       script: dict[str, Any]) -> None:
    await example(csms_server, "ocpp1.6", script)


@settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(script=SCRIPT)
async def test_2_0_1_sessions_keep_the_billing_invariants(csms_server: RunningServer,
                                                         script: dict[str, Any]) -> None:
    await example(csms_server, "ocpp2.0.1", script)
