// datetime.fromisoformat as the Python verifier uses it: a point in time (microseconds
// since the epoch, offset applied) and whether it had an offset (naive and aware times
// cannot be compared, in Python as here).

const ISO = /^(\d{4})-?(\d{2})-?(\d{2})(?:.(\d{2})(?::?(\d{2})(?::?(\d{2})(?:[.,](\d{1,9}))?)?)?(Z|[+-]\d{2}(?::?\d{2}(?::?\d{2}(?:\.\d{1,6})?)?)?)?)?$/su;

export class TimeError extends Error {}

/** Date.UTC, but years 0-99 are those years (Date.UTC takes them as 1900-1999). */
function utc(year, month, day, h = 0, mi = 0, s = 0) {
  const date = new Date(Date.UTC(2000, 0, 1, h, mi, s));
  date.setUTCFullYear(year, month, day);
  return date.getTime();
}

export function fromIso(text) {
  if (typeof text !== "string") throw new TimeError("not a string");
  const m = ISO.exec(text);
  if (!m) throw new TimeError(`Invalid isoformat string: '${text}'`);
  const [y, mo, d, h = "0", mi = "0", s = "0"] = m.slice(1, 7).map((x) => x);
  const frac = (m[7] ?? "").padEnd(6, "0").slice(0, 6);
  const parts = [y, mo, d, h, mi, s].map(Number);
  if (parts[1] < 1 || parts[1] > 12 || parts[2] < 1 || parts[3] > 23 || parts[4] > 59
      || parts[5] > 59) throw new TimeError(`Invalid isoformat string: '${text}'`);
  const days = new Date(utc(parts[0], parts[1], 0)).getUTCDate();
  if (parts[2] > days) throw new TimeError(`day is out of range for month: '${text}'`);
  const base = utc(parts[0], parts[1] - 1, parts[2], parts[3], parts[4], parts[5]);
  let micros = base * 1000 + Number(frac || 0);
  const tz = m[8];
  let offset = tz === undefined ? null : 0;
  if (tz && tz !== "Z") {
    const t = /^([+-])(\d{2}):?(\d{2})?:?(\d{2})?/.exec(tz);
    offset = (Number(t[2]) * 3600 + Number(t[3] ?? 0) * 60 + Number(t[4] ?? 0)) * 1e6;
    if (t[1] === "-") offset = -offset;
    micros -= offset;
  }
  return { micros, aware: tz !== undefined, offset, text };
}

// A session's start and stop as the central system writes them (settlement/worker.py:
// datetime.astimezone(UTC).isoformat()), and nothing else (settlement/receipts.py
// session_time): fromIso reads forms Python does not and Python reads others (ISO week
// dates), so the two verifiers would time a session differently.
const SESSION_TIME = /^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{6})?\+00:00$/;

/** A record's started_at or stopped_at: YYYY-MM-DDTHH:MM:SS[.ffffff]+00:00 of a real day
 * and time (year 1 on, Python's first), else TimeError. */
export function fromSessionTime(text) {
  if (typeof text !== "string" || !SESSION_TIME.test(text)) {
    throw new TimeError("is not a time as the central system writes it (YYYY-MM-DDTHH:MM:SS[.ffffff]+00:00)");
  }
  let time;
  try {
    time = fromIso(text);
  } catch {
    time = null;
  }
  if (time === null || Number(text.slice(0, 4)) < 1) throw new TimeError("is no day and time of the calendar");
  return time;
}

/** Python's comparison: naive against aware is a TypeError. */
export function cmpTimes(a, b) {
  if (a.aware !== b.aware) throw new TimeError("can't compare offset-naive and offset-aware datetimes");
  return a.micros - b.micros;
}

/** Python's isoformat() of a parsed time: at its own offset, written +HH:MM (for messages). */
export function isoformat(t) {
  const offset = t.offset ?? 0;
  const local = t.micros + offset;
  const date = new Date(Math.floor(local / 1000));
  const micros = ((local % 1e6) + 1e6) % 1e6;
  const base = date.toISOString().slice(0, 19);
  const frac = micros ? `.${String(micros).padStart(6, "0")}` : "";
  if (!t.aware) return `${base}${frac}`;
  const abs = Math.abs(offset) / 1e6;
  const two = (n) => String(Math.floor(n)).padStart(2, "0");
  const seconds = abs % 60 ? `:${two(abs % 60)}` : "";
  return `${base}${frac}${offset < 0 ? "-" : "+"}${two(abs / 3600)}:${two((abs % 3600) / 60)}${seconds}`;
}
