// The driver's receipt page: read a receipt (dropped, chosen or pasted), check it with the
// verifier and show the verdict, each check in plain words, the session and its meter
// readings. Everything runs in this page; the only request it makes is to the RPC URL
// the driver gives.

import { dumps, PyFloat, str, truthy } from "./pyjson.js";
import { confirmationsAsked, readReceipt, ReceiptError, sameNode, verifyReceipt } from "./verifier.js";
import { fromIso } from "./isotime.js";

const $ = (id) => document.getElementById(id);
const ADDRESS = /^0x[0-9a-fA-F]{40}$/;

// What each check proves, in the driver's words.
const MEANING = {
  "samples hash": "The meter readings in this receipt are exactly the ones the operator committed to when it settled the session.",
  record: "The receipt's record could be read at all.",
  "record hash": "The session record (station, times, readings, price, tariff, driver) is the one whose fingerprint went on chain: not a single character changed.",
  entry: "The figures the contract checked and paid (station, driver, energy, duration, amount) are the ones of this record.",
  "energy = stop - start": "The billed energy is the meter's stop reading minus its start reading.",
  duration: "The billed duration is the time between the session's start and stop.",
  price: "The price follows from the tariff written in the record: session fee + energy x price per kWh + minutes x price per minute; or, when that is more than the session's limit (the most your escrow pays for it), it is that limit.",
  "session limit": "The session's limit the card session was billed at is one you accepted: at most your limit per session on chain when it was settled.",
  authorization: "You signed this app session yourself (EIP-712), for this station, for at most this amount.",
  "signed readings = billed readings": "The start and stop readings you were billed are the ones the calibrated meter signed.",
  "one meter key": "The record names no meter key, so each signed reading was checked with the key it carries itself, which anyone can make: all of them carry one key. Whether it is your charger's meter shows only by comparing it with the key on the charger's label.",
  "meter status": "The meter itself marks its signed begin and end readings as good: no error status, no energy error.",
  "signed readings belong to this session": "The signed readings were taken during this session, begin before end, by one meter, for your card: not borrowed from another session.",
  "on chain": "The record was compared with the chain.",
  "chain node": "Whose node answered: every answer from the chain is that node's word. The node the receipt names is the operator's own, which can answer whatever makes its receipts pass; only a node you choose (your own, or a public one) checks the operator.",
  "chain id": "The node you asked is on the chain the receipt names.",
  "contract code": "The contract in the receipt runs voltledger's own settlement code, byte for byte: not a look-alike that answers whatever it likes.",
  "contract origin": "The contract was created by voltledger's own creation code (its creation transaction on chain): nobody wrote escrows, cards or chunks into it on the side.",
  "the real contract": "The contract in the receipt is the one you trust (your escrow's contract), not a look-alike anyone could deploy.",
  "the driver's escrow": "Your escrow lives in this contract, under the driver named in the record.",
  "the driver's card": "The card this session was charged for is one you had linked to your escrow on chain yourself when it was settled (its commitment, recomputed from the tag and its salt).",
  "entry in the settle transaction": "The settle transaction on chain carries this session's entry, at its place in the chunk.",
  "settled once": "The contract stored this chunk for these sequence numbers: no other chunk can bill this session again.",
  "settle transaction": "The settle transaction succeeded, in the block the receipt names.",
  confirmations: "How deep the settle block is: until enough blocks are on top of it, the chain can still drop it (a reorganisation), and the session's settlement with it.",
  payment: "The amount was (or was not) taken from your escrow on chain, as the receipt says.",
};
const meaning = (name) => (name.startsWith("meter signature ")
  ? "This signed meter reading verifies with the meter's public key (OCMF or Alfen's format): it is what the calibrated meter measured."
  : MEANING[name] ?? "");

const VERDICT_WORDS = {
  VALID: "Every check passed: this bill is what was settled and paid on chain.",
  INVALID: "At least one check failed: this receipt does not match what it claims. Do not accept this bill as it is.",
  UNVERIFIED: "Nothing failed, but not everything could be checked (see the checks marked ??): the verdict is open.",
};

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else if (k.startsWith("data-")) node.setAttribute(k, v);
    else node[k] = v;
  }
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return node;
}

const plain = (v) => (v === null || v === undefined ? "" : v instanceof PyFloat ? str(v)
  : typeof v === "object" ? dumps(v) : String(v));

function money(minor, decimals, currency) {
  try {
    const d = Number(decimals);
    return `${(Number(minor) / 10 ** d).toFixed(d)} ${plain(currency)}`;
  } catch {
    return `${plain(minor)} (minor units)`;
  }
}

function session(receipt) {
  const r = receipt.record ?? {};
  const t = r.tariff ?? {};
  const rows = [
    ["Station", `${plain(r.station_id)} (connector ${plain(r.connector_id)}, OCPP ${plain(r.ocpp_version).replace("ocpp", "")})`],
    ["Started", plain(r.started_at)],
    ["Stopped", `${plain(r.stopped_at)} (${plain(r.duration_s)} s)`],
    ["Meter", `${plain(r.meter_start_wh)} Wh -> ${plain(r.meter_stop_wh)} Wh`],
    ["Energy", `${(Number(plain(r.energy_wh)) / 1000).toFixed(3)} kWh (${plain(r.energy_wh)} Wh)`],
    ["Price", money(plain(r.price_minor), plain(r.decimals), r.currency)
      + (r.limit_minor === undefined || r.limit_minor === null ? "" : " (the session's limit: the most your escrow pays for it)")],
    ["Tariff", `${plain(t.per_kwh)} per kWh, ${plain(t.per_minute)} per minute, ${plain(t.session_fee)} per session (version ${plain(t.version)})`],
    ["Card", plain(r.id_tag)],
    ["Driver", r.driver ? `${plain(r.driver)} (driver ${plain(r.driver_index)})` : "none: no escrow was charged"],
    // as the verifier reads the receipt's word (Python's truth: 0.0, [] and {} are no), which
    // its "payment" check holds to the chain's
    ["Paid on chain", truthy(receipt.payment?.paid ?? null) ? "yes"
      : `no${truthy(receipt.payment?.reason ?? null) ? ` (${plain(receipt.payment.reason)})` : ""}`],
    ["Settled", `chain ${plain(receipt.chain?.chain_id)}, contract ${plain(receipt.chain?.contract)}, block ${plain(receipt.chain?.block_number)}`],
  ];
  return el("table", { class: "session" }, ...rows.map(([k, v]) => el("tr", {}, el("th", {}, k), el("td", {}, v))));
}

const SVG = "http://www.w3.org/2000/svg";
function svg(tag, attrs, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

const UNIT = { Wh: 1, kWh: 1000 };

/** Energy register readings over time: [{at (ms), wh, signed}] */
function readings(receipt) {
  const out = [];
  for (const s of receipt.samples ?? []) {
    const measurand = plain(s.measurand) || "Energy.Active.Import.Register";
    if (measurand !== "Energy.Active.Import.Register" || (s.phase ?? null) !== null) continue;
    const value = Number(plain(s.value));
    const factor = UNIT[plain(s.unit) || "Wh"];
    if (!Number.isFinite(value) || factor === undefined || plain(s.value) === "") continue;
    let at;
    try {
      at = fromIso(plain(s.timestamp)).micros / 1000;
    } catch {
      continue;
    }
    const multiplier = s.multiplier === null || s.multiplier === undefined ? 0 : Number(plain(s.multiplier));
    if (s.signed) continue; // its reading is the meter's signed one, drawn from the verifier
    out.push({ at, wh: value * factor * 10 ** multiplier, signed: false });
  }
  return out.sort((a, b) => a.at - b.at);
}

function chart(receipt, signed) {
  const points = [...readings(receipt), ...signed.filter((r) => r.time !== null)
    .map((r) => ({ at: r.time.micros / 1000, wh: Number(r.wh.toString()), signed: true }))]
    .sort((a, b) => a.at - b.at);
  const box = el("figure", { class: "chart" });
  if (points.length < 1) {
    box.append(el("figcaption", {}, "No energy register readings in the samples."));
    return box;
  }
  const W = 640;
  const H = 260;
  const pad = { l: 96, r: 16, t: 16, b: 40 };
  const t0 = points[0].at;
  const t1 = Math.max(points[points.length - 1].at, t0 + 1);
  const lo = Math.min(...points.map((p) => p.wh));
  const hi = Math.max(Math.max(...points.map((p) => p.wh)), lo + 1);
  const x = (t) => pad.l + ((t - t0) / (t1 - t0)) * (W - pad.l - pad.r);
  const y = (wh) => H - pad.b - ((wh - lo) / (hi - lo)) * (H - pad.t - pad.b);
  const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": "meter readings over time", id: "chart" });
  root.append(svg("line", { x1: pad.l, y1: H - pad.b, x2: W - pad.r, y2: H - pad.b, class: "axis" }));
  root.append(svg("line", { x1: pad.l, y1: pad.t, x2: pad.l, y2: H - pad.b, class: "axis" }));
  for (const wh of [lo, (lo + hi) / 2, hi]) {
    root.append(svg("text", { x: pad.l - 6, y: y(wh) + 4, class: "tick", "text-anchor": "end" }, `${Math.round(wh)} Wh`));
  }
  const time = (ms) => new Date(ms).toISOString().slice(11, 19);
  root.append(svg("text", { x: pad.l, y: H - pad.b + 18, class: "tick" }, time(t0)));
  root.append(svg("text", { x: W - pad.r, y: H - pad.b + 18, class: "tick", "text-anchor": "end" }, time(t1)));
  root.append(svg("text", { x: (W + pad.l) / 2, y: H - 6, class: "tick", "text-anchor": "middle" }, "time (UTC)"));
  const line = points.filter((p) => !p.signed);
  root.append(svg("polyline", { points: line.map((p) => `${x(p.at)},${y(p.wh)}`).join(" "), class: "line" }));
  for (const p of points) {
    root.append(svg("circle", { cx: x(p.at), cy: y(p.wh), r: p.signed ? 5 : 3, class: p.signed ? "signed" : "dot" }));
  }
  const signedCount = points.filter((p) => p.signed).length;
  box.append(root, el("figcaption", {}, `${points.length} energy register readings`
    + (signedCount ? `; the ${signedCount} green dots are readings the meter signed (OCMF or Alfen's format) whose signature verified.`
      : "; none signed by the meter.")));
  return box;
}

// The verdict's warning when the chain data came from the node the receipt names.
const OPERATORS_NODE = "The chain data came from the node the receipt names: the operator's own."
  + " Against a dishonest operator this proves nothing: put a node you choose (your own, or a"
  + " public one of the chain) in the Chain RPC URL field and check again.";

function showVerdict(receipt, verdict) {
  const out = $("result");
  out.replaceChildren();
  const status = verdict.status;
  out.setAttribute("data-status", status);
  const operators = verdict.checks.some((c) => c.name === "chain node" && c.ok === null);
  out.append(el("div", { class: `verdict ${status}`, id: "verdict", "data-status": status },
    el("strong", {}, status), " ", VERDICT_WORDS[status],
    ...(operators ? [el("p", { class: "warning", id: "node-warning" }, OPERATORS_NODE)] : [])));
  const label = status === "VALID" ? "What this receipt proves: "
    : "What this receipt would prove if every check passed: ";
  out.append(el("p", { class: "proves" }, el("strong", {}, label), verdict.proves));
  const list = el("ul", { class: "checks", id: "checks" });
  for (const c of verdict.checks) {
    const mark = c.ok === true ? "ok" : c.ok === false ? "FAIL" : "??";
    list.append(el("li", { class: `check ${mark === "??" ? "unknown" : mark.toLowerCase()}`, "data-name": c.name, "data-ok": String(c.ok) },
      el("span", { class: "mark" }, mark), " ", el("strong", {}, c.name), ": ", c.detail,
      el("div", { class: "meaning" }, meaning(c.name))));
  }
  out.append(el("h2", {}, "Checks"), list, el("h2", {}, "The session"), session(receipt),
    el("h2", {}, "Meter readings"), chart(receipt, verdict.signedReadings));
}

function showError(message) {
  const out = $("result");
  out.replaceChildren(el("div", { class: "verdict ERROR", id: "verdict", "data-status": "ERROR" },
    el("strong", {}, "Not checked: "), message));
  out.setAttribute("data-status", "ERROR");
}

let receiptText = null;
let rpcHint = null; // the node the loaded receipt names (its operator's)
// what the page itself put in the RPC field (the receipt's node, or the link's ?rpc=), as
// the field holds it: while it holds that, the node is not one the driver chose
let rpcFilled = null;
// the driver address and the contract the link that opened the page filled in: while a
// field holds it, it is the link maker's word (the operator's, as a rule), not the driver's
const linkFilled = {};

/** Whether the RPC field holds a node the driver did not choose: the one the page filled
 * in, or (however it is spelled) the one the receipt names. */
function notChosen() {
  return (rpcFilled !== null && $("rpc").value === rpcFilled) || sameNode($("rpc").value, rpcHint);
}

/** Says under the RPC field when it holds the node the receipt names: the operator's. */
function noteNode() {
  $("rpc-note").textContent = notChosen() ? "This is the node the receipt names: the operator's own."
    + " Checked there, the receipt proves nothing against a dishonest operator (UNVERIFIED):"
    + " give a node you choose." : "";
}

/** The node a receipt's text names (chain.rpc_hint), or null: none, or not (yet) a receipt
 * (reported when checked). */
function hintOf(text) {
  try {
    const hint = readReceipt(text)?.chain?.rpc_hint;
    return typeof hint === "string" && hint ? hint : null;
  } catch {
    return null;
  }
}

/** A receipt file's text, as csms verify reads one (UTF-8, a byte order mark dropped), or
 * null: File.text() put U+FFFD for bytes that are no UTF-8 and read on, where csms verify
 * reads no such file (a receipt VALID here, not read there). */
async function fileText(file) {
  try {
    return new TextDecoder("utf-8", { fatal: true }).decode(await file.arrayBuffer());
  } catch {
    // nothing of an earlier receipt stays to be checked in its place
    receiptText = null;
    $("receipt-text").value = "";
    $("loaded").textContent = "";
    showError(`${file.name} is not UTF-8 text: not a receipt.`);
    return null;
  }
}

function loadText(text, name) {
  receiptText = text;
  $("receipt-text").value = text;
  $("loaded").textContent = name ? `loaded ${name}` : "";
  rpcHint = hintOf(text);
  if (rpcHint !== null && !$("rpc").value) {
    // a start for a driver without a node of its own: the verdict says whose it is
    $("rpc").value = rpcHint;
    rpcFilled = $("rpc").value; // as the field keeps it (a line break dropped)
  }
  noteNode();
}

async function run() {
  $("result").removeAttribute("data-status");
  // the text as it is (JSON's own blanks around it are read): trimmed, a no-break space or
  // a line separator around a receipt csms verify does not read was dropped
  const typed = $("receipt-text").value;
  const text = typed.trim() ? typed : receiptText;
  if (!text) return showError("drop a receipt file on the page, choose it, or paste it.");
  const rpc = $("rpc").value.trim() || null;
  const rpcFromReceipt = rpc !== null && notChosen();
  const driver = $("driver").value.trim() || null;
  const contract = $("contract").value.trim() || null;
  for (const [value, name] of [[driver, "driver"], [contract, "contract"]]) {
    if (value !== null && !ADDRESS.test(value)) return showError(`the ${name} address is 0x and 40 hex digits.`);
  }
  const confirmations = $("confirmations").value.trim() || null;
  if (confirmations !== null && (!/^[0-9]+$/.test(confirmations) || BigInt(confirmations) < 1n)) {
    return showError("the confirmations are a whole number, at least 1.");
  }
  const cards = [];
  for (const value of $("card").value.split(/[\s,]+/).filter(Boolean)) {
    const at = value.lastIndexOf(":");
    const [tag, salt] = [value.slice(0, at), value.slice(at + 1)];
    if (at < 1 || !/^0x[0-9a-fA-F]{64}$/.test(salt)) return showError("a card is TAG:SALT, the salt 0x and 64 hex digits.");
    cards.push([tag, salt]);
  }
  if (cards.length && !driver) return showError("a card is checked against your escrow: give your driver address too.");
  let receipt;
  try {
    receipt = readReceipt(text);
  } catch (exc) {
    return showError(`the receipt is not JSON: ${exc.message}`);
  }
  $("result").replaceChildren(el("p", {}, "checking..."));
  try {
    const fromLink = Object.entries({ driver, contract })
      .filter(([name, value]) => value !== null && value === linkFilled[name]).map(([name]) => name);
    const asked = confirmationsAsked(confirmations,
      confirmations !== null && confirmations === linkFilled.confirmations, receipt?.chain?.chain_id);
    const verdict = await verifyReceipt(receipt, { rpcUrl: rpc, driver, contract, cards,
      confirmations: asked, rpcFromReceipt, fromLink });
    showVerdict(receipt, verdict);
  } catch (exc) {
    showError(exc instanceof ReceiptError ? exc.message : `the check stopped: ${exc.message}`);
  }
}

function start() {
  const params = new URLSearchParams(location.search);
  for (const name of ["rpc", "driver", "contract", "card", "confirmations"]) {
    if (params.get(name)) $(name).value = params.get(name);
  }
  // a link's node is the node of whoever made the link (the operator's, as a rule)
  if (params.get("rpc")) rpcFilled = $("rpc").value;
  // and its driver or contract the link maker's, which a contract of its own passes
  // (and its confirmations: fewer than the chain's default are not taken from a link)
  for (const name of ["driver", "contract", "confirmations"]) {
    if (params.get(name)) linkFilled[name] = $(name).value.trim();
  }
  $("file").addEventListener("change", async () => {
    const file = $("file").files[0];
    const text = file ? await fileText(file) : null;
    if (text !== null) loadText(text, file.name);
  });
  const drop = document.body;
  drop.addEventListener("dragover", (e) => {
    e.preventDefault();
    drop.classList.add("dragging");
  });
  drop.addEventListener("dragleave", () => drop.classList.remove("dragging"));
  drop.addEventListener("drop", async (e) => {
    e.preventDefault();
    drop.classList.remove("dragging");
    const file = e.dataTransfer.files[0];
    const text = file ? await fileText(file) : null;
    if (text !== null) {
      loadText(text, file.name);
      run();
    }
  });
  $("receipt-text").addEventListener("input", () => {
    receiptText = null;
    $("loaded").textContent = "";
    rpcHint = hintOf($("receipt-text").value);
    noteNode();
  });
  $("rpc").addEventListener("input", noteNode);
  $("check").addEventListener("click", run);
  document.documentElement.setAttribute("data-ready", "1");
}

start();
