// Browser entry point (import "irde-onnx" in a bundler's browser build, or "irde-onnx/browser").
import { Router as CoreRouter } from "./core.js";

export {
  DEFAULT_VIEW, FileNotFoundError, FORMAT_VERSIONS, InvalidInputError, IrdeError,
  MAX_CHARS_PER_TOKEN, MissingBackendError, RouterFormatError, TAIL_CHARS_PER_TOKEN,
  TextTokenizer, applyView, checkView, decide, prepareText, viewNames,
} from "./core.js";
export type {
  BrowserOptions, Decision, DecideSettings, PolicySettings, Route, RouteOptions, RouterConfig,
  RouterFiles, UrlOptions,
} from "./core.js";
import type { BrowserOptions, RouterFiles, UrlOptions } from "./core.js";
export * as ort from "onnxruntime-web/wasm";

export class Router extends CoreRouter {
  /** Load the router folder served at baseUrl (relative URLs resolve against the page). */
  static fromUrl(baseUrl: string | URL, options?: BrowserOptions & UrlOptions): Promise<Router>;
  /** Build a router from the bytes of its files. */
  static fromBytes(files: RouterFiles, options?: BrowserOptions & { source?: string }): Promise<Router>;
}
