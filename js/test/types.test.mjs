// The TypeScript declarations compile against a program that uses the documented API.

import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { createRequire } from "node:module";
import path from "node:path";
import { it } from "node:test";
import { promisify } from "node:util";

import { JS_ROOT } from "./helpers.mjs";

it("types/*.d.ts describe the API (tsc --noEmit)", async () => {
  const tsc = createRequire(import.meta.url).resolve("typescript/bin/tsc");
  // tsc prints its diagnostics on stdout and exits non-zero (also for a config it cannot read)
  const { code, stdout, stderr } = await promisify(execFile)(process.execPath,
    [tsc, "-p", path.join(JS_ROOT, "test", "types", "tsconfig.json")])
    .then((done) => ({ code: 0, ...done }), (err) => err);
  assert.equal(stdout, "");
  assert.equal(code, 0, `tsc exited with ${code}: ${stderr}`);
});
