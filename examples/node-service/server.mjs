// A small Node HTTP service that routes prompts with irde-onnx (onnxruntime-node).
//
//   node server.mjs ROUTER_DIR [--port 8080] [--host 127.0.0.1] [--threads 1]
//   curl -s localhost:8080/route -d '{"text": "Solve 3x + 5 = 20"}'
//
// POST /route  {"text": "..."} -> {"expert", "scores", "top", "confidence"}
//              {"texts": [...], "top_k": 2} -> a list of them
// GET /healthz {"status": "ok", "experts": [...]}
// Errors are JSON, {"error": {"message", "status"}}. The router is loaded once at start.
import http from "node:http";
import { parseArgs } from "node:util";

import { IrdeError, Router } from "irde-onnx";

const MAX_BODY = 1 << 20; // 1 MiB

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    port: { type: "string", default: process.env.PORT ?? "8080" },
    host: { type: "string", default: "127.0.0.1" },
    threads: { type: "string", default: "1" },
  },
});
if (positionals.length !== 1) {
  console.error("usage: node server.mjs ROUTER_DIR [--port 8080] [--host 127.0.0.1] [--threads 1]");
  process.exit(2);
}

class HttpError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

function send(res, status, body) {
  res.writeHead(status, { "content-type": "application/json" }).end(JSON.stringify(body));
}

async function readJson(req) {
  const chunks = [];
  let size = 0;
  for await (const chunk of req) {
    size += chunk.length;
    if (size > MAX_BODY) throw new HttpError(413, `the body is over ${MAX_BODY} bytes`);
    chunks.push(chunk);
  }
  try {
    return JSON.parse(Buffer.concat(chunks).toString("utf8"));
  } catch {
    throw new HttpError(400, 'the body is not JSON: send {"text": "..."} or {"texts": [...]}');
  }
}

async function route(router, body) {
  if (body === null || typeof body !== "object" || Array.isArray(body)) {
    throw new HttpError(400, 'the body must be an object: {"text": "..."} or {"texts": [...]}');
  }
  const one = typeof body.text === "string";
  if (!one && !Array.isArray(body.texts)) {
    throw new HttpError(422, 'give "text" (a string) or "texts" (a list of strings)');
  }
  const routes = await router.route(one ? [body.text] : body.texts, { topK: body.top_k ?? 1 });
  return one ? routes[0] : routes;
}

let router;
try {
  router = await Router.load(positionals[0], { threads: Number(values.threads) });
} catch (err) {
  console.error(`server.mjs: cannot load the router: ${err.message}`);
  process.exit(2);
}

const server = http.createServer(async (req, res) => {
  const { pathname } = new URL(req.url, "http://localhost");
  try {
    if (pathname === "/healthz" && req.method === "GET") {
      send(res, 200, { status: "ok", experts: router.experts });
    } else if (pathname === "/route") {
      if (req.method !== "POST") throw new HttpError(405, "use POST /route");
      send(res, 200, await route(router, await readJson(req)));
    } else {
      throw new HttpError(404, `no ${pathname}: POST /route or GET /healthz`);
    }
  } catch (err) {
    // the router's input errors (top_k out of range, texts that are not strings) are 422
    const status = err instanceof HttpError ? err.status : err instanceof IrdeError ? 422 : 500;
    if (status === 500) console.error(err);
    send(res, status, { error: { message: err.message, status } });
  }
});

server.listen(Number(values.port), values.host, () => {
  const { address, port } = server.address();
  console.log(`listening on http://${address}:${port} (experts: ${router.experts.join(", ")})`);
});
for (const signal of ["SIGINT", "SIGTERM"]) process.on(signal, () => server.close(() => process.exit(0)));
