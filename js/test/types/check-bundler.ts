// Compiled by test/bundlers.test.mjs with moduleResolution "bundler" and no customConditions
// (Vite's and Next's templates): "irde-onnx" resolves neither "node" nor "browser", and its
// Router has the static methods of both builds.
import {
  FileNotFoundError, MissingBackendError, Router, RouterFormatError, type LoadOptions, type Route,
} from "irde-onnx";
import { Router as NodeRouter } from "irde-onnx/node";
import { Router as BrowserRouter, ort } from "irde-onnx/browser";

async function server(): Promise<string> {
  const options: LoadOptions = { threads: 1, backend: "node" };
  const router = await Router.load("my-router", options);
  const routes: Route[] = await router.route(["Solve 3x + 5 = 20"], { topK: 2 });
  const other = await NodeRouter.load("my-router");
  // @ts-expect-error the Node build has no fromUrl
  void NodeRouter.fromUrl;
  return routes[0].expert + other.experts.join();
}

async function page(): Promise<string[]> {
  const router = await Router.fromUrl("/router/");
  const exact = await BrowserRouter.fromUrl("/router/", { wasmPaths: "/wasm/" });
  // @ts-expect-error the browser build has no load
  void BrowserRouter.load;
  const env: typeof ort.env = ort.env;
  void env;
  return (await router.route(["x"]))[0].top.concat(exact.experts);
}

function why(err: unknown): string {
  if (err instanceof MissingBackendError) return err.code + err.message;
  if (err instanceof FileNotFoundError) return err.code;
  return err instanceof RouterFormatError ? err.name : "";
}

void server; void page; void why;
