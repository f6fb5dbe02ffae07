// The two browser recipes users copy, examples/vite and examples/esbuild, built as a user
// builds them (npm pack, then one `npm install` of the tarball, onnxruntime-web, vite and
// esbuild into a temporary project, from npm's cache when it holds them), served from
// 127.0.0.1 and opened in headless Chromium: each page routes golden prompts with the golden
// static router as Python does; without the wasm file the page shows a FileNotFoundError that
// names it (the class name survives minification). The Vite page also runs on Vite's dev server. And TypeScript with
// moduleResolution "bundler" (Vite's and Next's templates) finds Router.load and Router.fromUrl.

import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { readFileSync } from "node:fs";
import { cp, mkdir, mkdtemp, readFile, rename, rm, symlink, writeFile } from "node:fs/promises";
import http from "node:http";
import { createRequire } from "node:module";
import os from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { pathToFileURL } from "node:url";
import { promisify } from "node:util";

import { chromium } from "playwright-core";

import {
  CHROMIUM_ARGS, CHROMIUM_PATH, JS_ROOT, MIME_TYPES, REPO, ROUTERS, SCORE_ATOL, browserSkip, golden,
} from "./helpers.mjs";

const run = promisify(execFile);
const pkg = JSON.parse(readFileSync(path.join(JS_ROOT, "package.json"), "utf8"));
const EXAMPLES = path.join(REPO, "examples");
// golden prompts typed into the page (plain text the textarea keeps as it is)
const PROMPTS = ["ascii math", "special tokens", "chinese", "code", "emoji"]
  .map((name) => golden.prompts.findIndex((p) => p.name === name));
const ROUTER = "static";

/** Serve dist/ with the router folder at /router/; withoutWasm: every .wasm is a 404. */
async function serve(dist, router, { withoutWasm = false } = {}) {
  const server = http.createServer(async (req, res) => {
    const urlPath = decodeURIComponent(new URL(req.url, "http://localhost").pathname);
    const [root, rest] = urlPath.startsWith("/router/") ? [router, urlPath.slice(8)] : [dist, urlPath.slice(1)];
    const file = path.resolve(root, rest || "index.html");
    if (!file.startsWith(root + path.sep) || (withoutWasm && file.endsWith(".wasm"))) {
      res.writeHead(404).end();
      return;
    }
    try {
      const body = await readFile(file);
      res.writeHead(200, { "content-type": MIME_TYPES[path.extname(file)] ?? "application/octet-stream" }).end(body);
    } catch {
      res.writeHead(404).end();
    }
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  return { server, url: `http://127.0.0.1:${server.address().port}/` };
}

/** Pack the package and install it with these packages into a new temporary project. */
async function installProject(prefix, packages) {
  const work = await mkdtemp(path.join(os.tmpdir(), prefix));
  const { stdout } = await run("npm", ["pack", "--silent", "--pack-destination", work], { cwd: JS_ROOT });
  const tarball = path.join(work, stdout.trim().split("\n").at(-1));
  await writeFile(path.join(work, "package.json"), JSON.stringify({ name: prefix.replace(/-$/, ""), private: true }));
  // one install for the recipes; no install scripts (esbuild's only checks its binary)
  await run("npm", ["install", "--prefer-offline", "--no-audit", "--no-fund", "--ignore-scripts", tarball,
    ...packages.map((name) => `${name}@${pkg.devDependencies[name]}`)], { cwd: work });
  return work;
}

/**
 * Copy examples/NAME into the project, without its package.json: the project one folder up
 * holds the dependencies, and Vite's dev server serves files under the nearest package root.
 */
async function copyExample(name, to) {
  await cp(path.join(EXAMPLES, name), to, {
    recursive: true, filter: (src) => !/[/\\](node_modules|dist|package\.json)$/.test(src),
  });
}

describe("browser recipes: examples/vite and examples/esbuild in headless Chromium",
  { ...browserSkip(), timeout: 600_000 }, () => {
    let work;
    let browser;
    let viteDev;
    const dists = {};
    const servers = [];

    before(async () => {
      const started = Date.now();
      work = await installProject("irde-recipes-", ["onnxruntime-web", "vite", "esbuild"]);
      const installed = Date.now();
      for (const name of ["vite", "esbuild"]) await copyExample(name, path.join(work, name));
      await run(process.execPath, [path.join(work, "node_modules", "vite", "bin", "vite.js"), "build",
        "--logLevel", "warn"], { cwd: path.join(work, "vite") });
      await run(process.execPath, ["build.mjs"], { cwd: path.join(work, "esbuild") });
      for (const name of ["vite", "esbuild"]) dists[name] = path.join(work, name, "dist");
      console.log(`# recipes: npm install ${((installed - started) / 1000).toFixed(1)} s, ` +
        `vite and esbuild builds ${((Date.now() - installed) / 1000).toFixed(1)} s`);
      browser = await chromium.launch({ executablePath: CHROMIUM_PATH, headless: true, args: CHROMIUM_ARGS });
    });
    after(async () => {
      await browser?.close();
      await viteDev?.close();
      await Promise.all(servers.map((s) => new Promise((resolve) => s.close(resolve))));
      if (work) await rm(work, { recursive: true, force: true });
    });

    async function openPage(name, options) {
      const { server, url } = await serve(dists[name], path.join(ROUTERS, ROUTER), options);
      servers.push(server);
      const page = await browser.newPage();
      const requests = [];
      page.on("request", (r) => requests.push(r.url()));
      await page.goto(url);
      await page.waitForSelector("body[data-state]", { timeout: 120_000 });
      return { page, url, requests };
    }

    for (const name of ["vite", "esbuild"]) {
      it(`${name}: the built page routes golden prompts as Python does`, async () => {
        const { page, url, requests } = await openPage(name);
        assert.equal(await page.getAttribute("body", "data-state"), "ready", await page.textContent("#result"));
        const experts = golden.routers[ROUTER].experts;
        for (const i of PROMPTS) {
          await page.fill("#prompt", golden.prompts[i].text);
          await page.click("#route");
          await page.waitForSelector("body[data-state=routed], body[data-state=error]");
          const route = JSON.parse(await page.textContent("#result"));
          const what = golden.prompts[i].name;
          assert.equal(route.expert, golden.experts[ROUTER][i], what);
          experts.forEach((e, j) => assert.ok(Math.abs(route.scores[e] - golden.scores[ROUTER][i][j]) <= SCORE_ATOL,
            `${what}: ${e} ${route.scores[e]} vs ${golden.scores[ROUTER][i][j]}`));
          assert.ok(Math.abs(route.confidence - golden.confidence[ROUTER][i]) <= SCORE_ATOL, what);
        }
        // the wasm-only build of onnxruntime-web (not the 28 MB JSEP file), from this origin only
        const wasm = requests.filter((u) => u.endsWith(".wasm"));
        assert.equal(wasm.length, 1, wasm.join());
        assert.match(wasm[0], /\/ort-wasm-simd-threaded(-[\w-]+)?\.wasm$/);
        assert.deepEqual(requests.filter((u) => !u.startsWith(url)), []);
        await page.close();
      });

      it(`${name}: without the wasm file, a FileNotFoundError naming it`, async () => {
        const { page, url } = await openPage(name, { withoutWasm: true });
        assert.equal(await page.getAttribute("body", "data-state"), "error");
        const text = await page.textContent("#result");
        const file = name === "vite" ? "assets/ort-wasm-simd-threaded-[\\w-]+\\.wasm" : "ort-wasm-simd-threaded\\.wasm";
        assert.match(text, new RegExp(`^FileNotFoundError: onnxruntime-web's wasm file ort-wasm-simd-threaded\\.wasm ` +
          `could not be loaded from ${url.replace(/[.]/g, "\\.")}${file} \\(HTTP 404\\): serve it there`));
        await page.close();
      });
    }

    it("vite: the dev server (`vite`, no config) serves a page that routes as Python does", async () => {
      const root = path.join(work, "vite");
      await mkdir(path.join(root, "public"));
      await symlink(path.join(ROUTERS, ROUTER), path.join(root, "public", "router"));
      const vite = await import(pathToFileURL(path.join(work, "node_modules", "vite", "dist", "node", "index.js")).href);
      viteDev = await vite.createServer({ root, logLevel: "warn", server: { host: "127.0.0.1", port: 0 } });
      await viteDev.listen();
      const page = await browser.newPage();
      await page.goto(viteDev.resolvedUrls.local[0]);
      await page.waitForSelector("body[data-state]", { timeout: 120_000 });
      assert.equal(await page.getAttribute("body", "data-state"), "ready", await page.textContent("#result"));
      const i = PROMPTS[0];
      await page.fill("#prompt", golden.prompts[i].text);
      await page.click("#route");
      await page.waitForSelector("body[data-state=routed], body[data-state=error]");
      const route = JSON.parse(await page.textContent("#result"));
      assert.equal(route.expert, golden.experts[ROUTER][i]);
      golden.routers[ROUTER].experts.forEach((e, j) =>
        assert.ok(Math.abs(route.scores[e] - golden.scores[ROUTER][i][j]) <= SCORE_ATOL, e));
      await page.close();
      await viteDev.close();
      viteDev = null;
    });

    // last: it takes onnxruntime-web out of the project
    it("without onnxruntime-web (an optional peer), esbuild's build and Vite's page name it", async () => {
      const modules = path.join(work, "node_modules");
      await rename(path.join(modules, "onnxruntime-web"), path.join(modules, ".onnxruntime-web-hidden"));
      const esbuildErr = await run(process.execPath, ["build.mjs"], { cwd: path.join(work, "esbuild") })
        .then(() => null, (e) => e);
      assert.ok(esbuildErr, "esbuild built without onnxruntime-web");
      assert.match(esbuildErr.stderr, /Could not resolve "onnxruntime-web\/wasm"/);
      // Vite builds (warning IMPORT_IS_UNDEFINED) with a stub that throws when the page loads
      await run(process.execPath, [path.join(modules, "vite", "bin", "vite.js"), "build", "--logLevel", "silent"],
        { cwd: path.join(work, "vite") });
      const { server, url } = await serve(dists.vite, path.join(ROUTERS, ROUTER));
      servers.push(server);
      const page = await browser.newPage();
      const thrown = new Promise((resolve) => page.once("pageerror", (e) => resolve(e.message)));
      await page.goto(url);
      assert.match(await thrown, /Could not resolve "onnxruntime-web\/wasm" imported by "irde-onnx"/);
      await page.close();
    });
  });

describe("the recipes' package.json", () => {
  for (const name of ["vite", "esbuild"]) {
    it(`examples/${name} installs this version's tarball and the peer range of onnxruntime-web`, () => {
      const example = JSON.parse(readFileSync(path.join(EXAMPLES, name, "package.json"), "utf8"));
      assert.equal(example.dependencies["irde-onnx"], `file:../${pkg.name}-${pkg.version}.tgz`);
      assert.equal(example.dependencies["onnxruntime-web"], pkg.peerDependencies["onnxruntime-web"]);
      assert.equal(example.devDependencies[name].replace(/^\^/, ""), pkg.devDependencies[name]);
    });
  }
});

describe("TypeScript with moduleResolution bundler", () => {
  const tsc = createRequire(import.meta.url).resolve("typescript/bin/tsc");
  for (const config of ["tsconfig.bundler.json", "tsconfig.bundler-browser.json", "tsconfig.bundler-node.json"]) {
    it(`test/types/${config} compiles (tsc --noEmit exits 0)`, async () => {
      const result = await run(process.execPath, [tsc, "-p", path.join(JS_ROOT, "test", "types", config)])
        .then(({ stdout }) => ({ code: 0, stdout }), (err) => err);
      assert.equal(result.stdout, "");
      assert.equal(result.code, 0);
    });
  }
});
