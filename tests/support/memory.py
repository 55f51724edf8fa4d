"""An in-memory fake of the storage port, for unit tests of the use cases.

:class:`MemoryRepository` and :class:`MemoryTx` subclass the port's classes
(``csms.service.ports``). They keep plain Python records and behave like the SQL
adapters where the use cases can tell: every read returns a copy (a use case that
changes a record without writing it back changes nothing), a unit of work that raises is
undone as a whole, a station's samples and events come back in the order stored, and the
dedupe keys (a 1.6 start key, a 2.0.1 (transaction, seqNo)) are unique. Operations the
charging service never uses (settlement's batches, tariffs, drivers' cards) raise
:class:`NotImplementedError` rather than answer something made up.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from csms.domain.energy import ENERGY_REGISTER
from csms.domain.maintenance import (
    FirmwareImage,
    Reservation,
    ReservationState,
    Transfer,
    TransferKind,
)
from csms.domain.model import (
    ErrorDetail,
    IdTag,
    MeterSample,
    Session,
    SessionStatus,
    Station,
    numbered_by_central_system,
)
from csms.domain.tariff import Tariff
from csms.service.billing import BillingState, billing_state
from csms.service.ports import Repository, StorageError, Tx

__all__ = ["MemoryRepository", "MemoryState", "MemoryTx", "fill_gaps", "station_state"]

T = TypeVar("T")


@dataclass
class MemoryState:
    stations: dict[str, Station] = field(default_factory=dict)
    connectors: dict[tuple[str, int, int], dict[str, Any]] = field(default_factory=dict)
    tags: dict[str, IdTag] = field(default_factory=dict)
    # statuses a tag's entry replaced: (tag, status, since, until)
    tag_statuses: list[tuple[str, str, datetime | None, datetime]] = \
        field(default_factory=list)
    station_options: dict[tuple[str, str], str] = field(default_factory=dict)
    central_options: dict[str, str] = field(default_factory=dict)
    final_costs: dict[int, dict[str, Any]] = field(default_factory=dict)
    tariffs: list[Tariff] = field(default_factory=list)
    sessions: dict[int, Session] = field(default_factory=dict)
    samples: list[dict[str, Any]] = field(default_factory=list)
    meter_keys: dict[str, tuple[str | None, str | None]] = field(default_factory=dict)
    evse_meter_keys: dict[tuple[str, int], str] = field(default_factory=dict)
    signed: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    # (session, seqNo) -> the event's digest (None: none kept)
    tx_events: dict[tuple[int, int], int | None] = field(default_factory=dict)
    station_events: list[dict[str, Any]] = field(default_factory=list)
    outbox: list[dict[str, Any]] = field(default_factory=list)
    settlement_queue: dict[int, datetime] = field(default_factory=dict)
    authorizations: list[dict[str, Any]] = field(default_factory=list)
    cards: dict[str, dict[str, Any]] = field(default_factory=dict)
    session_cards: dict[int, dict[str, Any]] = field(default_factory=dict)
    session_hosts: dict[int, dict[str, Any]] = field(default_factory=dict)
    reused_transactions: dict[tuple[str, str], int] = field(default_factory=dict)
    session_stops: dict[int, str] = field(default_factory=dict)
    audit: list[dict[str, Any]] = field(default_factory=list)
    local_list_versions: dict[str, int] = field(default_factory=dict)
    nodes: dict[str, datetime] = field(default_factory=dict)
    leases: dict[str, tuple[str, datetime]] = field(default_factory=dict)
    bus_served: dict[tuple[str, str], datetime] = field(default_factory=dict)
    ledger: dict[str, str] = field(default_factory=dict)  # ledger_value, notice_period...
    known_clients: dict[str, tuple[str, datetime]] = field(default_factory=dict)
    reservations: dict[int, Reservation] = field(default_factory=dict)
    firmware: dict[int, FirmwareImage] = field(default_factory=dict)
    transfers: dict[int, Transfer] = field(default_factory=dict)
    free_space: int | None = None  # what free_space() answers (None: unknown)
    certificates: dict[str, dict[str, Any]] = field(default_factory=dict)
    report_requests: dict[tuple[str, int], dict[str, Any]] = field(default_factory=dict)
    device_variables: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    monitors: dict[tuple[str, int], dict[str, Any]] = field(default_factory=dict)
    next_id: int = 1


def station_state(*tags: str) -> MemoryState:
    """A state with one station, CP1, known since 2019 (its sessions' times are never
    before it), and the cards ``tags``."""
    state = MemoryState()
    state.stations["CP1"] = Station(id="CP1", created_at=datetime(2019, 1, 1, tzinfo=UTC))
    for tag in tags:
        state.tags[tag] = IdTag(tag)
    return state


class MemoryTx(Tx):
    """The port's operations on a :class:`MemoryState`."""

    def __init__(self, state: MemoryState) -> None:
        self.s = state

    def _new_id(self) -> int:
        n = self.s.next_id
        self.s.next_id += 1
        return n

    async def free_space(self) -> int | None:
        return self.s.free_space

    # -- stations ------------------------------------------------------------
    async def get_station(self, station_id: str) -> Station | None:
        return copy.deepcopy(self.s.stations.get(station_id))

    async def insert_station(self, station: Station) -> None:
        if station.id in self.s.stations:
            raise StorageError(f"unique constraint: station {station.id}")
        self.s.stations[station.id] = copy.deepcopy(station)

    async def update_station(self, station: Station) -> None:
        if station.id in self.s.stations:
            self.s.stations[station.id] = copy.deepcopy(station)

    async def list_stations(self) -> list[Station]:
        return [copy.deepcopy(s) for _, s in sorted(self.s.stations.items())]

    async def touch_station(self, station_id: str, at: datetime) -> None:
        if station_id in self.s.stations:
            self.s.stations[station_id].last_seen_at = at

    async def set_station_connection(self, station_id: str, node: str,
                                     at: datetime) -> tuple[str, datetime | None] | None:
        st = self.s.stations.get(station_id)
        if st is None:
            return None
        before = None if st.connected_node is None else (st.connected_node, st.connected_at)
        st.connected_node, st.connected_at, st.last_seen_at = node, at, at
        return before

    async def touch_stations(self, seen: dict[str, datetime]) -> list[str]:
        for station_id, at in seen.items():
            await self.touch_station(station_id, at)
        return []

    async def release_station_connection(self, station_id: str, node: str,
                                         since: datetime | None) -> bool | None:
        st = self.s.stations.get(station_id)
        if st is not None and st.connected_node == node and (
                since is None or st.connected_at == since):
            st.connected_node = None
            return True
        return False

    async def clear_node_connections(self, node: str) -> int:
        cleared = [s for s in self.s.stations.values() if s.connected_node == node]
        for st in cleared:
            st.connected_node = None
        return len(cleared)

    async def known_clients(self, since: datetime,
                            limit: int) -> list[tuple[str, str, datetime]]:
        found = [(client, sid, at) for client, (sid, at) in self.s.known_clients.items()
                 if at >= since]
        found.sort(key=lambda row: (-row[2].timestamp(), row[0]))
        return found[:limit]

    async def save_known_clients(self, seen: list[tuple[str, str, datetime]],
                                 forgotten: list[str]) -> None:
        for client in forgotten:
            self.s.known_clients.pop(client, None)
        for client, sid, at in seen:
            if sid in self.s.stations:
                self.s.known_clients[client] = (sid, at)

    async def prune_known_clients(self, before: datetime, keep: int) -> int:
        kept = {client for client, _, _ in await self.known_clients(before, keep)}
        gone = [client for client in self.s.known_clients if client not in kept]
        for client in gone:
            del self.s.known_clients[client]
        return len(gone)

    async def add_audit(
        self, actor: str, action: str, target: str | None, request: dict[str, Any],
        result: dict[str, Any], ok: bool, at: datetime, claimed_actor: str | None = None,
    ) -> None:
        self.s.audit.append({"id": len(self.s.audit) + 1, "at": at.isoformat(), "actor": actor,
                             "action": action, "target": target, "request": request,
                             "result": result, "ok": ok, "claimed_actor": claimed_actor})

    async def list_audit(self, limit: int = 100) -> list[dict[str, Any]]:
        return copy.deepcopy(self.s.audit[::-1][:limit])

    async def next_local_list_version(self, station_id: str) -> int:
        self.s.local_list_versions[station_id] = self.s.local_list_versions.get(station_id, 0) + 1
        return self.s.local_list_versions[station_id]

    async def count_sessions(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for s in self.s.sessions.values():
            counts[s.status.value] = counts.get(s.status.value, 0) + 1
        return counts

    async def settlement_backlog(self) -> int:
        return len(self.s.settlement_queue)

    async def set_connector_status(
        self, station_id: str, evse_id: int, connector_id: int, status: str,
        error_code: str | None, at: datetime, *, error: ErrorDetail | None = None,
        limit: int | None = None,
    ) -> bool:
        key = station_id, evse_id, connector_id
        if limit is not None and key not in self.s.connectors and sum(
                1 for k in self.s.connectors if k[0] == station_id) >= limit:
            return False
        detail = error or ErrorDetail()
        self.s.connectors[key] = {
            "station_id": station_id, "evse_id": evse_id, "connector_id": connector_id,
            "status": status, "error_code": error_code, "error_info": detail.info,
            "vendor_id": detail.vendor_id, "vendor_error_code": detail.vendor_error_code,
            "updated_at": at.isoformat()}
        return True

    async def list_connectors(self, station_id: str | None = None) -> list[dict[str, Any]]:
        return [dict(c) for key, c in sorted(self.s.connectors.items())
                if station_id is None or key[0] == station_id]

    # -- id tags -------------------------------------------------------------
    async def get_tag(self, tag: str) -> IdTag | None:
        return copy.deepcopy(self.s.tags.get(tag))

    async def put_tag(self, tag: IdTag) -> None:
        kept, old = copy.deepcopy(tag), self.s.tags.get(tag.tag)
        kept.status_since = None if old is None else old.status_since
        if old is not None and old.status != tag.status:
            now = datetime.now(UTC)
            self.s.tag_statuses.append((tag.tag, old.status, old.status_since, now))
            kept.status_since = now
        self.s.tags[tag.tag] = kept

    async def tag_status_at(self, tag: str, at: datetime) -> str | None:
        held = [(until, status) for t, status, since, until in self.s.tag_statuses
                if t == tag and at < until and (since is None or since <= at)]
        return min(held)[1] if held else None

    async def list_tags(self, used_at: str | None = None) -> list[IdTag]:
        used = None if used_at is None else {
            s.id_tag for s in self.s.sessions.values() if s.station_id == used_at}
        return [copy.deepcopy(t) for k, t in sorted(self.s.tags.items())
                if used is None or k in used]

    async def get_station_option(self, station_id: str, name: str) -> str | None:
        return self.s.station_options.get((station_id, name))

    async def stations_with_option(self, name: str, value: str) -> set[str]:
        return {sid for (sid, n), v in self.s.station_options.items() if n == name and v == value}

    async def set_station_option(self, station_id: str, name: str, value: str | None) -> None:
        if value is None:
            self.s.station_options.pop((station_id, name), None)
        else:
            self.s.station_options[station_id, name] = value

    async def get_central_option(self, name: str) -> str | None:
        return self.s.central_options.get(name)

    async def set_central_option(self, name: str, value: str | None) -> None:
        if value is None:
            self.s.central_options.pop(name, None)
        else:
            self.s.central_options[name] = value

    async def claim_central_option(self, name: str, value: str) -> str:
        return self.s.central_options.setdefault(name, value)

    async def claim_final_cost(self, session_id: int, station_id: str, cost: str,
                               currency: str, at: datetime) -> bool:
        if session_id in self.s.final_costs:
            return False
        self.s.final_costs[session_id] = {
            "session_id": session_id, "station_id": station_id, "cost": cost,
            "currency": currency, "claimed_at": at, "answer": None}
        return True

    async def set_final_cost_answer(self, session_id: int, answer: str) -> None:
        if session_id in self.s.final_costs:
            self.s.final_costs[session_id]["answer"] = answer

    async def get_final_cost(self, session_id: int) -> dict[str, Any] | None:
        return copy.deepcopy(self.s.final_costs.get(session_id))

    # -- sessions ------------------------------------------------------------
    async def get_session(self, session_id: int) -> Session | None:
        return copy.deepcopy(self.s.sessions.get(session_id))

    async def find_session(self, station_id: str, transaction_id: str) -> Session | None:
        for s in self.s.sessions.values():
            if s.station_id == station_id and s.transaction_id == transaction_id:
                return copy.deepcopy(s)
        return None

    async def latest_reuse(self, station_id: str, transaction_id: str) -> int | None:
        return self.s.reused_transactions.get((station_id, transaction_id))

    async def set_latest_reuse(self, station_id: str, transaction_id: str,
                               session_id: int) -> None:
        self.s.reused_transactions[(station_id, transaction_id)] = session_id

    async def stop_key(self, session_id: int) -> str | None:
        return self.s.session_stops.get(session_id)

    async def set_stop_key(self, session_id: int, key: str) -> None:
        self.s.session_stops[session_id] = key

    async def find_session_by_start_key(self, station_id: str, start_key: str) -> Session | None:
        for s in self.s.sessions.values():
            if s.station_id == station_id and s.start_key == start_key:
                return copy.deepcopy(s)
        return None

    async def stations_with_transaction(self, transaction_id: str) -> list[str]:
        return [s.station_id for s in self.s.sessions.values()
                if s.transaction_id == transaction_id]

    async def sessions_on_evse(self, station_id: str, evse_id: int, before: datetime,
                               after: datetime, other_than: int = 0) -> list[Session]:
        return [copy.deepcopy(s) for sid, s in sorted(self.s.sessions.items())
                if s.station_id == station_id and s.evse_id == evse_id and sid != other_than
                and s.started_at < before and (s.stopped_at is None or s.stopped_at > after)]

    async def insert_session(self, session: Session, card: str | None = None) -> int:
        if session.start_key is not None and await self.find_session_by_start_key(
                session.station_id, session.start_key) is not None:
            raise StorageError("unique constraint: (station_id, start_key)")
        sid = self._new_id()
        session.id = sid
        if numbered_by_central_system(session.ocpp_version, session.transaction_id):
            session.transaction_id = str(sid)  # as the SQL adapters do (1.6 §5.6)
        self.s.sessions[sid] = copy.deepcopy(session)
        if card is not None:
            await self.bind_card(sid, card)
        return sid

    async def update_session(self, session: Session) -> None:
        assert session.id is not None
        stored = self.s.sessions[session.id]
        kept = (stored.price_minor, stored.currency, stored.settlement_state)
        updated = copy.deepcopy(session)
        # the billing fields belong to settlement: update_session does not write them
        updated.price_minor, updated.currency, updated.settlement_state = kept
        self.s.sessions[session.id] = updated

    async def list_sessions(
        self, station_id: str | None = None, active: bool | None = None, limit: int = 1000
    ) -> list[Session]:
        out = [s for _, s in sorted(self.s.sessions.items(), reverse=True)
               if (station_id is None or s.station_id == station_id)
               and (active is None or (s.status is SessionStatus.ACTIVE) == active)]
        return [copy.deepcopy(s) for s in out[:limit]]

    async def sessions_in_progress_beyond(self, station_id: str, keep: int,
                                          limit: int = 1000) -> list[int]:
        ids = sorted((i for i, s in self.s.sessions.items()
                      if s.station_id == station_id and s.status is SessionStatus.ACTIVE),
                     reverse=True)
        return ids[keep:keep + limit]

    async def add_samples(
        self, station_id: str, samples: list[MeterSample], *, session_id: int | None,
        evse_id: int | None, connector_id: int | None, transaction_id: str | None,
    ) -> None:
        reading = len(self.s.samples)  # one add_samples, one reading
        for m in samples:
            self.s.samples.append({"session_id": session_id, "station_id": station_id,
                                   "reading": reading,
                                   "evse_id": evse_id, "connector_id": connector_id,
                                   "transaction_id": transaction_id,
                                   "sample": copy.deepcopy(m)})

    async def limited_sessions(self, node: str) -> list[tuple[Session, int | None]]:
        expiries = {a["session_id"]: a["expiry"] for a in self.s.authorizations}
        out = []
        for sid, s in sorted(self.s.sessions.items()):
            station = self.s.stations.get(s.station_id)
            if s.status is SessionStatus.ACTIVE and s.limit_minor is not None \
                    and station is not None and station.connected_node == node:
                out.append((copy.deepcopy(s), expiries.get(sid)))
        return out

    async def latest_reading_at(self, session_id: int) -> datetime | None:
        mine = [r for r in self.s.samples if r["session_id"] == session_id]
        if not mine:
            return None
        last = mine[-1]["reading"]
        return max(r["sample"].timestamp for r in mine if r["reading"] == last)

    async def session_samples(self, session_id: int) -> list[MeterSample]:
        mine = [r["sample"] for r in self.s.samples if r["session_id"] == session_id]
        return [copy.deepcopy(m) for m in sorted(mine, key=lambda m: m.timestamp)]

    async def energy_samples(self, session_id: int) -> list[MeterSample]:
        return [m for m in await self.session_samples(session_id)
                if m.measurand == ENERGY_REGISTER or m.signed is not None]

    # -- signed meter data ---------------------------------------------------
    async def get_meter_key(self, station_id: str) -> tuple[str | None, str | None]:
        return self.s.meter_keys.get(station_id, (None, None))

    async def set_meter_key(self, station_id: str, key: str | None, source: str | None) -> None:
        self.s.meter_keys[station_id] = (key, source)

    async def get_evse_meter_keys(self, station_id: str) -> dict[int, str]:
        return {evse: key for (sid, evse), key in sorted(self.s.evse_meter_keys.items())
                if sid == station_id}

    async def set_evse_meter_key(self, station_id: str, evse_id: int, key: str | None) -> None:
        if key is None:
            self.s.evse_meter_keys.pop((station_id, evse_id), None)
        else:
            self.s.evse_meter_keys[(station_id, evse_id)] = key

    async def add_signed_readings(
        self, session_id: int, station_id: str, rows: list[dict[str, Any]]
    ) -> None:
        self.s.signed[session_id] = copy.deepcopy(rows)

    async def signed_readings(self, session_id: int) -> list[dict[str, Any]]:
        return copy.deepcopy(self.s.signed.get(session_id, []))

    async def signed_readings_around(
        self, station_id: str, since: datetime, until: datetime, other_than: int,
    ) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for sid, rows in sorted(self.s.signed.items()):
            s = self.s.sessions.get(sid)
            if sid == other_than or s is None or s.station_id != station_id \
                    or s.started_at > until \
                    or (s.stopped_at is not None and s.stopped_at < since):
                continue
            out.extend({**copy.deepcopy(r), "session_id": sid, "started_at": s.started_at}
                       for r in rows if r["status"] == "verified")
        return out

    async def signed_readings_elsewhere(
        self, station_id: str, public_key: str, times: list[str],
    ) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for at in dict.fromkeys(times):
            for sid, rows in sorted(self.s.signed.items()):
                s = self.s.sessions.get(sid)
                if s is None or s.station_id == station_id:
                    continue
                out.extend({**copy.deepcopy(r), "session_id": sid, "station_id": s.station_id,
                            "started_at": s.started_at} for r in rows
                           if r["status"] == "verified" and r["reading_time"] == at
                           and r["public_key"] == public_key)
        return out

    # -- events --------------------------------------------------------------
    async def record_tx_event(self, session_id: int, seq_no: int,
                              digest: int | None = None) -> bool:
        key = (session_id, seq_no)
        if key in self.s.tx_events:
            return False
        self.s.tx_events[key] = digest
        return True

    async def tx_event_digest(self, session_id: int, seq_no: int) -> int | None:
        return self.s.tx_events.get((session_id, seq_no))

    async def set_tx_event_digest(self, session_id: int, seq_no: int,
                                  digest: int | None) -> None:
        if (session_id, seq_no) in self.s.tx_events:
            self.s.tx_events[session_id, seq_no] = digest

    async def add_station_event(
        self, station_id: str, kind: str, payload: dict[str, Any], at: datetime
    ) -> None:
        self.s.station_events.append({"id": len(self.s.station_events) + 1,
                                      "station_id": station_id, "kind": kind,
                                      "ts": at.isoformat(), "payload": copy.deepcopy(payload)})

    async def list_station_events(
        self, station_id: str, kind: str | None = None, limit: int = 100
    ) -> list[dict[str, Any]]:
        rows = [e for e in self.s.station_events[::-1]
                if e["station_id"] == station_id and (kind is None or e["kind"] == kind)]
        return copy.deepcopy(rows[:limit])

    async def station_events_by_time(
        self, station_id: str, kind: str, at: datetime, later: bool, limit: int
    ) -> list[dict[str, Any]]:
        rows = [e for e in self.s.station_events
                if e["station_id"] == station_id and e["kind"] == kind
                and (datetime.fromisoformat(e["ts"]) > at) == later]
        return copy.deepcopy((rows if later else rows[::-1])[:limit])

    async def add_outbox(self, topic: str, payload: dict[str, Any], at: datetime) -> str:
        event_id = str(uuid.uuid4())
        self.s.outbox.append({"id": len(self.s.outbox) + 1, "event_id": event_id,
                              "topic": topic, "payload": {"event_id": event_id, **payload},
                              "created_at": at, "published_at": None})
        return event_id

    async def enqueue_settlement(self, session_id: int, at: datetime) -> None:
        self.s.settlement_queue.setdefault(session_id, at)

    async def pending_outbox(self, limit: int) -> list[dict[str, Any]]:
        return [{"id": e["id"], "topic": e["topic"], "payload": json.dumps(e["payload"])}
                for e in self.s.outbox if e["published_at"] is None][:limit]

    async def mark_outbox_published(self, ids: list[int], at: datetime) -> None:
        for e in self.s.outbox:
            if e["id"] in ids:
                e["published_at"] = at

    async def purge_outbox(self, published_before: datetime) -> int:
        kept = [e for e in self.s.outbox
                if e["published_at"] is None or e["published_at"] >= published_before]
        gone = len(self.s.outbox) - len(kept)
        self.s.outbox = kept
        return gone

    async def count_outbox_pending(self) -> int:
        return sum(e["published_at"] is None for e in self.s.outbox)

    async def gas_spent(self) -> int:
        return 0  # no batches are ever stored here

    # -- cluster ---------------------------------------------------------------
    async def beat_node(self, node_id: str, at: datetime) -> None:
        self.s.nodes[node_id] = at

    async def node_beats(self) -> dict[str, datetime]:
        return dict(self.s.nodes)

    # the database's clock of a lease: this process's, the one the data lives in
    async def take_lease(self, name: str, holder: str, ttl: timedelta) -> bool:
        now = datetime.now(UTC)
        current = self.s.leases.get(name)
        if current is None or current[0] == holder or current[1] < now:
            self.s.leases[name] = (holder, now + ttl)
            return True
        return False

    async def hold_lease(self, name: str, holder: str, ttl: timedelta) -> bool:
        now = datetime.now(UTC)
        current = self.s.leases.get(name)
        if current is None or current[0] != holder or current[1] < now:
            return False
        self.s.leases[name] = (holder, now + ttl)
        return True

    async def drop_lease(self, name: str, holder: str) -> None:
        if self.s.leases.get(name, ("", None))[0] == holder:
            del self.s.leases[name]

    async def lease_holder(self, name: str) -> str | None:
        current = self.s.leases.get(name)
        return None if current is None or current[1] < datetime.now(UTC) else current[0]

    async def claim_bus_command(self, node_id: str, request_id: str, until: datetime,
                                now: datetime) -> bool:
        kept = self.s.bus_served.get((node_id, request_id))
        if kept is not None and kept >= now:
            return False
        self.s.bus_served[(node_id, request_id)] = until
        return True

    async def drop_expired_bus_commands(self, now: datetime) -> int:
        before = len(self.s.bus_served)
        self.s.bus_served = {k: t for k, t in self.s.bus_served.items() if t >= now}
        return before - len(self.s.bus_served)

    # -- drivers' app sessions (the part the charging service uses) ---------------
    async def add_authorization(self, driver: str, station_id: str, id_tag: str,
                                body: dict[str, Any], nonce: int, expiry: int,
                                at: datetime, remote_start_id: int | None = None, *,
                                limit_minor: int | None = None,
                                connector_id: int | None = None) -> int:
        if any(a["driver"] == driver.lower() and a["nonce"] == str(nonce)
               for a in self.s.authorizations):
            raise StorageError("unique constraint: (driver, nonce)")
        aid = len(self.s.authorizations) + 1
        self.s.authorizations.append({
            "id": aid, "driver": driver.lower(), "station_id": station_id, "id_tag": id_tag,
            "body": json.dumps(body, sort_keys=True), "nonce": str(nonce), "expiry": expiry,
            "session_id": None, "created_at": at.isoformat(), "start_state": "sent",
            "remote_start_id": remote_start_id, "bindable_until": None,
            "limit_minor": limit_minor, "connector_id": connector_id})
        return aid

    async def authorization_with_nonce(self, driver: str,
                                       nonce: int) -> dict[str, Any] | None:
        for a in self.s.authorizations:
            if a["driver"] == driver.lower() and a["nonce"] == str(nonce):
                return dict(a)
        return None

    async def remote_start_accepted(self, authorization_id: int,
                                    bindable_until: int | None) -> None:
        a = self.s.authorizations[authorization_id - 1]
        if a["start_state"] == "sent":
            a["start_state"], a["bindable_until"] = "accepted", bindable_until

    async def withdraw_authorization(self, authorization_id: int) -> dict[str, Any] | None:
        a = self.s.authorizations[authorization_id - 1]
        if a["session_id"] is not None or a["start_state"] == "withdrawn":
            return None
        a["start_state"] = "withdrawn"
        return dict(a)

    async def pending_authorization(self, station_id: str, id_tag: str, now_unix: int,
                                    remote_start_id: int | None = None, *,
                                    any_remote_start: bool = False,
                                    connector_id: int | None = None
                                    ) -> dict[str, Any] | None:
        for a in reversed(self.s.authorizations):
            if a["station_id"] != station_id or a["id_tag"] != id_tag \
                    or a["session_id"] is not None or a["expiry"] < now_unix \
                    or a["start_state"] == "withdrawn":
                continue
            if a["remote_start_id"] is None:
                if a["start_state"] == "accepted" and a["bindable_until"] is not None \
                        and a["bindable_until"] >= now_unix \
                        and (connector_id is None or a["connector_id"] in (None, connector_id)):
                    return dict(a)
            elif any_remote_start or a["remote_start_id"] == remote_start_id:
                return dict(a)
        return None

    async def bind_authorization(self, station_id: str, id_tag: str, session_id: int,
                                 now_unix: int, remote_start_id: int | None = None, *,
                                 connector_id: int | None = None
                                 ) -> dict[str, Any] | None:
        row = await self.pending_authorization(station_id, id_tag, now_unix, remote_start_id,
                                               connector_id=connector_id)
        if row is None:
            return None
        self.s.authorizations[row["id"] - 1]["session_id"] = session_id
        return row

    async def authorization_of(self, session_id: int) -> dict[str, Any] | None:
        for a in self.s.authorizations:
            if a["session_id"] == session_id:
                return dict(a)
        return None

    # -- reservations, firmware images, transfers ---------------------------------------
    async def insert_reservation(self, r: Reservation) -> int:
        r.id = self._new_id()
        self.s.reservations[r.id] = copy.deepcopy(r)
        return r.id

    async def get_reservation(self, reservation_id: int) -> Reservation | None:
        return copy.deepcopy(self.s.reservations.get(reservation_id))

    async def update_reservation(self, r: Reservation) -> None:
        assert r.id is not None
        stored = self.s.reservations[r.id]
        stored.status, stored.answer, stored.session_id, stored.updated_at = (
            r.status, r.answer, r.session_id, r.updated_at)

    async def list_reservations(self, station_id: str | None = None,
                                limit: int = 1000) -> list[Reservation]:
        out = [r for _, r in sorted(self.s.reservations.items(), reverse=True)
               if station_id is None or r.station_id == station_id]
        return copy.deepcopy(out[:limit])

    async def accepted_reservations(self, station_id: str) -> list[Reservation]:
        return copy.deepcopy([r for _, r in sorted(self.s.reservations.items())
                              if r.station_id == station_id
                              and r.status is ReservationState.ACCEPTED])

    async def add_firmware(self, image: FirmwareImage) -> int:
        if any(f.version == image.version for f in self.s.firmware.values()):
            raise StorageError(f"unique constraint: firmware {image.version}")
        image.id = self._new_id()
        self.s.firmware[image.id] = copy.deepcopy(image)
        return image.id

    async def get_firmware(self, version: str) -> FirmwareImage | None:
        for f in self.s.firmware.values():
            if f.version == version:
                return copy.deepcopy(f)
        return None

    async def firmware_by_id(self, firmware_id: int) -> FirmwareImage | None:
        return copy.deepcopy(self.s.firmware.get(firmware_id))

    async def list_firmware(self) -> list[FirmwareImage]:
        return copy.deepcopy([f for _, f in sorted(self.s.firmware.items())])

    async def insert_transfer(self, t: Transfer) -> int:
        if any(x.token_hash == t.token_hash for x in self.s.transfers.values()):
            raise StorageError("unique constraint: transfers.token_hash")
        t.id = self._new_id()
        self.s.transfers[t.id] = copy.deepcopy(t)
        return t.id

    async def get_transfer(self, transfer_id: int) -> Transfer | None:
        return copy.deepcopy(self.s.transfers.get(transfer_id))

    async def transfer_by_token(self, token_hash: str) -> Transfer | None:
        for t in self.s.transfers.values():
            if t.token_hash == token_hash:
                return copy.deepcopy(t)
        return None

    async def update_transfer_status(self, transfer_id: int, status: str,
                                     at: datetime) -> None:
        t = self.s.transfers.get(transfer_id)
        if t is not None:
            t.status, t.updated_at = status, at

    async def set_firmware_md5(self, firmware_id: int, md5: str) -> None:
        f = self.s.firmware.get(firmware_id)
        if f is not None:
            f.md5 = md5

    async def set_transfer_locations(self, transfer_id: int, locations: str,
                                     at: datetime) -> None:
        t = self.s.transfers.get(transfer_id)
        if t is not None:
            t.locations, t.updated_at = locations, at

    async def move_transfer(self, transfer_id: int, before: str, after: str,
                            at: datetime) -> bool:
        t = self.s.transfers.get(transfer_id)
        if t is None or t.status != before:
            return False
        t.status, t.updated_at = after, at
        return True

    async def reissue_transfer(self, transfer_id: int, token_hash: str,
                               expires_at: datetime, at: datetime) -> None:
        t = self.s.transfers.get(transfer_id)
        if t is not None:
            t.token_hash, t.expires_at, t.updated_at = token_hash, expires_at, at

    async def queued_transfers(self, station_id: str | None = None,
                               limit: int = 100) -> list[Transfer]:
        out = [t for _, t in sorted(self.s.transfers.items()) if t.status == "queued"
               and (station_id is None or t.station_id == station_id)]
        return copy.deepcopy(out[:limit])

    async def finish_upload(self, transfer_id: int, file_name: str, size: int,
                            at: datetime) -> bool:
        t = self.s.transfers.get(transfer_id)
        if t is None or t.uploaded_at is not None:
            return False
        t.file_name, t.size, t.uploaded_at, t.updated_at = file_name, size, at, at
        return True

    async def list_transfers(self, kind: TransferKind, station_id: str | None = None,
                             limit: int = 1000) -> list[Transfer]:
        out = [t for _, t in sorted(self.s.transfers.items(), reverse=True)
               if t.kind is kind and (station_id is None or t.station_id == station_id)]
        return copy.deepcopy(out[:limit])

    async def latest_transfer(self, station_id: str, kind: TransferKind,
                              log_type: str | None = None) -> Transfer | None:
        for _, t in sorted(self.s.transfers.items(), reverse=True):
            if t.station_id == station_id and t.kind is kind and t.sent and (
                    log_type is None or t.log_type == log_type):
                return copy.deepcopy(t)
        return None

    # -- settlement's tables: not faked (the settlement tests run on real databases) ------
    async def add_tariff(self, tariff: Tariff) -> int:
        version = 1 + sum(t.station_id == tariff.station_id for t in self.s.tariffs)
        stored = dataclasses.replace(tariff, id=len(self.s.tariffs) + 1, version=version)
        self.s.tariffs.append(stored)
        return version  # as the SQL adapters: the station's version number

    async def session_a_tariff_would_reprice(self, station_id: str, valid_from: datetime,
                                             clock_tolerance: timedelta
                                             ) -> dict[str, Any] | None:
        for session in sorted(self.s.sessions.values(), key=lambda s: s.started_at):
            if session.started_at < valid_from or (
                    station_id != "*" and session.station_id != station_id):
                continue
            flags = set(session.flags)
            if "rejected" in flags or ("time_implausible" in flags
                                       and "released" not in flags) or (
                    session.created_at is not None
                    and session.started_at > session.created_at + clock_tolerance):
                continue  # no time a tariff is judged by
            now = await self.find_tariff(session.station_id, session.started_at)
            if now is not None and (station_id != "*" or now.station_id == "*"):
                return {"id": session.id, "station_id": session.station_id,
                        "started_at": session.started_at.isoformat()}  # text, as SQL
        return None

    async def list_tariffs(self) -> list[Tariff]:
        return list(self.s.tariffs)

    async def find_tariff(self, station_id: str, at: datetime) -> Tariff | None:
        """The station's own newest version valid at ``at``, else the newest '*' one."""
        for wanted in (station_id, "*"):
            valid = [t for t in self.s.tariffs if t.station_id == wanted
                     and (t.valid_from is None or t.valid_from <= at)]
            if valid:
                return max(valid, key=lambda t: t.version)
        return None

    async def link_card(self, tag: str, driver: str, salt: str, commitment: str,
                        at: datetime) -> None:
        self.s.cards[tag] = {"tag": tag, "driver": driver.lower(), "salt": salt,
                             "commitment": commitment, "linked_at": at.isoformat()}

    async def unlink_card(self, tag: str) -> bool:
        return self.s.cards.pop(tag, None) is not None

    async def card_of(self, tag: str) -> dict[str, Any] | None:
        card = self.s.cards.get(tag)
        return None if card is None else dict(card)

    async def bind_card(self, session_id: int, tag: str) -> None:
        card = self.s.cards.get(tag) or {"driver": "", "salt": "", "commitment": ""}
        if session_id not in self.s.session_cards:
            self.s.session_cards[session_id] = {
                "tag": tag, **{k: card[k] for k in ("driver", "salt", "commitment")}}

    async def rebind_card(self, session_id: int, tag: str) -> None:
        self.s.session_cards.pop(session_id, None)
        await self.bind_card(session_id, tag)

    async def bind_no_payer(self, session_id: int, tag: str) -> None:
        self.s.session_cards[session_id] = {"tag": tag, "driver": "", "salt": "",
                                            "commitment": ""}

    async def session_card(self, session_id: int) -> dict[str, Any] | None:
        card = self.s.session_cards.get(session_id)
        return None if card is None else dict(card)

    async def session_drivers(self, session_id: int) -> list[str]:
        drivers = {str(a["driver"]) for a in self.s.authorizations
                   if a["session_id"] == session_id}
        bound = self.s.session_cards.get(session_id)
        if bound is not None and bound["driver"]:
            drivers.add(str(bound["driver"]))
        session = self.s.sessions.get(session_id)
        card = self.s.cards.get(session.id_tag) if session is not None else None
        if card is not None and (bound is None or bound["driver"] == card["driver"]):
            drivers.add(str(card["driver"]))
        return sorted(drivers)

    async def accepted_for_driver(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError("accepted_for_driver: not faked in memory")

    async def bind_host(self, session_id: int, host: str, chain_station: int) -> None:
        self.s.session_hosts.setdefault(session_id, {"host": host.lower(),
                                                     "chain_station": chain_station})

    async def session_host(self, session_id: int) -> dict[str, Any] | None:
        bound = self.s.session_hosts.get(session_id)
        return None if bound is None else dict(bound)

    async def driver_cards(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError("driver_cards: not faked in memory")

    async def driver_exposure(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError("driver_exposure: not faked in memory")

    async def ledger_value(self, name: str) -> str | None:
        return self.s.ledger.get(name)

    async def set_ledger_value(self, name: str, value: str, *,
                               only_new: bool = False) -> None:
        if not (only_new and name in self.s.ledger):
            self.s.ledger[name] = value

    async def bind_ledger(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError("bind_ledger: not faked in memory")

    async def take_next_seq(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError("take_next_seq: not faked in memory")

    async def queued_for_settlement(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError("queued_for_settlement: not faked in memory")

    async def queued_authorization_expiry(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError("queued_authorization_expiry: not faked in memory")

    async def queued_earliest_start(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError("queued_earliest_start: not faked in memory")

    async def dequeue_settlement(self, session_id: int) -> None:
        self.s.settlement_queue.pop(session_id, None)

    async def session_settlement(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError("session_settlement: not faked in memory")

    async def set_session_settlement(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError("set_session_settlement: not faked in memory")

    async def insert_batch(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError("insert_batch: not faked in memory")

    async def insert_batch_items(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError("insert_batch_items: not faked in memory")

    async def update_batch(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError("update_batch: not faked in memory")

    async def get_batch(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError("get_batch: not faked in memory")

    async def open_batches(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError("open_batches: not faked in memory")

    async def batch_items(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError("batch_items: not faked in memory")

    async def batch_of_session(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError("batch_of_session: not faked in memory")

    async def highest_batch_nonce(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError("highest_batch_nonce: not faked in memory")

    async def batch_totals(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError("batch_totals: not faked in memory")

    async def ledger_batches(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError("ledger_batches: not faked in memory")

    async def set_batch_sessions(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError("set_batch_sessions: not faked in memory")

    # -- the operator console's pages ----------------------------------------------
    async def list_stations_page(self, after: str | None, limit: int) -> list[Station]:
        return [copy.deepcopy(st) for key, st in sorted(self.s.stations.items())
                if after is None or key > after][:limit]

    async def list_connectors_of(self, station_ids: list[str]) -> list[dict[str, Any]]:
        wanted = set(station_ids)
        return [dict(c) for key, c in sorted(self.s.connectors.items()) if key[0] in wanted]

    async def count_stations_by_node(self) -> dict[str | None, int]:
        counts: dict[str | None, int] = {}
        for st in self.s.stations.values():
            counts[st.connected_node] = counts.get(st.connected_node, 0) + 1
        return counts

    async def list_sessions_page(
        self, *, station_id: str | None, id_tag: str | None, status: str | None,
        before: int | None, limit: int,
    ) -> list[Session]:
        out = [s for key, s in sorted(self.s.sessions.items(), reverse=True)
               if (station_id is None or s.station_id == station_id)
               and (id_tag is None or s.id_tag == id_tag)
               and (status is None or s.status.value == status)
               and (before is None or key < before)]
        return [copy.deepcopy(s) for s in out[:limit]]

    async def unsettled_sessions(self, before: int | None, limit: int) -> list[Session]:
        # batches are not faked here: the queue and the worker's column are
        out = [s for key, s in sorted(self.s.sessions.items(), reverse=True)
               if s.status is SessionStatus.COMPLETED and s.settlement_state is None
               and key not in self.s.settlement_queue and (before is None or key < before)]
        return [copy.deepcopy(s) for s in out[:limit]]

    async def held_sessions(self, before: int | None, limit: int, *,
                            without: str | None = None) -> list[Session]:
        out = [s for s in await self.unsettled_sessions(before, 2**62)
               if billing_state(s) == BillingState.HELD
               and (without is None or without not in s.flags)]
        return out[:limit]

    async def latest_power_samples(self, session_ids: list[int],
                                   measurand: str) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for sid in session_ids:
            rows = [r for r in self.s.samples
                    if r["session_id"] == sid and r["sample"].measurand == measurand]
            if not rows:
                continue
            latest = max(r["reading"] for r in rows)  # the last reading to carry it
            mine = [r["sample"] for r in rows if r["reading"] == latest]
            last = max(m.timestamp for m in mine)
            out += [{"session_id": sid, "ts": m.timestamp.isoformat(), "value": m.value,
                     "unit": m.unit, "multiplier": m.multiplier, "phase": m.phase}
                    for m in mine if m.timestamp == last]
        return out

    async def energy_stopped_since(self, at: datetime) -> int:
        return sum(s.energy_wh or 0 for s in self.s.sessions.values()
                   if s.stopped_at is not None and s.stopped_at >= at)

    async def list_batches_page(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError("list_batches_page: not faked in memory")

    async def batch_sessions(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError("batch_sessions: not faked in memory")

    async def batch_summaries(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError("batch_summaries: not faked in memory")

    async def list_audit_page(self, before: int | None, limit: int) -> list[dict[str, Any]]:
        return copy.deepcopy([a for a in self.s.audit[::-1]
                              if before is None or a["id"] < before][:limit])

    async def list_tags_page(self, after: str | None, limit: int) -> list[IdTag]:
        return [copy.deepcopy(t) for key, t in sorted(self.s.tags.items())
                if key > (after or "")][:limit]

    async def insert_sessions(self, sessions: list[Session]) -> None:
        for session in sessions:
            if numbered_by_central_system(session.ocpp_version, session.transaction_id):
                raise ValueError("insert_sessions needs each session's transaction id")
            session.id = self._new_id()
            self.s.sessions[session.id] = copy.deepcopy(session)


    # -- certificates and the device model (csms.storage.device_sql) -----------------------
    async def add_issued_certificate(self, serial: str, station_id: str, not_before: datetime,
                                     not_after: datetime, pem: str, at: datetime,
                                     certificate_type: str | None = None) -> None:
        if serial in self.s.certificates:
            raise StorageError(f"certificate {serial} exists")
        self.s.certificates[serial] = {
            "serial": serial, "station_id": station_id, "not_before": not_before,
            "not_after": not_after, "pem": pem, "issued_at": at, "status": "Issued",
            "renewal_requested_at": None, "certificate_type": certificate_type}

    async def set_certificate_status(self, serial: str, status: str) -> None:
        if serial in self.s.certificates:
            self.s.certificates[serial]["status"] = status

    async def get_issued_certificate(self, serial: str) -> dict[str, Any] | None:
        row = self.s.certificates.get(serial)
        return None if row is None else dict(row)

    async def list_issued_certificates(self, station_id: str | None = None,
                                       limit: int = 1000) -> list[dict[str, Any]]:
        rows = [dict(r) for r in self.s.certificates.values()
                if station_id is None or r["station_id"] == station_id]
        return sorted(rows, key=lambda r: r["issued_at"], reverse=True)[:limit]

    async def certificates_expiring(self, before: datetime) -> list[dict[str, Any]]:
        live = [r for r in self.s.certificates.values() if r["status"] != "Rejected"
                and r.get("certificate_type") is None]
        out = []
        for r in live:
            newer = any(n["station_id"] == r["station_id"] and n["not_after"] > r["not_after"]
                        for n in live)
            if not newer and r["renewal_requested_at"] is None and r["not_after"] < before:
                out.append(dict(r))
        return sorted(out, key=lambda r: r["not_after"])

    async def mark_renewal_requested(self, serial: str, at: datetime) -> None:
        if serial in self.s.certificates:
            self.s.certificates[serial]["renewal_requested_at"] = at

    async def add_report_request(self, station_id: str, kind: str, at: datetime) -> int:
        ids = [k[1] for k in self.s.report_requests if k[0] == station_id]
        request_id = max(ids, default=0) + 1
        self.s.report_requests[station_id, request_id] = {
            "station_id": station_id, "request_id": request_id, "kind": kind,
            "requested_at": at, "last_seq_no": None, "parts": 0, "completed_at": None}
        return request_id

    async def get_report_request(self, station_id: str,
                                 request_id: int) -> dict[str, Any] | None:
        row = self.s.report_requests.get((station_id, request_id))
        return None if row is None else dict(row)

    async def report_part_received(self, station_id: str, request_id: int, seq_no: int,
                                   complete: bool, at: datetime) -> None:
        row = self.s.report_requests.get((station_id, request_id))
        if row is not None:
            row.update(last_seq_no=seq_no, parts=row["parts"] + 1,
                       completed_at=at if complete else None)

    async def upsert_device_variables(self, station_id: str, rows: list[dict[str, Any]],
                                      at: datetime) -> None:
        for row in rows:
            self.s.device_variables[station_id, row["var_key"]] = {
                **row, "station_id": station_id, "updated_at": at.isoformat()}

    async def set_device_value(self, station_id: str, var_key: str, value: str,
                               at: datetime) -> None:
        row = self.s.device_variables.get((station_id, var_key))
        if row is not None:
            row.update(value=value, updated_at=at.isoformat())

    async def device_variables(self, station_id: str,
                               component: str | None = None) -> list[dict[str, Any]]:
        rows = [dict(r) for (sid, _), r in self.s.device_variables.items()
                if sid == station_id and (component is None or r["component"] == component)]
        return sorted(rows, key=lambda r: r["var_key"])

    async def delete_device_variables(self, station_id: str, component: str) -> int:
        gone = [k for k, r in self.s.device_variables.items()
                if k[0] == station_id and r["component"] == component]
        for k in gone:
            del self.s.device_variables[k]
        return len(gone)

    async def count_device_variables(self, station_id: str) -> int:
        return sum(1 for sid, _ in self.s.device_variables if sid == station_id)

    async def upsert_monitors(self, station_id: str, rows: list[dict[str, Any]],
                              at: datetime) -> None:
        for row in rows:
            self.s.monitors[station_id, int(row["monitor_id"])] = {
                **row, "station_id": station_id, "updated_at": at.isoformat()}

    async def delete_monitors(self, station_id: str, ids: list[int]) -> None:
        for monitor_id in ids:
            self.s.monitors.pop((station_id, monitor_id), None)

    async def list_monitors(self, station_id: str) -> list[dict[str, Any]]:
        return [dict(r) for (sid, mid), r in sorted(self.s.monitors.items())
                if sid == station_id]

    async def count_monitors(self, station_id: str) -> int:
        return sum(1 for sid, _ in self.s.monitors if sid == station_id)


class MemoryRepository(Repository):
    """Units of work on one :class:`MemoryState`; a unit that raises is undone."""

    reads_together = False

    def __init__(self, state: MemoryState | None = None) -> None:
        self.state = state or MemoryState()
        self.units = 0
        self.closed = False

    async def unit(self, fn: Callable[[Tx], Awaitable[T]]) -> T:
        if self.closed:
            raise RuntimeError("repository is closed")
        before = copy.deepcopy(self.state)
        try:
            result = await fn(MemoryTx(self.state))
        except BaseException:
            self.state.__dict__.update(before.__dict__)
            raise
        self.units += 1
        return result

    async def unit_apart(self, fn: Callable[[Tx], Awaitable[T]]) -> T:
        return await self.unit(fn)

    async def read(self, fn: Callable[[Tx], Awaitable[T]]) -> T:
        before = copy.deepcopy(self.state)
        try:
            return await fn(MemoryTx(self.state))
        finally:
            # nothing is written by a read
            self.state.__dict__.update(before.__dict__)

    async def close(self) -> None:
        self.closed = True


def _missing(owner: type, name: str) -> Callable[..., Any]:
    async def missing(self: Any, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(
            f"the in-memory storage has no {owner.__name__}.{name}: use a real database")
    missing.__name__ = name
    return missing


def fill_gaps(fake: type, port: type) -> None:
    """Give the fake a method that raises for every operation of the port it does not
    implement: the port's own bodies are ``...``, which would answer None as if the
    database held nothing."""
    for name, member in vars(port).items():
        if name.startswith("_") or not callable(member) or name in vars(fake):
            continue
        setattr(fake, name, _missing(port, name))


fill_gaps(MemoryTx, Tx)
fill_gaps(MemoryRepository, Repository)
