// What the demo page downloads in headless Chromium for each router: every URL it fetches
// (page, scripts, onnxruntime-web's wasm build, the router's files), with the served file's
// raw bytes, its bytes gzipped (zlib level 9, as a static server with gzip would send it) and
// brotli-compressed (quality 11, as a CDN or a server with precompressed .br files sends it),
// read from disk (Playwright does not hand over bodies of every size). Prints one JSON object.
// Used by benchmarks/page_download.py:  node bench/page_bytes.mjs ROUTERS_DIR NAME [NAME...]
import { execFile } from "node:child_process";
import { readFileSync } from "node:fs";
import path from "node:path";
import { promisify } from "node:util";
import { brotliCompressSync, constants, gzipSync } from "node:zlib";

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
    // only names here: compressing in the handler would block this process, which also
    // serves the page (brotli at quality 11 takes seconds per MB)
    page.on("response", (response) => {
      const url = new URL(response.url());
      files.push({ path: decodeURIComponent(url.pathname), status: response.status() });
    });
    await page.goto(`${base}?router=router/${name}/`);
    await page.waitForSelector("body[data-ready]", { timeout: 120_000 });
    const ready = await page.getAttribute("body", "data-ready");
    for (const f of files) {
      const file = f.path.startsWith("/router/")
        ? path.join(path.resolve(routersDir), f.path.slice(8))
        : path.join(JS_ROOT, "demo", f.path === "/" ? "index.html" : f.path.slice(1));
      const body = readFileSync(file);
      f.bytes = body.length;
      f.gzip = gzipSync(body, { level: 9 }).length;
      f.brotli = brotliCompressSync(body, {
        params: { [constants.BROTLI_PARAM_QUALITY]: 11, [constants.BROTLI_PARAM_SIZE_HINT]: body.length },
      }).length;
    }
    files.sort((a, b) => b.bytes - a.bytes);
    out[name] = { ready, files };
    await context.close();
  }
} finally {
  await browser.close();
  await new Promise((resolve) => server.close(resolve));
}
console.log(JSON.stringify(out));
