// Compiled with `tsc --noEmit` by test/types.test.mjs: the declarations describe the API.
import { Router, RouterFormatError, decide, prepareText, viewNames, type Route } from "irde-onnx";
import { Router as BrowserRouter } from "irde-onnx/browser";

async function node(): Promise<string> {
  const router = await Router.load("my-router", { threads: 1, backend: "node" });
  const routes: Route[] = await router.route(["Solve 3x + 5 = 20"], { topK: 2 });
  const first: number = routes[0].scores["math"] + routes[0].confidence;
  const cheap: Route[] = await router.route(["x"], { wtp: 0.002 });
  const quality: Route[] = await router.route(["x"], { wtp: null });
  const choice: number[] = router.decide([[0.1, 0.9]], { wtp: 2 }).choice;
  const rule: number[] = decide([[0.1, 0.9]], "domain", { temperature: 0.5, fallback: 0 }).confidence;
  const view: string = router.view + router.config.view + viewNames().join() + router.config.layers.join();
  const costs: Record<string, number> | undefined = router.config.policy.costs;
  void cheap; void quality; void choice; void rule; void view; void costs;
  const scores: Float32Array[] = await router.scores(["x"]);
  const widths: Float32Array[] = router.hasUncertainty ? await router.uncertainty(["x"]) : [];
  const both: { scores: Float32Array[]; uncertainty: Float32Array[] } =
    await router.scores(["x"], { withUncertainty: true });
  void first; void scores; void widths; void both;
  const e: unknown = new RouterFormatError("x");
  void e;
  return routes[0].expert + router.experts.join(",") + prepareText("x", 256, "strip_options+tail");
}

async function browser(): Promise<string[]> {
  const router = await BrowserRouter.fromUrl("router/", { wasmPaths: "/vendor/" });
  const route = (await router.route(["x"]))[0];
  return route.top;
}

void node; void browser;
