// The demo page in real headless Chromium, served from 127.0.0.1: it loads the golden routers
// over HTTP and routes every golden prompt on onnxruntime-web (wasm), compared with Python.
// Chromium comes from the system (Debian's chromium-headless-shell or chromium; CHROMIUM_PATH
// overrides); playwright-core drives it and downloads nothing.

import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { promisify } from "node:util";

import { chromium } from "playwright-core";

import { startServer } from "../demo/serve.mjs";
import {
  CHROMIUM_ARGS, CHROMIUM_PATH, INT8_WASM_ATOL, JS_ROOT, ROUTERS, SCORE_ATOL, UNCERTAINTY_ATOL,
  browserSkip, compareRoutes, golden, goldenTexts, uncertaintyDiff,
} from "./helpers.mjs";


describe("demo page in headless Chromium", { ...browserSkip(), timeout: 300_000 }, () => {
  let browser;
  let server;
  let base;
  const requests = [];

  before(async () => {
    await promisify(execFile)(process.execPath, [path.join(JS_ROOT, "demo", "build.mjs")]);
    ({ server, url: base } = await startServer({ router: ROUTERS }));
    // playwright gives each launch a fresh temporary profile (--user-data-dir)
    browser = await chromium.launch({ executablePath: CHROMIUM_PATH, headless: true, args: CHROMIUM_ARGS });
  });
  after(async () => {
    await browser?.close();
    await new Promise((resolve) => (server ? server.close(resolve) : resolve()));
  });

  async function openPage(router) {
    const page = await browser.newPage({ viewport: { width: 820, height: 560 } });
    page.on("request", (r) => requests.push(r.url()));
    const errors = [];
    page.on("pageerror", (e) => errors.push(e.message));
    await page.goto(`${base}?router=router/${router}/`);
    await page.waitForSelector("body[data-ready]", { timeout: 120_000 });
    assert.equal(await page.getAttribute("body", "data-ready"), "yes",
      `${await page.textContent("#error")} ${errors.join("; ")}`);
    return page;
  }

  // strings cross into the page as UTF-16 code units, so lone surrogates arrive intact
  async function routeInPage(page, texts, topK, wtp) {
    const units = texts.map((t) => Array.from({ length: t.length }, (_, i) => t.charCodeAt(i)));
    return page.evaluate(async ([all, k, w]) => {
      const strings = all.map((u) => {
        let s = "";
        for (let i = 0; i < u.length; i += 8192) s += String.fromCharCode(...u.slice(i, i + 8192));
        return s;
      });
      // undefined does not cross into the page: "default" stands for the router's own wtp
      return window.irde.route(strings, w === "default" ? { topK: k } : { topK: k, wtp: w });
    }, [units, topK, wtp === undefined ? "default" : wtp]);
  }

  async function uncertaintyInPage(page, texts) {
    const units = texts.map((t) => Array.from({ length: t.length }, (_, i) => t.charCodeAt(i)));
    return page.evaluate(async (all) => {
      const strings = all.map((u) => {
        let s = "";
        for (let i = 0; i < u.length; i += 8192) s += String.fromCharCode(...u.slice(i, i + 8192));
        return s;
      });
      return window.irde.uncertainty(strings);
    }, units);
  }

  it("int8 router: every golden prompt within the wasm int8 tolerance, the UI shows the decision", async () => {
    const texts = await goldenTexts();
    const page = await openPage("int8");
    const experts = golden.routers.int8.experts;
    const routes = await routeInPage(page, texts, experts.length);
    const { maxDiff, maxConfDiff, confExcess, flips } = compareRoutes("int8", routes, experts);
    assert.ok(maxDiff <= INT8_WASM_ATOL, `max |score difference| ${maxDiff}`);
    assert.ok(confExcess <= 0, `a confidence moved ${confExcess} beyond what its scores allow`);
    for (const flip of flips) assert.ok(flip.margin < INT8_WASM_ATOL, JSON.stringify(flip));
    console.log(`# Chromium int8: max |score difference| ${maxDiff.toExponential(2)}, max |confidence difference| ${maxConfDiff.toExponential(2)}, ${flips.length} flip(s) of ${texts.length}`);
    // wasm's int8 kernels move the features, so the widths move with the scores
    const widthDiff = uncertaintyDiff("int8", await uncertaintyInPage(page, texts));
    console.log(`# Chromium int8: max |uncertainty difference| ${widthDiff.toExponential(2)}`);
    assert.ok(widthDiff <= INT8_WASM_ATOL, `max |uncertainty difference| ${widthDiff}`);

    // through the text box and the button, as a person would
    for (const i of [3, 8, 9, 20]) {
      await page.fill("#prompt", texts[i]);
      await page.click("#route");
      await page.waitForFunction((want) => document.body.dataset.expert === want &&
        !document.querySelector("#route").disabled, routes[i].expert);
      assert.equal(await page.textContent("#expert"), `→ ${routes[i].expert}`);
      assert.equal(await page.locator(".row").count(), experts.length);
      assert.equal(await page.getAttribute(".row.best", "data-expert"), routes[i].expert);
    }
    if (process.env.IRDE_SCREENSHOT) {
      await page.fill("#prompt", "Is a verbal agreement to sell a house enforceable, or does it need to be in writing?");
      await page.click("#route");
      await page.waitForFunction(() => document.body.dataset.expert === "law");
      await page.screenshot({ path: process.env.IRDE_SCREENSHOT, fullPage: true });
    }
    await page.close();
  });

  it(`static router: scores within ${SCORE_ATOL} of Python, identical decisions`, async () => {
    const texts = await goldenTexts();
    const page = await openPage("static");
    const routes = await routeInPage(page, texts, 1);
    const { maxDiff, maxConfDiff, flips } = compareRoutes("static", routes, golden.routers.static.experts);
    assert.ok(maxDiff <= SCORE_ATOL, `max |score difference| ${maxDiff}`);
    assert.ok(maxConfDiff <= SCORE_ATOL, `max |confidence difference| ${maxConfDiff}`);
    assert.deepEqual(flips, []);
    await page.close();
  });

  it(`tiny router: scores within ${SCORE_ATOL} of Python, identical decisions`, async () => {
    const texts = await goldenTexts();
    const page = await openPage("tiny");
    const routes = await routeInPage(page, texts, 1);
    const { maxDiff, maxConfDiff, flips } = compareRoutes("tiny", routes, golden.routers.tiny.experts);
    console.log(`# Chromium tiny: max |score difference| ${maxDiff.toExponential(2)}, max |confidence difference| ${maxConfDiff.toExponential(2)}`);
    assert.ok(maxDiff <= SCORE_ATOL, `max |score difference| ${maxDiff}`);
    assert.ok(maxConfDiff <= SCORE_ATOL, `max |confidence difference| ${maxConfDiff}`);
    assert.deepEqual(flips, []);
    const widthDiff = uncertaintyDiff("tiny", await uncertaintyInPage(page, texts));
    console.log(`# Chromium tiny: max |uncertainty difference| ${widthDiff.toExponential(2)}`);
    assert.ok(widthDiff <= UNCERTAINTY_ATOL, `max |uncertainty difference| ${widthDiff}`);
    await page.close();
  });

  for (const [name, overrides] of Object.entries(golden.wtp ?? {})) {
    it(`${name} router: Python's decisions and confidences, also with a per-call wtp`, async () => {
      const texts = await goldenTexts();
      const page = await openPage(name);
      const experts = golden.routers[name].experts;
      const routes = await routeInPage(page, texts, 1);
      const { maxDiff, maxConfDiff, flips } = compareRoutes(name, routes, experts);
      assert.ok(maxDiff <= SCORE_ATOL, `max |score difference| ${maxDiff}`);
      assert.ok(maxConfDiff <= SCORE_ATOL, `max |confidence difference| ${maxConfDiff}`);
      assert.deepEqual(flips, []);
      assert.match(await page.textContent("#confidence"), /^confidence \d\.\d{3}$/);
      for (const { wtp, experts: want } of overrides) {
        const got = await routeInPage(page, texts, 1, wtp);
        assert.deepEqual(got.map((r) => r.expert), want, `wtp ${wtp}`);
      }
      await page.close();
    });
  }

  it("a missing router folder shows an error naming the file", async () => {
    const page = await browser.newPage();
    await page.goto(`${base}?router=router/nope/`);
    await page.waitForSelector("body[data-ready]");
    assert.match(await page.textContent("#error"), /router\/nope\/router\.json is missing \(HTTP 404\)/);
    await page.close();
  });

  it("fetched nothing but this origin, and no statistics (routing never reads them)", () => {
    const foreign = requests.filter((u) => !u.startsWith(base) && !u.startsWith("data:") && !u.startsWith("blob:"));
    assert.deepEqual(foreign, []);
    assert.ok(requests.some((u) => u.endsWith("/router.onnx.data")), "the page loaded a router");
    assert.deepEqual(requests.filter((u) => u.endsWith(".npz")), []);
  });
});
