// The package as npm ships it and users install it, packed once: `npm pack`, then the
// tarball's contents; `npm install <tarball>` into an empty project. onnxruntime-node and
// onnxruntime-web are optional peer dependencies, so the tarball alone installs neither:
// Router.load (and the CLI) then fail with a MissingBackendError that names the install
// command. Installing onnxruntime-node from the registry with ONNXRUNTIME_NODE_INSTALL=skip
// runs its install script (as npm versions that run dependency scripts do) without it
// reaching the network; the package then routes golden prompts as Python, its `exports` map
// resolves from the project, and its `bin` (npx) prints what `irde route` prints. A browser
// user's install (tarball + onnxruntime-web) holds no onnxruntime-node and imports the
// browser build. Packages come from npm's cache when it holds them (`npm ci` in js/ fills it).

import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { lstat, mkdir, mkdtemp, readdir, rm, writeFile } from "node:fs/promises";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { promisify } from "node:util";

import { JS_ROOT, ROUTERS, SCORE_ATOL, golden, goldenTexts, skipUnlessReady } from "./helpers.mjs";

const run = promisify(execFile);
const pkg = JSON.parse(readFileSync(path.join(JS_ROOT, "package.json"), "utf8"));
const NPX = process.platform === "win32" ? "npx.cmd" : "npx";
const NPM_FLAGS = ["--prefer-offline", "--no-audit", "--no-fund"];

async function dirSize(dir) {
  let total = 0;
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const file = path.join(dir, entry.name);
    if (entry.isDirectory()) total += await dirSize(file);
    else total += (await lstat(file)).size;
  }
  return total;
}
const mb = (bytes) => `${(bytes / 1e6).toFixed(1)} MB`;

/** The environment of a user's shell: none of npm's or CI's settings for onnxruntime-node. */
function userEnv(extra = {}) {
  const env = { ...process.env };
  for (const key of Object.keys(env)) {
    if (/^npm_|^ONNXRUNTIME_NODE_INSTALL|^GLOBAL_AGENT_/i.test(key)) delete env[key];
  }
  return { ...env, ...extra };
}

/**
 * A proxy that answers nothing: every connection is counted and closed. onnxruntime-node's
 * install script sends its downloads through GLOBAL_AGENT_HTTPS_PROXY (global-agent).
 */
async function trapProxy() {
  const seen = [];
  const server = net.createServer((socket) => {
    socket.once("data", (chunk) => seen.push(String(chunk).split("\r\n")[0]));
    socket.on("error", () => {});
    setTimeout(() => socket.destroy(), 50);
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  const url = `http://127.0.0.1:${server.address().port}`;
  return { seen, server, env: { GLOBAL_AGENT_HTTPS_PROXY: url, GLOBAL_AGENT_HTTP_PROXY: url } };
}

/** Run a module in the project (so "irde-onnx" resolves from its node_modules); parse stdout. */
async function inProject(project, source, env = userEnv()) {
  const file = path.join(project, `probe-${Math.random().toString(36).slice(2)}.mjs`);
  await writeFile(file, source);
  const { stdout } = await run(process.execPath, [file], { cwd: project, env, maxBuffer: 64 << 20 });
  return JSON.parse(stdout);
}

const PROBE_ERROR = (backend) => `
import { IrdeError, MissingBackendError, Router } from "irde-onnx";
try {
  await Router.load(${JSON.stringify(path.join(ROUTERS, "static"))}, { backend: ${JSON.stringify(backend)} });
  console.log(JSON.stringify({ loaded: true }));
} catch (err) {
  console.log(JSON.stringify({ name: err.name, message: err.message, code: err.code,
    missing: err instanceof MissingBackendError, irde: err instanceof IrdeError }));
}`;

describe("npm pack (once) + npm install <tarball> into empty projects", { ...skipUnlessReady(), timeout: 600_000 }, () => {
  let work;
  let packed;
  let tarball;
  let project;
  const sizes = {};

  before(async () => {
    work = await mkdtemp(path.join(os.tmpdir(), "irde-pack-"));
    const { stdout } = await run("npm", ["pack", "--json", "--pack-destination", work],
      { cwd: JS_ROOT, maxBuffer: 1 << 24 });
    [packed] = JSON.parse(stdout);
    tarball = path.join(work, packed.filename);
    project = path.join(work, "node-app");
    await mkdir(project);
    await writeFile(path.join(project, "package.json"), JSON.stringify({ name: "node-app", private: true }));
  });
  after(async () => {
    if (Object.keys(sizes).length) {
      console.log(`# node_modules: ${Object.entries(sizes).map(([k, v]) => `${k} ${mb(v)}`).join(", ")}`);
    }
    if (work) await rm(work, { recursive: true, force: true });
  });

  it("declares the back-ends as optional peers, pinned as devDependencies for its own tests", () => {
    for (const name of ["onnxruntime-node", "onnxruntime-web"]) {
      assert.equal(pkg.dependencies[name], undefined, name);
      assert.match(pkg.peerDependencies[name], /^~?\d+\.\d+\.\d+$/, name);
      assert.deepEqual(pkg.peerDependenciesMeta[name], { optional: true });
      assert.match(pkg.devDependencies[name], /^\d+\.\d+\.\d+$/, name);
    }
  });

  it("ships the sources (the generated spec.js too), types, bin and README, and no tests or demo", () => {
    const files = packed.files.map((f) => f.path).sort();
    for (const want of ["package.json", "README.md", "bin/irde-route.mjs", "src/node.js",
      "src/browser.js", "src/core.js", "src/spec.js", "types/index.d.ts", "types/browser.d.ts"]) {
      assert.ok(files.includes(want), `${want} is not in the tarball: ${files.join(", ")}`);
    }
    assert.deepEqual(files.filter((f) => /^(test|demo|node_modules)\//.test(f)), []);
  });

  it("the tarball alone installs neither onnxruntime package", async () => {
    await run("npm", ["install", ...NPM_FLAGS, tarball], { cwd: project, env: userEnv() });
    const modules = path.join(project, "node_modules");
    assert.ok(existsSync(path.join(modules, "irde-onnx", "src", "node.js")));
    assert.ok(!existsSync(path.join(modules, "onnxruntime-node")), "onnxruntime-node was installed");
    assert.ok(!existsSync(path.join(modules, "onnxruntime-web")), "onnxruntime-web was installed");
    sizes["tarball alone"] = await dirSize(modules);
  });

  it("without onnxruntime-node, Router.load fails with a MissingBackendError naming the install command", async () => {
    const range = pkg.peerDependencies["onnxruntime-node"];
    const got = await inProject(project, PROBE_ERROR("node"));
    assert.equal(got.name, "MissingBackendError");
    assert.ok(got.missing && got.irde, JSON.stringify(got));
    assert.equal(got.code, "IRDE_MISSING_BACKEND");
    assert.ok(got.message.startsWith(
      `onnxruntime-node is not installed: npm install onnxruntime-node@${range} (`), got.message);
  });

  it('without onnxruntime-web, the "wasm" back-end names onnxruntime-web', async () => {
    const range = pkg.peerDependencies["onnxruntime-web"];
    const got = await inProject(project, PROBE_ERROR("wasm"));
    assert.equal(got.name, "MissingBackendError");
    assert.ok(got.message.startsWith(
      `onnxruntime-web is not installed: npm install onnxruntime-web@${range} (`), got.message);
  });

  it("without onnxruntime-node, the CLI prints the install command (exit code 2)", async () => {
    const bin = path.join(project, "node_modules", ".bin", "irde-route");
    const err = await run(bin, [path.join(ROUTERS, "static"), "Solve 3x + 5 = 20"],
      { cwd: project, env: userEnv() }).then(() => null, (e) => e);
    assert.ok(err, "irde-route succeeded without onnxruntime-node");
    assert.equal(err.code, 2);
    assert.equal(err.stdout, "");
    assert.match(err.stderr, new RegExp(`^irde-route: error: onnxruntime-node is not installed: ` +
      `npm install onnxruntime-node@${pkg.peerDependencies["onnxruntime-node"].replace(/[.]/g, "\\.")} \\(`));
  });

  it("onnxruntime-node's install script, run with ONNXRUNTIME_NODE_INSTALL=skip, reaches no network; then the package routes as Python", async () => {
    const trap = await trapProxy();
    try {
      // allowScripts: the install script runs, as with npm versions that run every dependency's
      // scripts (newer npm skips unapproved ones; older npm ignores the field)
      const manifest = path.join(project, "package.json");
      await writeFile(manifest, JSON.stringify({
        ...JSON.parse(readFileSync(manifest, "utf8")), allowScripts: { "onnxruntime-node": true },
      }));
      const { stdout, stderr } = await run("npm", ["install", ...NPM_FLAGS, "--foreground-scripts",
        `onnxruntime-node@${pkg.devDependencies["onnxruntime-node"]}`],
      { cwd: project, env: userEnv({ ONNXRUNTIME_NODE_INSTALL: "skip", ...trap.env }) });
      assert.match(stdout + stderr, /node \.\/script\/install/, "the install script did not run");
      assert.deepEqual(trap.seen, [], "the install script connected");
      sizes["tarball + onnxruntime-node"] = await dirSize(path.join(project, "node_modules"));
      assert.ok(!existsSync(path.join(project, "node_modules", "onnxruntime-web")));

      // the control: without the skip the same script does go out (on linux-x64, for the CUDA
      // provider on api.nuget.org; elsewhere it needs nothing); the trap then answers nothing
      const script = path.join(project, "node_modules", "onnxruntime-node", "script", "install.js");
      await run(process.execPath, [script], { cwd: project, env: userEnv(trap.env), timeout: 60_000 })
        .catch(() => {});
      if (`${process.platform}-${process.arch}` === "linux-x64") {
        assert.match(trap.seen[0] ?? "", /^CONNECT api\.nuget\.org:443 /);
      } else {
        assert.deepEqual(trap.seen, []);
      }
    } finally {
      trap.server.close();
    }

    const texts = await goldenTexts();
    const routes = await inProject(project, `
import { Router } from "irde-onnx";
const texts = ${JSON.stringify(texts)};
const out = {};
for (const name of ["static", "int8"]) {
  const router = await Router.load(${JSON.stringify(ROUTERS)} + "/" + name, { threads: 1 });
  out[name] = { backend: router.backend, rows: await router.route(texts) };
  await router.release();
}
console.log(JSON.stringify(out));`);
    for (const name of ["static", "int8"]) {
      assert.equal(routes[name].backend, "node");
      assert.equal(routes[name].rows.length, golden.prompts.length);
      const experts = golden.routers[name].experts;
      for (const [i, { expert, scores, confidence }] of routes[name].rows.entries()) {
        const what = `${name}: ${golden.prompts[i].name}`;
        assert.equal(expert, golden.experts[name][i], what);
        experts.forEach((e, j) => assert.ok(Math.abs(scores[e] - golden.scores[name][i][j]) <= SCORE_ATOL,
          `${what}: ${e}`));
        assert.ok(Math.abs(confidence - golden.confidence[name][i]) <= SCORE_ATOL, what);
      }
    }
  });

  it("its exports map: irde-onnx (node), irde-onnx/node, irde-onnx/browser, nothing else", async () => {
    const script = `
      const resolve = (s) => import.meta.resolve(s).replace(/^.*node_modules\\/irde-onnx\\//, "");
      const out = { main: resolve("irde-onnx"), node: resolve("irde-onnx/node"),
        browser: resolve("irde-onnx/browser"), pkg: resolve("irde-onnx/package.json") };
      const main = await import("irde-onnx");
      const node = await import("irde-onnx/node");
      out.same = main.Router === node.Router;
      out.names = Object.keys(main).sort();
      try { await import("irde-onnx/src/core.js"); out.internal = "imported"; }
      catch (err) { out.internal = err.code; }
      const router = await main.Router.load(process.argv[1], { threads: 1 });
      out.route = (await router.route(["Solve 3x + 5 = 20"]))[0].expert;
      console.log(JSON.stringify(out));
    `;
    const { stdout } = await run(process.execPath,
      ["--input-type=module", "-e", script, path.join(ROUTERS, "static")], { cwd: project, env: userEnv() });
    const got = JSON.parse(stdout);
    assert.deepEqual(
      { main: got.main, node: got.node, browser: got.browser, pkg: got.pkg },
      { main: "src/node.js", node: "src/node.js", browser: "src/browser.js", pkg: "package.json" });
    assert.equal(got.same, true);
    for (const name of ["Router", "IrdeError", "InvalidInputError", "RouterFormatError"]) {
      assert.ok(got.names.includes(name), `irde-onnx does not export ${name}: ${got.names}`);
    }
    assert.equal(got.internal, "ERR_PACKAGE_PATH_NOT_EXPORTED");
    // the bin test below compares whole outputs with Python's; here: the import routes
    assert.ok(golden.routers.static.experts.includes(got.route), got.route);
    // a bundler resolves without the "node" condition: its browser (or no) condition gets the
    // wasm build, and every target and its types are in the tarball
    const installed = JSON.parse(readFileSync(path.join(project, "node_modules", "irde-onnx", "package.json"), "utf8"));
    const pick = (entry, conditions) => {
      if (typeof entry === "string") return entry;
      for (const [key, value] of Object.entries(entry)) {
        if (key === "default" || conditions.includes(key)) {
          const found = pick(value, conditions);
          if (found !== undefined) return found;
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
        { cwd: project, env: userEnv() });
      assert.equal(stdout, c.stdout, `${c.router} ${c.args.join(" ")}`);
    }
  });

  it("a browser user's install (tarball + onnxruntime-web) holds no onnxruntime-node", async () => {
    const web = path.join(work, "web-app");
    await mkdir(web);
    await writeFile(path.join(web, "package.json"), JSON.stringify({ name: "web-app", private: true }));
    await run("npm", ["install", ...NPM_FLAGS, tarball, `onnxruntime-web@${pkg.devDependencies["onnxruntime-web"]}`],
      { cwd: web, env: userEnv() });
    assert.ok(existsSync(path.join(web, "node_modules", "onnxruntime-web", "package.json")));
    assert.ok(!existsSync(path.join(web, "node_modules", "onnxruntime-node")), "onnxruntime-node was installed");
    sizes["tarball + onnxruntime-web"] = await dirSize(path.join(web, "node_modules"));
    // its browser build imports there (onnxruntime-web/wasm loads in Node too)
    const got = await inProject(web, `
import * as browser from "irde-onnx/browser";
console.log(JSON.stringify({ fromUrl: typeof browser.Router?.fromUrl, fromBytes: typeof browser.Router?.fromBytes }));`);
    assert.deepEqual(got, { fromUrl: "function", fromBytes: "function" });
  });
});
