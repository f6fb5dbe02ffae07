// Compiled by test/bundlers.test.mjs with moduleResolution "bundler" and customConditions
// ["node"]: "irde-onnx" is the Node build's declarations.
import { MissingBackendError, Router } from "irde-onnx";

async function server(): Promise<string> {
  const router = await Router.load("my-router", { backend: "wasm" });
  // @ts-expect-error the Node build has no fromUrl
  void Router.fromUrl;
  const e = new MissingBackendError("x");
  return (await router.route(["x"]))[0].expert + e.code;
}

void server;
