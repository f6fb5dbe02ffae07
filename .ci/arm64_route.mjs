// Node side of .ci/arm64: route the conformance prompts with the demo routers, one thread,
// and write what .ci/arm64_compare.py compares (the JSON of its Python `route` command).
//   node .ci/arm64_route.mjs ROUTERS PROMPTS.json OUT.json

import { readFileSync, writeFileSync } from "node:fs";
import { arch } from "node:process";

const t0 = performance.now();
const { Router } = await import("../js/src/node.js");
const [routers, promptsFile, out] = process.argv.slice(2);
const record = JSON.parse(readFileSync(promptsFile, "utf8"));
const result = { host: "node", machine: arch, routers: {}, import_s: (performance.now() - t0) / 1000 };
for (const [name, subset] of Object.entries(record.subsets)) {
  const t = performance.now();
  const texts = subset.map((i) => record.texts[i]);
  const router = await Router.load(`${routers}/${name}`, { threads: 1 });
  const routes = await router.route(texts, { topK: router.experts.length });
  const seconds = (performance.now() - t) / 1000;
  result.routers[name] = {
    prompts: subset,
    experts: router.experts,
    scores: routes.map((r) => router.experts.map((e) => r.scores[e])),
    expert: routes.map((r) => r.expert),
    confidence: routes.map((r) => r.confidence),
    seconds,
  };
  await router.release();
  console.log(`  ${name}: ${texts.length} prompts in ${seconds.toFixed(1)} s`);
}
writeFileSync(out, JSON.stringify(result));
