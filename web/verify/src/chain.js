// What the verifier reads from a chain through any JSON-RPC node (no key, no compiler):
// the settle transaction's own input and events, and the contract's state. The same
// calls as settlement/chain.py SettlementReader makes through web3.py.

import { keccak_256 } from "@noble/hashes/sha3.js";

import { fromHex, hex } from "./ocmf.js";

export class ChainError extends Error {
  /** code: the node's JSON-RPC error code (undefined: not a node's error). */
  constructor(message, code = undefined) {
    super(message);
    this.code = code;
  }
}

const utf8 = (text) => new TextEncoder().encode(text);
export const keccak = (bytes) => keccak_256(bytes);
const selector = (signature) => hex(keccak(utf8(signature)).slice(0, 4));
export const topic = (signature) => `0x${hex(keccak(utf8(signature)))}`;

const SELECTORS = {
  [selector("settle(uint256,uint256,(bytes32,uint256)[],(uint256,bytes32,bytes32)[])")]: "settle",
  [selector("chunk_digest(uint256,uint256)")]: "chunk_digest",
  [selector("driver_index(address)")]: "driver_index",
  [selector("cards(uint256,bytes32)")]: "cards",
  [selector("driver_state(address)")]: "driver_state",
  [selector("unit()")]: "unit",
  [selector("station(uint256)")]: "station",
};
const SETTLED = topic("Settled(uint256,uint256,uint256,bytes32,uint256,uint256)");
const UNPAID = topic("Unpaid(uint256,uint256,uint256)");
// the events that tell a driver's index and cards at a block a node keeps no state of
const DRIVER_REGISTERED = topic("DriverRegistered(address,uint256)");
const CARD_LINKED = topic("CardLinked(address,bytes32,bool)");
const TERMS_SET = topic("TermsSet(address,uint256,uint256)");

// The widest eth_getLogs window asked for first (settlement/chain.py LOG_WINDOW).
export const LOG_WINDOW = 10000n;
// How nodes and providers refuse an eth_getLogs for the width of its block range or the
// number of its results, read in the error's message and data: the list, and which node
// says what, is settlement/chain.py LOG_RANGE_REFUSED's. Any error of code -32005
// (EIP-1474 "limit exceeded") too, but a rate limit (RATE_LIMITED, settlement/chain.py's:
// a narrower query would be refused the same); anything else is not asked again.
const LOG_RANGE_REFUSED = new RegExp(
  "more than [\\d,]+ results|max(imum)? (rpc )?(block )?range|range limit"
  + "|exceeds? (the |server )?limit|range (is )?too (large|wide|big|high)"
  + "|narrow your filter|max(imum)? results|response size|limited to a [\\d,]+"
  + "|too many (logs|results|blocks)", "i");
const LIMIT_EXCEEDED = -32005;
const RATE_LIMITED = new RegExp(
  "rate.?limit|request rate|too many requests|request count|requests per"
  + "|compute units|credits|quota|capacity", "i");

/** Whether a node's error to eth_getLogs refuses the width of the query (its block range
 * or its number of results): a narrower one may be served. A rate limit is not: a
 * narrower query would be refused the same. */
export function logRangeRefused(code, message) {
  if (RATE_LIMITED.test(message)) return false;
  return code === LIMIT_EXCEEDED || LOG_RANGE_REFUSED.test(message);
}

/** A node's JSON-RPC error object as a ChainError: its message with its data (where some
 * providers say why), and its code. */
function rpcError(method, error) {
  let message = typeof error.message === "string" ? error.message : JSON.stringify(error);
  if (error.data !== undefined && error.data !== null) message += ` ${JSON.stringify(error.data)}`;
  return new ChainError(`${method}: ${message}`, error.code);
}

const mask = (bits) => (1n << bits) - 1n;
/** The driver's limit per session of packed terms (settlement/chain.py Terms.unpack). */
const perSession = (terms) => (terms >> 72n) & mask(32n);

/** Each field of two packed terms the higher (Settlement.vy set_terms). */
function higherTerms(a, b) {
  let out = (a | b) & (1n << 136n); // cards allowed
  for (const [shift, bits] of [[0n, 24n], [24n, 24n], [48n, 24n], [72n, 32n], [104n, 32n]]) {
    const x = (a >> shift) & mask(bits);
    const y = (b >> shift) & mask(bits);
    out |= (x > y ? x : y) << shift;
  }
  return out;
}

export const word = (n) => BigInt(n).toString(16).padStart(64, "0");
const ADDRESS = /^(0x)?[0-9a-fA-F]{40}$/;

/** Web3.to_checksum_address: raises on what is not an address. */
export function checksumAddress(address) {
  if (typeof address !== "string" || !ADDRESS.test(address)) {
    throw new ChainError(`Unknown format '${address}', attempted to normalize to an address`);
  }
  const lower = address.replace(/^0x/, "").toLowerCase();
  const digest = hex(keccak(utf8(lower)));
  return `0x${Array.from(lower, (c, i) => (parseInt(digest[i], 16) >= 8 ? c.toUpperCase() : c)).join("")}`;
}

export class Rpc {
  constructor(url, timeoutMs = 10000) {
    this.url = url;
    this.timeoutMs = timeoutMs;
    this.id = 0;
  }

  async call(method, params) {
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), this.timeoutMs);
    let response;
    try {
      response = await fetch(this.url, {
        method: "POST", headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ jsonrpc: "2.0", id: ++this.id, method, params }),
        signal: controller.signal,
      });
    } catch (exc) {
      throw new ChainError(`cannot reach ${this.url}: ${exc.message}`);
    } finally {
      clearTimeout(timer);
    }
    if (!response.ok) {
      // a JSON-RPC error under an HTTP error status (QuickNode's 413 for too wide a range)
      const error = await response.json().then((b) => b?.error, () => null);
      if (error && typeof error === "object") throw rpcError(method, error);
      throw new ChainError(`${this.url} answered HTTP ${response.status}`);
    }
    const body = await response.json();
    if (body.error) throw rpcError(method, body.error);
    return body.result;
  }
}

function words(data) {
  const raw = data.replace(/^0x/, "");
  return (i) => {
    const w = raw.slice(64 * i, 64 * i + 64);
    if (w.length !== 64) throw new ChainError("the call data is too short");
    return BigInt(`0x${w}`);
  };
}

export class SettlementReader {
  /** logWindow: the widest block range of one eth_getLogs (BigInt; null: LOG_WINDOW). */
  constructor(rpc, contract, logWindow = null) {
    this.rpc = rpc;
    this.address = checksumAddress(contract);
    this.logWindow = logWindow ?? LOG_WINDOW;
    if (this.logWindow < 1n) throw new Error("the log window is at least one block");
    // the contract's first block: no log of it is older (its creation's, once checked)
    this.firstBlock = 0n;
  }

  async chainId() {
    return BigInt(await this.rpc.call("eth_chainId", []));
  }

  /** The node's latest block: how deep the settle block is. */
  async blockNumber() {
    return BigInt(await this.rpc.call("eth_blockNumber", []));
  }

  /** block: a block number (BigInt), or null for the latest. */
  async ethCall(data, block = null, to = this.address) {
    const at = block === null ? "latest" : `0x${block.toString(16)}`;
    return this.rpc.call("eth_call", [{ to, data: `0x${data}` }, at]);
  }

  /** [called address: null for a contract creation, input hex without 0x, the address
   * of the contract it created (null: none), status, block number] of a transaction. */
  async creation(txHash) {
    const tx = await this.rpc.call("eth_getTransactionByHash", [txHash]);
    if (tx === null) throw new ChainError(`Transaction with hash: '${txHash}' not found.`);
    const receipt = await this.rpc.call("eth_getTransactionReceipt", [txHash]);
    if (receipt === null) throw new ChainError(`Transaction with hash: '${txHash}' not found.`);
    return [tx.to ? String(tx.to) : null, String(tx.input ?? tx.data ?? "0x").replace(/^0x/, "").toLowerCase(),
      receipt.contractAddress ? String(receipt.contractAddress) : null, BigInt(receipt.status),
      BigInt(receipt.blockNumber)];
  }

  /** The driver's logs of one event from the contract's first block to a block, in order:
   * read in windows of at most logWindow blocks, a window the node refuses for its width
   * asked again in halves (and the windows after it no wider). Every window is read or
   * this throws: a window left out could hide the event that decides the verdict (a card
   * unlinked, terms lowered). */
  async logs(eventTopic, driver, block) {
    const topics = [eventTopic, `0x${checksumAddress(driver).slice(2).toLowerCase().padStart(64, "0")}`];
    const out = [];
    let start = this.firstBlock;
    while (start <= block) {
      const end = start + this.logWindow - 1n < block ? start + this.logWindow - 1n : block;
      let logs;
      try {
        logs = await this.rpc.call("eth_getLogs", [{
          address: this.address, fromBlock: `0x${start.toString(16)}`, toBlock: `0x${end.toString(16)}`,
          topics,
        }]);
      } catch (exc) {
        if (!(exc instanceof ChainError) || !logRangeRefused(exc.code, exc.message)) throw exc;
        if (end === start) {
          throw new ChainError(`the node refuses the contract's logs of even one block (${start}): `
            + exc.message.replace(/^eth_getLogs: /, ""));
        }
        // the next windows, of this query and the reader's next, no wider
        this.logWindow = (end - start + 1n) / 2n;
        continue;
      }
      if (!Array.isArray(logs)) throw new ChainError("the node answered no list of logs");
      for (const log of logs) {
        const at = BigInt(log.blockNumber);
        if (at < start || at > end || String(log.address).toLowerCase() !== this.address.toLowerCase()
          || log.removed === true
          || (log.topics ?? []).slice(0, 2).map((t) => String(t).toLowerCase()).join() !== topics.join()) {
          throw new ChainError("the node answered a log the query did not ask for");
        }
      }
      out.push(...logs);
      start = end + 1n;
    }
    return out.sort((a, b) => {
      const ab = BigInt(a.blockNumber) - BigInt(b.blockNumber);
      return Number(ab !== 0n ? ab : BigInt(a.logIndex) - BigInt(b.logIndex));
    });
  }

  /** [called contract, ledger, first seq, entries [[record hash hex, packed]]] */
  async settleInput(txHash) {
    const tx = await this.rpc.call("eth_getTransactionByHash", [txHash]);
    if (tx === null) throw new ChainError(`Transaction with hash: '${txHash}' not found.`);
    const input = String(tx.input ?? tx.data ?? "0x").replace(/^0x/, "");
    const name = SELECTORS[input.slice(0, 8)];
    if (name === undefined) throw new ChainError("Could not find any function with matching selector");
    if (name !== "settle") throw new ChainError(`the transaction calls ${name}, not settle`);
    const w = words(input.slice(8));
    const ledger = w(0);
    const firstSeq = w(1);
    const offset = Number(w(2)) / 32;
    if (!Number.isInteger(offset)) throw new ChainError("bad offset in the call data");
    const count = Number(w(offset));
    const entries = [];
    for (let i = 0; i < count; i++) {
      entries.push([w(offset + 1 + 2 * i).toString(16).padStart(64, "0"), w(offset + 2 + 2 * i)]);
    }
    return [String(tx.to), ledger, firstSeq, entries];
  }

  /** The packed fields of the authorizations a settle transaction carries, in order: the
   * contract checks its n-th signed entry against the n-th (Settlement.vy settle), the
   * driver's signature over them with the entry's station. */
  async settleAuths(txHash) {
    const tx = await this.rpc.call("eth_getTransactionByHash", [txHash]);
    if (tx === null) throw new ChainError(`Transaction with hash: '${txHash}' not found.`);
    const input = String(tx.input ?? tx.data ?? "0x").replace(/^0x/, "");
    if (SELECTORS[input.slice(0, 8)] !== "settle") throw new ChainError("the transaction does not call settle");
    const w = words(input.slice(8));
    const offset = Number(w(3)) / 32;
    if (!Number.isInteger(offset)) throw new ChainError("bad offset in the call data");
    const count = Number(w(offset));
    const auths = [];
    for (let i = 0; i < count; i++) auths.push(w(offset + 1 + 3 * i));
    return auths;
  }

  /** [status, block number, whether it settled a chunk, Map unpaid seq -> reason] */
  async outcome(txHash) {
    const receipt = await this.rpc.call("eth_getTransactionReceipt", [txHash]);
    if (receipt === null) throw new ChainError(`Transaction with hash: '${txHash}' not found.`);
    let settled = false;
    const unpaid = new Map();
    for (const log of receipt.logs ?? []) {
      const topics = log.topics ?? [];
      const data = String(log.data ?? "0x").replace(/^0x/, "");
      if (topics[0] === SETTLED && topics.length === 3 && data.length >= 4 * 64) settled = true;
      if (topics[0] === UNPAID && topics.length === 3 && data.length >= 64) {
        unpaid.set(BigInt(topics[2]), BigInt(`0x${data.slice(0, 64)}`));
      }
    }
    return [BigInt(receipt.status), BigInt(receipt.blockNumber), settled, unpaid];
  }

  /** settlement/chain.py SettlementReader.settle_block: [number, hash] (BigInt, hex without
   * 0x) of the block a transaction is in; null when it is in none of the node's chain (not
   * mined yet, or its block was reorganised away: back in the node's pool, or dropped). */
  async settleBlock(txHash) {
    const receipt = await this.rpc.call("eth_getTransactionReceipt", [txHash]);
    if (receipt === null || receipt === undefined || receipt.blockNumber == null
      || receipt.blockHash == null) return null;
    return [BigInt(receipt.blockNumber), String(receipt.blockHash).replace(/^0x/, "").toLowerCase()];
  }

  /** The digest the contract holds for the chunk of ledger from firstSeq at the end of
   * block (zero: none): written once, by the settle transaction that took those sequence
   * numbers (Settlement.vy settle), so where the node keeps no state of that block, as now. */
  async chunkDigest(ledger, firstSeq, block) {
    const out = await this.onceWritten(`${selector("chunk_digest(uint256,uint256)")}${word(ledger)}${word(firstSeq)}`, block);
    return words(out.replace(/^0x/, ""))(0).toString(16).padStart(64, "0");
  }

  /** The driver's index as the contract held it at the end of block (null: now). */
  async driverIndex(driver, block = null) {
    const address = checksumAddress(driver).slice(2).toLowerCase();
    try {
      const out = await this.ethCall(`${selector("driver_index(address)")}${address.padStart(64, "0")}`, block);
      return words(out.replace(/^0x/, ""))(0);
    } catch (exc) {
      if (block === null) throw exc; // else a node that keeps no state of that block: the events
    }
    const logs = await this.logs(DRIVER_REGISTERED, driver, block);
    return logs.length ? words(String(logs[0].data).replace(/^0x/, ""))(0) : 0n;
  }

  /** The token base units a billing unit is worth (Settlement.vy unit) at the end of block:
   * an immutable of the contract's code, so where the node keeps no state of that block,
   * the same as now. */
  async unit(block) {
    const out = await this.onceWritten(selector("unit()"), block);
    return words(out.replace(/^0x/, ""))(0);
  }

  /** settlement/chain.py _once_written: a call of a value the contract writes once (an
   * immutable, a station's host) at the end of block, or as now where the node keeps no
   * state of that block. */
  async onceWritten(data, block, to = this.address) {
    try {
      return await this.ethCall(data, block, to);
    } catch {
      return await this.ethCall(data, null, to); // a node that keeps no state of that block
    }
  }

  /** The ERC-20 token the escrows hold (Settlement.vy token, an immutable), checksummed;
   * null for the native coin. */
  async token(block) {
    const out = await this.onceWritten(selector("token()"), block);
    const token = words(out.replace(/^0x/, ""))(0);
    if (token >> 160n) throw new ChainError("not an address");
    return token === 0n ? null : checksumAddress(token.toString(16).padStart(40, "0"));
  }

  /** The token's decimals() at the end of block (null: it answers none). */
  async tokenDecimals(token, block) {
    try {
      const out = await this.onceWritten(selector("decimals()"), block, token);
      return words(out.replace(/^0x/, ""))(0);
    } catch {
      return null; // a token without the optional decimals()
    }
  }

  /** The host a station index pays (Settlement.vy station: who registered it) at the end
   * of block, checksummed; the zero address for an index not registered. Written once, at
   * the index's registration, so where the node keeps no state of that block, the same as
   * now (an index registered after the block was unknown then: the contract paid none of
   * its entries). */
  async stationHost(index, block) {
    const out = await this.onceWritten(`${selector("station(uint256)")}${word(index)}`, block);
    const host = words(out.replace(/^0x/, ""))(0);
    if (host >> 160n) throw new ChainError("not an address");
    return checksumAddress(host.toString(16).padStart(40, "0"));
  }

  /** The driver's limit per session in force at the end of block (the terms the contract
   * checks a card session against; 0: not a driver). */
  async maxPerSession(driver, block) {
    const address = checksumAddress(driver).slice(2).toLowerCase();
    try {
      const out = await this.ethCall(`${selector("driver_state(address)")}${address.padStart(64, "0")}`, block);
      return perSession(words(out.replace(/^0x/, ""))(3));
    } catch {
      // a node that keeps no state of that block: the contract's events
    }
    return perSession(await this.termsFromEvents(driver, block));
  }

  /** The terms in force at the end of block (packed), as Settlement.vy set_terms and
   * _terms_now make them from the driver's TermsSet events: what raises a field applies
   * at once, what lowers it from its effective_at. */
  async termsFromEvents(driver, block) {
    let current = 0n;
    let pending = null;
    let pendingFrom = 0n;
    const times = new Map();
    const timeOf = async (number) => {
      if (!times.has(number)) {
        const b = await this.rpc.call("eth_getBlockByNumber", [`0x${number.toString(16)}`, false]);
        if (b === null) throw new ChainError(`no block ${number}`);
        times.set(number, BigInt(b.timestamp));
      }
      return times.get(number);
    };
    for (const log of await this.logs(TERMS_SET, driver, block)) {
      const w = words(String(log.data).replace(/^0x/, ""));
      const [next, effective] = [w(0), w(1)];
      const at = await timeOf(BigInt(log.blockNumber));
      const old = pending !== null && at >= pendingFrom ? pending : current;
      const now = higherTerms(next, old);
      if (now === next) {
        current = next;
        pending = null;
      } else {
        [current, pending, pendingFrom] = [now, next, effective];
      }
    }
    return pending !== null && (await timeOf(block)) >= pendingFrom ? pending : current;
  }

  /** The code deployed at the contract's address, hex without 0x ("": none). */
  async code() {
    return String(await this.rpc.call("eth_getCode", [this.address, "latest"])).replace(/^0x/, "").toLowerCase();
  }

  /** Whether the card's commitment was linked to the driver at the end of block (null: now). */
  async cardLinked(driverIndex, commitmentHex, driver = null, block = null) {
    try {
      const out = await this.ethCall(`${selector("cards(uint256,bytes32)")}${word(driverIndex)}${commitmentHex}`, block);
      const value = words(out.replace(/^0x/, ""))(0);
      if (value > 1n) throw new ChainError("not a boolean");
      return value === 1n;
    } catch (exc) {
      if (block === null || driver === null) throw exc;
    }
    // a node that keeps no state of that block: the driver's last CardLinked of the
    // commitment up to it (the contract's own events: its code and origin are checked)
    let linked = false;
    for (const log of await this.logs(CARD_LINKED, driver, block)) {
      const data = String(log.data).replace(/^0x/, "").toLowerCase();
      if (data.slice(0, 64) === commitmentHex) linked = BigInt(`0x${data.slice(64, 128) || "0"}`) === 1n;
    }
    return linked;
  }
}

/** settlement/contract.py _releases: this release's fingerprint, then the earlier ones
 * whose receipts it verifies (contracts deployed before cannot change). */
const releases = (fingerprint) => [fingerprint, ...(fingerprint.earlier ?? [])];

/** settlement/contract.py is_settlement_code: this project's Settlement runtime code
 * exactly (keccak256 of it, from Settlement.code.json: this release's or an earlier one),
 * then its immutables. */
export function isSettlementCode(codeHex, fingerprint) {
  return releases(fingerprint).some((fp) => codeHex.length === 2 * (fp.runtime_size + fp.immutables_size)
    && `0x${hex(keccak(fromHex(codeHex.slice(0, 2 * fp.runtime_size))))}` === fp.runtime_keccak);
}

/** settlement/contract.py is_settlement_creation: a creation transaction's input is this
 * project's Settlement creation code exactly (keccak256 of it, from Settlement.code.json:
 * this release's or an earlier one), then the constructor's arguments (32 bytes each). */
export function isSettlementCreation(inputHex, fingerprint) {
  return releases(fingerprint).some((fp) => inputHex.length === 2 * (fp.creation_size + fp.constructor_args_size)
    && `0x${hex(keccak(fromHex(inputHex.slice(0, 2 * fp.creation_size))))}` === fp.creation_keccak);
}

/** settlement/records.py card_commitment: keccak256(abi.encode(address, string, bytes32)). */
export function cardCommitment(driver, tag, saltHex) {
  const text = utf8(tag);
  const padded = Math.ceil(text.length / 32) * 32;
  const data = new Uint8Array(32 * 4 + padded);
  data.set(fromHex(checksumAddress(driver).slice(2).toLowerCase().padStart(64, "0")), 0);
  data.set(fromHex(word(96)), 32);
  data.set(fromHex(saltHex), 64);
  data.set(fromHex(word(text.length)), 96);
  data.set(text, 128);
  return hex(keccak(data));
}

/** The chunk's commitment as the contract computes it (settlement/records.py chunk_digest). */
export function chunkDigest(ledger, firstSeq, entries) {
  let digest = keccak(fromHex(word(ledger) + word(firstSeq)));
  for (const [recordHash, packed] of entries) {
    digest = keccak(Uint8Array.from([...digest, ...fromHex(recordHash), ...fromHex(word(packed))]));
  }
  return hex(digest);
}
