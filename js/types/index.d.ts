// Node.js entry point (import "irde-onnx" in Node, or "irde-onnx/node").
import { Router as CoreRouter } from "./core.js";

export {
  DEFAULT_VIEW, FileNotFoundError, FORMAT_VERSIONS, InvalidInputError, IrdeError,
  MAX_CHARS_PER_TOKEN, MissingBackendError, RouterFormatError, TAIL_CHARS_PER_TOKEN,
  TextTokenizer, applyView, checkView, decide, prepareText, viewNames,
} from "./core.js";
export type {
  Decision, DecideSettings, PolicySettings, Route, RouteOptions, RouterConfig,
} from "./core.js";

export interface LoadOptions {
  /** onnxruntime intra-op threads (default: onnxruntime decides). */
  threads?: number;
  /** "node": onnxruntime-node (default); "wasm": onnxruntime-web's wasm backend. */
  backend?: "node" | "wasm";
}

export class Router extends CoreRouter {
  /**
   * Load a router folder written by `irde train` or RouterTrainer.save
   * (router.json format_version 1, 2 or 3).
   */
  static load(dir: string, options?: LoadOptions): Promise<Router>;
}
