"""A driver's exposure (``driver_exposure``), on SQLite and on PostgreSQL: the sessions of
its linked cards and its signed app sessions, and its authorizations not yet started; a
session in progress its station has sent nothing for since ``SILENT_GRACE_S`` holds none
of it."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from csms.domain.model import Session, SessionStatus, Station
from csms.service.ports import Repository, Tx
from csms.storage.settlement_sql import EXPIRED_GRACE_S, SILENT_GRACE_S
from csms.storage.sql import dt_to_db

T0 = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
# the clock of the sessions' last update (written at each update, by the database's host)
NOW = int(time.time())
DRIVER = "0x" + "ab" * 20
OTHER = "0x" + "cd" * 20


def _session(transaction_id: str, tag: str, **kw: Any) -> Session:
    return Session(station_id="CP1", ocpp_version="ocpp1.6", transaction_id=transaction_id,
                   started_at=T0, connector_id=1, evse_id=1, id_tag=tag,
                   auth_status="Accepted", meter_start_wh=Decimal(0),
                   reported_meter_start_wh=Decimal(0), **kw)


async def _authorize(tx: Tx, driver: str, tag: str, nonce: int, max_amount: int,
                     expiry: int = NOW + 3600, remote_start_id: int | None = None) -> int:
    body = {"driver": driver, "max_amount": max_amount, "nonce": nonce, "expiry": expiry}
    return await tx.add_authorization(driver, "CP1", tag, body, nonce, expiry, T0,
                                      remote_start_id)


async def test_exposure_counts_cards_signed_sessions_and_waiting_authorizations(
    repo: Repository,
) -> None:
    async def setup(tx: Tx) -> None:
        await tx.insert_station(Station(id="CP1", created_at=T0))
        await tx.link_card("CARD", "0x" + "AB" * 20, "0x00", "0x00", T0)  # stored lower
        await tx.link_card("ELSE", OTHER, "0x00", "0x00", T0)
        # the card's: one in progress, one completed unpriced, one priced not settled,
        # one paid (not at stake any more)
        await tx.insert_session(_session("1", "CARD"))
        for txid, price, state in (("2", None, None), ("3", 700, "queued"),
                                   ("4", 900, "paid")):
            s = _session(txid, "CARD")
            await tx.insert_session(s)
            s.status = SessionStatus.COMPLETED
            s.stopped_at = T0
            await tx.update_session(s)
            assert s.id is not None
            if price is not None:
                await tx.set_session_settlement(s.id, price_minor=price,
                                                settlement_state=state)
        # a signed app session in progress, with its own token, bound to the driver
        app = _session("5", "APP1")
        await tx.insert_session(app)
        await tx.remote_start_accepted(await _authorize(tx, DRIVER, "APP1", 1, 5_000),
                                       NOW + 60)
        assert app.id is not None
        assert await tx.bind_authorization("CP1", "APP1", app.id, NOW) is not None
        # accepted and not started: counted at its limit (kept without one: its amount)
        await _authorize(tx, DRIVER, "APP2", 2, 500)
        await _authorize(tx, DRIVER, "APP3", 3, 9_000)
        await _authorize(tx, DRIVER, "OLD", 4, 9_000, expiry=NOW - 1)  # expired
        # another driver's
        await tx.insert_session(_session("6", "ELSE"))
        await _authorize(tx, OTHER, "APP9", 1, 9_000)

    await repo.unit(setup)
    exposure = await repo.read(lambda tx: tx.driver_exposure(DRIVER, NOW, 2_000))
    # no session has a limit: each counts at the reserve; the authorizations were kept
    # without one: each at its maximum amount
    assert exposure == {"active": 2, "unpriced": 1, "in_flight_minor": 0, "unlimited": 3,
                        "pending_minor": 700, "authorized": 2, "authorized_minor": 9_500}
    other = await repo.read(lambda tx: tx.driver_exposure(OTHER, NOW, 2_000))
    assert other == {"active": 1, "unpriced": 0, "in_flight_minor": 0, "unlimited": 1,
                     "pending_minor": 0, "authorized": 1, "authorized_minor": 9_000}
    nobody = await repo.read(lambda tx: tx.driver_exposure("0x" + "00" * 20, NOW, 2_000))
    assert nobody == {"active": 0, "unpriced": 0, "in_flight_minor": 0, "unlimited": 0,
                      "pending_minor": 0, "authorized": 0, "authorized_minor": 0}


async def test_only_the_start_an_authorization_was_accepted_for_binds_it(
    repo: Repository,
) -> None:
    """1.6: by station and tag once the station accepted the remote start, within its
    window; 2.0.1: by the remoteStartId sent, answered or not yet; never once withdrawn
    (the remote start failed). Withdrawn and lapsed ones hold none of the driver's escrow."""
    async def setup(tx: Tx) -> dict[str, int]:
        await tx.insert_station(Station(id="CP1", created_at=T0))
        ids = {}
        for nonce, tag in enumerate(("SENT", "LAPSED", "GONE", "OK16"), start=1):
            ids[tag] = await _authorize(tx, DRIVER, tag, nonce, 500)
        ids["R201"] = await _authorize(tx, DRIVER, "R201", 5, 500, remote_start_id=42)
        await tx.remote_start_accepted(ids["LAPSED"], NOW - 1)
        await tx.remote_start_accepted(ids["OK16"], NOW + 60)
        await tx.remote_start_accepted(ids["GONE"], NOW + 60)
        assert (await tx.withdraw_authorization(ids["GONE"]) or {}).get("id") == ids["GONE"]
        return ids

    ids = await repo.unit(setup)
    exposure = await repo.read(lambda tx: tx.driver_exposure(DRIVER, NOW, 2_000))
    assert (exposure["authorized"], exposure["authorized_minor"]) == (3, 1_500)

    async def binds(tx: Tx) -> dict[str, bool]:
        found = {}
        for tag in ("SENT", "LAPSED", "GONE", "OK16"):
            found[tag] = await tx.pending_authorization("CP1", tag, NOW) is not None
        for rid in (None, 41, 42):
            found[f"R201/{rid}"] = await tx.pending_authorization(
                "CP1", "R201", NOW, rid) is not None
        found["R201/authorize"] = await tx.pending_authorization(
            "CP1", "R201", NOW, any_remote_start=True) is not None
        found["OK16/elsewhere"] = await tx.pending_authorization("CP2", "OK16",
                                                                 NOW) is not None
        return found

    assert await repo.read(binds) == {
        "SENT": False, "LAPSED": False, "GONE": False, "OK16": True, "R201/None": False,
        "R201/41": False, "R201/42": True, "R201/authorize": True, "OK16/elsewhere": False}

    async def bind(tx: Tx) -> None:
        s = _session("7", "R201")
        await tx.insert_session(s)
        assert s.id is not None
        assert await tx.bind_authorization("CP1", "R201", s.id, NOW, 41) is None
        assert (await tx.bind_authorization("CP1", "R201", s.id, NOW, 42) or {}).get("id") \
            == ids["R201"]
        # bound: its start took place, a late failure of the answer leaves it bound
        assert await tx.withdraw_authorization(ids["R201"]) is None
        assert (await tx.authorization_of(s.id) or {}).get("start_state") == "sent"

    await repo.unit(bind)


async def test_a_16_authorization_for_a_connector_binds_a_start_on_it_only(
    repo: Repository,
) -> None:
    """A 1.6 remote start that named a connector: only a start on that connector binds
    its authorization (an Authorize, which names none, still finds it); one that named
    none binds a start on any."""
    async def setup(tx: Tx) -> dict[str, int]:
        await tx.insert_station(Station(id="CP1", created_at=T0))
        body = {"driver": DRIVER, "max_amount": 500, "nonce": 1, "expiry": NOW + 3600}
        two = await tx.add_authorization(DRIVER, "CP1", "ON2", body, 1, NOW + 3600, T0,
                                          connector_id=2)
        body = {**body, "nonce": 2}
        anyone = await tx.add_authorization(DRIVER, "CP1", "ANY", body, 2, NOW + 3600, T0)
        for aid in (two, anyone):
            await tx.remote_start_accepted(aid, NOW + 60)
        return {"ON2": two, "ANY": anyone}

    ids = await repo.unit(setup)

    async def binds(tx: Tx) -> dict[str, bool]:
        return {f"{tag}/{connector}": await tx.pending_authorization(
            "CP1", tag, NOW, connector_id=connector) is not None
            for tag in ("ON2", "ANY") for connector in (None, 1, 2, -1)}

    # None: any (an Authorize names none); -1: a start on no connector that can be read
    assert await repo.read(binds) == {"ON2/None": True, "ON2/1": False, "ON2/2": True,
                                      "ON2/-1": False, "ANY/None": True, "ANY/1": True,
                                      "ANY/2": True, "ANY/-1": True}

    async def bind(tx: Tx) -> None:
        s = _session("8", "ON2")  # on connector 1
        await tx.insert_session(s)
        assert s.id is not None
        assert await tx.bind_authorization("CP1", "ON2", s.id, NOW, connector_id=1) is None
        assert (await tx.bind_authorization("CP1", "ON2", s.id, NOW, connector_id=2)
                or {}).get("id") == ids["ON2"]

    await repo.unit(bind)


async def test_sessions_in_flight_and_waiting_authorizations_count_at_their_limits(
    repo: Repository,
) -> None:
    """A session in progress or completed and not priced counts at its own limit (the
    reserve for one without); an authorization not yet started at the limit it was
    accepted with (its maximum amount for one kept without)."""
    async def setup(tx: Tx) -> None:
        await tx.insert_station(Station(id="CP1", created_at=T0))
        await tx.link_card("CARD", DRIVER, "0x00", "0x00", T0)
        await tx.insert_session(_session("1", "CARD", limit_minor=3_000))
        await tx.insert_session(_session("2", "CARD"))  # no limit: the reserve
        done = _session("3", "CARD", limit_minor=4_000)  # ended, not priced
        await tx.insert_session(done)
        done.status = SessionStatus.COMPLETED
        done.stopped_at = T0
        await tx.update_session(done)
        priced = _session("4", "CARD", limit_minor=9_000)  # priced: at its price
        await tx.insert_session(priced)
        priced.status = SessionStatus.COMPLETED
        priced.stopped_at = T0
        await tx.update_session(priced)
        assert priced.id is not None
        await tx.set_session_settlement(priced.id, price_minor=700, settlement_state="queued")
        body = {"driver": DRIVER, "max_amount": 9_000, "nonce": 1, "expiry": NOW + 3600}
        await tx.add_authorization(DRIVER, "CP1", "APP1", body, 1, NOW + 3600, T0,
                                   limit_minor=2_500)
        await _authorize(tx, DRIVER, "APP2", 2, 600)  # kept without a limit

    await repo.unit(setup)
    exposure = await repo.read(lambda tx: tx.driver_exposure(DRIVER, NOW, 2_000))
    assert exposure == {"active": 2, "unpriced": 1, "in_flight_minor": 7_000,
                        "unlimited": 1, "pending_minor": 700, "authorized": 2,
                        "authorized_minor": 3_100}


async def test_sessions_that_can_never_be_charged_count_for_nothing(repo: Repository) -> None:
    """An operator's rejection (final), a hold no operator may release (a master pass's
    start, 2.0.1 C16) and a chunk the chain holds another of (``conflict``: final in both
    state tables, never settled again; paid and unpaid are settled already) take a session
    out of what the driver may still cost. A session held and not decided, or released,
    counts at its limit, a priced one in a chunk not yet final at its price: a station
    cannot get a session of the card out of the count by having it held."""
    async def completed(tx: Tx, txid: str, limit: int, flags: list[str],
                        price: int | None = None, state: str | None = None) -> None:
        s = _session(txid, "CARD", limit_minor=limit)
        await tx.insert_session(s)
        s.status, s.stopped_at, s.flags = SessionStatus.COMPLETED, T0, flags
        await tx.update_session(s)
        assert s.id is not None
        if price is not None:
            await tx.set_session_settlement(s.id, price_minor=price, settlement_state=state)

    async def setup(tx: Tx) -> None:
        await tx.insert_station(Station(id="CP1", created_at=T0))
        await tx.link_card("CARD", DRIVER, "0x00", "0x00", T0)
        await completed(tx, "held", 1_000, ["meter_went_backwards"])
        await completed(tx, "released", 2_000, ["meter_went_backwards", "released"])
        await completed(tx, "rejected", 4_000, ["meter_went_backwards", "rejected"])
        await completed(tx, "master", 8_000, ["master_pass_start"])
        await completed(tx, "batched", 9_000, [], 10, "batched")
        await completed(tx, "conflict", 9_000, [], 20, "conflict")
        await completed(tx, "paid", 9_000, [], 40, "paid")
        await completed(tx, "unpaid", 9_000, [], 80, "unpaid")
        running = _session("master-running", "CARD", limit_minor=16_000)
        running.flags = ["master_pass_start"]
        await tx.insert_session(running)

    await repo.unit(setup)
    exposure = await repo.read(lambda tx: tx.driver_exposure(DRIVER, NOW, 2_000))
    assert exposure == {"active": 0, "unpriced": 2, "in_flight_minor": 3_000,
                        "unlimited": 0, "pending_minor": 10, "authorized": 0,
                        "authorized_minor": 0}


async def test_a_signed_session_past_its_authorizations_expiry_costs_the_driver_nothing(
    repo: Repository,
) -> None:
    """The contract pays no signed entry once its authorization expired, so a signed app
    session still in progress, or completed and not priced, an hour after that expiry can
    never cost its driver: it holds none of the escrow. Before, a station that kept such a
    session open (it never took the stop asked before the expiry) held the driver's
    escrow at its limit until an operator closed it. Within the hour it still counts (the
    chain's clock is not ours), and one priced (in a chunk) counts at its price until the
    chain settles it."""
    async def setup(tx: Tx) -> None:
        await tx.insert_station(Station(id="CP1", created_at=T0))
        for nonce, (tag, expiry, done, price) in enumerate((
                ("OPEN", NOW - 3601, False, None), ("ENDED", NOW - 3601, True, None),
                ("PRICED", NOW - 3601, True, 700), ("LATELY", NOW - 60, False, None),
                ("VALID", NOW + 3600, False, None)), start=1):
            s = _session(str(nonce), tag, limit_minor=1_000 * nonce)
            await tx.insert_session(s)
            aid = await _authorize(tx, DRIVER, tag, nonce, 5_000, expiry=expiry)
            await tx.remote_start_accepted(aid, NOW + 60)
            assert s.id is not None  # bound when it started, before its expiry
            assert await tx.bind_authorization("CP1", tag, s.id,
                                               min(NOW, expiry - 600)) is not None
            if done:
                s.status = SessionStatus.COMPLETED
                s.stopped_at = T0
                await tx.update_session(s)
            if price is not None:
                await tx.set_session_settlement(s.id, price_minor=price,
                                                settlement_state="batched")

    await repo.unit(setup)
    exposure = await repo.read(lambda tx: tx.driver_exposure(DRIVER, NOW, 2_000))
    # LATELY (limit 4,000) and VALID (5,000) in progress; PRICED at its price
    assert exposure == {"active": 2, "unpriced": 0, "in_flight_minor": 9_000, "unlimited": 0,
                        "pending_minor": 700, "authorized": 0, "authorized_minor": 0}


async def _silent_since(tx: Tx, session_id: int, seconds: int) -> None:
    """The session's last update ``seconds`` ago: its station has sent nothing for it since
    (the database's clock cannot be moved: the row is written as time would have left it)."""
    at = datetime.now(UTC) - timedelta(seconds=seconds)
    sql: Any = tx  # the SQL adapter's own statement: no port writes a row's time
    await sql.execute("UPDATE sessions SET updated_at = ? WHERE id = ?", dt_to_db(at),
                      session_id)


async def test_a_card_session_its_station_went_silent_on_stops_counting_after_the_grace(
    repo: Repository,
) -> None:
    """A station that started a session of the driver's card and was never heard of again
    (broken, offline for good, or a hostile host's station that saw the card's idTag once
    and never sends the stop) held that session's limit of the driver's escrow for ever:
    the driver was refused at every other station. It counts until the grace has passed
    since the station's last message for it, and then no more."""
    async def setup(tx: Tx) -> int:
        await tx.insert_station(Station(id="CP1", created_at=T0))
        await tx.link_card("CARD", DRIVER, "0x00", "0x00", T0)
        s = _session("1", "CARD", limit_minor=3_000)
        await tx.insert_session(s)
        assert s.id is not None
        return s.id

    await repo.unit(setup)
    now = int(time.time())
    within = await repo.read(
        lambda tx: tx.driver_exposure(DRIVER, now + SILENT_GRACE_S - 60, 2_000))
    assert (within["active"], within["in_flight_minor"]) == (1, 3_000), within
    after = await repo.read(
        lambda tx: tx.driver_exposure(DRIVER, now + SILENT_GRACE_S + 60, 2_000))
    assert after == {"active": 0, "unpriced": 0, "in_flight_minor": 0, "unlimited": 0,
                     "pending_minor": 0, "authorized": 0, "authorized_minor": 0}


async def test_a_card_session_without_energy_stops_counting_after_the_grace(
    repo: Repository,
) -> None:
    """A station that keeps writing a session of the driver's card (readings that never
    grow: its last update is now) but delivered nothing on it since the grace: it holds
    none of the driver's escrow. A session stored before the energy's time was kept (none)
    is judged by its last update, as before."""
    async def setup(tx: Tx) -> tuple[int, int]:
        await tx.insert_station(Station(id="CP1", created_at=T0))
        await tx.link_card("CARD", DRIVER, "0x00", "0x00", T0)
        stalled = _session("1", "CARD", limit_minor=3_000, energy_grew_at=datetime.now(UTC)
                           - timedelta(seconds=SILENT_GRACE_S + 60))
        await tx.insert_session(stalled)
        before = _session("2", "CARD", limit_minor=1_000)
        await tx.insert_session(before)
        assert stalled.id is not None and before.id is not None
        return stalled.id, before.id

    stalled, _ = await repo.unit(setup)
    now = int(time.time())
    exposure = await repo.read(lambda tx: tx.driver_exposure(DRIVER, now, 2_000))
    assert (exposure["active"], exposure["in_flight_minor"]) == (1, 1_000), exposure

    async def grown(tx: Tx) -> None:
        session = await tx.get_session(stalled)
        assert session is not None and session.energy_grew_at is not None
        session.energy_grew_at = datetime.now(UTC)  # its energy grew: it counts again
        await tx.update_session(session)

    await repo.unit(grown)
    exposure = await repo.read(lambda tx: tx.driver_exposure(DRIVER, now, 2_000))
    assert (exposure["active"], exposure["in_flight_minor"]) == (2, 4_000), exposure


async def test_a_session_its_station_reports_on_keeps_counting(repo: Repository) -> None:
    """Each message of a session (a reading, an event: the service writes the session
    back) is its update: a station that reports keeps its session counted however long
    it runs. One completed and not yet priced counts whatever its age: its station has
    nothing more to send (the worker prices it), and a station cannot take it out of the
    count by falling silent. A session without a limit, silent, goes too."""
    async def setup(tx: Tx) -> dict[str, int]:
        await tx.insert_station(Station(id="CP1", created_at=T0))
        await tx.link_card("CARD", DRIVER, "0x00", "0x00", T0)
        ids = {}
        for txid, limit in (("silent", 1_000), ("reporting", 2_000), ("ended", 4_000),
                            ("unlimited", None)):
            s = _session(txid, "CARD", limit_minor=limit)
            await tx.insert_session(s)
            assert s.id is not None
            ids[txid] = s.id
        return ids

    ids = await repo.unit(setup)

    async def age(tx: Tx) -> None:
        for sid in ids.values():
            await _silent_since(tx, sid, SILENT_GRACE_S + 3_600)

    await repo.unit(age)

    async def report(tx: Tx) -> None:
        reporting = await tx.get_session(ids["reporting"])
        assert reporting is not None  # a MeterValues: its energy, written back
        reporting.energy_wh = 1_200
        await tx.update_session(reporting)
        ended = await tx.get_session(ids["ended"])
        assert ended is not None
        ended.status, ended.stopped_at = SessionStatus.COMPLETED, T0
        await tx.update_session(ended)
        await _silent_since(tx, ids["ended"], SILENT_GRACE_S + 3_600)

    await repo.unit(report)
    exposure = await repo.read(lambda tx: tx.driver_exposure(DRIVER, int(time.time()), 2_000))
    assert exposure == {"active": 1, "unpriced": 1, "in_flight_minor": 6_000, "unlimited": 0,
                        "pending_minor": 0, "authorized": 0, "authorized_minor": 0}


async def test_the_silence_rule_leaves_the_signed_app_rule_as_it_was(
    repo: Repository,
) -> None:
    """A signed app session counts until its authorization expired more than
    ``EXPIRED_GRACE_S`` ago, reported on or not; it falls silent like a card's."""
    now = int(time.time())

    async def setup(tx: Tx) -> dict[str, int]:
        await tx.insert_station(Station(id="CP1", created_at=T0))
        ids = {}
        for nonce, (tag, expiry) in enumerate((
                ("EXPIRED", now - EXPIRED_GRACE_S - 1), ("VALID", now + 3600),
                ("QUIET", now + 3 * SILENT_GRACE_S)), start=1):
            s = _session(str(nonce), tag, limit_minor=1_000 * nonce)
            await tx.insert_session(s)
            aid = await _authorize(tx, DRIVER, tag, nonce, 5_000, expiry=expiry)
            await tx.remote_start_accepted(aid, now + 60)
            assert s.id is not None
            assert await tx.bind_authorization("CP1", tag, s.id,
                                               min(now, expiry - 600)) is not None
            ids[tag] = s.id
        await _silent_since(tx, ids["QUIET"], SILENT_GRACE_S + 60)
        return ids

    await repo.unit(setup)
    exposure = await repo.read(lambda tx: tx.driver_exposure(DRIVER, now, 2_000))
    # VALID only: EXPIRED past its expiry (reported on just now), QUIET silent
    assert exposure == {"active": 1, "unpriced": 0, "in_flight_minor": 2_000, "unlimited": 0,
                        "pending_minor": 0, "authorized": 0, "authorized_minor": 0}


async def test_what_was_accepted_for_a_driver_after_a_silent_session_stopped_counting(
    repo: Repository,
) -> None:
    """A session heard of again after the grace is held only when the central system
    accepted something of its driver's after it stopped counting (``accepted_for_driver``):
    a session of the driver as ``driver_exposure`` counts it (any of its cards, a session
    charged to it at the start, a signed app session), by the time its row was created, or
    an authorization by the time it was kept. Not the session itself, not another
    driver's, not one charged to another driver on a card handed on since, not one that can
    never be charged, not an authorization whose remote start failed, not anything accepted
    before that moment."""
    since = T0 + timedelta(days=1)
    before, after = since - timedelta(seconds=1), since + timedelta(seconds=1)

    async def created(tx: Tx, sid: int, at: datetime) -> None:
        sql: Any = tx  # the SQL adapter's own statement: no port writes a row's time
        await sql.execute("UPDATE sessions SET created_at = ? WHERE id = ?", dt_to_db(at), sid)

    async def session(tx: Tx, txid: str, tag: str, at: datetime, *, card: bool = True,
                      flags: list[str] | None = None) -> int:
        s = _session(txid, tag, flags=flags or [])
        await tx.insert_session(s, card=tag if card else None)
        assert s.id is not None
        await created(tx, s.id, at)
        return s.id

    async def setup(tx: Tx) -> dict[str, int]:
        await tx.insert_station(Station(id="CP1", created_at=T0))
        await tx.link_card("CARD", DRIVER, "0x00", "0x00", T0)
        await tx.link_card("HANDED", OTHER, "0x00", "0x00", T0)
        ids = {"silent": await session(tx, "1", "CARD", after),  # itself: not counted
               "old": await session(tx, "2", "CARD", before),
               "handed": await session(tx, "3", "HANDED", after),  # charged to OTHER
               "nobody": await session(tx, "4", "NOBODY", after)}
        await tx.link_card("HANDED", DRIVER, "0x00", "0x00", T0)  # handed on since
        return ids

    ids = await repo.unit(setup)

    async def seen(tx: Tx) -> dict[str, Any]:
        return {"drivers": {k: await tx.session_drivers(v) for k, v in ids.items()},
                "driver": await tx.accepted_for_driver(DRIVER, since, ids["silent"]),
                "other": await tx.accepted_for_driver(OTHER, since, ids["silent"])}

    found = await repo.read(seen)
    assert found["drivers"] == {"silent": [DRIVER], "old": [DRIVER], "handed": [OTHER],
                                "nobody": []}
    assert found["driver"] is None, found
    assert (found["other"] or {}).get("id") == ids["handed"], found

    async def more(tx: Tx) -> dict[str, int]:
        # never charged: an operator's rejection; a remote start that failed
        rejected = await session(tx, "5", "CARD", after, flags=["rejected"])
        failed = await tx.add_authorization(DRIVER, "CP1", "APPX", {"nonce": 9}, 9,
                                            NOW + 3600, after)
        await tx.withdraw_authorization(failed)
        # accepted before the silent one stopped counting: judged with it at stake
        await tx.add_authorization(DRIVER, "CP1", "APP0", {"nonce": 1}, 1, NOW + 3600, before)
        return {"rejected": rejected, "failed": failed}

    ids |= await repo.unit(more)
    assert await repo.read(lambda tx: tx.accepted_for_driver(DRIVER, since, ids["silent"])) \
        is None

    async def meanwhile(tx: Tx) -> int:
        return await tx.add_authorization(DRIVER, "CP1", "APP1", {"nonce": 2}, 2,
                                          NOW + 3600, after + timedelta(seconds=1))

    aid = await repo.unit(meanwhile)
    found = await repo.read(lambda tx: tx.accepted_for_driver(DRIVER, since, ids["silent"]))
    assert found is not None and (found["kind"], found["id"]) == ("authorization", aid), found

    async def elsewhere(tx: Tx) -> dict[str, int]:
        # the authorization's session, on its own token: the driver's by its signature
        app = _session("7", "APP1")
        await tx.insert_session(app)
        await tx.remote_start_accepted(aid, NOW + 60)
        assert app.id is not None
        assert await tx.bind_authorization("CP1", "APP1", app.id, NOW) is not None
        # another card of the driver (linked in mixed case), accepted sooner
        await tx.link_card("SPARE", "0x" + "AB" * 20, "0x00", "0x00", T0)
        return {"app": app.id, "spare": await session(tx, "6", "SPARE", after)}

    ids |= await repo.unit(elsewhere)
    found = await repo.read(lambda tx: tx.accepted_for_driver(DRIVER, since, ids["silent"]))
    assert found is not None and (found["kind"], found["id"]) == ("session", ids["spare"]), \
        found
    assert await repo.read(lambda tx: tx.session_drivers(ids["app"])) == [DRIVER]
