// Route what the user types with the router folder this page serves at router/ (copy your
// router folder there: router.json, router.onnx, router.onnx.data, tokenizer.json).
import { Router } from "irde-onnx";

const $ = (id) => document.getElementById(id);
const routerUrl = new URLSearchParams(location.search).get("router") ?? "router/";

function show(text, state) {
  $("result").textContent = text;
  document.body.dataset.state = state;
}

async function main() {
  // no wasmPaths: ort.wasm.min.mjs fetches ort-wasm-simd-threaded.wasm from its own folder,
  // node_modules/onnxruntime-web/dist/, which this page serves
  const router = await Router.fromUrl(routerUrl);
  $("route").disabled = false;
  show(`ready: ${router.experts.join(", ")}`, "ready");
  $("route").addEventListener("click", async () => {
    show("routing…", "routing");
    try {
      const [route] = await router.route([$("prompt").value], { topK: router.experts.length });
      show(JSON.stringify(route), "routed");
    } catch (err) {
      show(`${err.name}: ${err.message}`, "error");
    }
  });
}

main().catch((err) => show(`${err.name}: ${err.message}`, "error"));
