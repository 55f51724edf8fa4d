// The receipt verifier of settlement/receipts.py (verify_receipt), check for check, in the
// browser: the same checks in the same order with the same names, so the page and
// `csms verify` reach the same verdict on the same receipt. Verdicts: VALID, INVALID,
// UNVERIFIED (the chain could not be read, which contract is the real one or the card's
// owner is unknown, the settle block is not deep enough, or the node asked is the one the
// receipt names: its operator's).

import { secp256k1 } from "@noble/curves/secp256k1.js";

import CODE from "../../../settlement/contracts/Settlement.code.json" with { type: "json" };
import {
  cardCommitment, checksumAddress, chunkDigest, isSettlementCode, isSettlementCreation, keccak, Rpc,
  SettlementReader, word,
} from "./chain.js";
import { Dec, MAX_EXPONENT } from "./decimal.js";
import { cmpTimes, fromSessionTime } from "./isotime.js";
import * as ocmf from "./ocmf.js";
import { fromHex, hex } from "./ocmf.js";
import { canonical, eq, int, isDict, le, parse, PyError, PyFloat, repr, str, truthy } from "./pyjson.js";

export const VALID = "VALID";
export const INVALID = "INVALID";
export const UNVERIFIED = "UNVERIFIED";
export const RECEIPT_VERSION = 2n;
// settlement/receipts.py LOCAL_CHAINS and FINAL_CONFIRMATIONS: the confirmations a settle
// transaction needs where the driver names no number: 1 on the chains anyone runs locally
// for tests and demos (Anvil and Hardhat, Ganache and geth --dev, py-evm's eth-tester), 64
// (two epochs of Ethereum's proof of stake: about when a block of Ethereum is final) on any
// other.
export const LOCAL_CHAINS = new Set([31337n, 1337n, 131277322940537n]);
export const FINAL_CONFIRMATIONS = 64n;

/** settlement/receipts.py default_confirmations */
export function defaultConfirmations(chainId) {
  return LOCAL_CHAINS.has(chainId) ? 1n : FINAL_CONFIRMATIONS;
}

/** The confirmations to ask for where the field holds ``asked`` (a string of digits, or
 * null): a number the link that opened the page filled in (``fromLink``: its maker's word,
 * the operator's as a rule) may ask for more than the chain's default, never fewer (a
 * link's ?confirmations=1 made a settle block a reorganisation can still drop VALID on a
 * chain whose default is 64); a number the driver typed is the driver's. A receipt whose
 * chain id cannot be read gets the default (it is refused when checked). */
export function confirmationsAsked(asked, fromLink, chainId) {
  if (asked === null || !fromLink) return asked;
  let chain;
  try {
    chain = BigInt(String(chainId));
  } catch {
    return null;
  }
  return BigInt(asked) < defaultConfirmations(chain) ? null : asked;
}

export const RECORD_FIELDS = [
  "ledger", "seq", "session_id", "station_id", "chain_station", "host", "connector_id",
  "evse_id", "id_tag", "ocpp_version", "transaction_id", "started_at", "stopped_at",
  "duration_s", "meter_start_wh", "meter_stop_wh", "energy_wh", "price_minor", "currency",
  "decimals", "unit", "tariff", "stop_reason", "samples_hash", "driver", "driver_index",
  "kind", "authorization", "card_commitment",
];
const OPTIONAL_FIELDS = ["meter_public_key", "limit_minor"];
const COMMITTED = new Set([...RECORD_FIELDS, ...OPTIONAL_FIELDS]);
// settlement/records.py INTEGER_FIELDS: the record's fields the central system writes as
// JSON integers and the verifiers read as numbers; each must be one (not text, a float or
// true/false): int() reads "0" as the card kind the entry packs, eq("0", 0n) is false
const INTEGER_FIELDS = ["seq", "chain_station", "driver_index", "energy_wh", "duration_s",
  "price_minor", "decimals", "unit", "kind"];
const LIMITS = { chain_station: 40n, driver_index: 32n, energy_wh: 32n, duration_s: 32n, price_minor: 48n };
const SIGNED = 1n;
const CARD = 0n;
export const UNPAID_REASONS = {
  1: "the station is not registered on chain", 2: "no driver's escrow",
  3: "more energy than the station's power allows", 4: "above the prices the driver accepts",
  5: "above the driver's limit per session", 6: "the driver accepts no card sessions",
  7: "no valid authorization from the driver", 8: "the authorization was already used",
  9: "the authorization expired", 10: "above the driver's limit per day",
  11: "the escrow was too low", 12: "unknown entry kind",
};

/** Not a receipt this verifier reads (one line for the driver). */
export class ReceiptError extends Error {}

// csms.protocol.frames.MAX_JSON_DEPTH: the nesting csms verify reads in a receipt file
export const MAX_JSON_DEPTH = 1024;

/** A receipt's text read as `csms verify` reads a receipt file (csms/cli/verify.py
 * _read_json): a byte order mark dropped, then JSON as Python reads it, nested at most
 * MAX_JSON_DEPTH levels, refusing an object that holds a key twice (each reader of such a
 * text picks its own value: a viewer the first, these verifiers the last, so the receipt
 * shows a figure other than the one verified). SyntaxError for what is not such JSON. */
export function readReceipt(text) {
  return parse(text.startsWith("\ufeff") ? text.slice(1) : text, {
    maxDepth: MAX_JSON_DEPTH,
    keyTwice: (key) => {
      throw new SyntaxError(`the key ${repr(key)} is in one object twice`);
    },
  });
}

export class Verdict {
  constructor() {
    this.checks = [];
    this.proves = "";
    this.signedReadings = []; // the readings of signatures that verified (for the chart)
  }

  get status() {
    if (this.checks.some((c) => c.ok === false)) return INVALID;
    if (!this.checks.length || this.checks.some((c) => c.ok === null)) return UNVERIFIED;
    return VALID;
  }

  add(name, ok, detail = "") {
    this.checks.push({ name, ok, detail });
    return Boolean(ok);
  }
}

export function whatItProves(samples) {
  if (samples.some((s) => truthy(s.signed ?? null))) {
    return "The record is the one settled on chain, and it carries signed meter readings"
      + " (OCMF or Alfen's format): when their signatures verify with the meter's key"
      + " and they belong to this session, the energy figure is the calibrated"
      + " meter's.";
  }
  return "The record is the one settled on chain. There is no signed meter data: the energy"
    + " figure is the operator's, bounded on chain by the station's power and the"
    + " driver's terms, not proven by a calibrated meter.";
}

// -- the record, its hash and its entry (settlement/records.py) --------------------------
const keccakHex = (bytes) => hex(keccak(bytes));

export function samplesHash(samples) {
  return keccakHex(canonical(samples));
}

export function recordHash(record) {
  const fields = [...RECORD_FIELDS, ...OPTIONAL_FIELDS.filter((f) => f in record)];
  const subset = Object.create(null);
  for (const f of fields) subset[f] = record[f];
  return keccakHex(canonical(subset));
}

// A station's index is 40 bits: its low 24 at the bottom of the entry (where the first
// layout had the whole index: an entry of a station below 2^24 is the same word as ever),
// its high bits above the slot; every bit above the slot is read as the station's, as the
// contract reads it (records.py unpack_entry).
const STATION_HIGH_SHIFT = 184n;

export function unpackEntry(packed) {
  const mask = (bits) => (1n << bits) - 1n;
  return {
    chain_station: (packed & mask(24n)) | ((packed >> STATION_HIGH_SHIFT) << 24n),
    driver_index: (packed >> 24n) & mask(32n),
    energy_wh: (packed >> 56n) & mask(32n), duration_s: (packed >> 88n) & mask(32n),
    price_minor: (packed >> 120n) & mask(48n), kind: (packed >> 168n) & 255n,
    slot: (packed >> 176n) & 255n,
  };
}

function packEntry(values, kind, slot) {
  for (const [name, value] of Object.entries(values)) {
    if (value < 0n || value >= 1n << LIMITS[name]) {
      throw new PyError("ValueError", `${name} ${value} does not fit ${LIMITS[name]} bits`);
    }
  }
  if (kind !== 0n && kind !== 1n) throw new PyError("ValueError", `unknown entry kind ${kind}`);
  return (values.chain_station & ((1n << 24n) - 1n)) | (values.driver_index << 24n)
    | (values.energy_wh << 56n) | (values.duration_s << 88n) | (values.price_minor << 120n)
    | (kind << 168n) | (slot << 176n) | ((values.chain_station >> 24n) << STATION_HIGH_SHIFT);
}

const or0 = (v) => (truthy(v) ? v : 0n);

function entryOf(record, slot) {
  const values = {
    chain_station: int(or0(record.chain_station)), driver_index: int(or0(record.driver_index)),
    energy_wh: int(record.energy_wh), duration_s: int(record.duration_s),
    price_minor: int(record.price_minor),
  };
  const kind = int(record.kind);
  return [recordHash(record), packEntry(values, kind, slot)];
}

// -- parsing ------------------------------------------------------------------------------
function hex32(value, name) {
  if (typeof value !== "string" || !/^0x[0-9a-fA-F]{64}$/.test(value)) {
    throw new ReceiptError(`${name} is not a 32-byte hex value`);
  }
  return value.slice(2).toLowerCase();
}

function need(obj, key) {
  if (!isDict(obj)) throw new PyError("TypeError", `not an object: ${key}`);
  if (!(key in obj)) throw new PyError("KeyError", `'${key}'`);
  return obj[key];
}

function parseReceipt(receipt) {
  if (!isDict(receipt) || !("voltledger_receipt" in receipt)) throw new ReceiptError("not a voltledger receipt");
  const version = receipt.voltledger_receipt;
  if (!eq(version, RECEIPT_VERSION)) {
    throw new ReceiptError(`receipt version ${repr(version)} is not supported (this verifier reads version 2)`);
  }
  if (holdsASurrogate(receipt)) throw new ReceiptError(NOT_UNICODE);
  try {
    const record = need(receipt, "record");
    const samples = need(receipt, "samples");
    const entry = need(receipt, "entry");
    const chunk = need(receipt, "chunk");
    const chain = need(receipt, "chain");
    const payment = need(receipt, "payment");
    if (!isDict(record) || !Array.isArray(samples) || !samples.every(isDict)) {
      throw new ReceiptError("record must be an object and samples a list of objects");
    }
    for (const [part, name] of [[entry, "entry"], [chunk, "chunk"], [chain, "chain"], [payment, "payment"]]) {
      if (!isDict(part)) throw new ReceiptError(`${name} must be an object`);
    }
    const card = receipt.card ?? null; // optional: the salt of the record's card
    if (card !== null && !isDict(card)) throw new ReceiptError("card must be an object");
    for (const [part, name] of [[receipt, "the receipt"], [entry, "entry"], [chunk, "chunk"],
      [chain, "chain"], [payment, "payment"], [card ?? {}, "card"]]) {
      const beyond = Object.keys(part).filter((key) => !RECEIPT_FIELDS[name].has(key));
      if (beyond.length) throw new ReceiptError(`${name} has ${beyond.map(repr).join(", ")}, not a field of a receipt`);
    }
    const missing = RECORD_FIELDS.filter((f) => !(f in record));
    if (missing.length) throw new ReceiptError(`the record lacks ${missing.join(", ")}`);
    return {
      record, samples,
      recordHash: hex32(need(entry, "record_hash"), "entry.record_hash"),
      packed: packedOf(need(entry, "packed")),
      position: whole(need(entry, "position"), "entry.position"),
      ledger: ledgerOf(need(chunk, "ledger")),
      firstSeq: whole(need(chunk, "first_seq"), "chunk.first_seq"),
      count: whole(need(chunk, "count"), "chunk.count"),
      digest: hex32(need(chunk, "digest"), "chunk.digest"),
      chainId: whole(need(chain, "chain_id"), "chain.chain_id"),
      contract: addressOf(need(chain, "contract")),
      txHash: hex32(need(chain, "tx_hash"), "chain.tx_hash"),
      blockNumber: whole(need(chain, "block_number"), "chain.block_number"),
      paid: paidOf(need(payment, "paid")), reason: reasonOf(payment.reason ?? null),
      amount: whole(need(payment, "amount"), "payment.amount"),
      unit: whole(need(payment, "unit"), "payment.unit"),
      cardSalt: card === null ? null : hex32(need(card, "salt"), "card.salt"),
      deployTx: deployTxOf(chain),
      // the operator's node (a hint, not checked: anything else is no node named)
      rpcHint: typeof chain.rpc_hint === "string" ? chain.rpc_hint : null,
    };
  } catch (exc) {
    if (exc instanceof ReceiptError) throw exc;
    throw new ReceiptError(`malformed receipt: ${exc.message}`);
  }
}

// The fields of a receipt around its record, as the central system writes them (receipts.py
// _FIELDS): a field beside them (a fee, a total in another currency) is a figure no
// verifier checks, in a receipt that is VALID: not a receipt.
const RECEIPT_FIELDS = {
  "the receipt": new Set(["voltledger_receipt", "what_it_proves", "record", "samples", "entry",
    "chunk", "payment", "chain", "card"]),
  entry: new Set(["record_hash", "packed", "position"]),
  chunk: new Set(["ledger", "first_seq", "count", "digest"]),
  chain: new Set(["chain_id", "contract", "tx_hash", "block_number", "rpc_hint", "deploy_tx"]),
  payment: new Set(["paid", "amount", "unit", "reason"]),
  card: new Set(["salt"]),
};

// JSON's \udXXX escapes let a text hold half of a UTF-16 pair, which is no Unicode text:
// JSON.stringify writes it as the escape again (a hash of it), Python cannot encode it (no
// hash). Neither verifier reads such a receipt (settlement/receipts.py _NOT_UNICODE).
const NOT_UNICODE = "the receipt holds a text that is not Unicode (an unpaired surrogate)";
const LONE_SURROGATE = /[\ud800-\udfff]/u; // with u, a pair is one code point: not matched

/** Whether a text of value (a key included, at any depth) holds an unpaired surrogate. */
function holdsASurrogate(value) {
  const stack = [value];
  while (stack.length) {
    const item = stack.pop();
    if (typeof item === "string") {
      if (LONE_SURROGATE.test(item)) return true;
    } else if (Array.isArray(item)) {
      stack.push(...item);
    } else if (isDict(item)) {
      for (const [key, inner] of Object.entries(item)) stack.push(key, inner);
    }
  }
  return false;
}

/** Why the record is not one the central system writes, where a verifier would read it
 * otherwise than the chain or the other verifier does (null: it is one; receipts.py
 * _unreadable). */
function unreadable(record) {
  // every field of the record is one its hash commits: a field beside them (a total, a
  // second energy) is a figure the chain never saw, in a receipt whose hashes all match
  const beyond = Object.keys(record).filter((name) => !COMMITTED.has(name));
  if (beyond.length) {
    return `${beyond.map(repr).join(", ")} ${beyond.length === 1 ? "is" : "are"}`
      + " not a field of the record its hash commits";
  }
  for (const name of INTEGER_FIELDS) {
    if (typeof record[name] !== "bigint") return `${name} ${repr(record[name])} is not an integer`;
  }
  for (const name of ["started_at", "stopped_at"]) {
    try {
      fromSessionTime(record[name]);
    } catch (exc) {
      return `${name} ${repr(record[name])} ${exc.message}`;
    }
  }
  return null;
}

// The figures of a receipt outside its record (its entry, chunk, chain and payment), each
// compared with what the chain answers, read only as the central system writes them
// (receipts.py _whole, _ledger, _packed, _paid, _reason): int() read 100.9 as 100, " 100",
// "1_00" and true as numbers, Python's truth read "false" as paid, so a receipt showed a
// figure other than the chain's and was VALID for it.

/** A figure of the receipt outside its record: a JSON integer. */
function whole(value, name) {
  if (typeof value !== "bigint") throw new ReceiptError(`${name} ${repr(value)} is not an integer`);
  return value;
}

/** chunk.ledger: text of decimal digits (no sign, blank or leading zero), or an integer. */
function ledgerOf(value) {
  if (typeof value === "string" && /^(?:0|[1-9][0-9]*)$/.test(value)) return BigInt(value);
  return whole(value, "chunk.ledger");
}

/** entry.packed: 0x and hex digits, as Python's hex() writes it. */
function packedOf(value) {
  if (typeof value !== "string" || !/^0x[0-9a-fA-F]+$/.test(value)) {
    throw new ReceiptError(`entry.packed ${repr(value)} is not 0x and hex digits`);
  }
  return BigInt(value);
}

/** payment.paid: true or false. */
function paidOf(value) {
  if (typeof value !== "boolean") throw new ReceiptError(`payment.paid ${repr(value)} is not true or false`);
  return value;
}

/** payment.reason: the chain's reason code of an unpaid entry, or null. */
function reasonOf(value) {
  if (value !== null && typeof value !== "bigint") {
    throw new ReceiptError(`payment.reason ${repr(value)} is not an integer or null`);
  }
  return value;
}

/** The receipt's contract: 0x and 40 hex digits, in any case (receipts.py _address). */
function addressOf(value) {
  if (typeof value !== "string" || !/^0x[0-9a-fA-F]{40}$/.test(value)) {
    throw new ReceiptError("chain.contract is not an address (0x and 40 hex digits)");
  }
  return value;
}

/** The receipt's chain.deploy_tx: the transaction that created its contract (optional). */
function deployTxOf(chain) {
  const value = chain.deploy_tx ?? null;
  return value === null ? null : hex32(value, "chain.deploy_tx");
}

// what a figure beyond MAX_EXPONENT is (receipts.py _BEYOND)
const BEYOND = `written beyond 1E-${MAX_EXPONENT} .. 1E+${MAX_EXPONENT}`;

/** A tariff's figure beyond +-MAX_EXPONENT: no price needs it (receipts.py _FigureBeyond). */
class FigureBeyond extends Error {}

/** The record's currency decimals (a price is scaled by 10^decimals): beyond +-MAX_EXPONENT
 * no currency's (receipts.py _decimals; the central system takes 0 to 18). */
function decimalsOf(value) {
  const decimals = value; // a JSON integer (unreadable)
  if (decimals < -BigInt(MAX_EXPONENT) || decimals > BigInt(MAX_EXPONENT)) {
    throw new FigureBeyond(`its currency's decimals ${decimals} are beyond +-${MAX_EXPONENT}`);
  }
  return decimals;
}

/** A finite number, else null (receipts.py _number). */
function numberOrNone(value) {
  if (value === null || value === "None") return null;
  try {
    const number = Dec.parse(str(value));
    return number.isFinite() ? number : null;
  } catch {
    return null;
  }
}

/** A meter reading of the record: a finite number within 10^+-MAX_EXPONENT, else null
 * (receipts.py _decimal). */
function decimalOrNone(value) {
  const number = numberOrNone(value);
  return number !== null && number.withinExponents() ? number : null;
}

/** Decimal(x) as the Tariff constructor takes it (a str, an int or a float), a finite
 * figure beyond 10^+-MAX_EXPONENT refused (receipts.py _ascii_decimal): no price needs it,
 * and this exact arithmetic would spend seconds and hundreds of MB on 1e-10000000. */
function decimalOf(value, name) {
  let number;
  if (typeof value === "string") number = Dec.parse(value);
  else if (typeof value === "bigint") number = Dec.fromInt(value);
  else if (typeof value === "boolean") number = Dec.fromInt(value ? 1 : 0);
  else if (value instanceof PyFloat) number = Dec.fromFloat(value.value);
  else throw new PyError("TypeError", "conversion to Decimal");
  if (number.isFinite() && !number.withinExponents()) {
    throw new FigureBeyond(`its ${name} is ${BEYOND}, the figures a price needs`);
  }
  return number;
}

/** csms/domain/tariff.py price_minor */
export function priceMinor(tariff, energyWh, durationS) {
  const seconds = durationS > 0n ? Dec.fromInt(durationS) : Dec.fromInt(0);
  const total = tariff.sessionFee
    .add(Dec.fromInt(energyWh).div(Dec.fromInt(1000)).mul(tariff.perKwh))
    .add(seconds.div(Dec.fromInt(60)).mul(tariff.perMinute));
  return total.scaleb(Number(tariff.decimals)).toInteger("half_up");
}

// -- verifying ----------------------------------------------------------------------------
/**
 * Check a receipt (a value of pyjson.parse); with an RPC URL against the chain too.
 * Throws ReceiptError for what is not a receipt of this version.
 */
export async function verifyReceipt(receipt, {
  rpcUrl = null, driver = null, contract = null, cards = [], logWindow = null,
  confirmations = null, rpcFromReceipt = false, fromLink = [],
} = {}) {
  // fromLink: the names ("driver", "contract") of the options the link that opened the
  // page filled in (whoever made the link: the operator, as a rule), not the driver's word
  const linked = new Set(fromLink);
  // rpcFromReceipt: rpcUrl is the node the page filled in from the receipt (or from the
  // link that opened it), not one the driver chose, however either is spelled
  // logWindow: the widest block range of one eth_getLogs (BigInt or an integer's text;
  // null: chain.js LOG_WINDOW), where the node keeps no state of the settle block
  const window = logWindow === null ? null : BigInt(logWindow);
  if (window !== null && window < 1n) throw new Error("the log window is at least one block");
  // confirmations: how many the settle transaction must have for VALID (BigInt or an
  // integer's text; null: defaultConfirmations of the receipt's chain)
  const required = confirmations === null ? null : BigInt(confirmations);
  if (required !== null && required < 1n) {
    throw new Error("the confirmations are at least one (the block of the transaction)");
  }
  // cards: the driver's own [tag, salt] pairs (settlement/receipts.py verify_receipt)
  const ownCards = (cards ?? []).map(([tag, salt]) => {
    if (typeof salt !== "string" || !/^0x[0-9a-fA-F]{64}$/.test(salt)) {
      throw new Error(`the salt of card ${tag} is not 32 bytes (0x and 64 hex digits)`);
    }
    return [String(tag), salt.slice(2).toLowerCase()];
  });
  const r = parseReceipt(receipt);
  const { record, samples } = r;
  const v = new Verdict();
  let rhash;
  let packed;
  v.proves = whatItProves(samples);
  const problem = unreadable(record);
  if (problem !== null) {
    v.add("record", false, `the record cannot be read: ${problem}`);
    return v;
  }
  try {
    v.add("samples hash", eq(`0x${samplesHash(samples)}`, record.samples_hash),
      "the meter samples are the ones the record commits to");
    const slot = unpackEntry(r.packed).slot;
    [rhash, packed] = entryOf(record, slot);
  } catch (exc) {
    v.add("record", false, `the record cannot be read: ${exc.message}`);
    return v;
  }
  v.add("record hash", rhash === r.recordHash, "record -> the entry's hash");
  v.add("entry", packed === r.packed,
    "station, driver, energy, duration and amount of the entry are the record's");
  try {
    await checkRecord(v, record, unpackEntry(r.packed).kind, r.chainId, r.contract);
    await checkSigned(v, record, samples);
  } catch (exc) {
    // a field of the wrong type where the checks above read it: not this record
    v.add("record", false, `the record cannot be read: ${exc.message}`);
    return v;
  }
  if (!rpcUrl) {
    v.add("on chain", null, "no RPC endpoint given: the chain was not checked");
    return v;
  }
  checkNode(v, r, rpcUrl, rpcFromReceipt);
  try {
    await checkChain(v, r, new Rpc(rpcUrl), linked.has("driver") ? null : driver,
      linked.has("contract") ? null : contract, ownCards, window, required, linked);
  } catch (exc) {
    v.add("on chain", null, `the chain could not be read: ${String(exc.message).slice(0, 200)}`);
  }
  return v;
}

/** What the record says about itself must add up. kind: the entry's, as the chain pays it
 * (the record's, when the "entry" check passes). */
async function checkRecord(v, record, kind, chainId, contract) {
  const start = decimalOrNone(record.meter_start_wh);
  const stop = decimalOrNone(record.meter_stop_wh);
  if (start === null || stop === null) {
    const far = ["start", "stop"].filter((name) => {
      const number = numberOrNone(record[`meter_${name}_wh`]);
      return number !== null && !number.withinExponents();
    });
    v.add("energy = stop - start", false, !far.length ? "the record has no start or stop reading"
      : `the record's ${far.join(" and ")} reading${far.length > 1 ? "s are" : " is"} ${BEYOND} Wh,`
        + " the figures a meter reading needs");
  } else {
    let ok = false;
    let energy = "?";
    try {
      const delta = stop.sub(start);
      energy = delta.cmp(Dec.fromInt(0)) >= 0 ? delta.toInteger("half_even") : 0n;
      ok = eq(energy, record.energy_wh);
    } catch {
      ok = false;
    }
    v.add("energy = stop - start", ok,
      `${stop} - ${start} Wh = ${energy} Wh, the record bills ${str(record.energy_wh)} Wh`);
  }
  try {
    const started = fromSessionTime(record.started_at);
    const stopped = fromSessionTime(record.stopped_at);
    const micros = BigInt(cmpTimes(stopped, started));
    const seconds = micros >= 0n ? (micros + 999999n) / 1000000n : -((-micros) / 1000000n);
    v.add("duration", micros >= 0n && eq(seconds, record.duration_s),
      `${record.started_at} .. ${record.stopped_at}: ${seconds} s`);
  } catch {
    v.add("duration", false, "the record's times cannot be read");
  }
  try {
    const price = tariffPrice(record);
    const limit = record.limit_minor ?? null;
    const billed = record.price_minor;
    if (limit === null) {
      v.add("price", eq(price, billed),
        `the tariff in the record gives ${price}, the record bills ${str(billed)} (minor units)`);
    } else if (typeof limit !== "bigint" || limit < 0n) {
      v.add("price", false, `the session's limit ${repr(limit)} is not a number of minor units`);
    } else if (limit < price) {
      v.add("price", eq(billed, limit), eq(billed, limit)
        ? `billed at the session's limit ${limit}, the tariff gives ${price} (minor units)`
        : `the tariff in the record gives ${price} and the session's limit is ${limit}, the record bills ${str(billed)} (minor units)`);
    } else {
      v.add("price", eq(price, billed),
        `the tariff in the record gives ${price} (the session's limit is ${limit}), the record bills ${str(billed)} (minor units)`);
    }
  } catch (exc) {
    v.add("price", false, exc instanceof FigureBeyond ? `the record's tariff cannot be read: ${exc.message}`
      : "the record's tariff cannot be read");
  }
  if (kind === SIGNED) {
    try {
      const auth = authorizationOf(record.authorization);
      const signer = recover(auth, chainId, contract);
      const ok = signer.toLowerCase() === auth.driver.toLowerCase()
        && auth.driver.toLowerCase() === str(record.driver).toLowerCase()
        && eq(auth.station, record.chain_station) && le(record.price_minor, auth.max_amount);
      v.add("authorization", ok,
        `signed by ${signer} for station ${auth.station}, at most ${auth.max_amount}`);
    } catch (exc) {
      v.add("authorization", false, `the authorization cannot be read: ${exc.message}`);
    }
  }
}

/** The price the record's tariff gives for its energy and duration (minor units). */
function tariffPrice(record) {
  const t = record.tariff;
  if (!isDict(t)) throw new PyError("TypeError", "tariff");
  const tariff = {
    perKwh: decimalOf(need(t, "per_kwh"), "per_kwh"), currency: str(record.currency),
    decimals: decimalsOf(record.decimals), perMinute: decimalOf(need(t, "per_minute"), "per_minute"),
    sessionFee: decimalOf(need(t, "session_fee"), "session_fee"),
  };
  return priceMinor(tariff, record.energy_wh, record.duration_s);
}

/** The session's limit when the record bills it instead of the tariff's higher price (the
 * "price" check holds the record to it), else null (receipts.py _capping_limit). */
function cappingLimit(record) {
  const limit = record.limit_minor ?? null;
  if (typeof limit !== "bigint" || limit < 0n || !eq(record.price_minor, limit)) return null;
  try {
    return limit < tariffPrice(record) ? limit : null;
  } catch {
    return null;
  }
}

// -- the driver's EIP-712 authorization (settlement/eip712.py) ---------------------------
const WIDTHS = [["max_per_kwh", 24n], ["max_per_minute", 24n], ["max_session_fee", 24n],
  ["max_amount", 32n], ["nonce", 48n], ["expiry", 40n]];
const AUTH_FIELDS = ["driver", "station", "max_per_kwh", "max_per_minute", "max_session_fee",
  "max_amount", "nonce", "expiry", "signature"];

function authorizationOf(data) {
  if (!isDict(data)) throw new PyError("TypeError", "not an authorization");
  const missing = AUTH_FIELDS.filter((f) => !(f in data));
  if (missing.length) throw new PyError("ValueError", `authorization lacks ${missing}`);
  const auth = { driver: str(data.driver), signature: str(data.signature) };
  try {
    for (const f of AUTH_FIELDS.slice(1, 8)) auth[f] = int(data[f]);
  } catch (exc) {
    throw new PyError("ValueError", `not an authorization: ${exc.message}`);
  }
  // an address in any case, as the contract and eth_abi read one (eip712.py from_json)
  if (typeof data.driver !== "string" || !/^0x[0-9a-fA-F]{40}$/.test(data.driver)) {
    throw new PyError("ValueError", `not an authorization: the driver ${repr(data.driver)} is not an address (0x and 40 hex digits)`);
  }
  for (const [name, bits] of WIDTHS) {
    if (auth[name] < 0n || auth[name] >= 1n << bits) throw new PyError("ValueError", `${name} must be an integer below 2^${bits}`);
  }
  if (!(auth.station > 0n && auth.station < 1n << LIMITS.chain_station)) throw new PyError("ValueError", "station must be a registered station index");
  return auth;
}

const utf8 = (text) => new TextEncoder().encode(text);

function abiAddress(address) {
  // eth_abi: a hex address in any case (it checks no EIP-55 checksum, nor does the
  // contract); the driver's and the contract's are checked to be 0x and 40 hex digits
  if (typeof address !== "string" || !/^0x[0-9a-fA-F]{40}$/.test(address)) throw new PyError("ValueError", `not an address: ${address}`);
  return address.slice(2).toLowerCase().padStart(64, "0");
}

function eip712Digest(auth, chainId, contract) {
  const domain = keccak(fromHex(
    hex(keccak(utf8("EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)")))
    + hex(keccak(utf8("voltledger"))) + hex(keccak(utf8("2"))) + word(chainId) + abiAddress(contract)));
  const struct = keccak(fromHex(
    hex(keccak(utf8("SessionAuthorization(address driver,uint256 station,uint256 maxPerKwh,"
      + "uint256 maxPerMinute,uint256 maxSessionFee,uint256 maxAmount,uint256 nonce,uint256 expiry)")))
    + abiAddress(auth.driver) + [auth.station, auth.max_per_kwh, auth.max_per_minute,
      auth.max_session_fee, auth.max_amount, auth.nonce, auth.expiry].map(word).join("")));
  return keccak(Uint8Array.from([0x19, 0x01, ...domain, ...struct]));
}

function recover(auth, chainId, contract) {
  try {
    const raw = fromHex(auth.signature.replace(/^0x/, ""));
    if (raw.length !== 65) throw new Error("a signature is 65 bytes");
    let recovery = raw[64];
    if (recovery >= 27) recovery -= 27;
    if (recovery !== 0 && recovery !== 1) throw new Error("bad v");
    const digest = eip712Digest(auth, chainId, contract);
    const sig = secp256k1.Signature.fromBytes(raw.slice(0, 64), "compact").addRecoveryBit(recovery);
    const point = sig.recoverPublicKey(digest).toBytes(false);
    return checksumAddress(`0x${hex(keccak(point.slice(1)).slice(12))}`);
  } catch (exc) {
    throw new PyError("ValueError", `not a valid signature: ${exc.message}`);
  }
}

// -- signed meter data --------------------------------------------------------------------
async function checkSigned(v, record, samples) {
  const signed = samples.filter((s) => truthy(s.signed ?? null)).map((s) => s.signed);
  if (!signed.length) return;
  const key = record.meter_public_key ?? null;
  const readings = [];
  let allOk = true;
  const used = []; // the keys the signatures were verified with
  for (const [i, data] of signed.entries()) {
    const checked = await ocmf.checkContainer(data, typeof key === "string" ? key : key === null ? null : str(key));
    const ok = checked.status === ocmf.VERIFIED;
    allOk &&= ok;
    if (ok) {
      readings.push(...checked.readings);
      used.push(String(checked.keyUsed));
    }
    v.add(`meter signature ${i + 1}`, ok, checked.detail);
  }
  if (!truthy(key)) {
    // no key committed: each signature verifies with the key its own sample carries, which
    // proves nothing of a meter (anyone generates a key) unless one key signed the whole
    // session, the one the driver compares with the charger's label
    allOk = oneMeterKey(v, used) && allOk;
  }
  const start = decimalOrNone(record.meter_start_wh);
  const stop = decimalOrNone(record.meter_stop_wh);
  v.signedReadings = readings;
  const rec = ocmf.reconcile(readings, start, stop);
  const same = (a, b) => (a === null || b === null ? a === b : a.eq(b));
  const changed = !same(rec.startWh, start) || !same(rec.stopWh, stop);
  const problems = [...rec.mismatches,
    ...(changed ? ["the billed readings are not the ones the signed data gives"] : [])];
  let times = null;
  try {
    times = [fromSessionTime(record.started_at), fromSessionTime(record.stopped_at)];
  } catch {
    times = null; // no session times: the readings do not belong to it (belongsToSession)
  }
  if (times !== null) {
    // a side the meter did not sign, beyond what any charger delivers from (to) its nearest
    // signed reading (the central system bounds it by the station's power)
    problems.push(...ocmf.unsignedBeyondSigned(readings, rec.signedBegin, rec.signedEnd, start,
      stop, times[0], times[1], ocmf.MAX_PLAUSIBLE_POWER_W));
  }
  let detail = problems.length ? problems.join("; ")
    : !rec.missing.length ? "the billed start and stop readings are the meter's signed ones"
      : `no signed ${rec.missing.join(" and ")} reading to compare`;
  if (!problems.length && rec.flags.includes("signed_register_offset")) {
    detail = "the energy between the billed readings is the energy the meter signed";
  }
  const matched = v.add("signed readings = billed readings", !problems.length, detail);
  // the meter's own word on its readings: a status other than G or an energy error is not
  // billable (the central system holds such a session: signed_reading_faulty)
  const good = v.add("meter status", !rec.faults.length, rec.faults.length ? rec.faults.join("; ")
    : "no signed begin or end reading is marked faulty by the meter");
  const belongs = belongsToSession(v, record, readings, rec);
  if (allOk && matched && good && belongs && !rec.missing.length) {
    if (truthy(key)) {
      const short = (typeof key === "string" ? key : "").slice(-16);
      v.proves = "The record is the one settled on chain, and the energy figure is the one"
        + " the calibrated meter signed for this session (meter signatures verified"
        + ` with the meter key ...${short}; compare it with the key on the charger's label).`;
    } else {
      v.proves = "The record is the one settled on chain, and its meter data is signed"
        + ` by a key the record does not commit (...${used[0].slice(-16)}, the key`
        + " its samples carry): the signed readings belong to this session, but"
        + " anyone can make such a key; the energy figure is a calibrated"
        + " meter's only if this is the key on the charger's label.";
    }
  }
}

/** settlement/receipts.py _one_meter_key: the signatures of a record that commits no meter
 * key were verified with one key. */
function oneMeterKey(v, used) {
  const keys = [...new Set(used)].sort();
  return v.add("one meter key", keys.length <= 1, keys.length === 1
    ? `every signature verified with one key, ...${keys[0].slice(-16)}, which the record does not commit`
    : !keys.length ? "no signature verified with any key"
      : `the signatures verified with ${keys.length} different keys`
        + ` (${keys.map((k) => `...${k.slice(-16)}`).join(", ")}): one session is one meter's`);
}

/** Signed readings borrowed from another session, invented or reordered fail here (the
 * central system's own rule, ocmf.foreign). */
function belongsToSession(v, record, readings, rec) {
  let started;
  let stopped;
  try {
    started = fromSessionTime(record.started_at);
    stopped = fromSessionTime(record.stopped_at);
  } catch {
    return v.add("signed readings belong to this session", false, "no session times");
  }
  const tag = truthy(record.id_tag ?? null) ? str(record.id_tag) : "";
  const problems = ocmf.foreign(readings, rec.signedBegin, rec.signedEnd, started, stopped, tag);
  const ids = readings.some((r) => r.identification);
  return v.add("signed readings belong to this session", !problems.length,
    problems.length ? problems.join("; ")
      : `inside the session's time window, begin before end, pages in order, one meter${tag && ids ? ", the driver's token" : ""}`);
}

// -- on chain -----------------------------------------------------------------------------
/** settlement/receipts.py _node: a node's URL as compared with the receipt's: the same node
 * however it is spelled (case, a closing slash, blanks, controls and invisible characters
 * anywhere in it: a browser's field drops a line break, trims a no-break space). */
const NOT_IN_A_URL = /[\x00-\x20\x7f-\xa0\u1680\u180e\u2000-\u200f\u2028-\u202f\u205f-\u2064\u3000\ufeff]/g;
const nodeOf = (url) => url.replace(NOT_IN_A_URL, "").replace(/\/+$/, "").toLowerCase();

/** Whether url is the node the receipt names (its rpc_hint; null: it names none). */
export function sameNode(url, hint) {
  return typeof url === "string" && typeof hint === "string" && nodeOf(hint) !== ""
    && nodeOf(url) === nodeOf(hint);
}

/** settlement/receipts.py _check_node: whose node answered. The chain data of the node the
 * receipt names (its operator's) proves nothing against a dishonest operator, whose node
 * answers whatever makes its receipts pass; the page fills it in, csms verify never asks it. */
function checkNode(v, r, rpcUrl, rpcFromReceipt) {
  const hint = r.rpcHint;
  if (rpcFromReceipt || sameNode(rpcUrl, hint)) {
    // the node the page was given with the receipt or with its link, not the driver's choice
    const whose = sameNode(rpcUrl, hint) ? "the node the receipt names"
      : "the node the page was opened with";
    v.add("chain node", null, `the chain data came from ${rpcUrl}, ${whose}: its`
      + " operator's, which can answer whatever makes its receipts pass;"
      + ` check with a node you choose (your own, or a public one of chain ${r.chainId})`);
    v.proves += ` Chain data from ${rpcUrl}, ${whose} (its`
      + " operator's): against a dishonest operator this proves nothing until"
      + " it is checked with a node you choose.";
    return;
  }
  const where = `${rpcUrl}, a node you chose`;
  v.add("chain node", true, `the chain data came from ${where}`
    + (hint === null ? "" : `, not ${hint}, the node the receipt names`));
  v.proves += ` Chain data from ${where}.`;
}

/** settlement/receipts.py _count: "1 block", "2 blocks". */
function count(n, noun) {
  return n === 1n ? `${n} ${noun}` : `${n} ${noun}s`;
}

/** settlement/receipts.py _check_depth: how deep the settle block is; until enough blocks
 * are on top of it, a block can be reorganised away (and the session with it). */
async function checkDepth(v, r, reader, block, confirmations) {
  const required = confirmations === null ? defaultConfirmations(r.chainId) : confirmations;
  const head = await reader.blockNumber();
  const depth = head > block ? head - block : 0n; // a node behind its own answer: in a block
  const detail = `settle block ${block}, ${count(depth, "block")} on top of it (the node's`
    + ` latest block is ${head}): ${count(depth + 1n, "confirmation")}, ${required} required`;
  if (depth + 1n >= required) {
    v.add("confirmations", true, detail);
    return;
  }
  v.add("confirmations", null, detail + (confirmations === null
    ? ` (the default on chain ${r.chainId}: csms verify --confirmations N asks for another number)` : "")
    + ": the block can still be reorganised away, check again later");
}

/** settlement/receipts.py _check_chain: the checks on chain, every state read at the end of
 * the block the settle transaction is in, and that block pinned (its hash) while it is read:
 * a transaction in no block, or a block reorganised away while it was read, is UNVERIFIED
 * (what was read of it is not kept), never INVALID: the chain moved, not the operator. */
async function checkChain(v, r, rpc, driver, contract, cards, logWindow, confirmations,
  linked = new Set()) {
  const reader = new SettlementReader(rpc, r.contract, logWindow);
  const chainId = await reader.chainId();
  if (!v.add("chain id", chainId === r.chainId, `the node is chain ${chainId}, the receipt says ${r.chainId}`)) return;
  const tx = `0x${r.txHash}`;
  const pinned = await reader.settleBlock(tx);
  if (pinned === null) {
    v.add("settle transaction", null, `${tx} is in no block of chain ${chainId}: not`
      + " mined yet, or its block was reorganised away (the chain may include it"
      + " again, or settle its sequence numbers otherwise): check again later");
    return;
  }
  const start = v.checks.length;
  try {
    await checkSettled(v, r, reader, pinned[0], driver, contract, cards, confirmations, linked);
  } catch (exc) {
    if (!(await reorganised(v, r, reader, pinned, start))) throw exc;
    return;
  }
  await reorganised(v, r, reader, pinned, start);
}

/** settlement/receipts.py _reorganised: whether the settle transaction is no longer in the
 * block pinned ([number, hash]) it was in when the checks on chain began: the chain
 * reorganised it away while it was read. Then what was read (the checks from start) is of
 * no one chain, and the verdict is UNVERIFIED. */
async function reorganised(v, r, reader, pinned, start) {
  const now = await reader.settleBlock(`0x${r.txHash}`);
  if (now !== null && now[0] === pinned[0] && now[1] === pinned[1]) return false;
  v.checks.splice(start);
  v.add("settle transaction", null, `0x${r.txHash} was in block ${pinned[0]}`
    + ` (0x${pinned[1]}) when the check began, and the chain reorganised that block`
    + " while it was read (the transaction is "
    + (now === null ? "in no block now" : `in block ${now[0]} now`)
    + "): nothing read of it is kept, check again later");
  return true;
}

/** settlement/receipts.py _check_settled: the checks of the contract and the settle
 * transaction in block pinned. */
async function checkSettled(v, r, reader, pinned, driver, contract, cards, confirmations, linked) {
  const { record } = r;
  // the kind of session the chain pays (card: the driver's standing terms; app: the
  // driver's signature), gating the checks of that kind
  const { kind } = unpackEntry(r.packed);
  // what the contract is: this project's Settlement code, not a look-alike that answers
  // driver_index, cards and chunk_digest as it likes
  const code = await reader.code();
  const genuine = isSettlementCode(code, CODE);
  if (!v.add("contract code", genuine, genuine
    ? `${r.contract} runs the code of voltledger's Settlement contract (${CODE.contract}, vyper ${CODE.vyper})`
    : !code ? `there is no contract at ${r.contract}`
      : `the code at ${r.contract} is not voltledger's Settlement contract: a look-alike, whatever it answers`)) return;
  if (!(await checkOrigin(v, r, reader, contract))) return;
  if (contract) {
    v.add("the real contract", contract.toLowerCase() === r.contract.toLowerCase(),
      `you named ${contract}, the receipt names ${r.contract}`);
  }
  if (driver) {
    const same = (truthy(record.driver) ? str(record.driver) : "").toLowerCase() === driver.toLowerCase();
    // as the contract held them when the session was settled (the settle transaction's
    // block, as the chain says: the receipt's is checked below), not as they are now
    const index = same ? await reader.driverIndex(driver, pinned) : 0n;
    v.add("the driver's escrow", same && index !== 0n && eq(index, record.driver_index),
      `${driver} is driver ${index} of ${r.contract}; the record names ${str(record.driver)} (driver ${str(record.driver_index)})`);
    if (same && index && kind === CARD && truthy(record.driver_index)) {
      await checkCard(v, r, reader, driver, index, cards, pinned);
    }
  }
  const limit = kind === CARD ? cappingLimit(record) : null;
  if (limit !== null) await checkLimit(v, r, reader, limit, pinned);
  if (!contract && !driver) {
    v.add("the real contract", null, linked.size
      ? `the ${[...linked].sort().map((n) => (n === "driver" ? "driver address" : n)).join(" and the ")}`
        + " came with the link that opened this page"
        + " (whoever made it: the operator, as a rule), not from you: type your own driver"
        + ` address (or the contract you trust) to tell whether ${r.contract} is the contract`
        + " your escrow is in"
      : "give your driver address (or the contract's) to"
      + ` tell whether ${r.contract} is the contract your escrow is in`);
  }
  const txHash = `0x${r.txHash}`;
  const [to, ledger, firstSeq, entries] = await reader.settleInput(txHash);
  if (to.toLowerCase() !== r.contract.toLowerCase()) {
    v.add("settle transaction", false, "the transaction is not a call of this contract");
    return;
  }
  const position = r.position;
  let inTx = ledger === r.ledger && firstSeq === r.firstSeq
    && position >= 0n && position < BigInt(entries.length)
    && entries[Number(position)][0] === r.recordHash && entries[Number(position)][1] === r.packed
    && record.seq === firstSeq + position
    && str(record.ledger) === ledger.toString();
  let entryDetail = `entry ${position} of the chunk settled in ${txHash}`;
  if (inTx && kind === SIGNED) {
    // the contract checked (and used up) the authorization at the entry's place among the
    // signed ones: it must be the record's, not another of the driver's signatures for the
    // station (other prices, another nonce)
    const used = authorizationUsed(await reader.settleAuths(txHash), entries, Number(position));
    if (used === null || used !== packedAuthorization(record)) {
      inTx = false;
      entryDetail += used !== null ? "; the chain paid it under another authorization than the record's"
        : "; the chain paid it under no authorization";
    }
  }
  v.add("entry in the settle transaction", inTx, entryDetail);
  const digest = chunkDigest(ledger, firstSeq, entries);
  // as the contract held it at the end of the settle block, the one this transaction
  // settled in: a later block of another fork may hold another chunk there
  const stored = await reader.chunkDigest(ledger, firstSeq, pinned);
  v.add("settled once", digest === stored && stored === r.digest && r.count === BigInt(entries.length),
    `the contract holds this chunk for sequence numbers ${firstSeq}..${firstSeq + BigInt(entries.length) - 1n} of ledger ${ledger}: no other chunk can hold them`);
  const [status, block, settled, unpaid] = await reader.outcome(txHash);
  if (status === 1n && settled && block !== r.blockNumber) {
    // the receipt's block was reorganised away and the transaction included again in
    // another: settled all the same, but not where the receipt says
    v.add("settle transaction", null, `succeeded in block ${block}, not in block`
      + ` ${r.blockNumber} the receipt names: the chain reorganised that block`
      + " since the receipt was written (a receipt written now names the block)");
  } else {
    v.add("settle transaction", status === 1n && settled && block === r.blockNumber, `succeeded in block ${block}`);
  }
  await checkDepth(v, r, reader, block, confirmations);
  const seq = record.seq;
  const paidOnChain = !unpaid.has(seq);
  if (paidOnChain) { // an unpaid entry credited no one
    await checkHost(v, record, reader, unpackEntry(r.packed).chain_station, block);
  }
  const amount = unpackEntry(r.packed).price_minor;
  // the base units a billing unit is worth: the contract's (its code is Settlement's, so its
  // unit() is the one it took at its deploy), never the record's word: an operator writes
  // the record before it is settled, and every hash then matches
  const unit = await reader.unit(block);
  const detail = paidOnChain
    ? `${amount} x ${unit} base units were taken from the driver's escrow (driver ${str(record.driver_index)}) and credited to the host`
    : `not paid on chain: ${UNPAID_REASONS[unpaid.get(seq)] ?? unpaid.get(seq)}`;
  const units = record.unit === unit;
  // the receipt's own payment lines must say what the chain did, to the unit, and why an
  // entry went unpaid (the chain's reason code; none for a paid one)
  const reason = paidOnChain ? null : unpaid.get(seq);
  const stated = r.amount === amount && r.unit === unit && r.reason === reason;
  const misread = await misreadDecimals(record, reader, unit, block);
  v.add("payment", paidOnChain === r.paid && eq(amount, record.price_minor) && stated && units
    && misread === null,
    detail + (paidOnChain === r.paid ? "" : `; the receipt says ${r.paid ? "paid" : "unpaid"}`)
    + (units ? "" : `; the record says a billing unit is ${repr(record.unit)} base units, the contract ${unit}`)
    + (stated ? "" : `; the receipt says ${r.amount} x ${r.unit}`
      + (r.reason === reason ? "" : `, unpaid reason ${str(r.reason)}`))
    + (misread === null ? "" : `; ${misread}`));
}

/** settlement/receipts.py _misread_decimals: why the record's decimals are not its
 * contract's billing unit's (null: they are, or the chain cannot tell). Escrows in an ERC-20
 * token: a billing unit is unit base units of a token with decimals(), so its decimals are
 * the token's less the unit's power of ten. The native coin's decimals are no currency's,
 * nor are a token's whose billing unit is no power of ten of it (a token of another
 * currency at the rate deployed). */
async function misreadDecimals(record, reader, unit, block) {
  const power = BigInt(unit.toString().length - 1);
  if (unit !== 10n ** power) return null;
  const token = await reader.token(block);
  const tokenDecimals = token === null ? null : await reader.tokenDecimals(token, block);
  if (tokenDecimals === null) return null;
  const ledger = power <= tokenDecimals ? tokenDecimals - power : null;
  if (ledger !== null && eq(record.decimals, ledger)) return null;
  return `the record's amounts have ${repr(record.decimals)} decimals, the contract's billing unit ${ledger === null ? "none" : ledger} (${unit} base units of a token with ${tokenDecimals} decimals)`;
}

/** settlement/receipts.py _check_host: who was paid. The contract credits an entry to the
 * host that registered its station index (station(index) at the settle block), never to the
 * record's host, which it does not see: the two must be the same. Asked of an entry the
 * contract paid (an unpaid one credited no one). */
async function checkHost(v, record, reader, station, block) {
  const credited = await reader.stationHost(station, block);
  const named = truthy(record.host) ? str(record.host) : "";
  const ok = /^0x[0-9a-fA-F]{40}$/.test(named) && named.toLowerCase() === credited.toLowerCase();
  v.add("host", ok, ok
    ? `the contract credits station ${station}'s sessions to ${credited}, the host the record names`
    : `the contract credits station ${station}'s sessions to ${credited}, not to ${named || "no host"}, the host the record names: another account was paid`);
}

/** settlement/receipts.py _authorization_used: the packed authorization the contract
 * checked a signed entry against (null: there was none left). */
function authorizationUsed(auths, entries, position) {
  const at = entries.slice(0, position).filter(([, packed]) => unpackEntry(packed).kind === SIGNED).length;
  return at < auths.length ? auths[at] : null;
}

/** settlement/receipts.py _packed_authorization: the record's authorization as the contract
 * takes it (null: not one). */
function packedAuthorization(record) {
  let auth;
  try {
    auth = authorizationOf(record.authorization ?? null);
  } catch {
    return null;
  }
  let word = 0n;
  let shift = 0n;
  for (const [name, bits] of WIDTHS) {
    word |= auth[name] << shift;
    shift += bits;
  }
  return word;
}

/** settlement/receipts.py _check_limit: a card session billed at its limit: the limit is
 * at most the driver's limit per session as the contract held it when the session was
 * settled (an app session's is the signed maximum amount: the authorization check). */
async function checkLimit(v, r, reader, limit, block) {
  const driver = truthy(r.record.driver) ? str(r.record.driver) : "";
  const agreed = /^0x[0-9a-fA-F]{40}$/.test(driver) ? await reader.maxPerSession(driver, block) : 0n;
  v.add("session limit", limit <= agreed, limit <= agreed
    ? `the session's limit ${limit} is within the ${agreed} a session the driver accepted when it was settled (block ${block})`
    : `the session's limit ${limit} is above the ${agreed} a session the driver accepted when it was settled (block ${block}): a limit the driver never agreed to`);
}

/** settlement/receipts.py _check_origin: the transaction the receipt names created the
 * contract with Settlement's own creation code, so its state was written by Settlement's
 * code only. False when it did not (nothing else is asked of that address). */
async function checkOrigin(v, r, reader, contract) {
  const name = "contract origin";
  if (r.deployTx === null) {
    if (!contract || contract.toLowerCase() !== r.contract.toLowerCase()) {
      v.add(name, null, `the receipt names no transaction that created ${r.contract}: whether its`
        + " state was written by Settlement's code only was not checked (name the contract you"
        + " trust: csms verify --contract)");
    }
    return true;
  }
  const tx = `0x${r.deployTx}`;
  const [to, input, created, status, block] = await reader.creation(tx);
  if (to !== null || status !== 1n || created === null || created.toLowerCase() !== r.contract.toLowerCase()) {
    return v.add(name, false, `${tx} did not create ${r.contract}`);
  }
  const genuine = isSettlementCreation(input, CODE);
  if (genuine) reader.firstBlock = block; // the contract has no logs before the block that created it
  return v.add(name, genuine, genuine
    ? `${tx} created ${r.contract} with the creation code of voltledger's Settlement contract and its constructor's arguments`
    : `${tx} created ${r.contract} with other creation code than voltledger's Settlement contract's: its escrows and cards may be anyone's`);
}

/** settlement/receipts.py _check_card: a card session charged to the driver is of a card
 * the driver linked: the commitment is linked on chain AND is the one of the record's tag. */
async function checkCard(v, r, reader, driver, index, cards, block) {
  const { record } = r;
  const tag = truthy(record.id_tag) ? str(record.id_tag) : "";
  const name = "the driver's card";
  let commitment;
  try {
    commitment = hex32(record.card_commitment ?? null, "card_commitment");
  } catch {
    v.add(name, false, `a card session of ${tag || "no tag"} charged to driver ${index}`
      + " carries no card commitment: nothing shows the card is the driver's");
    return;
  }
  if (!(await reader.cardLinked(index, commitment, driver, block))) {
    v.add(name, false, `the card's commitment was not linked to driver ${index} on chain`
      + ` when the session was settled (block ${block})`);
    return;
  }
  const salts = cards.map(([, salt]) => ["you gave", salt]);
  if (r.cardSalt !== null) salts.push(["the receipt gives", r.cardSalt]);
  for (const [source, salt] of salts) {
    if (cardCommitment(driver, tag, salt) === commitment) {
      v.add(name, true, `${tag} is the driver's card: its commitment (the salt ${source}) is the one the driver linked on chain`);
      return;
    }
  }
  if (salts.length) {
    const yours = [...new Set(cards.map(([t]) => t))].sort().join(", ") || "none";
    const sources = [...new Set(salts.map(([s]) => s))].sort().join(" or ");
    v.add(name, false, `the commitment is not ${tag}'s with the salt ${sources} (your cards: ${yours}): another card, charged to this driver`);
    return;
  }
  v.add(name, null, `a card the driver linked on chain, but whether it is ${tag}`
    + " was not checked: give the card's salt (csms verify --card TAG:SALT)");
}
