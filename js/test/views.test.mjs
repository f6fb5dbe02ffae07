// Input views: every case of the repository's conformance/views.json (written by the
// Python runtime) gives the same text in JS, and the view names and errors match Python's.

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import path from "node:path";
import { describe, it } from "node:test";

import {
  DEFAULT_VIEW, InvalidInputError, MAX_CHARS_PER_TOKEN, TAIL_CHARS_PER_TOKEN, applyView,
  checkView, prepareText, viewNames,
} from "../src/node.js";
import { CONFORMANCE } from "./helpers.mjs";

const FIXTURES = path.join(CONFORMANCE, "views.json");
const { cases } = JSON.parse(readFileSync(FIXTURES, "utf8"));

describe("conformance/views.json (Python's prepare_text with a view)", () => {
  it("covers every single view", () => {
    const first = new Set(cases.map((c) => c.view.split("+")[0]));
    for (const name of viewNames()) assert.ok(first.has(name), `no case for ${name}`);
  });
  for (const [i, c] of cases.entries()) {
    it(`case ${i}: ${c.view}, max_length ${c.max_length}`, () => {
      assert.equal(prepareText(c.input, c.max_length, c.view), c.output);
    });
  }
});

describe("views", () => {
  it("are Python's, in its order", () => {
    assert.deepEqual(viewNames(), ["full", "strip_options", "tail", "head_tail"]);
    assert.equal(DEFAULT_VIEW, "full");
    assert.equal(TAIL_CHARS_PER_TOKEN, 3);
  });

  it("count code points, not UTF-16 units", () => {
    const budget = 2 * TAIL_CHARS_PER_TOKEN;
    const emoji = "😀".repeat(budget + 3);
    assert.equal(applyView("tail", emoji, 2), "😀".repeat(budget));
    assert.equal(applyView("tail", "😀".repeat(budget), 2), "😀".repeat(budget));
    const head = Math.floor(8 * TAIL_CHARS_PER_TOKEN / 4);
    const text = "𠀀".repeat(40);
    assert.equal(applyView("head_tail", text, 8), `${"𠀀".repeat(head)}\n${"𠀀".repeat(24 - head)}`);
  });

  it("apply before the cut at max_length * 32 code points", () => {
    const long = "x".repeat(10 * 2 * MAX_CHARS_PER_TOKEN);
    assert.equal(prepareText(long, 2, "full"), long.slice(0, 2 * MAX_CHARS_PER_TOKEN));
    assert.equal(prepareText(long, 2, "tail"), long.slice(-2 * TAIL_CHARS_PER_TOKEN));
    // the view sees well-formed text: a lone surrogate is U+FFFD already
    assert.equal(prepareText("lone \ud800 x\nA. a\nB. b", 256, "strip_options"), "lone \ufffd x");
  });

  it("compose left to right", () => {
    const text = `${"preamble ".repeat(5)}\nthe question?\nA. yes\nB. no`;
    assert.equal(applyView("strip_options+tail", text, 8), "the question?");
    assert.equal(applyView("tail+strip_options", text, 8),
      applyView("strip_options", applyView("tail", text, 8), 8));
  });

  it("refuse an unknown view with Python's message", () => {
    assert.equal(checkView("strip_options+tail"), "strip_options+tail");
    assert.throws(() => checkView("strip_options+middle"), (e) => e instanceof InvalidInputError &&
      e.message === "unknown view 'middle' in 'strip_options+middle'; choose one of " +
      "['full', 'strip_options', 'tail', 'head_tail'] (or several joined by '+')");
    assert.throws(() => checkView(""), /view must be a non-empty string/);
    assert.throws(() => prepareText("x", 256, "nope"), InvalidInputError);
  });
});
