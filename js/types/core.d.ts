/**
 * What Python's Route.to_dict() holds: the decided expert, every score by name, the top k by
 * score, and the router's confidence in its pick.
 */
export interface Route {
  /** The expert the router's policy decides (the graph's `choice`): the best score unless
   * costs and the willingness to pay, or the confidence threshold and fallback, say otherwise. */
  expert: string;
  scores: Record<string, number>;
  /** The topK experts with the best scores, best first. */
  top: string[];
  /** Domain routers: the pick's softmax(scores / temperature); score routers: its score
   * clipped to [0, 1] (the graph's `confidence`). */
  confidence: number;
}

export interface RouteOptions {
  /** How many experts to rank in `top` (1..experts.length, default 1). */
  topK?: number;
  /** Prompts per onnxruntime call (default 1 for int8 routers, else 32). */
  batchSize?: number;
  /**
   * This call's willingness to pay (cost units per unit of quality, > 0), instead of the
   * router's default; null: quality only. A number needs costs in router.json's policy.
   */
  wtp?: number | null;
}

/** router.json's `policy`: every field optional (absent: none of them). */
export interface PolicySettings {
  readonly costs?: Record<string, number>;
  readonly wtp?: number;
  readonly min_confidence?: number;
  readonly fallback?: string;
  readonly temperature?: number;
  readonly calibration?: Record<string, [number, number]>;
}

/** The settings of the decision rule, columns as indices (see decide). */
export interface DecideSettings {
  /** Cost of each expert in column order, or null (quality only). */
  costs?: ArrayLike<number> | null;
  /** Willingness to pay, or null (quality only). */
  wtp?: number | null;
  /** Domain routers: the softmax temperature (default 1). */
  temperature?: number;
  /** Below this confidence the prompt goes to `fallback` (default 0: never). */
  minConfidence?: number;
  /** Column of the fallback expert, or null. */
  fallback?: number | null;
}

/** Choices (column indices) and confidences, one per row of scores. */
export interface Decision {
  choice: number[];
  confidence: number[];
}

/** Options of the browser build's Router.fromUrl and Router.fromBytes. */
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

/** Options of Router.fromUrl (the browser build) beyond BrowserOptions. */
export interface UrlOptions {
  /** The fetch to use (default: the page's). */
  fetch?: typeof fetch;
  /**
   * Also fetch stats.npz and check its sha256 (default false: routing never reads the
   * statistics, so the page does not download them).
   */
  checkStatistics?: boolean;
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
  /**
   * The statistics file named by router.json: optional (routing never reads it); checked
   * against its recorded sha256 when given.
   */
  stats?: Uint8Array | ArrayBuffer;
}

/** router.json, as written by the Python package. */
export interface RouterConfig {
  readonly format_version: 1 | 2 | 3;
  readonly experts: string[];
  readonly expert_modes: ("pooled" | "own")[];
  readonly encoder: "minilm" | "static";
  readonly precision: "int8" | "fp32" | "fp16";
  readonly strategy: "mean" | "vote" | "entropy_top_k";
  readonly target: "domain" | "score";
  readonly lam: number;
  readonly max_length: number;
  readonly feature_dim: number;
  readonly fingerprint: string;
  readonly package_version: string;
  /** The files with their sha256: graph and stats (version 2), also data and tokenizer (3). */
  readonly files?: Partial<Record<"graph" | "stats" | "data" | "tokenizer", { name: string; sha256: string }>>;
  /** The input view applied before tokenizing ("full" when router.json has none). */
  readonly view: string;
  /** Pooled encoder layers, e.g. [6, 5] ([]: the last layer alone). */
  readonly layers: number[];
  /** The decision settings ({} when router.json has none). */
  readonly policy: PolicySettings;
  readonly [key: string]: unknown;
}

/** Base class of the errors that a caller's input or files can cause (`name` is set as a
 * string in each class, so it survives minification). */
export class IrdeError extends Error {
  constructor(message?: string, options?: { cause?: unknown });
}
/** An argument is not valid; the message names the fix. */
export class InvalidInputError extends IrdeError {}
/** A router folder is incomplete, corrupt or of an unknown format version. */
export class RouterFormatError extends IrdeError {}
/** A file or folder that a router needs does not exist (code "ENOENT"). */
export class FileNotFoundError extends IrdeError {
  readonly code: "ENOENT";
}
/**
 * The onnxruntime package a back-end needs is not installed (onnxruntime-node and
 * onnxruntime-web are optional peer dependencies); the message names the install command.
 */
export class MissingBackendError extends IrdeError {
  readonly code: "IRDE_MISSING_BACKEND";
}

/** Characters kept per token of max_length before tokenizing (the shared text rule). */
export const MAX_CHARS_PER_TOKEN: 32;
/** router.json format versions this package reads. */
export const FORMAT_VERSIONS: number[];
/** The view of routers that name none: the text as it is. */
export const DEFAULT_VIEW: "full";
/** Code points kept per token of max_length by the `tail` and `head_tail` views. */
export const TAIL_CHARS_PER_TOKEN: 3;

/**
 * The text every host tokenizes: unpaired surrogates become U+FFFD, then the input view is
 * applied (default "full"), then only the first maxLength * 32 code points are kept.
 */
export function prepareText(text: string, maxLength: number, view?: string): string;
/** The single input views: "full", "strip_options", "tail", "head_tail" (compose with "+"). */
export function viewNames(): string[];
/** Return view if it names a view or a "+" composition, else throw InvalidInputError. */
export function checkView(view: string): string;
/** Apply a (checked) view to well-formed text, counting code points. */
export function applyView(view: string, text: string, maxLength: number): string;
/**
 * The decision rule of irde_onnx.decision.policy.decide on rows of scores (float32, like the graph).
 * @param target "domain" (softmax quality) or "score" (scores as quality)
 */
export function decide(scores: ArrayLike<number>[], target: "domain" | "score",
  settings?: DecideSettings): Decision;

/** A tokenizer.json with truncation to maxLength, giving the Python runtime's ids. */
export class TextTokenizer {
  constructor(json: object, maxLength: number, source?: string, view?: string);
  readonly maxLength: number;
  /** The input view applied to every text first. */
  readonly view: string;
  readonly padId: number;
  /** Token ids of one text, special tokens included, truncated to maxLength. */
  encode(text: string): number[];
}

/** A loaded router. */
export class Router {
  protected constructor();
  /** router.json, checked. */
  readonly config: RouterConfig;
  /** "node" (onnxruntime-node) or "wasm" (onnxruntime-web). */
  readonly backend: "node" | "wasm";
  /** Expert names in column order. */
  readonly experts: string[];
  /** The input view applied before tokenizing (router.json `view`). */
  readonly view: string;
  /** True when the graph computes `choice` and `confidence` (routers saved before the
   * policy do not; their decision is then computed from the scores). */
  readonly hasDecision: boolean;
  /** True when the graph computes `uncertainty` (pooled routers saved with it; static
   * routers and older ones do not). */
  readonly hasUncertainty: boolean;
  /** Prompts per onnxruntime call when batchSize is not given (1 for int8). */
  readonly defaultBatchSize: number;
  /** Token ids of each text, special tokens included (what the graph is fed). */
  encode(texts: string[]): number[][];
  /** Every expert's score for each text, in column order. */
  scores(texts: string[], options?: { batchSize?: number; withUncertainty?: false }): Promise<Float32Array[]>;
  /** Scores and uncertainty from one session run (throws without the uncertainty output). */
  scores(
    texts: string[],
    options: { batchSize?: number; withUncertainty: true },
  ): Promise<{ scores: Float32Array[]; uncertainty: Float32Array[] }>;
  /**
   * The uncertainty of each expert's predicted quality (the graph's `uncertainty` output):
   * the width of a LinUCB interval in a 32-dimensional subspace of the features, one row of
   * n_experts per text. Throws InvalidInputError when the router has no such output.
   */
  uncertainty(texts: string[], options?: { batchSize?: number }): Promise<Float32Array[]>;
  /** Route each text: the policy's decision and confidence; one Route per text, in input order. */
  route(texts: string[], options?: RouteOptions): Promise<Route[]>;
  /**
   * The policy's decision for rows of scores (Python's Router.decide); wtp overrides the
   * router's default (null: quality only).
   */
  decide(scores: ArrayLike<number>[], options?: { wtp?: number | null }): Decision;
  /** Free the onnxruntime session. */
  release(): Promise<void>;
}
