// Conformance with the Python runtime: the same token ids, scores and decisions on
// onnxruntime-node, and on onnxruntime-web's wasm backend (what a browser computes).

import assert from "node:assert/strict";
import path from "node:path";
import { describe, it } from "node:test";

import { Router } from "../src/node.js";
import {
  INT8_WASM_ATOL, ROUTERS, ROUTER_NAMES, SCORE_ATOL, compareRoutes, golden, goldenTexts,
  skipUnlessReady,
} from "./helpers.mjs";

const ready = skipUnlessReady();

describe("onnxruntime-node", ready, () => {
  for (const name of ROUTER_NAMES) {
    it(`${name}: ids equal, scores within ${SCORE_ATOL}, identical decisions`, async () => {
      const texts = await goldenTexts();
      const router = await Router.load(path.join(ROUTERS, name), { threads: 1 });
      assert.deepEqual(router.experts, golden.routers[name].experts);
      const ids = router.encode(texts);
      ids.forEach((got, i) => assert.deepEqual(got, golden.ids[i], `ids of ${golden.prompts[i].name}`));
      const routes = await router.route(texts, { topK: router.experts.length });
      const { maxDiff, flips } = compareRoutes(name, routes, router.experts);
      assert.ok(maxDiff <= SCORE_ATOL, `max |score difference| ${maxDiff}`);
      assert.deepEqual(flips, []);
      await router.release();
    });
  }
});

describe("onnxruntime-web (wasm)", ready, () => {
  for (const name of ["static", "fp32"]) {
    it(`${name}: scores within ${SCORE_ATOL}, identical decisions`, async () => {
      const texts = await goldenTexts();
      const router = await Router.load(path.join(ROUTERS, name), { backend: "wasm" });
      const routes = await router.route(texts);
      const { maxDiff, flips } = compareRoutes(name, routes, router.experts);
      assert.ok(maxDiff <= SCORE_ATOL, `max |score difference| ${maxDiff}`);
      assert.deepEqual(flips, []);
      await router.release();
    });
  }

  it(`int8: scores within ${INT8_WASM_ATOL}, flips only where Python's margin is below it`, async () => {
    const texts = await goldenTexts();
    const router = await Router.load(path.join(ROUTERS, "int8"), { backend: "wasm" });
    const routes = await router.route(texts);
    const { maxDiff, flips } = compareRoutes("int8", routes, router.experts);
    assert.ok(maxDiff <= INT8_WASM_ATOL, `max |score difference| ${maxDiff}`);
    for (const flip of flips) {
      assert.ok(flip.margin < INT8_WASM_ATOL, `decision flipped at a margin of ${flip.margin}: ${JSON.stringify(flip)}`);
    }
    console.log(`# int8 on wasm: max |score difference| ${maxDiff.toExponential(2)}, ${flips.length} flip(s) of ${texts.length}`);
    await router.release();
  });
});
