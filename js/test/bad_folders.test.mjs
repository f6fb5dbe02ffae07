// The conformance fixtures of broken router folders (conformance/bad_folders, written by
// conformance/make_bad_folders.py): every case Python runs, Node must refuse with the same
// error type, and the graph rules must be Python's. The browser host shares the checks
// (core.js); its fromBytes is run on the same cases where a case needs no symlink.

import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { cp, mkdir, mkdtemp, readFile, readdir, rename, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, describe, it } from "node:test";
import { fileURLToPath } from "node:url";

import { ALLOWED_OPS, ENCODER_SPECS, SIZE_INPUTS, SLACK_BYTES } from "../src/core.js";
import { Router } from "../src/node.js";
import { Router as BrowserRouter } from "../src/browser.js";

const FIXTURES = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..",
  "conformance", "bad_folders");
const record = JSON.parse(await readFile(path.join(FIXTURES, "cases.json"), "utf8"));
const cases = record.cases.filter((c) => (c.hosts ?? ["node"]).includes("node"));
const FIXED = { config: "router.json", data: "router.onnx.data", tokenizer: "tokenizer.json" };
const work = await mkdtemp(path.join(tmpdir(), "irde-bad-folders-"));
after(() => rm(work, { recursive: true, force: true }));

async function fileOf(root, role) {
  if (role in FIXED) return path.join(root, FIXED[role]);
  const config = JSON.parse(await readFile(path.join(root, "router.json"), "utf8"));
  return path.join(root, config.files[role].name);
}

async function editConfig(root, edit) {
  const file = path.join(root, "router.json");
  const data = JSON.parse(await readFile(file, "utf8"));
  edit(data);
  await writeFile(file, JSON.stringify(data));
}

function walk(data, dotted) {
  const keys = dotted.split(".");
  const last = keys.pop();
  for (const key of keys) data = data[key];
  return [data, last];
}

async function applyStep(root, outside, step) {
  if ("flip" in step) {
    const file = await fileOf(root, step.flip);
    const bytes = await readFile(file);
    bytes[step.at < 0 ? bytes.length + step.at : step.at] ^= 1;
    await writeFile(file, bytes);
  } else if ("replace_text" in step) {
    const file = await fileOf(root, step.replace_text);
    const text = await readFile(file, "utf8");
    assert.ok(text.includes(step.old));
    await writeFile(file, text.replace(step.old, step.new));
  } else if ("set" in step) {
    // the value as Python's json wrote it (step.json): JSON.stringify would write 256.0 as 256
    const file = path.join(root, "router.json");
    const placeholder = "__irde_raw_value__";
    await editConfig(root, (data) => {
      const [parent, key] = walk(data, step.set);
      parent[key] = placeholder;
    });
    const text = await readFile(file, "utf8");
    await writeFile(file, text.replace(JSON.stringify(placeholder), step.json));
  } else if ("delete" in step) {
    await editConfig(root, (data) => {
      const [parent, key] = walk(data, step.delete);
      delete parent[key];
    });
  } else if ("put" in step) {
    await cp(path.join(FIXTURES, step.from), await fileOf(root, step.put));
  } else if ("rehash" in step) {
    const sha = createHash("sha256").update(await readFile(await fileOf(root, step.rehash))).digest("hex");
    await editConfig(root, (data) => { data.files[step.rehash].sha256 = sha; });
  } else if ("symlink_outside" in step || "symlink_inside" in step) {
    const file = await fileOf(root, step.symlink_outside ?? step.symlink_inside);
    const name = path.basename(file);
    const target = "symlink_outside" in step ? path.join(outside, name) : path.join(root, `.real.${name}`);
    await rename(file, target);
    await symlink(target, file);
  } else if ("remove" in step) {
    await rm(await fileOf(root, step.remove));
  } else {
    throw new Error(`unknown step ${JSON.stringify(step)}`);
  }
}

async function prepare(c, index) {
  const dir = path.join(work, String(index));
  const root = path.join(dir, "router");
  const outside = path.join(dir, "outside");
  await mkdir(outside, { recursive: true });
  await cp(path.join(FIXTURES, "good"), root, { recursive: true });
  await writeFile(path.join(outside, "precious.txt"), "precious\n");
  for (const step of c.steps) await applyStep(root, outside, step);
  return { root, outside };
}

async function snapshot(dir) {
  const out = {};
  for (const name of await readdir(dir)) out[name] = (await readFile(path.join(dir, name))).toString("hex");
  return out;
}

describe("broken router folders (conformance/bad_folders)", () => {
  it("holds Python's graph rules", () => {
    assert.deepEqual(ALLOWED_OPS, record.rules.allowed_ops);
    assert.deepEqual(SIZE_INPUTS, record.rules.size_inputs);
    assert.equal(SLACK_BYTES, record.rules.slack_bytes);
    for (const [name, spec] of Object.entries(record.rules.encoders)) {
      assert.equal(ENCODER_SPECS[name].tokenWeights, spec.token_weights, name);
      assert.equal(ENCODER_SPECS[name].fixedWeights, spec.fixed_weights, name);
    }
  });

  cases.forEach((c, index) => {
    it(`${c.name}: ${c.error ?? "loads"}`, async () => {
      const { root, outside } = await prepare(c, index);
      const before = await snapshot(outside);
      if (c.error === null) {
        const router = await Router.load(root);
        assert.equal((await router.route(["solve the equation"]))[0].expert, "math");
        await router.release();
      } else {
        await assert.rejects(Router.load(root), (err) => {
          assert.equal(err.name, c.error, err.message);
          return true;
        });
      }
      assert.deepEqual(await snapshot(outside), before);
    });
  });

  // the browser host reads bytes, not paths: the same cases but the symlinks
  cases.filter((c) => !c.steps.some((s) => "symlink_outside" in s || "symlink_inside" in s
    || ("remove" in s))).forEach((c, index) => {
    it(`browser fromBytes, ${c.name}: ${c.error ?? "loads"}`, async () => {
      const { root } = await prepare(c, `b${index}`);
      const load = async () => {
        const routerJson = await readFile(path.join(root, "router.json"), "utf8");
        const config = JSON.parse(routerJson);
        // a name router.json must not give (../router.onnx) reads the good folder's file
        const named = (role, fallback) => readFile(path.join(root, config.files?.[role]?.name ?? fallback))
          .catch(() => readFile(path.join(FIXTURES, "good", fallback)));
        return BrowserRouter.fromBytes({
          routerJson,
          graph: await named("graph", "router.onnx"),
          stats: await named("stats", "stats.npz"),
          data: await readFile(path.join(root, "router.onnx.data")),
          tokenizer: await readFile(path.join(root, "tokenizer.json")),
        }, { source: root });
      };
      if (c.error === null) {
        // The browser build imports onnxruntime-web's wasm-only bundle, which cannot start a
        // session under Node: every folder check must pass and only the session may fail
        // (browser.test.mjs loads good folders in Chromium, where the session starts).
        await assert.rejects(load(), (err) => {
          assert.match(err.message, /router\.onnx cannot be loaded: no available backend found/);
          return true;
        });
      } else {
        await assert.rejects(load(), (err) => {
          assert.equal(err.name, c.error, err.message);
          return true;
        });
      }
    });
  });

  // the page does not download what routing never reads: fromUrl leaves stats.npz alone
  // unless asked to check it, and then a tampered file is refused as in every host
  describe("browser fromUrl and the statistics", () => {
    const tampered = cases.find((c) => c.name === "tampered statistics");
    const fetchFrom = (root, log) => async (url) => {
      const name = decodeURIComponent(new URL(url).pathname.split("/").pop());
      log.push(name);
      try {
        return new Response(await readFile(path.join(root, name)));
      } catch {
        return new Response("missing", { status: 404 });
      }
    };

    it("does not fetch stats.npz by default: a tampered one is never read", async () => {
      const { root } = await prepare(tampered, "url-default");
      const log = [];
      await assert.rejects(BrowserRouter.fromUrl("http://irde.test/r/", { fetch: fetchFrom(root, log) }),
        (err) => {
          // every folder check passed; only the wasm session cannot start under Node
          assert.match(err.message, /router\.onnx cannot be loaded: no available backend found/);
          return true;
        });
      assert.deepEqual(log.slice().sort(), ["router.json", "router.onnx", "router.onnx.data", "tokenizer.json"]);
    });

    it("checkStatistics: true fetches stats.npz and refuses a tampered one", async () => {
      const { root } = await prepare(tampered, "url-check");
      const log = [];
      await assert.rejects(
        BrowserRouter.fromUrl("http://irde.test/r/", { fetch: fetchFrom(root, log), checkStatistics: true }),
        (err) => {
          assert.equal(err.name, "RouterFormatError", err.message);
          assert.match(err.message, /stats\.npz does not match the sha256/);
          return true;
        });
      assert.ok(log.includes("stats.npz"));
    });

    it("fromBytes without stats checks every other file", async () => {
      const flipped = cases.find((c) => c.name === "tampered encoder weights");
      const { root } = await prepare(flipped, "bytes-nostats");
      await assert.rejects(BrowserRouter.fromBytes({
        routerJson: await readFile(path.join(root, "router.json"), "utf8"),
        graph: await readFile(path.join(root, "router.onnx")),
        data: await readFile(path.join(root, "router.onnx.data")),
        tokenizer: await readFile(path.join(root, "tokenizer.json")),
      }, { source: root }), (err) => {
        assert.equal(err.name, "RouterFormatError", err.message);
        return true;
      });
    });
  });
});

