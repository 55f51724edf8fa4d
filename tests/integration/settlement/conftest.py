"""Settlement fixtures: a real SQLite file with completed sessions, real chains."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, cast

import pytest
from eth_account.signers.local import LocalAccount

from csms.domain.model import MeterSample, Session, SessionStatus
from csms.domain.tariff import Tariff
from csms.storage.sqlite import SqliteRepository
from settlement.chain import Chain, ContractParams, open_chain
from settlement.receipts import Verdict
from settlement.receipts import verify_receipt as python_verify
from settlement.wallet import deposit as deposit_into
from settlement.wallet import link_card, new_salt
from support import IN_CI, require_anvil
from support.chainkit import Kit

T0 = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)


async def add_sessions(repo: SqliteRepository, n: int, station: str = "CP1") -> list[int]:
    async def work(tx: Any) -> list[int]:
        ids = []
        if await tx.get_station(station) is None:
            from csms.service.charging import new_station

            await tx.insert_station(new_station(station))
        for i in range(n):
            start = T0 + timedelta(hours=i)
            s = Session(station_id=station, ocpp_version="ocpp1.6", transaction_id="",
                        started_at=start, stopped_at=start + timedelta(minutes=30),
                        connector_id=1, evse_id=1, id_tag=f"TAG{i % 3}",
                        meter_start_wh=Decimal(1000 * i), meter_stop_wh=Decimal(1000 * i + 700 + i),
                        energy_wh=700 + i, status=SessionStatus.COMPLETED, stop_reason="Local")
            sid = await tx.insert_session(s)
            await tx.add_samples(station, [
                MeterSample(start, str(1000 * i), context="Transaction.Begin"),
                MeterSample(start + timedelta(minutes=30), str(1000 * i + 700 + i),
                            context="Transaction.End")],
                session_id=sid, evse_id=1, connector_id=1, transaction_id=s.transaction_id)
            await tx.enqueue_settlement(sid, start)
            ids.append(sid)
        if not await tx.list_tariffs():
            await tx.add_tariff(Tariff("*", Decimal("0.40"), "EUR", 2,
                                       valid_from=datetime(2000, 1, 1, tzinfo=UTC)))
        return ids

    return await repo.unit(work)


async def set_limit(repo: SqliteRepository, sid: int, limit: int | None) -> None:
    """The session's limit, as the charging service takes it at its start."""

    async def work(tx: Any) -> None:
        session = await tx.get_session(sid)
        session.limit_minor = limit
        await tx.update_session(session)

    await repo.unit(work)


@pytest.fixture
async def repo(tmp_path: Path) -> AsyncIterator[SqliteRepository]:
    r = SqliteRepository(tmp_path / "settle.sqlite3")
    yield r
    await r.close()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A database of each backend: a SQLite file, then a PostgreSQL schema (every
    repository opened on it shares it: two processes, or two nodes)."""
    if request.param == "postgres":
        return str(request.getfixturevalue("postgres_url"))
    return str(tmp_path / "csms.sqlite3")


@pytest.fixture
def memory_chain(tmp_path: Path) -> Chain:
    return open_chain("memory", tmp_path / "data", params=ContractParams(fee_bps=500))


@pytest.fixture(params=["memory_chain", pytest.param("anvil_chain", marks=pytest.mark.anvil)])
def chain(request: pytest.FixtureRequest) -> Chain:
    """py-evm, then a real Anvil node (where the receipt page's verifier runs too)."""
    return cast(Chain, request.getfixturevalue(request.param))


@pytest.fixture
def anvil_chain(tmp_path: Path) -> Iterator[Chain]:
    require_anvil()
    chain = open_chain("local", tmp_path / "anvil-data", params=ContractParams(fee_bps=500))
    yield chain
    chain.close()


async def link_driver(repo: SqliteRepository, kit: Kit, tag: str, deposit: int = 10**6,
                      token: Any = None, **terms: Any) -> tuple[LocalAccount, int]:
    """A driver with an escrow who linked card ``tag`` on chain and gave it to the operator
    (``token``: the escrows' ERC-20 test token, ``deposit`` of it minted to the driver)."""
    driver, index = kit.driver(deposit=0 if token is not None else deposit, **terms)
    if token is not None:
        kit.call(driver, token, "mint", driver.address, deposit)
        deposit_into(kit.chain, driver, deposit)
    salt = new_salt()
    commitment = link_card(kit.chain, driver, tag, salt)

    async def work(tx: Any) -> None:
        await tx.link_card(tag, driver.address, "0x" + salt.hex(), "0x" + commitment.hex(),
                           datetime.now(UTC))

    await repo.unit(work)
    return driver, index


PAGE_CLI = Path(__file__).resolve().parents[3] / "web" / "verify" / "cli.mjs"


def verify_receipt(receipt: dict[str, Any], w3: Any, *, same_detail: tuple[str, ...] = (),
                   **options: Any) -> Verdict:
    """``verify_receipt``; on a node with a URL (Anvil) the receipt page's verifier too
    (web/verify, under Node), which must reach the same checks and verdict (``options``
    as its command line's: ``log_window=3`` is ``--log-window 3``), and the same words for
    the checks named in ``same_detail``. Both are given the node's URL as the one the
    driver chose (``rpc_url``; the page's RPC field)."""
    url = getattr(w3.provider, "endpoint_uri", None)
    verdict = python_verify(receipt, w3, **({"rpc_url": url} if url else {}), **options)
    if url is None:
        return verdict
    node = shutil.which("node")
    if node is None:
        if IN_CI:
            pytest.fail("node is required (the receipt page's verifier)")
        return verdict
    with tempfile.NamedTemporaryFile("w", suffix=".json") as f:
        json.dump(receipt, f)
        f.flush()
        args = [a for k, v in options.items() for a in (f"--{k.replace('_', '-')}", str(v))]
        out = subprocess.run([node, str(PAGE_CLI), f.name, "--rpc", url, *args],
                             capture_output=True, text=True, timeout=60, check=True).stdout
    *checks, last = [json.loads(line) for line in out.splitlines()]
    assert [(c["name"], c["ok"]) for c in checks] == [(c.name, c.ok) for c in verdict.checks]
    assert (last["status"], last["proves"]) == (verdict.status, verdict.proves)
    assert [c["detail"] for c in checks if c["name"] in same_detail] \
        == [c.detail for c in verdict.checks if c.name in same_detail]
    return verdict
