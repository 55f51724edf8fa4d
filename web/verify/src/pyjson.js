// JSON as Python's json module reads and writes it, so that hashes computed here are the
// ones settlement/records.py computes: integers stay exact (BigInt), a float keeps its
// Python repr, keys sort by code point, and `canonical` is
// json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).
// The small Python helpers below (int(), str(), ==, truthiness) mirror what the Python
// verifier does with the same values, so both verifiers reach the same verdicts.

export class PyFloat {
  constructor(value, literal = null) {
    this.value = value;
    this.literal = literal; // the number as written (json.loads(..., parse_float=Decimal))
  }
}

export class PyError extends Error {
  constructor(kind, message) {
    super(message);
    this.kind = kind; // TypeError | ValueError | KeyError
  }
}

// Python's default sys.get_int_max_str_digits()
export const MAX_INT_DIGITS = 4300;
const NUMBER = /-?(?:0|[1-9]\d*)(\.\d+)?([eE][-+]?\d+)?/y;
const STRING = /"(?:[^"\\\u0000-\u001f]|\\["\\/bfnrt]|\\u[0-9a-fA-F]{4})*"/y;
const WS = /[ \t\n\r]*/y;

/** json.loads; `keyTwice(key)`, when given, is called for a key an object has twice (else
 * the last value counts, as in Python); `maxDepth`, when given: arrays and objects nested
 * deeper are refused (csms.protocol.frames.nested_beyond). */
export function parse(text, { keyTwice = null, maxDepth = null } = {}) {
  let at = 0;
  let depth = 0;
  const ws = () => {
    WS.lastIndex = at;
    WS.exec(text);
    at = WS.lastIndex;
  };
  const fail = (what) => {
    throw new SyntaxError(`${what} at character ${at}`);
  };
  const value = () => {
    ws();
    const c = text[at];
    if ((c === "{" || c === "[") && maxDepth !== null && depth >= maxDepth) {
      fail(`nested deeper than ${maxDepth} levels`);
    }
    if (c === "{" || c === "[") {
      depth++;
      const inner = c === "{" ? object() : array();
      depth--;
      return inner;
    }
    if (c === '"') return string();
    return scalar();
  };
  const object = () => {
    at++;
    const obj = Object.create(null);
    ws();
    if (text[at] === "}") {
      at++;
      return obj;
    }
    for (;;) {
      ws();
      if (text[at] !== '"') fail("expected a key");
      const key = string();
      ws();
      if (text[at] !== ":") fail("expected ':'");
      at++;
      if (keyTwice !== null && Object.hasOwn(obj, key)) keyTwice(key);
      obj[key] = value();
      ws();
      if (text[at] === ",") {
        at++;
        continue;
      }
      if (text[at] === "}") {
        at++;
        return obj;
      }
      fail("expected ',' or '}'");
    }
  };
  const array = () => {
    at++;
    const list = [];
    ws();
    if (text[at] === "]") {
      at++;
      return list;
    }
    for (;;) {
      list.push(value());
      ws();
      if (text[at] === ",") {
        at++;
        continue;
      }
      if (text[at] === "]") {
        at++;
        return list;
      }
      fail("expected ',' or ']'");
    }
  };
  const scalar = () => {
    for (const [word, v] of [["true", true], ["false", false], ["null", null],
      ["NaN", new PyFloat(NaN)], ["Infinity", new PyFloat(Infinity)],
      ["-Infinity", new PyFloat(-Infinity)]]) {
      if (text.startsWith(word, at)) {
        at += word.length;
        return v;
      }
    }
    NUMBER.lastIndex = at;
    const m = NUMBER.exec(text);
    if (!m) fail("unexpected character");
    if (m[1] === undefined && m[2] === undefined) {
      // Python's int() reads at most sys.get_int_max_str_digits() (4300) digits: json.loads
      // refuses a longer integer, and so does this reader (no figure of a receipt has as
      // many; the page said VALID for a receipt csms verify cannot read)
      if (m[0].replace("-", "").length > MAX_INT_DIGITS) {
        fail(`a number of more than ${MAX_INT_DIGITS} digits`);
      }
      at = NUMBER.lastIndex;
      return BigInt(m[0]);
    }
    at = NUMBER.lastIndex;
    return new PyFloat(Number(m[0]), m[0]);
  };
  const string = () => {
    STRING.lastIndex = at;
    const m = STRING.exec(text);
    if (!m) fail("bad string");
    at = STRING.lastIndex;
    return JSON.parse(m[0]);
  };
  const result = value();
  ws();
  if (at !== text.length) fail("extra data");
  return result;
}

export function isDict(v) {
  return v !== null && typeof v === "object" && !Array.isArray(v) && !(v instanceof PyFloat);
}

function codePointCompare(a, b) {
  const x = Array.from(a);
  const y = Array.from(b);
  for (let i = 0; i < Math.min(x.length, y.length); i++) {
    const d = x[i].codePointAt(0) - y[i].codePointAt(0);
    if (d) return d;
  }
  return x.length - y.length;
}

/** Python's repr of a float (also what json.dumps writes). */
export function floatRepr(x) {
  if (Number.isNaN(x)) return "NaN";
  if (x === Infinity) return "Infinity";
  if (x === -Infinity) return "-Infinity";
  if (x === 0) return Object.is(x, -0) ? "-0.0" : "0.0";
  const sign = x < 0 ? "-" : "";
  const [mant, e] = Math.abs(x).toExponential().split("e");
  const digits = mant.replace(".", "");
  const exp = Number(e);
  if (exp < -4 || exp >= 16) {
    const m = digits.length > 1 ? `${digits[0]}.${digits.slice(1)}` : digits;
    const es = Math.abs(exp) < 10 ? `0${Math.abs(exp)}` : `${Math.abs(exp)}`;
    return `${sign}${m}e${exp < 0 ? "-" : "+"}${es}`;
  }
  if (exp < 0) return `${sign}0.${"0".repeat(-exp - 1)}${digits}`;
  if (exp >= digits.length - 1) return `${sign}${digits}${"0".repeat(exp - digits.length + 1)}.0`;
  return `${sign}${digits.slice(0, exp + 1)}.${digits.slice(exp + 1)}`;
}

export function dumps(v) {
  if (v === null) return "null";
  if (v === true) return "true";
  if (v === false) return "false";
  if (typeof v === "bigint") return v.toString();
  if (v instanceof PyFloat) return floatRepr(v.value);
  if (typeof v === "string") return JSON.stringify(v);
  if (Array.isArray(v)) return `[${v.map(dumps).join(",")}]`;
  const keys = Object.keys(v).sort(codePointCompare);
  return `{${keys.map((k) => `${JSON.stringify(k)}:${dumps(v[k])}`).join(",")}}`;
}

/** The canonical bytes the project hashes (keys sorted, no spaces, UTF-8). */
export function canonical(v) {
  return new TextEncoder().encode(dumps(v));
}

// -- Python semantics for the values of a receipt ---------------------------------------

export function truthy(v) {
  if (v === null || v === false) return false;
  if (typeof v === "bigint") return v !== 0n;
  if (v instanceof PyFloat) return v.value !== 0;
  if (typeof v === "string" || Array.isArray(v)) return v.length > 0;
  if (v === true) return true;
  return Object.keys(v).length > 0;
}

/** Python's repr() of a str (or of another JSON value: its str()). */
export function repr(v) {
  if (typeof v !== "string") return str(v);
  const quote = v.includes("'") && !v.includes('"') ? '"' : "'";
  const escaped = v.replace(/[\\\u0000-\u001f\u007f]/g, (c) => ({ "\\": "\\\\", "\n": "\\n",
    "\r": "\\r", "\t": "\\t" })[c] ?? `\\x${c.charCodeAt(0).toString(16).padStart(2, "0")}`);
  return `${quote}${escaped.replaceAll(quote, `\\${quote}`)}${quote}`;
}

/** Python's str() of a JSON value (a list or a dict as Python writes it). */
export function str(v) {
  if (v === null) return "None";
  if (v === true) return "True";
  if (v === false) return "False";
  if (typeof v === "bigint") return v.toString();
  if (v instanceof PyFloat) {
    const r = floatRepr(v.value);
    return { NaN: "nan", Infinity: "inf", "-Infinity": "-inf" }[r] ?? r;
  }
  if (typeof v === "string") return v;
  if (Array.isArray(v)) return `[${v.map(repr).join(", ")}]`;
  return `{${Object.keys(v).map((k) => `${repr(k)}: ${repr(v[k])}`).join(", ")}}`;
}

const INT_TEXT = /^\s*([-+]?)(\d(?:_?\d)*)\s*$/;
const NOT_ASCII = /[^\x00-\x7f]/;

/** Python's int() of a JSON value (settlement.records.ascii_int: text in ASCII only, as a
 * receipt's numbers are), a BigInt, or PyError. */
export function int(v) {
  if (typeof v === "bigint") return v;
  if (v === true) return 1n;
  if (v === false) return 0n;
  if (v instanceof PyFloat) {
    if (!Number.isFinite(v.value)) throw new PyError("ValueError", "cannot convert float");
    return BigInt(Math.trunc(v.value));
  }
  if (typeof v === "string") {
    if (NOT_ASCII.test(v)) throw new PyError("ValueError", `${repr(v)} is not a number in ASCII digits`);
    const m = INT_TEXT.exec(v);
    if (!m) throw new PyError("ValueError", `invalid literal for int() with base 10: '${v}'`);
    const n = BigInt(m[2].replaceAll("_", ""));
    return m[1] === "-" ? -n : n;
  }
  throw new PyError("TypeError", `int() argument must be a string or a number, not '${typeName(v)}'`);
}

const HEX_TEXT = /^\s*([-+]?)(?:0[xX]_?)?([0-9a-fA-F](?:_?[0-9a-fA-F])*)\s*$/;

/** int(text, 16), its text in ASCII */
export function int16(text) {
  if (NOT_ASCII.test(text)) throw new PyError("ValueError", `${repr(text)} is not a number in ASCII hex digits`);
  const m = HEX_TEXT.exec(text);
  if (!m) throw new PyError("ValueError", `invalid literal for int() with base 16: '${text}'`);
  const n = BigInt(`0x${m[2].replaceAll("_", "")}`);
  return m[1] === "-" ? -n : n;
}

export function typeName(v) {
  if (v === null) return "NoneType";
  if (typeof v === "boolean") return "bool";
  if (typeof v === "bigint") return "int";
  if (v instanceof PyFloat) return "float";
  if (typeof v === "string") return "str";
  return Array.isArray(v) ? "list" : "dict";
}

function number(v) {
  // a number Python compares numerically: int, float, bool
  if (typeof v === "bigint") return { int: v };
  if (typeof v === "boolean") return { int: v ? 1n : 0n };
  if (v instanceof PyFloat) return { float: v.value };
  return null;
}

function compareNumbers(a, b) {
  if ("int" in a && "int" in b) return a.int < b.int ? -1 : a.int > b.int ? 1 : 0;
  const x = "float" in a ? a.float : null;
  const y = "float" in b ? b.float : null;
  if (Number.isNaN(x) || Number.isNaN(y)) return NaN;
  if (x !== null && y !== null) return x < y ? -1 : x > y ? 1 : 0;
  // one int, one float: exactly
  const [i, f, flip] = x === null ? [a.int, y, 1] : [b.int, x, -1];
  if (f === Infinity) return -flip;
  if (f === -Infinity) return flip;
  const fi = BigInt(Math.floor(f));
  if (i < fi) return -flip;
  if (i > fi) return flip;
  return Number.isInteger(f) ? 0 : -flip;
}

/** Python ==. */
export function eq(a, b) {
  const x = number(a);
  const y = number(b);
  if (x && y) return compareNumbers(x, y) === 0;
  if (x || y) return false;
  if (a === null || b === null) return a === b;
  if (typeof a === "string" || typeof b === "string") return a === b;
  if (Array.isArray(a) || Array.isArray(b)) {
    return Array.isArray(a) && Array.isArray(b) && a.length === b.length
      && a.every((item, i) => eq(item, b[i]));
  }
  const ka = Object.keys(a);
  return ka.length === Object.keys(b).length && ka.every((k) => k in b && eq(a[k], b[k]));
}

/** Python <= between numbers (TypeError otherwise). */
export function le(a, b) {
  const x = number(a);
  const y = number(b);
  if (!x || !y) throw new PyError("TypeError", `'<=' not supported between '${typeName(a)}' and '${typeName(b)}'`);
  return compareNumbers(x, y) <= 0;
}
