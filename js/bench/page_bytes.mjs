// What the demo page downloads in headless Chromium for each router: every URL it fetches
// (page, scripts, onnxruntime-web's wasm build, the router's files), with the served file's
// raw bytes and its bytes gzipped (zlib level 9, as a static server with gzip would send it),
// read from disk (Playwright does not hand over bodies of every size). Prints one JSON object.
// Used by benchmarks/page_download.py:  node bench/page_bytes.mjs ROUTERS_DIR NAME [NAME...]
import { execFile } from "node:child_process";
import { readFileSync } from "node:fs";
import path from "node:path";
import { promisify } from "node:util";
import { gzipSync } from "node:zlib";

import { chromium } from "playwright-core";

import { startServer } from "../demo/serve.mjs";
import { CHROMIUM_ARGS, CHROMIUM_PATH, JS_ROOT } from "../test/helpers.mjs";

const [routersDir, ...names] = process.argv.slice(2);
await promisify(execFile)(process.execPath, [path.join(JS_ROOT, "demo", "build.mjs")]);
const { server, url: base } = await startServer({ router: path.resolve(routersDir) });
const browser = await chromium.launch({ executablePath: CHROMIUM_PATH, headless: true, args: CHROMIUM_ARGS });
const out = {};
try {
  for (const name of names) {
    // a fresh context per router: nothing comes from the HTTP cache
    const context = await browser.newContext();
    const page = await context.newPage();
    const files = [];
    page.on("response", (response) => {
      const url = new URL(response.url());
      const rel = decodeURIComponent(url.pathname);
      let file;
      if (rel.startsWith("/router/")) file = path.join(path.resolve(routersDir), rel.slice(8));
      else file = path.join(JS_ROOT, "demo", rel === "/" ? "index.html" : rel.slice(1));
      const body = readFileSync(file);
      files.push({
        path: rel, status: response.status(), bytes: body.length,
        gzip: gzipSync(body, { level: 9 }).length,
      });
    });
    await page.goto(`${base}?router=router/${name}/`);
    await page.waitForSelector("body[data-ready]", { timeout: 120_000 });
    const ready = await page.getAttribute("body", "data-ready");
    files.sort((a, b) => b.bytes - a.bytes);
    out[name] = { ready, files };
    await context.close();
  }
} finally {
  await browser.close();
  await new Promise((resolve) => server.close(resolve));
}
console.log(JSON.stringify(out));
