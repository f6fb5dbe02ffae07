// Browser host: Router.fromUrl(baseUrl) or Router.fromBytes(files) on onnxruntime-web (wasm).
// Nothing is fetched but the router folder the page points at and the wasm file it serves.
// onnxruntime-web/wasm is the wasm-only build: one file to serve, ort-wasm-simd-threaded.wasm
// (14 MB), where the bare "onnxruntime-web" (JSEP, for WebGPU) fetches the 28 MB
// ort-wasm-simd-threaded.jsep.wasm. Bundled builds find it from import.meta.url: Vite emits it
// as an asset; with esbuild copy it beside the bundle; wasmPaths overrides both.

import * as ort from "onnxruntime-web/wasm";

import {
  CONFIG_FILE,
  DATA_FILE,
  FileNotFoundError,
  InvalidInputError,
  Router as CoreRouter,
  RouterFormatError,
  TOKENIZER_FILE,
  parseConfig,
  routerFromParts,
  sha256Hex,
} from "./core.js";

export {
  DEFAULT_VIEW,
  FileNotFoundError,
  FORMAT_VERSIONS,
  InvalidInputError,
  IrdeError,
  MAX_CHARS_PER_TOKEN,
  RouterFormatError,
  TAIL_CHARS_PER_TOKEN,
  TextTokenizer,
  applyView,
  checkView,
  decide,
  prepareText,
  viewNames,
} from "./core.js";
import { MissingBackendError } from "./errors.js";

export { MissingBackendError };
export { ort };

/** The file onnxruntime-web/wasm fetches at its first session (bundlers may add a hash). */
const WASM_FILE = "ort-wasm-simd-threaded.wasm";
const WASM_URL = /\/ort-wasm-simd-threaded[^/?#]*\.wasm(?:[?#]|$)/;

function configure({ wasmPaths, threads } = {}) {
  if (wasmPaths !== undefined) {
    // onnxruntime-web resolves its .wasm/.mjs files from here; it must be an absolute URL
    ort.env.wasm.wasmPaths = String(new URL(wasmPaths, globalThis.location?.href));
  }
  if (threads !== undefined) {
    if (!Number.isInteger(threads) || threads < 1) {
      throw new InvalidInputError(`threads must be an integer >= 1, got ${threads}`);
    }
    ort.env.wasm.numThreads = threads;
  }
}

/** The page's last resource timing entry of onnxruntime-web's wasm file, or undefined. */
async function wasmEntry() {
  // the entry is queued when the response has ended, which can be after onnxruntime gave up
  for (let wait = 0; wait <= 400; wait += 100) {
    if (wait) await new Promise((resolve) => setTimeout(resolve, 100));
    const entries = globalThis.performance?.getEntriesByType?.("resource") ?? [];
    const entry = entries.filter((e) => WASM_URL.test(e.name)).at(-1);
    if (entry) return entry;
  }
  return undefined;
}

/**
 * When onnxruntime-web could not start because its wasm file was not served, a
 * FileNotFoundError naming the file and the URL the browser asked for (from the page's resource
 * timing), instead of onnxruntime's "no available backend found"; otherwise null.
 */
async function wasmFileError(err) {
  const message = String(err?.message ?? err);
  if (!/no available backend found/.test(message) || !/\[wasm\]/.test(message)) return null;
  const entry = await wasmEntry();
  // an HTTP status tells; without one (no entry, a network error or a cross-origin response:
  // 0, or no responseStatus in this browser) only onnxruntime's own words do
  const status = entry?.responseStatus;
  const missing = status > 0 ? status < 200 || status >= 300 : /fetching of the wasm failed/.test(message);
  if (!missing) return null;
  const paths = ort.env.wasm.wasmPaths;
  const where = entry ? `${entry.name}${status ? ` (HTTP ${status})` : ""}`
    : typeof paths === "string" ? `${paths}${WASM_FILE} (wasmPaths)`
      : "the URL onnxruntime-web computes from the script that bundles it";
  return new FileNotFoundError(
    `onnxruntime-web's wasm file ${WASM_FILE} could not be loaded from ${where}: serve it there (copy ` +
    `node_modules/onnxruntime-web/dist/${WASM_FILE}), or pass wasmPaths: the absolute URL of ` +
    `the folder that serves it. onnxruntime-web said: ${message.split("\n")[0]}`, { cause: err });
}

async function createSession(graphBytes, data) {
  try {
    return await ort.InferenceSession.create(graphBytes, {
      externalData: [{ path: DATA_FILE, data }],
      logSeverityLevel: 3,
    });
  } catch (err) {
    throw (await wasmFileError(err)) ?? err;
  }
}

async function fetchOk(url, fetchImpl) {
  let response;
  try {
    response = await fetchImpl(url);
  } catch (err) {
    throw new FileNotFoundError(`${url} cannot be fetched: ${err.message}`);
  }
  if (!response.ok) {
    throw new FileNotFoundError(`${url} is missing (HTTP ${response.status}): not a complete irde router`);
  }
  return response;
}

function asBytes(data) {
  if (data instanceof Uint8Array) return data;
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  throw new InvalidInputError("the graph, data and statistics must be Uint8Array or ArrayBuffer");
}

/** A router in the browser (onnxruntime-web, wasm). */
export class Router extends CoreRouter {
  /**
   * Load the router folder served at baseUrl (router.json, the graph, router.onnx.data,
   * tokenizer.json); every file's sha256 is checked against router.json. The statistics
   * (stats.npz) are not fetched: routing never reads them; `checkStatistics: true` fetches
   * and checks them too.
   * @param {string|URL} baseUrl the folder's URL; a relative URL resolves against the page
   * @param {{wasmPaths?: string, threads?: number, fetch?: typeof fetch,
   *   checkStatistics?: boolean}} [options]
   *   wasmPaths: the folder URL (ending in /) that serves ort-wasm-simd-threaded.wasm, when
   *   it is not where the bundle expects it
   */
  static async fromUrl(baseUrl, options = {}) {
    configure(options);
    const fetchImpl = options.fetch ?? globalThis.fetch.bind(globalThis);
    let base = String(new URL(String(baseUrl), globalThis.location?.href));
    if (!base.endsWith("/")) base += "/";
    const configUrl = new URL(CONFIG_FILE, base).href;
    const configText = await (await fetchOk(configUrl, fetchImpl)).text();
    const parsed = parseConfig(configText, configUrl);
    const get = (name) => fetchOk(new URL(name, base).href, fetchImpl).then((r) => r.arrayBuffer());
    // routing never reads the statistics: they are fetched (to check their sha256) only when
    // asked, which keeps them off the page's download (issue 21: 2.5 MB for a tiny router)
    const wantStats = options.checkStatistics === true && Boolean(parsed.stats.sha256);
    const [graph, stats, tokenizer, data] = await Promise.all([
      get(parsed.graph.name),
      wantStats ? get(parsed.stats.name) : null,
      get(TOKENIZER_FILE),
      get(DATA_FILE),
    ]);
    return Router.#build(parsed, {
      graph: new Uint8Array(graph), stats: stats && new Uint8Array(stats),
      tokenizer: new Uint8Array(tokenizer), data: new Uint8Array(data),
    }, base.replace(/\/$/, ""));
  }

  /**
   * Build a router from the bytes of its files (e.g. picked by the user or cached). Every
   * file given is checked against the sha256 router.json records; `tokenizer` must be bytes
   * (or its exact text) for format_version 3. `stats` is optional: routing never reads the
   * statistics, so they are checked only when given.
   * @param {{routerJson: string, graph: Uint8Array|ArrayBuffer,
   *   data: Uint8Array|ArrayBuffer, tokenizer: Uint8Array|ArrayBuffer|string|object,
   *   stats?: Uint8Array|ArrayBuffer}} files
   * @param {{wasmPaths?: string, threads?: number, source?: string}} [options]
   */
  static async fromBytes(files, options = {}) {
    configure(options);
    const source = options.source ?? "router";
    const parsed = parseConfig(String(files.routerJson), `${source}/${CONFIG_FILE}`);
    let { tokenizer } = files;
    if (typeof tokenizer === "string") tokenizer = new TextEncoder().encode(tokenizer);
    else if (tokenizer instanceof ArrayBuffer || tokenizer instanceof Uint8Array) tokenizer = asBytes(tokenizer);
    else if (parsed.files.tokenizer.sha256) {
      throw new InvalidInputError(
        `${source}/${CONFIG_FILE} records the sha256 of ${TOKENIZER_FILE}: give it as bytes or ` +
        "text (not parsed), so that it is checked as every host checks it",
      );
    }
    return Router.#build(parsed, {
      graph: asBytes(files.graph), stats: files.stats == null ? null : asBytes(files.stats),
      tokenizer, data: asBytes(files.data),
    }, source);
  }

  static async #build(parsed, { graph, stats, tokenizer, data }, source) {
    let tokenizerJson = tokenizer;
    if (tokenizer instanceof Uint8Array) {
      try {
        tokenizerJson = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(tokenizer));
      } catch (err) {
        throw new RouterFormatError(`${source}/${TOKENIZER_FILE} is not a readable tokenizer.json: ${err.message}`);
      }
    }
    const hash = (bytes) => (bytes instanceof Uint8Array ? sha256Hex(bytes) : null);
    const [graphSha, statsSha, tokenizerSha, dataSha] = await Promise.all(
      [graph, stats, tokenizer, data].map(hash),
    );
    return routerFromParts({
      parsed,
      graphBytes: graph,
      digests: { graph: graphSha, stats: statsSha, tokenizer: tokenizerSha, data: dataSha },
      tokenizerJson,
      ort,
      source,
      backend: "wasm",
      RouterClass: Router,
      unread: stats == null ? ["stats"] : [],
      openSession: () => createSession(graph, data),
    });
  }
}
