// The router's checks and errors, the text rule, and router.json format_version 2 and 3.

import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { cp, mkdtemp, readFile, rename, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";

import {
  FileNotFoundError, InvalidInputError, MAX_CHARS_PER_TOKEN, Router, RouterFormatError, prepareText,
} from "../src/node.js";
import { golden, goldenTexts, ROUTERS, skipUnlessReady } from "./helpers.mjs";

describe("prepareText (the text rule shared with Python)", () => {
  it("turns unpaired surrogates into U+FFFD and keeps pairs", () => {
    assert.equal(prepareText("a\ud800b\udc00c😀\ud83d", 256), "a\ufffdb\ufffdc😀\ufffd");
  });
  it("cuts at max_length * 32 code points, not UTF-16 units", () => {
    const limit = 4 * MAX_CHARS_PER_TOKEN;
    const text = "😀".repeat(limit + 10);
    const cut = prepareText(text, 4);
    assert.equal([...cut].length, limit);
    assert.equal(cut.length, 2 * limit);
    assert.equal(prepareText("x".repeat(limit), 4), "x".repeat(limit));
  });
});

const ready = skipUnlessReady();

describe("Router", ready, () => {
  let work;
  const staticDir = path.join(ROUTERS, "static");
  before(async () => { work = await mkdtemp(path.join(tmpdir(), "irde-js-")); });
  after(async () => { await rm(work, { recursive: true, force: true }); });

  async function copyRouter(name) {
    const dir = path.join(work, name);
    await cp(staticDir, dir, { recursive: true });
    return dir;
  }
  async function editConfig(dir, edit) {
    const file = path.join(dir, "router.json");
    const config = JSON.parse(await readFile(file, "utf8"));
    edit(config);
    await writeFile(file, JSON.stringify(config, null, 2));
  }
  const sha256 = async (file) => createHash("sha256").update(await readFile(file)).digest("hex");

  it("routes like Python: expert, scores by name, top, confidence", async () => {
    const router = await Router.load(staticDir);
    const [route] = await router.route(["Solve 3x + 5 = 20"], { topK: 2 });
    assert.deepEqual(Object.keys(route), ["expert", "scores", "top", "confidence"]);
    assert.ok(route.confidence > 0 && route.confidence <= 1);
    assert.deepEqual(Object.keys(route.scores), router.experts);
    assert.equal(route.top.length, 2);
    assert.equal(route.top[0], route.expert);
    assert.deepEqual(await router.route([]), []);
    const scores = await router.scores(["a", "b"]);
    assert.equal(scores.length, 2);
    assert.equal(scores[0].length, router.experts.length);
  });

  it("gives the same scores whatever the batch size", async () => {
    const texts = (await goldenTexts()).slice(0, 40);
    const router = await Router.load(staticDir);
    const one = await router.scores(texts, { batchSize: 1 });
    const many = await router.scores(texts, { batchSize: 7 });
    one.forEach((row, i) => row.forEach((s, j) => assert.ok(Math.abs(s - many[i][j]) < 1e-6)));
  });

  it("refuses bad arguments with the fix in the message", async () => {
    const router = await Router.load(staticDir);
    await assert.rejects(router.route("one string"), (e) => e instanceof InvalidInputError && /wrap it in/.test(e.message));
    await assert.rejects(router.route([1]), /texts\[0\] is number, not a string/);
    await assert.rejects(router.route(["x"], { topK: 0 }), /topK must be an integer in 1\.\.5, got 0/);
    await assert.rejects(router.route(["x"], { topK: 6 }), InvalidInputError);
    await assert.rejects(router.route(["x"], { batchSize: 0 }), /batchSize must be an integer >= 1/);
    await assert.rejects(Router.load(staticDir, { backend: "gpu" }), /unknown backend "gpu"; choose one of node, wasm/);
    await assert.rejects(Router.load(staticDir, { threads: 0 }), /threads must be an integer >= 1/);
  });

  it("names a missing folder or file", async () => {
    await assert.rejects(Router.load(path.join(work, "nope")), (e) => e instanceof FileNotFoundError && /router directory not found/.test(e.message));
    const dir = await copyRouter("missing");
    await rm(path.join(dir, "tokenizer.json"));
    await assert.rejects(Router.load(dir), /tokenizer\.json is missing: .* is not a complete irde router/);
  });

  it("refuses an unknown format_version", async () => {
    const dir = await copyRouter("v4");
    await editConfig(dir, (c) => { c.format_version = 4; });
    await assert.rejects(Router.load(dir), (e) => e instanceof RouterFormatError &&
      /has format_version 4; this irde-onnx reads versions 1, 2, 3/.test(e.message));
  });

  it("refuses a router.json that names other experts than the graph", async () => {
    const dir = await copyRouter("renamed");
    await editConfig(dir, (c) => { c.experts[0] = "physics"; });
    await assert.rejects(Router.load(dir), /list different experts/);
  });

  it("refuses broken router.json fields", async () => {
    const dir = await copyRouter("broken");
    await writeFile(path.join(dir, "router.json"), "{not json");
    await assert.rejects(Router.load(dir), /router\.json is not valid JSON/);
    await writeFile(path.join(dir, "router.json"), JSON.stringify({ format_version: 1 }));
    await assert.rejects(Router.load(dir), /lacks the field\(s\) experts, expert_modes/);
  });

  it("reads format_version 2: the graph named in files, its sha256 verified", async () => {
    const dir = await copyRouter("v2");
    await rename(path.join(dir, "router.onnx"), path.join(dir, "router.3.onnx"));
    await rename(path.join(dir, "stats.npz"), path.join(dir, "stats.3.npz"));
    const files = {
      graph: { name: "router.3.onnx", sha256: await sha256(path.join(dir, "router.3.onnx")) },
      stats: { name: "stats.3.npz", sha256: await sha256(path.join(dir, "stats.3.npz")) },
    };
    await editConfig(dir, (c) => { c.format_version = 2; c.files = files; });
    const texts = (await goldenTexts()).slice(0, 30);
    const v2 = await (await Router.load(dir)).route(texts);
    const v1 = await (await Router.load(staticDir)).route(texts);
    assert.deepEqual(v2, v1);
    const wasm = await (await Router.load(dir, { backend: "wasm" })).route(texts.slice(0, 3));
    assert.deepEqual(wasm.map((r) => r.expert), v1.slice(0, 3).map((r) => r.expert));

    await editConfig(dir, (c) => { c.files.graph.sha256 = "0".repeat(64); });
    await assert.rejects(Router.load(dir), (e) => e instanceof RouterFormatError &&
      /router\.3\.onnx does not match the sha256 recorded in router\.json/.test(e.message));
    await editConfig(dir, (c) => { c.files.graph = { name: "../router.onnx", sha256: "0".repeat(64) }; });
    await assert.rejects(Router.load(dir), /files\.graph\.name '\.\.\/router\.onnx' is not a plain file name/);
    await editConfig(dir, (c) => { c.files.graph = { name: "router.9.onnx" }; });
    await assert.rejects(Router.load(dir), /files\.graph\.sha256 must be the file's sha256/);
    await editConfig(dir, (c) => { c.files.graph = { name: "router.9.onnx", sha256: "0".repeat(64) }; });
    await assert.rejects(Router.load(dir), /router\.9\.onnx is missing/);
  });

  it("applies router.json's view before tokenizing, and refuses an unknown one", async () => {
    const dir = await copyRouter("viewed");
    await editConfig(dir, (c) => { c.view = "strip_options"; });
    const viewed = await Router.load(dir);
    const plain = await Router.load(staticDir);
    assert.equal(viewed.view, "strip_options");
    const question = "Which court hears appeals?";
    const mc = `${question}\nA. district\nB. supreme\nAnswer:`;
    assert.deepEqual(viewed.encode([mc]), plain.encode([question]));
    assert.deepEqual(await viewed.scores([mc]), await plain.scores([question]));
    await editConfig(dir, (c) => { c.view = "strip_options+middle"; });
    await assert.rejects(Router.load(dir), (e) => e instanceof RouterFormatError &&
      /unknown view 'middle' in 'strip_options\+middle'.*upgrade irde-onnx or train the router again/.test(e.message));
  });

  it("routes a whole golden batch in input order", async () => {
    const texts = await goldenTexts();
    const router = await Router.load(staticDir);
    const routes = await router.route(texts);
    assert.deepEqual(routes.map((r) => r.expert), golden.experts.static);
  });
});
