#!/usr/bin/env node
// irde-route: route prompts with a router folder; prints exactly the JSON lines that
// `irde route` prints (same keys, same order, same number format), so the two can be diffed.

import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";

import { routeLine } from "../src/pyjson.js";
import { FileNotFoundError, IrdeError, InvalidInputError, Router } from "../src/node.js";

const PROG = "irde-route";
const USAGE = `usage: ${PROG} DIR [TEXT ...] [--input FILE.jsonl|-] [--top-k K] [--threads N] [--batch-size N] [--wtp WTP|none]

Route prompts; one JSON line each: {"id"?, "expert", "scores", "top", "confidence"}.

examples:
  ${PROG} my-router "Solve 3x + 5 = 20" "Write a SQL query that counts users"
  ${PROG} my-router --input prompts.jsonl --top-k 2 > routes.jsonl
  cat prompts.jsonl | ${PROG} my-router --input -
  ${PROG} my-router --input prompts.jsonl --wtp 0.002   # this willingness to pay (router with costs)
`;

class UsageError extends IrdeError {}

function positiveInt(name, text) {
  if (text === undefined) return undefined;
  const value = Number(text);
  if (!/^\s*[+-]?\d+\s*$/.test(text)) throw new UsageError(`argument ${name}: '${text}' is not an integer`);
  if (value < 1) throw new UsageError(`argument ${name}: must be >= 1, got ${value}`);
  return value;
}

// the numbers Python's float() reads: digits with single underscores between them, a
// fraction, an exponent, surrounding whitespace; and inf/nan, which are not finite
const PY_FLOAT = /^[+-]?(?:\d(?:_?\d)*(?:\.(?:\d(?:_?\d)*)?)?|\.\d(?:_?\d)*)(?:[eE][+-]?\d(?:_?\d)*)?$/;
const PY_NONFINITE = /^[+-]?(?:inf|infinity|nan)$/i;

// `--wtp`: a finite number, or "none" for quality only (irde route's optional_number)
function optionalNumber(name, text) {
  if (text === undefined) return undefined;
  const stripped = text.trim();
  if (text.toLowerCase() === "none") return null;
  if (!PY_FLOAT.test(stripped) && !PY_NONFINITE.test(stripped)) {
    throw new UsageError(`argument ${name}: '${text}' is not a number or 'none'`);
  }
  const value = Number(stripped.replaceAll("_", "").replace(/inf(inity)?$/i, "Infinity"));
  if (!Number.isFinite(value)) throw new UsageError(`argument ${name}: '${text}' must be finite`);
  return value;
}

function readPrompts(source) {
  const label = source === "-" ? "<stdin>" : source;
  let text;
  try {
    text = readFileSync(source === "-" ? 0 : source, "utf8");
  } catch {
    throw new FileNotFoundError(`data file not found: ${source}`);
  }
  const texts = [];
  const rows = [];
  // split on \n only, as Python's file iteration does (not on U+2028 or \r alone)
  text.split("\n").forEach((line, i) => {
    if (!line.trim()) return;
    const where = `${label}:${i + 1}`;
    let row;
    try {
      row = JSON.parse(line);
    } catch (err) {
      throw new InvalidInputError(`${where}: not valid JSON (${err.message})`);
    }
    if (row === null || typeof row !== "object" || Array.isArray(row)) {
      throw new InvalidInputError(`${where}: each line must be a JSON object`);
    }
    if (typeof row.text !== "string") throw new InvalidInputError(`${where}: the row needs a string "text" field`);
    texts.push(row.text);
    rows.push(row);
  });
  return [texts, rows];
}

async function main(argv) {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        input: { type: "string" },
        "top-k": { type: "string", default: "1" },
        threads: { type: "string" },
        "batch-size": { type: "string" },
        wtp: { type: "string" },
        help: { type: "boolean", short: "h" },
      },
    });
  } catch (err) {
    throw new UsageError(err.message.split("\n")[0]);
  }
  const { values, positionals } = parsed;
  if (values.help) {
    process.stdout.write(USAGE);
    return 0;
  }
  if (!positionals.length) throw new UsageError("the following arguments are required: DIR");
  const [dir, ...texts] = positionals;
  const topK = positiveInt("--top-k", values["top-k"]);
  const threads = positiveInt("--threads", values.threads);
  const batchSize = positiveInt("--batch-size", values["batch-size"]);
  const wtp = optionalNumber("--wtp", values.wtp);
  const rows = texts.map(() => ({}));
  if (values.input !== undefined) {
    const [more, moreRows] = readPrompts(values.input);
    texts.push(...more);
    rows.push(...moreRows);
  }
  if (!texts.length) throw new UsageError("no prompts: give TEXT arguments or --input FILE.jsonl");
  const router = await Router.load(dir, { threads });
  if (topK > router.experts.length) {
    throw new UsageError(`--top-k ${topK} exceeds the ${router.experts.length} experts`);
  }
  // undefined: the router's own willingness to pay (the graph's decision)
  const routes = await router.route(texts, { topK, batchSize, wtp });
  const lines = routes.map((r, i) => routeLine(r, router.experts, rows[i]) + "\n");
  await new Promise((resolve, reject) => {
    process.stdout.write(lines.join(""), (err) => (err ? reject(err) : resolve()));
  });
  return 0;
}

try {
  process.exitCode = await main(process.argv.slice(2));
} catch (err) {
  if (err instanceof IrdeError || err?.code === "ENOENT") {
    const message = String(err.message || err.name).split("\n")[0];
    process.stderr.write(`${PROG}: error: ${message}\n`);
    process.exitCode = 2;
  } else {
    throw err;
  }
}
