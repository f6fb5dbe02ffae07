// What TypeScript sees for "irde-onnx" when it matches neither the "node" nor the "browser"
// condition of package.json's exports: moduleResolution "bundler" without customConditions, as
// in Vite's and Next's templates. The one import may end up in either build (a bundler picks
// the browser build for pages, the Node build for server code), so this Router has the static
// methods of both, each saying where it runs. For the exact declarations of one build, set
// "customConditions": ["browser"] (or ["node"]) in tsconfig.json, or import "irde-onnx/browser"
// (or "irde-onnx/node"). Nothing here needs onnxruntime-web's types (not installed for Node),
// so `ort` is exported by the browser build's declarations only.
import { Router as CoreRouter } from "./core.js";
import type { LoadOptions } from "./index.js";
import type { BrowserOptions, RouterFiles, UrlOptions } from "./core.js";

export {
  DEFAULT_VIEW, FileNotFoundError, FORMAT_VERSIONS, InvalidInputError, IrdeError,
  MAX_CHARS_PER_TOKEN, MissingBackendError, RouterFormatError, TAIL_CHARS_PER_TOKEN,
  TextTokenizer, applyView, checkView, decide, prepareText, viewNames,
} from "./core.js";
export type {
  BrowserOptions, Decision, DecideSettings, PolicySettings, Route, RouteOptions, RouterConfig,
  RouterFiles, UrlOptions,
} from "./core.js";
export type { LoadOptions } from "./index.js";

export class Router extends CoreRouter {
  /**
   * Node.js only (the "node" build, onnxruntime-node): load a router folder written by
   * `irde train` or RouterTrainer.save.
   */
  static load(dir: string, options?: LoadOptions): Promise<Router>;
  /** Browsers only (the "browser" build, onnxruntime-web): load the router folder served at
   * baseUrl (relative URLs resolve against the page). */
  static fromUrl(baseUrl: string | URL, options?: BrowserOptions & UrlOptions): Promise<Router>;
  /** Browsers only (the "browser" build): build a router from the bytes of its files. */
  static fromBytes(files: RouterFiles, options?: BrowserOptions & { source?: string }): Promise<Router>;
}
