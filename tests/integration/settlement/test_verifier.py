"""The verifier against a dishonest operator: records forged BEFORE settlement (so every
hash matches what the chain holds) must still fail, and the verdict must say no more
than what is proven."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from chargers_sim.ocmf import MeterSigner
from csms.domain.model import MeterSample, Session, SessionStatus
from csms.domain.tariff import Tariff
from csms.service.charging import new_station
from settlement.chain import Chain
from settlement.receipts import (
    INVALID,
    UNVERIFIED,
    VALID,
    ReceiptError,
    duplicates,
    load_receipt,
    verify_receipt,
)
from settlement.worker import SettlementWorker
from support.chainkit import Kit

from .conftest import link_driver

T0 = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)


class Meter:
    """A station's Eichrecht meter that signs begin and end readings."""

    def __init__(self) -> None:
        self.signer = MeterSigner.generate("MTR-1")
        self.page = 0

    def reading(self, kind: str, wh: int, at: datetime, tag: str) -> dict[str, Any]:
        self.page += 1
        container = self.signer.container(station_id="CP1", id_tag=tag, register_wh=wh, at=at,
                                          kind=kind, pagination=self.page)
        return {"signedData": container}


async def signed_session(repo: Any, meter: Meter, start_wh: int, stop_wh: int,
                         begin: dict[str, Any], end: dict[str, Any], *, tag: str = "TAG0",
                         at: datetime = T0, minutes: int = 30,
                         billed_stop: int | None = None) -> int:
    """Store a completed session the way the operator chooses to (before settlement)."""

    async def work(tx: Any) -> int:
        if await tx.get_station("CP1") is None:
            await tx.insert_station(new_station("CP1"))
            await tx.set_meter_key("CP1", meter.signer.public_key_der.hex(), "operator")
            await tx.add_tariff(Tariff("*", Decimal("0.40"), "EUR", 2,
                                       valid_from=datetime(2000, 1, 1, tzinfo=UTC)))
        stop = billed_stop if billed_stop is not None else stop_wh
        s = Session(station_id="CP1", ocpp_version="ocpp1.6", transaction_id="",
                    started_at=at, stopped_at=at + timedelta(minutes=minutes), connector_id=1,
                    evse_id=1, id_tag=tag, meter_start_wh=Decimal(start_wh),
                    meter_stop_wh=Decimal(stop), energy_wh=stop - start_wh,
                    status=SessionStatus.COMPLETED, stop_reason="Local")
        sid = await tx.insert_session(s)
        await tx.add_samples("CP1", [
            MeterSample(at, "", context="Transaction.Begin", format="SignedData", signed=begin),
            MeterSample(at + timedelta(minutes=minutes), "", context="Transaction.End",
                        format="SignedData", signed=end)],
            session_id=sid, evse_id=1, connector_id=1, transaction_id=s.transaction_id)
        await tx.enqueue_settlement(sid, at)
        return int(sid)

    return int(await repo.unit(work))


async def verify_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "csms", "verify", *args], capture_output=True,
        text=True, timeout=60, env={**os.environ, "COLUMNS": "200"})


@pytest.fixture
async def setup(repo: Any, memory_chain: Chain) -> dict[str, Any]:
    kit = Kit(memory_chain)
    driver, _ = await link_driver(repo, kit, "TAG0")
    return {"kit": kit, "driver": driver, "meter": Meter()}


async def settle_and_check(repo: Any, setup: dict[str, Any], sid: int) -> tuple[str, Any]:
    chain = setup["kit"].chain
    await SettlementWorker(repo, chain).run_once()
    receipt = await load_receipt(repo, sid, None)
    verdict = verify_receipt(receipt, chain.w3, driver=setup["driver"].address)
    return verdict.status, verdict


async def test_an_honest_signed_session_is_proven_by_the_meter(
    repo: Any, setup: dict[str, Any],
) -> None:
    m = setup["meter"]
    sid = await signed_session(repo, m, 10_000, 12_500, m.reading("B", 10_000, T0, "TAG0"),
                               m.reading("E", 12_500, T0 + timedelta(minutes=30), "TAG0"))
    status, verdict = await settle_and_check(repo, setup, sid)
    assert status == VALID, [(c.name, c.detail) for c in verdict.checks if c.ok is not True]
    assert "the energy figure is the one the calibrated meter signed" in verdict.proves


@pytest.mark.parametrize("forgery", [
    "energy x10 beside the meter's readings", "another session's begin reading",
    "a reading signed for another tag", "times moved by 30 days", "pages out of order",
])
async def test_a_record_forged_before_settlement_is_invalid(
    repo: Any, setup: dict[str, Any], forgery: str,
) -> None:
    m = setup["meter"]
    t1 = T0 + timedelta(minutes=30)
    if forgery == "energy x10 beside the meter's readings":
        sid = await signed_session(repo, m, 10_000, 12_500, m.reading("B", 10_000, T0, "TAG0"),
                                   m.reading("E", 12_500, t1, "TAG0"), billed_stop=35_000)
    elif forgery == "another session's begin reading":
        earlier = m.reading("B", 10_000, T0 - timedelta(days=2), "TAG0")
        sid = await signed_session(repo, m, 10_000, 12_500, earlier,
                                   m.reading("E", 12_500, t1, "TAG0"))
    elif forgery == "a reading signed for another tag":
        sid = await signed_session(repo, m, 10_000, 12_500,
                                   m.reading("B", 10_000, T0, "04FFFFFF"),
                                   m.reading("E", 12_500, t1, "04FFFFFF"))
    elif forgery == "times moved by 30 days":
        sid = await signed_session(repo, m, 10_000, 12_500, m.reading("B", 10_000, T0, "TAG0"),
                                   m.reading("E", 12_500, t1, "TAG0"),
                                   at=T0 + timedelta(days=30))
    else:
        end = m.reading("E", 12_500, t1, "TAG0")
        begin = m.reading("B", 10_000, T0, "TAG0")  # signed after the end: page 2 > 1
        sid = await signed_session(repo, m, 10_000, 12_500, begin, end)
    status, verdict = await settle_and_check(repo, setup, sid)
    assert status == INVALID, forgery
    assert "calibrated meter signed" not in verdict.proves


async def test_an_invented_stop_reading_is_not_claimed_as_the_meters(
    repo: Any, setup: dict[str, Any],
) -> None:
    m = setup["meter"]
    begin = m.reading("B", 10_000, T0, "TAG0")
    sid = await signed_session(repo, m, 10_000, 14_000, begin, begin)  # no signed end
    status, verdict = await settle_and_check(repo, setup, sid)
    assert "calibrated meter signed" not in verdict.proves  # never the strongest words
    assert any("no signed stop reading" in c.detail for c in verdict.checks)
    assert status in (VALID, INVALID)


async def test_the_same_session_in_two_receipts_is_caught(
    repo: Any, setup: dict[str, Any], tmp_path: Path,
) -> None:
    m = setup["meter"]
    begin, end = m.reading("B", 10_000, T0, "TAG0"), m.reading("E", 12_500,
                                                              T0 + timedelta(minutes=30), "TAG0")
    first = await signed_session(repo, m, 10_000, 12_500, begin, end)
    await SettlementWorker(repo, setup["kit"].chain).run_once()
    second = await signed_session(repo, m, 10_000, 12_500, begin, end)  # billed again
    await SettlementWorker(repo, setup["kit"].chain).run_once()
    receipts = [await load_receipt(repo, sid, None) for sid in (first, second)]
    found = duplicates(receipts)
    assert any("same signed reading" in line for line in found)
    files = []
    for n, r in enumerate(receipts):
        path = tmp_path / f"r{n}.json"
        path.write_text(json.dumps(r))
        files.append(str(path))
    # each receipt on its own is settled and paid; together they show the double bill
    r = await verify_cli(*files)
    assert r.returncode == 1 and "billed twice" in r.stdout


async def test_unknown_versions_and_malformed_receipts_are_refused_in_one_line(
    repo: Any, setup: dict[str, Any], tmp_path: Path,
) -> None:
    m = setup["meter"]
    sid = await signed_session(repo, m, 10_000, 12_500, m.reading("B", 10_000, T0, "TAG0"),
                               m.reading("E", 12_500, T0 + timedelta(minutes=30), "TAG0"))
    await SettlementWorker(repo, setup["kit"].chain).run_once()
    receipt = await load_receipt(repo, sid, None)
    broken: list[Any] = [
        {**receipt, "voltledger_receipt": 1}, {**receipt, "voltledger_receipt": 99},
        {**receipt, "chain": "x"}, {**receipt, "samples": "x"}, {**receipt, "record": []},
        {**receipt, "entry": {**receipt["entry"], "record_hash": "zz"}}, [], "text",
    ]
    for n, bad in enumerate(broken):
        with pytest.raises(ReceiptError):
            verify_receipt(bad, None)
        if n not in (0, 2, 4, 6):
            continue  # the command is the same code: a few through the process suffice
        path = tmp_path / "bad.json"
        path.write_text(json.dumps(bad))
        r = await verify_cli(str(path))
        assert r.returncode == 2, (bad if not isinstance(bad, dict) else list(bad), r.stderr)
        assert r.stderr.startswith("error:") and "Traceback" not in r.stderr
        assert len(r.stderr.strip().splitlines()) == 1


async def test_an_unreachable_chain_is_unverified_not_invalid(
    repo: Any, setup: dict[str, Any], tmp_path: Path,
) -> None:
    m = setup["meter"]
    sid = await signed_session(repo, m, 10_000, 12_500, m.reading("B", 10_000, T0, "TAG0"),
                               m.reading("E", 12_500, T0 + timedelta(minutes=30), "TAG0"))
    await SettlementWorker(repo, setup["kit"].chain).run_once()
    path = tmp_path / "r.json"
    path.write_text(json.dumps(await load_receipt(repo, sid, None)))
    r = await verify_cli(str(path), "--rpc", "http://127.0.0.1:9", "--driver",
                         setup["driver"].address)
    assert r.returncode == 3 and "UNVERIFIED" in r.stdout, r.stdout + r.stderr
    assert verify_receipt(json.loads(path.read_text()), None).status == UNVERIFIED


@pytest.mark.parametrize(("part", "field", "value"), [
    ("payment", "amount", 1), ("payment", "unit", 7), ("chunk", "count", 7),
])
async def test_a_receipt_that_misstates_its_payment_or_chunk_is_invalid(
    repo: Any, setup: dict[str, Any], part: str, field: str, value: int,
) -> None:
    """The lines a driver reads first (what was paid, in which unit; the chunk's size)
    are checked against the chain, not only the record's hash."""
    m = setup["meter"]
    sid = await signed_session(repo, m, 10_000, 12_500, m.reading("B", 10_000, T0, "TAG0"),
                               m.reading("E", 12_500, T0 + timedelta(minutes=30), "TAG0"))
    status, _ = await settle_and_check(repo, setup, sid)
    assert status == VALID
    receipt = await load_receipt(repo, sid, None)
    assert receipt[part][field] != value
    receipt[part][field] = value
    verdict = verify_receipt(receipt, setup["kit"].chain.w3, driver=setup["driver"].address)
    assert verdict.status == INVALID
    failed = {c.name for c in verdict.checks if c.ok is False}
    assert failed == ({"settled once"} if part == "chunk" else {"payment"}), failed
