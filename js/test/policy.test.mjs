// The decision policy: the rule (decide) on fixed scores, and the router's use of the graph's
// choice/confidence or, for a per-call wtp, of decide.
// Conformance with Python's numbers on real routers is in conformance.test.mjs.

import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { Router as CoreRouter, parseConfig } from "../src/core.js";
import { InvalidInputError, decide } from "../src/node.js";
import { expf32 } from "../src/policy.js";
import { golden } from "./helpers.mjs";

const EXPERTS = ["a", "b", "c"];
const f32 = Math.fround;

function softmax(row) {
  const m = Math.max(...row);
  const e = row.map((x) => Math.exp(x - m));
  const s = e.reduce((x, y) => x + y, 0);
  return e.map((x) => x / s);
}

describe("decide (the rule of irde_onnx/decision/policy.py)", () => {
  it("domain routers: softmax(scores / temperature), argmax, confidence of the pick", () => {
    const row = [0.2, 1.5, 0.9];
    const { choice, confidence } = decide([row], "domain", { temperature: 0.5 });
    assert.deepEqual(choice, [1]);
    assert.ok(Math.abs(confidence[0] - softmax(row.map((x) => x / 0.5))[1]) < 1e-6);
    assert.equal(confidence[0], f32(confidence[0]), "float32, like the graph");
  });

  it("weighs cost against quality with wtp, and needs both to do so", () => {
    const rows = [[0.9, 0.8, 0.1]];
    const costs = [1.0, 0.0, 0.0];
    assert.deepEqual(decide(rows, "score", { costs, wtp: 100 }).choice, [0]);
    assert.deepEqual(decide(rows, "score", { costs, wtp: 2 }).choice, [1]); // 0.9 - 0.5 < 0.8
    assert.deepEqual(decide(rows, "score", { costs, wtp: null }).choice, [0]);
    assert.deepEqual(decide(rows, "score", { costs: null, wtp: 2 }).choice, [0]);
    // the confidence stays the pick's quality, not its utility
    assert.equal(decide(rows, "score", { costs, wtp: 2 }).confidence[0], f32(0.8));
  });

  it("score routers: confidence clipped to [0, 1]; ties go to the first column", () => {
    const { choice, confidence } = decide([[1.7, 0.2, 1.7], [-0.5, -0.9, -2]], "score");
    assert.deepEqual(choice, [0, 0]);
    assert.deepEqual(confidence, [1, 0]);
  });

  it("sends unsure prompts to the fallback only with a threshold", () => {
    const rows = [[0.4, 0.35, 0.25], [0.9, 0.05, 0.05]];
    const settings = { minConfidence: 0.5, fallback: 2 };
    assert.deepEqual(decide(rows, "score", settings).choice, [2, 0]);
    assert.deepEqual(decide(rows, "score", { ...settings, minConfidence: 0 }).choice, [0, 0]);
  });
});

describe("expf32 (numpy's float32 exp on x86-64)", () => {
  it("is exp within an ulp, with numpy's limits", () => {
    for (const x of [-20, -3.5, -1, -0.1, 0, 0.5, 1, 10, 80]) {
      const want = Math.exp(x);
      assert.ok(Math.abs(expf32(f32(x)) - want) <= 2 ** -22 * want, `exp(${x})`);
    }
    assert.equal(expf32(0), 1);
    assert.equal(expf32(89), Infinity);
    assert.equal(expf32(-104), 0);
    assert.ok(Number.isNaN(expf32(NaN)));
  });
});

// router.json's policy checks (Policy.from_dict and check) and parseConfig's policy, view and
// layers checks run on the cases Python wrote: checks.test.mjs, conformance/*_cases.json.

const BASE = {
  format_version: 1, experts: EXPERTS, expert_modes: ["pooled", "pooled", "pooled"],
  encoder: "static", precision: "fp16", strategy: "vote", target: "domain", lam: 1,
  max_length: 16, feature_dim: 384, fingerprint: "x", package_version: "0",
};
const config = (extra) => JSON.stringify({ ...BASE, ...extra });

// A router on a stand-in session: the graph's outputs are given, so the host's part is tested
function fakeRouter({ policy = {}, target = "domain", scores, decision = null }) {
  const parsed = parseConfig(config({ target, policy }));
  const ort = { Tensor: class { constructor(type, data, dims) { Object.assign(this, { type, data, dims }); } } };
  const outputNames = decision ? ["scores", "choice", "confidence"] : ["scores"];
  const session = {
    outputNames,
    calls: [],
    async run(feeds, names) {
      const n = feeds.input_ids.dims[0];
      this.calls.push(names);
      const rows = scores.slice(0, n);
      const out = { scores: { dims: [n, EXPERTS.length], data: Float32Array.from(rows.flat()) } };
      if (names.includes("choice")) {
        out.choice = { data: BigInt64Array.from(decision.choice.slice(0, n).map(BigInt)) };
        out.confidence = { data: Float32Array.from(decision.confidence.slice(0, n)) };
      }
      return out;
    },
  };
  const tokenizer = { encode: () => [1, 2], padId: 0 };
  return new CoreRouter({ ...parsed, tokenizer, session, ort, source: "fake", graphName: "router.onnx", backend: "node" });
}

describe("Router.route with the policy", () => {
  const scores = [[0.1, 2.0, 1.9], [3.0, 0.0, 0.0]];

  it("takes expert and confidence from the graph's choice and confidence", async () => {
    const router = fakeRouter({ scores, decision: { choice: [2, 0], confidence: [0.25, 0.75] } });
    const routes = await router.route(["x", "y"], { batchSize: 2 });
    assert.deepEqual(routes.map((r) => [r.expert, r.top[0], r.confidence]), [["c", "b", 0.25], ["a", "a", 0.75]]);
    assert.deepEqual(Object.keys(routes[0]), ["expert", "scores", "top", "confidence"]);
  });

  it("decides itself for a graph without those outputs (routers saved before the policy)", async () => {
    const router = fakeRouter({ scores, policy: { temperature: 2 } });
    const routes = await router.route(["x", "y"], { batchSize: 2 });
    const want = decide(scores, "domain", { temperature: 2 });
    assert.deepEqual(routes.map((r) => r.expert), want.choice.map((j) => EXPERTS[j]));
    assert.deepEqual(routes.map((r) => r.confidence), want.confidence);
  });

  it("decides from the scores when a call gives wtp", async () => {
    const policy = { costs: { a: 0, b: 1, c: 0 }, wtp: 100 };
    const router = fakeRouter({ scores, policy, decision: { choice: [1, 0], confidence: [0.5, 0.9] } });
    const cheap = await router.route(["x"], { wtp: 0.5 });
    assert.equal(cheap[0].expert, "c"); // b's cost outweighs its small lead at this wtp
    assert.deepEqual(router.session.calls.at(-1), ["scores"]);
    const quality = await router.route(["x"], { wtp: null });
    assert.equal(quality[0].expert, "b");
    assert.deepEqual(router.decide([scores[0]], { wtp: 0.5 }).choice, [2]);
    assert.deepEqual(router.decide([scores[0]]).choice, [1]); // the router's own wtp
  });

  it("refuses a bad wtp, and a wtp without costs", async () => {
    const withCosts = fakeRouter({ scores, policy: { costs: { a: 0, b: 1, c: 0 } } });
    await assert.rejects(withCosts.route(["x"], { wtp: 0 }), (e) => e instanceof InvalidInputError &&
      /wtp must be a finite number > 0, got 0/.test(e.message));
    await assert.rejects(withCosts.route(["x"], { wtp: Infinity }), InvalidInputError);
    const noCosts = fakeRouter({ scores });
    await assert.rejects(noCosts.route(["x"], { wtp: 1 }), /wtp needs costs: this router has none/);
    await assert.rejects(noCosts.route([], { wtp: 1 }), /wtp needs costs/);
    assert.deepEqual(await noCosts.route(["x"], { wtp: null }).then((r) => r.length), 1);
    assert.throws(() => noCosts.decide([[1, 2]]), /scores must be rows of 3 numbers/);
  });
});

describe("decide against Python's policy.decide (golden.json)", () => {
  const cases = golden.decide ?? [];
  it("every case: the same choices and confidences, to the bit", () => {
    // conformance/make_golden.py always writes them: an empty list is a broken golden file, not a skip
    assert.ok(cases.length > 0, "golden.json has no decide cases: run conformance/generate.py --only golden");
    for (const c of cases) {
      const got = decide(c.scores, c.target, {
        costs: c.costs, wtp: c.wtp, temperature: c.temperature,
        minConfidence: c.min_confidence, fallback: c.fallback,
      });
      assert.deepEqual(got.choice, c.choice, c.name);
      assert.deepEqual(got.confidence, c.confidence, c.name);
    }
  });
});
