"""The settlement worker on py-evm and on a real Anvil: each session settled and paid
exactly once, through crashes, reverts, reorgs, stuck transactions, restored backups and
copies of the database."""

from __future__ import annotations

import asyncio
import copy
import shutil
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from csms.domain.model import Session, SessionStatus
from csms.domain.tariff import BillingUnit, Tariff
from csms.service.billing import billing_state
from csms.service.charging import new_station
from csms.service.holds import decide
from csms.storage.open import open_repository
from csms.storage.sqlite import SqliteRepository
from settlement import wallet
from settlement.chain import AnvilNode, Chain, ContractMissing
from settlement.eip712 import SECP256K1_N, Authorization, recover
from settlement.receipts import INVALID, UNVERIFIED, VALID, load_receipt, verify_receipt
from settlement.worker import LedgerBehind, SettlementWorker
from support import LONG_AGO
from support.chainkit import Kit

from .conftest import T0, add_sessions, link_driver, set_limit

# add_sessions: session i has (700 + i) Wh at 0.40 EUR/kWh, tag TAG{i % 3}
PRICE = {i + 1: round((700 + i) * 0.40 / 10) for i in range(20)}


class Crash(Exception):
    pass


async def batches(repo: Any) -> list[dict[str, Any]]:
    async def work(tx: Any) -> list[dict[str, Any]]:
        return [await tx.get_batch(b["id"]) for b in await tx.ledger_batches(
            int(await tx.ledger_value("ledger_id") or 0))]

    return await repo.read(work)


def held_for(session: Session) -> list[str]:
    """A session's flags but the worker's warnings of its time to decide it by (sessions
    held since T0 are past it: settlement.worker.check_hold_deadlines)."""
    return [f for f in session.flags
            if f not in ("hold_deadline_near", "hold_deadline_passed")]


async def states(repo: Any, ids: list[int]) -> dict[int, dict[str, Any]]:
    async def work(tx: Any) -> dict[int, dict[str, Any]]:
        return {sid: await tx.session_settlement(sid) for sid in ids}

    return await repo.read(work)


@pytest.mark.parametrize("chain_name", ["memory_chain", "anvil_chain"])
async def test_settles_every_session_once_and_pays_the_drivers_who_linked_a_card(
    repo: Any, chain_name: str, request: pytest.FixtureRequest
) -> None:
    chain: Chain = request.getfixturevalue(chain_name)
    kit = Kit(chain)
    d0, _ = await link_driver(repo, kit, "TAG0")
    d1, _ = await link_driver(repo, kit, "TAG1")  # TAG2 belongs to no driver
    ids = await add_sessions(repo, 7)
    worker = SettlementWorker(repo, chain, batch_size=3)
    summary = await worker.run_once()
    assert (summary.batches_created, summary.sessions_batched) == (3, 7)
    assert all(b["state"] == "finalized" for b in await batches(repo))
    assert (await worker.run_once()).sessions_batched == 0  # nothing twice
    st = await states(repo, ids)
    by_tag = {sid: f"TAG{(sid - 1) % 3}" for sid in ids}
    assert {sid: s["settlement_state"] for sid, s in st.items()} == {
        sid: "unpaid" if by_tag[sid] == "TAG2" else "paid" for sid in ids}
    assert {st[sid]["unpaid_reason"] for sid in ids if by_tag[sid] == "TAG2"} == {2}
    paid = {tag: sum(PRICE[s] for s in ids if by_tag[s] == tag) for tag in ("TAG0", "TAG1")}
    assert kit.balance(d0) == 10**6 - paid["TAG0"]
    assert kit.balance(d1) == 10**6 - paid["TAG1"]
    total = paid["TAG0"] + paid["TAG1"]
    # the operator hosts these stations: it earns the payments, the fee included
    assert kit.earnings(chain.operator.address) == total
    for sid in ids:
        receipt = await load_receipt(repo, sid, chain.rpc_url)
        driver = {"TAG0": d0.address, "TAG1": d1.address}.get(by_tag[sid])
        verdict = verify_receipt(receipt, chain.w3, driver=driver,
                                 contract=None if driver else chain.contract_address)
        assert verdict.status == VALID, [(c.name, c.detail) for c in verdict.checks
                                         if c.ok is not True]
        assert receipt["record"]["price_minor"] == PRICE[sid]
        assert receipt["payment"]["paid"] == (by_tag[sid] != "TAG2")


async def test_a_forged_receipt_is_invalid(repo: Any, memory_chain: Chain) -> None:
    kit = Kit(memory_chain)
    d0, _ = await link_driver(repo, kit, "TAG0")
    ids = await add_sessions(repo, 4)
    await SettlementWorker(repo, memory_chain).run_once()
    receipt = await load_receipt(repo, ids[0], None)

    def check(r: dict[str, Any], **kw: Any) -> str:
        return verify_receipt(r, memory_chain.w3, driver=d0.address, **kw).status

    assert check(receipt) == VALID
    forgeries = {
        "energy x10": ("record", "energy_wh", receipt["record"]["energy_wh"] * 10),
        "price x100": ("record", "price_minor", receipt["record"]["price_minor"] * 100),
        "stop reading": ("record", "meter_stop_wh", "99999"),
        "another driver": ("record", "driver", "0x" + "12" * 20),
        "times moved": ("record", "started_at", "2026-01-30T10:00:00+00:00"),
        "another tag": ("record", "id_tag", "SOMEONE"),
        "paid when it was not": ("payment", "paid", False),
        "another sequence number": ("record", "seq", receipt["record"]["seq"] + 1),
    }
    for name, (part, key, value) in forgeries.items():
        bad = copy.deepcopy(receipt)
        bad[part][key] = value
        assert check(bad) == INVALID, name
    bad = copy.deepcopy(receipt)
    bad["samples"][0]["value"] = "999"
    assert check(bad) == INVALID
    # a stranger's look-alike contract: the driver's escrow is not in it
    assert check(receipt, contract="0x" + "34" * 20) == INVALID
    assert verify_receipt(receipt, memory_chain.w3).status == "UNVERIFIED"  # who knows


@pytest.mark.parametrize("crash_point", ["after_sign", "after_broadcast"])
async def test_crash_then_restart_rebroadcasts_the_same_transaction(
    repo: Any, memory_chain: Chain, crash_point: str
) -> None:
    kit = Kit(memory_chain)
    d0, _ = await link_driver(repo, kit, "TAG0")
    await add_sessions(repo, 4)

    def crash(batch_id: int) -> None:
        raise Crash(crash_point)

    first = SettlementWorker(repo, memory_chain, batch_size=10, hooks={crash_point: crash})
    with pytest.raises(Crash):
        await first.run_once()
    [before] = await batches(repo)
    assert before["raw_tx"] and before["tx_hash"] and before["nonce"] is not None
    nonce_before = memory_chain.next_nonce()
    second = SettlementWorker(repo, memory_chain, batch_size=10)  # as after a restart
    await second.run_once()
    [after] = await batches(repo)
    assert after["state"] == "finalized"
    assert (after["tx_hash"], after["nonce"]) == (before["tx_hash"], before["nonce"])
    assert memory_chain.next_nonce() <= nonce_before + 1  # one settle transaction
    assert kit.balance(d0) == 10**6 - PRICE[1] - PRICE[4]  # paid once


async def test_a_nonce_taken_by_another_transaction_is_signed_again_and_pays_once(
    repo: Any, memory_chain: Chain
) -> None:
    """The operator key sent something else (another tool, a second process) between
    the batch's signing and its broadcast: the signed settle can never be mined."""
    kit = Kit(memory_chain)
    d0, _ = await link_driver(repo, kit, "TAG0")
    await add_sessions(repo, 4)

    def crash(batch_id: int) -> None:
        raise Crash("after_sign")

    first = SettlementWorker(repo, memory_chain, batch_size=10, hooks={"after_sign": crash})
    with pytest.raises(Crash):
        await first.run_once()
    [signed] = await batches(repo)
    assert signed["state"] == "signed"
    memory_chain.register_station(11_000)  # takes the signed transaction's nonce
    assert memory_chain.mined_nonce() > int(signed["nonce"])
    second = SettlementWorker(repo, memory_chain, batch_size=10)
    await second.run_once()
    [after] = await batches(repo)
    assert after["state"] == "finalized" and after["nonce"] != signed["nonce"]
    assert after["tx_hash"] != signed["tx_hash"]
    assert kit.balance(d0) == 10**6 - PRICE[1] - PRICE[4]  # paid once


async def test_a_reverted_settlement_is_signed_again_and_pays_once(
    repo: Any, memory_chain: Chain, monkeypatch: pytest.MonkeyPatch
) -> None:
    kit = Kit(memory_chain)
    d0, _ = await link_driver(repo, kit, "TAG0")
    await add_sessions(repo, 3)
    worker = SettlementWorker(repo, memory_chain)
    monkeypatch.setattr(memory_chain, "settle_gas", lambda *a: 60_000)  # runs out of gas
    await worker.build_batches(force=True)
    for _ in range(3):  # signed, broadcast, seen reverted -> pending
        await worker.advance()
    [b] = await batches(repo)
    assert b["state"] == "pending" and "reverted" in (b["error"] or "")
    monkeypatch.undo()
    await worker.run_once()
    [b] = await batches(repo)
    assert b["state"] == "finalized"
    assert kit.balance(d0) == 10**6 - PRICE[1]


async def test_a_restored_backup_settles_nothing_twice(
    tmp_path: Path, memory_chain: Chain
) -> None:
    kit = Kit(memory_chain)
    path = tmp_path / "live.sqlite3"
    live = SqliteRepository(path)
    d0, _ = await link_driver(live, kit, "TAG0")
    ids = await add_sessions(live, 6)
    await live.close()
    shutil.copy(path, tmp_path / "backup.sqlite3")  # the nightly backup: all queued
    live = SqliteRepository(path)
    await SettlementWorker(live, memory_chain).run_once()
    paid = kit.balance(d0)
    assert paid == 10**6 - PRICE[1] - PRICE[4]
    await live.close()
    # the disk dies; the backup is restored: its queue holds sessions the chain settled
    restored = SqliteRepository(tmp_path / "backup.sqlite3")
    try:
        with pytest.raises(LedgerBehind, match="restored from a backup"):
            await SettlementWorker(restored, memory_chain).run_once()
        assert kit.balance(d0) == paid  # nobody billed twice
        assert {s["settlement_state"] for s in (await states(restored, ids)).values()} == {None}
    finally:
        await restored.close()


async def test_a_copy_of_the_database_never_settles_its_chunk_again(
    tmp_path: Path, memory_chain: Chain
) -> None:
    kit = Kit(memory_chain)
    path = tmp_path / "a.sqlite3"
    a = SqliteRepository(path)
    d0, _ = await link_driver(a, kit, "TAG0")
    await add_sessions(a, 3)
    await a.close()
    shutil.copy(path, tmp_path / "b.sqlite3")  # the same ledger, twice
    a, b = SqliteRepository(path), SqliteRepository(tmp_path / "b.sqlite3")
    try:
        await add_sessions(b, 1, station="CP9")  # b's first chunk differs from a's
        wa, wb = SettlementWorker(a, memory_chain), SettlementWorker(b, memory_chain)
        await wa.build_batches(force=True)
        await wb.build_batches(force=True)
        await wa.run_once()  # a settles sequence numbers 1..3
        await wb.run_once()  # b's chunk for 1..4 is another one: a conflict, not a payment
        [ba], [bb] = await batches(a), await batches(b)
        assert (ba["state"], bb["state"]) == ("finalized", "conflict")
        assert "restored backup or a copy" in bb["error"]
        assert kit.balance(d0) == 10**6 - PRICE[1]
    finally:
        await a.close()
        await b.close()


async def test_two_databases_share_one_contract(tmp_path: Path, memory_chain: Chain) -> None:
    kit = Kit(memory_chain)
    repos = [SqliteRepository(tmp_path / f"ledger{i}.sqlite3") for i in range(2)]
    try:
        drivers = []
        for n, r in enumerate(repos):
            drivers.append((await link_driver(r, kit, "TAG0"))[0])
            await add_sessions(r, 2, station=f"CP{n}")
            await SettlementWorker(r, memory_chain, batch_size=10).run_once()
        ledgers = set()
        for r, d in zip(repos, drivers, strict=True):
            [batch] = await batches(r)
            assert batch["state"] == "finalized" and batch["first_seq"] == 1
            ledgers.add(batch["ledger"])
            receipt = await load_receipt(r, 1, None)
            assert verify_receipt(receipt, memory_chain.w3, driver=d.address).valid
        assert len(ledgers) == 2
    finally:
        for r in repos:
            await r.close()


async def test_no_tariff_holds_the_session_instead_of_billing_zero(
    repo: Any, memory_chain: Chain
) -> None:
    await add_sessions(repo, 2)

    async def late_tariff(tx: Any) -> None:  # valid only from 2030: none at the start
        for t in await tx.list_tariffs():
            assert t.valid_from is not None
        await tx.execute("UPDATE tariffs SET valid_from = '2030-01-01T00:00:00+00:00'")

    await repo.unit(late_tariff)
    summary = await SettlementWorker(repo, memory_chain).run_once()
    assert summary.sessions_batched == 0

    async def flags(tx: Any) -> list[list[str]]:
        return [held_for(s) for s in await tx.list_sessions()]

    assert await repo.read(flags) == [["no_tariff"], ["no_tariff"]]


async def test_a_released_session_held_again_can_be_decided_again(
    repo: Any, memory_chain: Chain
) -> None:
    """An operator releases a session the worker held (no tariff) before fixing the
    cause: the worker holds it again, and it must read as held, not stay 'released'
    for ever with no decision possible."""
    from csms.service.holds import billing_state, decide

    await add_sessions(repo, 1)

    async def late_tariff(tx: Any) -> None:
        await tx.execute("UPDATE tariffs SET valid_from = '2030-01-01T00:00:00+00:00'")

    async def state(tx: Any) -> str:
        [s] = await tx.list_sessions()
        return billing_state(s)

    async def release(tx: Any) -> None:
        [s] = await tx.list_sessions()
        await decide(tx, s.id, "released", actor="op", reason=None, now=datetime.now(UTC))

    await repo.unit(late_tariff)
    worker = SettlementWorker(repo, memory_chain)
    await worker.run_once()
    assert await repo.read(state) == "held"
    await repo.unit(release)  # released, but the tariff is still missing
    assert await repo.read(state) == "released"
    await worker.run_once()
    assert await repo.read(state) == "held"  # held again, and decidable again

    async def tariff_now(tx: Any) -> None:
        await tx.execute("UPDATE tariffs SET valid_from = '2000-01-01T00:00:00+00:00'")

    await repo.unit(tariff_now)
    await repo.unit(release)
    assert (await worker.run_once()).sessions_batched == 1
    assert await repo.read(state) in ("batched", "paid", "unpaid")


async def test_a_hosts_station_waits_until_registered_then_pays_the_host(
    repo: Any, memory_chain: Chain
) -> None:
    kit = Kit(memory_chain)
    d0, _ = await link_driver(repo, kit, "TAG0")
    host = kit.account()
    ids = await add_sessions(repo, 1, station="HOSTED")

    async def set_host(tx: Any, index: int | None = None) -> None:
        st = await tx.get_station("HOSTED")
        st.host_address, st.chain_station = host.address, index
        await tx.update_station(st)

    await repo.unit(set_host)
    worker = SettlementWorker(repo, memory_chain)
    assert (await worker.run_once()).sessions_batched == 0  # the host has not registered
    index = wallet.register_station(memory_chain, host, 22_000)

    async def registered(tx: Any) -> None:
        await set_host(tx, index)

    await repo.unit(registered)
    assert (await worker.run_once()).sessions_batched == 1
    assert kit.earnings(host.address) == PRICE[1] - PRICE[1] * 500 // 10_000
    receipt = await load_receipt(repo, ids[0], None)
    assert receipt["record"]["host"] == host.address.lower()
    assert verify_receipt(receipt, memory_chain.w3, driver=d0.address).valid


async def signed_session(repo: Any, kit: Kit, chain: Chain, driver: Any, station: int,
                         session_id: int, max_amount: int,
                         limit_minor: int | None = None) -> None:
    """CP1 on chain as ``station``, and the driver's signed authorization for TAG0 (nonce 7,
    a day to expire) accepted by the station and bound to ``session_id``."""
    async def prepare(tx: Any) -> None:
        st = await tx.get_station("CP1")
        st.chain_station = station
        await tx.update_station(st)
        auth = wallet.authorize(chain, driver, station, max_per_kwh=40, max_amount=max_amount,
                                nonce=7, expiry=kit.now() + 86_400)
        aid = await tx.add_authorization(driver.address, "CP1", "TAG0", auth.as_json(), 7,
                                         auth.expiry, datetime.now(UTC),
                                         limit_minor=limit_minor)
        await tx.remote_start_accepted(aid, kit.now() + 60)  # the station accepted it
        assert await tx.bind_authorization("CP1", "TAG0", session_id, kit.now()) is not None

    await repo.unit(prepare)


async def test_app_sessions_are_paid_with_the_drivers_signature(
    repo: Any, memory_chain: Chain
) -> None:
    kit = Kit(memory_chain)
    driver, _ = kit.driver(allow_cards=False)  # no card sessions: only what it signs
    ids = await add_sessions(repo, 1)
    station = memory_chain.register_station(22_000)

    await signed_session(repo, kit, memory_chain, driver, station, ids[0], max_amount=100)
    await SettlementWorker(repo, memory_chain).run_once()
    assert kit.balance(driver) == 10**6 - PRICE[1]
    receipt = await load_receipt(repo, ids[0], None)
    assert receipt["record"]["kind"] == 1 and receipt["record"]["authorization"]["nonce"] == 7
    verdict = verify_receipt(receipt, memory_chain.w3, driver=driver.address)
    assert verdict.valid, [(c.name, c.detail) for c in verdict.checks if c.ok is not True]


async def test_a_sessions_authorization_is_read_once_a_pass(
    repo: Any, memory_chain: Chain, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The worker reads an app session's stored authorization once for its chunk (the
    station index it is paid to, then the signature the record carries), and the
    session is paid as signed."""
    kit = Kit(memory_chain)
    driver, _ = kit.driver(allow_cards=False)
    ids = await add_sessions(repo, 1)
    station = memory_chain.register_station(22_000)
    await signed_session(repo, kit, memory_chain, driver, station, ids[0], max_amount=100)
    read: list[dict[str, Any]] = []
    real = Authorization.from_json.__func__  # type: ignore[attr-defined]

    def counted(cls: type[Authorization], data: dict[str, Any]) -> Authorization:
        read.append(data)
        return real(cls, data)  # type: ignore[no-any-return]

    monkeypatch.setattr(Authorization, "from_json", classmethod(counted))
    summary = await SettlementWorker(repo, memory_chain).run_once()
    assert summary.sessions_batched == 1 and len(read) == 1, read
    assert kit.balance(driver) == 10**6 - PRICE[1]


def malleated(signature: str, form: str) -> str:
    """Another encoding of the same signature, which recovers the same signer: v as a
    transaction's EIP-155 ``v`` (35 + parity), or the high ``s`` (n - s, parity flipped)."""
    raw = bytes.fromhex(signature.removeprefix("0x"))
    r, s, v = raw[:32], int.from_bytes(raw[32:64], "big"), raw[64]
    if form == "eip155_v":
        return "0x" + (raw[:64] + bytes([35 + (v - 27)])).hex()
    return "0x" + (r + (SECP256K1_N - s).to_bytes(32, "big") + bytes([55 - v])).hex()


async def start_app_session(repo: Any, kit: Kit, station: int, body: dict[str, Any],
                            session_id: int) -> None:
    """CP1 on chain as ``station``, and the app session of the authorization ``body`` (its
    nonce 7) bound to the session ``session_id`` of TAG0, as a remote start makes it."""

    async def prepare(tx: Any) -> None:
        st = await tx.get_station("CP1")
        st.chain_station = station
        await tx.update_station(st)
        aid = await tx.add_authorization(body["driver"], "CP1", "TAG0", body, 7,
                                         body["expiry"], datetime.now(UTC))
        await tx.remote_start_accepted(aid, kit.now() + 60)
        assert await tx.bind_authorization("CP1", "TAG0", session_id, kit.now()) is not None

    await repo.unit(prepare)


@pytest.mark.parametrize("form", ["eip155_v", "high_s"])
async def test_a_driver_signature_in_another_encoding_neither_stalls_nor_goes_unpaid(
    repo: Any, memory_chain: Chain, form: str
) -> None:
    """A greedy driver hands in its authorization with the signature encoded otherwise: v
    as 35 + parity, or s in the upper half of the curve's order. Both recover the driver,
    so the central system accepted them; the contract reads a signature in EIP-2098's
    compact form, which holds neither: the first made the cut raise (no chunk cut, every
    host's sessions waiting behind it for good), the second was sent with a parity the
    contract read otherwise (BAD_AUTHORIZATION: the host delivered and was never paid).
    The worker sends the signature's canonical form: the session is paid, and so is the
    card session queued with it, and the record carries the signature the chain checked."""
    kit = Kit(memory_chain)
    driver, _ = kit.driver(allow_cards=False)
    d1, _ = await link_driver(repo, kit, "TAG1")
    ids = await add_sessions(repo, 2)  # TAG0: the app session's token; TAG1: a card
    station = memory_chain.register_station(22_000)
    auth = wallet.authorize(memory_chain, driver, station, max_per_kwh=40, max_amount=100,
                            nonce=7, expiry=kit.now() + 86_400)
    body = {**auth.as_json(), "signature": malleated(auth.signature, form)}
    assert recover(Authorization.from_json(body), memory_chain.chain_id,
                   memory_chain.contract_address or "") == driver.address

    await start_app_session(repo, kit, station, body, ids[0])
    summary = await SettlementWorker(repo, memory_chain).run_once()
    assert summary.sessions_batched == 2
    st = await states(repo, ids)
    assert [st[sid]["settlement_state"] for sid in ids] == ["paid", "paid"], st
    assert kit.balance(driver) == 10**6 - PRICE[1]
    assert kit.balance(d1) == 10**6 - PRICE[2]
    receipt = await load_receipt(repo, ids[0], None)
    assert receipt["record"]["authorization"]["signature"] == auth.signature
    verdict = verify_receipt(receipt, memory_chain.w3, driver=driver.address)
    assert verdict.valid, [(c.name, c.detail) for c in verdict.checks if c.ok is not True]


async def test_a_stored_signature_no_encoding_reads_holds_its_session_only(
    repo: Any, memory_chain: Chain
) -> None:
    """A stored authorization whose signature is none of a signature's encodings (v of
    5: a database edited by hand; the remote start refuses it) is held for an operator;
    the card session queued with it is paid in the same pass, and the cut does not raise."""
    kit = Kit(memory_chain)
    driver, _ = kit.driver(allow_cards=False)
    await link_driver(repo, kit, "TAG1")
    ids = await add_sessions(repo, 2)
    station = memory_chain.register_station(22_000)
    auth = wallet.authorize(memory_chain, driver, station, max_per_kwh=40, max_amount=100,
                            nonce=7, expiry=kit.now() + 86_400)
    body = {**auth.as_json(), "signature": auth.signature[:-2] + "05"}

    await start_app_session(repo, kit, station, body, ids[0])
    summary = await SettlementWorker(repo, memory_chain).run_once()
    assert summary.sessions_batched == 1
    st = await states(repo, ids)
    assert st[ids[1]]["settlement_state"] == "paid", st

    async def flags(tx: Any) -> dict[int, list[str]]:
        return {s.id: held_for(s) for s in await tx.list_sessions()}

    assert (await repo.read(flags))[ids[0]] == ["bad_authorization"]


async def test_reset_chain_is_detected_not_resettled(repo: Any, memory_chain: Chain) -> None:
    await add_sessions(repo, 2)
    memory_chain.contract_address = "0x" + "11" * 20  # an address without code: a reset chain
    with pytest.raises(ContractMissing):
        await SettlementWorker(repo, memory_chain).run_once()


async def test_reorg_moves_the_batch_back(repo: Any, anvil_chain: Chain) -> None:
    await add_sessions(repo, 3)
    worker = SettlementWorker(repo, anvil_chain, batch_size=10, confirmations=3)
    await worker.build_batches(force=True)  # registers the ledger and the station
    rpc = anvil_chain.w3.provider.make_request  # type: ignore[attr-defined]
    snapshot = rpc("evm_snapshot", [])["result"]
    for _ in range(3):  # pending -> signed -> broadcast -> included
        await worker.advance()
    [b] = await batches(repo)
    assert b["state"] == "included"
    rpc("evm_revert", [snapshot])  # the block with our settlement is gone
    rpc("evm_mine", [])
    await worker.advance()
    [b] = await batches(repo)
    assert b["state"] == "broadcast" and b["block_number"] is None
    await worker.advance()  # the same raw transaction again; automine includes it
    await worker.advance()
    [b] = await batches(repo)
    assert b["state"] == "included"
    for _ in range(3):
        rpc("evm_mine", [])
    await worker.advance()
    [b] = await batches(repo)
    assert b["state"] == "finalized"
    receipt = await load_receipt(repo, 1, anvil_chain.rpc_url)
    verdict = verify_receipt(receipt, anvil_chain.w3, contract=anvil_chain.contract_address)
    assert verdict.valid


async def test_stuck_transaction_is_replaced_with_bumped_fees(
    repo: Any, anvil_chain: Chain
) -> None:
    await add_sessions(repo, 2)
    worker = SettlementWorker(repo, anvil_chain, batch_size=10, stuck_after=1)
    await worker.build_batches(force=True)  # registers the ledger and the station
    rpc = anvil_chain.w3.provider.make_request  # type: ignore[attr-defined]
    rpc("evm_setAutomine", [False])
    await worker.advance()  # signed and broadcast, but nothing is mined
    [b] = await batches(repo)
    assert b["state"] == "broadcast"
    first_hash, first_fee = b["tx_hash"], int(b["max_fee"])
    await asyncio.sleep(1.1)
    await worker.advance()  # stuck -> replaced: signed again with the same nonce
    [b] = await batches(repo)
    assert b["state"] == "signed" and b["tx_hash"] != first_hash
    assert int(b["max_fee"]) >= first_fee * 5 // 4 and first_hash in b["replaced"]
    await worker.advance()  # the replacement is broadcast
    assert (await batches(repo))[0]["state"] == "broadcast"
    rpc("evm_setAutomine", [True])
    rpc("evm_mine", [])
    await worker.run_once(timeout=60)
    [b] = await batches(repo)
    assert b["state"] == "finalized"
    receipt = anvil_chain.receipt(b["tx_hash"])
    assert receipt is not None and receipt.status == 1


async def test_dropped_transaction_is_broadcast_again(repo: Any, anvil_chain: Chain) -> None:
    await add_sessions(repo, 1)
    worker = SettlementWorker(repo, anvil_chain, stuck_after=3600)
    await worker.build_batches(force=True)  # registers the ledger and the station
    rpc = anvil_chain.w3.provider.make_request  # type: ignore[attr-defined]
    rpc("evm_setAutomine", [False])
    await worker.advance()
    await worker.advance()
    [b] = await batches(repo)
    rpc("anvil_dropTransaction", [b["tx_hash"]])
    assert not anvil_chain.known(b["tx_hash"])
    await worker.advance()  # sees it missing: the same raw transaction again
    assert anvil_chain.known(b["tx_hash"])
    rpc("evm_setAutomine", [True])
    rpc("evm_mine", [])
    await worker.run_once(timeout=60)
    [b2] = await batches(repo)
    assert (b2["state"], b2["tx_hash"]) == ("finalized", b["tx_hash"])


async def test_chain_down_sessions_wait_and_settle_later(
    repo: Any, anvil_chain: Chain
) -> None:
    await add_sessions(repo, 3)
    worker = SettlementWorker(repo, anvil_chain, max_wait=0)
    assert anvil_chain.node is not None
    state_file, port = anvil_chain.node.state_file, anvil_chain.node.port
    anvil_chain.node.stop()  # the chain endpoint goes away
    stop = asyncio.Event()
    loop_task = asyncio.create_task(worker.run_forever(stop, interval=0.1))
    await asyncio.sleep(1.0)
    assert not loop_task.done()  # the worker keeps going, logging the failures
    assert all(b["state"] in ("pending", "signed") for b in await batches(repo))
    anvil_chain.node = AnvilNode(state_file, port=port)  # back, with its saved state
    async with asyncio.timeout(30):
        while not (bs := await batches(repo)) or any(b["state"] != "finalized" for b in bs):
            await asyncio.sleep(0.1)
    stop.set()
    await loop_task
    assert sum(b["count"] for b in await batches(repo)) == 3


async def test_the_chains_time_is_read_only_when_something_is_queued(
    repo: Any, memory_chain: Chain, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker that finds the queue empty (most of its passes) asks the chain nothing for
    its time: the latest block, a round trip to the RPC endpoint each pass."""
    read = 0
    real_now = memory_chain.now

    def now() -> int:
        nonlocal read
        read += 1
        return real_now()

    monkeypatch.setattr(memory_chain, "now", now)
    worker = SettlementWorker(repo, memory_chain, batch_size=2)
    assert await worker.build_batches() == (0, 0)
    assert await worker.build_batches(force=True) == (0, 0)
    assert read == 0
    await add_sessions(repo, 1)
    assert await worker.build_batches(force=True) == (1, 1)
    assert read == 1  # once a pass with something to build
    assert await worker.build_batches() == (0, 0)
    assert read == 1


async def test_one_worker_settles_at_a_time_and_another_takes_over(
    repo: Any, memory_chain: Chain
) -> None:
    """Two nodes' workers on one database: the lease holder settles; when it stops, the
    other one takes over; no session in two batches, every batch settled once."""
    from datetime import timedelta

    from csms.service.cluster import lease_holder
    from settlement.worker import LeaseHeld

    ttl = timedelta(seconds=5)  # renewed every 0.1 s: it lapses only when a holder stops
    stops = {"A": asyncio.Event(), "B": asyncio.Event()}
    workers = {h: SettlementWorker(repo, memory_chain, batch_size=100, max_wait=0, holder=h,
                                   lease_ttl=ttl) for h in stops}
    tasks = {h: asyncio.create_task(w.run_forever(stops[h], interval=0.1))
             for h, w in workers.items()}

    async def holder() -> str | None:
        async def work(tx: Any) -> str | None:
            return await lease_holder(tx, "settlement")

        return await repo.read(work)

    async def settled(n: int) -> None:
        async with asyncio.timeout(30):
            while sum(b["count"] for b in await batches(repo)) < n or any(
                    b["state"] != "finalized" for b in await batches(repo)):
                await asyncio.sleep(0.1)

    try:
        await add_sessions(repo, 4)
        await settled(4)
        first = await holder()
        assert first in ("A", "B")
        with pytest.raises(LeaseHeld, match=first):
            await SettlementWorker(repo, memory_chain, holder="C").run_once()
        stops[first].set()
        await tasks[first]
        await add_sessions(repo, 3, station="CP2")
        await settled(7)
        second = await holder()
        assert second is not None and second != first
    finally:
        for h in stops:
            stops[h].set()
        await asyncio.gather(*tasks.values())
    bs = await batches(repo)
    assert [(b["state"], b["replaced"]) for b in bs] == [("finalized", "[]")] * len(bs)
    assert sum(b["count"] for b in bs) == 7


async def test_payment_in_an_erc20_token(repo: Any, memory_chain: Chain) -> None:
    """The worker pays from token escrows just as from native ones (6 decimals, billed in
    cents: one billing unit is 10,000 base units)."""
    kit = Kit(memory_chain)
    token = kit.deploy("TestToken")
    memory_chain.deploy(3600, token.address, 10_000, None, 0)
    driver, _ = await link_driver(repo, kit, "TAG0", 10**9, token=token)
    ids = await add_sessions(repo, 3)
    await SettlementWorker(repo, memory_chain, batch_size=100).run_once()
    assert (await states(repo, ids))[ids[0]]["settlement_state"] == "paid"
    assert kit.balance(driver) == 10**9 // 10_000 - PRICE[1]
    operator = memory_chain.operator.address
    assert kit.earnings(operator) == PRICE[1] * 10_000


async def test_what_the_chain_sees_of_a_batch(repo: Any, memory_chain: Chain) -> None:
    """Read a real chunk's calldata and events: no tag, tag hash, station id or session time
    is in them; what is there is what docs/settlement.md says."""
    from eth_hash.auto import keccak

    from settlement.chain import SettlementReader
    from settlement.records import unpack_entry

    kit = Kit(memory_chain)
    await link_driver(repo, kit, "TAG0")
    ids = await add_sessions(repo, 6, station="HOST-STATION-7")
    await SettlementWorker(repo, memory_chain).run_once()
    [b] = await batches(repo)
    w3 = memory_chain.w3
    calldata = bytes(w3.eth.get_transaction(b["tx_hash"])["input"])
    logs = w3.eth.get_logs({"address": memory_chain.contract_address, "fromBlock": 0,
                            "toBlock": "latest"})
    blob = calldata + b"".join(bytes(entry["data"]) + b"".join(bytes(t) for t in entry["topics"])
                               for entry in logs)
    for tag in ("TAG0", "TAG1", "TAG2"):
        assert tag.encode() not in blob and bytes(keccak(tag.encode())) not in blob
    assert b"HOST-STATION-7" not in blob and bytes(keccak(b"HOST-STATION-7")) not in blob

    async def times(tx: Any) -> list[datetime]:
        out = []
        for sid in ids:
            s = await tx.get_session(sid)
            out += [s.started_at, s.stopped_at]
        return out

    for at in await repo.read(times):
        unix = int(at.timestamp())
        for width in (4, 5, 8, 32):
            assert unix.to_bytes(width, "big") not in blob, at
        assert at.isoformat().encode() not in blob
    # what it does carry: per session the record hash and the packed fields
    _, ledger, first_seq, entries = SettlementReader(
        w3, memory_chain.contract_address or "").settle_input(bytes.fromhex(b["tx_hash"][2:]))
    assert (ledger, first_seq, len(entries)) == (int(b["ledger"]), 1, 6)
    fields = [unpack_entry(packed) for _, packed in entries]
    assert sorted(f["energy_wh"] for f in fields) == [700 + i for i in range(6)]
    assert {f["duration_s"] for f in fields} == {1800}
    assert len(calldata) // len(entries) < 100  # bytes on chain per session


async def test_late_meter_values_of_a_queued_session_do_not_stop_settlement(
    repo: Any, memory_chain: Chain,
) -> None:
    """A station sends MeterValues for a transaction it already stopped, with a time it
    cannot have sent, while the session waits in the settlement queue. The session's
    billed data is not the station's to change any more (no hold flag, no readings of the
    session's): both stations' sessions are settled and paid (the cut used to fail on
    that session at every pass)."""
    from datetime import timedelta
    from decimal import Decimal

    from csms.domain.model import IdTag, MeterSample
    from csms.domain.tariff import Tariff
    from csms.service.charging import ChargingService, StopInfo, new_station

    kit = Kit(memory_chain)
    d0, _ = await link_driver(repo, kit, "TAG0")
    now = datetime.now(UTC)
    t0 = now - timedelta(hours=2)

    async def setup(tx: Any) -> None:
        for sid in ("CP1", "CP2"):
            await tx.insert_station(new_station(sid))
            st = await tx.get_station(sid)
            st.created_at = now - timedelta(days=30)
            await tx.update_station(st)
        await tx.add_tariff(Tariff("*", Decimal("0.40"), "EUR", 2,
                                   valid_from=datetime(2000, 1, 1, tzinfo=UTC)))
        await tx.put_tag(IdTag("TAG0"))  # as csms drivers link does: an accepted tag

    await repo.unit(setup)
    service = ChargingService(repo, clock=lambda: now)
    tx1, _, _ = await service.start_transaction("CP1", 1, "TAG0", Decimal(0), t0)
    await service.stop_transaction("CP1", StopInfo(tx1, Decimal(1000), t0 + timedelta(hours=1)))
    tx2, _, _ = await service.start_transaction("CP2", 1, "TAG0", Decimal(0), t0)
    await service.stop_transaction("CP2", StopInfo(tx2, Decimal(2000), t0 + timedelta(hours=1)))
    # CP1, after its stop: a reading dated in 2099
    await service.meter_values("CP1", 1, str(tx1), [MeterSample(
        datetime(2099, 1, 1, tzinfo=UTC), "1000")])
    await SettlementWorker(repo, memory_chain).run_once()
    assert kit.balance(d0) == 10**6 - 40 - 80  # 1 and 2 kWh at 0.40
    late = await repo.read(lambda tx: tx.get_session(int(tx1)))
    assert "time_implausible" not in late.flags and "late_samples" in late.flags
    [event] = await repo.read(lambda tx: tx.list_station_events("CP1", "late_data"))
    assert event["payload"]["times"] == ["2099-01-01T00:00:00+00:00"]


async def test_a_queued_session_held_since_it_was_queued_leaves_the_queue_alone(
    repo: Any, memory_chain: Chain,
) -> None:
    """Whatever put a hold flag on a session while it waited in the queue, the worker
    takes that one session out of the queue (an operator's release queues it again) and
    settles the others: the chunk's cut used to fail on it at every pass."""
    kit = Kit(memory_chain)
    d0, _ = await link_driver(repo, kit, "TAG0")
    ids = await add_sessions(repo, 4)  # sessions 1 and 4 are TAG0's

    async def hold_first(tx: Any) -> None:
        s = await tx.get_session(ids[0])
        s.flag("time_implausible")
        await tx.update_session(s)

    await repo.unit(hold_first)
    summary = await SettlementWorker(repo, memory_chain).run_once()
    assert summary.sessions_batched == 3
    assert kit.balance(d0) == 10**6 - PRICE[4]
    by_id = await states(repo, ids)
    assert by_id[ids[0]]["settlement_state"] is None
    # TAG1's and TAG2's are linked to no driver: settled, and refused on chain
    assert [by_id[i]["settlement_state"] for i in ids[1:]] == ["unpaid", "unpaid", "paid"]
    assert await repo.read(lambda tx: tx.queued_for_settlement(10)) == []

    station = (await repo.read(lambda tx: tx.get_session(ids[0]))).station_id
    held = await repo.read(lambda tx: tx.list_station_events(station, "billing_hold"))
    assert [e["payload"]["session_id"] for e in held] == [ids[0]]


@pytest.mark.parametrize("commitment", ["none", "the driver's other card"])
async def test_a_card_session_charged_to_a_driver_without_its_card_is_invalid(
    repo: Any, memory_chain: Chain, commitment: str,
) -> None:
    """The chain pays a card session under the driver's standing terms without seeing the
    card: the receipt is where the driver sees that the card was theirs (docs/settlement.md:
    "its card linked there"). An operator that charges someone else's card (TAG1) to the
    driver, with no commitment in the record, must not get a VALID receipt."""
    kit = Kit(memory_chain)
    d0, _ = await link_driver(repo, kit, "TAG0")

    async def charge_to_d0(tx: Any) -> None:  # the operator's own database row
        own = (await tx.card_of("TAG0"))["commitment"]  # linked on chain for TAG0
        await tx.link_card("TAG1", d0.address, "0x" + "00" * 32,
                           "" if commitment == "none" else own, datetime.now(UTC))

    await repo.unit(charge_to_d0)
    ids = await add_sessions(repo, 2)  # session 2 is TAG1's
    await SettlementWorker(repo, memory_chain).run_once()
    receipt = await load_receipt(repo, ids[1], None)
    assert receipt["record"]["id_tag"] == "TAG1" and receipt["payment"]["paid"]
    assert kit.balance(d0) == 10**6 - PRICE[1] - PRICE[2]  # d0 paid for TAG1's session
    verdict = verify_receipt(receipt, memory_chain.w3, driver=d0.address)
    assert verdict.status == INVALID, [(c.name, c.ok, c.detail) for c in verdict.checks]


async def test_a_card_session_of_another_card_is_invalid_with_the_drivers_own_salt(
    repo: Any, memory_chain: Chain,
) -> None:
    """The receipt of a session of TAG1 charged to d0 under d0's commitment of TAG0, without
    the operator's salt: d0 gives TAG0 and its salt (csms verify --card TAG0:SALT) and the
    commitment is not TAG1's; the genuine TAG0 session of the same chunk is VALID."""
    kit = Kit(memory_chain)
    d0, _ = await link_driver(repo, kit, "TAG0")
    row = await repo.read(lambda tx: tx.card_of("TAG0"))

    async def charge_to_d0(tx: Any) -> None:
        await tx.link_card("TAG1", d0.address, "0x" + "00" * 32, row["commitment"],
                           datetime.now(UTC))

    await repo.unit(charge_to_d0)
    ids = await add_sessions(repo, 2)
    await SettlementWorker(repo, memory_chain).run_once()
    own = [("TAG0", row["salt"])]
    genuine = await load_receipt(repo, ids[0], None)
    assert verify_receipt(genuine, memory_chain.w3, driver=d0.address, cards=own).valid
    forged = await load_receipt(repo, ids[1], None)
    forged.pop("card", None)  # the operator leaves its salt out
    assert verify_receipt(forged, memory_chain.w3, driver=d0.address).status == UNVERIFIED
    verdict = verify_receipt(forged, memory_chain.w3, driver=d0.address, cards=own)
    assert verdict.status == INVALID, [(c.name, c.ok, c.detail) for c in verdict.checks]


async def test_a_session_above_its_hosts_registered_power_is_held_not_sent_to_be_refused(
    repo: Any, memory_chain: Chain,
) -> None:
    """A host registered its station on chain with less power than the central system's
    own check assumes (its default: 350 kW): sessions above the registered power would be
    refused by the contract for good (unpaid). The worker holds them for an operator, and
    settles the rest."""
    kit = Kit(memory_chain)
    d0, _ = await link_driver(repo, kit, "TAG0")
    host = kit.account()
    # ~1.4 kW over 30 minutes each: above 1 kW (and its 1% and minute), within 2 kW
    hosted = await add_sessions(repo, 1, station="HOSTED")
    index = wallet.register_station(memory_chain, host, 1_000)

    async def set_host(tx: Any) -> None:
        st = await tx.get_station("HOSTED")
        st.host_address, st.chain_station = host.address, index
        await tx.update_station(st)

    await repo.unit(set_host)
    own = await add_sessions(repo, 1)  # the operator's own station: registered at 350 kW
    summary = await SettlementWorker(repo, memory_chain).run_once()
    assert summary.sessions_batched == 1
    assert (await states(repo, own))[own[0]]["settlement_state"] == "paid"
    held = await repo.read(lambda tx: tx.get_session(hosted[0]))
    assert "energy_above_max_power" in held.flags
    assert kit.balance(d0) == 10**6 - PRICE[1]


async def test_an_app_session_is_settled_before_its_signature_expires(
    repo: Any, memory_chain: Chain
) -> None:
    """The driver's authorization may be settled until its expiry: a completed app session
    does not wait the worker's hour for a fuller chunk when the signature expires before
    (the contract would refuse it: AUTHORIZATION_EXPIRED, the host unpaid)."""
    kit = Kit(memory_chain)
    driver, _ = kit.driver(allow_cards=False)
    ids = await add_sessions(repo, 2)
    station = memory_chain.register_station(22_000)

    async def prepare(tx: Any) -> None:
        st = await tx.get_station("CP1")
        st.chain_station = station
        await tx.update_station(st)
        for nonce, (sid, tag, expires_in) in enumerate(
                ((ids[0], "TAG0", 86_400), (ids[1], "TAG1", 600)), start=1):
            auth = wallet.authorize(memory_chain, driver, station, max_per_kwh=40,
                                    max_amount=1_000, nonce=nonce,
                                    expiry=int(datetime.now(UTC).timestamp()) + expires_in)
            aid = await tx.add_authorization(driver.address, "CP1", tag, auth.as_json(),
                                             nonce, auth.expiry, datetime.now(UTC))
            await tx.remote_start_accepted(aid, kit.now() + 60)
            assert await tx.bind_authorization("CP1", tag, sid, kit.now()) is not None

    await repo.unit(prepare)

    async def requeue(tx: Any) -> None:  # completed a moment ago, not in 2026
        for sid in ids:
            # started half an hour ago: the driver's notice is days away
            session = await tx.get_session(sid)
            session.stopped_at = datetime.now(UTC)
            session.started_at = session.stopped_at - timedelta(minutes=30)
            await tx.update_session(session)
            await tx.dequeue_settlement(sid)
            await tx.enqueue_settlement(sid, datetime.now(UTC))

    await repo.unit(requeue)
    worker = SettlementWorker(repo, memory_chain, max_wait=3600)
    assert await worker.build_batches() == (1, 2)  # not in an hour: now


async def test_a_session_is_settled_before_a_withdrawal_announced_at_its_start_is_made(
    repo: Any, memory_chain: Chain
) -> None:
    """A driver may announce a withdrawal (or lower the terms) once its session started and
    make it the contract's notice period later, by block time: a completed session does not
    wait the worker's hour for a fuller chunk when its start plus the notice comes before
    (the escrow emptied, the contract would refuse it: ESCROW_TOO_LOW, the host unpaid)."""
    kit = Kit(memory_chain)
    notice = int(memory_chain.info()["notice_period"])
    ids = await add_sessions(repo, 2)

    async def started(tx: Any, sid: int, seconds_ago: int) -> None:
        session = await tx.get_session(sid)
        session.started_at = datetime.fromtimestamp(kit.now() - seconds_ago, UTC)
        session.stopped_at = session.started_at + timedelta(minutes=30)
        await tx.update_session(session)
        await tx.dequeue_settlement(sid)  # completed a moment ago, as the node queues it
        await tx.enqueue_settlement(sid, datetime.now(UTC))

    # started an hour ago: its notice is days away, it waits for a fuller chunk
    await repo.unit(lambda tx: started(tx, ids[0], 3600))
    await repo.unit(lambda tx: tx.dequeue_settlement(ids[1]))
    worker = SettlementWorker(repo, memory_chain, max_wait=3600)
    assert await worker.build_batches() == (0, 0)
    # started the notice less 70 minutes ago: in an hour and the margin to be included,
    # the driver may take the escrow
    await repo.unit(lambda tx: started(tx, ids[1], notice - 70 * 60))
    assert await worker.build_batches() == (1, 2)


async def test_a_session_waiting_for_its_host_hurries_no_chunk(
    db_url: str, memory_chain: Chain
) -> None:
    """A session of a hosted station its host has not registered on chain yet waits in the
    queue, settled by no chunk (the contract pays no station index). Started longer ago
    than the notice (a host registering a week late, or a station dating its start back
    to its registration), it made every pass cut the other sessions at once, however few:
    a chunk, a transaction's gas, for every session completed anywhere while it waited.
    Its start no longer hurries a chunk it is not in; once its host registers, it does."""
    repo = await open_repository(db_url)
    try:
        kit = Kit(memory_chain)
        notice = int(memory_chain.info()["notice_period"])
        [waiting] = await add_sessions(repo, 1, station="HOSTED")
        [own] = await add_sessions(repo, 1)

        async def started(tx: Any, sid: int, seconds_ago: int) -> None:
            session = await tx.get_session(sid)
            session.started_at = datetime.fromtimestamp(kit.now() - seconds_ago, UTC)
            session.stopped_at = session.started_at + timedelta(minutes=30)
            await tx.update_session(session)
            await tx.dequeue_settlement(sid)  # completed a moment ago
            await tx.enqueue_settlement(sid, datetime.now(UTC))

        async def hosted(tx: Any) -> None:
            st = await tx.get_station("HOSTED")
            st.host_address = kit.account().address
            await tx.update_station(st)
            await started(tx, waiting, notice + 3600)
            await started(tx, own, 3600)

        await repo.unit(hosted)
        worker = SettlementWorker(repo, memory_chain, max_wait=3600)
        for _ in range(3):  # pass after pass: the own session waits for a fuller chunk
            assert await worker.build_batches() == (0, 0)
        assert await batches(repo) == []
        # its host registers the station: it can be settled, and is at once (its driver's
        # notice has run out), the own session with it
        index = wallet.register_station(memory_chain, kit.account(), 22_000)

        async def registered(tx: Any) -> None:
            st = await tx.get_station("HOSTED")
            st.chain_station = index
            await tx.update_station(st)

        await repo.unit(registered)
        assert await worker.build_batches() == (1, 2)
    finally:
        await repo.close()


async def test_a_session_priced_above_its_limit_is_paid_its_limit(
    repo: Any, memory_chain: Chain
) -> None:
    """The station delivered past the stop the central system asked for: the driver's escrow
    pays the session's limit, not the tariff's price (which the contract refuses whole, as
    above the driver's limit per session: the host would get nothing), and the host is paid
    that. A session without a limit is billed the tariff's price as before."""
    kit = Kit(memory_chain)
    d0, _ = await link_driver(repo, kit, "TAG0", max_per_session=20)
    host = kit.account()
    index = wallet.register_station(memory_chain, host, 22_000)
    ids = await add_sessions(repo, 4, station="HOSTED")  # 1 and 4: TAG0, 28 each

    async def hosted(tx: Any) -> None:
        st = await tx.get_station("HOSTED")
        st.host_address, st.chain_station = host.address, index
        await tx.update_station(st)

    await repo.unit(hosted)
    await set_limit(repo, ids[0], 20)  # the driver's limit per session, taken at its start
    assert PRICE[1] == PRICE[4] == 28
    await SettlementWorker(repo, memory_chain).run_once()
    st = await states(repo, ids)
    assert (st[ids[0]]["settlement_state"], st[ids[0]]["price_minor"]) == ("paid", 20)
    # the same session without its limit: billed 28, refused whole (unpaid)
    assert (st[ids[3]]["settlement_state"], st[ids[3]]["unpaid_reason"]) == ("unpaid", 5)
    assert kit.balance(d0) == 10**6 - 20
    assert kit.earnings(host.address) == 20 - 20 * 500 // 10_000
    receipt = await load_receipt(repo, ids[0], None)
    assert receipt["record"]["price_minor"] == receipt["payment"]["amount"] == 20
    assert receipt["record"]["limit_minor"] == 20
    assert "limit_minor" not in (await load_receipt(repo, ids[3], None))["record"]
    verdict = verify_receipt(receipt, memory_chain.w3, driver=d0.address)
    assert verdict.valid, [(c.name, c.detail) for c in verdict.checks if c.ok is not True]
    [price] = [c for c in verdict.checks if c.name == "price"]
    assert price.detail == "billed at the session's limit 20, the tariff gives 28 (minor units)"


async def test_an_app_session_priced_above_its_signed_amount_is_paid_that_amount(
    repo: Any, memory_chain: Chain
) -> None:
    kit = Kit(memory_chain)
    driver, _ = kit.driver(allow_cards=False)
    ids = await add_sessions(repo, 1)
    station = memory_chain.register_station(22_000)

    await signed_session(repo, kit, memory_chain, driver, station, ids[0], max_amount=20,
                         limit_minor=20)
    await set_limit(repo, ids[0], 20)
    await SettlementWorker(repo, memory_chain).run_once()
    assert (await states(repo, ids))[ids[0]]["settlement_state"] == "paid"
    assert kit.balance(driver) == 10**6 - 20
    receipt = await load_receipt(repo, ids[0], None)
    assert (receipt["record"]["price_minor"], receipt["record"]["limit_minor"]) == (20, 20)
    verdict = verify_receipt(receipt, memory_chain.w3, driver=driver.address)
    assert verdict.valid, [(c.name, c.detail) for c in verdict.checks if c.ok is not True]


async def _two_stations_10_kwh(repo: Any, *tariffs: Tariff) -> list[int]:
    """CP1 and CP2, 10 kWh each (an hour apart, TAG0), queued; the '*' tariff 0.40
    EUR/kWh and ``tariffs``."""
    start = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)

    async def work(tx: Any) -> list[int]:
        await tx.add_tariff(Tariff("*", Decimal("0.40"), "EUR", 2, valid_from=LONG_AGO))
        for tariff in tariffs:
            await tx.add_tariff(tariff)
        ids = []
        for n, station in enumerate(("CP1", "CP2")):
            await tx.insert_station(new_station(station))
            at = start + timedelta(hours=n)
            s = Session(station_id=station, ocpp_version="ocpp1.6", transaction_id="",
                        started_at=at, stopped_at=at + timedelta(hours=1), connector_id=1,
                        evse_id=1, id_tag="TAG0", meter_start_wh=Decimal(0),
                        meter_stop_wh=Decimal(10_000), energy_wh=10_000,
                        status=SessionStatus.COMPLETED, stop_reason="Local")
            sid = await tx.insert_session(s)
            await tx.enqueue_settlement(sid, at)
            ids.append(sid)
        return ids

    return list(await repo.unit(work))


async def test_a_tariff_in_a_finer_minor_unit_is_not_debited_tenfold(
    repo: SqliteRepository, memory_chain: Chain,
) -> None:
    """The contract knows one billing unit (here the cent of a euro, the settings' default
    billing_currency and billing_decimals); a price goes on chain in its tariff's minor
    units as that many billing units. CP1 charges 0.40 EUR/kWh, CP2 an off-peak 0.085
    EUR/kWh set with ``decimals`` 3 before such tariffs were refused (csms tariffs set):
    10 kWh at CP2 cost 0.85 EUR, yet the escrow paid 850 billing units (8.50 EUR) for
    them, ten times the price, with a VALID receipt. The worker holds such a session
    (``tariff_unit_mismatch``) and sends nothing, even after an operator's release."""
    kit = Kit(memory_chain)
    driver, _ = await link_driver(repo, kit, "TAG0", deposit=10_000, max_per_kwh=100)
    cp1, cp2 = await _two_stations_10_kwh(
        repo, Tariff("CP2", Decimal("0.085"), "EUR", 3, valid_from=LONG_AGO))
    worker = SettlementWorker(repo, memory_chain)
    await worker.run_once()
    first, second = (await states(repo, [cp1, cp2])).values()
    assert first["settlement_state"] == "paid" and first["price_minor"] == 400, first
    assert kit.balance(driver) == 10_000 - 400, second

    async def held(tx: Any) -> Session:
        return await tx.get_session(cp2)

    session = await repo.read(held)
    assert "tariff_unit_mismatch" in session.flags and billing_state(session) == "held"
    assert second["price_minor"] is None, second

    async def release(tx: Any) -> None:
        await decide(tx, cp2, "released", actor="op", reason=None, now=datetime.now(UTC))

    await repo.unit(release)
    assert (await worker.run_once()).sessions_batched == 0
    assert billing_state(await repo.read(held)) == "held"  # held again, nothing sent
    assert kit.balance(driver) == 10_000 - 400


async def test_the_billing_unit_is_the_settings_and_a_tariff_in_another_currency_is_held(
    repo: SqliteRepository, memory_chain: Chain,
) -> None:
    """A tariff with the billing unit's decimals but another currency is held as well: a
    cent of a US dollar is not a billing unit that is a euro cent. A worker told its
    billing unit is the US cent (CSMS_BILLING_CURRENCY=USD) pays the USD tariff and holds
    the EUR one."""
    kit = Kit(memory_chain)
    driver, _ = await link_driver(repo, kit, "TAG0", deposit=10_000, max_per_kwh=100)
    cp1, cp2 = await _two_stations_10_kwh(
        repo, Tariff("CP2", Decimal("0.30"), "USD", 2, valid_from=LONG_AGO))
    await SettlementWorker(repo, memory_chain, billing=BillingUnit("USD", 2)).run_once()
    st = await states(repo, [cp1, cp2])
    assert (st[cp1]["settlement_state"], st[cp2]["settlement_state"]) == (None, "paid"), st
    assert kit.balance(driver) == 10_000 - 300

    async def flags(tx: Any) -> list[str]:
        return held_for(await tx.get_session(cp1))

    assert await repo.read(flags) == ["tariff_unit_mismatch"]


@pytest.mark.parametrize(("energy", "hours", "per_kwh", "fits"), [
    (2**32 - 1, 2, "0.40", True),  # the widest energy an entry holds: settled as it is
    (2**32, 2, "0.40", False),  # 1 Wh more: it would wrap to 0 Wh
    (1000, 2**32 // 3600 + 1, "0.40", False),  # a duration beyond 32 bits of seconds
    (2**32 - 1, 2, "1000000", False),  # a price beyond 48 bits of minor units
])
async def test_values_beyond_an_entrys_widths_are_held_never_wrapped(
    repo: SqliteRepository, memory_chain: Chain, energy: int, hours: int, per_kwh: str,
    fits: bool,
) -> None:
    """An entry packs energy in 32 bits (Wh), the duration in 32 (s), the amount in 48
    (minor units): a session beyond one of them is held for an operator
    (``not_settleable``), never sent with its value wrapped to a small one (2^32 Wh as 0
    Wh, paid as the energy the contract checks); one at the widths settles whole."""
    kit = Kit(memory_chain)
    price = int((Decimal(energy) / 1000 * Decimal(per_kwh) * 100).to_integral_value())
    driver, _ = await link_driver(repo, kit, "BIG", deposit=2**40, max_per_kwh=2**24 - 1,
                                  max_per_session=2**32 - 1, max_per_day=2**32 - 1)

    async def work(tx: Any) -> int:
        await tx.insert_station(new_station("HUGE", max_power_w=Decimal(2**32 - 1)))
        start = T0
        s = Session(station_id="HUGE", ocpp_version="ocpp1.6", transaction_id="",
                    started_at=start, stopped_at=start + timedelta(hours=hours),
                    connector_id=1, evse_id=1, id_tag="BIG", meter_start_wh=Decimal(0),
                    meter_stop_wh=Decimal(energy), energy_wh=energy,
                    status=SessionStatus.COMPLETED, stop_reason="Local")
        sid = int(await tx.insert_session(s))
        await tx.enqueue_settlement(sid, start)
        await tx.add_tariff(Tariff("*", Decimal(per_kwh), "EUR", 2, valid_from=LONG_AGO))
        return sid

    sid = await repo.unit(work)
    summary = await SettlementWorker(repo, memory_chain).run_once()
    session = await repo.read(lambda tx: tx.get_session(sid))
    state = (await states(repo, [sid]))[sid]
    if fits:
        assert summary.sessions_batched == 1
        assert state["settlement_state"] == "paid" and state["price_minor"] == price
        assert kit.balance(driver) == 2**40 - price
    else:
        assert summary.sessions_batched == 0
        assert "not_settleable" in session.flags and billing_state(session) == "held"
        assert kit.balance(driver) == 2**40


async def test_a_chunk_the_contract_holds_without_its_event_waits_and_is_paid_once(
    repo: Any, memory_chain: Chain, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A node whose logs lag its state (behind a load balancer), or a local node that lost
    its latest blocks but not their state, holds the chunk in the contract but shows no
    transaction that settled it: which sessions it paid is in that event only. The batch
    waits with one clear error (it was an assertion's traceback), then is paid once."""
    from settlement.chain import ChainError

    kit = Kit(memory_chain)
    d0, _ = await link_driver(repo, kit, "TAG0")
    await add_sessions(repo, 4)

    def crash(batch_id: int) -> None:
        raise Crash("after_broadcast")

    first = SettlementWorker(repo, memory_chain, batch_size=10,
                             hooks={"after_broadcast": crash})
    with pytest.raises(Crash):
        await first.run_once()
    # the node knows the contract's state but neither the transaction nor its event
    with monkeypatch.context() as lagging:
        lagging.setattr(memory_chain, "receipt", lambda tx_hash: None)
        lagging.setattr(memory_chain, "find_settlement", lambda ledger, first_seq: None)
        with pytest.raises(ChainError, match="no Settled event for it"):
            await SettlementWorker(repo, memory_chain, batch_size=10).run_once()
    [waiting] = await batches(repo)
    assert waiting["state"] == "broadcast"
    await SettlementWorker(repo, memory_chain, batch_size=10).run_once()
    [after] = await batches(repo)
    assert after["state"] == "finalized"
    assert kit.balance(d0) == 10**6 - PRICE[1] - PRICE[4]  # paid once
