// The part of Python's decimal module the verifier uses: exact coefficients and exponents,
// the default context (28 significant digits, ROUND_HALF_EVEN), ROUND_HALF_UP for prices.
// Meter readings keep their exponent, because a reading's resolution is its last digit.

const PREC = 28;
// csms/domain/tariff.py MAX_EXPONENT: the farthest a figure of a price, an energy or a
// meter reading is from 1 (its adjusted exponent). The verifiers read no figure beyond it:
// this arithmetic is exact, and 1e-10000000 beside 1 is a BigInt of ten million digits.
export const MAX_EXPONENT = 30;

export class InvalidOperation extends Error {}

const NOT_ASCII = /[^\x00-\x7f]/;

export class Dec {
  constructor(sign, coef, exp, special = null) {
    this.sign = sign; // 0 or 1
    this.coef = coef; // BigInt >= 0
    this.exp = exp; // number
    this.special = special; // null | "nan" | "inf"
  }

  /** Decimal(text), its text in ASCII (a receipt's numbers are: receipts.py reads no other
   * script's digits or spaces either); around it the spaces Python's Decimal() strips. */
  static parse(text) {
    if (NOT_ASCII.test(String(text))) throw new InvalidOperation(`not in ASCII digits: ${text}`);
    const t = String(text).replace(/^[\t\n\v\f\r \x1c-\x1f]+|[\t\n\v\f\r \x1c-\x1f]+$/g, "")
      .replaceAll("_", "");
    const m = /^([-+]?)(?:(\d+)\.?(\d*)|\.(\d+))(?:[eE]([-+]?\d+))?$/.exec(t);
    if (!m) {
      const s = /^([-+]?)(inf|infinity|nan|snan)$/i.exec(t);
      if (!s) throw new InvalidOperation(`invalid decimal: ${text}`);
      return new Dec(s[1] === "-" ? 1 : 0, 0n, 0, /inf/i.test(s[2]) ? "inf" : "nan");
    }
    const intPart = m[2] ?? "";
    const frac = m[3] ?? m[4] ?? "";
    const exp = Number(m[5] ?? 0) - frac.length;
    return new Dec(m[1] === "-" ? 1 : 0, BigInt(`${intPart}${frac}` || "0"), exp);
  }

  static fromInt(n) {
    const big = BigInt(n);
    return new Dec(big < 0n ? 1 : 0, big < 0n ? -big : big, 0);
  }

  /** Decimal(float): the exact binary value. */
  static fromFloat(x) {
    if (Number.isNaN(x)) return new Dec(0, 0n, 0, "nan");
    if (!Number.isFinite(x)) return new Dec(x < 0 ? 1 : 0, 0n, 0, "inf");
    const sign = x < 0 || Object.is(x, -0) ? 1 : 0;
    let v = Math.abs(x);
    let e = 0;
    while (!Number.isInteger(v)) {
      v *= 2;
      e += 1;
    }
    // v / 2^e = v * 5^e / 10^e
    return new Dec(sign, BigInt(v) * 5n ** BigInt(e), -e);
  }

  isFinite() {
    return this.special === null;
  }

  /** Python's Decimal.adjusted(): the exponent of the first digit (a zero's: its exponent). */
  adjusted() {
    return this.coef === 0n ? this.exp : this.exp + this.coef.toString().length - 1;
  }

  /** csms/domain/tariff.py within_exponents: finite, its adjusted exponent within
   * +-MAX_EXPONENT. */
  withinExponents() {
    return this.isFinite() && Math.abs(this.adjusted()) <= MAX_EXPONENT;
  }

  value() {
    // signed coefficient
    return this.sign ? -this.coef : this.coef;
  }

  isZero() {
    return this.special === null && this.coef === 0n;
  }

  toString() {
    if (this.special === "nan") return "NaN";
    if (this.special === "inf") return this.sign ? "-Infinity" : "Infinity";
    // Python's to-scientific-string
    const digits = this.coef.toString();
    const sign = this.sign ? "-" : "";
    const adjusted = this.exp + digits.length - 1;
    if (this.exp <= 0 && adjusted >= -6) {
      if (this.exp === 0) return sign + digits;
      const point = digits.length + this.exp;
      if (point > 0) return `${sign}${digits.slice(0, point)}.${digits.slice(point)}`;
      return `${sign}0.${"0".repeat(-point)}${digits}`;
    }
    const m = digits.length > 1 ? `${digits[0]}.${digits.slice(1)}` : digits;
    return `${sign}${m}E${adjusted >= 0 ? "+" : ""}${adjusted}`;
  }

  finite(op) {
    if (this.special !== null) throw new InvalidOperation(`${op} of ${this}`);
  }

  static aligned(a, b) {
    const exp = Math.min(a.exp, b.exp);
    return [a.value() * 10n ** BigInt(a.exp - exp), b.value() * 10n ** BigInt(b.exp - exp), exp];
  }

  cmp(other) {
    this.finite("compare");
    other.finite("compare");
    const [x, y] = Dec.aligned(this, other);
    return x < y ? -1 : x > y ? 1 : 0;
  }

  eq(other) {
    if (!(other instanceof Dec)) return false;
    if (this.special || other.special) {
      return this.special === other.special && this.special === "inf" && this.sign === other.sign;
    }
    return this.cmp(other) === 0;
  }

  add(other) {
    this.finite("add");
    other.finite("add");
    const [x, y, exp] = Dec.aligned(this, other);
    return Dec.signed(x + y, exp).fix();
  }

  sub(other) {
    return this.add(new Dec(other.sign ^ 1, other.coef, other.exp, other.special));
  }

  mul(other) {
    this.finite("multiply");
    other.finite("multiply");
    return new Dec(this.sign ^ other.sign, this.coef * other.coef, this.exp + other.exp).fix();
  }

  /** Division as _pydecimal.Decimal.__truediv__ does it in the default context. */
  div(other) {
    this.finite("divide");
    other.finite("divide");
    if (other.coef === 0n) throw new InvalidOperation("division by zero");
    const sign = this.sign ^ other.sign;
    if (this.coef === 0n) return new Dec(sign, 0n, this.exp - other.exp).fix();
    const shift = other.coef.toString().length - this.coef.toString().length + PREC + 1;
    let exp = this.exp - other.exp - shift;
    let coeff;
    let remainder;
    if (shift >= 0) {
      coeff = (this.coef * 10n ** BigInt(shift)) / other.coef;
      remainder = (this.coef * 10n ** BigInt(shift)) % other.coef;
    } else {
      coeff = this.coef / (other.coef * 10n ** BigInt(-shift));
      remainder = this.coef % (other.coef * 10n ** BigInt(-shift));
    }
    if (remainder !== 0n) {
      if (coeff % 5n === 0n) coeff += 1n;
    } else {
      const ideal = this.exp - other.exp;
      while (exp < ideal && coeff % 10n === 0n) {
        coeff /= 10n;
        exp += 1;
      }
    }
    return new Dec(sign, coeff, exp).fix();
  }

  abs() {
    return new Dec(0, this.coef, this.exp, this.special);
  }

  scaleb(n) {
    return new Dec(this.sign, this.coef, this.exp + n, this.special);
  }

  static signed(value, exp) {
    return new Dec(value < 0n ? 1 : 0, value < 0n ? -value : value, exp);
  }

  static round(coef, drop, mode) {
    // coef / 10^drop rounded (coef >= 0)
    if (drop <= 0) return coef * 10n ** BigInt(-drop);
    const unit = 10n ** BigInt(drop);
    const q = coef / unit;
    const r = coef % unit;
    const twice = 2n * r;
    if (twice > unit || (twice === unit && (mode === "half_up" || q % 2n === 1n))) return q + 1n;
    return q;
  }

  /** Round to PREC significant digits (half even), as every operation's result is. */
  fix() {
    const length = this.coef.toString().length;
    if (length <= PREC) return this;
    const drop = length - PREC;
    return new Dec(this.sign, Dec.round(this.coef, drop, "half_even"), this.exp + drop);
  }

  /** quantize(Decimal(1), rounding=...): InvalidOperation beyond 28 digits, as in Python */
  toInteger(mode) {
    this.finite("quantize");
    const tooLong = () => new InvalidOperation("quantize result has too many digits for current context");
    if (this.coef !== 0n && this.exp > 0 && this.coef.toString().length + this.exp > PREC) throw tooLong();
    const coef = Dec.round(this.coef, -this.exp, mode);
    if (coef.toString().length > PREC) throw tooLong();
    return this.sign ? -coef : coef;
  }

  /** Decimal(1).scaleb(exponent) if the exponent is negative, else Decimal(1). */
  resolution() {
    return this.exp < 0 ? new Dec(0, 1n, this.exp) : new Dec(0, 1n, 0);
  }

  max(other) {
    return this.cmp(other) >= 0 ? this : other;
  }
}
