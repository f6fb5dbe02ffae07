// Bundle main.js for the browser with esbuild, and copy beside the bundle the one file
// onnxruntime-web fetches at run time: ort-wasm-simd-threaded.wasm (esbuild does not copy
// assets named by `new URL(..., import.meta.url)`). Run: node build.mjs; then serve dist/
// with your router folder at dist/router/.
import { copyFile, mkdir } from "node:fs/promises";
import { createRequire } from "node:module";

import * as esbuild from "esbuild";

const require = createRequire(import.meta.url);
await mkdir("dist", { recursive: true });
await esbuild.build({
  entryPoints: ["main.js"],
  outfile: "dist/bundle.js",
  bundle: true,
  format: "esm", // onnxruntime-web finds its wasm file from import.meta.url
  platform: "browser", // picks irde-onnx's browser build (onnxruntime-web, no onnxruntime-node)
  target: "es2022",
  minify: true,
  logLevel: "warning",
});
await copyFile(require.resolve("onnxruntime-web/ort-wasm-simd-threaded.wasm"),
  "dist/ort-wasm-simd-threaded.wasm");
await copyFile("index.html", "dist/index.html");
