// bin/irde-route.mjs prints exactly what `irde route` prints (recorded in golden.json).

import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, describe, it } from "node:test";
import { promisify } from "node:util";

import { JS_ROOT, ROUTERS, golden, skipUnlessReady } from "./helpers.mjs";

const run = promisify(execFile);
const BIN = path.join(JS_ROOT, "bin", "irde-route.mjs");

async function cli(args, input) {
  try {
    const { stdout, stderr } = await run(process.execPath, [BIN, ...args], { input, maxBuffer: 1 << 26 });
    return { code: 0, stdout, stderr };
  } catch (err) {
    return { code: err.code, stdout: err.stdout, stderr: err.stderr };
  }
}

describe("irde-route", skipUnlessReady(), () => {
  let work;
  after(async () => { if (work) await rm(work, { recursive: true, force: true }); });

  for (const [i, c] of golden.cli.cases.entries()) {
    it(`prints byte for byte what irde route prints (${c.router}, ${c.input ? "--input" : "TEXT args"} ${c.args.join(" ")})`, async () => {
      work ??= await mkdtemp(path.join(tmpdir(), "irde-cli-"));
      const args = [path.join(ROUTERS, c.router)];
      if (c.input) {
        const file = path.join(work, `prompts${i}.jsonl`);
        await writeFile(file, golden.cli.rows.map((r) => JSON.stringify(r) + "\n").join(""));
        args.push("--input", file);
      }
      const got = await cli([...args, ...c.args]);
      assert.equal(got.code, 0, got.stderr);
      assert.equal(got.stdout, c.stdout);
    });
  }

  it("exits 2 with one line for a user error", async () => {
    const missing = await cli([path.join(ROUTERS, "nope"), "x"]);
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, /^irde-route: error: router directory not found: .*\n$/);
    const topK = await cli([path.join(ROUTERS, "static"), "x", "--top-k", "9"]);
    assert.equal(topK.code, 2);
    assert.equal(topK.stderr, "irde-route: error: --top-k 9 exceeds the 5 experts\n");
    const none = await cli([path.join(ROUTERS, "static")]);
    assert.equal(none.stderr, "irde-route: error: no prompts: give TEXT arguments or --input FILE.jsonl\n");
    const notNumber = await cli([path.join(ROUTERS, "static"), "x", "--wtp", "cheap"]);
    assert.equal(notNumber.code, 2);
    assert.equal(notNumber.stderr, "irde-route: error: argument --wtp: 'cheap' is not a number or 'none'\n");
    const noCosts = await cli([path.join(ROUTERS, "static"), "x", "--wtp", "0.5"]);
    assert.equal(noCosts.code, 2);
    assert.match(noCosts.stderr, /^irde-route: error: wtp needs costs: this router has none .*\n$/);
    const zero = await cli([path.join(ROUTERS, "policy"), "x", "--wtp", "0"]);
    assert.equal(zero.stderr, "irde-route: error: wtp must be a finite number > 0, got 0\n");
    const help = await cli(["--help"]);
    assert.equal(help.code, 0);
    assert.match(help.stdout, /--input FILE\.jsonl\|-/);
    assert.match(help.stdout, /--wtp WTP\|none/);
  });
});
