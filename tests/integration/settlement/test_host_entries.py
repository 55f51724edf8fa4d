"""A host reads from the chain alone each entry the operator settled for its stations, paid
or not and why (``csms wallet entries``): on py-evm and on a real Anvil node, with the
settlement worker settling real sessions of two hosts' stations in shared chunks."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account

from settlement import wallet
from settlement.chain import (
    Chain,
    ChainError,
    ContractParams,
    SettlementReader,
    open_chain,
)
from settlement.host_entries import host_entries
from settlement.receipts import load_receipt
from settlement.worker import SettlementWorker
from support import require_anvil
from support.chainkit import Kit, Row
from support.rpcproxy import refuse_range, rpc_proxy

from .conftest import add_sessions, link_driver

ESCROW_TOO_LOW, UNKNOWN_DRIVER = 11, 2


async def set_host(repo: Any, station: str, host: str, index: int) -> None:
    """`csms stations set-host STATION HOST --chain-station INDEX`."""

    async def work(tx: Any) -> None:
        st = await tx.get_station(station)
        st.host_address, st.chain_station = host.lower(), index
        await tx.update_station(st)

    await repo.unit(work)


async def two_hosts(repo: Any, chain: Chain) -> dict[str, Any]:
    """Host A's station CP-A (3 sessions: TAG0 paid, TAG1 its driver's escrow too low,
    TAG2 no driver's) and host B's CP-B (TAG0 paid, TAG1 too low), settled by the worker in
    shared chunks. Returns the hosts and, per session id, what its receipt says."""
    kit = Kit(chain)
    await link_driver(repo, kit, "TAG0")
    await link_driver(repo, kit, "TAG1", deposit=10)  # a session costs 28: too low
    a, a_index = kit.host()
    b, b_index = kit.host()
    a_ids = await add_sessions(repo, 3, station="CP-A")
    b_ids = await add_sessions(repo, 2, station="CP-B")
    await set_host(repo, "CP-A", a.address, a_index)
    await set_host(repo, "CP-B", b.address, b_index)
    await SettlementWorker(repo, chain, batch_size=4).run_once()
    receipts = {sid: await load_receipt(repo, sid, None) for sid in a_ids + b_ids}
    return {"kit": kit, "a": a, "b": b, "a_index": a_index, "b_index": b_index,
            "a_ids": a_ids, "b_ids": b_ids, "receipts": receipts}


def expected(receipts: dict[int, Any], ids: list[int]) -> list[tuple[Any, ...]]:
    """What the receipts of the sessions say: (ledger, seq, station, Wh, s, amount, paid,
    reason, tx, block)."""
    out = []
    for sid in ids:
        r = receipts[sid]
        record, payment, at = r["record"], r["payment"], r["chain"]
        out.append((int(record["ledger"]), record["seq"], record["chain_station"],
                    record["energy_wh"], record["duration_s"], record["price_minor"],
                    payment["paid"], payment["reason"], at["tx_hash"], at["block_number"]))
    return sorted(out)


def seen(result: Any) -> list[tuple[Any, ...]]:
    return sorted((e.ledger, e.seq, e.station, e.energy_wh, e.duration_s, e.amount, e.paid,
                   e.reason, e.tx_hash, e.block) for e in result.entries)


def reader_of(chain: Chain, w3: Any = None, log_window: int | None = None) -> SettlementReader:
    reader = SettlementReader(w3 or chain.w3, chain.contract_address or "", log_window)
    assert chain.deploy_tx is not None
    reader.first_block = int(chain.w3.eth.get_transaction_receipt(
        chain.deploy_tx)["blockNumber"])  # type: ignore[arg-type]
    return reader


async def test_each_host_sees_its_own_entries_paid_or_not_and_why(
    repo: Any, chain: Chain,
) -> None:
    s = await two_hosts(repo, chain)
    kit, a, b = s["kit"], s["a"], s["b"]
    # two chunks, the first with both hosts' entries
    assert len({r["chain"]["tx_hash"] for r in s["receipts"].values()}) == 2
    mine = host_entries(reader_of(chain, log_window=2), a.address)
    assert mine.stations == [s["a_index"]]
    assert seen(mine) == expected(s["receipts"], s["a_ids"])
    reasons = {e.seq: (e.paid, e.reason_name) for e in mine.entries}
    assert sorted(reasons.values(), key=str) == sorted(
        [(True, None), (False, "ESCROW_TOO_LOW"), (False, "UNKNOWN_DRIVER")], key=str)
    theirs = host_entries(reader_of(chain), b.address)
    assert theirs.stations == [s["b_index"]]
    assert seen(theirs) == expected(s["receipts"], s["b_ids"])
    assert [e.reason for e in theirs.entries if not e.paid] == [ESCROW_TOO_LOW]
    # what the contract credited each, less the platform's fee, is its earnings()
    for host, result in ((a, mine), (b, theirs)):
        assert result.paid == 28 and result.fee_bps == 500
        assert result.credited == kit.earnings(host.address) == 28 - 28 * 500 // 10_000
        assert (result.earnings, result.withdrawn) == (result.credited, 0)
    # a host that withdrew: earnings() less, the withdrawal read from the chain
    wallet.withdraw_earnings(chain, a, None)
    after = host_entries(reader_of(chain), a.address)
    assert (after.credited, after.earnings, after.withdrawn) == (
        mine.credited, 0, mine.credited)
    # a stranger hosts nothing
    assert host_entries(reader_of(chain), Account.create().address).entries == []


async def test_from_a_later_block_only_the_chunks_settled_since(
    repo: Any, chain: Chain,
) -> None:
    s = await two_hosts(repo, chain)
    a = s["a"]
    later = await add_sessions(repo, 3, station="CP-A")  # TAG0, TAG1, TAG2 again
    start = chain.block_number() + 1
    await SettlementWorker(repo, chain).run_once()
    receipts = {sid: await load_receipt(repo, sid, None) for sid in later}
    assert all(r["chain"]["block_number"] >= start for r in receipts.values())
    result = host_entries(reader_of(chain), a.address, from_block=start)
    assert result.stations == [s["a_index"]]  # registered before the block: still read
    assert seen(result) == expected(receipts, later)
    assert result.withdrawn is None  # not compared: the earlier chunks were not read
    whole = host_entries(reader_of(chain), a.address)
    assert seen(whole) == sorted(expected(s["receipts"], s["a_ids"])
                                 + expected(receipts, later))
    assert whole.credited == s["kit"].earnings(a.address)
    beyond = host_entries(reader_of(chain), a.address, from_block=chain.block_number() + 5)
    assert (beyond.stations, beyond.entries) == ([s["a_index"]], [])


async def settled_later(repo: Any, chain: Chain, s: dict[str, Any]) -> dict[int, Any]:
    """After :func:`two_hosts`: three more sessions of host A's station settled, and host A
    withdrawing its earnings. Returns the later sessions' receipts."""
    later = await add_sessions(repo, 3, station="CP-A")
    await SettlementWorker(repo, chain).run_once()
    wallet.withdraw_earnings(chain, s["a"], None)
    return {sid: await load_receipt(repo, sid, None) for sid in later}


async def test_everything_is_read_at_one_block_and_agrees_there(
    repo: Any, chain: Chain,
) -> None:
    """Read at a block before the later chunks and the withdrawal: those are not listed,
    and what was credited up to that block is earnings() at that block (nothing withdrawn
    then), not earnings() now."""
    s = await two_hosts(repo, chain)
    a, pinned = s["a"], chain.block_number()
    later = await settled_later(repo, chain, s)
    assert all(r["chain"]["block_number"] > pinned for r in later.values())
    at = host_entries(reader_of(chain, log_window=2), a.address, to_block=pinned)
    assert at.to_block == pinned and at.stations == [s["a_index"]]
    assert seen(at) == expected(s["receipts"], s["a_ids"])  # none of the later ones
    assert (at.credited, at.earnings, at.withdrawn) == (28 - 28 * 500 // 10_000,
                                                        28 - 28 * 500 // 10_000, 0)
    now = host_entries(reader_of(chain), a.address)
    assert seen(now) == sorted(expected(s["receipts"], s["a_ids"])
                               + expected(later, list(later)))
    assert now.credited == now.earnings + now.withdrawn and now.earnings == 0
    # a block the node has not reached: refused, not read at the latest instead
    with pytest.raises(ChainError, match="beyond the node's latest block"):
        host_entries(reader_of(chain), a.address, to_block=chain.block_number() + 1)


async def test_a_reorganisation_below_the_block_read_is_refused(
    repo: Any, chain: Chain,
) -> None:
    """The chain reorganises the block read (and blocks before it) while the host's entries
    are read: the listing mixes two forks, so none is given."""
    s = await two_hosts(repo, chain)
    snapshot = chain.w3.provider.make_request("evm_snapshot", [])["result"]  # type: ignore[arg-type]
    await settled_later(repo, chain, s)
    pinned = chain.block_number()
    w3 = chain.w3
    sender, done_once = w3.eth.accounts[0], []

    def reorganise(what: str, done: int, total: int) -> None:
        if done_once:
            return
        done_once.append(what)
        w3.provider.make_request("evm_revert", [snapshot])  # type: ignore[arg-type]
        while w3.eth.block_number <= pinned:  # another fork, past the block read
            w3.eth.send_transaction({"from": sender, "to": Account.create().address,
                                     "value": 1})

    with pytest.raises(ChainError, match="reorganised"):
        host_entries(reader_of(chain), s["a"].address, to_block=pinned,
                     progress=reorganise)


def csms(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CSMS_")}
    r = subprocess.run([sys.executable, "-m", "csms", *args], cwd=cwd, capture_output=True,
                       text=True, timeout=120, env={**clean, "COLUMNS": "250"})
    assert "Traceback" not in r.stdout + r.stderr, r.stderr
    return r


async def test_the_hosts_command_through_a_node_that_limits_its_log_queries(
    repo: Any, anvil_chain: Chain, tmp_path: Path,
) -> None:
    """``csms wallet entries`` on Anvil, through a public-node-like proxy that refuses
    eth_getLogs wider than 3 blocks: the table names the reason of the entry refused, the
    JSON holds each entry; the host given by its keystore or its address."""
    chain = anvil_chain
    s = await two_hosts(repo, chain)
    a = s["a"]
    keystore = tmp_path / "host.json"
    keystore.write_text(json.dumps(Account.encrypt(a.key, "pw")), "utf-8")
    (tmp_path / "host.pw").write_text("pw", "utf-8")
    assert chain.node is not None
    with rpc_proxy(chain.node.url, refuse_range(3)) as proxy:
        common = ["--rpc", proxy.url, "--contract", chain.contract_address or ""]
        table = await asyncio.to_thread(
            csms, "wallet", "entries", "--keystore", str(keystore), *common, cwd=tmp_path)
        assert table.returncode == 0 and table.stderr == "", table.stdout + table.stderr
        assert "UNPAID ESCROW_TOO_LOW" in table.stdout and "UNPAID UNKNOWN_DRIVER" in \
            table.stdout, table.stdout
        assert "agrees" in table.stdout, table.stdout
        out = await asyncio.to_thread(
            csms, "wallet", "entries", "--keystore", str(keystore), "--password-file",
            str(tmp_path / "host.pw"), *common, "--json", cwd=tmp_path)
        assert out.returncode == 0, out.stdout + out.stderr
        assert proxy.refused, "the node refused no query: the windows were not exercised"
    data = json.loads(out.stdout)
    assert data["host"] == a.address and data["agrees"] is True
    assert sorted((int(e["ledger"]), e["seq"], e["station"], e["energy_wh"], e["duration_s"],
                   e["amount"], e["paid"], e["reason"], e["tx_hash"], e["block"])
                  for e in data["entries"]) == expected(s["receipts"], s["a_ids"])
    assert {e["reason_name"] for e in data["entries"]} == {
        None, "ESCROW_TOO_LOW", "UNKNOWN_DRIVER"}
    other = await asyncio.to_thread(
        csms, "wallet", "entries", "--host", s["b"].address, "--rpc", chain.node.url,
        "--contract", chain.contract_address or "", "--json", cwd=tmp_path)
    assert other.returncode == 0, other.stdout + other.stderr
    assert sorted(e["seq"] for e in json.loads(other.stdout)["entries"]) == sorted(
        r[1] for r in expected(s["receipts"], s["b_ids"]))
    # an address that holds no contract, a look-alike's: one line, nothing listed
    for address, words in ((s["b"].address, "there is no contract at"),
                           (s["kit"].deploy("LookAlike").address, "is not voltledger's")):
        wrong = await asyncio.to_thread(
            csms, "wallet", "entries", "--host", a.address, "--rpc", chain.node.url,
            "--contract", address, cwd=tmp_path)
        assert wrong.returncode == 1 and wrong.stdout == "", wrong
        assert words in wrong.stderr and len(wrong.stderr.strip().splitlines()) == 1, wrong


async def test_the_hosts_command_reads_as_deep_as_the_confirmations_asked(
    repo: Any, anvil_chain: Chain, tmp_path: Path,
) -> None:
    """``--confirmations N``: read at the node's latest block less N - 1, every query at that
    block (the later chunks and the withdrawal not seen, the totals agreeing there), the
    block and the depth shown; a depth beyond the chain's first block is one line."""
    chain = anvil_chain
    assert chain.node is not None
    s = await two_hosts(repo, chain)
    pinned = chain.block_number()
    await settled_later(repo, chain, s)
    head = chain.block_number()
    depth = head - pinned + 1
    common = ["--host", s["a"].address, "--contract", chain.contract_address or ""]
    with rpc_proxy(chain.node.url, refuse_range(1_000_000)) as proxy:
        out = await asyncio.to_thread(csms, "wallet", "entries", *common, "--rpc", proxy.url,
                                      "--confirmations", str(depth), "--json", cwd=tmp_path)
        assert out.returncode == 0, out.stdout + out.stderr
        calls = [p for m, p in proxy.requests if m == "eth_call"]
        logs = [p[0] for m, p in proxy.requests if m == "eth_getLogs"]
        heads = [m for m, _ in proxy.requests if m == "eth_blockNumber"]
        blocks = [p[0] for m, p in proxy.requests if m == "eth_getBlockByNumber"]
    got = json.loads(out.stdout)
    assert (got["to_block"], got["confirmations"], got["head"]) == (pinned, depth, head)
    # the node's latest block read once for one listing (the block read follows from it);
    # the block read is the only one asked for (its hash pinned, then checked)
    assert len(heads) == 1, [m for m, _ in proxy.requests]
    assert blocks and set(blocks) == {hex(pinned)}, blocks
    assert sorted((int(e["ledger"]), e["seq"], e["station"], e["energy_wh"], e["duration_s"],
                   e["amount"], e["paid"], e["reason"], e["tx_hash"], e["block"])
                  for e in got["entries"]) == expected(s["receipts"], s["a_ids"])
    assert (got["credited"], got["earnings"], got["withdrawn"], got["agrees"]) == (
        27, 27, 0, True)
    # every call and every log query at the block read, none at the node's latest
    assert calls and logs
    assert {c[1] for c in calls} == {hex(pinned)}, calls
    assert all(int(q["toBlock"], 16) <= pinned for q in logs), logs
    table = await asyncio.to_thread(csms, "wallet", "entries", *common, "--rpc",
                                    chain.node.url, "--confirmations", str(depth),
                                    cwd=tmp_path)
    assert table.returncode == 0, table.stdout + table.stderr
    assert f"read at block {pinned}, {depth} confirmations deep" in table.stdout, table.stdout
    assert "agrees" in table.stdout, table.stdout
    # the default on a local test chain: one confirmation, the latest block
    now = json.loads((await asyncio.to_thread(
        csms, "wallet", "entries", *common, "--rpc", chain.node.url, "--json",
        cwd=tmp_path)).stdout)
    assert (now["to_block"], now["confirmations"], now["agrees"]) == (head, 1, True)
    assert len(now["entries"]) == 6
    # deeper than the chain: one line, not zero
    for n in (head + 2, 10**30):
        deep = await asyncio.to_thread(csms, "wallet", "entries", *common, "--rpc",
                                       chain.node.url, "--confirmations", str(n),
                                       cwd=tmp_path)
        assert deep.returncode == 1 and deep.stdout == "", deep
        assert f"the chain has {head + 1} blocks" in deep.stderr, deep.stderr
        assert len(deep.stderr.strip().splitlines()) == 1, deep.stderr
    # deeper than the contract: nothing it holds is that deep yet
    created = reader_of(chain).first_block
    young = await asyncio.to_thread(csms, "wallet", "entries", *common, "--rpc",
                                    chain.node.url, "--confirmations",
                                    str(head - created + 2), cwd=tmp_path)
    assert young.returncode == 1 and young.stdout == "", young
    assert "no code at block" in young.stderr, young.stderr
    assert len(young.stderr.strip().splitlines()) == 1, young.stderr


def _host_keystore(tmp_path: Path) -> tuple[Any, Path]:
    """A new host account and its keystore under ``tmp_path`` (password "pw", in
    ``host.pw`` beside it)."""
    account = Account.create()
    keystore = tmp_path / "host.json"
    keystore.write_text(json.dumps(Account.encrypt(account.key, "pw")), "utf-8")
    (tmp_path / "host.pw").write_text("pw", "utf-8")
    return account, keystore


async def test_a_wallet_s_status_is_read_at_one_block(
    anvil_chain: Chain, tmp_path: Path,
) -> None:
    """``csms wallet status``: the escrow, the earnings and the contract's figures are
    read at one block, the one it names, not each at the node's latest of its moment."""
    chain = anvil_chain
    assert chain.node is not None
    _, keystore = _host_keystore(tmp_path)
    with rpc_proxy(chain.node.url, refuse_range(1_000_000)) as proxy:
        status = await asyncio.to_thread(
            csms, "wallet", "status", "--keystore", str(keystore), "--password-file",
            str(tmp_path / "host.pw"), "--chain", proxy.url, "--contract",
            chain.contract_address or "", "--data-dir", str(tmp_path / "data"), "--json",
            cwd=tmp_path)
        assert status.returncode == 0, status.stdout + status.stderr
        calls = [p for m, p in proxy.requests if m == "eth_call"]
    data = json.loads(status.stdout)
    assert data["block"] == chain.block_number()
    assert len(calls) >= 3 and {c[1] for c in calls} == {hex(data["block"])}, calls


@pytest.mark.anvil
async def test_the_managed_local_chain_of_the_data_folder(repo: Any, tmp_path: Path) -> None:
    """Without --rpc: the managed local chain of the data folder (its running node, here the
    test's), the contract recorded there, read from the block that created it, amounts in
    the billing unit recorded with it too."""
    require_anvil()
    data = tmp_path / "data"
    chain = open_chain("local", data, params=ContractParams(fee_bps=500, currency="EUR",
                                                            decimals=2))
    try:
        s = await two_hosts(repo, chain)
        out = await asyncio.to_thread(csms, "wallet", "entries", "--host", s["b"].address,
                                      "--data-dir", str(data), "--json", cwd=tmp_path)
        assert out.returncode == 0, out.stdout + out.stderr
        got = json.loads(out.stdout)
        assert got["from_block"] == reader_of(chain).first_block > 0
        assert (got["currency"], got["decimals"], got["agrees"]) == ("EUR", 2, True)
        assert sorted((e["seq"], e["amount_major"], e["reason_name"]) for e in got["entries"]) \
            == sorted((r[1], "0.28", None if r[6] else "ESCROW_TOO_LOW")
                      for r in expected(s["receipts"], s["b_ids"]))
        table = await asyncio.to_thread(csms, "wallet", "entries", "--host", s["b"].address,
                                        "--data-dir", str(data), cwd=tmp_path)
        assert table.returncode == 0, table.stdout + table.stderr
        assert "28 (0.28 EUR)" in table.stdout, table.stdout
    finally:
        chain.close()


async def test_a_node_the_host_cannot_reach_is_one_line(tmp_path: Path) -> None:
    """An RPC that cannot be reached, an address that is not one: one line, not zero."""
    host = Account.create().address
    down = await asyncio.to_thread(
        csms, "wallet", "entries", "--host", host, "--rpc", "http://127.0.0.1:9",
        "--contract", host, cwd=tmp_path)
    assert down.returncode == 1 and down.stdout == "", down
    assert down.stderr.startswith("error: cannot read the chain") \
        and len(down.stderr.strip().splitlines()) == 1, down.stderr
    for args in (["--host", "0x1234"], ["--host", host, "--contract", "0xnothex"],
                 [], ["--host", host, "--keystore", "k.json"],
                 ["--keystore", str(tmp_path / "missing.json")],
                 ["--host", host, "--confirmations", "-1"],
                 ["--host", host, "--confirmations", "0"],
                 ["--host", host, "--confirmations", "1.5"],
                 ["--host", host, "--confirmations", "many"]):
        bad = await asyncio.to_thread(csms, "wallet", "entries", *args, cwd=tmp_path)
        assert bad.returncode == 2 and bad.stdout == "", (args, bad)
        assert bad.stderr.startswith("error: ") \
            and len(bad.stderr.strip().splitlines()) == 1, (args, bad.stderr)
    none = await asyncio.to_thread(csms, "wallet", "entries", "--host", host, cwd=tmp_path)
    assert none.returncode != 0 and "give --rpc" in none.stderr, none
    assert len(none.stderr.strip().splitlines()) == 1, none.stderr


def test_an_index_registered_after_its_entries_were_settled_pays_the_host_none(
    chain: Chain,
) -> None:
    """The operator settles entries under an index no one registered yet (the contract pays
    none of them: UNKNOWN_STATION); a host that registers that index later did not host
    them: they are not its entries, nor counted in what it was credited."""
    kit = Kit(chain)
    _, driver = kit.driver()
    host, index = kit.host()
    early = kit.settle([Row(index + 1, driver, 1000, 1800, 40), Row(index, driver, 1000, 1800,
                                                                    40)])
    assert list(early.unpaid.values()) == [1]  # UNKNOWN_STATION
    second = wallet.register_station(chain, host, 22_000)
    assert second == index + 1
    late = kit.settle([Row(second, driver, 2000, 1800, 80)])
    result = host_entries(reader_of(chain), host.address)
    assert result.stations == [index, second]
    assert sorted((e.seq, e.station, e.paid) for e in result.entries) == [
        (early.first_seq + 1, index, True), (late.first_seq, second, True)]
    assert result.credited == kit.earnings(host.address) == 40 - 2 + 80 - 4


async def test_a_host_s_own_key_reads_its_wallet_on_a_json_rpc_chain(
    anvil_chain: Chain, tmp_path: Path,
) -> None:
    """``csms wallet status`` with a host's (or a driver's) own keystore on a JSON-RPC
    chain, no operator key in the environment: the chain is opened with the key given.
    Before, it asked for "--keystore and --password-file" the command had been given (the
    operator's settings, CSMS_KEYSTORE, were required)."""
    chain = anvil_chain
    assert chain.node is not None
    account, keystore = _host_keystore(tmp_path)
    status = await asyncio.to_thread(
        csms, "wallet", "status", "--keystore", str(keystore), "--password-file",
        str(tmp_path / "host.pw"), "--chain", chain.node.url, "--contract",
        chain.contract_address or "", "--data-dir", str(tmp_path / "data"), "--json",
        cwd=tmp_path)
    assert status.returncode == 0, status.stdout + status.stderr
    data = json.loads(status.stdout)
    assert (data["address"], data["earnings"]) == (account.address, 0)
