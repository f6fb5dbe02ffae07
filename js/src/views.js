// Input views: named text normalisations applied to a prompt before it is tokenized, the
// port of irde_onnx/views.py (its docstring holds the rules). Every count is in code points,
// not UTF-16 units; the text is well formed when a view sees it (prepareText), so a
// surrogate pair is always whole. conformance/views.json holds the cases both hosts match.

import { InvalidInputError } from "./errors.js";
import { SPEC } from "./spec.js";

// The names, numbers and patterns come from spec.js (written from irde_onnx/views.py by
// conformance/generate.py); the views' code below is the port.
export const DEFAULT_VIEW = SPEC.views.default;
/** Code points kept per token of max_length by `tail` (and `head_tail`). */
export const TAIL_CHARS_PER_TOKEN = SPEC.views.tail_chars_per_token;
const MIN_OPTION_LINES = SPEC.views.min_option_lines;

// explicit character sets, the same in Python's re and JS RegExp (no \s, \d); Python
// fullmatches a line with blank and cue, and matches option at its start
const PATTERNS = SPEC.views.patterns;
const BLANK = new RegExp(`^(?:${PATTERNS.blank})$`);
const CUE = new RegExp(`^(?:${PATTERNS.cue})$`);
const OPTION = new RegExp(`^(?:${PATTERNS.option})`);
const TRAILING = SPEC.views.trailing;

function isHigh(unit) {
  return unit >= 0xd800 && unit <= 0xdbff;
}

/** The number of code points of a well-formed string. */
export function codePointLength(text) {
  let n = text.length;
  for (let i = 0; i < text.length; i++) {
    if (isHigh(text.charCodeAt(i))) {
      n--;
      i++;
    }
  }
  return n;
}

/** The first `count` code points of a well-formed string. */
export function firstCodePoints(text, count) {
  if (text.length <= count) return text; // UTF-16 length >= code points
  let points = 0;
  for (let i = 0; i < text.length; i++) {
    if (points === count) return text.slice(0, i);
    if (isHigh(text.charCodeAt(i))) i++;
    points++;
  }
  return text;
}

/** Everything after the first `count` code points of a well-formed string. */
function afterCodePoints(text, count) {
  return text.slice(firstCodePoints(text, count).length);
}

/** The last `count` code points of a well-formed string. */
function lastCodePoints(text, count) {
  let points = 0;
  let i = text.length;
  while (i > 0 && points < count) {
    i--;
    const unit = text.charCodeAt(i);
    if (unit >= 0xdc00 && unit <= 0xdfff && i > 0 && isHigh(text.charCodeAt(i - 1))) i--;
    points++;
  }
  return text.slice(i);
}

function rstrip(text, chars) {
  let end = text.length;
  while (end > 0 && chars.includes(text[end - 1])) end--;
  return text.slice(0, end);
}

function full(text) {
  return text;
}

function stripOptions(text) {
  const lines = text.split("\n");
  let end = lines.length;
  while (end > 0 && (BLANK.test(lines[end - 1]) || CUE.test(lines[end - 1]))) end--;
  let start = end;
  while (start > 0 && OPTION.test(lines[start - 1])) start--;
  if (end - start < MIN_OPTION_LINES) return text;
  if (!lines.slice(0, start).some((line) => !BLANK.test(line))) return text; // only options
  return rstrip(lines.slice(0, start).join("\n"), TRAILING);
}

function tailWithin(text, budget) {
  if (text.length <= budget || codePointLength(text) <= budget) return text;
  const kept = lastCodePoints(text, budget);
  const newline = kept.indexOf("\n");
  return newline >= 0 ? kept.slice(newline + 1) : kept;
}

function tail(text, maxLength) {
  return tailWithin(text, maxLength * TAIL_CHARS_PER_TOKEN);
}

function headTail(text, maxLength) {
  const budget = maxLength * TAIL_CHARS_PER_TOKEN;
  if (text.length <= budget || codePointLength(text) <= budget) return text;
  const head = Math.floor(budget / 4);
  return `${firstCodePoints(text, head)}\n${tailWithin(afterCodePoints(text, head), budget - head)}`;
}

const IMPLEMENTATIONS = { full, strip_options: stripOptions, tail, head_tail: headTail };
/** The single views, in the order of Python's registry (compose them with "+"). */
export const VIEWS = Object.freeze(Object.fromEntries(SPEC.views.names.map((name) => {
  // a view Python added and this port lacks fails at import, not at a router's load
  if (!Object.hasOwn(IMPLEMENTATIONS, name)) throw new Error(`views.js has no port of the view '${name}'`);
  return [name, IMPLEMENTATIONS[name]];
})));

/** The names of the single views. */
export function viewNames() {
  return Object.keys(VIEWS);
}

function pyList(names) {
  return `[${names.map((n) => `'${n}'`).join(", ")}]`;
}

/** Return `view` if it names a view or a "+" composition of views, else raise InvalidInputError. */
export function checkView(view) {
  if (typeof view !== "string" || !view) {
    throw new InvalidInputError(`view must be a non-empty string, got ${JSON.stringify(view ?? null)}`);
  }
  const unknown = view.split("+").filter((p) => !Object.hasOwn(VIEWS, p));
  if (unknown.length) {
    throw new InvalidInputError(
      `unknown view '${unknown[0]}' in '${view}'; choose one of ${pyList(viewNames())} ` +
      "(or several joined by '+')",
    );
  }
  return view;
}

/** The text a router with `view` tokenizes (before the length cut); `text` is well formed. */
export function applyView(view, text, maxLength) {
  if (view === DEFAULT_VIEW) return text;
  for (const part of view.split("+")) text = VIEWS[part](text, maxLength);
  return text;
}
