"""Every operation of the ``Tx`` port, on SQLite and on PostgreSQL."""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, TypeVar

from csms.domain.model import (
    BootPolicy,
    ErrorDetail,
    IdTag,
    MeterSample,
    Session,
    SessionStatus,
    Station,
    reused_transaction_id,
)
from csms.service.ports import Repository, Tx
from csms.storage.sql import SESSIONS_ON_EVSE

T = TypeVar("T")
T0 = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)


async def unit(repo: Repository, fn: Callable[[Tx], Awaitable[T]]) -> T:
    return await repo.unit(fn)


def station(station_id: str, **kw: Any) -> Station:
    return Station(id=station_id, created_at=T0, **kw)


def session(station_id: str = "CP1", **kw: Any) -> Session:
    values: dict[str, Any] = {
        "ocpp_version": "ocpp1.6", "transaction_id": "", "started_at": T0, "connector_id": 1,
        "evse_id": 1, "id_tag": "T1", "auth_status": "Accepted",
        "meter_start_wh": Decimal("4200000.5"), "reported_meter_start_wh": Decimal("4200000.5"),
    }
    values.update(kw)
    return Session(station_id=station_id, **values)


async def test_generic_primitives(repo: Repository) -> None:
    async def work(tx: Tx) -> tuple[int, int, int, Any, Any]:
        first = await tx.insert_id(
            "INSERT INTO station_events (station_id, kind, ts, payload) VALUES (?, ?, ?, ?)"
            " RETURNING id", "CP1", "a", "t", "{}",
        )
        second = await tx.insert_id(
            "INSERT INTO station_events (station_id, kind, ts, payload) VALUES (?, ?, ?, ?)"
            " RETURNING id", "CP1", "b", "t", "{}",
        )
        changed = await tx.execute("UPDATE station_events SET kind = ? WHERE station_id = ?",
                                   "c", "CP1")
        one = await tx.fetchone("SELECT kind, count(*) AS n FROM station_events GROUP BY kind")
        none = await tx.fetchone("SELECT * FROM station_events WHERE kind = ?", "zzz")
        return first, second, changed, one, none

    first, second, changed, one, none = await unit(repo, work)
    assert second > first > 0
    assert changed == 2
    assert one == {"kind": "c", "n": 2}
    assert none is None
    rows = await repo.read(lambda tx: tx.fetchall(
        "SELECT id, station_id FROM station_events WHERE id IN (?, ?) ORDER BY id", first, second))
    assert rows == [{"id": first, "station_id": "CP1"}, {"id": second, "station_id": "CP1"}]
    # '?' inside a literal is text, not a placeholder
    literal = await repo.read(lambda tx: tx.fetchone(
        "SELECT 'a?b' AS s, count(*) AS n FROM station_events WHERE station_id = ?", "CP1"))
    assert literal == {"s": "a?b", "n": 2}

async def test_rows_as_tuples_keep_the_selected_order(repo: Repository) -> None:
    """fetchrows: the rows of fetchall as tuples in the SELECT's order of columns (not the
    table's), in a unit and in a read; no rows is an empty list."""
    sql = ("SELECT payload, kind, id FROM station_events WHERE station_id = ?"
           " ORDER BY id")

    async def work(tx: Tx) -> tuple[list[tuple[Any, ...]], list[dict[str, Any]]]:
        for kind in ("a", "b"):
            await tx.execute("INSERT INTO station_events (station_id, kind, ts, payload)"
                             " VALUES (?, ?, ?, ?)", "CP9", kind, "t", f'{{"k":"{kind}"}}')
        return await tx.fetchrows(sql, "CP9"), await tx.fetchall(sql, "CP9")

    rows, dicts = await unit(repo, work)
    assert [r[:2] for r in rows] == [('{"k":"a"}', "a"), ('{"k":"b"}', "b")]
    assert rows == [tuple(d.values()) for d in dicts]
    assert [list(d) for d in dicts] == [["payload", "kind", "id"]] * 2
    assert await repo.read(lambda tx: tx.fetchrows(sql, "CP9")) == rows
    assert await repo.read(lambda tx: tx.fetchrows(sql, "nobody")) == []
    assert await repo.read(lambda tx: tx.fetchall(sql, "nobody")) == []



async def test_which_stations_hold_a_transaction_is_read_through_an_index(
    repo: Repository, db: str,
) -> None:
    """A station's message for a transaction id it does not hold asks which stations hold
    it (a foreign transaction is a security event): a hostile station sends such ids at
    will, so the read must not walk every session ever stored (55 ms at a million
    sessions, on the writer's turn). It finds its rows through an index that starts with
    the transaction id."""
    async def setup(tx: Tx) -> None:
        for i in range(3):
            await tx.insert_station(station(f"CP{i}"))
            await tx.insert_session(session(f"CP{i}", transaction_id="SAME"))

    await unit(repo, setup)
    assert sorted(await repo.read(lambda tx: tx.stations_with_transaction("SAME"))) == [
        "CP0", "CP1", "CP2"]
    assert await repo.read(lambda tx: tx.stations_with_transaction("nope")) == []
    if db.startswith("postgres"):
        rows = await repo.read(lambda tx: tx.fetchall(
            "SELECT indexdef FROM pg_indexes WHERE schemaname = current_schema()"
            " AND tablename = 'sessions'"))
        assert any(r["indexdef"].endswith("(transaction_id)") for r in rows), rows
    else:
        plan = await repo.read(lambda tx: tx.fetchall(
            "EXPLAIN QUERY PLAN SELECT station_id FROM sessions WHERE transaction_id = ?",
            "nope"))
        details = " ".join(str(r["detail"]) for r in plan)
        assert "SEARCH" in details and "transaction_id=?" in details, details


async def test_stations(repo: Repository) -> None:
    async def add(tx: Tx) -> None:
        await tx.insert_station(station("CP2"))
        await tx.insert_station(station(
            "CP1", boot_policy=BootPolicy.PENDING, security_profile=1, password_hash="h",
        ))

    await unit(repo, add)
    got = await repo.read(lambda tx: tx.get_station("CP1"))
    assert got == station("CP1", boot_policy=BootPolicy.PENDING, security_profile=1,
                          password_hash="h")
    assert await repo.read(lambda tx: tx.get_station("nope")) is None

    async def update(tx: Tx) -> None:
        st = await tx.get_station("CP1")
        assert st is not None
        st.vendor, st.model, st.firmware_version, st.serial_number = "V", "M", "1.2", "S9"
        st.ocpp_version, st.boot_policy, st.last_boot_at = "ocpp1.6", BootPolicy.ACCEPTED, T0
        await tx.update_station(st)
        await tx.touch_station("CP2", T0 + timedelta(minutes=1))

    await unit(repo, update)
    cp1, cp2 = await repo.read(lambda tx: tx.list_stations())
    assert (cp1.id, cp1.vendor, cp1.model, cp1.firmware_version, cp1.serial_number) == (
        "CP1", "V", "M", "1.2", "S9")
    assert (cp1.boot_policy, cp1.last_boot_at, cp1.ocpp_version) == (
        BootPolicy.ACCEPTED, T0, "ocpp1.6")
    assert cp2.last_seen_at == T0 + timedelta(minutes=1)


async def test_station_connections(repo: Repository) -> None:
    async def setup(tx: Tx) -> None:
        for sid in ("A", "B", "C"):
            await tx.insert_station(station(sid))
        await tx.set_station_connection("A", "node1", T0)
        await tx.set_station_connection("B", "node1", T0)
        await tx.set_station_connection("C", "node2", T0)

    await unit(repo, setup)
    a = await repo.read(lambda tx: tx.get_station("A"))
    assert a is not None
    assert (a.connected_node, a.connected_at, a.last_seen_at) == ("node1", T0, T0)

    async def clear(tx: Tx) -> tuple[bool | None, bool | None, bool | None, int]:
        # C is not node1's (stays online), A is; A's connection made at another time is
        # not the one it has
        return (await tx.release_station_connection("C", "node1", None),
                await tx.release_station_connection("A", "node1", T0 + timedelta(seconds=1)),
                await tx.release_station_connection("A", "node1", T0),
                await tx.clear_node_connections("node1"))

    assert await unit(repo, clear) == (False, False, True, 1)  # only B was left on node1
    nodes = {s.id: s.connected_node for s in await repo.read(lambda tx: tx.list_stations())}
    assert nodes == {"A": None, "B": None, "C": "node2"}


async def test_audit_and_local_list_versions(repo: Repository) -> None:
    async def work(tx: Tx) -> list[int]:
        await tx.add_audit("alice", "reset", "CP1", {"type": "Soft"}, {"status": "Accepted"},
                           True, T0)
        await tx.add_audit("bob", "unlock", None, {}, {"error": "offline"}, False, T0)
        return [await tx.next_local_list_version("CP1") for _ in range(3)] + [
            await tx.next_local_list_version("CP2")]

    assert await unit(repo, work) == [1, 2, 3, 1]
    bob, alice = await repo.read(lambda tx: tx.list_audit())
    assert (bob["actor"], bob["target"], bob["ok"], bob["result"]) == (
        "bob", None, False, {"error": "offline"})
    assert (alice["action"], alice["request"], alice["ok"]) == ("reset", {"type": "Soft"}, True)
    assert [r["actor"] for r in await repo.read(lambda tx: tx.list_audit(limit=1))] == ["bob"]


async def test_audit_keeps_integers_beyond_64_bits_exactly(repo: Repository) -> None:
    """An operator's argument beyond 64 bits (refused, and audited as asked) reads back as
    the integer it was, not as a float."""
    big = {"session": 2**70, "nested": [-(2**63) - 1, 2**64], "edge": 2**63 - 1}

    async def work(tx: Tx) -> None:
        await tx.add_audit("alice", "stop", "CP1", big, {"error": f"no session {2**70}",
                                                          "id": 2**65}, False, T0)

    await unit(repo, work)
    [row] = await repo.read(lambda tx: tx.list_audit())
    [page] = await repo.read(lambda tx: tx.list_audit_page(None, 10))
    for r in (row, page):
        assert r["request"] == big and r["result"]["id"] == 2**65
        assert all(type(v) is int for v in (r["request"]["session"], *r["request"]["nested"]))


async def test_connectors(repo: Repository) -> None:
    async def work(tx: Tx) -> None:
        await tx.insert_station(station("CP1"))
        await tx.insert_station(station("CP2"))
        await tx.set_connector_status("CP1", 1, 1, "Available", None, T0)
        await tx.set_connector_status("CP1", 1, 1, "Faulted", "GroundFailure", T0)  # upsert
        await tx.set_connector_status("CP1", 0, 0, "Available", None, T0)
        await tx.set_connector_status("CP2", 1, 1, "Charging", None, T0)

    await unit(repo, work)
    rows = await repo.read(lambda tx: tx.list_connectors("CP1"))
    assert [(r["evse_id"], r["connector_id"], r["status"], r["error_code"]) for r in rows] == [
        (0, 0, "Available", None), (1, 1, "Faulted", "GroundFailure")]
    every = await repo.read(lambda tx: tx.list_connectors())
    assert [r["station_id"] for r in every] == ["CP1", "CP1", "CP2"]


async def test_a_connector_beyond_the_limit_is_not_stored(repo: Repository) -> None:
    """With a limit, a connector not stored yet is added only while the station has fewer;
    those stored are still updated (with what the station said of their error)."""

    async def work(tx: Tx) -> list[bool]:
        await tx.insert_station(station("CP1"))
        await tx.insert_station(station("CP2"))
        return [
            await tx.set_connector_status("CP1", 1, 1, "Available", None, T0, limit=2),
            await tx.set_connector_status("CP1", 2, 1, "Available", None, T0, limit=2),
            await tx.set_connector_status("CP1", 3, 1, "Available", None, T0, limit=2),
            await tx.set_connector_status(
                "CP1", 2, 1, "Faulted", "OtherError", T0, limit=2,
                error=ErrorDetail("lock", "org.charin.uec.v1", "MREC1")),
            await tx.set_connector_status("CP2", 7, 7, "Available", None, T0, limit=2),
        ]

    assert await unit(repo, work) == [True, True, False, True, True]
    rows = await repo.read(lambda tx: tx.list_connectors("CP1"))
    assert [(r["evse_id"], r["status"], r["error_code"], r["error_info"], r["vendor_id"],
             r["vendor_error_code"]) for r in rows] == [
        (1, "Available", None, None, None, None),
        (2, "Faulted", "OtherError", "lock", "org.charin.uec.v1", "MREC1")]


async def test_tags(repo: Repository) -> None:
    expires = T0 + timedelta(days=30)

    async def work(tx: Tx) -> None:
        await tx.put_tag(IdTag("T2", "blocked"))
        await tx.put_tag(IdTag("T1", "accepted", None, "GROUP"))
        await tx.put_tag(IdTag("T1", "accepted", expires, "GROUP2"))  # upsert

    await unit(repo, work)
    assert await repo.read(lambda tx: tx.get_tag("T1")) == IdTag("T1", "accepted", expires,
                                                                 "GROUP2")
    assert await repo.read(lambda tx: tx.get_tag("T9")) is None
    assert [t.tag for t in await repo.read(lambda tx: tx.list_tags())] == ["T1", "T2"]


async def test_sessions(repo: Repository) -> None:
    s16 = session(start_key="1|T1|x|4200000.5", flags=["auth_unknown"])
    s201 = session("EV1", ocpp_version="ocpp2.0.1", transaction_id="tx-abc", last_seq_no=0)

    async def add(tx: Tx) -> tuple[int, int]:
        return await tx.insert_session(s16), await tx.insert_session(s201)

    id16, id201 = await unit(repo, add)
    # 1.6 §5.6: the central system assigns the integer transactionId
    assert s16.transaction_id == str(id16)
    assert s201.transaction_id == "tx-abc"
    assert await repo.read(lambda tx: tx.get_session(id16)) == s16
    assert await repo.read(lambda tx: tx.find_session("EV1", "tx-abc")) == s201
    assert await repo.read(lambda tx: tx.find_session("CP1", "tx-abc")) is None
    assert await repo.read(lambda tx: tx.find_session_by_start_key("CP1", s16.start_key or ""))\
        == s16
    assert await repo.read(lambda tx: tx.stations_with_transaction("tx-abc")) == ["EV1"]

    s16.stopped_at = T0 + timedelta(hours=1)
    s16.meter_stop_wh = s16.reported_meter_stop_wh = Decimal("4211042")
    s16.energy_wh, s16.status, s16.stop_reason = 11042, SessionStatus.COMPLETED, "EVDisconnected"

    async def stop(tx: Tx) -> None:
        await tx.update_session(s16)
        await tx.enqueue_settlement(id16, T0)
        await tx.enqueue_settlement(id16, T0)  # once only

    await unit(repo, stop)
    assert await repo.read(lambda tx: tx.get_session(id16)) == s16
    # find_session and get_session map the same columns: the same session, whatever a
    # column holds (the settlement worker's columns too)
    await unit(repo, lambda tx: tx.execute(
        "UPDATE sessions SET price_minor = ?, currency = ?, settlement_state = ? WHERE id = ?",
        4321, "EUR", "anchored", id16))
    found = await repo.read(lambda tx: tx.find_session("CP1", str(id16)))
    assert found == await repo.read(lambda tx: tx.get_session(id16))
    assert found is not None and (found.price_minor, found.currency, found.settlement_state,
                                  found.stopped_at, found.meter_stop_wh) == (
        4321, "EUR", "anchored", s16.stopped_at, Decimal("4211042"))
    assert await repo.read(lambda tx: tx.count_sessions()) == {"active": 1, "completed": 1}
    assert await repo.read(lambda tx: tx.settlement_backlog()) == 1
    assert [s.id for s in await repo.read(lambda tx: tx.list_sessions())] == [id201, id16]
    assert [s.id for s in await repo.read(lambda tx: tx.list_sessions(active=True))] == [id201]
    assert [s.id for s in await repo.read(lambda tx: tx.list_sessions("CP1", False))] == [id16]
    assert [s.id for s in await repo.read(lambda tx: tx.list_sessions(limit=1))] == [id201]


async def test_a_stations_sessions_on_one_evse_within_a_time(repo: Repository,
                                                             db: str) -> None:
    """What a session's start and completion compare their times with (overlapping
    sessions on one EVSE): the station's sessions on that EVSE started before one time and
    not stopped by another, active ones whatever their times; read through an index that
    starts with the station and the EVSE. An active one read there is updated as one
    read in the unit (on PostgreSQL: checked against what was read)."""
    hour = timedelta(hours=1)
    done = session(stopped_at=T0 + hour, status=SessionStatus.COMPLETED)  # 10-11
    early = session(started_at=T0 - 2 * hour, stopped_at=T0 - hour,
                    status=SessionStatus.COMPLETED)  # 8-9
    active = session(started_at=T0 + 2 * hour)  # 12-
    other_evse = session(evse_id=2, connector_id=2)
    other_station = session("CP2")

    async def add(tx: Tx) -> None:
        for s in (done, early, active, other_evse, other_station):
            await tx.insert_session(s)

    await unit(repo, add)

    def ids(before: datetime, after: datetime) -> Callable[[Tx], Awaitable[list[int | None]]]:
        async def read(tx: Tx) -> list[int | None]:
            return [s.id for s in await tx.sessions_on_evse("CP1", 1, before, after)]
        return read

    assert await repo.read(ids(T0 + 3 * hour, T0)) == [done.id, active.id]
    assert await repo.read(ids(T0 + 30 * timedelta(minutes=1), T0 - 90 * timedelta(
        minutes=1))) == [done.id, early.id]
    assert await repo.read(ids(T0, T0)) == []  # started at T0: not before it
    assert await repo.read(ids(T0 + 3 * hour, T0 + hour)) == [active.id]  # 11:00: not after

    async def others(tx: Tx) -> list[int | None]:  # the session compared is not its own
        return [s.id for s in await tx.sessions_on_evse("CP1", 1, T0 + 3 * hour, T0,
                                                        active.id or 0)]

    assert await repo.read(others) == [done.id]

    async def flag(tx: Tx) -> None:
        [found] = await tx.sessions_on_evse("CP1", 1, T0 + 3 * hour, T0 + hour)
        found.flag("overlaps_session")
        await tx.update_session(found)

    await unit(repo, flag)
    stored = await repo.read(lambda tx: tx.get_session(active.id or 0))
    assert stored is not None and stored.flags == ["overlaps_session"]
    if db.startswith("postgres"):
        rows = await repo.read(lambda tx: tx.fetchall(
            "SELECT indexdef FROM pg_indexes WHERE schemaname = current_schema()"
            " AND tablename = 'sessions'"))
        assert any(r["indexdef"].endswith("(station_id, evse_id, stopped_at)")
                   for r in rows), rows
    else:
        plan = await repo.read(lambda tx: tx.fetchall(
            "EXPLAIN QUERY PLAN " + SESSIONS_ON_EVSE, "CP1", 1, "x", 0, "CP1", 1, "y", "x", 0))
        details = " ".join(str(r["detail"]) for r in plan)
        assert "sessions_evse (station_id=? AND evse_id=? AND stopped_at=?)" in details, \
            details
        # by the stop, not the start: a station's earlier sessions are not read
        assert "sessions_evse (station_id=? AND evse_id=? AND stopped_at>?)" in details, \
            details


async def test_a_session_started_on_a_card_is_charged_to_its_link_with_its_insert(
    repo: Repository,
) -> None:
    """insert_session's ``card``: the session is bound to the card's link as it is at the
    insert (bind_card), the one of a tag of no driver to nobody; a 1.6 session still gets
    its id as its transactionId, and one inserted without a card has no payer."""
    driver = "0x" + "aa" * 20
    s16 = session(id_tag="CARD")
    nobody = session(id_tag="NO DRIVER'S", connector_id=2)
    s201 = session("EV1", ocpp_version="ocpp2.0.1", transaction_id="tx-abc", id_tag=None)
    plain = session(connector_id=3)

    async def add(tx: Tx) -> tuple[int, ...]:
        await tx.link_card("CARD", driver, "0x" + "01" * 32, "0x" + "0a" * 32, T0)
        return (await tx.insert_session(s16, card="CARD"),
                await tx.insert_session(nobody, card="NO DRIVER'S"),
                await tx.insert_session(s201, card="CARD"),
                await tx.insert_session(plain))

    ids = await unit(repo, add)

    async def unlink(tx: Tx) -> None:  # afterwards: the sessions keep their payer
        assert await tx.unlink_card("CARD")
        await tx.link_card("CARD", "0x" + "bb" * 20, "0x" + "02" * 32, "0x" + "0b" * 32, T0)

    await unit(repo, unlink)
    cards = [await repo.read(lambda tx, sid=sid: tx.session_card(sid)) for sid in ids]
    link = {"tag": "CARD", "driver": driver, "salt": "0x" + "01" * 32,
            "commitment": "0x" + "0a" * 32}
    assert cards == [link, {"tag": "NO DRIVER'S", "driver": "", "salt": "", "commitment": ""},
                     link, None]
    assert (s16.transaction_id, nobody.transaction_id, s201.transaction_id) == (
        str(ids[0]), str(ids[1]), "tx-abc")
    for stored in (s16, nobody, s201, plain):
        assert await repo.read(lambda tx, s=stored: tx.get_session(s.id)) == stored


async def test_a_refused_card_s_session_is_charged_to_the_card_accepted_after_it(
    repo: Repository,
) -> None:
    """rebind_card: a 2.0.1 session bound to a refused card (to nobody, bind_no_payer) is
    charged to the link of the card accepted after it, as bind_card would have charged it;
    and a 2.0.1 transactionId "" is the station's (not the session's id)."""
    driver = "0x" + "aa" * 20
    s201 = session("EV1", ocpp_version="ocpp2.0.1", transaction_id="", id_tag="NOBODY")

    async def add(tx: Tx) -> int:
        await tx.link_card("CARD", driver, "0x" + "01" * 32, "0x" + "0a" * 32, T0)
        sid = await tx.insert_session(s201, card="NOBODY")
        await tx.bind_no_payer(sid, "NOBODY")
        await tx.rebind_card(sid, "CARD")
        return sid

    sid = await unit(repo, add)
    assert await repo.read(lambda tx: tx.session_card(sid)) == {
        "tag": "CARD", "driver": driver, "salt": "0x" + "01" * 32,
        "commitment": "0x" + "0a" * 32}
    assert s201.transaction_id == ""
    assert (await repo.read(lambda tx: tx.find_session("EV1", ""))) == s201


async def test_the_latest_session_of_a_transaction_id_taken_again(repo: Repository) -> None:
    """latest_reuse: the session set last for a station's transactionId, per station."""
    first = session("EV1", ocpp_version="ocpp2.0.1", transaction_id="1")
    later = session("EV1", ocpp_version="ocpp2.0.1",
                    transaction_id=reused_transaction_id("1", 1), connector_id=2)

    async def add(tx: Tx) -> None:
        assert await tx.latest_reuse("EV1", "1") is None
        await tx.insert_session(first)
        await tx.insert_session(later)
        assert later.id is not None and first.id is not None
        await tx.set_latest_reuse("EV1", "1", first.id)
        await tx.set_latest_reuse("EV1", "1", later.id)

    await unit(repo, add)
    assert await repo.read(lambda tx: tx.latest_reuse("EV1", "1")) == later.id
    assert await repo.read(lambda tx: tx.latest_reuse("EV2", "1")) is None
    assert await repo.read(lambda tx: tx.latest_reuse("EV1", "")) is None


async def test_a_1_6_sessions_transaction_id_is_its_id_never_one_used_before(
    repo: Repository,
) -> None:
    """A 1.6 session's transactionId is its id, written with its row: never an id the
    table had before, even one whose session is gone; the session as inserted is what an
    update in the same unit compares with and writes over."""
    first, gone, later = session(), session(connector_id=2), session(connector_id=3)

    async def add(tx: Tx) -> None:
        await tx.insert_session(first)
        await tx.insert_session(gone)
        assert await tx.execute("DELETE FROM sessions WHERE id = ?", gone.id) == 1

    await unit(repo, add)

    async def add_later(tx: Tx) -> None:
        await tx.insert_session(later, card="T1")
        later.flag("auth_unknown")  # as a start that notes something of itself
        await tx.update_session(later)

    await unit(repo, add_later)
    assert first.id is not None and gone.id is not None and later.id is not None
    assert first.id < gone.id < later.id
    assert [s.transaction_id for s in (first, gone, later)] == [
        str(first.id), str(gone.id), str(later.id)]
    assert await repo.read(lambda tx: tx.find_session("CP1", str(later.id))) == later
    assert await repo.read(lambda tx: tx.get_session(first.id or 0)) == first


async def test_a_1_6_sessions_id_passes_over_its_stations_own_transaction_ids(
    repo: Repository,
) -> None:
    """A station that ran 2.0.1 named its transactions itself, numbers among them: a 1.6
    session of that station gets the first id from the next one on that is none of the
    station's transactionIds (with a card to bind and without), and the ids passed over are
    not drawn again; another station's transactionIds do not count (they are per
    station)."""
    first = session()
    await unit(repo, lambda tx: tx.insert_session(first))
    assert first.id is not None
    a = first.id  # the next inserts get a + 1, a + 2, ...
    numbered = [session(ocpp_version="ocpp2.0.1", transaction_id=str(a + n), connector_id=n)
                for n in (5, 6, 8)]
    other = session("EV9", ocpp_version="ocpp2.0.1", transaction_id=str(a + 7))
    carded, plain, after = session(id_tag="CARD"), session(id_tag=None), session()

    async def add(tx: Tx) -> None:
        for s in (*numbered, other):  # ids a + 1 to a + 4
            await tx.insert_session(s)
        await tx.insert_session(carded, card="CARD")  # a + 5, a + 6: CP1's; a + 7
        await tx.insert_session(plain)  # a + 8: CP1's; a + 9

    await unit(repo, add)
    await unit(repo, lambda tx: tx.insert_session(after))
    assert [s.id for s in (carded, plain, after)] == [a + 7, a + 9, a + 10]
    assert [s.transaction_id for s in (carded, plain, after)] == [
        str(a + 7), str(a + 9), str(a + 10)]
    for stored in (carded, plain, after, other):
        assert await repo.read(lambda tx, s=stored: tx.get_session(s.id)) == stored
    assert await repo.read(lambda tx: tx.find_session("CP1", str(a + 7))) == carded
    assert await repo.read(lambda tx: tx.session_card(carded.id or 0)) is not None
    assert await repo.read(lambda tx: tx.session_card(plain.id or 0)) is None


async def test_meter_samples(repo: Repository) -> None:
    sid = await unit(repo, lambda tx: tx.insert_session(session()))
    later = MeterSample(T0 + timedelta(minutes=5), "4202.75", unit="kWh", seq_no=3)
    earlier = MeterSample(T0, "900.1", phase="L1", context="Sample.Periodic", location="Outlet",
                          multiplier=3, format="SignedData", signed={"data": "OCMF|{}"})

    async def add(tx: Tx) -> None:
        await tx.add_samples("CP1", [later, earlier], session_id=sid, evse_id=1,
                             connector_id=1, transaction_id=str(sid))
        await tx.add_samples("CP1", [MeterSample(T0, "1")], session_id=None, evse_id=0,
                             connector_id=0, transaction_id=None)

    await unit(repo, add)
    assert await repo.read(lambda tx: tx.session_samples(sid)) == [earlier, later]


async def test_events_and_outbox(repo: Repository) -> None:
    async def work(tx: Tx) -> tuple[bool, bool, bool, str]:
        await tx.insert_station(station("EV1"))
        sid = await tx.insert_session(session("EV1", ocpp_version="ocpp2.0.1",
                                              transaction_id="tx1"))
        first = await tx.record_tx_event(sid, 0, 2**62 + 5)
        again = await tx.record_tx_event(sid, 0, 7)
        following = await tx.record_tx_event(sid, 1)
        await tx.add_station_event("EV1", "DataTransfer", {"vendorId": "x"}, T0)
        await tx.add_station_event("EV1", "SecurityEvent", {"type": "FirmwareUpdated"}, T0)
        await tx.add_station_event("EV2", "DataTransfer", {}, T0)
        event_id = await tx.add_outbox("voltledger/session/started", {"session_id": 1}, T0)
        return first, again, following, event_id

    first, again, following, event_id = await unit(repo, work)
    assert (first, again, following) == (True, False, True)
    rows = await repo.read(lambda tx: tx.fetchall("SELECT * FROM tx_events ORDER BY seq_no"))
    # keys, and the first copy's digest (csms.service.retries; none given: none kept)
    assert [(sorted(r), r["seq_no"], r["digest"]) for r in rows] == [
        (["digest", "seq_no", "session_id"], 0, 2**62 + 5),
        (["digest", "seq_no", "session_id"], 1, None)]
    events = await repo.read(lambda tx: tx.list_station_events("EV1"))
    assert [(e["kind"], e["payload"]) for e in events] == [
        ("SecurityEvent", {"type": "FirmwareUpdated"}), ("DataTransfer", {"vendorId": "x"})]
    only = await repo.read(lambda tx: tx.list_station_events("EV1", "DataTransfer", limit=5))
    assert [e["kind"] for e in only] == ["DataTransfer"]
    assert len(await repo.read(lambda tx: tx.list_station_events("EV1", limit=1))) == 1
    [out] = await repo.read(lambda tx: tx.fetchall("SELECT * FROM outbox"))
    assert out["event_id"] == event_id
    assert out["topic"] == "voltledger/session/started"
    assert out["published_at"] is None


async def test_station_events_are_found_by_their_time(repo: Repository) -> None:
    """The latest of a kind at or before a time, newest first; those after it, oldest
    first: whatever number of the station's events came since (a connection open at a
    time is found by it, not among the latest)."""
    async def work(tx: Tx) -> None:
        await tx.insert_station(station("EV1"))
        for minutes in (0, 10, 20, 30):
            at = T0 + timedelta(minutes=minutes)
            await tx.add_station_event("EV1", "online", {"m": minutes}, at)
            await tx.add_station_event("EV1", "offline", {"m": minutes}, at)
        await tx.add_station_event("EV2", "online", {"m": 15}, T0 + timedelta(minutes=15))

    await unit(repo, work)

    async def by_time(minutes: int, later: bool, limit: int) -> list[int]:
        rows = await repo.read(lambda tx: tx.station_events_by_time(
            "EV1", "online", T0 + timedelta(minutes=minutes), later, limit))
        return [r["payload"]["m"] for r in rows]

    assert await by_time(15, False, 1) == [10]
    assert await by_time(20, False, 5) == [20, 10, 0]  # at it counts as before
    assert await by_time(15, True, 1) == [20]
    assert await by_time(10, True, 5) == [20, 30]
    assert await by_time(-1, False, 5) == []
    assert await by_time(30, True, 5) == []


async def test_tag_groups_and_station_options(repo: Repository) -> None:
    async def work(tx: Tx) -> tuple[Any, ...]:
        await tx.insert_station(station("CP1"))
        await tx.put_tag(IdTag("BOSS", "accepted", None, "FLEET", True))
        await tx.put_tag(IdTag("ALICE", "accepted", None, "FLEET"))
        await tx.put_tag(IdTag("BOSS", "blocked", None, "FLEET", False))  # an update
        await tx.put_tag(IdTag("CHIEF", "accepted", None, "FLEET", True))
        before = await tx.get_station_option("CP1", "running_cost")
        await tx.set_station_option("CP1", "running_cost", "on")
        await tx.set_station_option("CP1", "running_cost", "on")  # idempotent
        on = await tx.get_station_option("CP1", "running_cost")
        other = await tx.get_station_option("CP2", "running_cost")
        await tx.set_station_option("CP1", "running_cost", None)
        after = await tx.get_station_option("CP1", "running_cost")
        return before, on, other, after, await tx.get_tag("BOSS"), await tx.list_tags()

    before, on, other, after, boss, tags = await unit(repo, work)
    assert (before, on, other, after) == (None, "on", None, None)
    assert boss.status_since is not None  # blocked by the update (test_tag_statuses.py)
    assert boss == IdTag("BOSS", "blocked", None, "FLEET", False, boss.status_since)
    assert [(t.tag, t.parent, t.master) for t in tags] == [
        ("ALICE", "FLEET", False), ("BOSS", "FLEET", False), ("CHIEF", "FLEET", True)]


async def test_stations_with_an_option_in_one_read(repo: Repository) -> None:
    async def work(tx: Tx) -> tuple[set[str], set[str]]:
        for sid in ("CP1", "CP2", "CP3"):
            await tx.insert_station(station(sid))
        await tx.set_station_option("CP1", "running_cost", "on")
        await tx.set_station_option("CP2", "running_cost", "off")
        await tx.set_station_option("CP3", "other", "on")
        return (await tx.stations_with_option("running_cost", "on"),
                await tx.stations_with_option("running_cost", "never"))

    assert await unit(repo, work) == ({"CP1"}, set())


async def test_final_cost_claimed_once_and_central_options(repo: Repository) -> None:
    at = datetime(2026, 3, 1, 10, tzinfo=UTC)

    async def work(tx: Tx) -> tuple[Any, ...]:
        first = await tx.claim_final_cost(7, "CP1", "3.65", "EUR", at)
        again = await tx.claim_final_cost(7, "CP1", "9.99", "EUR", at)  # a retried stop
        other = await tx.claim_final_cost(8, "CP1", "1.00", "EUR", at)
        await tx.set_final_cost_answer(7, "Accepted")
        before = await tx.get_central_option("master_pass_group")
        await tx.set_central_option("master_pass_group", "POLICE")
        await tx.set_central_option("master_pass_group", "POLICE")  # idempotent
        on = await tx.get_central_option("master_pass_group")
        await tx.set_central_option("master_pass_group", None)
        return (first, again, other, await tx.get_final_cost(7), await tx.get_final_cost(9),
                before, on, await tx.get_central_option("master_pass_group"))

    first, again, other, kept, missing, before, on, after = await unit(repo, work)
    assert (first, again, other, missing) == (True, False, True, None)
    assert (kept["cost"], kept["answer"]) == ("3.65", "Accepted")  # the first figure stays
    assert (before, on, after) == (None, "POLICE", None)


async def test_a_central_option_is_claimed_once(repo: Repository) -> None:
    """The bus secret's way (csms.service.cluster.bus_secret): the first value stays, on
    every engine, and units claiming at once agree on it."""
    import asyncio

    values = await asyncio.gather(*(unit(repo, lambda tx, v=v: tx.claim_central_option(
        "claimed", v)) for v in ("a", "b", "c")))
    assert len(set(values)) == 1 and values[0] in ("a", "b", "c")
    assert await unit(repo, lambda tx: tx.claim_central_option("claimed", "d")) == values[0]


async def test_the_sessions_with_a_limit_of_a_node_s_stations(repo: Repository, db: str) -> None:
    """The node's check between readings (csms.service.limits) reads the active sessions
    with a limit of the stations connected to it, each with its signature's expiry, through
    an index that holds only those."""
    async def setup(tx: Tx) -> list[int]:
        for sid in ("CPA", "CPB", "CPC"):
            await tx.insert_station(station(sid))
        await tx.set_station_connection("CPA", "n1", T0)
        await tx.set_station_connection("CPB", "n2", T0)
        ids = []
        for sid, kw in (("CPA", {"limit_minor": 100}), ("CPA", {}),
                        ("CPA", {"limit_minor": 300, "status": SessionStatus.COMPLETED}),
                        ("CPA", {"limit_minor": 400}), ("CPB", {"limit_minor": 500}),
                        ("CPC", {"limit_minor": 600})):
            ids.append(await tx.insert_session(session(sid, **kw)))
        signed = await tx.add_authorization("0xd", "CPA", "APP", {"max_amount": 400}, 1,
                                            1_900_000_000, T0)
        await tx.execute("UPDATE session_authorizations SET session_id = ? WHERE id = ?",
                         ids[3], signed)
        return ids

    ids = await unit(repo, setup)
    found = await repo.read(lambda tx: tx.limited_sessions("n1"))
    assert [(s.id, s.limit_minor, expiry) for s, expiry in found] == [
        (ids[0], 100, None), (ids[3], 400, 1_900_000_000)]
    assert [s.id for s, _ in await repo.read(lambda tx: tx.limited_sessions("n2"))] == [
        ids[4]]
    assert await repo.read(lambda tx: tx.limited_sessions("n3")) == []
    if db.startswith("postgres"):
        rows = await repo.read(lambda tx: tx.fetchall(
            "SELECT indexdef FROM pg_indexes WHERE schemaname = current_schema()"
            " AND indexname = 'sessions_limited'"))
        assert rows and "limit_minor IS NOT NULL" in rows[0]["indexdef"], rows
    else:
        plan = await repo.read(lambda tx: tx.fetchall(
            "EXPLAIN QUERY PLAN SELECT s.id FROM sessions s"
            " JOIN stations st ON st.id = s.station_id"
            " WHERE s.status = 'active' AND s.limit_minor IS NOT NULL"
            " AND st.connected_node = ?", "n1"))
        details = " ".join(str(r["detail"]) for r in plan)
        assert "sessions_limited" in details, details


async def test_a_bus_command_is_claimed_once_per_node_until_it_expires(
    repo: Repository,
) -> None:
    """csms.bus.commands keeps the request ids a node served here: a restarted node (a new
    process on the same database) refuses an id it took before, until its window ends."""
    now = datetime(2026, 3, 1, 10, tzinfo=UTC)
    until = now + timedelta(seconds=610)

    async def claim(node: str, request_id: str, at: datetime) -> bool:
        return await unit(repo, lambda tx: tx.claim_bus_command(node, request_id, until, at))

    assert await claim("n1", "r1", now) is True
    assert await claim("n1", "r1", now + timedelta(seconds=600)) is False  # a replay
    assert await claim("n2", "r1", now) is True  # another node's ids are its own
    assert await claim("n1", "r2", now) is True
    # past its window the id is forgotten (the command is stale by then anyway)
    assert await claim("n1", "r1", until + timedelta(seconds=1)) is True


async def test_expired_bus_command_claims_are_swept_apart_from_claims(
    repo: Repository,
) -> None:
    """A claim does not sweep (csms.bus.commands sweeps now and then): an expired id is
    taken again while its row is still there, and the sweep drops expired rows only."""
    now = datetime(2026, 3, 1, 10, tzinfo=UTC)
    until = now + timedelta(seconds=610)
    later = until + timedelta(seconds=1)

    async def claim(request_id: str, at: datetime, kept: datetime = until) -> bool:
        return await unit(repo, lambda tx: tx.claim_bus_command("n1", request_id, kept, at))

    async def sweep(at: datetime) -> int:
        return await unit(repo, lambda tx: tx.drop_expired_bus_commands(at))

    assert await claim("r1", now) and await claim("r2", now)
    assert await claim("r3", later, later + timedelta(seconds=610))  # r1, r2 expired, kept
    assert await claim("r1", later, later + timedelta(seconds=610))  # taken over
    assert await sweep(later) == 1  # r2 only; r1 and r3 are in their windows
    assert await sweep(later) == 0
    assert await claim("r1", later) is False and await claim("r3", later) is False
    assert await claim("r2", later) is True


async def test_held_sessions_are_read_by_their_flags_through_an_index(
    repo: Repository, db: str,
) -> None:
    """The settlement worker looks at the held sessions' deadlines every minute, and the
    console counts them: it reads the held ones only (completed, not taken by the worker,
    a hold flag and no decision), never every unsettled session, through the index on
    (status, settlement_state, id). A flag is matched whole: one whose name only looks
    like a hold flag (LIKE's _ is any character) holds nothing."""
    from csms.service.billing import BillingState, billing_state
    from csms.storage.sql import held_sessions_query

    done = {"status": SessionStatus.COMPLETED, "stopped_at": T0 + timedelta(hours=1)}
    kinds = {
        "held": ["meter_went_backwards"],
        "held_warned": ["stop_lost", "hold_deadline_near"],
        "held_passed": ["stop_lost", "hold_deadline_passed"],
        "released": ["stop_lost", "released"],
        "rejected": ["stop_lost", "rejected"],
        "queued": [],
        "unheld_flags": ["hold_deadline_near", "stopXlost", "meter_went_backwards_not"],
        "in_queue": ["no_tariff"],  # held since it was queued: the worker's to take out
    }

    async def setup(tx: Tx) -> dict[str, int]:
        await tx.insert_station(station("CP1"))
        ids = {}
        for n, (kind, flags) in enumerate(kinds.items()):
            ids[kind] = await tx.insert_session(session(transaction_id=str(n), flags=flags,
                                                        **done))
        ids["active"] = await tx.insert_session(session(transaction_id="a",
                                                        flags=["stop_lost"]))
        await tx.enqueue_settlement(ids["in_queue"], T0)
        return ids

    ids = await unit(repo, setup)

    async def held(before: int | None = None, limit: int = 10,
                   without: str | None = None) -> list[int | None]:
        return [s.id for s in await repo.read(
            lambda tx: tx.held_sessions(before, limit, without=without))]

    expected = [ids["held_passed"], ids["held_warned"], ids["held"]]  # newest first
    assert await held() == expected
    assert await held(without="hold_deadline_passed") == expected[1:]
    assert await held(limit=1) == expected[:1]
    assert await held(before=ids["held_warned"]) == [ids["held"]]
    # the same sessions the billing state reads as held, among the unsettled ones
    unsettled = await repo.read(lambda tx: tx.unsettled_sessions(None, 100))
    assert [s.id for s in unsettled if billing_state(s) == BillingState.HELD] == expected
    sql, params = held_sessions_query(None, 10, "hold_deadline_passed")
    if db.startswith("postgres"):
        async def plan_of(tx: Tx) -> str:
            await tx.execute("SET LOCAL enable_seqscan = off")  # a few rows: as at scale
            rows = await tx.fetchall("EXPLAIN " + sql, *params)
            return " ".join(str(next(iter(r.values()))) for r in rows)

        plan = await repo.unit(plan_of)
        assert "Seq Scan on sessions" not in plan and "sessions_" in plan, plan
    else:
        rows = await repo.read(lambda tx: tx.fetchall("EXPLAIN QUERY PLAN " + sql, *params))
        details = " ".join(str(r["detail"]) for r in rows)
        assert "sessions_unsettled (status=? AND settlement_state=? AND rowid<?)" in details \
            or "sessions_unsettled (status=? AND settlement_state=? AND id<?)" in details, \
            details


async def test_a_session_read_back_holds_each_column_in_its_own_field(
        repo: Repository) -> None:
    # every field a value of its own, none the default: a column mapped to another field
    # of the same type (two times, two readings, two strings) cannot go unseen
    grew, stopped = T0 + timedelta(minutes=3), T0 + timedelta(hours=2)
    written = session(
        "CP7", ocpp_version="ocpp2.0.1", transaction_id="tx-7", connector_id=2, evse_id=3,
        id_tag="T7", auth_status="Blocked", stopped_at=stopped,
        meter_start_wh=Decimal("11.5"), meter_stop_wh=Decimal("22.5"),
        reported_meter_start_wh=Decimal("33.5"), reported_meter_stop_wh=Decimal("44.5"),
        energy_wh=55, status=SessionStatus.COMPLETED, stop_reason="Remote",
        flags=["f1", "f2"], last_seq_no=66, start_key="k7", limit_minor=77,
        energy_grew_at=grew)

    async def add(tx: Tx) -> int:
        await tx.insert_station(station("CP7"))
        return await tx.insert_session(written)

    sid = await unit(repo, add)
    await unit(repo, lambda tx: tx.execute(
        "UPDATE sessions SET price_minor = ?, currency = ?, settlement_state = ? WHERE id = ?",
        88, "SEK", "queued", sid))
    read = await repo.read(lambda tx: tx.get_session(sid))
    assert read is not None and written.created_at is not None
    expected = {
        "station_id": "CP7", "ocpp_version": "ocpp2.0.1", "transaction_id": "tx-7",
        "started_at": T0, "connector_id": 2, "evse_id": 3, "id_tag": "T7",
        "auth_status": "Blocked", "stopped_at": stopped, "meter_start_wh": Decimal("11.5"),
        "meter_stop_wh": Decimal("22.5"), "reported_meter_start_wh": Decimal("33.5"),
        "reported_meter_stop_wh": Decimal("44.5"), "energy_wh": 55,
        "status": SessionStatus.COMPLETED, "stop_reason": "Remote", "flags": ["f1", "f2"],
        "last_seq_no": 66, "start_key": "k7", "limit_minor": 77, "energy_grew_at": grew,
        "id": sid, "created_at": written.created_at, "updated_at": written.updated_at,
        "price_minor": 88, "currency": "SEK", "settlement_state": "queued"}
    assert {name: getattr(read, name) for name in expected} == expected
    assert set(expected) == {f.name for f in dataclasses.fields(Session)}
