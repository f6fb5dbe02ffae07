// Compiled by test/bundlers.test.mjs with moduleResolution "bundler" and customConditions
// ["browser"]: "irde-onnx" is the browser build's declarations.
import { Router, ort, type BrowserOptions } from "irde-onnx";

async function page(): Promise<string> {
  const options: BrowserOptions = { wasmPaths: "/wasm/", threads: 1 };
  const router = await Router.fromUrl("/router/", options);
  await Router.fromUrl("/router/", { ...options, checkStatistics: true });
  // @ts-expect-error checkStatistics is a boolean
  await Router.fromUrl("/router/", { checkStatistics: "yes" });
  // @ts-expect-error the browser build has no load
  void Router.load;
  void ort.env.wasm;
  return (await router.route(["x"]))[0].expert;
}

void page;
