#!/usr/bin/env node
// Serve the demo page and a router folder on 127.0.0.1 (static files only, GET and HEAD).
//   node demo/serve.mjs ROUTER_DIR [--port 8080]    then open http://127.0.0.1:8080/
import { createReadStream } from "node:fs";
import { stat } from "node:fs/promises";
import http from "node:http";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

const DEMO = path.dirname(fileURLToPath(import.meta.url));
const TYPES = {
  ".html": "text/html; charset=utf-8", ".js": "text/javascript", ".mjs": "text/javascript",
  ".wasm": "application/wasm", ".json": "application/json", ".png": "image/png",
  ".css": "text/css",
};

async function resolveFile(root, urlPath) {
  const file = path.resolve(root, "." + path.posix.normalize(urlPath));
  if (file !== root && !file.startsWith(root + path.sep)) return null; // outside the root
  try {
    const info = await stat(file);
    if (info.isDirectory()) return resolveFile(root, path.posix.join(urlPath, "index.html"));
    return info.isFile() ? { file, size: info.size } : null;
  } catch {
    return null;
  }
}

/**
 * Start the server; `router` (a folder) is served under /router/.
 * @returns {Promise<{server: http.Server, url: string}>}
 */
export async function startServer({ router, port = 0, host = "127.0.0.1" } = {}) {
  const routerRoot = router ? path.resolve(router) : null;
  const server = http.createServer(async (req, res) => {
    const url = new URL(req.url, "http://localhost");
    let urlPath;
    try {
      urlPath = decodeURIComponent(url.pathname);
    } catch {
      urlPath = null;
    }
    let found = null;
    if (urlPath && (req.method === "GET" || req.method === "HEAD")) {
      if (routerRoot && urlPath.startsWith("/router/")) {
        found = await resolveFile(routerRoot, urlPath.slice("/router".length));
      } else {
        found = await resolveFile(DEMO, urlPath);
      }
    }
    if (!found) {
      res.writeHead(404, { "content-type": "text/plain" }).end("not found\n");
      return;
    }
    res.writeHead(200, {
      "content-type": TYPES[path.extname(found.file)] ?? "application/octet-stream",
      "content-length": found.size,
      "cache-control": "no-cache",
    });
    if (req.method === "HEAD") res.end();
    else createReadStream(found.file).pipe(res);
  });
  await new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, resolve);
  });
  return { server, url: `http://${host}:${server.address().port}/` };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const { values, positionals } = parseArgs({ allowPositionals: true, options: { port: { type: "string", default: "8080" } } });
  if (positionals.length !== 1) {
    process.stderr.write("usage: node demo/serve.mjs ROUTER_DIR [--port 8080]\n");
    process.exit(2);
  }
  const { url } = await startServer({ router: positionals[0], port: Number(values.port) });
  console.log(`serving the demo on ${url} (router ${positionals[0]} under /router/); Ctrl-C stops`);
}
