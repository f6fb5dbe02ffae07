// JSON text exactly as Python's `json.dumps(value, ensure_ascii=False)` writes it, so the
// command line's output can be diffed with `irde route`: ", " and ": " separators, floats
// in Python's repr (1e-05, 0.5, 1.0), integers without a decimal point.

/** Python's repr of a float (shortest round-trip digits, Python's exponent rules). */
export function pyFloat(x) {
  if (Number.isNaN(x)) return "NaN";
  if (x === Infinity) return "Infinity";
  if (x === -Infinity) return "-Infinity";
  if (x === 0) return Object.is(x, -0) ? "-0.0" : "0.0";
  // toExponential() without an argument gives the shortest digits that round-trip
  const [mant, expText] = x.toExponential().split("e");
  const exp = Number(expText);
  const sign = mant.startsWith("-") ? "-" : "";
  const digits = mant.replace("-", "").replace(".", "");
  if (exp < -4 || exp >= 16) {
    const m = digits.length > 1 ? `${digits[0]}.${digits.slice(1)}` : digits;
    const e = Math.abs(exp) < 10 ? `0${Math.abs(exp)}` : `${Math.abs(exp)}`;
    return `${sign}${m}e${exp < 0 ? "-" : "+"}${e}`;
  }
  if (exp < 0) return `${sign}0.${"0".repeat(-exp - 1)}${digits}`;
  const intPart = digits.slice(0, exp + 1).padEnd(exp + 1, "0");
  const frac = digits.slice(exp + 1) || "0";
  return `${sign}${intPart}.${frac}`;
}

/** A float-typed value: written with a decimal point even when integral (Python float). */
export class PyFloat {
  constructor(value) {
    this.value = value;
  }
}

function pyString(s) {
  // JSON.stringify escapes the same characters as Python's ensure_ascii=False output
  return JSON.stringify(s);
}

/** Serialise like Python's json.dumps(ensure_ascii=False); wrap floats in PyFloat. */
export function pyJson(value) {
  if (value === null || value === undefined) return "null";
  if (value instanceof PyFloat) return pyFloat(value.value);
  switch (typeof value) {
    case "boolean":
      return value ? "true" : "false";
    case "number":
      // JSON has one number type: an integral value read from JSON was an int in Python
      return Number.isInteger(value) && Math.abs(value) < 1e16 ? String(value) : pyFloat(value);
    case "bigint":
      return value.toString();
    case "string":
      return pyString(value);
    default:
      break;
  }
  if (Array.isArray(value)) return `[${value.map(pyJson).join(", ")}]`;
  // a Map keeps its insertion order even for integer-like keys (a plain object does not)
  const entries = value instanceof Map ? [...value.entries()] : Object.entries(value);
  const parts = entries.map(([k, v]) => `${pyString(k)}: ${pyJson(v)}`);
  return `{${parts.join(", ")}}`;
}

/**
 * One line of `irde route` output: {"id"?, "expert", "scores", "top", "confidence"}, scores
 * in the column order of `experts` (Python's Route.to_dict()).
 */
export function routeLine(route, experts, row) {
  const scores = new Map(experts.map((name) => [name, new PyFloat(route.scores[name])]));
  const record = new Map();
  if (row && Object.prototype.hasOwnProperty.call(row, "id")) record.set("id", row.id);
  record.set("expert", route.expert);
  record.set("scores", scores);
  record.set("top", route.top);
  const confidence = route.confidence;
  record.set("confidence", typeof confidence === "number" ? new PyFloat(confidence) : null);
  return pyJson(record);
}
