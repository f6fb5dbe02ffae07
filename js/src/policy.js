// The decision rule, the port of irde_onnx/decision/policy.py: router.json's `policy` object, its
// checks, and `decide`, which the graph computes as its outputs `choice` and `confidence`
// and which a host computes itself from `scores` when a call overrides the willingness to
// pay (or the graph predates those outputs):
//
// * quality q: score routers: the scores as they are; domain routers:
//   softmax(scores / temperature);
// * utility u = q - cost / wtp (no wtp or no costs: u = q); the pick is argmax u (first of ties);
// * confidence = the pick's q (clipped to [0, 1] for score routers);
// * choice = the fallback expert when confidence < min_confidence, else the pick.
//
// Everything is float32 arithmetic (Math.fround after each step) in numpy's order, with
// numpy's float32 exp, so the choice and the confidence are Python's to the bit (on x86-64,
// where numpy uses its SIMD exp; elsewhere numpy calls libm's expf: within an ulp).

import { InvalidInputError } from "./errors.js";
import { SPEC } from "./spec.js";

/** The graph outputs that hold the decision (graphs saved before the policy lack them). */
export const DECISION_OUTPUTS = SPEC.runtime.decision_outputs;
// router.json's policy fields and their defaults (Python's Policy dataclass, via spec.js)
const FIELDS = SPEC.policy.fields;
const DEFAULTS = SPEC.policy.defaults;
const f32 = Math.fround;

/** True when a session's output names include `choice` and `confidence`. */
export function hasDecisionOutputs(outputNames) {
  const names = new Set(outputNames);
  return DECISION_OUTPUTS.every((n) => names.has(n));
}

function isNumber(value) {
  return typeof value === "number" && Number.isFinite(value);
}

function isPlainObject(value) {
  return value !== null && typeof value === "object" && !Array.isArray(value);
}

/** Python's repr of a JSON value, for messages that read like the Python runtime's. */
export function pyRepr(value) {
  if (value === null || value === undefined) return "None";
  if (value === true) return "True";
  if (value === false) return "False";
  if (typeof value === "string") return `'${value.replaceAll("\\", "\\\\").replaceAll("'", "\\'")}'`;
  if (typeof value === "number") {
    if (Number.isInteger(value) && Math.abs(value) < 1e16) return String(value);
    return String(value);
  }
  if (Array.isArray(value)) return `[${value.map(pyRepr).join(", ")}]`;
  return `{${Object.entries(value).map(([k, v]) => `${pyRepr(k)}: ${pyRepr(v)}`).join(", ")}}`;
}

function positive(value, what) {
  if (!isNumber(value) || value <= 0) {
    throw new InvalidInputError(`${what} must be a finite number > 0, got ${pyRepr(value)}`);
  }
  return value;
}

/** A willingness to pay: null (quality only) or a finite number > 0. */
export function checkWtp(value, what = "wtp") {
  return value === null || value === undefined ? null : positive(value, what);
}

/** A confidence threshold in [0, 1]. */
export function checkMinConfidence(value, what = "min_confidence") {
  if (!isNumber(value) || value < 0 || value > 1) {
    throw new InvalidInputError(`${what} must be a number in [0, 1], got ${pyRepr(value)}`);
  }
  return value;
}

function checkCost(value, name) {
  if (!isNumber(value) || value < 0) {
    throw new InvalidInputError(
      `the cost of ${pyRepr(name)} must be a finite number >= 0, got ${pyRepr(value)}`,
    );
  }
  return value;
}

/** {expert: cost} with every cost a finite number >= 0. */
export function checkCosts(costs, source = "costs") {
  if (!isPlainObject(costs) || !Object.keys(costs).length) {
    throw new InvalidInputError(`${source} must be a non-empty object {expert: cost}`);
  }
  return Object.fromEntries(Object.entries(costs).map(([k, v]) => [k, checkCost(v, k)]));
}

function isEmpty(data) {
  // Python's `if not data`: None, {}, [], "", 0 and False all mean "no policy"
  if (data === null || data === undefined || data === false || data === 0 || data === "") return true;
  if (Array.isArray(data)) return data.length === 0;
  return isPlainObject(data) && Object.keys(data).length === 0;
}

/**
 * Parse router.json's `policy` object (Python's Policy.from_dict); raises InvalidInputError.
 * @returns {{costs: Record<string, number>|null, wtp: number|null, minConfidence: number,
 *   fallback: string|null, temperature: number, calibration: Record<string, number[]>|null}}
 */
export function parsePolicy(data, source = "policy") {
  if (isEmpty(data)) {
    return Object.freeze({
      costs: DEFAULTS.costs, wtp: DEFAULTS.wtp, minConfidence: DEFAULTS.min_confidence,
      fallback: DEFAULTS.fallback, temperature: DEFAULTS.temperature, calibration: DEFAULTS.calibration,
    });
  }
  if (!isPlainObject(data)) throw new InvalidInputError(`${source} must be a JSON object`);
  const unknown = Object.keys(data).filter((k) => !FIELDS.includes(k)).sort();
  if (unknown.length) throw new InvalidInputError(`${source} has unknown field(s) ${pyRepr(unknown)}`);
  let costs = data.costs ?? null;
  if (costs !== null) costs = checkCosts(costs, `${source}.costs`);
  let calibration = data.calibration ?? null;
  if (calibration !== null) {
    if (!isPlainObject(calibration) || !Object.values(calibration).every(
      (v) => Array.isArray(v) && v.length === 2 && v.every(isNumber))) {
      throw new InvalidInputError(`${source}.calibration must map expert names to [scale, offset]`);
    }
    calibration = Object.fromEntries(Object.entries(calibration).map(([k, v]) => [k, [...v]]));
  }
  const fallback = data.fallback ?? null;
  if (fallback !== null && typeof fallback !== "string") {
    throw new InvalidInputError(`${source}.fallback must be an expert name`);
  }
  return Object.freeze({
    costs,
    wtp: checkWtp(data.wtp, `${source}.wtp`),
    minConfidence: checkMinConfidence(
      "min_confidence" in data ? data.min_confidence : DEFAULTS.min_confidence,
      `${source}.min_confidence`),
    fallback,
    temperature: positive("temperature" in data ? data.temperature : DEFAULTS.temperature,
      `${source}.temperature`),
    calibration,
  });
}

/** Raise InvalidInputError when a parsed policy does not fit the experts (Policy.check). */
export function checkPolicy(policy, experts, source = "policy") {
  if (policy.costs !== null) {
    const names = Object.keys(policy.costs);
    const missing = experts.filter((e) => !names.includes(e)).sort();
    const extra = names.filter((e) => !experts.includes(e)).sort();
    if (missing.length || extra.length) {
      throw new InvalidInputError(
        `${source}.costs must name every expert once: missing ${pyRepr(missing)}, unknown ${pyRepr(extra)}`,
      );
    }
  }
  if (policy.fallback !== null && !experts.includes(policy.fallback)) {
    throw new InvalidInputError(
      `${source}.fallback ${pyRepr(policy.fallback)} is not an expert (${pyRepr(experts)})`,
    );
  }
  if (policy.minConfidence > 0 && policy.fallback === null) {
    throw new InvalidInputError(
      `${source}.min_confidence needs a fallback expert to send unsure prompts to`,
    );
  }
  if (policy.calibration !== null) {
    const extra = Object.keys(policy.calibration).filter((e) => !experts.includes(e)).sort();
    if (extra.length) {
      throw new InvalidInputError(
        `${source}.calibration names experts the router does not have: ${pyRepr(extra)}`,
      );
    }
  }
}

// numpy's float32 exp on x86-64 (the AVX2/AVX512F kernel of numpy/_core/src/umath/
// loops_exponent_log.dispatch.c.src): Cody-Waite reduction, a rational polynomial, each
// step rounded to float32 with fused multiply-adds. Math.exp rounded to float32 differs from
// it in the last bit for about a third of inputs, which would change the confidence's repr.
const LOG2E = f32(1.442695040888963407359924681001892137);
const CODY_WAITE_HIGH = f32(-6.93145752e-1);
const CODY_WAITE_LOW = f32(-1.42860677e-6);
const EXP_P = [
  9.999999999980870924916e-01, 7.257664613233124478488e-01, 2.473615434895520810817e-01,
  5.114512081637298353406e-02, 6.757896990527504603057e-03, 5.082762527590693718096e-04,
].map(f32);
const EXP_Q = [1.0, -2.742335390411667452936e-01, 2.159509375685829852307e-02].map(f32);

// float32 a * b + c with one rounding (a * b is exact in float64)
function fma32(a, b, c) {
  return f32(a * b + c);
}

function roundHalfEven(x) {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** numpy's float32 exp (x86-64 SIMD kernel) of a float32 value. */
export function expf32(x) {
  if (Number.isNaN(x)) return x;
  if (x >= 88.72283935546875) return Infinity;
  if (x <= -103.97208404541015625) return 0;
  const k = roundHalfEven(f32(x * LOG2E));
  let y = fma32(k, CODY_WAITE_HIGH, x);
  y = fma32(k, CODY_WAITE_LOW, y);
  let num = fma32(EXP_P[5], y, EXP_P[4]);
  for (let i = 3; i >= 0; i--) num = fma32(num, y, EXP_P[i]);
  const den = fma32(fma32(EXP_Q[2], y, EXP_Q[1]), y, EXP_Q[0]);
  return f32(f32(num / den) * 2 ** k);
}

// numpy's float32 sum along a row (pairwise_sum in numpy/_core/src/umath/loops_utils.h)
function pairwiseSum(a, start, n) {
  if (n < 8) {
    let res = 0;
    for (let i = 0; i < n; i++) res = f32(res + a[start + i]);
    return res;
  }
  if (n <= 128) {
    const r = a.slice(start, start + 8).map(f32);
    let i = 8;
    for (; i < n - (n % 8); i += 8) {
      for (let j = 0; j < 8; j++) r[j] = f32(r[j] + a[start + i + j]);
    }
    let res = f32(f32(f32(r[0] + r[1]) + f32(r[2] + r[3])) + f32(f32(r[4] + r[5]) + f32(r[6] + r[7])));
    for (; i < n; i++) res = f32(res + a[start + i]);
    return res;
  }
  let n2 = Math.floor(n / 2);
  n2 -= n2 % 8;
  return f32(pairwiseSum(a, start, n2) + pairwiseSum(a, start + n2, n - n2));
}

/** Predicted quality of each expert from one row of scores (float32). */
export function quality(row, target, temperature = 1) {
  const s = Float32Array.from(row);
  if (target !== "domain") return s;
  const inv = f32(1 / temperature);
  const z = s.map((x) => f32(x * inv));
  let max = -Infinity;
  for (const x of z) if (x > max) max = x;
  const e = z.map((x) => expf32(f32(x - max)));
  const sum = pairwiseSum(e, 0, e.length);
  return e.map((x) => f32(x / sum));
}

/**
 * The decision rule on rows of scores (Python's policy.decide).
 * @param {ArrayLike<number>[]} scores one row (n_experts) per prompt
 * @param {"domain"|"score"} target
 * @param {{costs?: ArrayLike<number>|null, wtp?: number|null, temperature?: number,
 *   minConfidence?: number, fallback?: number|null}} [settings] costs in column order,
 *   fallback a column index
 * @returns {{choice: number[], confidence: number[]}}
 */
export function decide(scores, target, { costs = null, wtp = null, temperature = 1,
  minConfidence = 0, fallback = null } = {}) {
  const penalty = costs !== null && wtp !== null
    ? Array.from(costs, (c) => f32(f32(c) * f32(1 / wtp)))
    : null;
  const threshold = f32(minConfidence);
  const choice = [];
  const confidence = [];
  for (const row of scores) {
    const q = quality(row, target, temperature);
    let pick = 0;
    let best = -Infinity;
    q.forEach((value, j) => {
      const u = penalty ? f32(value - penalty[j]) : value;
      if (u > best || (Number.isNaN(u) && !Number.isNaN(best))) {
        best = u;
        pick = j;
      }
    });
    let conf = q[pick];
    if (target !== "domain") conf = Math.min(Math.max(conf, 0), 1);
    if (fallback !== null && minConfidence > 0 && conf < threshold) pick = fallback;
    choice.push(pick);
    confidence.push(conf);
  }
  return { choice, confidence };
}
