// Copy what the demo page loads into demo/vendor/ (from node_modules and ../src), so the page
// works offline from any static server: no CDN. Run after `npm ci`: node demo/build.mjs
import { copyFile, mkdir, rm } from "node:fs/promises";
import { createRequire } from "node:module";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const vendor = path.join(here, "vendor");
const require = createRequire(import.meta.url);
const ortDist = path.dirname(require.resolve("onnxruntime-web/ort-wasm-simd-threaded.wasm"));
const tokenizersDist = path.dirname(require.resolve("@huggingface/tokenizers")); // dist/tokenizers.cjs

const files = [
  // the wasm-only build of onnxruntime-web: it loads ort-wasm-simd-threaded.{mjs,wasm}
  // from env.wasm.wasmPaths, which the page sets to this folder's absolute URL
  [path.join(ortDist, "ort.wasm.min.mjs"), "ort.wasm.min.mjs"],
  [path.join(ortDist, "ort-wasm-simd-threaded.mjs"), "ort-wasm-simd-threaded.mjs"],
  [path.join(ortDist, "ort-wasm-simd-threaded.wasm"), "ort-wasm-simd-threaded.wasm"],
  [path.join(tokenizersDist, "tokenizers.min.mjs"), "tokenizers.min.mjs"],
  // the browser build's modules (browser.js imports core.js, which imports the others)
  ...["browser.js", "core.js", "errors.js", "policy.js", "spec.js", "views.js"].map(
    (name) => [path.join(here, "..", "src", name), `irde/${name}`]),
];

await rm(vendor, { recursive: true, force: true });
await mkdir(path.join(vendor, "irde"), { recursive: true });
for (const [from, to] of files) await copyFile(from, path.join(vendor, to));
console.log(`demo/vendor: ${files.length} files copied`);
