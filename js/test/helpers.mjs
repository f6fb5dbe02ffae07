// Shared by the tests: the golden file, its prompts' texts, and the routers it was made with.

import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

export const JS_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
export const REPO = path.resolve(JS_ROOT, "..");
export const CONFORMANCE = path.join(REPO, "conformance");
export const golden = JSON.parse(readFileSync(path.join(CONFORMANCE, "golden.json"), "utf8"));
export const ROUTERS = process.env.IRDE_JS_ROUTERS ?? path.join(JS_ROOT, "test", "routers");
export const SHARED_DATA = process.env.IRDE_SHARED_DATA ??
  path.resolve(REPO, "..", "shared", "data");
export const ROUTER_NAMES = Object.keys(golden.routers);
// Static and fp32 graphs compute the same float32 arithmetic in every onnxruntime build: what
// README documents for wasm (measured on the golden prompts: scores 3.6e-7, confidences 7.7e-7
// at most, fp32 router; onnxruntime-node gives Python's exact numbers). generate.py --check
// holds the Python runtime on another CPU to golden.json within the same 1e-6.
export const SCORE_ATOL = 1e-6;
// the uncertainty output against Python's (float32 through a 32-d subspace and a norm)
export const UNCERTAINTY_ATOL = 1e-5;

/** The largest |difference| between rows of uncertainty and golden.json's for a router. */
export function uncertaintyDiff(name, rows) {
  const want = golden.uncertainty[name];
  if (rows.length !== want.length) throw new Error(`${rows.length} rows for ${want.length} prompts`);
  let max = 0;
  rows.forEach((row, i) => {
    if (row.length !== want[i].length) throw new Error(`row ${i}: ${row.length} experts`);
    want[i].forEach((w, j) => { max = Math.max(max, Math.abs(row[j] - w)); });
  });
  return max;
}
// The wasm int8 kernels (DynamicQuantizeLinear + MatMulInteger) round differently from the
// native CPU ones: scores may move by up to this much, and a decision may flip only where
// Python's margin between the two experts is below it.
export const INT8_WASM_ATOL = 0.05;


/** Why the conformance tests cannot run here, or null (in CI a missing input fails). */
export function missingInputs() {
  const lacking = ROUTER_NAMES.map((n) => path.join(ROUTERS, n, "router.json")).filter((f) => !existsSync(f));
  if (lacking.length) {
    return `routers missing (${lacking[0]}): run .venv/bin/python -m conformance.generate --only golden --routers ${ROUTERS}`;
  }
  if (golden.prompts.some((p) => p.source) && !existsSync(SHARED_DATA)) {
    return `${SHARED_DATA} is missing: set IRDE_SHARED_DATA`;
  }
  return null;
}

/** The skip option of node:test, or a throw when CI must not skip. */
export function skipUnlessReady() {
  const why = missingInputs();
  if (why && process.env.CI) throw new Error(why);
  return why ? { skip: why } : {};
}

// Headless Chromium for the page tests: Debian's headless shell or chromium (CHROMIUM_PATH wins)
const CHROMIUM_CANDIDATES = [
  process.env.CHROMIUM_PATH, "/usr/bin/chromium-headless-shell", "/usr/bin/chromium",
  "/usr/lib/chromium/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome",
].filter(Boolean);
export const CHROMIUM_PATH = CHROMIUM_CANDIDATES.find((p) => existsSync(p));
// as root on a closed network: no sandbox, and none of Chromium's background connections
export const CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync"];

/** skipUnlessReady, and Chromium found: the skip option of a page test (a throw under CI). */
export function browserSkip() {
  const ready = skipUnlessReady();
  if (ready.skip) return ready;
  if (!CHROMIUM_PATH) {
    const why = "no Chromium found: apt-get install chromium-headless-shell (or set CHROMIUM_PATH)";
    if (process.env.CI) throw new Error(why);
    return { skip: why };
  }
  return {};
}

/** Content types of the files the test pages' static servers send. */
export const MIME_TYPES = {
  ".html": "text/html; charset=utf-8", ".js": "text/javascript", ".mjs": "text/javascript",
  ".wasm": "application/wasm", ".json": "application/json",
};

let cachedTexts = null;
/** The text of every golden prompt (data prompts read from ../shared/data, sha256 checked). */
export async function goldenTexts() {
  if (cachedTexts) return cachedTexts;
  const { createHash } = await import("node:crypto");
  const files = new Map();
  cachedTexts = golden.prompts.map((p) => {
    if (!p.source) return p.text;
    if (!files.has(p.source)) {
      const rows = readFileSync(path.join(SHARED_DATA, p.source), "utf8").split("\n").filter((l) => l.trim());
      files.set(p.source, new Map(rows.map((l) => JSON.parse(l)).map((r) => [r.id, r.text])));
    }
    const text = files.get(p.source).get(p.id);
    const digest = text === undefined ? null : createHash("sha256").update(text, "utf8").digest("hex");
    if (digest !== p.sha256) throw new Error(`${p.source} id ${p.id} changed since golden.json was written`);
    return text;
  });
  return cachedTexts;
}

/**
 * Compare routes with the golden scores, decisions and confidences of one router; returns
 * the figures: maxDiff (scores), maxConfDiff (confidences), flips (other decisions), and
 * confExcess: how far a confidence moved beyond what its scores' move allows (softmax with
 * temperature T moves by at most 2 max|score move| / T; a score's clip by at most its move).
 * Throws first unless there is one route per golden prompt, each scoring exactly `experts`
 * (the golden router's experts), so a host that drops or adds results cannot pass.
 */
export function compareRoutes(name, routes, experts) {
  const want = golden.scores[name];
  const policy = golden.routers[name].policy ?? {};
  const domain = golden.routers[name].target !== "score";
  assert.deepEqual(experts, golden.routers[name].experts, `${name}: the experts`);
  assert.equal(want.length, golden.prompts.length, `${name}: golden.json has a row per prompt`);
  assert.equal(routes.length, want.length, `${name}: one route per golden prompt`);
  routes.forEach((route, i) => {
    assert.deepEqual(Object.keys(route.scores), experts, `${name}: the scores of route ${i}`);
  });
  let maxDiff = 0;
  let maxConfDiff = 0;
  let confExcess = 0;
  const flips = [];
  routes.forEach((route, i) => {
    let rowDiff = 0;
    experts.forEach((e, j) => { rowDiff = Math.max(rowDiff, Math.abs(route.scores[e] - want[i][j])); });
    maxDiff = Math.max(maxDiff, rowDiff);
    const confDiff = Math.abs(route.confidence - golden.confidence[name][i]);
    maxConfDiff = Math.max(maxConfDiff, confDiff);
    if (route.expert !== golden.experts[name][i]) {
      const py = want[i];
      const margin = py[experts.indexOf(golden.experts[name][i])] - py[experts.indexOf(route.expert)];
      flips.push({ prompt: golden.prompts[i].name, python: golden.experts[name][i], js: route.expert, margin });
    } else {
      const bound = domain ? (2 * rowDiff) / (policy.temperature ?? 1) : rowDiff;
      confExcess = Math.max(confExcess, confDiff - bound - 1e-6);
    }
  });
  return { maxDiff, maxConfDiff, confExcess, flips };
}
