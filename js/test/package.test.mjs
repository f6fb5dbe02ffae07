// The package as npm ships it: `npm pack`, install the tarball into an empty project (install
// scripts off: nothing reaches the network but the registry), import it through its
// `exports` map from that project, and run its `bin` with npx on a golden router.
// onnxruntime-node and onnxruntime-web are installed beside it at the versions js/package.json
// names (as dependencies now; the test reads peerDependencies too, should they move there).

import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { promisify } from "node:util";

import { JS_ROOT, ROUTERS, golden, skipUnlessReady } from "./helpers.mjs";

const run = promisify(execFile);
const pkg = JSON.parse(await readFile(path.join(JS_ROOT, "package.json"), "utf8"));
const NPM = process.platform === "win32" ? "npm.cmd" : "npm";
const NPX = process.platform === "win32" ? "npx.cmd" : "npx";
// install scripts off and onnxruntime-node's download skipped: the CPU binaries ship in it
const ENV = { ...process.env, ONNXRUNTIME_NODE_INSTALL: "skip", npm_config_audit: "false",
  npm_config_fund: "false", npm_config_update_notifier: "false" };

describe("npm pack, installed into an empty project", { ...skipUnlessReady(), timeout: 600_000 }, () => {
  let work;
  let app;
  let packed;

  before(async () => {
    work = await mkdtemp(path.join(tmpdir(), "irde-pack-"));
    const { stdout } = await run(NPM, ["pack", "--json", "--pack-destination", work],
      { cwd: JS_ROOT, env: ENV, maxBuffer: 1 << 24 });
    [packed] = JSON.parse(stdout);
    app = path.join(work, "app");
    await mkdir(app);
    await writeFile(path.join(app, "package.json"),
      JSON.stringify({ name: "app", version: "1.0.0", private: true, type: "module" }));
    const versions = { ...pkg.dependencies, ...pkg.peerDependencies };
    const runtimes = ["onnxruntime-node", "onnxruntime-web"].map((n) => `${n}@${versions[n]}`);
    await run(NPM, ["install", "--ignore-scripts", "--prefer-offline", "--no-audit", "--no-fund",
      path.join(work, packed.filename), ...runtimes], { cwd: app, env: ENV, maxBuffer: 1 << 24 });
  });
  after(async () => { if (work) await rm(work, { recursive: true, force: true }); });

  it("ships the sources, types, bin and README, and no tests or demo", () => {
    const files = packed.files.map((f) => f.path).sort();
    for (const want of ["package.json", "README.md", "bin/irde-route.mjs", "src/node.js",
      "src/browser.js", "src/core.js", "types/index.d.ts", "types/browser.d.ts"]) {
      assert.ok(files.includes(want), `${want} is not in the tarball: ${files.join(", ")}`);
    }
    assert.deepEqual(files.filter((f) => /^(test|demo|node_modules)\//.test(f)), []);
  });

  it("its exports map: irde-onnx (node), irde-onnx/node, irde-onnx/browser, nothing else", async () => {
    const script = `
      const resolve = (s) => import.meta.resolve(s).replace(/^.*node_modules\\/irde-onnx\\//, "");
      const out = { main: resolve("irde-onnx"), node: resolve("irde-onnx/node"),
        browser: resolve("irde-onnx/browser"), pkg: resolve("irde-onnx/package.json") };
      const main = await import("irde-onnx");
      const node = await import("irde-onnx/node");
      const browser = await import("irde-onnx/browser");
      out.same = main.Router === node.Router;
      out.names = Object.keys(main).sort();
      out.browserRouter = typeof browser.Router?.fromUrl;
      try { await import("irde-onnx/src/core.js"); out.internal = "imported"; }
      catch (err) { out.internal = err.code; }
      const router = await main.Router.load(process.argv[1], { threads: 1 });
      out.route = (await router.route(["Solve 3x + 5 = 20"]))[0].expert;
      console.log(JSON.stringify(out));
    `;
    const { stdout } = await run(process.execPath,
      ["--input-type=module", "-e", script, path.join(ROUTERS, "static")], { cwd: app, env: ENV });
    const got = JSON.parse(stdout);
    assert.deepEqual(
      { main: got.main, node: got.node, browser: got.browser, pkg: got.pkg },
      { main: "src/node.js", node: "src/node.js", browser: "src/browser.js", pkg: "package.json" });
    assert.equal(got.same, true);
    for (const name of ["Router", "IrdeError", "InvalidInputError", "RouterFormatError"]) {
      assert.ok(got.names.includes(name), `irde-onnx does not export ${name}: ${got.names}`);
    }
    assert.equal(got.browserRouter, "function");
    assert.equal(got.internal, "ERR_PACKAGE_PATH_NOT_EXPORTED");
    // the bin test below compares whole outputs with Python's; here: the import routes
    assert.ok(golden.routers.static.experts.includes(got.route), got.route);
    // a bundler resolves without the "node" condition: its browser (or no) condition gets the
    // wasm build, and every target and its types are in the tarball
    const installed = JSON.parse(await readFile(path.join(app, "node_modules", "irde-onnx", "package.json"), "utf8"));
    const pick = (entry, conditions) => {
      if (typeof entry === "string") return entry;
      for (const [key, value] of Object.entries(entry)) {
        if (key === "default" || conditions.includes(key)) {
          const got = pick(value, conditions);
          if (got !== undefined) return got;
        }
      }
      return undefined;
    };
    assert.equal(pick(installed.exports["."], ["browser", "import"]), "./src/browser.js");
    assert.equal(pick(installed.exports["."], ["import"]), "./src/browser.js");
    assert.equal(pick(installed.exports["."], ["types", "browser"]), "./types/browser.d.ts");
    assert.equal(pick(installed.exports["."], ["types", "node"]), "./types/index.d.ts");
    const shipped = new Set(packed.files.map((f) => `./${f.path}`));
    const targets = (entry) => (typeof entry === "string" ? [entry] : Object.values(entry).flatMap(targets));
    for (const target of targets(installed.exports)) assert.ok(shipped.has(target), `${target} is not in the tarball`);
    assert.ok(shipped.has(installed.types) && shipped.has(installed.bin["irde-route"].replace(/^(?!\.\/)/, "./")));
  });

  it("its bin: npx irde-route prints what irde route prints", async () => {
    const cases = golden.cli.cases.filter((c) => !c.input);
    assert.ok(cases.length > 0);
    for (const c of cases) {
      const { stdout } = await run(NPX, ["--no-install", "irde-route", path.join(ROUTERS, c.router), ...c.args],
        { cwd: app, env: ENV });
      assert.equal(stdout, c.stdout, `${c.router} ${c.args.join(" ")}`);
    }
  });
});
