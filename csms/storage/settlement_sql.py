"""Settlement's storage in portable SQL: tariffs, drivers' cards and authorizations, the
ledger's sequence numbers, the settlement queue, batches and their items.

A mixin of :class:`csms.storage.sql.SqlTx`: the worker, the receipts and the CLI reach
these tables only through these named methods (the storage port,
``csms.service.ports.Tx``), never with SQL of their own.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from csms.domain.tariff import Tariff
from csms.service.billing import BillingState, check_billing_transition
from csms.service.holds import NEVER_RELEASED, SILENT_GRACE_S

__all__ = ["BATCH_FIELDS", "CARD_LINK", "CARD_LINK_COLUMNS", "SILENT_GRACE_S",
           "SettlementSql", "card_link_params"]

# columns a batch update may set (the worker's state machine)
BATCH_FIELDS = frozenset({
    "state", "nonce", "raw_tx", "tx_hash", "max_fee", "priority_fee", "broadcast_at",
    "block_number", "block_hash", "gas_used", "replaced", "error", "updated_at",
})
SESSION_SETTLEMENT_FIELDS = frozenset({
    "price_minor", "currency", "tariff_id", "tariff_version", "settlement_state", "seq",
    "unpaid_reason",
})


# A session's row of session_cards (:meth:`SettlementSql.bind_card`): its id, then
# CARD_LINK, the tag and the link it has now (driver, salt, commitment; '' for a tag of no
# driver), with card_link_params(tag). Three lookups of one row by the table's key: on
# SQLite 1.5 us less than the LEFT JOIN of a one-row subquery, which runs as a coroutine.
CARD_LINK_COLUMNS = "session_id, tag, driver, salt, commitment"
CARD_LINK = ", ".join(["?", *(f"coalesce((SELECT {c} FROM driver_cards WHERE tag = ?), '')"
                             for c in ("driver", "salt", "commitment"))])
_BIND_CARD = (f"INSERT INTO session_cards ({CARD_LINK_COLUMNS}) VALUES (?, {CARD_LINK})"
              " ON CONFLICT (session_id) DO NOTHING")
_REBIND_CARD = (f"INSERT INTO session_cards ({CARD_LINK_COLUMNS}) VALUES (?, {CARD_LINK})"
                " ON CONFLICT (session_id) DO UPDATE SET tag = excluded.tag,"
                " driver = excluded.driver, salt = excluded.salt,"
                " commitment = excluded.commitment")
_BIND_NO_PAYER = (f"INSERT INTO session_cards ({CARD_LINK_COLUMNS}) VALUES (?, ?, '', '', '')"
                  " ON CONFLICT (session_id) DO UPDATE SET tag = excluded.tag, driver = '',"
                  " salt = '', commitment = ''")


def card_link_params(tag: str) -> tuple[str, str, str, str]:
    """The parameters of CARD_LINK."""
    return tag, tag, tag, tag


def _has_flag(flag: str) -> str:
    """SQL: the session's ``flags`` (a JSON array of names, as stored) hold ``flag``."""
    # a flag's name: no quote, no '%'; its '_' (LIKE's any one character) meets no other
    # flag's name
    assert flag.isidentifier()
    return f"flags LIKE '%\"{flag}\"%'"


# Sessions that can never be charged, whatever comes: rejected by an operator (final,
# csms.service.billing) or held by a hold no operator may release (csms.service.holds).
# Only the central system writes these flags, never a station, and none is ever lifted.
NEVER_CHARGED = " OR ".join(_has_flag(f) for f in (BillingState.REJECTED.value,
                                                    *sorted(NEVER_RELEASED)))
# A session at stake for a driver's escrow, of the ``sessions`` table (driver_exposure,
# accepted_for_driver): one of a card linked to the driver, unless charged to another driver
# on its card at its start; one charged to it on a card at its start (session_cards: the
# card unlinked or handed on since); its signed app session; never one that can never be
# charged. Four parameters, the driver's address each time.
_DRIVERS_SESSION = (
    "((id_tag IN (SELECT tag FROM driver_cards WHERE driver = ?)"
    " AND NOT EXISTS (SELECT 1 FROM session_cards c WHERE c.session_id = sessions.id"
    " AND c.driver <> ?))"
    " OR id IN (SELECT session_id FROM session_cards WHERE driver = ?)"
    " OR id IN (SELECT session_id FROM session_authorizations WHERE driver = ?"
    f" AND session_id IS NOT NULL)) AND NOT ({NEVER_CHARGED})")
# Settlement states after which this database charges a session no more: paid (the escrow
# paid it: its balance says so), unpaid (the contract refused the entry) and conflict (the
# chain holds another chunk for its sequence number, the contract takes each once: a
# conflict is final in both state tables, settlement.states and csms.service.billing, and
# the worker never settles its sessions again). Only a reorganisation moves paid and unpaid
# back to batched: they count again then.
SETTLED_STATES = ", ".join(f"'{s.value}'" for s in (
    BillingState.PAID, BillingState.UNPAID, BillingState.REJECTED, BillingState.CONFLICT))

# How long after its authorization's expiry a signed session not yet in a chunk still counts
# against its driver's escrow (driver_exposure): the contract judges the expiry by the
# chain's clock, which may run behind ours
EXPIRED_GRACE_S = 3600
# SILENT_GRACE_S (csms.service.holds): how long a session in progress its station sends
# nothing for, or delivers no energy on, still counts against its driver's escrow
# (driver_exposure)


def _iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat(timespec="microseconds")


def _tariff(row: dict[str, Any]) -> Tariff:
    return Tariff(row["station_id"], Decimal(row["per_kwh"]), row["currency"], row["decimals"],
                  Decimal(row["per_minute"]), Decimal(row["session_fee"]), row["version"],
                  datetime.fromisoformat(row["valid_from"]), row["id"])


class SettlementSql(ABC):
    @abstractmethod
    async def execute(self, sql: str, *params: Any) -> int: ...

    @abstractmethod
    async def fetchone(self, sql: str, *params: Any) -> dict[str, Any] | None: ...

    @abstractmethod
    async def fetchall(self, sql: str, *params: Any) -> list[dict[str, Any]]: ...

    @abstractmethod
    async def insert_id(self, sql: str, *params: Any) -> int: ...

    @abstractmethod
    async def write(self, sql: str, *params: Any) -> None: ...

    # -- tariffs -------------------------------------------------------------------------
    async def add_tariff(self, tariff: Tariff) -> int:
        """Store a new version of a station's tariff (or of '*'); returns the version."""
        row = await self.fetchone(
            "SELECT max(version) AS v FROM tariffs WHERE station_id = ?", tariff.station_id)
        version = int(row["v"] or 0) + 1 if row else 1
        await self.execute(
            "INSERT INTO tariffs (station_id, version, per_kwh, per_minute, session_fee,"
            " currency, decimals, valid_from) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            tariff.station_id, version, str(tariff.per_kwh), str(tariff.per_minute),
            str(tariff.session_fee), tariff.currency, tariff.decimals,
            _iso(tariff.valid_from or datetime.now(UTC)))
        return version

    # SQL: the session ``s`` started at most its clock tolerance (the one parameter, in
    # seconds) after it was stored. Times are ISO text in UTC (year 1 to 9999); PostgreSQL
    # overrides it (csms.storage.postgres_rounds).
    _STARTED_WITHIN = "julianday(s.started_at) <= julianday(s.created_at) + ? / 86400.0"

    def _started_within(self, tolerance: timedelta) -> tuple[str, Any]:
        return self._STARTED_WITHIN, tolerance.total_seconds()

    async def session_a_tariff_would_reprice(self, station_id: str, valid_from: datetime,
                                             clock_tolerance: timedelta
                                             ) -> dict[str, Any] | None:
        """A stored session (``id``, ``station_id``, ``started_at``) whose tariff a new
        version for ``station_id`` (or '*') valid from ``valid_from`` would replace: it
        started at or after ``valid_from`` and a tariff was valid at its start (the
        station's own or the default; for '*', the default because its station had none
        of its own). A session that had no tariff at all is not one: it is held until it
        has one (``find_tariff``'s rule, in one query).

        Nor is a session whose start is no time a tariff can be judged by: one an operator
        rejected (never priced); one held as ``time_implausible`` and not released (a
        station dates its sessions as it likes: one in 9999 would otherwise refuse every
        version for good); one that started more than ``clock_tolerance`` (the drift the
        central system allows a station's clock, ``time_future``) after it was stored,
        released or not. A session released with ``time_implausible`` whose start is
        within that tolerance still counts: its price is the one it is billed."""
        when = _iso(valid_from)
        within, tolerance = self._started_within(clock_tolerance)
        judged = (f" AND NOT s.{_has_flag(BillingState.REJECTED.value)}"
                  f" AND (NOT s.{_has_flag('time_implausible')}"
                  f" OR s.{_has_flag(BillingState.RELEASED.value)}) AND {within}")
        if station_id == "*":
            return await self.fetchone(
                "SELECT id, station_id, started_at FROM sessions s WHERE started_at >= ?"
                " AND EXISTS (SELECT 1 FROM tariffs t WHERE t.station_id = '*'"
                " AND t.valid_from <= s.started_at)"
                " AND NOT EXISTS (SELECT 1 FROM tariffs t WHERE t.station_id = s.station_id"
                f" AND t.valid_from <= s.started_at){judged} ORDER BY started_at LIMIT 1",
                when, tolerance)
        return await self.fetchone(
            "SELECT id, station_id, started_at FROM sessions s WHERE station_id = ?"
            " AND started_at >= ? AND EXISTS (SELECT 1 FROM tariffs t"
            " WHERE t.station_id IN (s.station_id, '*') AND t.valid_from <= s.started_at)"
            f"{judged} ORDER BY started_at LIMIT 1", station_id, when, tolerance)

    async def list_tariffs(self) -> list[Tariff]:
        rows = await self.fetchall("SELECT * FROM tariffs ORDER BY station_id, version")
        return [_tariff(r) for r in rows]

    async def find_tariff(self, station_id: str, at: datetime) -> Tariff | None:
        """The tariff valid at ``at``: the station's own newest version, else '*'."""
        # Two lookups down the (station_id, version) index, the default's only when the
        # station has none: one query ordering both stations' rows by a CASE made SQLite
        # sort them in a temporary b-tree, 5.5 us where this takes ~2 (every 2.0.1
        # TransactionEvent asks, for its running cost); COALESCE stops at the first.
        when = _iso(at)
        row = await self.fetchone(
            "SELECT * FROM tariffs WHERE id = COALESCE("
            "(SELECT id FROM tariffs WHERE station_id = ? AND valid_from <= ?"
            " ORDER BY version DESC LIMIT 1),"
            " (SELECT id FROM tariffs WHERE station_id = '*' AND valid_from <= ?"
            " ORDER BY version DESC LIMIT 1))",
            station_id, when, when)
        return None if row is None else _tariff(row)

    # -- drivers: cards and signed sessions ----------------------------------------------
    async def link_card(self, tag: str, driver: str, salt: str, commitment: str,
                        at: datetime) -> None:
        await self.execute(
            "INSERT INTO driver_cards (tag, driver, salt, commitment, linked_at)"
            " VALUES (?, ?, ?, ?, ?) ON CONFLICT (tag) DO UPDATE SET driver = excluded.driver,"
            " salt = excluded.salt, commitment = excluded.commitment,"
            " linked_at = excluded.linked_at", tag, driver.lower(), salt, commitment, _iso(at))

    async def unlink_card(self, tag: str) -> bool:
        return await self.execute("DELETE FROM driver_cards WHERE tag = ?", tag) > 0

    async def card_of(self, tag: str) -> dict[str, Any] | None:
        return await self.fetchone("SELECT * FROM driver_cards WHERE tag = ?", tag)

    async def bind_card(self, session_id: int, tag: str) -> None:
        """Charge the session to the driver ``tag`` is linked to now (its start): a card
        unlinked or linked to another driver later leaves the session's payer as it was.
        A tag of no driver charges it to nobody (``driver`` empty): a driver who links the
        card afterwards does not pay for it. Nothing for a session bound already."""
        await self.write(_BIND_CARD, session_id, *card_link_params(tag))

    async def rebind_card(self, session_id: int, tag: str) -> None:
        """Charge the session to the driver ``tag`` is linked to now, in place of the card
        it was bound to: a 2.0.1 transaction's first token refused, and a later one
        accepted (the driver presented another card, E02/E05: the accepted one pays)."""
        await self.write(_REBIND_CARD, session_id, *card_link_params(tag))

    async def bind_no_payer(self, session_id: int, tag: str) -> None:
        """The session started on ``tag`` and the card was refused as not its driver's to be
        charged for at the start (unlinked on chain, unknown, blocked or expired in the
        registry: ``ChargingCore._bind_refused``): charged to nobody, whoever the card is
        linked to, now or later. It replaces the row bound with the session's insert
        (:meth:`bind_card`, before the answer was final)."""
        await self.write(_BIND_NO_PAYER, session_id, tag)

    async def session_card(self, session_id: int) -> dict[str, Any] | None:
        """The card link a session was charged on when it started (:meth:`bind_card`)."""
        return await self.fetchone(
            "SELECT tag, driver, salt, commitment FROM session_cards WHERE session_id = ?",
            session_id)

    async def session_drivers(self, session_id: int) -> list[str]:
        """The drivers whose escrow is at stake for the session, as :meth:`driver_exposure`
        counts it (one, but for a signed app session on a card's tag, which the central
        system refuses): the driver of its signed app authorization, the one it was charged
        to on a card at its start (:meth:`bind_card`), and the one its tag is linked to now
        unless it was charged to another at its start. None for a tag of no driver, nor for
        a session charged to nobody."""
        rows = await self.fetchall(
            "SELECT driver FROM session_authorizations WHERE session_id = ?"
            " UNION SELECT driver FROM session_cards WHERE session_id = ? AND driver <> ''"
            " UNION SELECT d.driver FROM sessions s JOIN driver_cards d ON d.tag = s.id_tag"
            " WHERE s.id = ? AND NOT EXISTS (SELECT 1 FROM session_cards c"
            " WHERE c.session_id = s.id AND c.driver <> d.driver)",
            session_id, session_id, session_id)
        return sorted({str(r["driver"]) for r in rows})

    async def accepted_for_driver(self, driver: str, since: datetime,
                                  besides: int) -> dict[str, Any] | None:
        """The first of what the central system accepted to charge ``driver``'s escrow for
        after ``since`` (its own clock): a session of the driver as :meth:`driver_exposure`
        counts it, but ``besides``, whose row was created then (``created_at``, not the
        station's start: a start is judged as its row is stored), or an authorization of
        the driver kept then (``created_at``, the time it was accepted; not one whose remote
        start failed, which charges nothing). ``{"kind": "session" | "authorization", "id",
        "accepted_at"}``, or None. A session that can never be charged
        (:data:`NEVER_CHARGED`) takes nothing; one settled since counts all the same (the
        rule stays simple: anything accepted then). Read for a session heard of again
        after :data:`SILENT_GRACE_S` only: through the driver's cards, its bound sessions
        and its authorizations, by their indexes."""
        driver = driver.lower()
        at = _iso(since)
        row = await self.fetchone(
            "SELECT kind, id, accepted_at FROM ("
            "SELECT 'session' AS kind, id, created_at AS accepted_at FROM sessions"
            " WHERE id <> ? AND created_at > ?"
            f" AND {_DRIVERS_SESSION}"
            " UNION ALL SELECT 'authorization' AS kind, id, created_at AS accepted_at"
            " FROM session_authorizations WHERE driver = ? AND created_at > ?"
            " AND start_state <> 'withdrawn') accepted ORDER BY accepted_at, kind, id LIMIT 1",
            besides, at, driver, driver, driver, driver, driver, at)
        if row is None:
            return None
        return {"kind": str(row["kind"]), "id": int(row["id"]),
                "accepted_at": str(row["accepted_at"])}

    async def bind_host(self, session_id: int, host: str, chain_station: int) -> None:
        """Pay the session to ``host``, whose station index is ``chain_station``: its
        station's host when it completed. A host set since (csms stations set-host) is paid
        only the sessions that complete afterwards. Nothing for a session bound already."""
        await self.write(
            "INSERT INTO session_hosts (session_id, host, chain_station) VALUES (?, ?, ?)"
            " ON CONFLICT (session_id) DO NOTHING", session_id, host.lower(), chain_station)

    async def session_host(self, session_id: int) -> dict[str, Any] | None:
        """The host and station index a session is paid to (:meth:`bind_host`)."""
        return await self.fetchone(
            "SELECT host, chain_station FROM session_hosts WHERE session_id = ?", session_id)

    async def driver_cards(self, driver: str | None = None) -> list[dict[str, Any]]:
        if driver is None:
            return await self.fetchall("SELECT * FROM driver_cards ORDER BY driver, tag")
        return await self.fetchall(
            "SELECT * FROM driver_cards WHERE driver = ? ORDER BY tag", driver.lower())

    async def add_authorization(self, driver: str, station_id: str, id_tag: str,
                                body: dict[str, Any], nonce: int, expiry: int,
                                at: datetime, remote_start_id: int | None = None, *,
                                limit_minor: int | None = None,
                                connector_id: int | None = None) -> int:
        """Keep a driver's authorization for the remote start about to be sent for it
        (``remote_start_id``: its 2.0.1 remoteStartId; ``limit_minor``: the limit it was
        accepted with, which the session it starts gets; ``connector_id``: the connector a
        1.6 remote start names): see :meth:`pending_authorization` for what it binds, and
        :meth:`remote_start_accepted`, :meth:`withdraw_authorization` for the station's
        answer."""
        return await self.insert_id(
            "INSERT INTO session_authorizations (driver, station_id, id_tag, body, nonce,"
            " expiry, created_at, start_state, remote_start_id, limit_minor, connector_id)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, 'sent', ?, ?, ?) RETURNING id", driver.lower(),
            station_id, id_tag, json.dumps(body, sort_keys=True), str(nonce), expiry,
            _iso(at), remote_start_id, limit_minor, connector_id)

    async def authorization_with_nonce(self, driver: str, nonce: int) -> dict[str, Any] | None:
        """The driver's authorization with ``nonce`` (one per driver and nonce)."""
        return await self.fetchone(
            "SELECT * FROM session_authorizations WHERE driver = ? AND nonce = ?",
            driver.lower(), str(nonce))

    async def remote_start_accepted(self, authorization_id: int,
                                    bindable_until: int | None) -> None:
        """The station accepted the remote start of the authorization: on 1.6 (no
        remoteStartId) it binds until ``bindable_until`` (unix seconds)."""
        await self.execute(
            "UPDATE session_authorizations SET start_state = 'accepted', bindable_until = ?"
            " WHERE id = ? AND start_state = 'sent'", bindable_until, authorization_id)

    async def withdraw_authorization(self, authorization_id: int) -> dict[str, Any] | None:
        """The remote start of the authorization failed: it binds no session any more (the
        row, or None when a session is bound to it already or it was withdrawn)."""
        if not await self.execute(
                "UPDATE session_authorizations SET start_state = 'withdrawn' WHERE id = ?"
                " AND session_id IS NULL AND start_state <> 'withdrawn'", authorization_id):
            return None
        return await self.fetchone("SELECT * FROM session_authorizations WHERE id = ?",
                                   authorization_id)

    async def pending_authorization(self, station_id: str, id_tag: str, now_unix: int,
                                    remote_start_id: int | None = None, *,
                                    any_remote_start: bool = False,
                                    connector_id: int | None = None
                                    ) -> dict[str, Any] | None:
        """The newest unbound, unexpired authorization a session started at ``station_id``
        with ``id_tag`` binds: one whose 2.0.1 remote start was sent with
        ``remote_start_id`` (answered or not yet: only that transaction reports it), or one
        whose 1.6 remote start the station accepted, within its window, and named no
        connector or ``connector_id`` (the session's; None: any, for an Authorize, which
        names none). A 2.0.1 one whatever its remoteStartId with ``any_remote_start`` (an
        Authorize carries none). Never one whose remote start failed."""
        params: list[Any] = [station_id, id_tag, now_unix]
        if any_remote_start:
            which = "remote_start_id IS NOT NULL"
        elif remote_start_id is not None:
            which = "remote_start_id = ?"
            params.append(remote_start_id)
        else:
            which = "1 = 0"
        params.append(now_unix)
        connector = ""
        if connector_id is not None:
            connector = " AND (connector_id IS NULL OR connector_id = ?)"
            params.append(connector_id)
        return await self.fetchone(
            "SELECT * FROM session_authorizations WHERE station_id = ? AND id_tag = ?"
            " AND session_id IS NULL AND expiry >= ? AND start_state <> 'withdrawn'"
            f" AND ({which} OR (remote_start_id IS NULL AND start_state = 'accepted'"
            f" AND bindable_until >= ?{connector})) ORDER BY id DESC LIMIT 1", *params)

    async def bind_authorization(self, station_id: str, id_tag: str, session_id: int,
                                 now_unix: int, remote_start_id: int | None = None, *,
                                 connector_id: int | None = None
                                 ) -> dict[str, Any] | None:
        """Bind the authorization :meth:`pending_authorization` names to a session (on
        ``connector_id``)."""
        row = await self.pending_authorization(station_id, id_tag, now_unix, remote_start_id,
                                               connector_id=connector_id)
        if row is None or not await self.execute(
                "UPDATE session_authorizations SET session_id = ? WHERE id = ?"
                " AND session_id IS NULL AND start_state <> 'withdrawn'", session_id,
                row["id"]):
            return None
        return row

    async def authorization_of(self, session_id: int) -> dict[str, Any] | None:
        return await self.fetchone(
            "SELECT * FROM session_authorizations WHERE session_id = ?", session_id)

    async def lock_driver(self, driver: str) -> None:
        """Hold ``driver`` until this unit's transaction ends (a coverage check and what it
        covers, one after the other across nodes). Here nothing: SQLite's writers, of
        every process, take turns on the whole file, and a unit reads what the units
        before it in its batch wrote. PostgreSQL overrides it."""
        return None

    async def driver_exposure(self, driver: str, now_unix: int,
                              reserve_minor: int) -> dict[str, int]:
        """What a driver may still cost - its sessions being those of the cards linked to
        it (but those charged to another driver the card was linked to when they
        started), those charged to it on a card when they started (``session_cards``: a
        card unlinked or handed on since) and its signed app sessions (bound to it in
        ``session_authorizations``): its sessions in progress (``active``) and completed
        ones not yet priced (``unpriced``), at their limits (``in_flight_minor``) but for
        those that have none (``unlimited``, counted by the caller at its reserve); the
        price of those priced but not yet settled on chain (``pending_minor``); and its
        authorizations accepted and not yet started (unbound, unexpired: ``authorized``),
        each at the limit it was accepted with, the session it starts gets
        (``authorized_minor``; one kept without at its maximum amount, one not readable at
        ``reserve_minor``). A session that can never be charged counts for nothing
        (:data:`NEVER_CHARGED`: an operator's rejection, a hold never released), nor does
        one the chain settled or never will (:data:`SETTLED_STATES`), nor a signed app
        session in progress or not yet priced whose authorization expired more than
        :data:`EXPIRED_GRACE_S` before ``now_unix`` (the contract pays no signed entry after
        its expiry: a station that never ends such a session would hold the driver's
        escrow), nor a session in progress its station has sent nothing for (its last
        update, ``updated_at``) since more than :data:`SILENT_GRACE_S` before ``now_unix``
        (a station gone silent would hold it for ever), nor one whose energy last grew
        (``energy_grew_at``) more than that before (a station that keeps writing a session
        it delivers nothing on, readings that never grow, would hold it for ever too). One
        completed and not yet priced counts whatever its age; one written again after the
        silence, or whose energy grows again or that completes after the grace without
        energy, is held at its completion, ``resumed_after_silence``, when something of the
        driver's was accepted meanwhile (:meth:`accepted_for_driver`,
        csms.service.sessions); a session merely held counts at its limit: an operator may
        release it."""
        driver = driver.lower()
        grace = _iso(datetime.fromtimestamp(now_unix - SILENT_GRACE_S, UTC))
        row = await self.fetchone(
            "SELECT"
            " sum(CASE WHEN status = 'active' THEN 1 ELSE 0 END) AS active,"
            " sum(CASE WHEN status = 'completed' AND price_minor IS NULL THEN 1 ELSE 0 END)"
            " AS unpriced,"
            " sum(CASE WHEN status = 'active' OR price_minor IS NULL THEN limit_minor"
            " ELSE 0 END) AS limited,"
            " sum(CASE WHEN (status = 'active' OR price_minor IS NULL) AND limit_minor IS NULL"
            " THEN 1 ELSE 0 END) AS unlimited,"
            " sum(CASE WHEN status = 'completed' AND price_minor IS NOT NULL"
            f" AND coalesce(settlement_state, '') NOT IN ({SETTLED_STATES})"
            " THEN price_minor ELSE 0 END) AS pending"
            f" FROM sessions WHERE {_DRIVERS_SESSION}"
            # not yet in a chunk, its authorization expired: the contract pays it never
            " AND NOT ((status = 'active' OR price_minor IS NULL) AND id IN (SELECT session_id"
            " FROM session_authorizations WHERE session_id IS NOT NULL AND expiry < ?))"
            # in progress, nothing heard of it, or no energy delivered on it, since the
            # grace (the rows read already: no further lookup; a session stored before its
            # energy's time was kept is judged by its last write)
            " AND NOT (status = 'active' AND (updated_at < ?"
            " OR coalesce(energy_grew_at, updated_at) < ?))",
            driver, driver, driver, driver, now_unix - EXPIRED_GRACE_S, grace, grace)
        assert row is not None
        waiting = await self.fetchall(
            "SELECT body, limit_minor FROM session_authorizations WHERE driver = ?"
            " AND session_id IS NULL AND expiry >= ? AND start_state <> 'withdrawn'"
            " AND (remote_start_id IS NOT NULL OR start_state = 'sent' OR bindable_until >= ?)",
            driver, now_unix, now_unix)
        authorized = 0
        for auth in waiting:
            try:
                amount = int(auth["limit_minor"] if auth["limit_minor"] is not None
                             else json.loads(auth["body"])["max_amount"])
            except (KeyError, TypeError, ValueError):
                amount = reserve_minor  # not readable (it binds no session either)
            authorized += max(amount, 0)
        return {"active": int(row["active"] or 0), "unpriced": int(row["unpriced"] or 0),
                "in_flight_minor": int(row["limited"] or 0),
                "unlimited": int(row["unlimited"] or 0),
                "pending_minor": int(row["pending"] or 0), "authorized": len(waiting),
                "authorized_minor": authorized}

    # -- the ledger: id and sequence numbers ---------------------------------------------
    async def ledger_value(self, name: str) -> str | None:
        row = await self.fetchone("SELECT value FROM ledger_info WHERE name = ?", name)
        return None if row is None else str(row["value"])

    async def set_ledger_value(self, name: str, value: str, *, only_new: bool = False) -> None:
        if only_new:
            await self.execute("INSERT INTO ledger_info (name, value) VALUES (?, ?)"
                               " ON CONFLICT DO NOTHING", name, value)
        else:
            await self.execute("INSERT INTO ledger_info (name, value) VALUES (?, ?)"
                               " ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                               name, value)

    async def bind_ledger(self, chain_id: int, contract: str, unit: str) -> tuple[str, str]:
        """The contract this database's ledger settles on ("<chain id>:<address>") and its
        billing unit ("<currency>:<decimals>"): ``contract`` on ``chain_id`` and ``unit``
        until the ledger's first chunk is cut, then for ever those of its chunks (a database
        that settled before they were kept: its latest batch's contract and record's unit).
        The contract takes a ledger's sequence numbers once, but only its own: on another,
        the ledger's chunks would be paid again; and its amounts are in the unit its
        sessions were billed in."""
        row = await self.fetchone(
            "SELECT b.chain_id, b.contract, bi.record FROM batches b JOIN batch_items bi"
            " ON bi.batch_id = b.id WHERE b.version = 2 AND b.contract IS NOT NULL"
            " ORDER BY b.id DESC LIMIT 1")
        if row is not None:
            record = json.loads(row["record"])
            contract = str(row["contract"])
            chain_id = int(row["chain_id"])
            unit = f"{str(record['currency']).upper()}:{int(record['decimals'])}"
        await self.set_ledger_value("ledger_contract", f"{chain_id}:{contract.lower()}",
                                    only_new=row is not None)
        await self.set_ledger_value("ledger_unit", unit, only_new=row is not None)
        bound = await self.ledger_value("ledger_contract")
        bound_unit = await self.ledger_value("ledger_unit")
        assert bound is not None and bound_unit is not None
        return bound, bound_unit

    async def take_next_seq(self) -> int:
        """The ledger's next sequence number, its row locked until the transaction ends
        (an upsert that writes the row back as it is: PostgreSQL locks it, and a second
        transaction's upsert waits for this one's end and then returns what it wrote;
        SQLite's one writer serializes them anyway). Two cuts at once on two nodes never
        give two chunks one number."""
        row = await self.fetchone(
            "INSERT INTO ledger_info (name, value) VALUES ('next_seq', '1')"
            " ON CONFLICT (name) DO UPDATE SET value = ledger_info.value RETURNING value")
        assert row is not None
        return int(row["value"])

    # -- the settlement queue and the sessions' settlement -------------------------------
    async def queued_for_settlement(self, limit: int) -> list[dict[str, Any]]:
        return await self.fetchall(
            "SELECT session_id, enqueued_at FROM settlement_queue ORDER BY session_id LIMIT ?",
            limit)

    async def queued_authorization_expiry(self) -> int | None:
        """The soonest expiry (unix seconds) of the signed authorizations of the queued
        sessions: the latest time the contract pays the first of them."""
        row = await self.fetchone(
            "SELECT min(a.expiry) AS e FROM settlement_queue q JOIN session_authorizations a"
            " ON a.session_id = q.session_id")
        return None if row is None or row["e"] is None else int(row["e"])

    async def queued_earliest_start(self) -> datetime | None:
        """The earliest start of the queued sessions, the station's time or when the
        central system stored the session, whichever is earlier (neither clock is trusted
        alone): its driver may withdraw, or lower the terms, the contract's notice period
        after it. Of the sessions a chunk may take now: not one that waits for its host to
        register its station on chain (a hosted station with no index, the session bound
        to none and signed for none: settlement.worker ``_prepare``), which no chunk
        settles however soon it is cut (a session waiting so for longer than the notice
        made every pass cut a chunk at once, for every session completed meanwhile)."""
        row = await self.fetchone(
            "SELECT min(s.started_at) AS a, min(s.created_at) AS b FROM settlement_queue q"
            " JOIN sessions s ON s.id = q.session_id"
            " LEFT JOIN stations st ON st.id = s.station_id"
            " WHERE st.chain_station IS NOT NULL OR st.host_address IS NULL"
            " OR EXISTS (SELECT 1 FROM session_hosts h WHERE h.session_id = s.id)"
            " OR EXISTS (SELECT 1 FROM session_authorizations a WHERE a.session_id = s.id)")
        if row is None:
            return None
        return min((datetime.fromisoformat(str(v)) for v in (row["a"], row["b"])
                    if v is not None), default=None)

    async def dequeue_settlement(self, session_id: int) -> None:
        await self.execute("DELETE FROM settlement_queue WHERE session_id = ?", session_id)

    async def session_settlement(self, session_id: int) -> dict[str, Any] | None:
        return await self.fetchone(
            "SELECT price_minor, currency, tariff_id, tariff_version, settlement_state, seq,"
            " unpaid_reason FROM sessions WHERE id = ?", session_id)

    async def set_session_settlement(self, session_id: int, **fields: Any) -> None:
        unknown = set(fields) - SESSION_SETTLEMENT_FIELDS
        if unknown:
            raise ValueError(f"not a settlement field: {sorted(unknown)}")
        sets = ", ".join(f"{k} = ?" for k in fields)
        await self.execute(f"UPDATE sessions SET {sets} WHERE id = ?", *fields.values(),
                           session_id)

    # -- batches -------------------------------------------------------------------------
    async def insert_batch(self, *, state: str, root: str, count: int, chain_id: int,
                           contract: str | None, ledger: int, first_seq: int,
                           entries: list[list[Any]], auths: list[list[Any]],
                           at: datetime, deploy_tx: str | None = None) -> int:
        return await self.insert_id(
            "INSERT INTO batches (state, root, count, chain_id, contract, deploy_tx, ledger,"
            " first_seq, entries, auths, version, created_at, updated_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 2, ?, ?) RETURNING id", state, root, count,
            chain_id, contract, deploy_tx, str(ledger), first_seq, json.dumps(entries),
            json.dumps(auths), _iso(at), _iso(at))

    async def insert_batch_items(
        self, batch_id: int, items: list[tuple[int, dict[str, Any], list[Any], str, str]]
    ) -> None:
        """Items in order: (session id, record, samples, record hash, packed entry), the
        hashes as 0x-hex."""
        for position, (session_id, record, samples, rhash, entry) in enumerate(items):
            await self.execute(
                "INSERT INTO batch_items (batch_id, position, session_id, record, samples,"
                " leaf, entry) VALUES (?, ?, ?, ?, ?, ?, ?)", batch_id, position, session_id,
                json.dumps(record, sort_keys=True), json.dumps(samples), rhash, entry)

    async def update_batch(self, batch_id: int, from_state: str, **fields: Any) -> bool:
        """Change a batch only if it is still in ``from_state`` (one writer at a time)."""
        unknown = set(fields) - BATCH_FIELDS
        if unknown:
            raise ValueError(f"not a batch field: {sorted(unknown)}")
        sets = ", ".join(f"{k} = ?" for k in fields)
        changed = await self.execute(
            f"UPDATE batches SET {sets} WHERE id = ? AND state = ?", *fields.values(),
            batch_id, from_state)
        return changed == 1

    async def get_batch(self, batch_id: int) -> dict[str, Any] | None:
        return await self.fetchone("SELECT * FROM batches WHERE id = ?", batch_id)

    async def open_batches(self, final_states: tuple[str, ...]) -> list[dict[str, Any]]:
        marks = ", ".join("?" for _ in final_states)
        return await self.fetchall(
            f"SELECT * FROM batches WHERE state NOT IN ({marks}) AND version = 2 ORDER BY id",
            *final_states)

    async def batch_items(self, batch_id: int) -> list[dict[str, Any]]:
        return await self.fetchall(
            "SELECT session_id, position, record, samples, leaf, entry FROM batch_items"
            " WHERE batch_id = ? ORDER BY position", batch_id)

    async def batch_of_session(self, session_id: int) -> int | None:
        row = await self.fetchone(
            "SELECT batch_id FROM batch_items WHERE session_id = ?", session_id)
        return None if row is None else int(row["batch_id"])

    async def highest_batch_nonce(self, chain_id: int, states: tuple[str, ...]) -> int | None:
        marks = ", ".join("?" for _ in states)
        row = await self.fetchone(
            f"SELECT max(nonce) AS n FROM batches WHERE state IN ({marks}) AND chain_id = ?",
            *states, chain_id)
        return None if row is None or row["n"] is None else int(row["n"])

    async def batch_totals(self, state: str) -> tuple[int, int]:
        row = await self.fetchone(
            "SELECT count(*) AS n, coalesce(sum(gas_used), 0) AS g FROM batches"
            " WHERE state = ?", state)
        assert row is not None
        return int(row["n"]), int(row["g"])

    async def ledger_batches(self, ledger: int) -> list[dict[str, Any]]:
        """The ledger's batches of this contract version, oldest first."""
        return await self.fetchall(
            "SELECT id, state, first_seq, count, root FROM batches WHERE ledger = ?"
            " AND version = 2 ORDER BY first_seq", str(ledger))

    async def set_batch_sessions(self, batch_id: int, state: str,
                                 unpaid: dict[int, int]) -> None:
        """Every session of a batch: ``state``, or unpaid with the chain's reason."""
        rows = await self.fetchall(
            "SELECT s.id, s.settlement_state FROM batch_items bi JOIN sessions s"
            " ON s.id = bi.session_id WHERE bi.batch_id = ? ORDER BY bi.position", batch_id)
        for row in rows:
            sid = int(row["id"])
            reason = unpaid.get(sid)
            check_billing_transition(row["settlement_state"] or BillingState.QUEUED,
                                     BillingState.UNPAID if reason is not None else state)
            if reason is None:
                await self.set_session_settlement(sid, settlement_state=state)
            else:
                await self.set_session_settlement(sid, settlement_state="unpaid",
                                                  unpaid_reason=reason)
