// Conformance with the Python runtime: the same token ids (each router's input view), scores,
// decisions and confidences on onnxruntime-node, and on onnxruntime-web's wasm backend (what
// a browser computes); the same decisions when a call overrides the willingness to pay; the
// same uncertainty output where the router has it.

import assert from "node:assert/strict";
import path from "node:path";
import { describe, it } from "node:test";

import { InvalidInputError, Router } from "../src/node.js";
import {
  INT8_WASM_ATOL, ROUTERS, ROUTER_NAMES, SCORE_ATOL, UNCERTAINTY_ATOL, compareRoutes, golden,
  goldenTexts, skipUnlessReady, uncertaintyDiff,
} from "./helpers.mjs";

const ready = skipUnlessReady();

describe("onnxruntime-node", ready, () => {
  for (const name of ROUTER_NAMES) {
    it(`${name}: ids equal, scores and confidences within ${SCORE_ATOL}, identical decisions`, async () => {
      const texts = await goldenTexts();
      const router = await Router.load(path.join(ROUTERS, name), { threads: 1 });
      const want = golden.routers[name];
      assert.deepEqual(router.experts, want.experts);
      assert.equal(router.view, want.view);
      assert.deepEqual(router.config.layers, want.layers);
      assert.deepEqual(router.config.policy, want.policy);
      // routers saved before the policy lack the outputs: JS decides as Python does then
      assert.equal(router.hasDecision, want.decision_outputs);
      const ids = router.encode(texts);
      assert.equal(ids.length, golden.prompts.length, "one id list per golden prompt");
      assert.equal(golden.ids[want.view].length, golden.prompts.length);
      ids.forEach((got, i) => assert.deepEqual(got, golden.ids[want.view][i], `ids of ${golden.prompts[i].name}`));
      const routes = await router.route(texts, { topK: router.experts.length });
      const { maxDiff, maxConfDiff, flips } = compareRoutes(name, routes, router.experts);
      assert.ok(maxDiff <= SCORE_ATOL, `max |score difference| ${maxDiff}`);
      assert.ok(maxConfDiff <= SCORE_ATOL, `max |confidence difference| ${maxConfDiff}`);
      assert.deepEqual(flips, []);
      await router.release();
    });
  }
});

describe("per-call willingness to pay (decided from the scores, as Python's policy.decide)", ready, () => {
  for (const [name, overrides] of Object.entries(golden.wtp ?? {})) {
    for (const backend of ["node", "wasm"]) {
      it(`${name} on ${backend}: the decisions of route(texts, { wtp }) for wtp ${overrides.map((o) => String(o.wtp)).join(", ")}`, async () => {
        const texts = await goldenTexts();
        const router = await Router.load(path.join(ROUTERS, name), { threads: 1, backend });
        for (const { wtp, experts, confidence } of overrides) {
          const routes = await router.route(texts, { wtp });
          assert.deepEqual(routes.map((r) => r.expert), experts, `wtp ${wtp}`);
          const diff = Math.max(...routes.map((r, i) => Math.abs(r.confidence - confidence[i])));
          assert.ok(diff <= SCORE_ATOL, `wtp ${wtp}: max |confidence difference| ${diff}`);
        }
        // the wtp the router stores gives the graph's own decision
        const own = await router.route(texts, { wtp: router.config.policy.wtp ?? null });
        assert.deepEqual(own.map((r) => r.expert), golden.experts[name]);
        await router.release();
      });
    }
  }
});

describe("the uncertainty output (Python's Router.uncertainty)", ready, () => {
  for (const name of ROUTER_NAMES) {
    for (const backend of ["node", "wasm"]) {
      // int8 on wasm quantises activations its own way: its features, hence widths, move
      const atol = name === "int8" && backend === "wasm" ? INT8_WASM_ATOL : UNCERTAINTY_ATOL;
      it(`${name} on ${backend}: ${golden.uncertainty?.[name] ? `within ${atol} of Python` : "absent, and asking for it throws"}`, async () => {
        const router = await Router.load(path.join(ROUTERS, name), { threads: 1, backend });
        const want = golden.uncertainty?.[name];
        assert.equal(router.hasUncertainty, want !== undefined);
        if (want === undefined) {
          await assert.rejects(router.uncertainty(["x"]), InvalidInputError);
          await assert.rejects(router.scores(["x"], { withUncertainty: true }), InvalidInputError);
          assert.equal((await router.scores(["x"])).length, 1);
          await router.release();
          return;
        }
        const texts = await goldenTexts();
        const both = await router.scores(texts, { withUncertainty: true });
        const alone = await router.uncertainty(texts);
        const diff = uncertaintyDiff(name, alone);
        assert.ok(diff <= atol, `max |uncertainty difference| ${diff}`);
        assert.deepEqual(both.uncertainty, alone, "one run gives the same as uncertainty()");
        assert.deepEqual(both.scores, await router.scores(texts));
        assert.deepEqual(await router.scores([], { withUncertainty: true }), { scores: [], uncertainty: [] });
        console.log(`# ${name} on ${backend}: max |uncertainty difference| ${diff.toExponential(2)}`);
        await router.release();
      });
    }
  }
});

describe("onnxruntime-web (wasm)", ready, () => {
  for (const name of ROUTER_NAMES.filter((n) => n !== "int8")) {
    it(`${name}: scores within ${SCORE_ATOL}, identical decisions`, async () => {
      const texts = await goldenTexts();
      const router = await Router.load(path.join(ROUTERS, name), { backend: "wasm" });
      const routes = await router.route(texts);
      const { maxDiff, maxConfDiff, flips } = compareRoutes(name, routes, router.experts);
      assert.ok(maxDiff <= SCORE_ATOL, `max |score difference| ${maxDiff}`);
      assert.ok(maxConfDiff <= SCORE_ATOL, `max |confidence difference| ${maxConfDiff}`);
      assert.deepEqual(flips, []);
      await router.release();
    });
  }

  it(`int8: scores within ${INT8_WASM_ATOL}, flips only where Python's margin is below it`, async () => {
    const texts = await goldenTexts();
    const router = await Router.load(path.join(ROUTERS, "int8"), { backend: "wasm" });
    const routes = await router.route(texts);
    const { maxDiff, maxConfDiff, confExcess, flips } = compareRoutes("int8", routes, router.experts);
    assert.ok(maxDiff <= INT8_WASM_ATOL, `max |score difference| ${maxDiff}`);
    // the calibrated softmax (small temperature) magnifies the score moves: bounded by them
    assert.ok(confExcess <= 0, `a confidence moved ${confExcess} beyond what its scores allow`);
    for (const flip of flips) {
      assert.ok(flip.margin < INT8_WASM_ATOL, `decision flipped at a margin of ${flip.margin}: ${JSON.stringify(flip)}`);
    }
    console.log(`# int8 on wasm: max |score difference| ${maxDiff.toExponential(2)}, max |confidence difference| ${maxConfDiff.toExponential(2)}, ${flips.length} flip(s) of ${texts.length}`);
    await router.release();
  });
});
