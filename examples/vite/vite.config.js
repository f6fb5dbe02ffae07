import { defineConfig } from "vite";

export default defineConfig({
  // `vite` (dev): serve onnxruntime-web as it is, so its `new URL("ort-wasm-simd-threaded.wasm",
  // import.meta.url)` still points at node_modules/onnxruntime-web/dist/ (the pre-bundled copy
  // in node_modules/.vite has no wasm beside it). `vite build` emits the wasm file by itself.
  optimizeDeps: { exclude: ["onnxruntime-web"] },
});
