"""Helper of .ci/arm64: the conformance prompts, routing them, and the x86/aarch64 comparison.

Three commands, each run by .ci/arm64 (``route`` on x86 and, under qemu, on aarch64):

    python .ci/arm64_compare.py prompts GOLDEN DATA ROUTERS OUT.json   # texts and subsets
    python .ci/arm64_compare.py route ROUTERS PROMPTS.json OUT.json
    python .ci/arm64_compare.py compare DIR                            # exit 1 on a difference

``prompts`` resolves conformance/golden.json's prompts and picks, per router, the prompts routed
under emulation: every one for the static router; for the MiniLM routers the short ones, up
to a token budget (QEMU runs float SIMD in software: the fp32 encoder costs about 400 times
its x86 time under emulation, the int8 one about 150 times). ``route`` needs only the
runtime (irde_onnx, numpy): it runs on the arm64 sysroot's Python.
``compare`` reads ``DIR/x86.json`` and every ``DIR/<host>-<cpu>.json`` written by ``route``
(Python) or .ci/arm64_route.mjs (Node) and checks them against x86: the static router's
scores equal up to float32 rounding (a long prompt's sum over tokens, added in another SIMD
order, can move a score by one unit in the last place: at most STATIC_ULPS are allowed, and
no decision may change), fp32 within 1e-5, int8 within 0.05, and no change of the decided
expert where x86's margin between its two best experts exceeds the tolerance.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import sys
import time
from itertools import zip_longest
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

# max |score - x86| allowed per router; a decision may only change where x86's top-2 margin
# is within the same tolerance. None: float32 rounding only (STATIC_ULPS), no decision change.
# tiny: an int8 table dequantised in float, then a mean and a MatMul: float rounding, as fp32
TOLERANCE: dict[str, float | None] = {"static": None, "fp32": 1e-5, "int8": 0.05, "tiny": 1e-5}
STATIC_ULPS = 2
# prompts routed per router: (longest prompt in tokens, token budget); None: every prompt.
# Override with ARM64_BUDGET="fp32=32:250,int8=64:1500" (e.g. "int8=256:100000": all).
BUDGET: dict[str, tuple[int, int] | None] = {
    "static": None,
    "fp32": (32, 250),
    "int8": (64, 1500),
    "tiny": None,
}


def budgets() -> dict[str, tuple[int, int] | None]:
    """BUDGET, with ARM64_BUDGET's overrides."""
    out = dict(BUDGET)
    for item in filter(None, os.environ.get("ARM64_BUDGET", "").split(",")):
        name, _, spec = item.partition("=")
        longest, _, total = spec.partition(":")
        out[name.strip()] = (int(longest), int(total))
    return out


def golden_texts(golden: Path, data: Path) -> list[tuple[str, bool]]:
    """The texts of conformance/golden.json's prompts, each with True when it is a data row."""
    record = json.loads(golden.read_text(encoding="utf-8"))
    files: dict[str, dict] = {}
    texts = []
    for p in record["prompts"]:
        if "source" not in p:
            texts.append((p["text"], False))
            continue
        if p["source"] not in files:
            path = data / p["source"]
            if not path.is_file():
                raise SystemExit(f"{path} is missing: run with ../shared beside the checkout")
            lines = path.read_text(encoding="utf-8").split("\n")
            files[p["source"]] = {r["id"]: r["text"] for r in map(json.loads, filter(None, lines))}
        text = files[p["source"]][p["id"]]
        digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
        if digest != p["sha256"]:
            raise SystemExit(f"{p['source']} row {p['id']} changed since golden.json was written")
        texts.append((text, True))
    return texts


def prompts(golden: Path, data: Path, routers: Path, out: Path) -> None:
    """Write the prompts' texts and, per router, the indices routed under emulation."""
    from irde_onnx.runtime import Router

    rows = golden_texts(golden, data)
    texts = [t for t, _ in rows]
    # hand-written and data prompts alternately, so a budget takes some of both
    hand = [i for i, (_, d) in enumerate(rows) if not d]
    real = [i for i, (_, d) in enumerate(rows) if d]
    order = [i for pair in zip_longest(hand, real) for i in pair if i is not None]
    subsets = {}
    for name, budget in budgets().items():
        if budget is None:
            subsets[name] = list(range(len(texts)))
            continue
        longest, total = budget
        lengths = [len(e) for e in Router.load(routers / name).tokenizer.encode(texts)]
        chosen, used = [], 0
        for i in order:
            if lengths[i] <= longest and used + lengths[i] <= total:
                chosen.append(i)
                used += lengths[i]
        subsets[name] = sorted(chosen)
        print(f"  {name}: {len(chosen)} of {len(texts)} prompts, {used} tokens")
    # ensure_ascii keeps lone surrogates as \\ud800 escapes (json.loads and JSON.parse restore)
    record = {"texts": texts, "subsets": subsets}
    out.write_text(json.dumps(record, ensure_ascii=True), encoding="utf-8")
    print(f"{len(texts)} prompts -> {out}")


def route(routers: Path, prompts_file: Path, out: Path) -> None:
    """Each router's scores, decisions and confidences for its prompts (one thread)."""
    t0 = time.perf_counter()
    from irde_onnx.runtime import Router

    record = json.loads(prompts_file.read_text(encoding="utf-8"))
    result: dict = {"host": "python", "machine": platform.machine(), "routers": {}}
    result["import_s"] = time.perf_counter() - t0
    for name, subset in record["subsets"].items():
        t = time.perf_counter()
        texts = [record["texts"][i] for i in subset]
        router = Router.load(routers / name, threads=1)
        routes = router.route(texts, top_k=len(router.experts))
        result["routers"][name] = {
            "prompts": subset,
            "experts": router.experts,
            "scores": [[r.scores[e] for e in router.experts] for r in routes],
            "expert": [r.expert for r in routes],
            "confidence": [r.confidence for r in routes],
            "seconds": time.perf_counter() - t,
        }
        print(f"  {name}: {len(texts)} prompts in {time.perf_counter() - t:.1f} s", flush=True)
    out.write_text(json.dumps(result), encoding="utf-8")


def ulps(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Distance of float32 arrays in units in the last place (0: bit-identical)."""
    import numpy as np

    def ordered(a: np.ndarray) -> np.ndarray:
        i = a.astype(np.float32).view(np.int32).astype(np.int64)
        return np.where(i < 0, -(2**31) - i, i)

    return np.abs(ordered(x) - ordered(y))


def compare(folder: Path) -> int:
    """Print the comparison table of every run in ``folder`` against x86; 1 on a difference."""
    import numpy as np

    ref = json.loads((folder / "x86.json").read_text(encoding="utf-8"))["routers"]
    runs = sorted(p for p in folder.glob("*-*.json") if p.stem != "x86")
    if not runs:
        print(f"no aarch64 runs in {folder}", file=sys.stderr)
        return 1
    columns = [
        ("run", 19), ("router", 6), ("prompts", 7), ("bit-identical", 13),
        ("max |score - x86|", 17), ("tolerance", 9), ("flips", 5), ("flips past tol", 14),
        ("max |conf - x86|", 16), ("verdict", 9),
    ]  # fmt: skip
    print("  ".join(f"{c:<{w}}" for c, w in columns))
    print("  ".join("-" * w for _, w in columns))
    failed = []
    for path in runs:
        got = json.loads(path.read_text(encoding="utf-8"))["routers"]
        for name, tol in TOLERANCE.items():
            if name not in got:
                failed.append(f"{path.stem}: no {name} router")
                continue
            r, g = ref[name], got[name]
            if r["experts"] != g["experts"] or r["prompts"] != g["prompts"]:
                failed.append(f"{path.stem} {name}: other experts or prompts")
                continue
            x = np.array(r["scores"], dtype=np.float32)
            y = np.array(g["scores"], dtype=np.float32)
            diff = float(np.abs(x.astype(np.float64) - y).max())
            identical = int((ulps(x, y) == 0).all(axis=1).sum())
            top2 = np.sort(x, axis=1)[:, -2:]
            margin = top2[:, 1] - top2[:, 0]
            flips = np.array(r["expert"]) != np.array(g["expert"])
            conf = float(np.abs(np.array(r["confidence"]) - np.array(g["confidence"])).max())
            if tol is None:
                hard = flips
                ok = int(ulps(x, y).max()) <= STATIC_ULPS and not hard.any()
                tol_text = f"{STATIC_ULPS} ulp"
            else:
                hard = flips & (margin > tol)
                ok = diff <= tol and not hard.any()
                tol_text = f"{tol:.0e}"
            cells = [
                path.stem, name, len(x), f"{identical}/{len(x)}", f"{diff:.3g}", tol_text,
                int(flips.sum()), int(hard.sum()), f"{conf:.3g}", "ok" if ok else "DIFFERENT",
            ]  # fmt: skip
            print("  ".join(f"{c!s:<{w}}" for c, (_, w) in zip(cells, columns, strict=True)))
            if not ok:
                failed.append(f"{path.stem} {name}")
    for node in (p for p in runs if p.stem.startswith("node-")):
        python = node.with_name("python-" + node.stem[len("node-") :] + ".json")
        if python.is_file():
            a = json.loads(node.read_text(encoding="utf-8"))["routers"]
            b = json.loads(python.read_text(encoding="utf-8"))["routers"]
            same = [n for n in a if n in b and a[n]["scores"] == b[n]["scores"]]
            print(f"{node.stem} against {python.stem}: bit-identical scores on {', '.join(same)}")
    if failed:
        print(f"aarch64 differs from x86: {', '.join(failed)}", file=sys.stderr)
        return 1
    print(f"aarch64 decides as x86: {len(runs)} runs x {len(TOLERANCE)} routers")
    return 0


def main(argv: list[str]) -> int:
    """Dispatch the three commands."""
    if len(argv) == 5 and argv[0] == "prompts":
        prompts(Path(argv[1]), Path(argv[2]), Path(argv[3]), Path(argv[4]))
    elif len(argv) == 4 and argv[0] == "route":
        route(Path(argv[1]), Path(argv[2]), Path(argv[3]))
    elif len(argv) == 2 and argv[0] == "compare":
        return compare(Path(argv[1]))
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
