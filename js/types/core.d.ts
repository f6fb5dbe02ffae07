/** What Python's Route.to_dict() holds: the chosen expert, every score by name, the top k. */
export interface Route {
  expert: string;
  scores: Record<string, number>;
  top: string[];
}

export interface RouteOptions {
  /** How many experts to rank in `top` (1..experts.length, default 1). */
  topK?: number;
  /** Prompts per onnxruntime call (default 1 for int8 routers, else 32). */
  batchSize?: number;
}

/** router.json, as written by the Python package. */
export interface RouterConfig {
  readonly format_version: 1 | 2;
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
  readonly files?: Record<"graph" | "stats", { name: string; sha256?: string }>;
  readonly [key: string]: unknown;
}

/** Base class of the errors that a caller's input or files can cause. */
export class IrdeError extends Error {}
/** An argument is not valid; the message names the fix. */
export class InvalidInputError extends IrdeError {}
/** A router folder is incomplete, corrupt or of an unknown format version. */
export class RouterFormatError extends IrdeError {}
/** A file or folder that a router needs does not exist (code "ENOENT"). */
export class FileNotFoundError extends IrdeError {
  readonly code: "ENOENT";
}

/** Characters kept per token of max_length before tokenizing (the shared text rule). */
export const MAX_CHARS_PER_TOKEN: 32;
/** router.json format versions this package reads. */
export const FORMAT_VERSIONS: number[];

/**
 * The text every host tokenizes: unpaired surrogates become U+FFFD, then only the first
 * maxLength * 32 code points are kept.
 */
export function prepareText(text: string, maxLength: number): string;

/** A tokenizer.json with truncation to maxLength, giving the Python runtime's ids. */
export class TextTokenizer {
  constructor(json: object, maxLength: number, source?: string);
  readonly maxLength: number;
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
  /** Prompts per onnxruntime call when batchSize is not given (1 for int8). */
  readonly defaultBatchSize: number;
  /** Token ids of each text, special tokens included (what the graph is fed). */
  encode(texts: string[]): number[][];
  /** Every expert's score for each text, in column order. */
  scores(texts: string[], options?: { batchSize?: number }): Promise<Float32Array[]>;
  /** Route each text to the best expert; one Route per text, in input order. */
  route(texts: string[], options?: RouteOptions): Promise<Route[]>;
  /** Free the onnxruntime session. */
  release(): Promise<void>;
}
