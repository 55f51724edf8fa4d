"""The receipt verifier without a chain: what a receipt says about itself must add up, and
any field changed after the fact is caught (the chain checks run in tests/integration)."""

from __future__ import annotations

import copy
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from decimal import Context, Decimal, localcontext
from typing import Any

import pytest

from chargers_sim.ocmf import MeterSigner
from csms.domain.tariff import Tariff, price_minor
from settlement.receipts import (
    INVALID,
    RECEIPT_VERSION,
    UNVERIFIED,
    ReceiptError,
    verify_receipt,
)
from settlement.records import (
    CARD,
    INTEGER_FIELDS,
    RECORD_FIELDS,
    SIGNED,
    entry_of,
    samples_hash,
    unpack_entry,
)

SAMPLES = [{"timestamp": "2026-03-01T10:30:00+00:00", "measurand":
            "Energy.Active.Import.Register", "unit": "Wh", "value": "2500", "signed": None}]
TARIFF = {"per_kwh": "0.39", "per_minute": "0.01", "session_fee": "0.50"}


def receipt() -> dict[str, Any]:
    record: dict[str, Any] = {f: None for f in RECORD_FIELDS}
    energy, duration = 3500, 3600
    price = price_minor(Tariff("*", Decimal(TARIFF["per_kwh"]), "EUR", 2,
                               Decimal(TARIFF["per_minute"]), Decimal(TARIFF["session_fee"])),
                        energy, duration)
    record.update(
        ledger="7", seq=1, session_id=1, station_id="CP1", chain_station=3, connector_id=1,
        evse_id=1, id_tag="T1", ocpp_version="ocpp1.6", transaction_id="1",
        started_at="2026-03-01T10:00:00+00:00", stopped_at="2026-03-01T11:00:00+00:00",
        duration_s=duration, meter_start_wh="1000", meter_stop_wh="4500", energy_wh=energy,
        price_minor=price, currency="EUR", decimals=2, unit=10**16, tariff=TARIFF,
        stop_reason="Local", samples_hash="0x" + samples_hash(SAMPLES).hex(),
        driver="0x" + "11" * 20, driver_index=0, kind=CARD, card_commitment="0x" + "22" * 32)
    rhash, packed = entry_of(record, 0)
    return {
        "voltledger_receipt": RECEIPT_VERSION, "what_it_proves": "", "record": record,
        "samples": copy.deepcopy(SAMPLES),
        "entry": {"record_hash": "0x" + rhash.hex(), "packed": hex(packed), "position": 0},
        "chunk": {"ledger": "7", "first_seq": 1, "count": 1, "digest": "0x" + "33" * 32},
        "payment": {"paid": True, "amount": price, "unit": 10**16, "reason": None},
        "chain": {"chain_id": 31337, "contract": "0x" + "44" * 20, "tx_hash": "0x" + "55" * 32,
                  "block_number": 9, "rpc_hint": None},
    }


def failed(r: dict[str, Any]) -> set[str]:
    return {c.name for c in verify_receipt(r).checks if c.ok is False}


def test_an_untouched_receipt_adds_up_and_the_chain_is_not_checked() -> None:
    verdict = verify_receipt(receipt())
    assert failed(receipt()) == set()
    assert verdict.status == UNVERIFIED  # no RPC endpoint: never VALID offline
    assert {c.name for c in verdict.checks if c.ok is None} == {"on chain"}
    assert "no signed meter data" in verdict.proves.lower()


def signed(samples: list[dict[str, Any]], **fields: Any) -> dict[str, Any]:
    """receipt() with these samples and record fields, its hashes, price and entry redone."""
    r = receipt()
    record = r["record"]
    record.update(fields, samples_hash="0x" + samples_hash(samples).hex())
    record["price_minor"] = price_minor(
        Tariff("*", Decimal(TARIFF["per_kwh"]), "EUR", 2, Decimal(TARIFF["per_minute"]),
               Decimal(TARIFF["session_fee"])), record["energy_wh"], record["duration_s"])
    rhash, packed = entry_of(record, 0)
    r.update(samples=samples, entry={"record_hash": "0x" + rhash.hex(), "packed": hex(packed),
                                     "position": 0})
    r["payment"]["amount"] = record["price_minor"]
    return r


def test_readings_the_meter_marks_faulty_fail_the_receipt() -> None:
    """The BAUER meter's records ("ST":"E", "EF":"Et"): signature, readings and session all
    agree, but the meter itself says its readings are not billable."""
    from csms.metering.ocmf import normalize_key
    from support.ocmf_vectors import BAUER_BEGIN, BAUER_END, BAUER_KEY

    samples = [{**SAMPLES[0], "timestamp": at, "value": "", "format": "SignedData",
                "signed": {"signedData": data}}
               for at, data in (("2021-10-07T13:29:55+00:00", BAUER_BEGIN),
                                ("2021-10-07T13:38:05+00:00", BAUER_END))]
    r = signed(samples, started_at="2021-10-07T13:29:55+00:00",
               stopped_at="2021-10-07T13:38:05+00:00", duration_s=490,
               meter_start_wh="76040", meter_stop_wh="76040", energy_wh=0,
               id_tag="contract-id: rfid:12345678abcdef",
               meter_public_key=normalize_key(BAUER_KEY))
    verdict = verify_receipt(r)
    assert failed(r) == {"meter status"}, [(c.name, c.detail) for c in verdict.checks]
    [status] = [c for c in verdict.checks if c.name == "meter status"]
    assert status.detail == ("the meter marked its B reading as faulty (ST 'E', EF 'Et'); the"
                             " meter marked its E reading as faulty (ST 'E', EF 'Et')")
    assert verdict.status == INVALID and "calibrated meter signed" not in verdict.proves


def test_the_verifier_computes_with_28_digits_whatever_the_threads_context() -> None:
    """vyper sets 78 digits for the thread on import; the verifier (and the receipt page)
    compute with Python's default 28: a reading of 31 digits gives no energy."""
    r = receipt()
    r["record"]["meter_stop_wh"] = "1e30"
    with localcontext(Context(prec=78)):
        checks = {c.name: c for c in verify_receipt(r).checks}
    assert not checks["energy = stop - start"].ok
    assert checks["energy = stop - start"].detail == \
        "1E+30 - 1000 Wh = ? Wh, the record bills 3500 Wh"


def _set(r: Any, path: str, value: Any) -> None:
    *parents, last = path.split(".")
    for p in parents:
        r = r[int(p)] if p.isdigit() else r[p]
    r[last] = value


@pytest.mark.parametrize(("path", "value", "caught_by"), [
    ("record.energy_wh", 4500, {"record hash", "entry", "energy = stop - start", "price"}),
    ("record.meter_stop_wh", "4600", {"record hash", "energy = stop - start"}),
    ("record.price_minor", 1, {"record hash", "entry", "price"}),
    ("record.stopped_at", "2026-03-01T12:00:00+00:00", {"record hash", "duration"}),
    ("record.station_id", "CP2", {"record hash"}),
    ("record.id_tag", "T2", {"record hash"}),
    ("record.tariff", {**TARIFF, "per_kwh": "0.10"}, {"record hash", "price"}),
    ("samples.0.value", "9999", {"samples hash"}),
    ("entry.record_hash", "0x" + "66" * 32, {"record hash"}),
])
def test_a_tampered_field_is_caught(path: str, value: Any, caught_by: set[str]) -> None:
    r = receipt()
    _set(r, path, value)
    verdict = verify_receipt(r)
    assert verdict.status == INVALID
    assert failed(r) == caught_by


def test_a_tampered_entry_amount_is_caught() -> None:
    r = receipt()
    r["entry"]["packed"] = hex(int(r["entry"]["packed"], 16) + (1 << 120))
    assert failed(r) == {"entry"}


@pytest.mark.parametrize(("change", "message"), [
    (lambda r: r.update(voltledger_receipt=1), "version 1 is not supported"),
    (lambda r: r.pop("chain"), "malformed"),
    (lambda r: r["record"].pop("energy_wh"), "lacks energy_wh"),
    (lambda r: r["entry"].update(record_hash="0x12"), "32-byte hex"),
    (lambda r: r.update(samples="none"), "samples a list"),
])
def test_what_is_not_a_receipt_is_refused(change: Any, message: str) -> None:
    r = receipt()
    change(r)
    with pytest.raises(ReceiptError, match=message):
        verify_receipt(r)
    with pytest.raises(ReceiptError, match="not a voltledger receipt"):
        verify_receipt([r])


# a receipt's numbers are ASCII, as the central system writes them: other scripts' digits
# and spaces, which Python's int() and Decimal() read, are no number (the receipt page's rule)
@pytest.mark.parametrize(("name", "value"), [
    ("per_kwh", "\u0660.\u0663\u0669"), ("per_minute", "\uff10.01"), ("session_fee", "0.50\u00a0"),
])
def test_a_tariff_figure_in_other_digits_than_ascii_is_not_read(name: str, value: str) -> None:
    r = signed(copy.deepcopy(SAMPLES), tariff={**TARIFF, name: value})
    checks = {c.name: c for c in verify_receipt(r).checks}
    assert failed(r) == {"price"}
    assert checks["price"].detail == "the record's tariff cannot be read"


def test_decimals_in_other_digits_than_ascii_are_not_read() -> None:
    """Not text at all: the central system writes them as a JSON integer."""
    assert failed(signed(copy.deepcopy(SAMPLES), decimals="\uff12")) == {"record"}


@pytest.mark.parametrize(("name", "value"), [
    ("energy_wh", "\u0663\u0665\u0660\u0660"), ("duration_s", "\uff13\uff16\uff10\uff10"),
    ("chain_station", "\u0663"), ("kind", "\u00a00"),
])
def test_an_entry_field_in_other_digits_than_ascii_is_no_record(name: str, value: str) -> None:
    r = receipt()
    r["record"][name] = value
    assert failed(r) == {"record"}


@pytest.mark.parametrize(("path", "value"), [
    ("entry.position", "\u0660"), ("chunk.first_seq", "\uff11"), ("chain.chain_id", "\u00a031337"),
    ("payment.amount", "\u0661"), ("entry.packed", "0x\uff11"),
])
def test_a_receipt_number_in_other_digits_than_ascii_is_no_receipt(path: str,
                                                                  value: str) -> None:
    r = receipt()
    _set(r, path, value)
    # a figure outside the record is a JSON integer (the packed entry 0x and hex digits):
    # text in any digits is not one
    with pytest.raises(ReceiptError, match=r"is not (an integer|0x and hex digits)"):
        verify_receipt(r)


@pytest.mark.parametrize("salt", [5, None, "0x12", "0x" + "zz" * 32, "22" * 32, b"short",
                                  ["0x" + "22" * 32]])
def test_a_driver_s_salt_that_is_not_32_bytes_is_a_value_error(salt: Any) -> None:
    """Every card salt is read by one check (hex32): a type that is no salt included."""
    with pytest.raises(ValueError, match="the salt of card T1 is not 32 bytes"):
        verify_receipt(receipt(), driver="0x" + "11" * 20, cards=[("T1", salt)])


@pytest.mark.parametrize(("value", "expected"), [
    ("0x" + "Ab" * 32, bytes.fromhex("ab" * 32)), ("0x" + "ab" * 31, None),
    ("0X" + "ab" * 32, None), (" 0x" + "ab" * 32, None), (b"\x00" * 32, None), (None, None),
])
def test_hex32(value: Any, expected: bytes | None) -> None:
    from settlement.receipts import hex32

    assert hex32(value) == expected


def test_the_card_salt_a_receipt_gives_is_checked_by_hex32() -> None:
    from settlement.receipts import card_salt

    r = {**receipt()["record"], "driver_index": 1}
    card = {"commitment": r["card_commitment"], "salt": "0x" + "AB" * 32}
    assert card_salt(r, card) == "0x" + "ab" * 32
    assert card_salt(r, {**card, "salt": "0x" + "ab" * 31}) is None
    assert card_salt(r, {**card, "salt": 7}) is None


def limited(**fields: Any) -> dict[str, Any]:
    """receipt() with these record fields, its hash and entry redone (the tariff gives 247)."""
    r = receipt()
    r["record"].update(fields)
    rhash, packed = entry_of(r["record"], 0)
    r["entry"] = {"record_hash": "0x" + rhash.hex(), "packed": hex(packed), "position": 0}
    r["payment"]["amount"] = r["record"]["price_minor"]
    return r


def test_a_price_at_the_sessions_limit_below_the_tariffs_adds_up() -> None:
    assert receipt()["record"]["price_minor"] == 247
    r = limited(price_minor=200, limit_minor=200)
    assert failed(r) == set()
    [price] = [c for c in verify_receipt(r).checks if c.name == "price"]
    assert price.detail == "billed at the session's limit 200, the tariff gives 247 (minor units)"
    # a limit the tariff's price stays below: the tariff's price
    assert failed(limited(price_minor=247, limit_minor=300)) == set()


@pytest.mark.parametrize("fields", [
    {"price_minor": 200},  # below the tariff's price without a limit
    {"price_minor": 210, "limit_minor": 200},  # neither the limit nor the tariff's price
    {"price_minor": 300, "limit_minor": 300},  # a limit above the tariff's price
    {"price_minor": 200, "limit_minor": "200"},
    {"price_minor": 1, "limit_minor": True},
    {"price_minor": 0, "limit_minor": -1},
])
def test_a_price_that_is_not_the_tariffs_or_the_sessions_limit_is_invalid(
        fields: dict[str, Any]) -> None:
    assert failed(limited(**fields)) == {"price"}


def alfen_receipt(begin: str, end: str, **fields: Any) -> dict[str, Any]:
    """A receipt of an Alfen charger's session with its two signed records (the EVBox
    station simulator's pair, tests/support/alfen_vectors.py)."""
    from csms.metering.ocmf import normalize_key
    from support.alfen_vectors import SIM_KEY, SIM_UID

    samples = [{**SAMPLES[0], "timestamp": at, "value": "", "format": "SignedData",
                "signed": {"signedData": data}}
               for at, data in (("2020-01-02T09:37:16+00:00", begin),
                                ("2020-01-02T09:40:35+00:00", end))]
    return signed(samples, **{
        "started_at": "2020-01-02T09:37:15+00:00", "stopped_at": "2020-01-02T09:40:36+00:00",
        "duration_s": 201, "meter_start_wh": "111133", "meter_stop_wh": "111271",
        "energy_wh": 138, "id_tag": SIM_UID, "meter_public_key": normalize_key(SIM_KEY),
        **fields})


def test_an_alfen_receipt_s_signed_readings_are_checked_like_ocmf_ones() -> None:
    from support.alfen_vectors import SIM_BEGIN, SIM_END

    r = alfen_receipt(SIM_BEGIN, SIM_END)
    verdict = verify_receipt(r)
    assert failed(r) == set(), [(c.name, c.detail) for c in verdict.checks]
    assert [c.ok for c in verdict.checks if c.name.startswith("meter signature")] == [True, True]
    assert "the calibrated meter signed for this session" in verdict.proves


def test_an_altered_or_misbilled_alfen_receipt_is_invalid() -> None:
    import base64

    from support.alfen_vectors import REFERENCE_BEGIN, SIM_BEGIN, SIM_END

    fields = SIM_END.split(";")
    raw = bytearray(base64.b32decode(fields[4]))
    raw[46] ^= 0x01  # the end reading's value
    fields[4] = base64.b32encode(bytes(raw)).decode()
    r = alfen_receipt(SIM_BEGIN, ";".join(fields))
    assert "meter signature 2" in failed(r)
    assert verify_receipt(r).status == INVALID
    # billed more than the meter signed
    assert "signed readings = billed readings" in failed(
        alfen_receipt(SIM_BEGIN, SIM_END, meter_stop_wh="111371", energy_wh=238))
    # another meter's record (its own key, not the receipt's)
    assert "meter signature 1" in failed(alfen_receipt(REFERENCE_BEGIN, SIM_END))
    # the records of another card
    assert "signed readings belong to this session" in failed(
        alfen_receipt(SIM_BEGIN, SIM_END, id_tag="04AABBCCDDEEFF"))


# -- what a dishonest operator writes into a record ----------------------------------------
T0 = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)


def _resealed(r: dict[str, Any], **fields: Any) -> dict[str, Any]:
    """``r`` with record ``fields`` changed and its entry computed again: the receipt of a
    record the operator wrote that way before it was settled."""
    record = {**r["record"], **fields}
    record["samples_hash"] = "0x" + samples_hash(r["samples"]).hex()
    rhash, packed = entry_of(record, 0)
    entry = {**r["entry"], "record_hash": "0x" + rhash.hex(), "packed": hex(packed)}
    return {**r, "record": record, "entry": entry}


def test_a_signed_entry_whose_record_writes_its_kind_as_text_has_its_authorization_checked(
) -> None:
    """kind "1" packs as a signed entry (ascii_int), which the contract pays under a
    driver's signature; the verifier gated the authorization checks on kind == 1, which
    "1" is not: a record with no authorization at all (or another one than the chain used)
    passed every offline check."""
    forged = _resealed(receipt(), kind=str(SIGNED), authorization=None)
    assert unpack_entry(int(forged["entry"]["packed"], 16))["kind"] == SIGNED
    verdict = verify_receipt(forged)
    failed = {c.name for c in verdict.checks if c.ok is False}
    # the record is either refused outright, or its (missing) authorization fails
    assert failed & {"record", "authorization", "entry"}, \
        [(c.name, c.ok, c.detail) for c in verdict.checks]


@pytest.mark.parametrize("name", INTEGER_FIELDS)
@pytest.mark.parametrize("spell", [str, float, bool], ids=["text", "float", "bool"])
def test_an_integer_of_the_record_written_otherwise_is_no_record(name: str,
                                                                 spell: Any) -> None:
    """The central system writes these as JSON integers: "0", 0.0 or false for one is read
    as the integer by the entry (int()) and as something else by ``==`` (the checks of a
    card or an app session skipped for one the chain pays as such)."""
    r = receipt()
    value = r["record"][name]
    forged = _resealed(r, **{name: spell(value)})
    verdict = verify_receipt(forged)
    assert [(c.name, c.ok) for c in verdict.checks] == [("record", False)], verdict.checks
    assert verdict.checks[0].detail == (f"the record cannot be read: {name}"
                                        f" {spell(value)!r} is not an integer")


@pytest.mark.parametrize("at", [
    "2026-W09-7T10:00:00+00:00", "2026-03-01T10:00:00.+00:00", "2026-03-01T10:00:00.5+00:00",
    "2026-03-01T11:00:00+01:00", "2026-03-01T10:00:00Z", "2026-03-01T10:00:00",
    "2026-03-01 10:00:00+00:00", "2026-03-01T10:00+00:00", "0000-03-01T10:00:00+00:00",
    "2026-02-30T10:00:00+00:00", "2026-03-01T24:00:00+00:00", "\u0662026-03-01T10:00:00+00:00",
])
def test_a_session_time_the_central_system_does_not_write_is_no_record(at: str) -> None:
    """Only YYYY-MM-DDTHH:MM:SS[.ffffff]+00:00 (settlement/worker.py writes the UTC
    isoformat()): Python and the receipt page read other forms differently."""
    verdict = verify_receipt(_resealed(receipt(), started_at=at))
    assert [(c.name, c.ok) for c in verdict.checks] == [("record", False)], verdict.checks
    assert verdict.checks[0].detail.startswith(f"the record cannot be read: started_at {at!r}")


def test_a_session_time_with_microseconds_is_read() -> None:
    r = _resealed(receipt(), started_at="2026-03-01T10:00:00.250000+00:00")
    assert failed(r) == set()


@pytest.mark.parametrize("where", ["samples.0.value", "record.station_id", "chain.rpc_hint",
                                   "record.tariff"])
def test_a_text_with_a_lone_surrogate_is_no_receipt(where: str) -> None:
    """JSON's \\udXXX escapes let a text hold half a UTF-16 pair: no Unicode, no hash
    (the receipt page refuses it in the same words)."""
    r = receipt()
    if where == "record.tariff":  # in a key
        r["record"]["tariff"] = {**TARIFF, "\udc00": "1"}
    else:
        _set(r, where, "CP\ud800")
    with pytest.raises(ReceiptError, match="not Unicode"):
        verify_receipt(r)


def _meter_sample(meter: MeterSigner, at: datetime, kind: str, wh: int, page: int,
                  context: str) -> dict[str, Any]:
    """A 2.0.1 sample signed by ``meter``, its key in the message."""
    container = meter.container(station_id="CP1", id_tag="T1", register_wh=wh, at=at,
                                kind=kind, pagination=page)
    return {"timestamp": at.isoformat(), "measurand": "Energy.Active.Import.Register",
            "unit": "Wh", "value": "", "context": context, "format": "SignedData",
            "signed": {"signedMeterData": container,
                       "publicKey": meter.public_key_der.hex(), "encodingMethod": "OCMF",
                       "signingMethod": ""}}


def _metered(begin: MeterSigner, end: MeterSigner, **fields: Any) -> dict[str, Any]:
    """A card session signed by ``begin`` and ``end`` (each key in its sample), priced."""
    t1 = T0 + timedelta(minutes=30)
    r = receipt()
    r["samples"] = [_meter_sample(begin, T0, "B", 10_000, 1, "Transaction.Begin"),
                    _meter_sample(end, t1, "E", 12_500, 2, "Transaction.End")]
    forged = _resealed(r, started_at=T0.isoformat(), stopped_at=t1.isoformat(),
                       duration_s=1800, meter_start_wh="10000", meter_stop_wh="12500",
                       energy_wh=2500, kind=CARD, **fields)
    price = price_minor(Tariff("*", Decimal(TARIFF["per_kwh"]), "EUR", 2,
                               Decimal(TARIFF["per_minute"]), Decimal(TARIFF["session_fee"])),
                        2500, 1800)
    forged = _resealed(forged, price_minor=price)
    forged["payment"] = {**forged["payment"], "amount": price}
    return forged


def test_meter_signatures_verified_with_a_key_the_record_does_not_commit_claim_no_meter(
) -> None:
    """A record with signed samples and no meter_public_key: each signature is verified with
    the key its own sample carries (any key the operator generated). The verdict said the
    energy was the calibrated meter's "verified with the meter key ...; compare it with the
    key on the charger's label", naming no key at all: the operator's own key passed for an
    Eichrecht meter."""
    meter = MeterSigner.generate("MTR-FAKE")  # the operator's own "meter"
    key = meter.public_key_der.hex()
    forged = _metered(meter, meter)
    assert "meter_public_key" not in forged["record"]
    verdict = verify_receipt(forged)
    assert not [c for c in verdict.checks if c.ok is False], \
        [(c.name, c.detail) for c in verdict.checks if c.ok is False]
    assert "calibrated meter signed" not in verdict.proves, verdict.proves
    assert "signed by a key the record does not commit" in verdict.proves
    assert f"...{key[-16:]}" in verdict.proves  # the key to compare with the label
    # committed, the same session is the meter's (the key is named)
    committed = verify_receipt(_metered(meter, meter, meter_public_key=key))
    assert f"the calibrated meter signed for this session (meter signatures verified with" \
           f" the meter key ...{key[-16:]}" in committed.proves


def test_a_session_signed_by_two_keys_none_committed_is_invalid() -> None:
    """Without a committed key each sample's own key verifies it: the begin of one meter
    and the end of another (the operator's) would both pass."""
    one, other = MeterSigner.generate("MTR-1"), MeterSigner.generate("MTR-1")
    verdict = verify_receipt(_metered(one, other, meter_public_key=None))
    checks = {c.name: c for c in verdict.checks}
    assert checks["one meter key"].ok is False, checks["one meter key"]
    assert "2 different keys" in checks["one meter key"].detail
    assert verdict.status == INVALID
    assert "signed by a key" not in verdict.proves


def test_the_receipt_checks_load_no_chain_library() -> None:
    """settlement.receipts (csms receipt, csms verify's reading) needs neither web3 nor
    eth-account: eth-account is imported where a signature is made or recovered."""
    r = subprocess.run([sys.executable, "-c", "import sys, settlement.receipts; "
                        "print(sorted({'web3', 'eth_account', 'py_ecc'} & set(sys.modules)))"],
                       capture_output=True, text=True, timeout=60)
    assert r.stdout.strip() == "[]", r.stderr
