// The host-independent part of the router: router.json checks, the text rule, tokenization
// and routing. node.js and browser.js add the loading (files or URLs) and the onnxruntime.

import { Tokenizer } from "@huggingface/tokenizers";

import { FileNotFoundError, InvalidInputError, IrdeError, RouterFormatError } from "./errors.js";
import {
  DECISION_OUTPUTS, checkPolicy, checkWtp, decide, hasDecisionOutputs, parsePolicy, pyRepr,
} from "./policy.js";
import { SPEC } from "./spec.js";
import { DEFAULT_VIEW, applyView, checkView, firstCodePoints } from "./views.js";

export { FileNotFoundError, InvalidInputError, IrdeError, RouterFormatError };
export { DEFAULT_VIEW, TAIL_CHARS_PER_TOKEN, applyView, checkView, viewNames } from "./views.js";
export { checkWtp, decide, parsePolicy } from "./policy.js";

// The tables below come from spec.js, which conformance/generate.py writes from the Python
// package (router.json's format: irde_onnx/store/config.py; the encoders: encoders.py; the
// graph rules: graph/rules.py): this file holds the checks, never a copy of a table.
const FORMAT = SPEC.router_json;
/** A prompt is cut to maxLength * MAX_CHARS_PER_TOKEN code points (the Python runtime's rule). */
export const MAX_CHARS_PER_TOKEN = SPEC.text.max_chars_per_token;
export const FORMAT_VERSIONS = [...FORMAT.readable_versions];
// The files router.json records with their sha256, by format_version (Python's FILE_ROLES):
// version 2 the graph and statistics, version 3 every file a load reads; version 1 none.
export const FILE_ROLES = FORMAT.file_roles;
export const CONFIG_FILE = FORMAT.file;
export const GRAPH_FILE = FORMAT.default_files.graph;
export const DATA_FILE = FORMAT.default_files.data;
export const TOKENIZER_FILE = FORMAT.default_files.tokenizer;
export const STATS_FILE = FORMAT.default_files.stats;
export const DEFAULT_BATCH_SIZE = SPEC.runtime.default_batch_size;
// Dynamic int8 quantisation scales activations over a whole call, so int8 routers encode one
// prompt per call, as the Python runtime does: a prompt's scores never depend on its batch.
export const INT8_BATCH_SIZE = SPEC.runtime.int8_batch_size;

const ENCODERS = Object.keys(SPEC.encoders);
const EXPERT_MODES = FORMAT.expert_modes;
// per encoder (Python's EncoderSpec): the width of its features, its precisions and
// strategies, whether it pools sentence features and how many layers it can pool (0: none),
// and the weights it holds per vocabulary entry (null: feature_dim + 1) and beside them
// (token_weights and fixed_weights, which bound the bytes a graph may declare)
export const ENCODER_SPECS = Object.freeze(Object.fromEntries(Object.entries(SPEC.encoders).map(
  ([name, e]) => [name, Object.freeze({
    featureDim: e.feature_dim, precisions: e.precisions, strategies: e.strategies,
    pooled: e.pooled, layers: e.layers, tokenWeights: e.token_weights, fixedWeights: e.fixed_weights,
  })],
)));
const TARGETS = FORMAT.targets;
const MAX_NAME_LENGTH = FORMAT.max_name_length;
const FIXED_ROLE_NAMES = FORMAT.fixed_role_names;
// a generation file name (Python's config._FILE_NAME): plain, no folder part, not hidden
const FILE_NAME = new RegExp(`^(?:${FORMAT.file_name_pattern})$`);
const SHA256 = new RegExp(`^(?:${FORMAT.sha256_pattern})$`);
const FIXED_FILES = FORMAT.fixed_files;
const REQUIRED_FIELDS = FORMAT.required_fields;

// --- the text rule ----------------------------------------------------------------------

function toWellFormed(text) {
  if (typeof text.toWellFormed === "function") return text.toWellFormed();
  return text.replace(/[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g,
    "\ufffd");
}

/**
 * The text every host tokenizes: unpaired surrogates become U+FFFD, then the router's input
 * view is applied (views.js), then only the first maxLength * 32 code points (not UTF-16
 * units) are kept.
 */
export function prepareText(text, maxLength, view = DEFAULT_VIEW) {
  text = toWellFormed(text);
  if (view !== DEFAULT_VIEW) text = applyView(checkView(view), text, maxLength);
  return firstCodePoints(text, maxLength * MAX_CHARS_PER_TOKEN);
}

// The CJK ideograph ranges above U+FFFF of the Rust `tokenizers` BertNormalizer
// (is_chinese_char). The JS port tests one UTF-16 unit at a time, so it never isolates
// these; isolating them with spaces first gives the same pieces. Note 0x2B920, not 0x2B820:
// the Rust table has that gap, and the golden file pins it.
const CJK_ABOVE_BMP = [
  [0x20000, 0x2a6df], [0x2a700, 0x2b73f], [0x2b740, 0x2b81f], [0x2b920, 0x2ceaf],
  [0x2f800, 0x2fa1f],
];
const CJK_ABOVE_BMP_RE = new RegExp(
  `[${CJK_ABOVE_BMP.map(([a, b]) => `\\u{${a.toString(16)}}-\\u{${b.toString(16)}}`).join("")}]`,
  "gu",
);

/** Surround CJK ideographs above U+FFFF with spaces, as Python's tokenizer does. */
export function isolateCjkAboveBmp(text) {
  return text.replace(CJK_ABOVE_BMP_RE, " $& ");
}

function specialTemplate(post, source) {
  if (post == null) return { prefix: [], suffix: [] };
  if (post.type === "BertProcessing" || post.type === "RobertaProcessing") {
    return { prefix: [post.cls[1]], suffix: [post.sep[1]] };
  }
  if (post.type === "TemplateProcessing") {
    const prefix = [];
    const suffix = [];
    let seen = false;
    for (const piece of post.single) {
      if (piece.Sequence) {
        seen = true;
        continue;
      }
      const ids = post.special_tokens?.[piece.SpecialToken?.id]?.ids;
      if (!ids) throw new RouterFormatError(`${source}: unknown special token in the template`);
      (seen ? suffix : prefix).push(...ids);
    }
    return { prefix, suffix };
  }
  throw new RouterFormatError(
    `${source}: post_processor ${post.type} is not supported by the JS host ` +
    "(supported: BertProcessing, RobertaProcessing, TemplateProcessing)",
  );
}

function lowercases(normalizer) {
  if (normalizer == null) return false;
  if (normalizer.type === "Lowercase") return true;
  if (normalizer.type === "BertNormalizer") return Boolean(normalizer.lowercase);
  if (normalizer.type === "Sequence") return (normalizer.normalizers ?? []).some(lowercases);
  return false;
}

/** A tokenizer.json with truncation to maxLength, special tokens added as Python adds them. */
export class TextTokenizer {
  /**
   * @param {object} json parsed tokenizer.json
   * @param {number} maxLength tokens kept per prompt, special tokens included
   * @param {string} [source] where the JSON came from (for messages)
   * @param {string} [view] the input view applied to every text first (views.js)
   */
  constructor(json, maxLength, source = TOKENIZER_FILE, view = DEFAULT_VIEW) {
    if (!Number.isInteger(maxLength) || maxLength < 2) {
      throw new InvalidInputError(`max_length must be an integer >= 2, got ${maxLength}`);
    }
    this.view = checkView(view);
    try {
      this.tokenizer = new Tokenizer(json, {});
    } catch (err) {
      throw new RouterFormatError(`${source} is not a readable tokenizer.json: ${err.message}`);
    }
    const { prefix, suffix } = specialTemplate(json.post_processor, source);
    this.prefix = prefix;
    this.suffix = suffix;
    this.maxLength = maxLength;
    this.budget = Math.max(0, maxLength - prefix.length - suffix.length);
    this.padId = this.tokenizer.token_to_id("[PAD]") ?? 0;
    // Python's Tokenizer.get_vocab_size(): the vocabulary with the added tokens
    this.vocabSize = this.tokenizer.get_vocab(true).size;
    // Rust lowercases one code point at a time (Σ -> σ everywhere); String.toLowerCase
    // applies Final_Sigma (Σ -> ς at a word's end), its only context rule: lower Σ first
    this.lowerSigma = lowercases(json.normalizer);
  }

  /** Token ids of one text, special tokens included, truncated like Python's runtime. */
  encode(text) {
    let prepared = isolateCjkAboveBmp(prepareText(text, this.maxLength, this.view));
    if (this.lowerSigma) prepared = prepared.replaceAll("\u03a3", "\u03c3");
    // the JS port ignores tokenizer.json's truncation: encode the content, cut it, then add
    // the special tokens, which is what Python's truncation does for one sequence
    let ids = this.tokenizer.encode(prepared, { add_special_tokens: false }).ids;
    if (ids.length > this.budget) ids = ids.slice(0, this.budget);
    return [...this.prefix, ...ids, ...this.suffix];
  }
}

// --- router.json --------------------------------------------------------------------------

/** Why `name` cannot name an expert, or null (Python's config.expert_name_problem). */
export function expertNameProblem(name) {
  if (typeof name !== "string") return `must be a string, not ${name === null ? "null" : typeof name}`;
  if (!name || name !== name.trim()) return "must be non-empty without leading or trailing white space";
  if ([...name].length > MAX_NAME_LENGTH) return `is longer than ${MAX_NAME_LENGTH} characters`;
  const bad = name.match(/[\p{Cc}\p{Cs}\u2028\u2029]/u);
  if (bad) {
    return `contains the control character U+${bad[0].codePointAt(0).toString(16).toUpperCase().padStart(4, "0")}`;
  }
  return null;
}

const isInt = (v) => Number.isInteger(v) && typeof v === "number";

/**
 * The top-level keys of JSON object text whose value holds a number written as a float
 * (`256.0`, `1e3`). JSON.parse reads them as integers; Python's json reads floats, which
 * router.json refuses where it wants an integer: this lets the JS host refuse them alike.
 */
export function floatLiteralKeys(text) {
  const keys = new Set();
  let depth = 0;
  let key = null;
  for (let i = 0; i < text.length; i++) {
    const ch = text[i];
    if (ch === '"') {
      let j = i + 1;
      while (j < text.length && text[j] !== '"') j += text[j] === "\\" ? 2 : 1;
      if (depth === 1) {
        let k = j + 1;
        while (/\s/.test(text[k] ?? "")) k++;
        if (text[k] === ":") {
          try {
            key = JSON.parse(text.slice(i, j + 1));
          } catch {
            key = null;
          }
        }
      }
      i = j;
    } else if (ch === "{" || ch === "[") depth++;
    else if (ch === "}" || ch === "]") depth--;
    else if (/[-0-9]/.test(ch)) {
      let j = i;
      while (j < text.length && /[-+0-9.eE]/.test(text[j])) j++;
      if (/[.eE]/.test(text.slice(i, j)) && key !== null) keys.add(key);
      i = j - 1;
    }
  }
  return keys;
}

// The field types and ranges of Python's config._check_types, in its order.
function checkFieldTypes(data, source, floats) {
  const fail = (name, want) => badField(source, name, want, data[name]);
  const isInt = (v, name) => Number.isInteger(v) && typeof v === "number" && !floats.has(name);
  for (const name of ["experts", "expert_modes"]) {
    const v = data[name];
    if (!Array.isArray(v) || !v.every((x) => typeof x === "string")) throw fail(name, "a list of strings");
  }
  for (const name of ["encoder", "precision", "strategy", "target", "fingerprint", "package_version"]) {
    if (typeof data[name] !== "string") throw fail(name, "a string");
  }
  const { lam } = data;
  if (typeof lam !== "number" || !Number.isFinite(lam) || lam < 0) throw fail("lam", "a finite number >= 0");
  if (!isInt(data.max_length, "max_length") || data.max_length < 2 || data.max_length > 1000000) {
    throw fail("max_length", "an integer in 2..1000000");
  }
  if (!isInt(data.feature_dim, "feature_dim") || data.feature_dim < 1) {
    throw fail("feature_dim", "an integer >= 1");
  }
  if ("top_k_tokens" in data && (!isInt(data.top_k_tokens, "top_k_tokens") || data.top_k_tokens < 1)) {
    throw fail("top_k_tokens", "an integer >= 1");
  }
  const isObject = (v) => v !== null && typeof v === "object" && !Array.isArray(v);
  for (const name of ["extra", "policy", "selection"]) {
    if (name in data && !isObject(data[name])) throw fail(name, "an object");
  }
}

// router.json `files` (Python's config._check_files): what each format_version requires
function checkFiles(files, version, source) {
  const roles = FILE_ROLES[version];
  if (!roles) {
    if (files !== undefined) {
      throw new RouterFormatError(
        `${source}: format_version ${version} has no 'files'; remove it or set the ` +
        "format_version the files were written with",
      );
    }
    return { graph: { name: GRAPH_FILE, sha256: null }, stats: { name: STATS_FILE, sha256: null },
      data: { name: DATA_FILE, sha256: null }, tokenizer: { name: TOKENIZER_FILE, sha256: null } };
  }
  const isObject = (v) => v !== null && typeof v === "object" && !Array.isArray(v);
  const keys = isObject(files) ? Object.keys(files).sort() : null;
  if (!keys || JSON.stringify(keys) !== JSON.stringify([...roles].sort())) {
    const want = `{${roles.map((r) => `"${r}": {"name", "sha256"}`).join(", ")}}`;
    throw new RouterFormatError(
      `${source}: format_version ${version} needs the field 'files' = ${want}; the folder is ` +
      "incomplete or was edited by hand: copy it again",
    );
  }
  const out = {
    data: { name: DATA_FILE, sha256: null }, tokenizer: { name: TOKENIZER_FILE, sha256: null },
  };
  for (const role of roles) {
    const entry = files[role];
    if (!isObject(entry) || typeof entry.name !== "string") {
      throw new RouterFormatError(`${source}: files.${role} must be {'name', 'sha256'}`);
    }
    const fixed = FIXED_ROLE_NAMES[role];
    if (fixed !== undefined && entry.name !== fixed) {
      throw new RouterFormatError(`${source}: files.${role}.name must be '${fixed}'`);
    }
    if (fixed === undefined && (!FILE_NAME.test(entry.name) || FIXED_FILES.includes(entry.name))) {
      throw new RouterFormatError(
        `${source}: files.${role}.name ${pyRepr(entry.name)} is not a plain file name of the router folder`,
      );
    }
    if (typeof entry.sha256 !== "string" || !SHA256.test(entry.sha256)) {
      throw new RouterFormatError(
        `${source}: files.${role}.sha256 must be the file's sha256 (64 lower-case hex digits); ` +
        `a format_version ${version} router.json records one for each file: copy the router ` +
        "folder again from a good copy",
      );
    }
    out[role] = { name: entry.name, sha256: entry.sha256 };
  }
  return out;
}

/**
 * Parse and check router.json text (format_version 1, 2 or 3) with Python's rules.
 * @returns {{config: object, policy: object, graph: {name: string, sha256: string|null},
 *   stats: {name: string, sha256: string|null}, files: Record<string,
 *   {name: string, sha256: string|null}>}} files: graph, stats, data and tokenizer
 */
export function parseConfig(text, source = CONFIG_FILE) {
  let data;
  try {
    data = JSON.parse(text);
  } catch (err) {
    throw new RouterFormatError(`${source} is not valid JSON: ${err.message}`);
  }
  if (data === null || typeof data !== "object" || Array.isArray(data)) {
    throw new RouterFormatError(`${source} must hold a JSON object`);
  }
  const floats = floatLiteralKeys(text);
  const version = data.format_version;
  if (!isInt(version) || floats.has("format_version") || !FORMAT_VERSIONS.includes(version)) {
    throw new RouterFormatError(
      `${source} has format_version ${pyRepr(version ?? null)}; this irde-onnx reads ` +
      `versions ${FORMAT_VERSIONS.join(", ")}. Upgrade irde-onnx or train the router again.`,
    );
  }
  const missing = REQUIRED_FIELDS.filter((f) => !(f in data));
  if (missing.length) throw new RouterFormatError(`${source} lacks the field(s) ${missing.join(", ")}`);
  checkFieldTypes(data, source, floats);
  if ("view" in data && typeof data.view !== "string") throw badField(source, "view", "a string", data.view);
  if ("layers" in data && (!Array.isArray(data.layers) || !data.layers.every(isInt) || floats.has("layers"))) {
    throw badField(source, "layers", "a list of layer numbers", data.layers);
  }
  const files = checkFiles(data.files, version, source);
  const { experts, expert_modes: modes, encoder, precision, strategy } = data;
  if (!ENCODERS.includes(encoder)) {
    throw new RouterFormatError(`${source}: unknown encoder ${JSON.stringify(encoder)}; known: ${ENCODERS}`);
  }
  if (!ENCODER_SPECS[encoder].precisions.includes(precision)) {
    throw new RouterFormatError(`${source}: unknown precision ${JSON.stringify(precision)}`);
  }
  if (!ENCODER_SPECS[encoder].strategies.includes(strategy)) {
    throw new RouterFormatError(`${source}: unknown strategy ${JSON.stringify(strategy)}`);
  }
  if (!TARGETS.includes(data.target)) {
    throw new RouterFormatError(`${source}: unknown target ${pyRepr(data.target)}; known: ${TARGETS}`);
  }
  if (!experts.length || experts.length !== modes.length) {
    throw new RouterFormatError(`${source}: experts and expert_modes must be non-empty and match`);
  }
  if (new Set(experts).size !== experts.length) {
    throw new RouterFormatError(`${source}: duplicate expert names`);
  }
  for (const name of experts) {
    const problem = expertNameProblem(name);
    if (problem) throw new RouterFormatError(`${source}: expert name ${pyRepr(name)} ${problem}`);
  }
  if (!modes.every((m) => EXPERT_MODES.includes(m))) {
    throw new RouterFormatError(`${source}: expert_modes must be in ${EXPERT_MODES}`);
  }
  const view = checkConfigView(data, source);
  const layers = checkConfigLayers(data, source);
  const policy = checkConfigPolicy(data, experts, source);
  return {
    config: Object.freeze({ ...data, experts: [...experts], view, layers, policy: data.policy ?? {} }),
    policy,
    graph: files.graph,
    stats: files.stats,
    files,
  };
}

function badField(source, name, want, value) {
  return new RouterFormatError(
    `${source}: field '${name}' must be ${want}, got ${pyRepr(value).slice(0, 60)}`,
  );
}

// router.json `view` (optional, default "full"): a known view or a "+" composition
function checkConfigView(data, source) {
  if (!("view" in data)) return DEFAULT_VIEW;
  if (typeof data.view !== "string") throw badField(source, "view", "a string", data.view);
  try {
    return checkView(data.view);
  } catch (err) {
    throw new RouterFormatError(`${source}: ${err.message}; upgrade irde-onnx or train the router again`);
  }
}

// router.json `layers` (optional, default []): pooled layers of the encoder, which change
// only the graph (run as it is) and the width of the features
function checkConfigLayers(data, source) {
  if (!("layers" in data)) return [];
  const { layers, encoder } = data;
  if (!Array.isArray(layers) || !layers.every(Number.isInteger)) {
    throw badField(source, "layers", "a list of layer numbers", layers);
  }
  if (!layers.length) return [];
  const spec = ENCODER_SPECS[encoder];
  if (!spec.pooled || !spec.layers) {
    throw new RouterFormatError(`${source}: the ${encoder} encoder has no layers to pool; leave layers empty`);
  }
  if (new Set(layers).size !== layers.length || layers.some((k) => k < 1 || k > spec.layers)) {
    throw new RouterFormatError(
      `${source}: layers ${pyRepr(layers)} must be distinct layer numbers in 1..${spec.layers} ` +
      `of the ${encoder} encoder`,
    );
  }
  if (data.feature_dim !== spec.featureDim * layers.length) {
    throw new RouterFormatError(
      `${source}: feature_dim ${data.feature_dim} does not match ${layers.length} pooled ` +
      `layers of ${spec.featureDim}`,
    );
  }
  return [...layers];
}

// router.json `policy` (optional): parsed and checked against the experts like Python does
function checkConfigPolicy(data, experts, source) {
  if ("policy" in data && (data.policy === null || typeof data.policy !== "object" ||
      Array.isArray(data.policy))) {
    throw badField(source, "policy", "an object", data.policy);
  }
  try {
    const policy = parsePolicy(data.policy, `${source}: policy`);
    checkPolicy(policy, experts, `${source}: policy`);
    return policy;
  } catch (err) {
    if (err instanceof InvalidInputError) throw new RouterFormatError(err.message);
    throw err;
  }
}

/** SHA-256 of bytes as lower-case hex (WebCrypto: Node >= 19 and secure browser pages). */
export async function sha256Hex(bytes) {
  const digest = await globalThis.crypto.subtle.digest("SHA-256", bytes);
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
}

/**
 * Raise unless every file has the SHA-256 router.json records (Python's verify_generation):
 * format_version 3 every file, 2 the graph and statistics, 1 none.
 * @param {ReturnType<typeof parseConfig>} parsed
 * @param {Record<string, string|null>} digests lower-case hex SHA-256 per role (graph, stats,
 *   data, tokenizer), computed by the host from the bytes it uses
 * @param {string} source
 * @param {string[]} [unread] roles the host did not read and does not need (the browser's
 *   statistics, which routing never reads): not checked
 */
export function checkDigests(parsed, digests, source, unread = []) {
  for (const role of ["graph", "stats", "data", "tokenizer"]) {
    const { name, sha256 } = parsed.files[role];
    if (!sha256 || unread.includes(role)) continue;
    if (digests[role] !== sha256) {
      throw new RouterFormatError(
        `${source}/${name} does not match the sha256 recorded in ${CONFIG_FILE}: the file is ` +
        "damaged or was changed by hand; copy the router folder again",
      );
    }
  }
}

// --- what a router graph may hold (Python's irde_onnx/graph/rules.py, rule for rule) ------

/** The operators the exporters of each encoder write (sorted). */
export const ALLOWED_OPS = SPEC.graph_rules.allowed_ops;
/** Operator -> the input positions that give the size of the tensor it makes. */
export const SIZE_INPUTS = SPEC.graph_rules.size_inputs;
export const SLACK_BYTES = SPEC.graph_rules.slack_bytes;
// the optional output of pooled routers (Python's learning/uncertainty.py): float32
// [batch, n_experts], the width of each expert's predicted quality
export const UNCERTAINTY_OUTPUT = SPEC.runtime.uncertainty_output;
const UNCERTAINTY_RANK = SPEC.graph_rules.uncertainty_rank;
// bytes of one element per ONNX TensorProto.DataType (keys are the type numbers as strings)
const ELEMENT_BYTES = SPEC.graph_rules.element_bytes;

// Every field of a protobuf message: onField(field, wire, value); value is a varint's number
// or the [start, end) span of a length-delimited field (fixed-width fields are skipped).
function walkFields(bytes, start, end, onField) {
  let pos = start;
  while (pos < end) {
    let tag;
    [tag, pos] = readVarint(bytes, pos);
    const field = Math.floor(tag / 8);
    const wire = tag % 8;
    if (wire === 0) {
      let value;
      [value, pos] = readVarint(bytes, pos);
      onField(field, wire, value);
    } else if (wire === 1) pos += 8;
    else if (wire === 5) pos += 4;
    else if (wire === 2) {
      let length;
      [length, pos] = readVarint(bytes, pos);
      if (pos + length > end) throw new RangeError("truncated field");
      onField(field, wire, [pos, pos + length]);
      pos += length;
    } else throw new RangeError(`unknown wire type ${wire}`);
  }
  if (pos !== end) throw new RangeError("truncated message");
}

function tensorBytes(bytes, span, summary) {
  let count = 1;
  let dtype = 1;
  walkFields(bytes, span[0], span[1], (field, wire, value) => {
    if (field === 1 && wire === 0) count *= value;
    else if (field === 1 && wire === 2) {
      let pos = value[0];
      while (pos < value[1]) {
        let dim;
        [dim, pos] = readVarint(bytes, pos);
        count *= dim;
      }
    } else if (field === 2 && wire === 0) dtype = value;
  });
  if (!(dtype in ELEMENT_BYTES)) {
    summary.problems.push(`a tensor of ONNX data type ${dtype}, which no exporter writes`);
    return 0;
  }
  return count * ELEMENT_BYTES[dtype];
}

/** Operators, constant names and declared weight bytes of router.onnx (no weights read). */
export function summarizeGraph(bytes) {
  const decoder = new TextDecoder();
  const text = (span) => decoder.decode(bytes.subarray(span[0], span[1]));
  const summary = { ops: [], sizeInputs: [], constants: new Set(), tensorBytes: 0, problems: [] };
  const node = (span) => {
    const inputs = [];
    const outputs = [];
    let op = "";
    let domain = "";
    walkFields(bytes, span[0], span[1], (field, wire, value) => {
      if (wire !== 2) return;
      if (field === 1) inputs.push(text(value));
      else if (field === 2) outputs.push(text(value));
      else if (field === 4) op = text(value);
      else if (field === 7) domain = text(value);
      else if (field === 5) {
        walkFields(bytes, value[0], value[1], (f, w, v) => {
          if (w !== 2) return;
          if (f === 5 || f === 10) summary.tensorBytes += tensorBytes(bytes, v, summary);
          else if ([6, 11, 22, 23].includes(f)) {
            summary.problems.push(`a ${op || "node"} with a subgraph or sparse tensor`);
          }
        });
      }
    });
    summary.ops.push([domain, op]);
    if (op === "Constant") outputs.forEach((o) => summary.constants.add(o));
    for (const position of SIZE_INPUTS[op] ?? []) {
      if (position < inputs.length && inputs[position]) summary.sizeInputs.push([op, inputs[position]]);
    }
  };
  walkFields(bytes, 0, bytes.length, (field, wire, value) => {
    if (field === 25 && wire === 2) summary.problems.push("local functions");
    if (field !== 7 || wire !== 2) return;
    walkFields(bytes, value[0], value[1], (g, gw, gv) => {
      if (gw !== 2) return;
      if (g === 1) node(gv);
      else if (g === 5) {
        summary.tensorBytes += tensorBytes(bytes, gv, summary);
        walkFields(bytes, gv[0], gv[1], (t, tw, tv) => {
          if (t === 8 && tw === 2) summary.constants.add(text(tv));
        });
      } else if (g === 15) summary.problems.push("sparse initializers");
    });
  });
  return summary;
}

/** The most bytes a router graph's initializers and constants may declare (Python's rule). */
export function weightBound(encoder, featureDim, nExperts, vocabSize) {
  const spec = ENCODER_SPECS[encoder];
  const perToken = spec.tokenWeights ?? featureDim + 1;
  let weights = perToken * vocabSize + spec.fixedWeights + (featureDim + 1) * nExperts;
  if (spec.pooled) {  // the uncertainty output: mu and the basis, the factors and offsets
    const k1 = Math.min(UNCERTAINTY_RANK, featureDim) + 1;
    weights += featureDim * k1 + nExperts * k1 * k1;
  }
  return 4 * weights + SLACK_BYTES;
}

/** Why the graph bytes break the rules, or null (Python's graph_rules.graph_problem). */
export function graphProblem(bytes, encoder, featureDim, nExperts, vocabSize) {
  let summary;
  try {
    summary = summarizeGraph(bytes);
  } catch (err) {
    return `is not a readable ONNX file (${err.message})`;
  }
  if (summary.problems.length) return `holds ${summary.problems[0]}`;
  const allowed = ALLOWED_OPS[encoder];
  for (const [domain, op] of summary.ops) {
    if (!["", "ai.onnx"].includes(domain) || !allowed.includes(op)) {
      const name = domain ? `${domain}:${op}` : op;
      return `uses the operator '${name}', which no exporter of the ${encoder} encoder writes ` +
        `(allowed: ${allowed.join(", ")})`;
    }
  }
  for (const [op, name] of summary.sizeInputs) {
    if (summary.constants.has(name)) {
      return `gives ${op} a constant size ('${name}'); the exported graphs take every such ` +
        "size from the input's shape";
    }
  }
  const bound = weightBound(encoder, featureDim, nExperts, vocabSize);
  if (summary.tensorBytes > bound) {
    return `declares ${summary.tensorBytes} bytes of weights and constants; a ${encoder} ` +
      `router with ${nExperts} experts needs at most ${bound}`;
  }
  return null;
}

// --- the graph's metadata -----------------------------------------------------------------

function readVarint(bytes, pos) {
  let value = 0;
  let scale = 1;
  for (;;) {
    if (pos >= bytes.length) throw new RangeError("truncated varint");
    const b = bytes[pos++];
    value += (b & 0x7f) * scale; // arithmetic, not shifts: lengths may exceed 2^31
    if (b < 0x80) return [value, pos];
    scale *= 128;
  }
}

// The length-delimited fields of a protobuf message: onLengthDelimited(field, start, end).
function readFields(bytes, start, end, onLengthDelimited) {
  walkFields(bytes, start, end, (field, wire, value) => {
    if (wire === 2) onLengthDelimited(field, value[0], value[1]);
  });
}

/**
 * The metadata_props of an ONNX ModelProto (field 14), read from the top level of the bytes
 * without parsing the graph: the JS onnxruntime API does not expose them.
 * @returns {Map<string, string>}
 */
export function readGraphMetadata(bytes, source = GRAPH_FILE) {
  const decoder = new TextDecoder();
  const meta = new Map();
  try {
    readFields(bytes, 0, bytes.length, (field, start, end) => {
      if (field !== 14) return;
      let key = "";
      let value = "";
      readFields(bytes, start, end, (f, s, e) => {
        if (f === 1) key = decoder.decode(bytes.subarray(s, e));
        else if (f === 2) value = decoder.decode(bytes.subarray(s, e));
      });
      meta.set(key, value);
    });
  } catch (err) {
    throw new RouterFormatError(`${source} is not a readable ONNX file: ${err.message}`);
  }
  return meta;
}

/** Raise if the graph names other experts than router.json (Python's check). */
export function checkGraphAgainstConfig(bytes, config, graphSource) {
  const listed = readGraphMetadata(bytes, graphSource).get("irde.experts");
  if (listed === undefined) return;
  let graphExperts;
  try {
    graphExperts = JSON.parse(listed);
  } catch {
    throw new RouterFormatError(`${graphSource}: metadata irde.experts is not valid JSON`);
  }
  if (JSON.stringify(graphExperts) !== JSON.stringify(config.experts)) {
    throw new RouterFormatError(
      `${graphSource} and ${CONFIG_FILE} list different experts (an interrupted copy or ` +
      "save?); save the router again from a good copy",
    );
  }
}

// --- routing ------------------------------------------------------------------------------

/** Return texts as an array, or raise if it is not an array of strings. */
export function checkTexts(texts) {
  if (typeof texts === "string") {
    throw new InvalidInputError("texts must be a list of strings, not one string: wrap it in [...]");
  }
  if (texts == null || typeof texts[Symbol.iterator] !== "function") {
    throw new InvalidInputError(`texts must be a list of strings, got ${texts === null ? "null" : typeof texts}`);
  }
  const out = Array.from(texts);
  out.forEach((t, i) => {
    if (typeof t !== "string") {
      throw new InvalidInputError(`texts[${i}] is ${t === null ? "null" : typeof t}, not a string`);
    }
  });
  return out;
}

/** Indices that sort `values` ascending; ties keep their order (numpy's stable argsort). */
function stableArgsort(values) {
  return values.map((v, i) => i).sort((a, b) => values[a] - values[b]);
}

/**
 * A loaded router. Build it with Router.load (Node) or Router.fromUrl / fromBytes (browser).
 */
export class Router {
  /** @internal use the loaders */
  constructor({ config, policy, tokenizer, session, ort, source, graphName, backend }) {
    this.config = config;
    this.policy = policy ?? parsePolicy(config.policy);
    this.tokenizer = tokenizer;
    this.session = session;
    this.ort = ort;
    this.source = source;
    this.graphName = graphName;
    this.backend = backend;
    const outputs = new Set(session.outputNames);
    const needed = config.encoder === "static" ? ["scores"] : ["scores", "features"];
    const lacking = needed.filter((n) => !outputs.has(n));
    if (lacking.length) {
      throw new RouterFormatError(`${source}/${graphName} lacks the output(s) ${lacking.join(", ")}`);
    }
    // graphs saved before the decision policy have no choice/confidence: decided here instead
    this.hasDecision = hasDecisionOutputs(session.outputNames);
    // pooled routers saved by irde-onnx with the uncertainty output (older ones lack it)
    this.hasUncertainty = outputs.has(UNCERTAINTY_OUTPUT);
  }

  /** Expert names in column order. */
  get experts() {
    return [...this.config.experts];
  }

  /** The input view applied to every prompt before tokenizing (router.json `view`). */
  get view() {
    return this.config.view;
  }

  /** Prompts per onnxruntime call when batchSize is not given (1 for int8). */
  get defaultBatchSize() {
    return this.config.precision === "int8" ? INT8_BATCH_SIZE : DEFAULT_BATCH_SIZE;
  }

  /** Token ids of each text, special tokens included (what the graph is fed). */
  encode(texts) {
    return checkTexts(texts).map((t) => this.tokenizer.encode(t));
  }

  // one row per text: {scores: Float32Array, choice?: number, confidence?: number,
  // uncertainty?: Float32Array}
  async #run(encoded, batchSize, withDecision, withUncertainty = false) {
    const n = this.config.experts.length;
    const names = withDecision ? ["scores", ...DECISION_OUTPUTS] : ["scores"];
    if (withUncertainty) names.push(UNCERTAINTY_OUTPUT);
    const out = new Array(encoded.length);
    const lengths = encoded.map((e) => e.length);
    const order = encoded.length <= batchSize ? lengths.map((_, i) => i) : stableArgsort(lengths);
    for (let start = 0; start < order.length; start += batchSize) {
      const idx = order.slice(start, start + batchSize);
      const width = Math.max(1, ...idx.map((i) => lengths[i]));
      const ids = new BigInt64Array(idx.length * width).fill(BigInt(this.tokenizer.padId));
      const mask = new BigInt64Array(idx.length * width);
      idx.forEach((i, row) => {
        encoded[i].forEach((id, col) => {
          ids[row * width + col] = BigInt(id);
          mask[row * width + col] = 1n;
        });
      });
      const dims = [idx.length, width];
      const result = await this.session.run({
        input_ids: new this.ort.Tensor("int64", ids, dims),
        attention_mask: new this.ort.Tensor("int64", mask, dims),
      }, names);
      const scores = result.scores;
      if (scores.dims.length !== 2 || scores.dims[1] !== n) {
        throw new RouterFormatError(
          `${this.source}/${this.graphName} returns scores of shape [${scores.dims}] but ` +
          `${CONFIG_FILE} lists ${n} experts; save the router again from a good copy`,
        );
      }
      idx.forEach((i, row) => {
        out[i] = { scores: Float32Array.from(scores.data.subarray(row * n, (row + 1) * n)) };
        if (withDecision) {
          out[i].choice = Number(result.choice.data[row]);
          out[i].confidence = result.confidence.data[row];
        }
        if (withUncertainty) {
          const u = result[UNCERTAINTY_OUTPUT];
          out[i].uncertainty = Float32Array.from(u.data.subarray(row * n, (row + 1) * n));
        }
      });
    }
    return out;
  }

  #batchSize(batchSize) {
    if (batchSize === undefined || batchSize === null) return this.defaultBatchSize;
    if (!Number.isInteger(batchSize) || batchSize < 1) {
      throw new InvalidInputError(`batchSize must be an integer >= 1, got ${batchSize}`);
    }
    return batchSize;
  }

  /**
   * Every expert's score for each text: one Float32Array (n_experts) per text. With
   * `withUncertainty: true`, `{scores, uncertainty}` from one session run (see uncertainty()).
   * @param {string[]} texts
   * @param {{batchSize?: number, withUncertainty?: boolean}} [options]
   */
  async scores(texts, { batchSize, withUncertainty = false } = {}) {
    texts = checkTexts(texts);
    const size = this.#batchSize(batchSize);
    if (withUncertainty) this.#checkUncertainty();
    if (!texts.length) return withUncertainty ? { scores: [], uncertainty: [] } : [];
    const rows = await this.#run(
      texts.map((t) => this.tokenizer.encode(t)), size, false, withUncertainty,
    );
    const scores = rows.map((r) => r.scores);
    return withUncertainty ? { scores, uncertainty: rows.map((r) => r.uncertainty) } : scores;
  }

  /**
   * The uncertainty of each expert's predicted quality (the graph's `uncertainty` output,
   * Python's Router.uncertainty): one Float32Array (n_experts) per text.
   * @param {string[]} texts
   * @param {{batchSize?: number}} [options]
   */
  async uncertainty(texts, { batchSize } = {}) {
    const { uncertainty } = await this.scores(texts, { batchSize, withUncertainty: true });
    return uncertainty;
  }

  #checkUncertainty() {
    if (this.hasUncertainty) return;
    if (!ENCODER_SPECS[this.config.encoder].pooled) {
      throw new InvalidInputError(
        "a static router has no uncertainty output: its scores are votes of tokens, not one " +
        "ridge prediction per prompt; train a minilm or tiny router for it",
      );
    }
    throw new InvalidInputError(
      `${this.source}/${this.graphName} was saved before the uncertainty output existed: save ` +
      "the router again with irde-onnx (Python) to add it (RouterEditor.open(path).save(), or " +
      "any change with irde experts, irde policy or irde feedback)",
    );
  }

  /**
   * The policy's decision for rows of scores, as the graph computes it (Python's
   * Router.decide): `wtp` overrides the router's default willingness to pay (null: quality
   * only; undefined: the router's own).
   * @param {ArrayLike<number>[]} scores one row of n_experts scores per prompt
   * @param {{wtp?: number|null}} [options]
   * @returns {{choice: number[], confidence: number[]}} column indices and confidences
   */
  decide(scores, { wtp } = {}) {
    if (wtp !== undefined) wtp = checkWtp(wtp);
    const n = this.config.experts.length;
    const rows = Array.from(scores ?? [], (r) => Array.from(r ?? []));
    if (!scores || rows.some((r) => r.length !== n || !r.every((x) => typeof x === "number"))) {
      throw new InvalidInputError(`scores must be rows of ${n} numbers (one per expert)`);
    }
    return this.#decide(rows, wtp);
  }

  #decide(rows, wtp) {
    const { policy, config } = this;
    return decide(rows, config.target, {
      costs: policy.costs === null ? null : config.experts.map((e) => policy.costs[e]),
      wtp: wtp === undefined ? policy.wtp : wtp,
      temperature: policy.temperature,
      minConfidence: policy.minConfidence,
      fallback: policy.fallback === null ? null : config.experts.indexOf(policy.fallback),
    });
  }

  /**
   * Route each text: the expert the router's policy decides (the graph's `choice`), with the
   * router's confidence in it.
   * @param {string[]} texts
   * @param {{topK?: number, batchSize?: number, wtp?: number|null}} [options] topK: experts
   *   ranked by score in `top`; wtp: this call's willingness to pay (cost units per unit of
   *   quality; null: quality only), decided from the scores and router.json's costs
   * @returns {Promise<{expert: string, scores: Record<string, number>, top: string[],
   *   confidence: number}[]>}
   */
  async route(texts, { topK = 1, batchSize, wtp } = {}) {
    texts = checkTexts(texts);
    const size = this.#batchSize(batchSize);
    const experts = this.config.experts;
    if (!Number.isInteger(topK) || topK < 1 || topK > experts.length) {
      throw new InvalidInputError(`topK must be an integer in 1..${experts.length}, got ${topK}`);
    }
    if (wtp !== undefined) {
      wtp = checkWtp(wtp);
      if (wtp !== null && this.policy.costs === null) {
        throw new InvalidInputError(
          "wtp needs costs: this router has none (set them with Python's set_costs() or " +
          "irde policy --costs)",
        );
      }
    }
    if (!texts.length) return [];
    const inGraph = wtp === undefined && this.hasDecision;
    const rows = await this.#run(texts.map((t) => this.tokenizer.encode(t)), size, inGraph);
    if (!inGraph) {
      const { choice, confidence } = this.#decide(rows.map((r) => r.scores), wtp);
      rows.forEach((r, i) => { r.choice = choice[i]; r.confidence = confidence[i]; });
    }
    return rows.map(({ scores: row, choice, confidence }) => {
      // stable sort on -score: ties go to the lower column, as argmax does
      const order = experts.map((_, j) => j).sort((a, b) => row[b] - row[a]).slice(0, topK);
      const scores = {};
      experts.forEach((name, j) => { scores[name] = row[j]; });
      return { expert: experts[choice], scores, top: order.map((j) => experts[j]), confidence };
    });
  }

  /** Free the onnxruntime session. */
  async release() {
    await this.session.release?.();
  }
}

/**
 * Build a router from the contents of its files (any host), with Python's checks: every
 * file's sha256, then the graph's rules, then the graph's expert list.
 * @param {object} parts
 * @param {ReturnType<typeof parseConfig>} parts.parsed router.json, parsed and checked
 * @param {Uint8Array} parts.graphBytes the graph file's bytes (for the rules and metadata)
 * @param {Record<string, string>} parts.digests sha256 per role (graph, stats, data,
 *   tokenizer) of the bytes the host read
 * @param {object} parts.tokenizerJson parsed tokenizer.json
 * @param {(graph: {name: string}) => Promise<object>} parts.openSession opens the session
 * @param {object} parts.ort the onnxruntime module (for Tensor)
 * @param {string[]} [parts.unread] roles the host did not read (not checked)
 */
export async function routerFromParts({ parsed, graphBytes, digests, tokenizerJson, openSession,
  ort, source, backend, RouterClass = Router, unread = [] }) {
  const { config, graph, policy } = parsed;
  const graphSource = `${source}/${graph.name}`;
  checkDigests(parsed, digests, source, unread);
  const tokenizer = new TextTokenizer(tokenizerJson, config.max_length, `${source}/${TOKENIZER_FILE}`,
    config.view);
  const problem = graphProblem(graphBytes, config.encoder, config.feature_dim, config.experts.length,
    tokenizer.vocabSize);
  if (problem !== null) {
    throw new RouterFormatError(
      `${graphSource} ${problem}: it is not a graph irde exports; train or export the router ` +
      "again, or restore a good copy",
    );
  }
  checkGraphAgainstConfig(graphBytes, config, graphSource);
  let session;
  try {
    session = await openSession(graph);
  } catch (err) {
    if (err instanceof IrdeError) throw err;
    throw new RouterFormatError(`${graphSource} cannot be loaded: ${err.message}`);
  }
  return new RouterClass({
    config, policy, tokenizer, session, ort, source, graphName: graph.name, backend,
  });
}
