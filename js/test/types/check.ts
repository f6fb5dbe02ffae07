// Compiled with `tsc --noEmit` by test/types.test.mjs: the declarations describe the API.
import { Router, RouterFormatError, prepareText, type Route } from "irde-onnx";
import { Router as BrowserRouter } from "irde-onnx/browser";

async function node(): Promise<string> {
  const router = await Router.load("my-router", { threads: 1, backend: "node" });
  const routes: Route[] = await router.route(["Solve 3x + 5 = 20"], { topK: 2 });
  const first: number = routes[0].scores["math"];
  const scores: Float32Array[] = await router.scores(["x"]);
  void first; void scores;
  const e: unknown = new RouterFormatError("x");
  void e;
  return routes[0].expert + router.experts.join(",") + prepareText("x", 256);
}

async function browser(): Promise<string[]> {
  const router = await BrowserRouter.fromUrl("router/", { wasmPaths: "/vendor/" });
  const route = (await router.route(["x"]))[0];
  return route.top;
}

void node; void browser;
