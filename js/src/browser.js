// Browser host: Router.fromUrl(baseUrl) or Router.fromBytes(files) on onnxruntime-web (wasm).
// Nothing is fetched but the router folder the page points at and the wasm files it serves.

import * as ort from "onnxruntime-web";

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
export { ort };

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
   * Load the router folder served at baseUrl (router.json, the graph, the statistics,
   * router.onnx.data, tokenizer.json); every file's sha256 is checked against router.json.
   * @param {string|URL} baseUrl the folder's URL; a relative URL resolves against the page
   * @param {{wasmPaths?: string, threads?: number, fetch?: typeof fetch}} [options]
   *   wasmPaths: where onnxruntime-web's .wasm files are served (a folder URL ending in /)
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
    // the statistics are fetched only to check their sha256 (the JS host never reads them)
    const [graph, stats, tokenizer, data] = await Promise.all([
      get(parsed.graph.name),
      parsed.stats.sha256 ? get(parsed.stats.name) : null,
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
   * file router.json records a sha256 for must be given as it is on disk: `stats` for
   * format_version 2 and 3, `tokenizer` as bytes (or its exact text) for 3.
   * @param {{routerJson: string, graph: Uint8Array|ArrayBuffer,
   *   data: Uint8Array|ArrayBuffer, tokenizer: Uint8Array|ArrayBuffer|string|object,
   *   stats?: Uint8Array|ArrayBuffer}} files
   * @param {{wasmPaths?: string, threads?: number, source?: string}} [options]
   */
  static async fromBytes(files, options = {}) {
    configure(options);
    const source = options.source ?? "router";
    const parsed = parseConfig(String(files.routerJson), `${source}/${CONFIG_FILE}`);
    if (parsed.stats.sha256 && files.stats == null) {
      throw new InvalidInputError(
        `${source}/${CONFIG_FILE} records the sha256 of ${parsed.stats.name}: give its bytes ` +
        "as files.stats, so that they are checked as every host checks them",
      );
    }
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
      openSession: () => ort.InferenceSession.create(graph, {
        externalData: [{ path: DATA_FILE, data }],
        logSeverityLevel: 3,
      }),
    });
  }
}
