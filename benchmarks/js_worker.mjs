// Node side of benchmarks/js_hosts.py: one job per fresh process, JSON in (a file), JSON out.
//   node benchmarks/js_worker.mjs SPEC.json > RESULT.json
// spec: {mode: "latency"|"conformance", router, backend: "node"|"wasm", threads, ...}

import { readFileSync } from "node:fs";

const t0 = performance.now();
const { Router } = await import("../js/src/node.js");
const spec = JSON.parse(readFileSync(process.argv[2], "utf8"));

// VmHWM of /proc/self/status: getrusage's maxRSS keeps the spawning parent's peak across
// fork + exec on Linux, which would charge Python's memory to Node
function maxRssMb() {
  const line = readFileSync("/proc/self/status", "utf8").split("\n").find((l) => l.startsWith("VmHWM:"));
  return line ? Number(line.split(/\s+/)[1]) / 1024 : process.resourceUsage().maxRSS / 1024;
}

const tLoad = performance.now();
const router = await Router.load(spec.router, { backend: spec.backend, threads: spec.threads });
const loadMs = performance.now() - tLoad;
const result = { load_ms: loadMs, import_ms: tLoad - t0 };

if (spec.mode === "latency") {
  const tFirst = performance.now();
  await router.route(["warm up"]);
  result.first_route_ms = performance.now() - tFirst;
  result.latency = {};
  for (const [length, texts] of Object.entries(spec.prompts)) {
    for (const t of texts.slice(0, spec.warmup)) await router.route([t]);
    const times = [];
    for (const t of texts) {
      const s = performance.now();
      await router.route([t]);
      times.push((performance.now() - s) / 1000);
    }
    result.latency[length] = times;
  }
} else if (spec.mode === "conformance") {
  if (spec.ids) {
    const s = performance.now();
    const ids = router.encode(spec.ids);
    result.tokenize_s = (performance.now() - s) / 1000;
    // one digest per prompt keeps the answer small; Python hashes its ids the same way
    const { createHash } = await import("node:crypto");
    result.id_digests = ids.map((x) => createHash("sha1").update(x.join(",")).digest("hex"));
  }
  const routes = await router.route(spec.texts);
  result.scores = routes.map((r) => router.experts.map((e) => r.scores[e]));
} else {
  throw new Error(`unknown mode ${spec.mode}`);
}
result.rss_mb = maxRssMb();
process.stdout.write(JSON.stringify(result));
