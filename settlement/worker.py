"""The settlement worker: price completed sessions, cut them into chunks, settle each chunk.

Completed sessions whose energy can be billed wait in the settlement queue (written by the
charging service in the same transaction that completed them). The worker prices each with
the tariff valid at its start, finds who pays (the driver whose card it was, or who signed
the app session) and who is paid (the station's host), builds its canonical record
(``settlement.records``), gives it the ledger's next sequence number and cuts chunks. Each
chunk is settled by one transaction that the contract checks entry by entry: it anchors the
chunk (a hash chain over its entries) and pays it from the drivers' escrows to the hosts.

Each batch goes through the state table of :mod:`settlement.states`. The raw signed
transaction, its hash and nonce are stored *before* broadcasting, so after a crash the same
transaction is sent again, never re-signed with a new nonce; a session is in at most one
batch, and the contract accepts a ledger's sequence numbers once and in order, so a session
is settled exactly once. What happened on chain is read from the chain: a chunk settled by a
transaction this database does not know (a crash after broadcast, a replacement) is found by
its Settled event; a chunk the chain holds with another digest (a restored backup, a copy of
this database) is a conflict and is never settled again. A database whose ledger is behind
the chain refuses to cut new chunks. A finalized chunk the chain lost to a reorganisation
deeper than the confirmations is found when the next chunk waits for it: its sessions are
unsettled again and it is sent again.

One worker settles a database at a time: the holder of the ``settlement`` lease, whose
expiry is the database's clock. Every write of a pass (a cut, a batch's next state, a
transaction sent or a registration on chain) first renews the lease, in the write's own
transaction where it is one, and stops the pass (:class:`LeaseLost`) once the lease is
another's or expired. A cut also takes the ledger's next sequence number under a row lock:
even two workers that both believe they settle never give two chunks one number.
Signatures expire by the chain's time (the latest block's timestamp): the worker judges
them by it, never by its own clock. So does a driver's notice (a withdrawal, or lower
terms, announced at a session's start may be made the contract's notice period later): a
queued session whose start plus the notice comes within the wait does not wait for a
fuller chunk (one a chunk can take: a session waiting for its host to register its station
on chain hurries none).

Sessions held for an operator's decision wait for no worker, but a driver may withdraw,
or lower the terms, the contract's notice period after announcing it: the worker keeps
that period in the ledger values (``notice_period``, what ``csms sessions`` and the
console count a held session's time to decide by from, :func:`csms.service.holds.
decide_by`) and warns once when a held session is within a day of that time, and once
more when it has passed (a log line and a ``hold_deadline`` station event each, the
session flagged ``hold_deadline_near`` / ``hold_deadline_passed``). What it bills does not
change: it stays held for the operator.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import os
import secrets
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from csms.domain.energy import watts
from csms.domain.model import AuthStatus, Session, registry_disowns
from csms.domain.tariff import BillingUnit, price_minor
from csms.service import defaults
from csms.service.billing import BillingState, billing_state, check_billing_transition
from csms.service.cluster import acquire_lease, hold_lease, lease_holder, release_lease
from csms.service.holds import NOTICE_PERIOD, deadline_state, decide_by
from csms.service.ports import Repository, Tx
from csms.service.signed_data import session_meter_key
from settlement.chain import Chain, ChainError
from settlement.eip712 import Authorization
from settlement.receipts import default_confirmations
from settlement.records import (
    CARD,
    LIMITS,
    SIGNED,
    EntryTooLarge,
    chunk_digest,
    entry_of,
    samples_hash,
)
from settlement.states import FINAL_STATES, BatchState, check_transition

__all__ = [
    "LeaseHeld", "LeaseLost", "LedgerBehind", "LedgerElsewhere", "RunProgress",
    "SettlementWorker", "WorkerSummary", "sample_json",
]

log = logging.getLogger("settlement.worker")

MAX_ENTRIES = 1024  # Settlement.vy
MAX_AUTHS = 256
MAX_STATIONS = 256
DEFAULT_STATION_POWER_KW = 350  # registered on chain for the operator's own stations
LEASE = "settlement"
LEASE_TTL = timedelta(seconds=30)
# a chunk cut for an expiring signature: time to be included
EXPIRY_MARGIN_S = defaults.EXPIRY_MARGIN
# seconds between two re-checks of a ledger's finalized batches against the chain while a
# batch waits for a chunk that neither the chain nor an open batch holds
RECHECK_EVERY_S = 30.0
# seconds between two looks at the held sessions' deadlines while the worker runs
HOLD_CHECK_EVERY_S = 60.0
# what a held session is flagged with once warned of (settlement.worker, csms.service.holds)
DEADLINE_NEAR = "hold_deadline_near"
DEADLINE_PASSED = "hold_deadline_passed"
# held sessions read at once when looking for those due a warning
HOLD_SCAN = 500


POWER_SLACK_S = 60  # the contract's: a minute at full power


def within_station_power(energy_wh: int, duration_s: int, power_w: int) -> bool:
    """The contract's own check of an entry against its station's registered power (1%
    and a minute of slack), in its integers."""
    return energy_wh * 360_000 <= power_w * 101 * (duration_s + POWER_SLACK_S)


def _now() -> datetime:
    return datetime.now(UTC)


def _deadline_warning(session: Session, at: datetime | None, now: datetime) -> str | None:
    """The warning a held session whose time to be decided by is ``at`` (its
    :func:`decide_by`) is due at ``now`` (DEADLINE_NEAR, DEADLINE_PASSED) and was not given
    yet, or None; near and passed as ``csms sessions`` and the console show them
    (:func:`deadline_state`)."""
    state = deadline_state(at, now)
    if state is None or DEADLINE_PASSED in session.flags:
        return None
    if state == "passed":
        return DEADLINE_PASSED
    if state == "near" and DEADLINE_NEAR not in session.flags:
        return DEADLINE_NEAR
    return None


async def card_of_session(tx: Tx, session: Session) -> dict[str, Any] | None:
    """The card link a session is charged on: as it was when the session started (a card
    unlinked or linked to another driver since changes nothing of it; a card of no driver
    then, or one refused at the start as not its driver's then - unlinked on chain, unknown,
    blocked or expired in the registry: None, whoever links it since), else - a session
    stored before the link at the start was kept - as it is now, but never for a card
    refused that the operator's registry disowns at the session's start
    (:func:`registry_disowns`: a station that charges anyway, offline or dishonest, charges
    nobody's escrow). A card refused by the escrow (no credit) stays its driver's."""
    assert session.id is not None
    bound = await tx.session_card(session.id)
    if bound is not None:
        return bound if bound["driver"] else None
    if session.id_tag is None:
        return None
    if session.auth_status not in (None, AuthStatus.ACCEPTED) \
            and registry_disowns(await tx.get_tag(session.id_tag), session.started_at):
        return None
    return await tx.card_of(session.id_tag)


# the order a batch moves forward in (conflict and finalized end it)
FORWARD = {s.value: i for i, s in enumerate((BatchState.PENDING, BatchState.SIGNED,
                                             BatchState.BROADCAST, BatchState.INCLUDED))}


@dataclass
class WorkerSummary:
    batches_created: int = 0
    sessions_batched: int = 0
    finalized: int = 0
    gas_used: int = 0
    pending_batches: int = 0
    errors: list[str] = field(default_factory=list)


@dataclass
class RunProgress:
    """How far a :meth:`SettlementWorker.run_once` is, for a display: told to its
    ``progress`` callback after each chunk cut and each pass over the open batches."""

    chunks_cut: int = 0  # by this run
    sessions_cut: int = 0  # in those chunks
    sessions_settled: int = 0  # in batches this run finalized
    waiting: int = 0  # batches on chain, waiting for their confirmations


class LeaseHeld(Exception):
    """Another worker settles this database now."""

    def __init__(self, holder: str) -> None:
        super().__init__(f"the settlement worker {holder} is settling this database;"
                         " it settles the pending sessions")
        self.holder = holder


class LeaseLost(LeaseHeld):
    """This worker's lease expired or another worker took it over in the middle of a pass:
    the pass stops before its next write (a cut, a send, a batch's next state)."""

    def __init__(self, holder: str, by: str | None) -> None:
        Exception.__init__(self, f"the settlement worker {holder} no longer holds the lease"
                           f" ({'taken over by ' + by if by else 'expired'}): it stops"
                           " settling until it holds it again")
        self.holder = by or "another worker"


class LedgerBehind(Exception):
    """The chain holds chunks of this ledger that this database never cut."""


class LedgerElsewhere(LedgerBehind):
    """This database's ledger settled on another contract than the worker's (a second
    deployment, another chain, a chain that was reset): its chunks are never sent there."""


def sample_json(s: Any) -> dict[str, Any]:
    return {"timestamp": s.timestamp.astimezone(UTC).isoformat(), "measurand": s.measurand,
            "phase": s.phase, "context": s.context, "location": s.location, "unit": s.unit,
            "multiplier": s.multiplier, "value": s.value, "format": s.format,
            "signed": s.signed}


@dataclass
class _Prepared:
    """A queued session made ready for a chunk (everything but its sequence number)."""

    session_id: int
    record: dict[str, Any]
    samples: list[dict[str, Any]]
    auth: Authorization | None


class SettlementWorker:
    def __init__(
        self, repo: Repository, chain: Chain, *, batch_size: int = defaults.BATCH_SIZE,
        max_wait: float = defaults.MAX_WAIT, confirmations: int = defaults.CONFIRMATIONS,
        stuck_after: float = 30.0,
        publish_events: bool = False, hooks: dict[str, Callable[[int], None]] | None = None,
        holder: str | None = None, lease_ttl: timedelta = LEASE_TTL,
        billing: BillingUnit = defaults.BILLING_UNIT,
    ) -> None:
        self.repo = repo
        self.chain = chain
        # what the contract's billing unit is (the settings' billing_currency and
        # billing_decimals): a session priced by a tariff in another is held, never sent
        self.billing = billing
        self.batch_size = max(1, min(batch_size, 1000))
        self.max_wait = max_wait
        # 0: the chain's own default (1 on the local test chains, 64 on any other: when a
        # receipt is VALID for a driver who names no number)
        self.confirmations = max(1, confirmations or default_confirmations(chain.chain_id))
        self.stuck_after = stuck_after
        self.publish_events = publish_events
        self.holder = holder or f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        self.lease_ttl = lease_ttl
        self._acquired_at: float | None = None  # when _acquire last took the lease
        # crash points for tests: after_cut, after_sign, after_broadcast, after_include
        # (called with the batch id)
        self.hooks = hooks or {}
        self._driver_index: dict[str, int] = {}
        self._contract: dict[str, Any] | None = None
        # per ledger: (the chain's next sequence number, loop time) of the last re-check
        self._rechecked: dict[int, tuple[int, float]] = {}
        self._bound = False  # the database's ledger is bound to this worker's contract
        self._holds_checked: float | None = None  # loop time of the last deadline check
        # run_once's progress callback and what it was told (None: no one listens)
        self._on_progress: Callable[[RunProgress], None] | None = None
        self._progress = RunProgress()

    async def _chain(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.to_thread(fn, *args)

    # -- the ledger --------------------------------------------------------------------
    async def _ledger(self) -> tuple[int, int]:
        """(ledger id, next sequence number) of this database; the id is made once."""

        async def work(tx: Tx) -> tuple[int, int]:
            await tx.set_ledger_value("ledger_id", str(secrets.randbits(62) + 1), only_new=True)
            ledger = await tx.ledger_value("ledger_id")
            assert ledger is not None
            return int(ledger), int(await tx.ledger_value("next_seq") or 1)

        return await self.repo.unit(work)

    async def _check_contract(self) -> None:
        """The database's ledger settles on this worker's contract, in this worker's billing
        unit (and the one the contract's deployment recorded), or :class:`LedgerElsewhere`
        (the first worker binds them)."""
        if self._bound:
            return
        here = f"{self.chain.chain_id}:{str(self.chain.contract_address).lower()}"
        unit = f"{self.billing.currency.upper()}:{self.billing.decimals}"

        async def work(tx: Tx) -> tuple[str, str]:
            return await tx.bind_ledger(self.chain.chain_id, str(self.chain.contract_address),
                                        unit)

        bound, bound_unit = await self.repo.unit(work)
        if bound != here:
            chain_id, _, contract = bound.partition(":")
            raise LedgerElsewhere(
                f"this database's ledger settles on contract {contract} of chain {chain_id},"
                f" not on another contract ({self.chain.contract_address} of chain"
                f" {self.chain.chain_id}): sent there, its chunks would be paid twice."
                " Nothing is settled from it; settle on that contract (its entry in chain.json)")
        recorded = self.chain.billing
        for whose, theirs in (("this database's ledger", bound_unit),
                              ("the contract's deployment (chain.json)",
                               None if recorded is None
                               else f"{recorded[0].upper()}:{recorded[1]}")):
            if theirs is not None and theirs != unit:
                currency, _, decimals = theirs.partition(":")
                raise LedgerElsewhere(
                    f"{whose} bills in {currency} with {decimals} decimals, the settings in"
                    f" {self.billing.currency} with {self.billing.decimals}"
                    " (CSMS_BILLING_CURRENCY, CSMS_BILLING_DECIMALS): its amounts would be"
                    " taken in the wrong unit. Nothing is settled; set the ledger's unit")
        self._bound = True

    @staticmethod
    def _unknown_ledger(ledger: int, next_seq: int) -> LedgerElsewhere:
        return LedgerElsewhere(
            f"the contract does not know this database's ledger {ledger}, which has cut"
            f" chunks up to number {next_seq - 1}: the chain was reset, or the contract was"
            " deployed again. Nothing is settled from it (its chunks would be paid twice);"
            " settle on the contract that holds them")

    async def check_ledger(self) -> int:
        """Register the ledger on chain; refuse to go on when the chain is ahead of us, or
        is not the one our chunks went to."""
        await self._check_contract()
        ledger, next_seq = await self._ledger()
        chain_next = await self._chain(self.chain.ledger_next, ledger)
        if chain_next == 0 and next_seq > 1:
            raise self._unknown_ledger(ledger, next_seq)
        if chain_next == 0:
            await self._acquire()
            await self._chain(self.chain.register_ledger, ledger)
            log.info("= ledger %s registered on chain %d", ledger, self.chain.chain_id)
        elif chain_next > next_seq:
            raise LedgerBehind(
                f"the chain holds sessions of this ledger up to number {chain_next - 1}, this"
                f" database only up to {next_seq - 1}: it was restored from a backup, or"
                " another copy of it settles. Nothing more is settled from it (it would bill"
                " sessions twice); settle from the database that settled them.")
        return ledger

    # -- batching ----------------------------------------------------------------------
    async def build_batches(self, force: bool = False) -> tuple[int, int]:
        """Cut chunks from the queue: full ones, or any when ``force`` or the oldest is old."""
        await self._acquire()
        ledger = await self.check_ledger()
        info = await self._info()
        # the time the contract judges signatures by: its chain's, read once a pass, when
        # something is queued (most passes find nothing: no round trip to the chain then)
        chain_now: int | None = None
        created = sessions = 0
        while True:
            if chain_now is None:
                if not await self.repo.read(lambda tx: tx.queued_for_settlement(1)):
                    return created, sessions
                chain_now = int(await self._chain(self.chain.now))
            candidates = await self._candidates(force, chain_now)
            if not candidates:
                return created, sessions
            await self._resolve(candidates)

            async def cut(tx: Tx, chosen: list[dict[str, Any]] = candidates) -> int | None:
                return await self._cut(tx, ledger, info, chosen)

            n = await self.repo.unit(cut)
            if n is None:
                raise await self._lost()
            if n == 0:
                return created, sessions
            created += 1
            sessions += n
            self._hook("after_cut", created)
            if self._on_progress is not None:
                self._progress.chunks_cut += 1
                self._progress.sessions_cut += n
                self._on_progress(self._progress)

    async def _info(self) -> dict[str, Any]:
        if self._contract is None:
            self._contract = await self._chain(self.chain.info)
        return self._contract

    async def _candidates(self, force: bool, chain_now: int) -> list[dict[str, Any]]:
        """The queued sessions for the next chunk (with their tags and stations), if it is
        time to cut one (``chain_now``: the chain's time, unix seconds)."""

        notice = int((await self._info())["notice_period"])

        async def work(tx: Tx) -> list[dict[str, Any]]:
            rows = await tx.queued_for_settlement(self.batch_size)
            if not rows:
                return []
            oldest = min(datetime.fromisoformat(r["enqueued_at"]) for r in rows)
            if len(rows) < self.batch_size and not force and \
                    (_now() - oldest).total_seconds() < self.max_wait:
                # an app session is paid only until its signature expires, by the block
                # timestamp the contract checks it with (not this node's clock, which may
                # run behind), and any session of a driver only while the escrow still
                # holds it: a withdrawal (or lower terms) announced at its start may be
                # made the notice period later, by block time too. It waits for a fuller
                # chunk only when the wait and its inclusion end before both
                soon = chain_now + self.max_wait + EXPIRY_MARGIN_S
                expiry = await tx.queued_authorization_expiry()
                start = await tx.queued_earliest_start()
                if (expiry is None or expiry > soon) and \
                        (start is None or start.timestamp() + notice > soon):
                    return []
            out = []
            for r in rows:
                s = await tx.get_session(r["session_id"])
                if s is None or s.id is None:
                    continue
                auth = await tx.authorization_of(s.id)
                card = await card_of_session(tx, s) if auth is None else None
                driver = auth["driver"] if auth else card["driver"] if card else None
                station = await tx.get_station(s.station_id)
                # read here once, for the cut too (:meth:`_prepare`): a stored authorization
                # is bound to its session at the start and never written again
                signed: Authorization | ValueError | None = None
                if auth is not None:
                    try:
                        signed = Authorization.from_json(json.loads(auth["body"]))
                    except ValueError as exc:
                        signed = exc  # held by the cut (bad_authorization)
                # the station index it is paid to: the one its driver signed (the contract
                # checks the signature with it), else its host's when it completed
                signed_for = signed.station if isinstance(signed, Authorization) else None
                out.append({"session_id": s.id, "station": station, "driver": driver,
                            "bound": await tx.session_host(s.id), "signed_for": signed_for,
                            "signed": signed})
            return out

        return await self.repo.read(work)

    async def _resolve(self, candidates: list[dict[str, Any]]) -> None:
        """Chain lookups outside the database transaction: drivers' indexes, stations'
        registered power, and the registration of the operator's own stations."""
        powers: dict[int, int] = {}
        registered: dict[int, tuple[str, int]] = {}
        for c in candidates:
            driver = c["driver"]
            if driver and driver not in self._driver_index:
                index = (await self._chain(self.chain.driver_state, driver)).index
                if index:
                    self._driver_index[driver] = index  # an index never changes
            station = c["station"]
            bound = c.get("bound")
            paid_to = c.get("signed_for") or (int(bound["chain_station"]) if bound else None)
            if station is not None and paid_to is not None:
                # the host and power the contract holds for the index it pays (an index's
                # host is written once, at its registration)
                if paid_to not in registered:
                    registered[paid_to] = await self._chain(self.chain.station, paid_to)
                host, c["power_w"] = registered[paid_to]
                if int(host, 16) == 0:  # not registered: the contract pays no one
                    host = bound["host"] if bound else \
                        station.host_address or self.chain.operator.address
                c["payee"] = (host.lower(), paid_to)
            elif station is not None and station.chain_station is not None:
                # the power the contract checks the entry's energy against (the host's
                # registration): read each pass, a host may register the station again
                index = station.chain_station
                if index not in powers:
                    powers[index] = (await self._chain(self.chain.station, index))[1]
                c["power_w"] = powers[index]
            if station is not None and station.chain_station is None \
                    and station.host_address is None:
                power = int(station.max_power_w or watts(DEFAULT_STATION_POWER_KW))
                await self._renew()
                index = await self._chain(self.chain.register_station, power)

                async def remember(tx: Tx, sid: str = station.id, idx: int = index) -> None:
                    st = await tx.get_station(sid)
                    if st is not None and st.chain_station is None:
                        st.chain_station = idx
                        await tx.update_station(st)

                await self.repo.unit(remember)
                station.chain_station = index
                c["power_w"] = powers[index] = power
                log.info("= station %s registered on chain as %d (hosted by the operator)",
                         station.id, index)

    async def _prepare(self, tx: Tx, session_id: int, info: dict[str, Any],
                       power_w: int | None = None,
                       payee: tuple[str, int] | None = None,
                       signed: Authorization | ValueError | None = None) -> _Prepared | str:
        """The record of a queued session (without ledger and sequence number), or why it
        cannot be settled now: "hold:<flag>" (held for an operator), "wait" (its host has
        not registered the station on chain yet). ``payee``: the host and station index it
        is paid to (the index its driver signed, or its station's host when it completed),
        else the station's now. ``signed``: its driver's stored authorization as
        :meth:`_candidates` read it (None: none; a ValueError: one that does not read)."""
        session = await tx.get_session(session_id)
        if session is None or session.stopped_at is None:
            return "hold:not_settleable"
        state = billing_state(session)
        if state not in (BillingState.QUEUED, BillingState.RELEASED):
            # held (or decided) since it was queued: not this chunk's, and not a reason to
            # fail the whole cut, whose other sessions are settleable
            return f"out:{state}"
        station = await tx.get_station(session.station_id)
        if station is None:
            return "hold:not_settleable"
        if payee is None and station.chain_station is None:
            return "wait"
        tariff = await tx.find_tariff(session.station_id, session.started_at)
        if tariff is None:
            return "hold:no_tariff"
        if self.billing.refuses(tariff) is not None:
            # its price is in the tariff's minor units, which the chain would take as
            # billing units (decimals 3: ten times over): held, whatever an operator's
            # release said (the tariff is the session's for good: rejected, in the end)
            return "hold:tariff_unit_mismatch"
        energy = session.energy_wh or 0
        # whole seconds, rounded up: the price and the on-chain check use the same duration
        duration = max(0, math.ceil((session.stopped_at - session.started_at).total_seconds()))
        tariff_price = price_minor(tariff, energy, duration)
        # a driver's escrow pays at most the session's limit (a station may deliver past the
        # stop asked for): the limit, not the tariff's price the contract refuses whole
        limit = session.limit_minor
        price = tariff_price if limit is None else min(tariff_price, limit)
        if energy >= 2 ** LIMITS["energy_wh"] or duration >= 2 ** LIMITS["duration_s"] \
                or price >= 2 ** LIMITS["price_minor"]:
            return "hold:not_settleable"
        if power_w is not None and not within_station_power(energy, duration, power_w):
            # the contract would refuse it for good (unpaid): held for an operator, who
            # may see the host register the station's real power, then release it
            return "hold:energy_above_max_power"
        # the signature as the contract reads it (EIP-2098's compact form holds only this
        # one of its encodings), and the record carries the one the chain checks
        auth: Authorization | None = None
        unread = isinstance(signed, ValueError)
        if isinstance(signed, Authorization):
            try:
                auth = signed.canonical()
            except ValueError:
                unread = True
        if unread:
            # a stored signature no encoding reads (a database edited by hand): held, not
            # a cut that raises on every pass with every host's sessions behind it
            return "hold:bad_authorization"
        card = None if auth else await card_of_session(tx, session)
        driver = auth.driver.lower() if auth else (card["driver"] if card else None)
        samples = [sample_json(s) for s in await tx.session_samples(session_id)]
        host, chain_station = payee if payee is not None else (
            station.host_address or self.chain.operator.address, station.chain_station)
        record: dict[str, Any] = {
            "ledger": None, "seq": None, "session_id": session_id,
            "station_id": session.station_id, "chain_station": chain_station,
            "host": host.lower(), "connector_id": session.connector_id,
            "evse_id": session.evse_id, "id_tag": session.id_tag,
            "ocpp_version": session.ocpp_version, "transaction_id": session.transaction_id,
            "started_at": session.started_at.astimezone(UTC).isoformat(),
            "stopped_at": session.stopped_at.astimezone(UTC).isoformat(),
            "duration_s": duration,
            "meter_start_wh": str(session.meter_start_wh),
            "meter_stop_wh": str(session.meter_stop_wh),
            "energy_wh": energy, "price_minor": price, "currency": tariff.currency,
            "decimals": tariff.decimals, "unit": int(info["unit"]),
            "tariff": {"id": tariff.id, "version": tariff.version,
                       "per_kwh": str(tariff.per_kwh), "per_minute": str(tariff.per_minute),
                       "session_fee": str(tariff.session_fee)},
            "stop_reason": session.stop_reason,
            "samples_hash": "0x" + samples_hash(samples).hex(),
            "driver": driver, "driver_index": self._driver_index.get(driver or "", 0),
            "kind": SIGNED if auth else CARD,
            "authorization": auth.as_json() if auth else None,
            "card_commitment": card["commitment"] if card else None,
        }
        if price < tariff_price:
            record["limit_minor"] = limit  # the verifiers check the price against it
        if any(s["signed"] for s in samples):
            keys = [r["public_key"] for r in await tx.signed_readings(session_id)
                    if r["public_key"]]
            if not keys:
                pinned = (await session_meter_key(tx, session.station_id, session.evse_id)).key
                keys = [pinned] if pinned else []
            record["meter_public_key"] = keys[0] if keys else None
        tariff_fields = (tariff.currency, tariff.id, tariff.version)
        await tx.set_session_settlement(session_id, price_minor=price,
                                        currency=tariff_fields[0], tariff_id=tariff_fields[1],
                                        tariff_version=tariff_fields[2])
        return _Prepared(session_id, record, samples, auth)

    async def _hold(self, tx: Tx, session_id: int, flag: str) -> None:
        """Take a session out of the queue for an operator's decision (csms sessions ...)."""
        session = await tx.get_session(session_id)
        await tx.dequeue_settlement(session_id)
        if session is None:
            return
        check_billing_transition(billing_state(session), BillingState.HELD)
        # an operator's earlier release is used up: the session waits for a new decision
        session.flags = [f for f in session.flags if f != BillingState.RELEASED]
        session.flag(flag)
        await tx.update_session(session)
        await tx.add_station_event(session.station_id, "billing_hold",
                                   {"session_id": session_id, "flags": session.flags}, _now())
        log.warning("! session %s held from settlement: %s", session_id, flag)

    async def _out_of_queue(self, tx: Tx, session_id: int, state: str) -> None:
        """A queued session whose billing is no longer queued (a hold flag came since, or an
        operator decided): out of the queue; an operator's release queues it again."""
        await tx.dequeue_settlement(session_id)
        session = await tx.get_session(session_id)
        if session is not None and state == BillingState.HELD:
            await tx.add_station_event(session.station_id, "billing_hold",
                                       {"session_id": session_id, "flags": session.flags},
                                       _now())
        log.warning("! session %s left the settlement queue: its billing is %s", session_id,
                    state)

    # -- held sessions' deadlines -----------------------------------------------------
    async def check_hold_deadlines(self) -> int:
        """Keep the contract's notice period in the ledger values (where ``csms sessions``
        and the console read it), and warn once of each held session within
        ``HOLD_DEADLINE_WARNING`` of its time to be decided by, once more when that time
        has passed: a log line and a ``hold_deadline`` station event, the session flagged
        so that no pass, of this worker or another, warns of it again. Returns how many
        warnings it gave."""
        notice = int((await self._info())["notice_period"])
        if await self.repo.read(lambda tx: tx.ledger_value(NOTICE_PERIOD)) != str(notice):

            async def keep(tx: Tx) -> bool:
                if not await hold_lease(tx, LEASE, self.holder, self.lease_ttl):
                    return False
                await tx.set_ledger_value(NOTICE_PERIOD, str(notice))
                return True

            if not await self.repo.unit(keep):
                raise await self._lost()
        due: list[int] = []
        now = _now()
        cursor: int | None = None
        while True:

            async def held(tx: Tx, before: int | None = cursor) -> list[Session]:
                # those warned that their time passed are due nothing more
                return await tx.held_sessions(before, HOLD_SCAN, without=DEADLINE_PASSED)

            chunk = await self.repo.read(held)
            for session in chunk:
                if session.id is not None and _deadline_warning(
                        session, decide_by(session, notice), now) is not None:
                    due.append(session.id)
            if len(chunk) < HOLD_SCAN:
                break
            cursor = chunk[-1].id
        warned = 0
        for session_id in due:

            async def warn(tx: Tx, sid: int = session_id,
                           ) -> tuple[Session, datetime, str] | bool:
                """The session warned of, False when this worker no longer holds the
                lease, True when there is nothing to warn of any more."""
                if not await hold_lease(tx, LEASE, self.holder, self.lease_ttl):
                    return False
                session = await tx.get_session(sid)
                if session is None:
                    return True
                # as it is now: decided, or warned of by another worker, since it was read
                at = decide_by(session, notice)
                warning = _deadline_warning(session, at, now)
                if warning is None or at is None:
                    return True
                session.flag(warning)
                await tx.update_session(session)
                await tx.add_station_event(session.station_id, "hold_deadline", {
                    "session_id": sid, "decide_by": at.astimezone(UTC).isoformat(),
                    "passed": warning == DEADLINE_PASSED}, now)
                return session, at, warning

            done = await self.repo.unit(warn)
            if done is False:
                raise await self._lost()
            if done is True:
                continue
            assert not isinstance(done, bool)
            session, at, warning = done
            warned += 1
            if warning == DEADLINE_PASSED:
                log.warning("! session %s of station %s is held past its decision deadline"
                            " %s: the driver's notice period may have run out, releasing it may"
                            " leave the host unpaid (the driver may have withdrawn or lowered"
                            " the terms)", session.id, session.station_id,
                            at.astimezone(UTC).isoformat())
            else:
                log.warning("! session %s of station %s is held: decide by %s (release or"
                            " reject it), when the driver's notice period may run out;"
                            " released later, its host may not be paid", session.id,
                            session.station_id, at.astimezone(UTC).isoformat())
        return warned

    async def _check_holds_now(self) -> None:
        """:meth:`check_hold_deadlines`, at most every ``HOLD_CHECK_EVERY_S`` of a
        running worker (it reads every held session not yet warned that its time passed)."""
        at = asyncio.get_running_loop().time()
        if self._holds_checked is None or at - self._holds_checked >= HOLD_CHECK_EVERY_S:
            await self.check_hold_deadlines()
            self._holds_checked = at

    async def _cut(self, tx: Tx, ledger: int, info: dict[str, Any],
                   candidates: list[dict[str, Any]]) -> int | None:
        """One chunk: records in driver order, with the ledger's next sequence numbers.
        None, with nothing cut, when this worker no longer holds the lease.

        Safe even when two workers cut at once: the lease is checked (and renewed, its row
        locked) in this transaction, and the ledger's next number is taken under a row lock
        before any session is read, so a second cut waits for this one to commit and then
        sees its sessions batched and its numbers used."""
        if not await hold_lease(tx, LEASE, self.holder, self.lease_ttl):
            return None
        first_seq = await tx.take_next_seq()
        chosen: list[_Prepared] = []
        stations: set[int] = set()
        signed = 0
        for c in candidates:
            prepared = await self._prepare(tx, c["session_id"], info, c.get("power_w"),
                                           c.get("payee"), c.get("signed"))
            if isinstance(prepared, str):
                if prepared.startswith("hold:"):
                    await self._hold(tx, c["session_id"], prepared.removeprefix("hold:"))
                elif prepared.startswith("out:"):
                    await self._out_of_queue(tx, c["session_id"], prepared.removeprefix("out:"))
                continue  # "wait": stays queued until its host registers the station
            station = int(prepared.record["chain_station"])
            if len(stations | {station}) > MAX_STATIONS or \
                    signed + (prepared.auth is not None) > MAX_AUTHS:
                break  # the rest goes into the next chunk
            stations.add(station)
            signed += prepared.auth is not None
            chosen.append(prepared)
        if not chosen:
            return 0
        # driver runs: the contract reads and writes each driver's escrow once per run
        chosen.sort(key=lambda p: (p.record["driver_index"], p.record["chain_station"],
                                   p.session_id))
        slots: dict[int, int] = {}
        entries: list[tuple[bytes, int]] = []
        items: list[tuple[int, dict[str, Any], list[Any], str, str]] = []
        auths: list[list[Any]] = []
        for n, p in enumerate(chosen):
            p.record["ledger"], p.record["seq"] = str(ledger), first_seq + n
            slot = slots.setdefault(int(p.record["chain_station"]), len(slots))
            try:
                rhash, packed = entry_of(p.record, slot)
            except EntryTooLarge:
                raise AssertionError("checked in _prepare") from None
            entries.append((rhash, packed))
            items.append((p.session_id, p.record, p.samples, "0x" + rhash.hex(), hex(packed)))
            if p.auth is not None:
                r, vs = p.auth.compact_signature()
                auths.append([hex(p.auth.packed()), "0x" + r.hex(), "0x" + vs.hex()])
        digest = chunk_digest(ledger, first_seq, entries)
        batch_id = await tx.insert_batch(
            state=BatchState.PENDING.value, root="0x" + digest.hex(), count=len(entries),
            chain_id=self.chain.chain_id, contract=self.chain.contract_address,
            deploy_tx=self.chain.deploy_tx, ledger=ledger,
            first_seq=first_seq, entries=[["0x" + h.hex(), hex(p)] for h, p in entries],
            auths=auths, at=_now())
        await tx.insert_batch_items(batch_id, items)
        for p in chosen:
            await tx.set_session_settlement(p.session_id, settlement_state="batched",
                                            seq=int(p.record["seq"]))
            await tx.dequeue_settlement(p.session_id)
        await tx.set_ledger_value("next_seq", str(first_seq + len(entries)))
        await self._event(tx, "pending", batch_id, {"count": len(entries)})
        return len(entries)

    async def _event(self, tx: Tx, state: str, batch_id: int, extra: dict[str, Any]) -> None:
        if self.publish_events:
            await tx.add_outbox(f"voltledger/settlement/{state}",
                                {"batch_id": batch_id, "state": state, **extra}, _now())

    # -- the state machine -------------------------------------------------------------
    async def _move(self, batch: dict[str, Any], new: BatchState,
                    unpaid: dict[int, int] | None = None, **fields: Any) -> None:
        check_transition(BatchState(batch["state"]), new)

        async def work(tx: Tx) -> bool:
            if not await hold_lease(tx, LEASE, self.holder, self.lease_ttl):
                return False
            if not await tx.update_batch(batch["id"], batch["state"], state=new.value,
                                         updated_at=_now().isoformat(), **fields):
                raise RuntimeError(f"batch {batch['id']} changed under us")
            if new is BatchState.FINALIZED:
                by_seq = {int(json.loads(i["record"])["seq"]): int(i["session_id"])
                          for i in await tx.batch_items(batch["id"])}
                await tx.set_batch_sessions(batch["id"], "paid", {
                    by_seq[seq]: reason for seq, reason in (unpaid or {}).items()
                    if seq in by_seq})
            elif new is BatchState.CONFLICT:
                await tx.set_batch_sessions(batch["id"], "conflict", {})
            elif batch["state"] == BatchState.FINALIZED.value:
                # reorganised away: not paid (nor refused) until the chain settles it again
                await tx.set_batch_sessions(batch["id"], "batched", {})
                for item in await tx.batch_items(batch["id"]):
                    await tx.set_session_settlement(int(item["session_id"]),
                                                    unpaid_reason=None)
            await self._event(tx, new.value, batch["id"],
                              {"tx_hash": fields.get("tx_hash", batch.get("tx_hash"))})
            return True

        if not await self.repo.unit(work):
            raise await self._lost()
        log.info("= batch %s: %s -> %s", batch["id"], batch["state"], new.value)
        batch.update(fields, state=new.value)

    async def _open_batches(self) -> list[dict[str, Any]]:
        async def work(tx: Tx) -> list[dict[str, Any]]:
            return await tx.open_batches(FINAL_STATES)

        return await self.repo.read(work)

    async def _next_nonce(self) -> int:
        async def work(tx: Tx) -> int | None:
            return await tx.highest_batch_nonce(self.chain.chain_id, (
                BatchState.SIGNED.value, BatchState.BROADCAST.value, BatchState.INCLUDED.value))

        ours = await self.repo.read(work)
        node = int(await self._chain(self.chain.next_nonce))
        return node if ours is None else max(node, ours + 1)

    @staticmethod
    def _args(batch: dict[str, Any]) -> tuple[int, int, list[tuple[bytes, int]],
                                              list[tuple[int, bytes, bytes]]]:
        entries = [(bytes.fromhex(h[2:]), int(p, 16)) for h, p in json.loads(batch["entries"])]
        auths = [(int(p, 16), bytes.fromhex(r[2:]), bytes.fromhex(vs[2:]))
                 for p, r, vs in json.loads(batch["auths"] or "[]")]
        return int(batch["ledger"]), int(batch["first_seq"]), entries, auths

    async def _on_chain(self, batch: dict[str, Any]) -> str:
        """What the chain holds for this batch's sequence numbers: "ours", "other" or
        "none" (not settled yet)."""
        ledger, first_seq = int(batch["ledger"]), int(batch["first_seq"])
        chain_next = await self._chain(self.chain.ledger_next, ledger)
        if chain_next <= first_seq:
            return "none"
        digest = await self._chain(self.chain.chunk_digest, ledger, first_seq)
        return "ours" if digest == batch["root"] else "other"

    async def _found(self, batch: dict[str, Any]) -> None:
        """The chain settled this chunk in a transaction we may not know: record it."""
        found = await self._chain(self.chain.find_settlement, int(batch["ledger"]),
                                  int(batch["first_seq"]))
        if found is None:
            # the contract holds the chunk, the node shows no transaction that settled it: a
            # node whose logs lag its state (behind a load balancer), or a local node that
            # lost its latest blocks but not their state. Which sessions it paid is in that
            # transaction's event only: the batch waits, asked again at the next pass
            raise ChainError(
                f"batch {batch['id']}: the contract holds chunk {batch['first_seq']} of ledger"
                f" {batch['ledger']} as this database's, but the node shows no Settled event"
                " for it; the sessions it paid are not known until one does")
        tx_hash, number, block_hash = found
        receipt = await self._chain(self.chain.receipt, tx_hash)
        await self._move(batch, BatchState.INCLUDED, tx_hash=tx_hash, block_number=number,
                         block_hash=block_hash,
                         gas_used=receipt.gas_used if receipt else None)

    async def _conflict(self, batch: dict[str, Any]) -> None:
        error = (f"the chain holds another chunk for sequence numbers {batch['first_seq']}..."
                 f"{int(batch['first_seq']) + int(batch['count']) - 1} of ledger"
                 f" {batch['ledger']}: this database is a restored backup or a copy; its"
                 " sessions are not settled again")
        log.error("! batch %s: %s", batch["id"], error)
        await self._move(batch, BatchState.CONFLICT, error=error)

    async def step(self, batch: dict[str, Any]) -> None:
        state = BatchState(batch["state"])
        chain = self.chain
        if state is BatchState.PENDING:
            held = await self._on_chain(batch)
            if held == "ours":
                await self._found(batch)
                return
            if held == "other":
                await self._conflict(batch)
                return
            ledger, first_seq, entries, auths = self._args(batch)
            if await self._chain(chain.ledger_next, ledger) != first_seq:
                return  # an earlier chunk of the ledger is not settled yet
            max_fee, tip = await self._chain(chain.fees)
            gas = await self._chain(chain.settle_gas, ledger, first_seq, entries, auths)
            nonce = await self._next_nonce()
            raw, tx_hash = await self._chain(chain.sign_settle, ledger, first_seq, entries,
                                             auths, nonce, max_fee, tip, gas)
            await self._move(batch, BatchState.SIGNED, raw_tx=raw, tx_hash=tx_hash, nonce=nonce,
                             max_fee=str(max_fee), priority_fee=str(tip))
            self._hook("after_sign", batch["id"])
        elif state is BatchState.SIGNED:
            if await self._on_chain(batch) == "other":
                await self._conflict(batch)
                return
            if not await self._broadcast(batch):
                return
            await self._move(batch, BatchState.BROADCAST, broadcast_at=_now().isoformat())
            self._hook("after_broadcast", batch["id"])
        elif state is BatchState.BROADCAST:
            hashes = [batch["tx_hash"], *json.loads(batch["replaced"] or "[]")]
            for h in hashes:
                receipt = await self._chain(chain.receipt, h)
                if receipt is None:
                    continue
                if receipt.status == 1:
                    await self._move(batch, BatchState.INCLUDED, tx_hash=h,
                                     block_number=receipt.block_number,
                                     block_hash=receipt.block_hash, gas_used=receipt.gas_used)
                    self._hook("after_include", batch["id"])
                    return
                held = await self._on_chain(batch)
                if held == "ours":
                    await self._found(batch)
                elif held == "other":
                    await self._conflict(batch)
                else:  # reverted, nothing settled: sign it again with a new nonce
                    log.warning("! batch %s: settle transaction %s reverted; signing again",
                                batch["id"], h)
                    await self._move(batch, BatchState.PENDING, error=f"{h} reverted")
                return
            held = await self._on_chain(batch)
            if held == "ours":
                await self._found(batch)
                return
            if held == "other":
                await self._conflict(batch)
                return
            # Not mined (yet): maybe dropped from the node's pool or reorganised away.
            # Sending the same raw transaction again is harmless when the node knows it.
            if not await self._broadcast(batch):
                return
            age = (_now() - datetime.fromisoformat(batch["broadcast_at"])).total_seconds()
            if age >= self.stuck_after:
                await self._replace(batch)
        elif state is BatchState.INCLUDED:
            current = await self._chain(chain.block_hash, batch["block_number"])
            if current != batch["block_hash"]:
                log.warning("! batch %s: block %s was reorganised away", batch["id"],
                            batch["block_number"])
                await self._move(batch, BatchState.BROADCAST, block_number=None,
                                 block_hash=None, broadcast_at=_now().isoformat())
                return
            head = await self._chain(chain.block_number)
            if head - batch["block_number"] + 1 >= self.confirmations:
                settled = await self._chain(chain.settled, batch["tx_hash"])
                unpaid = settled.unpaid if settled is not None else {}
                await self._move(batch, BatchState.FINALIZED, unpaid=unpaid)

    # -- finalized batches the chain lost ----------------------------------------------
    async def _in_recorded_block(self, batch: dict[str, Any]) -> bool:
        """Whether a batch's settle transaction succeeded in the block the database
        recorded (its receipt by hash)."""
        receipt = await self._chain(self.chain.receipt, batch["tx_hash"])
        return receipt is not None and receipt.status == 1 \
            and receipt.block_hash == batch["block_hash"]

    async def _recheck_finalized(self, ledger: int, chain_next: int, waiting: int) -> None:
        """A batch from sequence number ``waiting`` waits for ``chain_next``, which the
        chain does not hold and no open batch settles: re-check the ledger's finalized
        batches before it against the chain, the latest first, down to one the chain holds
        as recorded (a reorganisation takes the latest blocks: those before it are kept).
        One the chain lost goes back to broadcast (its sessions batched, no receipt for
        them meanwhile): its stored transaction is sent again, or signed again with a new
        nonce if the operator key used that one since; one the chain holds in another block
        is found there without sending anything. The contract takes each sequence number
        once, so no session is paid twice whatever this finds."""
        now = asyncio.get_running_loop().time()
        last = self._rechecked.get(ledger)
        if last is not None and last[0] == chain_next and now - last[1] < RECHECK_EVERY_S:
            return
        self._rechecked[ledger] = (chain_next, now)

        async def finalized(tx: Tx) -> list[int]:
            return [int(b["id"]) for b in reversed(await tx.ledger_batches(ledger))
                    if b["state"] == BatchState.FINALIZED.value
                    and int(b["first_seq"]) < waiting]

        found = False  # a batch of the database for the chain's next sequence number
        for batch_id in await self.repo.read(finalized):

            async def load(tx: Tx, batch_id: int = batch_id) -> dict[str, Any] | None:
                return await tx.get_batch(batch_id)

            batch = await self.repo.read(load)
            if batch is None or batch["state"] != BatchState.FINALIZED.value:
                continue
            # as recorded: the contract holds its chunk (its root at its first sequence
            # number) and its transaction succeeded in the recorded block
            held = await self._on_chain(batch)
            if held == "ours" and await self._in_recorded_block(batch):
                break
            first, count = int(batch["first_seq"]), int(batch["count"])
            found = found or first <= chain_next < first + count
            if held == "ours":  # re-included elsewhere: found there again, nothing sent
                error = (f"finalized in block {batch['block_number']}, the chain holds it"
                         " in another block since a reorganisation")
                log.warning("! batch %s (sequence numbers %s..%s of ledger %s): %s; its"
                            " sessions are unsettled until it is final there", batch["id"],
                            first, first + count - 1, ledger, error)
            else:
                error = (f"finalized in block {batch['block_number']} by {batch['tx_hash']},"
                         " the chain no longer holds it (its next sequence number of the"
                         f" ledger is {chain_next}): a reorganisation deeper than"
                         f" {self.confirmations} confirmations")
                log.error("! batch %s (sequence numbers %s..%s of ledger %s): %s; its"
                          " sessions are unsettled until the chain settles it again",
                          batch["id"], first, first + count - 1, ledger, error)
            await self._move(batch, BatchState.BROADCAST, block_number=None, block_hash=None,
                             broadcast_at=_now().isoformat(), error=error)
        if not found:
            log.error("! batches of ledger %s from sequence number %s wait for number %s,"
                      " which neither the chain nor a batch of this database settles",
                      ledger, waiting, chain_next)

    async def _broadcast(self, batch: dict[str, Any]) -> bool:
        """Send the batch's signed transaction. False when its nonce went to another
        transaction of the operator key (the key used elsewhere meanwhile): it can never be
        mined, so the batch goes back to pending and is signed again with a new nonce."""
        await self._renew()
        try:
            await self._chain(self.chain.broadcast, batch["raw_tx"])
            return True
        except ChainError:
            if await self._chain(self.chain.mined_nonce) <= int(batch["nonce"]):
                raise  # the node refused it for another reason: tried again next pass
        held = await self._on_chain(batch)
        if held == "ours":  # one of its replacements was mined
            await self._found(batch)
        elif held == "other":
            await self._conflict(batch)
        else:
            log.warning("! batch %s: nonce %s was used by another transaction of the operator"
                        " key; signing again", batch["id"], batch["nonce"])
            await self._move(batch, BatchState.PENDING, error=f"nonce {batch['nonce']} taken")
        return False

    async def _replace(self, batch: dict[str, Any]) -> None:
        """Stuck: the same nonce re-signed with fees bumped by 25% (nodes want >= 10%)."""
        max_fee = int(batch["max_fee"]) * 5 // 4 + 1
        tip = int(batch["priority_fee"]) * 5 // 4 + 1
        base_fee, _ = await self._chain(self.chain.fees)
        max_fee = max(max_fee, base_fee + tip)
        ledger, first_seq, entries, auths = self._args(batch)
        gas = await self._chain(self.chain.settle_gas, ledger, first_seq, entries, auths)
        raw, tx_hash = await self._chain(self.chain.sign_settle, ledger, first_seq, entries,
                                         auths, batch["nonce"], max_fee, tip, gas)
        replaced = [*json.loads(batch["replaced"] or "[]"), batch["tx_hash"]]
        log.warning("! batch %s stuck: replacing %s with %s (fees +25%%)", batch["id"],
                    batch["tx_hash"], tx_hash)
        await self._move(batch, BatchState.SIGNED, raw_tx=raw, tx_hash=tx_hash,
                         max_fee=str(max_fee), priority_fee=str(tip),
                         replaced=json.dumps(replaced))

    def _hook(self, name: str, batch_id: int) -> None:
        hook = self.hooks.get(name)
        if hook is not None:
            hook(batch_id)

    async def advance(self) -> int:
        """One step for every open batch; returns how many are still open."""
        await self._acquire()
        await self._chain(self.chain.check_contract)
        await self._check_contract()
        batches = await self._open_batches()
        next_seq: dict[int, int] = {}  # the chain's next sequence number, per ledger
        for batch in batches:
            ledger = int(batch["ledger"])
            if batch["state"] == BatchState.PENDING.value:
                if ledger not in next_seq:
                    next_seq[ledger] = await self._chain(self.chain.ledger_next, ledger)
                if next_seq[ledger] == 0:  # never a reorganisation: registered before a cut
                    raise self._unknown_ledger(ledger,
                                               int(batch["first_seq"]) + int(batch["count"]))
                if next_seq[ledger] < int(batch["first_seq"]):
                    # an earlier chunk of its ledger is not settled yet: one an open batch
                    # settles, else one this database holds as finalized that the chain
                    # lost (a reorganisation deeper than the confirmations)
                    if not any(int(b["ledger"]) == ledger
                               and int(b["first_seq"]) == next_seq[ledger] for b in batches):
                        await self._recheck_finalized(ledger, next_seq[ledger],
                                                      int(batch["first_seq"]))
                    continue
            # as far forward as it goes now (a fast chain: signed, sent, included and final
            # in one pass); a step back (replaced, reverted, reorganised) waits a pass
            while True:
                before = FORWARD.get(batch["state"], -1)
                await self.step(batch)
                if FORWARD.get(batch["state"], -1) <= before:
                    break
            if self._on_progress is not None and batch["state"] == BatchState.FINALIZED.value:
                self._progress.sessions_settled += int(batch["count"])
            next_seq.pop(ledger, None)
        if self._on_progress is not None:
            self._progress.waiting = sum(1 for b in batches
                                         if b["state"] == BatchState.INCLUDED.value)
            self._on_progress(self._progress)
        return sum(1 for b in batches if b["state"] not in FINAL_STATES)

    # -- one worker per database: the settlement lease ---------------------------------
    async def _lease(self) -> bool:
        """Take the lease, or renew it (free, expired or ours by the database's clock)."""

        async def work(tx: Tx) -> bool:
            return await acquire_lease(tx, LEASE, self.holder, self.lease_ttl)

        return bool(await self.repo.unit(work))

    async def _acquire(self) -> None:
        """The start of a step: the lease taken or renewed, or :class:`LeaseHeld`. Not
        written again within a sixth of its time of the last take (``_drive`` steps every
        0.05 s: 20 writes a second): every write of a step checks the lease in its own
        transaction (``hold_lease``), and a send on chain renews it first (:meth:`_renew`)."""
        now = time.monotonic()
        if self._acquired_at is not None \
                and now - self._acquired_at < self.lease_ttl.total_seconds() / 6:
            return
        if not await self._lease():
            self._acquired_at = None
            raise LeaseHeld(await self._holder() or "another worker")
        self._acquired_at = now

    async def _renew(self) -> None:
        """Before a write outside the database (a transaction sent, a registration): the
        lease renewed, or the pass stops (:class:`LeaseLost`)."""

        async def work(tx: Tx) -> bool:
            return await hold_lease(tx, LEASE, self.holder, self.lease_ttl)

        if not await self.repo.unit(work):
            raise await self._lost()

    async def _lost(self) -> LeaseLost:
        self._acquired_at = None
        lost = LeaseLost(self.holder, await self._holder())
        log.warning("! %s", lost)
        return lost

    async def _release(self) -> None:
        self._acquired_at = None

        async def work(tx: Tx) -> None:
            await release_lease(tx, LEASE, self.holder)

        with contextlib.suppress(Exception):
            await self.repo.unit(work)

    async def _holder(self) -> str | None:
        async def work(tx: Tx) -> str | None:
            return await lease_holder(tx, LEASE)

        return await self.repo.read(work)

    async def run_once(self, timeout: float = 120.0,
                       progress: Callable[[RunProgress], None] | None = None,
                       ) -> WorkerSummary:
        """Settle everything pending now: cut it all, drive every batch to its end.
        ``progress`` is told how far it is (:class:`RunProgress`) as it goes.

        Raises :class:`LeaseHeld` while another worker (another node) settles (or
        :class:`LeaseLost`, when another takes it over in the middle), and
        :class:`LedgerBehind` when this database is behind the chain.
        """
        if not await self._lease():
            raise LeaseHeld(await self._holder() or "another worker")
        self._on_progress, self._progress = progress, RunProgress()
        try:
            return await self._run_once(timeout)
        finally:
            self._on_progress = None
            await self._release()

    async def _drive(self) -> None:
        """Step every open batch until none is left, polling the chain for receipts. Each
        round renews the lease (:meth:`advance`: while the chain is slow); a refusal stops
        the pass."""
        while await self.advance():  # noqa: ASYNC110 (the chain is polled)
            await asyncio.sleep(0.05)

    async def _run_once(self, timeout: float) -> WorkerSummary:
        summary = WorkerSummary()
        async with asyncio.timeout(timeout):
            await self._drive()  # earlier batches first (a crash may have left some)
            summary.batches_created, summary.sessions_batched = await self.build_batches(
                force=True)
            await self._drive()
            await self.check_hold_deadlines()

        async def totals(tx: Tx) -> tuple[int, int]:
            return await tx.batch_totals(BatchState.FINALIZED.value)

        summary.finalized, summary.gas_used = await self.repo.read(totals)
        return summary

    async def run_forever(self, stop: asyncio.Event, interval: float = 1.0,
                          on_step: Callable[[BaseException | None], None] | None = None,
                          ) -> None:
        """Settle until ``stop``: only while holding the lease, so one worker per database.

        ``on_step`` hears of every step (None, or the error of a failed one); failed
        steps are retried with backoff (up to 30 s) until the database or chain is back.
        """
        leading = False
        failures = 0
        try:
            while not stop.is_set():
                try:
                    held = await self._lease()
                    if held != leading:
                        leading = held
                        log.info("= settlement worker %s: %s", self.holder,
                                 "holds the lease, settling" if held else "standing by")
                    if held:
                        await self.advance()
                        await self.build_batches()
                        await self.advance()
                        await self._check_holds_now()
                    failures = 0
                    if on_step is not None:
                        on_step(None)
                except LeaseHeld as exc:  # lost in the middle of the pass: stand by
                    if leading:
                        log.warning("= settlement worker %s: standing by (%s)", self.holder,
                                    exc)
                    leading = False
                    if on_step is not None:
                        on_step(None)
                except LedgerBehind as exc:  # a restored backup: an operator must act
                    failures += 1
                    log.error("! %s", exc)
                    if on_step is not None:
                        on_step(exc)
                except Exception as exc:  # the chain may be down: sessions wait, settle later
                    failures += 1
                    log.exception("! settlement step failed; retrying")
                    if on_step is not None:
                        on_step(exc)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(),
                                           min(interval * 2 ** min(failures, 8), 30.0))
        finally:
            if leading:
                await self._release()

