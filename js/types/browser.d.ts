// Browser entry point (import "irde-onnx" in a bundler's browser build, or "irde-onnx/browser").
import { Router as CoreRouter } from "./core.js";

export {
  DEFAULT_VIEW, FileNotFoundError, FORMAT_VERSIONS, InvalidInputError, IrdeError,
  MAX_CHARS_PER_TOKEN, RouterFormatError, TAIL_CHARS_PER_TOKEN, TextTokenizer, applyView,
  checkView, decide, prepareText, viewNames,
} from "./core.js";
export type {
  Decision, DecideSettings, PolicySettings, Route, RouteOptions, RouterConfig,
} from "./core.js";
export * as ort from "onnxruntime-web";

export interface BrowserOptions {
  /** Where onnxruntime-web's .wasm and .mjs files are served: a folder URL ending in "/". */
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
  /**
   * tokenizer.json as it is on disk (bytes or its exact text); parsed only for routers whose
   * router.json records no sha256 for it (format_version 1 and 2).
   */
  tokenizer: Uint8Array | ArrayBuffer | string | object;
  /** The statistics file named by router.json: required when it records their sha256. */
  stats?: Uint8Array | ArrayBuffer;
}

export class Router extends CoreRouter {
  /** Load the router folder served at baseUrl (relative URLs resolve against the page). */
  static fromUrl(baseUrl: string | URL, options?: BrowserOptions & { fetch?: typeof fetch }): Promise<Router>;
  /** Build a router from the bytes of its files. */
  static fromBytes(files: RouterFiles, options?: BrowserOptions & { source?: string }): Promise<Router>;
}
