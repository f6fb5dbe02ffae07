// Node.js host: Router.load(dir) on onnxruntime-node (native CPU), or on onnxruntime-web's
// wasm backend with { backend: "wasm" } (the numbers a browser computes). Both are optional
// peer dependencies, imported when a router is loaded: a missing one is a MissingBackendError
// that names the install command.

import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { readFile, realpath, stat } from "node:fs/promises";
import path from "node:path";

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
} from "./core.js";
import { MissingBackendError } from "./errors.js";

export { MissingBackendError };
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

const BACKENDS = ["node", "wasm"];
// package.json's peerDependencies range of onnxruntime-node and onnxruntime-web (a test keeps
// them equal)
const ONNXRUNTIME_RANGE = "~1.30.0";

/** Import an optional peer (a literal import() per package, so bundlers still see it). */
async function importBackend(name, load, why) {
  try {
    return await load();
  } catch (err) {
    // only the package itself missing; a broken install of it keeps its own error
    if (err?.code === "ERR_MODULE_NOT_FOUND" && String(err.message).includes(`'${name}'`)) {
      throw new MissingBackendError(
        `${name} is not installed: npm install ${name}@${ONNXRUNTIME_RANGE} (${why}; irde-onnx ` +
        "leaves it to you as an optional peer dependency)", { cause: err });
    }
    throw err;
  }
}

async function isFile(file) {
  try {
    return (await stat(file)).isFile();
  } catch {
    return false;
  }
}

/**
 * `root/name` if it is a regular file whose real path is inside the folder (Python's
 * folder.inside_file): a symlink that leaves the folder, a directory or a fifo is refused.
 */
async function insideFile(root, name) {
  const file = path.join(root, name);
  const realRoot = await realpath(root);
  let real;
  try {
    real = await realpath(file);
  } catch (err) {
    if (err.code !== "ENOENT") throw err;
    throw new FileNotFoundError(
      `${file} is missing: ${path.join(root, CONFIG_FILE)} names it; the router folder is ` +
      "incomplete (copy it again, or restore a backup)",
    );
  }
  const rel = path.relative(realRoot, real);
  if (rel === ".." || rel.startsWith(`..${path.sep}`) || path.isAbsolute(rel)) {
    throw new RouterFormatError(
      `${file} is a symlink to ${real}, outside the router folder: a router reads only its ` +
      "own files; replace the link with the file itself",
    );
  }
  if (!(await stat(real)).isFile()) {
    throw new RouterFormatError(`${file} is not a regular file; copy the router folder again`);
  }
  return file;
}

const sha256 = (bytes) => createHash("sha256").update(bytes).digest("hex");

// sha256 of large files already read by this process, keyed by the file's identity, size,
// mtime and ctime (Python's folder.cached_sha256): a reload does not read 90 MB again
const hashCache = new Map();

async function cachedSha256(file) {
  const info = await stat(file, { bigint: true });
  const key = [await realpath(file), info.dev, info.ino, info.size, info.mtimeNs, info.ctimeNs].join("|");
  if (!hashCache.has(key)) {
    const hash = createHash("sha256");
    for await (const chunk of createReadStream(file)) hash.update(chunk);
    if (hashCache.size >= 64) hashCache.clear();
    hashCache.set(key, hash.digest("hex"));
  }
  return hashCache.get(key);
}

function checkThreads(threads) {
  if (threads === undefined || threads === null) return undefined;
  if (!Number.isInteger(threads) || threads < 1) {
    throw new InvalidInputError(`threads must be an integer >= 1, got ${threads}`);
  }
  return threads;
}

/** A router loaded in Node.js. */
export class Router extends CoreRouter {
  /**
   * Load a router folder written by `irde train` or RouterTrainer.save.
   * @param {string} dir the router folder
   * @param {{threads?: number, backend?: "node"|"wasm"}} [options] threads: intra-op threads
   *   (default: onnxruntime decides); backend: onnxruntime-node (default) or onnxruntime-web's
   *   wasm backend
   * @returns {Promise<Router>}
   */
  static async load(dir, { threads, backend = "node" } = {}) {
    if (!BACKENDS.includes(backend)) {
      throw new InvalidInputError(`unknown backend ${JSON.stringify(backend)}; choose one of ${BACKENDS.join(", ")}`);
    }
    threads = checkThreads(threads);
    const root = String(dir);
    let info;
    try {
      info = await stat(root);
    } catch {
      info = null;
    }
    if (!info?.isDirectory()) throw new FileNotFoundError(`router directory not found: ${root}`);
    const configPath = path.join(root, CONFIG_FILE);
    if (!(await isFile(configPath))) {
      throw new FileNotFoundError(`${configPath} is missing: not an irde router directory`);
    }
    // Python's check_router_dir: the files under fixed names first
    for (const name of [TOKENIZER_FILE, DATA_FILE]) {
      if (!(await isFile(path.join(root, name)))) {
        throw new FileNotFoundError(
          `${path.join(root, name)} is missing: ${root} is not a complete irde router (it ` +
          `needs ${CONFIG_FILE}, ${TOKENIZER_FILE}, ${DATA_FILE} and the graph and statistics it names)`,
        );
      }
    }
    await insideFile(root, CONFIG_FILE);
    const parsed = parseConfig(await readFile(configPath, "utf8"), configPath);
    const { files } = parsed;
    const roles = ["graph", "stats", "data", "tokenizer"];
    for (const role of roles) await insideFile(root, files[role].name);
    const graphPath = path.join(root, files.graph.name);
    const graphBytes = new Uint8Array(await readFile(graphPath));
    const tokenizerBytes = await readFile(path.join(root, TOKENIZER_FILE));
    const digests = {
      graph: sha256(graphBytes),
      tokenizer: sha256(tokenizerBytes),
      stats: files.stats.sha256 ? await cachedSha256(path.join(root, files.stats.name)) : null,
      data: files.data.sha256 ? await cachedSha256(path.join(root, DATA_FILE)) : null,
    };
    let tokenizerJson;
    try {
      tokenizerJson = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(tokenizerBytes));
    } catch (err) {
      throw new RouterFormatError(
        `${path.join(root, TOKENIZER_FILE)} is not a readable tokenizer.json: ${err.message}`,
      );
    }
    let ort;
    let openSession;
    if (backend === "node") {
      ort = await importBackend("onnxruntime-node", () => import("onnxruntime-node"),
        "Router.load's default back-end");
      const options = { interOpNumThreads: 1, logSeverityLevel: 3 };
      if (threads !== undefined) options.intraOpNumThreads = threads;
      // from the path: onnxruntime finds router.onnx.data beside the graph itself
      openSession = () => ort.InferenceSession.create(graphPath, options);
    } else {
      ort = await importBackend("onnxruntime-web", () => import("onnxruntime-web"),
        'the back-end "wasm"');
      if (threads !== undefined) ort.env.wasm.numThreads = threads;
      const data = new Uint8Array(await readFile(path.join(root, DATA_FILE)));
      openSession = () => ort.InferenceSession.create(graphBytes, {
        externalData: [{ path: DATA_FILE, data }],
        logSeverityLevel: 3,
      });
    }
    return routerFromParts({
      parsed, graphBytes, digests, tokenizerJson, openSession, ort, source: root, backend,
      RouterClass: Router,
    });
  }
}
