// router.json and policy checks against Python's: every case of conformance/
// router_json_cases.json and policy_cases.json (written by conformance/generate.py from
// RouterConfig.from_json, Policy.from_dict and Policy.check) gives the same error type and
// message in JS, or the JS message the case records where the hosts differ; and the tables
// the package ships (src/spec.js) are conformance/spec.json's.

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import path from "node:path";
import { describe, it } from "node:test";

import {
  ALLOWED_OPS, CONFIG_FILE, ENCODER_SPECS, FORMAT_VERSIONS, SIZE_INPUTS, SLACK_BYTES, parseConfig,
} from "../src/core.js";
import { DEFAULT_VIEW, TAIL_CHARS_PER_TOKEN, VIEWS } from "../src/views.js";
import { checkPolicy, parsePolicy } from "../src/policy.js";
import { SPEC } from "../src/spec.js";
import { CONFORMANCE } from "./helpers.mjs";

const read = (name) => JSON.parse(readFileSync(path.join(CONFORMANCE, name), "utf8"));
const routerJson = read("router_json_cases.json");
const policyCases = read("policy_cases.json");

/** {error, message} of a thrown error, or {error: null, result} */
function outcome(run) {
  try {
    return { error: null, result: run() };
  } catch (err) {
    if (!err?.name?.endsWith("Error") || !("message" in err)) throw err;
    return { error: err.name, message: err.message };
  }
}

/** Assert a JS outcome matches a case's expectation (Python's, or the case's "js" override). */
function assertSame(got, want, js, compare) {
  const expected = { ...want, ...(js ?? {}) };
  assert.equal(got.error, expected.error, `error ${got.error}: ${got.message}`);
  if (expected.error === null) return;
  if (compare === "prefix") assert.ok(got.message.startsWith(expected.message), got.message);
  else assert.equal(got.message, expected.message);
}

describe("src/spec.js (the tables of the Python package)", () => {
  it("is conformance/spec.json", () => {
    assert.deepEqual(JSON.parse(JSON.stringify(SPEC)), read("spec.json"));
  });

  it("is what core.js, views.js and policy.js use", () => {
    assert.deepEqual(FORMAT_VERSIONS, SPEC.router_json.readable_versions);
    assert.equal(CONFIG_FILE, SPEC.router_json.file);
    assert.deepEqual(Object.keys(ENCODER_SPECS), Object.keys(SPEC.encoders));
    for (const [name, e] of Object.entries(SPEC.encoders)) {
      assert.deepEqual(ENCODER_SPECS[name], {
        featureDim: e.feature_dim, precisions: e.precisions, strategies: e.strategies,
        pooled: e.pooled, layers: e.layers, tokenWeights: e.token_weights, fixedWeights: e.fixed_weights,
      });
    }
    assert.deepEqual(ALLOWED_OPS, SPEC.graph_rules.allowed_ops);
    assert.deepEqual(SIZE_INPUTS, SPEC.graph_rules.size_inputs);
    assert.equal(SLACK_BYTES, SPEC.graph_rules.slack_bytes);
    assert.deepEqual(Object.keys(VIEWS), SPEC.views.names);
    assert.equal(DEFAULT_VIEW, SPEC.views.default);
    assert.equal(TAIL_CHARS_PER_TOKEN, SPEC.views.tail_chars_per_token);
  });
});

describe("conformance/router_json_cases.json (Python's RouterConfig.from_json)", () => {
  assert.ok(routerJson.cases.length > 0);
  for (const c of routerJson.cases) {
    it(c.name, () => {
      const got = outcome(() => parseConfig(c.text, routerJson.source));
      assertSame(got, c, c.js, c.compare);
      if (c.error === null) {
        const { config } = got.result;
        assert.deepEqual({ view: config.view, layers: config.layers, policy: config.policy }, c.result);
      }
    });
  }
});

describe("conformance/policy_cases.json (Python's Policy.from_dict and Policy.check)", () => {
  const { experts } = policyCases;
  for (const c of policyCases.cases) {
    it(c.name, () => {
      const parsed = outcome(() => parsePolicy(c.policy, "policy"));
      assertSame(parsed, c.parse, c.js?.parse);
      if (c.parse.error !== null) return;
      const p = parsed.result;
      assert.deepEqual(
        { costs: p.costs, wtp: p.wtp, min_confidence: p.minConfidence, fallback: p.fallback,
          temperature: p.temperature, calibration: p.calibration },
        c.parse.result,
      );
      assertSame(outcome(() => checkPolicy(p, experts, "policy")), c.check, c.js?.check);
    });
  }
});
