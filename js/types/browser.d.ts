// Browser entry point (import "irde-onnx" in a bundler's browser build, or "irde-onnx/browser").
import { Router as CoreRouter } from "./core.js";

export {
  DEFAULT_VIEW, FileNotFoundError, FORMAT_VERSIONS, InvalidInputError, IrdeError,
  MAX_CHARS_PER_TOKEN, MissingBackendError, RouterFormatError, TAIL_CHARS_PER_TOKEN,
  TextTokenizer, applyView, checkView, decide, prepareText, viewNames,
} from "./core.js";
export type {
  Decision, DecideSettings, PolicySettings, Route, RouteOptions, RouterConfig,
} from "./core.js";
export * as ort from "onnxruntime-web/wasm";

export interface BrowserOptions {
  /**
   * The folder URL (ending in "/") that serves ort-wasm-simd-threaded.wasm, when it is not
   * where the bundle expects it (Vite emits it as an asset; with esbuild copy it beside the
   * bundle).
   */
  wasmPaths?: string;
  /** wasm threads (more than 1 needs a cross-origin isolated page). */
  threads?: number;
}

export interface RouterFiles {
  /** router.json text. */
  routerJson: string;
  /** The graph file named by router.json (router.onnx for format_version 1). */
  graph: Uint8Array | ArrayBuffer;
  /** router.onnx.data, the encoder weights. */
  data: Uint8Array | ArrayBuffer;
  /** tokenizer.json, as text or parsed. */
  tokenizer: string | object;
}

export class Router extends CoreRouter {
  /** Load the router folder served at baseUrl (relative URLs resolve against the page). */
  static fromUrl(baseUrl: string | URL, options?: BrowserOptions & { fetch?: typeof fetch }): Promise<Router>;
  /** Build a router from the bytes of its files. */
  static fromBytes(files: RouterFiles, options?: BrowserOptions & { source?: string }): Promise<Router>;
}
