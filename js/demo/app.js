// The demo page: load the router folder of this origin (?router=URL, default router/),
// route the prompt, show the decided expert, its confidence and a bar chart of every
// expert's score.
import { Router } from "./vendor/irde/browser.js";

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const routerUrl = params.get("router") ?? "router/";

function showError(err) {
  $("error").textContent = `${err.name ?? "Error"}: ${err.message ?? err}`;
}

function draw(route, experts) {
  $("expert").textContent = `→ ${route.expert}`;
  $("confidence").textContent = `confidence ${route.confidence.toFixed(3)}`;
  const values = experts.map((e) => route.scores[e]);
  const lo = Math.min(0, ...values);
  const hi = Math.max(...values);
  const span = hi - lo || 1;
  $("chart").replaceChildren(...experts.map((name) => {
    const row = document.createElement("div");
    row.className = name === route.expert ? "row best" : "row";
    row.dataset.expert = name;
    const label = Object.assign(document.createElement("span"), { className: "name", textContent: name });
    const track = Object.assign(document.createElement("div"), { className: "track" });
    const bar = Object.assign(document.createElement("div"), { className: "bar" });
    bar.style.width = `${(100 * (route.scores[name] - lo)) / span}%`;
    track.append(bar);
    const value = Object.assign(document.createElement("span"), {
      className: "value", textContent: route.scores[name].toFixed(4),
    });
    row.append(label, track, value);
    return row;
  }));
}

async function start() {
  const t0 = performance.now();
  // wasm paths must be absolute URLs; one thread: the page is not cross-origin isolated
  const router = await Router.fromUrl(routerUrl, { wasmPaths: new URL("vendor/", location.href).href, threads: 1 });
  const { encoder, precision } = router.config;
  $("status").textContent = `${encoder} ${precision} router from ${routerUrl} · ${router.experts.length} experts · loaded in ${Math.round(performance.now() - t0)} ms`;
  const routeOne = async () => {
    $("error").textContent = "";
    $("route").disabled = true;
    try {
      const [route] = await router.route([$("prompt").value], { topK: router.experts.length });
      draw(route, router.experts);
      document.body.dataset.expert = route.expert;
    } catch (err) {
      showError(err);
    } finally {
      $("route").disabled = false;
    }
  };
  $("route").addEventListener("click", routeOne);
  $("prompt").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) routeOne();
  });
  await routeOne();
  return router;
}

// for scripts driving the page (the Chromium test): the same router the page uses
const ready = start();
window.irde = {
  ready: ready.then((router) => router.experts),
  route: async (texts, options) => (await ready).route(texts, options),
  // rows as plain arrays: typed arrays do not cross into the driving script as such
  uncertainty: async (texts) => (await (await ready).uncertainty(texts)).map((r) => Array.from(r)),
};
ready.then(() => { document.body.dataset.ready = "yes"; }, (err) => {
  document.body.dataset.ready = "error";
  $("status").textContent = "the router did not load";
  showError(err);
});
