// Signed meter data (OCMF), as csms/metering/ocmf.py reads and checks it: unwrap the
// container from either OCPP version's wrapping, read its energy readings, verify the
// meter's ECDSA signature over the payload exactly as sent, compare the signed readings
// with the billed ones (reconcile) and tell readings that are not the session's (foreign).
//
// Signatures: NIST P-256, P-384 and P-521 with the browser's WebCrypto where the page
// has it (a secure context: file://, https://, localhost), else with @noble/curves;
// secp256k1, brainpoolP256r1, brainpoolP384r1 and secp192r1 with @noble/curves.

import { ecdsa, weierstrass } from "@noble/curves/abstract/weierstrass.js";
import { p256, p384, p521 } from "@noble/curves/nist.js";
import { secp256k1 } from "@noble/curves/secp256k1.js";
import { sha256, sha512 } from "@noble/hashes/sha2.js";

import { Dec, MAX_EXPONENT } from "./decimal.js";
import { cmpTimes, fromIso, isoformat } from "./isotime.js";
import { isDict, parse, PyFloat, repr, str } from "./pyjson.js";

export const VERIFIED = "verified";
export const INVALID = "invalid";
export const NO_KEY = "no_key";
export const MALFORMED = "malformed";

export class OcmfError extends Error {}

// OCMF TX codes that end a transaction: E(nd), or the terminations L(ocal), R(emote),
// A(bort), P(ower failure)
export const END_CODES = new Set(["E", "L", "R", "A", "P"]);
// a meter's clock and the station's may differ: signed readings count as a session's within
// this margin around its start and stop (microseconds)
export const READING_MARGIN_US = 5 * 60 * 1e6;

// -- curves ------------------------------------------------------------------------------
const brainpoolP256r1 = weierstrass({
  p: 0xa9fb57dba1eea9bc3e660a909d838d726e3bf623d52620282013481d1f6e5377n,
  a: 0x7d5a0975fc2c3057eef67530417affe7fb8055c126dc5c6ce94a4b44f330b5d9n,
  b: 0x26dc5c6ce94a4b44f330b5d9bbd77cbf958416295cf7e1ce6bccdc18ff8c07b6n,
  n: 0xa9fb57dba1eea9bc3e660a909d838d718c397aa3b561a6f7901e0e82974856a7n,
  Gx: 0x8bd2aeb9cb7e57cb2c4b482ffc81b7afb9de27e1e3bd23c23a4453bd9ace3262n,
  Gy: 0x547ef835c3dac4fd97f8461a14611dc9c27745132ded8e545c1d54c72f046997n,
  h: 1n,
});
const brainpoolP384r1 = weierstrass({
  p: 0x8cb91e82a3386d280f5d6f7e50e641df152f7109ed5456b412b1da197fb71123acd3a729901d1a71874700133107ec53n,
  a: 0x7bc382c63d8c150c3c72080ace05afa0c2bea28e4fb22787139165efba91f90f8aa5814a503ad4eb04a8c7dd22ce2826n,
  b: 0x4a8c7dd22ce28268b39b55416f0447c2fb77de107dcd2a62e880ea53eeb62d57cb4390295dbc9943ab78696fa504c11n,
  n: 0x8cb91e82a3386d280f5d6f7e50e641df152f7109ed5456b31f166e6cac0425a7cf3ab6af6b7fc3103b883202e9046565n,
  Gx: 0x1d1c64f068cf45ffa2a63a81b7c13f6b8847a3e77ef14fe3db7fcafe0cbd10e8e826e03436d646aaef87b2e247d4af1en,
  Gy: 0x8abe1d7520f9c2a45cb1eb8e95cfd55262b70b29feec5864e19c054ff99129280e4646217791811142820341263c5315n,
  h: 1n,
});
const secp192r1 = weierstrass({
  p: 0xfffffffffffffffffffffffffffffffeffffffffffffffffn,
  a: 0xfffffffffffffffffffffffffffffffefffffffffffffffcn,
  b: 0x64210519e59c80e70fa7e9ab72243049feb8deecc146b9b1n,
  n: 0xffffffffffffffffffffffff99def836146bc9b1b4d22831n,
  Gx: 0x188da80eb03090f67cbf20eb43a18800f4ff0afd82ff1012n,
  Gy: 0x07192b95ffc8da78631011ed6b24cdd573f977a11e794811n,
  h: 1n,
});

// name (as cryptography names it), DER OID, coordinate size, noble point, WebCrypto name
const CURVES = {
  secp192r1: { oid: "2a8648ce3d030101", size: 24, Point: secp192r1 },
  secp256r1: { oid: "2a8648ce3d030107", size: 32, Point: p256.Point, web: "P-256" },
  secp384r1: { oid: "2b81040022", size: 48, Point: p384.Point, web: "P-384" },
  secp521r1: { oid: "2b81040023", size: 66, Point: p521.Point, web: "P-521" },
  secp256k1: { oid: "2b8104000a", size: 32, Point: secp256k1.Point },
  brainpoolP256r1: { oid: "2b2403030208010107", size: 32, Point: brainpoolP256r1 },
  brainpoolP384r1: { oid: "2b240303020801010b", size: 48, Point: brainpoolP384r1 },
};
const BY_COORD = { 32: "secp256r1", 48: "secp384r1", 66: "secp521r1", 24: "secp192r1" };
const SA_CURVES = {
  secp192r1: "secp192r1", secp256r1: "secp256r1", secp384r1: "secp384r1",
  secp521r1: "secp521r1", secp256k1: "secp256k1", brainpool256r1: "brainpoolP256r1",
  brainpoolp256r1: "brainpoolP256r1", brainpool384r1: "brainpoolP384r1",
  brainpoolp384r1: "brainpoolP384r1",
};
const HASHES = { SHA256: { fn: sha256, web: "SHA-256" }, SHA512: { fn: sha512, web: "SHA-512" } };
export const DEFAULT_ALGORITHM = "ECDSA-secp256r1-SHA256";
const EC_PUBLIC_KEY = "2a8648ce3d0201";

// -- bytes -------------------------------------------------------------------------------
export const hex = (bytes) => Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");

export function fromHex(text) {
  if (text.length % 2 || /[^0-9a-fA-F]/.test(text)) throw new OcmfError("not hex");
  const out = new Uint8Array(text.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(text.slice(2 * i, 2 * i + 2), 16);
  return out;
}

/** base64.b64decode(text, validate=True) */
export function fromBase64(text) {
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(text) || text.length % 4) throw new OcmfError("not base64");
  const raw = atob(text);
  return Uint8Array.from(raw, (c) => c.charCodeAt(0));
}

function utf8(bytes) {
  return new TextDecoder("utf-8", { fatal: true }).decode(bytes);
}

// -- DER ---------------------------------------------------------------------------------
function tlv(bytes, at) {
  if (at + 2 > bytes.length) throw new OcmfError("short DER");
  const tag = bytes[at];
  let length = bytes[at + 1];
  let start = at + 2;
  if (length & 0x80) {
    const n = length & 0x7f;
    if (n < 1 || n > 3) throw new OcmfError("bad DER length");
    length = 0;
    for (let i = 0; i < n; i++) length = (length << 8) | bytes[start + i];
    start += n;
  }
  const end = start + length;
  if (end > bytes.length) throw new OcmfError("short DER");
  return { tag, start, end };
}

/** A SubjectPublicKeyInfo: {algorithm OID, curve OID, point bytes}. */
function readSpki(der) {
  const outer = tlv(der, 0);
  if (outer.tag !== 0x30 || outer.end !== der.length) throw new OcmfError("not DER");
  const alg = tlv(der, outer.start);
  if (alg.tag !== 0x30) throw new OcmfError("not DER");
  const algOid = tlv(der, alg.start);
  if (algOid.tag !== 0x06) throw new OcmfError("not DER");
  let curve = null;
  if (algOid.end < alg.end) {
    const param = tlv(der, algOid.end);
    if (param.tag === 0x06) curve = hex(der.slice(param.start, param.end));
  }
  const bits = tlv(der, alg.end);
  if (bits.tag !== 0x03 || bits.end !== outer.end || der[bits.start] !== 0) {
    throw new OcmfError("not DER");
  }
  return {
    algorithm: hex(der.slice(algOid.start, algOid.end)),
    curve,
    point: der.slice(bits.start + 1, bits.end),
  };
}

function derLength(n) {
  if (n < 0x80) return [n];
  if (n < 0x100) return [0x81, n];
  return [0x82, n >> 8, n & 0xff];
}

function derOf(tag, content) {
  return Uint8Array.from([tag, ...derLength(content.length), ...content]);
}

function spki(curveName, point) {
  const alg = derOf(0x30, [...derOf(0x06, fromHex(EC_PUBLIC_KEY)),
    ...derOf(0x06, fromHex(CURVES[curveName].oid))]);
  return derOf(0x30, [...alg, ...derOf(0x03, [0, ...point])]);
}

function curveOfOid(oid) {
  return Object.keys(CURVES).find((name) => CURVES[name].oid === oid) ?? null;
}

/** A key from DER: {curve name, uncompressed point}; OcmfError for what is not one. */
function loadDer(der) {
  const info = readSpki(der);
  if (info.algorithm !== EC_PUBLIC_KEY) throw new OcmfError("OCMF meter keys are elliptic-curve keys");
  const name = curveOfOid(info.curve);
  if (name === null) throw new OcmfError("not a supported public key: unknown curve");
  let point;
  try {
    point = CURVES[name].Point.fromBytes(info.point);
  } catch {
    throw new OcmfError("not a supported public key: not a point of its curve");
  }
  return { curve: name, point: point.toBytes(false) };
}

/** A raw EC point: 04 || x || y, compressed 02/03 || x, or x || y without a prefix. */
function rawPoint(raw, curve) {
  let size;
  let encoded;
  if (raw[0] === 0x04 && raw.length % 2 === 1) {
    size = (raw.length - 1) / 2;
    encoded = raw;
  } else if ((raw[0] === 0x02 || raw[0] === 0x03) && raw.length % 2 === 1) {
    size = raw.length - 1;
    encoded = raw;
  } else if (raw.length && raw.length % 2 === 0) {
    size = raw.length / 2;
    encoded = Uint8Array.from([4, ...raw]);
  } else {
    return null;
  }
  let name = curve;
  if (name === null || CURVES[name].size !== size) {
    name = BY_COORD[size];
    if (name === undefined) return null;
  }
  try {
    const point = CURVES[name].Point.fromBytes(encoded);
    return hex(spki(name, point.toBytes(false)));
  } catch {
    return null;
  }
}

// What surrounds a record, a key or a signature and is no part of it: space, tab, CR and
// LF only (BLANKS of csms/metering/ocmf.py). trim() takes more characters for whitespace
// (\ufeff) and Python's str.strip() others (\x1c-\x1f, \x85), which a station could put
// outside the signed bytes to have its records verify under one verifier only.
const BLANKS_AROUND = /^[ \t\r\n]+|[ \t\r\n]+$/g;
const BLANKS = /[ \t\r\n]+/g;
const PEM = /^-----BEGIN [^-]+-----[A-Za-z0-9+/= \t\r\n]*-----END [^-]+-----$/;

/** strip_blanks(): the text without the space, tab, CR and LF around it (nothing else). */
export function stripBlanks(text) {
  return text.replace(BLANKS_AROUND, "");
}

// Python's str.strip() (what pyocmf strips a container and a TX code with)
const PY_SPACE = "\t\n\x0b\x0c\r\x1c-\x1f \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000";
const PY_SPACE_AROUND = new RegExp(`^[${PY_SPACE}]+|[${PY_SPACE}]+$`, "g");
const pyStrip = (text) => text.replace(PY_SPACE_AROUND, "");

const KEY_FIELDS = ["UK", "publicKey", "PublicKey", "public_key", "key", "PK"];

/** A meter public key as lowercase hex DER (normalize_key). */
export function normalizeKey(text, curve = null) {
  const raw = stripBlanks(text);
  if (raw.startsWith("{")) {
    let obj;
    try {
      obj = parse(raw);
    } catch {
      throw new OcmfError("a meter key in JSON must be an object with the key");
    }
    const inner = isDict(obj) ? KEY_FIELDS.map((k) => obj[k]).find((v) => typeof v === "string") : undefined;
    if (inner === undefined) throw new OcmfError("no key field (UK, publicKey...) in the JSON meter key");
    return normalizeKey(inner, curve);
  }
  if (raw.startsWith("-----BEGIN")) {
    if (!PEM.test(raw)) throw new OcmfError("not a PEM public key: only base64 between its lines");
    const body = raw.replace(/-----[^-]+-----/g, "").replace(BLANKS, "");
    let der;
    try {
      der = fromBase64(body);
      loadDer(der);
    } catch (exc) {
      if (exc instanceof OcmfError && /elliptic/.test(exc.message)) throw exc;
      throw new OcmfError(`not a PEM public key: ${exc.message}`);
    }
    return hex(der);
  }
  const compact = raw.replace(BLANKS, "");
  const message = "a meter key is hex or base64 DER, PEM or a raw EC point";
  if (!compact) throw new OcmfError(message);
  let data;
  try {
    data = fromHex(compact);
  } catch {
    try {
      data = fromBase64(compact);
    } catch {
      throw new OcmfError(message);
    }
    if (data[0] === 0x7b || data[0] === 0x2d) {
      try {
        return normalizeKey(utf8(data), curve);
      } catch (exc) {
        if (exc instanceof OcmfError) throw exc;
      }
    }
  }
  let info;
  try {
    info = readSpki(data);
  } catch {
    const point = rawPoint(data, curve);
    if (point === null) throw new OcmfError("not a DER public key nor a raw EC point");
    return point;
  }
  if (info.algorithm !== EC_PUBLIC_KEY) throw new OcmfError("OCMF meter keys are elliptic-curve keys");
  loadDer(data);
  return hex(data);
}

// -- containers --------------------------------------------------------------------------
function containerText(data) {
  let text = stripBlanks(data);
  if (!text.startsWith("OCMF|")) {
    try {
      text = utf8(fromBase64(text));
    } catch {
      throw new OcmfError("signed meter data is neither an OCMF container nor base64 of one");
    }
    if (!text.startsWith("OCMF|")) throw new OcmfError("signed meter data is not an OCMF container");
  }
  if (stripBlanks(text) !== pyStrip(text)) { // pyocmf would strip them, JSON.parse would not
    throw new OcmfError("the OCMF container ends in a character that is no part of it");
  }
  return text;
}

/** The container, the key text and the signing method of a sample's `signed` object. */
export function unwrap(signed) {
  let obj;
  if (!isDict(signed)) throw new OcmfError("signed meter data is not an object");
  if ("signedData" in signed) {
    const value = stripBlanks(str(signed.signedData));
    if (value.startsWith("{")) {
      try {
        obj = parse(value);
      } catch {
        throw new OcmfError("SignedData value is neither JSON nor OCMF");
      }
      if (!isDict(obj)) throw new OcmfError("SignedData JSON is not an object");
    } else {
      return { container: containerText(value), publicKey: null, signingMethod: null };
    }
  } else {
    obj = signed;
  }
  const data = "signedMeterData" in obj ? obj.signedMeterData : obj.signedMeterValue;
  if (typeof data !== "string") throw new OcmfError("no signedMeterData in the signed meter value");
  const encoding = obj.encodingMethod;
  if (encoding !== undefined && encoding !== null && str(encoding).toUpperCase() !== "OCMF") {
    throw new OcmfError(`encoding '${str(encoding)}' is not supported (OCMF only)`);
  }
  const key = obj.publicKey;
  const method = obj.signingMethod;
  return {
    container: containerText(data),
    publicKey: typeof key === "string" && stripBlanks(key) ? stripBlanks(key) : null,
    signingMethod: typeof method === "string" ? method : null,
  };
}

const OBIS = /^[ \t\r\n]*([\p{L}\p{N}_]+)-([\p{L}\p{N}_]+):([\p{L}\p{N}_]+)\.([\p{L}\p{N}_]+)(?:\.([\p{L}\p{N}_]+))?(?:[.*][\p{L}\p{N}_]+)*[ \t\r\n]*$/u;

/** import (OBIS 1-x:1.8.x), export (1-x:2.8.x) or other; no RI: import. */
export function registerKind(register) {
  if (register === null || register === undefined) return "import";
  const m = OBIS.exec(register);
  if (!m) return "other";
  const number = (g) => (g !== undefined && /^\d+$/.test(g) ? Number(g) : null);
  const [medium, c, d] = [number(m[1]), number(m[3]), number(m[4])];
  if (medium !== 1 || d !== 8) return "other";
  return { 1: "import", 2: "export" }[c] ?? "other";
}

/** A reading value as pyocmf reads it: a JSON number as written (a float's digits are its
 * resolution), a string as a decimal. */
function decimalOf(value) {
  if (typeof value === "bigint") return Dec.fromInt(value);
  if (value instanceof PyFloat) return Dec.parse(value.literal ?? str(value));
  return Dec.parse(str(value)); // strips as Decimal() does
}

// OCMF's energy units (RU), read in any case ("KWH" is a kilowatt-hour; "mWh" and "MWh",
// which differ only in case, are no OCMF unit and are not read)
const ENERGY_UNITS = { kwh: 1000n, wh: 1n };
// no energy register shows more (MAX_REGISTER_WH of csms/metering/ocmf.py)
const MAX_REGISTER_WH = Dec.fromInt(10n ** 15n);

/** A reading in Wh; OcmfError for a number no energy register shows (negative, beyond any
 * meter, not finite). */
function energy(value, factor) {
  // the value scaled first (an Alfen value of 10^19 times 10^-5 is 10^14 Wh), then bounded;
  // a product of 10^16 or more is not compared (an exponent of 999999 makes a BigInt of
  // millions of digits; Python's context overflows there)
  const wh = value.isFinite() ? value.mul(factor) : null;
  const adjusted = wh === null ? 0 : wh.exp + wh.coef.toString().length - 1;
  // nor a figure beyond 10^-MAX_EXPONENT (no meter's step; 1e-10000000 beside a reading
  // is a BigInt of ten million digits)
  const readable = wh !== null && Math.abs(adjusted) <= MAX_EXPONENT && (wh.isZero() || (wh.sign === 0
    && (adjusted < 15 || (adjusted === 15 && wh.cmp(MAX_REGISTER_WH) <= 0))));
  if (!readable) throw new OcmfError(`the reading ${value} is no energy register reading`);
  return wh;
}

// OCMF: a reading without these inherits them from the reading before it (pyocmf's
// Payload.apply_reading_inheritance)
const INHERITED = ["TM", "TX", "RI", "RU", "RT", "EF", "ST"];

/** A text field of the payload or of a reading: absent or null is null, else a string
 * (pyocmf refuses a number where OCMF has text). */
function textField(obj, key) {
  const v = obj[key];
  if (v === undefined || v === null) return null;
  if (typeof v !== "string") throw new OcmfError(`${key} must be a string`);
  return v;
}

function readings(payload) {
  const out = [];
  const id = textField(payload, "ID");
  const serial = textField(payload, "MS");
  const pagination = textField(payload, "PG");
  if (!Array.isArray(payload.RD)) throw new OcmfError("RD must be a list of readings");
  const last = Object.create(null);
  for (const given of payload.RD) {
    if (!isDict(given)) throw new OcmfError("a reading is not an object");
    if (typeof given.RV === "string" && /[^\x00-\x7f]/.test(given.RV)) {
      throw new OcmfError(`the reading ${repr(given.RV)} is not a number in ASCII digits`);
    }
    const item = Object.assign(Object.create(null), last, given);
    for (const name of INHERITED) if (name in item) last[name] = item[name];
    if (typeof item.TM !== "string") throw new OcmfError("the reading's time (TM) must be a string");
    const tm = item.TM;
    const code = textField(item, "TX");
    const tx = code === null ? null : pyStrip(code); // pyocmf strips TX (with str.strip())
    const register = textField(item, "RI");
    const status = textField(item, "ST");
    const flags = textField(item, "EF");
    const unit = textField(item, "RU") ?? "";
    textField(item, "RT");
    if (item.RV === undefined || item.RV === null) continue; // an event without a reading
    const factor = ENERGY_UNITS[unit.toLowerCase()];
    if (factor === undefined) {
      if (registerKind(register) === "import"
          && (register !== null || unit.toLowerCase().endsWith("wh"))) {
        // skipping it would leave the session no signed reading to compare
        throw new OcmfError(`the import register's unit ${repr(unit)} is not kWh or Wh`);
      }
      continue; // not an energy register (a duration, a cable loss resistance)
    }
    const value = decimalOf(item.RV);
    const space = tm.lastIndexOf(" ");
    const time = fromIso((space >= 0 ? tm.slice(0, space) : tm).replace(",", "."));
    out.push({
      tx,
      time,
      timeText: isoformat(time),
      wh: energy(value, Dec.fromInt(factor)),
      resolutionWh: value.resolution().mul(Dec.fromInt(factor)),
      meterSerial: serial,
      pagination,
      register,
      kind: registerKind(register),
      identification: id === "" ? null : id,
      status: status === "" ? null : status, // "G" (good) is the only billable status
      errorFlags: flags === "" ? null : flags, // "E" an energy error, "t" a time error
    });
  }
  return out;
}

/** The sections of a container, cut as OCMF cuts them (_payload_section of
 * csms/metering/ocmf.py): at every '|' (the specification allows none inside a section, so
 * a payload with a '|' in a text is no JSON and not OCMF), as pyocmf and the
 * Transparenzsoftware cut them. A fourth section, the meter's public key appended as the
 * Transparenzsoftware reads it, is allowed and not used. */
function splitContainer(container) {
  const sections = container.split("|");
  if (sections[0] !== "OCMF" || sections.length < 3 || sections.length > 4) {
    throw new OcmfError("an OCMF container is OCMF|payload|signature (and at most the meter's"
      + ` key after them), not ${sections.length} sections: no section may hold a '|'`);
  }
  const [, payloadText, signatureText] = sections;
  // which of two values of a key counts is up to each parser (the meter's, the
  // Transparenzsoftware, this one): a payload with a key twice is none of them
  const payload = parse(payloadText, { keyTwice: (key) => {
    throw new OcmfError(`duplicate key ${repr(key)} in the OCMF payload`);
  } });
  const signature = parse(signatureText);
  if (!isDict(payload) || !isDict(signature)) throw new OcmfError("payload and signature are objects");
  return { payloadText, payload, signature };
}

function algorithmOf(name) {
  const parts = name.split("-");
  const curve = parts.length === 3 ? SA_CURVES[parts[1].toLowerCase()] : undefined;
  const hash = parts.length === 3 ? HASHES[parts[2].toUpperCase()] : undefined;
  if (parts[0] !== "ECDSA" || curve === undefined || hash === undefined) {
    throw new OcmfError(`signature algorithm '${name}' is not supported`);
  }
  return { curve, hash };
}

function isDer(raw) {
  return raw.length >= 8 && raw[0] === 0x30 && raw[1] + 2 === raw.length;
}

/** (r, s) of a DER ECDSA signature, or null. */
function derSignature(raw) {
  try {
    const seq = tlv(raw, 0);
    if (seq.tag !== 0x30 || seq.end !== raw.length) return null;
    const r = tlv(raw, seq.start);
    const s = tlv(raw, r.end);
    if (r.tag !== 2 || s.tag !== 2 || s.end !== seq.end) return null;
    const int = (t) => BigInt(`0x${hex(raw.slice(t.start, t.end)) || "0"}`);
    return [int(r), int(s)];
  } catch {
    return null;
  }
}

function fixed(n, size) {
  const text = n.toString(16).padStart(2 * size, "0");
  return text.length > 2 * size ? null : fromHex(text);
}

async function ecdsaVerify(curveName, hash, point, r, s, message) {
  const curve = CURVES[curveName];
  const n = curve.Point.Fn.ORDER;
  if (r <= 0n || s <= 0n || r >= n || s >= n) return false;
  const rb = fixed(r, curve.size);
  const sb = fixed(s, curve.size);
  const subtle = globalThis.crypto?.subtle;
  if (curve.web && subtle) {
    const key = await subtle.importKey("raw", point, { name: "ECDSA", namedCurve: curve.web },
      false, ["verify"]);
    return subtle.verify({ name: "ECDSA", hash: hash.web }, key,
      Uint8Array.from([...rb, ...sb]), message);
  }
  const verifier = ecdsa(curve.Point, hash.fn);
  return verifier.verify(Uint8Array.from([...rb, ...sb]), hash.fn(message), point,
    { prehash: false, lowS: false, format: "compact" });
}

// -- Alfen's format (csms/metering/alfen.py) ----------------------------------------------
// AP;{type};{blob version};{public key};{dataset};{signature}; the last three in base32: a
// secp192r1 point, 82 bytes of data (integers little-endian), ECDSA-SHA256 r || s

const ALFEN_TYPES = { 0: "B", 1: "E", 2: "C" }; // begin, end, intermediate
// meter error (1, 2), adapter error (16, 30, 31), meter reading mismatch (26)
const ALFEN_ERROR_BITS = [1, 2, 16, 26, 30, 31];
const BASE32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

/** base64.b32decode(text): the RFC 4648 alphabet in capitals, padded to 8 characters. */
function fromBase32(text) {
  const m = /^([A-Z2-7]*)(=*)$/.exec(text);
  if (!m || text.length % 8 || ![0, 1, 3, 4, 6].includes(m[2].length)) {
    throw new OcmfError("not base32");
  }
  const out = [];
  let bits = 0;
  let acc = 0;
  for (const c of m[1]) {
    acc = ((acc << 5) | BASE32.indexOf(c)) & 0xfff;
    bits += 5;
    if (bits >= 8) {
      bits -= 8;
      out.push((acc >> bits) & 0xff);
    }
  }
  return Uint8Array.from(out);
}

/** record_text(): the Alfen record a sample's signed object carries, or null. */
export function alfenRecordText(signed) {
  if (!isDict(signed)) return null;
  const value = "signedData" in signed ? signed.signedData : signed.signedMeterData;
  if (typeof value !== "string") return null;
  const text = stripBlanks(value);
  if (text.startsWith("AP;")) return text;
  if ("signedMeterData" in signed && !("signedData" in signed)) {
    let decoded;
    try {
      const raw = fromBase64(text);
      if (raw.some((b) => b > 0x7f)) return null;
      decoded = stripBlanks(String.fromCharCode(...raw));
    } catch {
      return null;
    }
    return decoded.startsWith("AP;") ? decoded : null;
  }
  return null;
}

function littleEndian(bytes) {
  let n = 0n;
  for (let i = bytes.length - 1; i >= 0; i--) n = (n << 8n) | BigInt(bytes[i]);
  return n;
}

function alfenField(text, name) {
  try {
    return fromBase32(text);
  } catch {
    throw new OcmfError(`the ${name} is not base32`);
  }
}

/** parse(): the record read, not verified; OcmfError when it is not one. */
function parseAlfen(text) {
  let fields = stripBlanks(text).split(";");
  if (fields.length === 7 && fields[6] === "") fields = fields.slice(0, 6);
  if (fields.length !== 6) {
    throw new OcmfError(`an Alfen record has 6 fields separated by ';', not ${fields.length}`);
  }
  const [ident, kind, version, keyText, dataText, sigText] = fields;
  if (ident !== "AP") throw new OcmfError("an Alfen record starts with AP");
  if (!Object.hasOwn(ALFEN_TYPES, kind)) {
    throw new OcmfError(`the record type '${kind}' is not 0 (begin), 1 (end) or 2`);
  }
  if (!/^[0-9]$/.test(version)) throw new OcmfError(`the blob version '${version}' is not one digit`);
  const key = alfenField(keyText, "public key");
  const data = alfenField(dataText, "dataset");
  const signature = alfenField(sigText, "signature");
  if (data.length !== 82) throw new OcmfError(`the dataset has ${data.length} bytes, not 82`);
  if (signature.length !== 48) throw new OcmfError(`the signature has ${signature.length} bytes, not 48`);
  let uidBytes = data.slice(54, 74);
  let n = uidBytes.length;
  while (n && uidBytes[n - 1] === 0) n--;
  uidBytes = uidBytes.slice(0, n);
  let uid = null;
  if (uidBytes.length) {
    uid = uidBytes.every((b) => b >= 0x20 && b < 0x7f) ? String.fromCharCode(...uidBytes)
      : hex(uidBytes).toUpperCase();
  }
  const [a, b, c, d, e, f] = data.slice(38, 44);
  const seconds = Number(littleEndian(data.slice(34, 38)));
  const timeText = `${new Date(seconds * 1000).toISOString().slice(0, 19)}+00:00`;
  return {
    tx: ALFEN_TYPES[kind], key, data, signature, meterId: hex(data.slice(16, 26)).toUpperCase(),
    statusWord: Number(littleEndian(data.slice(26, 30))), timeText,
    obis: `${a}-${b}:${c}.${d}.${e}*${f}`, unit: data[44],
    scalar: data[45] > 127 ? data[45] - 256 : data[45], value: littleEndian(data.slice(46, 54)),
    uid, session: littleEndian(data.slice(74, 78)).toString(),
    page: littleEndian(data.slice(78, 82)).toString(),
  };
}

function alfenReading(record) {
  const kind = registerKind(record.obis);
  if (record.unit !== 30) {
    if (kind === "import") throw new OcmfError(`the import register's unit ${record.unit} is not Wh (30)`);
    return null;
  }
  const factor = Dec.fromInt(1).scaleb(record.scalar);
  const bad = ALFEN_ERROR_BITS.some((bit) => (record.statusWord >>> bit) & 1);
  const time = fromIso(record.timeText);
  return {
    tx: record.tx,
    time,
    timeText: isoformat(time),
    wh: energy(Dec.fromInt(record.value), factor),
    resolutionWh: factor,
    meterSerial: record.meterId,
    pagination: record.page,
    register: record.obis,
    kind,
    identification: record.uid,
    status: bad ? record.statusWord.toString(16).toUpperCase().padStart(8, "0") : "G",
    errorFlags: bad ? "E" : null,
    session: record.session,
  };
}

/** check_record(): one Alfen record against the pinned meter key (else its own). */
async function checkAlfen(text, pinnedKey) {
  const result = { status: MALFORMED, detail: "", readings: [], keyUsed: pinnedKey };
  let record;
  try {
    record = parseAlfen(text);
    const reading = alfenReading(record);
    result.readings = reading === null ? [] : [reading];
  } catch (exc) {
    return { ...result, detail: `unreadable Alfen record: ${exc.message}` };
  }
  let messageKey;
  try {
    messageKey = hex(spki("secp192r1", CURVES.secp192r1.Point.fromBytes(record.key).toBytes(false)));
  } catch {
    return { ...result, status: INVALID, detail: "the record's public key is no point of secp192r1" };
  }
  const key = pinnedKey || messageKey;
  result.keyUsed = key;
  let loaded;
  try {
    loaded = loadDer(fromHex(String(key)));
  } catch (exc) {
    return { ...result, status: INVALID, detail: `the meter key cannot be read: ${exc.message}` };
  }
  if (loaded.curve !== "secp192r1") {
    return { ...result, status: INVALID,
      detail: "the meter key is not on secp192r1, the curve Alfen records use" };
  }
  const r = BigInt(`0x${hex(record.signature.slice(0, 24))}`);
  const s = BigInt(`0x${hex(record.signature.slice(24))}`);
  const ok = await ecdsaVerify("secp192r1", HASHES.SHA256, loaded.point, r, s, record.data);
  return { ...result, status: ok ? VERIFIED : INVALID,
    detail: ok ? "signature verified" : "signature does not match the signed data" };
}

/** Verify one stored signed sample against the record's pinned meter key. */
export async function checkContainer(signed, pinnedKey) {
  const alfen = alfenRecordText(signed);
  if (alfen !== null) return checkAlfen(alfen, pinnedKey);
  let unwrapped;
  try {
    unwrapped = unwrap(signed);
  } catch (exc) {
    return { status: MALFORMED, detail: exc.message, readings: [] };
  }
  const result = { status: MALFORMED, detail: "", readings: [], keyUsed: pinnedKey };
  let parts;
  let algorithm;
  try {
    parts = splitContainer(unwrapped.container);
    result.readings = readings(parts.payload);
    const sa = parts.signature.SA;
    algorithm = sa ? str(sa)
      : unwrapped.signingMethod?.startsWith("ECDSA-") ? unwrapped.signingMethod : DEFAULT_ALGORITHM;
  } catch (exc) {
    result.detail = `unreadable OCMF: ${exc.message.split("\n")[0]}`;
    return result;
  }
  let alg;
  let messageKey = null;
  try {
    alg = algorithmOf(algorithm);
    if (unwrapped.publicKey !== null) messageKey = normalizeKey(unwrapped.publicKey, alg.curve);
  } catch (exc) {
    return { ...result, status: INVALID, detail: exc.message };
  }
  const key = pinnedKey || messageKey;
  result.keyUsed = key;
  if (!key) return { ...result, status: NO_KEY, detail: "no meter key registered and none in the message" };
  try {
    const ok = await verifyPayload(parts.payloadText, parts.signature, key, alg);
    return { ...result, status: ok ? VERIFIED : INVALID,
      detail: ok ? "signature verified" : "signature does not match the signed data" };
  } catch (exc) {
    return { ...result, status: INVALID, detail: exc.message };
  }
}

/** ECDSA over the payload section exactly as sent. */
async function verifyPayload(payload, signature, keyHex, alg) {
  let key;
  try {
    key = loadDer(fromHex(String(keyHex)));
  } catch (exc) {
    throw new OcmfError(`the meter key cannot be read: ${exc.message}`);
  }
  if (key.curve !== alg.curve) {
    throw new OcmfError(`the meter key is not on the curve ${alg.curve.toLowerCase()} the signature names`);
  }
  const encoding = str(signature.SE ?? "hex").toLowerCase() || "hex";
  let raw;
  try {
    const sd = stripBlanks(str(signature.SD));
    raw = encoding === "base64" ? fromBase64(sd) : fromHex(sd);
  } catch {
    throw new OcmfError(`signature data is not ${encoding}`);
  }
  const size = CURVES[key.curve].size;
  let rs;
  if (raw.length === 2 * size && !isDer(raw)) {
    rs = [BigInt(`0x${hex(raw.slice(0, size))}`), BigInt(`0x${hex(raw.slice(size))}`)];
  } else {
    rs = derSignature(raw);
    if (rs === null) return false;
  }
  return ecdsaVerify(key.curve, alg.hash, key.point, rs[0], rs[1], new TextEncoder().encode(payload));
}

// -- signed readings against billed ones -------------------------------------------------
const close = (a, b, tolerance) => a.sub(b).abs().cmp(tolerance) < 0;
const maxDec = (a, b) => (b.cmp(a) > 0 ? b : a);
const THOUSAND = Dec.fromInt(1000);
// READING_TOLERANCE_WH (csms/metering/ocmf.py): a resolution read from how a number is
// written (12 for 12.00 kWh) never widens the match beyond 10 Wh
const READING_TOLERANCE_WH = Dec.fromInt(10);
const step = (resolution) => (resolution.cmp(READING_TOLERANCE_WH) > 0 ? READING_TOLERANCE_WH : resolution);

/** reconcile(): the billed start/stop after comparing them with the signed ones. */
export function reconcile(signedReadings, billedStart, billedStop) {
  const [begin, end] = pair(signedReadings);
  const out = { startWh: billedStart, stopWh: billedStop, flags: [], mismatches: [], notes: [],
    missing: [], faults: [], signedBegin: begin, signedEnd: end };
  const outcomes = {};
  for (const [name, signed, billed] of [["start", begin, billedStart], ["stop", end, billedStop]]) {
    if (signed === null) {
      out.missing.push(name);
      continue;
    }
    let value = billed;
    let outcome = "match";
    if (billed === null) {
      value = signed.wh;
      outcome = "from_signed";
    } else if (!close(billed, signed.wh, step(maxDec(signed.resolutionWh, billed.resolution())))) {
      const up = maxDec(step(signed.resolutionWh), billed.resolution().mul(THOUSAND));
      const down = maxDec(step(signed.resolutionWh), billed.resolution().div(THOUSAND));
      if (close(billed.mul(THOUSAND), signed.wh, up) || close(billed.div(THOUSAND), signed.wh, down)) {
        value = signed.wh;
        outcome = "unit";
        out.notes.push(`${name}: the station reported ${billed} Wh, the meter signed ${signed.wh} Wh (a unit factor of 1000): billed as signed`);
      } else {
        outcome = "differs";
      }
    } else if (name === "start" && billed.cmp(signed.wh.sub(
      step(maxDec(signed.resolutionWh, billed.resolution())).div(Dec.fromInt(2)))) < 0) {
      // within a step, but more than half a step below the signed begin: no rounding of
      // the meter's reading gives it; the driver is not billed for energy the meter signed
      // was on the register before the start
      value = signed.wh;
      out.notes.push(`start: the station reported ${billed} Wh, below what the meter's signed ${signed.wh} Wh allows: billed as signed`);
    }
    outcomes[name] = outcome;
    if (name === "start") out.startWh = value;
    else out.stopWh = value;
  }
  const values = Object.values(outcomes);
  if (values.includes("from_signed")) {
    for (const [n, o] of Object.entries(outcomes)) if (o === "from_signed") out.flags.push(`meter_${n}_from_signed`);
  }
  if (values.includes("unit")) out.flags.push("unit_discrepancy");
  if (values.includes("differs")) {
    let consistent = false;
    if (begin && end && out.startWh !== null && out.stopWh !== null
        && outcomes.start === "differs" && outcomes.stop === "differs") {
      const tolerance = step(begin.resolutionWh).add(step(end.resolutionWh))
        .add(step(maxDec(out.startWh.resolution(), out.stopWh.resolution())));
      consistent = close(out.stopWh.sub(out.startWh), end.wh.sub(begin.wh), tolerance);
    }
    if (consistent) {
      out.flags.push("signed_register_offset");
      out.notes.push("the signed readings are offset from the billed ones by a constant; the energy between them is the same");
    } else {
      out.flags.push("signed_energy_mismatch");
      for (const [name, signed, billed] of [["start", begin, out.startWh], ["stop", end, out.stopWh]]) {
        if (outcomes[name] === "differs" && signed !== null) {
          out.mismatches.push(`${name}: billed ${billed} Wh, meter signed ${signed.wh} Wh`);
        }
      }
    }
  }
  if (out.missing.length) out.flags.push("signed_reading_missing");
  out.faults = [begin, end].filter((r) => r !== null && faulty(r))
    .map((r) => `the meter marked its ${r.tx} reading as faulty (ST ${repr(r.status)}, EF ${repr(r.errorFlags)})`);
  if (out.faults.length) {
    out.flags.push("signed_reading_faulty");
    out.notes.push(...out.faults);
  }
  return out;
}

/** faulty(): the meter itself says the reading is not billable, a status (ST) other than
 * "G" or the energy error flag "E" in EF; the time error flag "t" alone is not. */
export function faulty(reading) {
  return (reading.status !== null && reading.status !== "G")
    || (reading.errorFlags ?? "").includes("E");
}

const OBIS_AT = new RegExp(OBIS.source, "du"); // with the groups' positions
const isDigits = (g) => g !== undefined && /^\d+$/.test(g);

/** A register's identity for pairing begin and end: its OBIS groups as numbers (so
 * "01-00:01.08.00" is "1-0:1.8.0"), the text when it is no OBIS code. */
function registerKey(register) {
  if (register === null) return "[null]";
  const m = OBIS_AT.exec(register);
  if (!m) return JSON.stringify(["text", stripBlanks(register)]);
  const groups = m.slice(1, 6).map((g) => (g === undefined ? null
    : isDigits(g) ? { n: BigInt(g).toString() } : g));
  const suffix = stripBlanks(register).slice(m.indices[m[5] !== undefined ? 5 : 4][1]);
  return JSON.stringify(["obis", ...groups, suffix]);
}

/** The total active import register 1-x:1.8.0 (no tariff, no transaction register). */
function isTotalImport(register) {
  if (register === null) return false;
  const m = OBIS_AT.exec(register);
  if (!m || registerKind(register) !== "import") return false;
  const e = m[5];
  const suffix = e !== undefined ? stripBlanks(register).slice(m.indices[5][1]) : "";
  return isDigits(e) && BigInt(e) === 0n
    && ["", "255", "FF"].includes(suffix.replace(/^[.*]+/, "").toUpperCase());
}

/** _pair(): the signed begin and end import readings, from one register: the total import
 * register 1-x:1.8.0 when both sides have it, else the first register both sides have;
 * when no register is on both sides, each side's total import reading (else its first
 * begin, its last end): a pair of two registers, which foreign() refuses. */
export function pair(signedReadings) {
  const imports = signedReadings.filter((r) => r.kind === "import");
  const begins = imports.filter((r) => r.tx === "B");
  const ends = imports.filter((r) => END_CODES.has(r.tx));
  const endKeys = new Set(ends.map((r) => registerKey(r.register)));
  const common = begins.filter((r) => endKeys.has(registerKey(r.register)));
  const last = (list, test) => [...list].reverse().find(test) ?? null;
  if (common.length) {
    const chosen = common.find((r) => isTotalImport(r.register)) ?? common[0];
    const key = registerKey(chosen.register);
    return [chosen, last(ends, (r) => registerKey(r.register) === key)];
  }
  const begin = begins.find((r) => isTotalImport(r.register)) ?? begins[0] ?? null;
  const end = last(ends, (r) => isTotalImport(r.register)) ?? ends[ends.length - 1] ?? null;
  return [begin, end];
}

function page(pagination) {
  const m = /^[A-Za-z]?(\d+)$/.exec(pagination ?? "");
  return m ? BigInt(m[1]) : null;
}

/** A reading's identity: its value as a number (12000 is 12000.0) and its time. */
function readingKey(r) {
  let { coef, exp } = r.wh;
  if (coef === 0n) exp = 0;
  while (coef !== 0n && coef % 10n === 0n) {
    coef /= 10n;
    exp += 1;
  }
  return JSON.stringify([r.wh.sign && coef ? "-" : "", coef.toString(), exp, r.timeText]);
}

/** foreign(): why signed readings do not belong to a session (empty when they do): a begin
 * or end reading outside the session's time (with the margin for the meter's clock), a
 * begin later than its end or pages going backwards, a begin and an end of two registers,
 * several different begin (or end) readings of the register, readings of several meters,
 * readings the meter signed for another token than the session's. `started`/`stopped` are fromIso times, `begin`/`end`
 * the pair reconciled. */
export function foreign(signedReadings, begin, end, started, stopped, idTag,
  margin = READING_MARGIN_US) {
  const problems = [];
  const last = stopped ?? started;
  for (const r of [begin, end]) {
    if (r === null || r.time === null) continue;
    let inside;
    try {
      inside = cmpTimes({ ...started, micros: started.micros - margin }, r.time) <= 0
        && cmpTimes(r.time, { ...last, micros: last.micros + margin }) <= 0;
    } catch {
      inside = false; // a naive time against an aware one
    }
    if (!inside) problems.push(`the ${str(r.tx)} reading (${r.timeText}) is outside the session`);
  }
  if (begin !== null && end !== null) {
    if (begin.time !== null && end.time !== null) {
      let later = false;
      try {
        later = cmpTimes(begin.time, end.time) > 0;
      } catch {
        later = false;
      }
      if (later) problems.push("the begin reading is later than the end reading");
    }
    const pb = page(begin.pagination);
    const pe = page(end.pagination);
    if (pb !== null && pe !== null && !(pb <= pe)) {
      problems.push(`pages go backwards (${begin.pagination} -> ${end.pagination})`);
    }
    if (registerKey(begin.register) !== registerKey(end.register)) {
      // a tariff register's begin and the total's end: each the meter's, their difference
      // no energy it measured
      problems.push(`the begin reading (${begin.register || "(unnamed)"}) and the end reading (${end.register || "(unnamed)"}) are of two registers`);
    } else if (begin.wh.cmp(end.wh) > 0) {
      // an energy register only counts up: these are not one transaction's readings
      problems.push(`the begin reading (${begin.wh} Wh) is larger than the end reading (${end.wh} Wh)`);
    }
  }
  for (const [name, chosen, codes] of [["begin", begin, new Set(["B"])], ["end", end, END_CODES]]) {
    // a meter signs one begin and one end per transaction (a container the station sent
    // twice, or in two records, is the same reading): another one is of another session
    if (chosen === null) continue;
    const key = registerKey(chosen.register);
    const seen = new Set(signedReadings.filter((r) => r.kind === "import" && codes.has(r.tx)
      && registerKey(r.register) === key).map(readingKey));
    if (seen.size > 1) {
      problems.push(`several ${name} readings of the register ${chosen.register || "(unnamed)"}`);
    }
  }
  const sessions = [...new Set(signedReadings.map((r) => r.session).filter(Boolean))].sort();
  if (sessions.length > 1) problems.push(`readings of several meter sessions (${sessions.join(", ")})`);
  const serials = [...new Set(signedReadings.map((r) => r.meterSerial).filter(Boolean))].sort();
  if (serials.length > 1) problems.push(`readings of several meters (${serials.join(", ")})`);
  const tag = String(idTag ?? "");
  const ids = [...new Set(signedReadings.map((r) => r.identification).filter(Boolean))].sort();
  if (tag && ids.length && ids.some((i) => i.toUpperCase() !== tag.toUpperCase())) {
    problems.push(`the meter signed them for ${ids.join(", ")}, not ${tag}`);
  }
  return problems;
}

// csms/metering/ocmf.py MAX_PLAUSIBLE_POWER_W, POWER_SLACK_SECONDS, POWER_SLACK_RATIO
export const MAX_PLAUSIBLE_POWER_W = Dec.fromInt(4000000);
const POWER_SLACK_SECONDS = Dec.fromInt(60);
const POWER_SLACK_RATIO = Dec.parse("1.01");

/** Seconds from a to b (fromIso times), exact; null when either is missing or one is naive. */
function secondsBetween(a, b) {
  if (a === null || b === null || a.aware !== b.aware) return null;
  return Dec.fromInt(Math.round(b.micros - a.micros)).div(Dec.fromInt(1000000));
}

/** unsigned_beyond_signed(): why an unsigned start or stop is beyond what the meter's signed
 * readings allow (empty when it is not): where the meter signed no end reading, a stop above
 * a signed reading of the begin's register by more than maxPowerW delivers from that
 * reading's time to the stop; where it signed no begin reading, a start below a signed
 * reading of the end's register by more than the power delivers before it; where it signed
 * neither, its readings of the total import register bound both sides the same way. */
export function unsignedBeyondSigned(signedReadings, begin, end, startWh, stopWh, started,
  stopped, maxPowerW) {
  const imports = signedReadings.filter((r) => r.kind === "import");
  const problems = [];
  const zero = Dec.fromInt(0);
  const allowed = (seconds) => {
    const s = seconds === null || seconds.cmp(zero) < 0 ? zero : seconds;
    return maxPowerW.mul(s.add(POWER_SLACK_SECONDS)).div(Dec.fromInt(3600)).mul(POWER_SLACK_RATIO);
  };
  const session = secondsBetween(started, stopped);
  const of = (reading) => imports.filter((r) => registerKey(r.register) === registerKey(reading.register));
  const timeText = (r) => (r.time === null ? "None" : isoformat(r.time));
  const bounds = (side, sign, gapOf) => {
    const list = of(side).map((r) => [sign(r.wh, allowed(gapOf(r) ?? session)), r]);
    return list.length ? list : [[sign(side.wh, allowed(gapOf(side) ?? session)), side]];
  };
  // neither begin nor end signed: the meter's readings of its total import register (the
  // first one's) bound both sides, as a begin's register bounds the stop
  const total = begin !== null || end !== null ? null
    : imports.find((r) => r.register === null || isTotalImport(r.register)) ?? null;
  const above = begin ?? total;
  const below = end ?? total;
  if (end === null && above !== null && stopWh !== null) {
    // each signed reading of the register bounds the stop; the tightest counts
    const [most, last] = bounds(above, (wh, a) => wh.add(a), (r) => secondsBetween(r.time, stopped))
      .reduce((a, b) => (b[0].cmp(a[0]) < 0 ? b : a));
    if (stopWh.cmp(most) > 0) {
      problems.push(`the unsigned stop (${stopWh} Wh) is beyond the meter's signed reading (${last.wh} Wh at ${timeText(last)}) and ${maxPowerW} W since`);
    }
  }
  if (begin === null && below !== null && startWh !== null) {
    const [least, first] = bounds(below, (wh, a) => wh.sub(a), (r) => secondsBetween(started, r.time))
      .reduce((a, b) => (b[0].cmp(a[0]) > 0 ? b : a));
    if (startWh.cmp(least) < 0) {
      problems.push(`the unsigned start (${startWh} Wh) is below the meter's signed reading (${first.wh} Wh at ${timeText(first)}) by more than ${maxPowerW} W delivers before it`);
    }
  }
  return problems;
}
