// The Node and browser recipes of examples/ as their READMEs run them: examples/node-service
// started on 127.0.0.1 answers golden prompts as Python does (one request), and
// examples/static-page (an import map into node_modules, no bundler) routes them in headless
// Chromium. Their node_modules link to this package and its devDependencies instead of an
// install (test/package.test.mjs and test/bundlers.test.mjs install the tarball).

import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { cp, mkdir, mkdtemp, readFile, rm, symlink } from "node:fs/promises";
import http from "node:http";
import os from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";

import {
  CHROMIUM_ARGS, CHROMIUM_PATH, JS_ROOT, MIME_TYPES, REPO, ROUTERS, SCORE_ATOL, browserSkip, golden,
  skipUnlessReady,
} from "./helpers.mjs";

const EXAMPLES = path.join(REPO, "examples");
const ROUTER = "static";
const PROMPTS = ["ascii math", "special tokens", "chinese", "code", "emoji"]
  .map((name) => golden.prompts.findIndex((p) => p.name === name));

/** A project folder holding examples/NAME, its node_modules linked to these packages. */
async function project(name, packages) {
  const work = await mkdtemp(path.join(os.tmpdir(), `irde-${name}-`));
  await cp(path.join(EXAMPLES, name), work, { recursive: true, filter: (s) => !s.includes("node_modules") });
  await mkdir(path.join(work, "node_modules", "@huggingface"), { recursive: true });
  await symlink(JS_ROOT, path.join(work, "node_modules", "irde-onnx"), "dir");
  for (const p of packages) {
    await symlink(path.join(JS_ROOT, "node_modules", p), path.join(work, "node_modules", p), "dir");
  }
  return work;
}

function checkRoute(route, i) {
  const what = golden.prompts[i].name;
  assert.equal(route.expert, golden.experts[ROUTER][i], what);
  golden.routers[ROUTER].experts.forEach((e, j) =>
    assert.ok(Math.abs(route.scores[e] - golden.scores[ROUTER][i][j]) <= SCORE_ATOL, `${what}: ${e}`));
  assert.ok(Math.abs(route.confidence - golden.confidence[ROUTER][i]) <= SCORE_ATOL, what);
}

describe("examples/node-service answers as Python does", { ...skipUnlessReady(), timeout: 120_000 }, () => {
  let work;
  let child;
  after(async () => {
    child?.kill("SIGTERM");
    if (work) await rm(work, { recursive: true, force: true });
  });

  it("POST /route with the golden prompts", async () => {
    work = await project("node-service", ["onnxruntime-node"]);
    child = spawn(process.execPath, ["server.mjs", path.join(ROUTERS, ROUTER), "--port", "0"], {
      cwd: work, stdio: ["ignore", "pipe", "inherit"],
    });
    const url = await new Promise((resolve, reject) => {
      let out = "";
      child.stdout.on("data", (d) => {
        out += d;
        const found = out.match(/listening on (http:\/\/127\.0\.0\.1:\d+)/);
        if (found) resolve(found[1]);
      });
      child.on("exit", (code) => reject(new Error(`server.mjs exited with ${code}: ${out}`)));
    });
    const texts = PROMPTS.map((i) => golden.prompts[i].text);
    const res = await fetch(`${url}/route`, { method: "POST", body: JSON.stringify({ texts }) });
    assert.equal(res.status, 200);
    const routes = await res.json();
    PROMPTS.forEach((i, k) => checkRoute(routes[k], i));
    const bad = await fetch(`${url}/route`, { method: "POST", body: JSON.stringify({ text: "x", top_k: 99 }) });
    assert.equal(bad.status, 422);
    assert.match((await bad.json()).error.message, /1\.\.5/);
  });
});

describe("examples/static-page routes in headless Chromium without a bundler",
  { ...browserSkip(), timeout: 300_000 }, () => {
    let work;
    let server;
    let browser;
    before(async () => {
      work = await project("static-page", ["onnxruntime-web", "@huggingface/tokenizers"]);
      const router = path.join(ROUTERS, ROUTER);
      // any static server: this one serves the project folder, and the router at /router/
      server = http.createServer(async (req, res) => {
        const urlPath = decodeURIComponent(new URL(req.url, "http://localhost").pathname);
        const [root, rest] = urlPath.startsWith("/router/") ? [router, urlPath.slice(8)] : [work, urlPath.slice(1)];
        const file = path.resolve(root, rest || "index.html");
        if (!file.startsWith(root + path.sep)) return res.writeHead(404).end();
        try {
          const body = await readFile(file);
          res.writeHead(200, { "content-type": MIME_TYPES[path.extname(file)] ?? "application/octet-stream" }).end(body);
        } catch {
          res.writeHead(404).end();
        }
      });
      await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
      const { chromium } = await import("playwright-core");
      browser = await chromium.launch({ executablePath: CHROMIUM_PATH, headless: true, args: CHROMIUM_ARGS });
    });
    after(async () => {
      await browser?.close();
      await new Promise((resolve) => (server ? server.close(resolve) : resolve()));
      if (work) await rm(work, { recursive: true, force: true });
    });

    it("routes golden prompts as Python does", async () => {
      const page = await browser.newPage();
      await page.goto(`http://127.0.0.1:${server.address().port}/`);
      await page.waitForSelector("body[data-state]", { timeout: 120_000 });
      assert.equal(await page.getAttribute("body", "data-state"), "ready", await page.textContent("#result"));
      for (const i of PROMPTS) {
        await page.fill("#prompt", golden.prompts[i].text);
        await page.click("#route");
        await page.waitForSelector("body[data-state=routed], body[data-state=error]");
        checkRoute(JSON.parse(await page.textContent("#result")), i);
      }
    });
  });
