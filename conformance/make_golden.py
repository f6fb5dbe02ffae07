"""Write (or check) conformance/golden.json: what the Python runtime decides, for every host.

Builds small routers from models/demo: static fp16 vote, MiniLM fp32 (input view
``strip_options+tail``, pooled layers 6 and 5), MiniLM int8 (view ``full``, last layer), a
static router with a decision policy (costs, a default willingness to pay, a confidence
threshold with a fallback expert, a softmax temperature), a static router with the view
``strip_options+tail``, a tiny router (int8 kept rows of the table, view ``full``), and a copy
of the static router without the graph outputs ``choice`` and ``confidence`` (a router saved
before them). Then records, for every golden prompt, the
token ids of the Python tokenizer (one list per input view) and each router's scores,
decision (the graph's ``choice``) and ``confidence``, the ``uncertainty`` output of the
routers that have it (MiniLM and tiny); for the policy router also the
decisions with the willingness to pay overridden per call (``Router.route(..., wtp=)``); and
cases of the decision rule alone (``irde_onnx.decision.policy.decide`` on fixed scores).
The JS tests (``node --test`` in js/) load the same routers and compare. Prompts cover every
script found
in ../shared/data/domains (referenced by file and id with a sha256 of the text, never copied
here), rare CJK ideographs above U+FFFF, emoji, combining marks, right-to-left text, control
characters, lone surrogates, empty and whitespace-only texts, texts far over
``max_length * 32`` characters, and multiple-choice and few-shot prompts for the views.

    .venv/bin/python -m conformance.generate --only golden --routers js/test/routers
    .venv/bin/python -m conformance.generate --routers js/test/routers --check   # CI

(``conformance/make_golden.py`` alone takes the same arguments.)
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import unicodedata
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = ROOT / "conformance" / "golden.json"
DEMO = ROOT / "models" / "demo"
DEFAULT_DATA = ROOT.parent / "shared" / "data"
ROUTERS = {
    "static": {"encoder": "static", "precision": "fp16", "strategy": "vote", "lam": 1.0},
    "fp32": {
        "encoder": "minilm",
        "precision": "fp32",
        "lam": 1.0,
        "view": "strip_options+tail",
        "layers": [6, 5],
    },
    "int8": {"encoder": "minilm", "precision": "int8", "lam": 1.0, "view": "full", "layers": []},
    "policy": {"encoder": "static", "precision": "fp16", "strategy": "vote", "lam": 1.0},
    "view": {
        "encoder": "static",
        "precision": "fp16",
        "strategy": "vote",
        "lam": 1.0,
        "view": "strip_options+tail",
    },
    "tiny": {"encoder": "tiny", "precision": "int8", "lam": 0.05},
}
# router.json policies set after training (RouterEditor.set_policy); costs in USD per prompt
POLICIES = {
    "policy": {
        "costs": {"chinese": 0.0004, "code": 0.006, "law": 0.03, "math": 0.002, "medicine": 0.012},
        "wtp": 0.2,
        "min_confidence": 0.6,
        "fallback": "law",
        "temperature": 0.05,
    },
}
# per-call willingness to pay for the policy router (None: quality only)
WTP_OVERRIDES = [None, 0.01, 1.0]
# copies of a router without the graph outputs choice and confidence (saved before them): the
# runtime decides from the scores
LEGACY = {"legacy": "static"}
TEXT_ARGS = ["Solve 3x + 5 = 20", "What is habeas corpus?"]
# `irde route ROUTER [TEXT_ARGS] [--input FILE] ARGS`: (router, arguments, with --input)
CLI_CASES = [
    ("static", ["--top-k", "2"], True),
    ("static", TEXT_ARGS, False),
    ("int8", ["--top-k", "2"], True),
    ("int8", TEXT_ARGS, False),
    ("policy", ["--top-k", "2"], True),
    ("policy", ["--wtp", "0.01"], True),
    ("policy", [*TEXT_ARGS, "--wtp", "none", "--top-k", "3"], False),
    ("legacy", ["--top-k", "2"], True),
]
PER_FILE = 10  # prompts per domains file, besides one per script
CHECK_ATOL = 1e-6
SPACE = " "
# start + spaces + ideographs above U+FFFF: where the cut at max_length * 32 code points
# falls decides how many ideographs are kept (counting UTF-16 units would keep fewer)
CUT_PADDING = 256 * 32 - 12
MC = "Which organ filters the blood?\nA. Heart\nB. Kidney\nC. Lung\nD. Liver"

HAND_WRITTEN: list[tuple[str, str]] = [
    ("empty", ""),
    ("spaces", "   "),
    ("whitespace mix", " \t\n\r\u3000\u00a0 "),
    ("ascii math", "Solve for x: 3x - 7 = 2x + 5."),
    ("special tokens", "[CLS] explain [MASK] in law [SEP] [PAD] [UNK]"),
    ("accents", "Crème brûlée, naïve façade, Ångström, São Paulo, Dvořák"),
    ("upper greek final sigma", "ΟΔΟΣ ΚΑΙ ΛΟΓΟΣ: Η ΑΡΧΗ ΤΟΥ ΝΟΜΟΥ"),
    ("turkish dotted I", "İSTANBUL ıı İi ß ẞ ǅ"),
    ("chinese", "请解释一下合同法中的违约责任是什么？"),
    ("chinese rare ideographs", "𠀀𠀁𪜀𫝀𫠠𬺰𰀀 古籍中的生僻字𠮷野家"),
    ("cjk boundary ideographs", "\U0002b81f\U0002b820\U0002b91f\U0002b920\U0002ceaf\U0002ceb0"),
    ("cjk compatibility", "\uf900\ufa6d\U0002f800\U0002fa1d 兼容字"),
    ("japanese", "東京で弁護士に相談したいです。カタカナとひらがな。"),
    ("korean", "의료 보험 청구 절차를 설명해 주세요."),
    ("emoji", "Fix my Python bug 🐍🔥 please 😀👍🏽"),
    ("emoji zwj", "family 👨‍👩‍👧‍👦 flag 🇫🇷 keycap 1️⃣ rainbow 🏳️‍🌈"),
    ("combining marks", "e\u0301 a\u0308 Z\u0324\u0308 n\u0303 ǹ q\u0323\u0307 \u0338"),
    ("vietnamese", "Tiếng Việt có nhiều dấu thanh: ả, ạ, ẫ, ự."),
    ("devanagari", "क्या आप कानून समझा सकते हैं? नमस्ते"),
    ("thai", "กฎหมายแพ่งและพาณิชย์"),
    ("arabic rtl", "ما هو علاج ارتفاع ضغط الدم؟"),
    ("hebrew rtl", "מהו דין החוזה בישראל?"),
    ("bidi controls", "abc \u202eevil\u202c def \u200f\u200e \u2066iso\u2069"),
    ("control characters", "a\x00b\x01c\x07d\x1be\x7ff\u0085g\u200bh\ufeffi\ufffej"),
    ("tabs and newlines", "line one\nline two\r\n\ttabbed\x0bvertical\x0cfeed"),
    ("lone high surrogate", "abc\ud800def"),
    ("lone low surrogate", "\udc00 start"),
    ("high surrogate at end", "the end \ud83d"),
    ("reversed pair", "\ude00\ud83d mixed 😀"),
    ("only surrogates", "\ud800\udbff \udc00\udfff"),
    ("code", "def f(x):\n    return [i**2 for i in range(x) if i % 2 == 0]  # comment"),
    ("sql", "SELECT name, COUNT(*) FROM users u JOIN orders o ON u.id = o.user_id GROUP BY name;"),
    ("latex", r"\int_0^1 x^2 \, dx = \frac{1}{3}, \quad \sum_{k=1}^{n} k = \frac{n(n+1)}{2}"),
    ("url and email", "see https://example.org/a?b=c&d=e#f or mail someone@example.com"),
    ("numbers", "3.14159 1,000,000 1e-9 0x1F 42% $19.99 ½ ² ٣ ৩"),
    ("long word", "a" * 150 + " pneumonoultramicroscopicsilicovolcanoconiosis"),
    ("math symbols", "∀x∈ℝ: x² ≥ 0 ⇒ √(x²) = |x|; ∑∞ ≠ ∅"),
    ("fullwidth", "ＡＢＣ　１２３　ｆｕｌｌｗｉｄｔｈ"),
    ("many tokens", " ".join(f"word{i}" for i in range(400))),
    ("far over the cut, words", "law contract " * 3000),
    ("far over the cut, chinese", "合同法违约责任" * 3000),
    ("far over the cut, emoji", "😀" * 9000),
    ("far over the cut, rare ideographs", "𠀀" * 9000),
    ("cut falls in astral ideographs", "start" + SPACE * CUT_PADDING + "𠀀" * 20 + " end"),
    ("cut falls in spaces then surrogates", "start" + SPACE * CUT_PADDING + "\ud800" * 20 + "tail"),
    ("surrogates then far over the cut", "\udc00" * 5000 + "medicine " * 2000),
    # input views: option lines and answer cues at the end, a long shared preamble
    ("multiple choice", MC),
    ("multiple choice, answer cue", MC + "\n\nAnswer: \n"),
    (
        "multiple choice, chinese",
        "下列哪项是合同成立的要件？\nA. 要约\nB. 承诺\nC. 对价\nD. 以上都是\n答案：",
    ),
    ("multiple choice, parentheses, CRLF", "Pick the statute:\r\n(A) tort\r\n(B) contract\r\n"),
    ("few-shot preamble", "Q: What is 2 + 2?\nA: 4\n" * 80 + "Q: Which court hears appeals?"),
    ("few-shot preamble, emoji", "😀 example line\n" * 60 + "Q: 𠀀 what does this ideograph mean?"),
]


def script_of(ch: str) -> str | None:
    """A coarse script name: the first word of the character's Unicode name (letters only)."""
    if not unicodedata.category(ch).startswith("L"):
        return None
    name = unicodedata.name(ch, "")
    return name.split(" ")[0] if name else None


def data_prompts(data: Path) -> list[dict]:
    """References to rows of ../shared/data/domains: some per file, one per script found."""
    files = sorted((data / "domains").glob("*.jsonl"))
    if not files:
        raise SystemExit(f"no domains/*.jsonl under {data}; pass --data")
    rng = np.random.default_rng(0)
    chosen: list[dict] = []
    seen_scripts: set[str] = set()
    for file in files:
        rows = [
            json.loads(line)
            for line in file.read_text(encoding="utf-8").split("\n")
            if line.strip()
        ]
        picks = set(rng.choice(len(rows), size=min(PER_FILE, len(rows)), replace=False).tolist())
        for i, row in enumerate(rows):
            scripts = {s for s in map(script_of, row["text"]) if s} - seen_scripts
            if scripts or i in picks:
                seen_scripts |= scripts
                chosen.append(
                    {
                        "name": f"{file.stem} {row['id']}"
                        + (f" ({', '.join(sorted(scripts))})" if scripts else ""),
                        "source": f"domains/{file.name}",
                        "id": row["id"],
                        "sha256": hashlib.sha256(
                            row["text"].encode("utf-8", "surrogatepass")
                        ).hexdigest(),
                        "text": row["text"],
                    }
                )
    return chosen


def build_routers(folder: Path) -> dict[str, Path]:
    """Train the demo routers into ``folder`` (kept when already there)."""
    from irde_onnx.export import RouterTrainer

    lines = (DEMO / "train.jsonl").read_text(encoding="utf-8").split("\n")
    rows = [json.loads(line) for line in lines if line.strip()]
    texts, labels = [r["text"] for r in rows], [r["expert"] for r in rows]
    out = {}
    for name, spec in ROUTERS.items():
        target = folder / name
        if not (target / "router.json").is_file():
            print(f"building the {name} router in {target}", file=sys.stderr)
            trainer = RouterTrainer(**spec, progress=False).fit(texts, labels)
            if name in POLICIES:
                trainer.editor_.set_policy(**POLICIES[name])
            trainer.save(target)
        out[name] = target
    for name, source in LEGACY.items():
        target = folder / name
        if not (target / "router.json").is_file():
            print(
                f"copying the {source} router to {target} without decision outputs", file=sys.stderr
            )
            without_decision(out[source], target)
        out[name] = target
    return out


DECISION_OUTPUTS = ("choice", "confidence")


def decision_outputs(graph: Path) -> bool:
    """True when the graph computes ``choice`` and ``confidence``."""
    import onnx

    names = {o.name for o in onnx.load(graph, load_external_data=False).graph.output}
    return set(DECISION_OUTPUTS) <= names


def without_decision(source: Path, target: Path) -> None:
    """Copy a router, dropping the decision nodes and outputs: a router saved before them."""
    import shutil

    import onnx

    target.mkdir(parents=True)
    config = json.loads((source / "router.json").read_text(encoding="utf-8"))
    model = onnx.load(source / config["files"]["graph"]["name"], load_external_data=False)
    while any(o.name in DECISION_OUTPUTS for o in model.graph.output):
        model.graph.output.remove(next(o for o in model.graph.output if o.name in DECISION_OUTPUTS))

    def policy_node(node: onnx.NodeProto) -> bool:
        return all(o.startswith("policy/") or o in DECISION_OUTPUTS for o in node.output)

    kept = [n for n in model.graph.node if not policy_node(n)]
    del model.graph.node[:]
    model.graph.node.extend(kept)
    inits = [t for t in model.graph.initializer if not t.name.startswith("policy.")]
    del model.graph.initializer[:]
    model.graph.initializer.extend(inits)
    graph = model.SerializeToString()  # external data stays in router.onnx.data, unchanged
    (target / "router.onnx").write_bytes(graph)
    for name in ("router.onnx.data", "tokenizer.json", config["files"]["stats"]["name"]):
        shutil.copyfile(source / name, target / name)
    config["files"]["graph"] = {"name": "router.onnx", "sha256": hashlib.sha256(graph).hexdigest()}
    config.pop("policy", None)
    (target / "router.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")


def compute(routers: dict[str, Path], prompts: list[dict]) -> dict:
    """Ids (one list per prompt and input view) and each router's scores and decisions."""
    from irde_onnx.runtime import Router

    texts = [p["text"] for p in prompts]
    result: dict = {
        "routers": {},
        "ids": {},
        "scores": {},
        "experts": {},
        "confidence": {},
        "wtp": {},
        "uncertainty": {},
    }
    for name, path in routers.items():
        router = Router.load(path, threads=1)
        view = router.config.view
        these = [e.tolist() for e in router.tokenizer.encode(texts)]
        if result["ids"].setdefault(view, these) != these:
            raise SystemExit(f"the {name} router tokenizes differently from others of view {view}")
        routes = router.route(texts, top_k=len(router.experts))
        spec = ROUTERS.get(name) or {"copy_of": LEGACY[name], "without": list(DECISION_OUTPUTS)}
        result["routers"][name] = {
            "spec": spec,
            "experts": router.experts,
            "decision_outputs": decision_outputs(router.graph_path),
            "max_length": router.config.max_length,
            "target": router.config.target,
            "view": view,
            "layers": list(router.config.layers),
            "policy": router.config.policy,
        }
        result["scores"][name] = [[r.scores[e] for e in router.experts] for r in routes]
        result["experts"][name] = [r.expert for r in routes]
        result["confidence"][name] = [r.confidence for r in routes]
        if router.has_uncertainty:  # pooled routers: the graph's optional uncertainty output
            result["uncertainty"][name] = router.uncertainty(texts).astype(float).tolist()
        if name in POLICIES:
            result["wtp"][name] = []
            for wtp in WTP_OVERRIDES:
                over = router.route(texts, wtp=wtp)
                result["wtp"][name].append(
                    {
                        "wtp": wtp,
                        "experts": [r.expert for r in over],
                        "confidence": [r.confidence for r in over],
                    }
                )
    return result


def decide_cases() -> list[dict]:
    """The rule alone: ``policy.decide`` on fixed float32 scores, each setting exercised."""
    from irde_onnx.decision.policy import decide

    rng = np.random.default_rng(10)
    cases = []
    settings = [
        ("domain, quality only", "domain", 5, {}),
        ("domain, temperature 0.3", "domain", 5, {"temperature": 0.3}),
        ("domain, costs and wtp", "domain", 5, {"wtp": 0.5}),
        (
            "domain, threshold and fallback",
            "domain",
            5,
            {"temperature": 2.0, "min_confidence": 0.4, "fallback": 3},
        ),
        ("domain, 11 experts (pairwise sum)", "domain", 11, {"temperature": 0.7, "wtp": 2.0}),
        ("domain, 150 experts (pairwise halves)", "domain", 150, {"wtp": 10.0}),
        ("score, clip", "score", 4, {}),
        (
            "score, costs, wtp, threshold",
            "score",
            4,
            {"wtp": 0.25, "min_confidence": 0.6, "fallback": 0},
        ),
    ]
    for name, target, k, extra in settings:
        scores = (rng.normal(0.5, 0.6, size=(24 if k < 100 else 4, k))).astype(np.float32)
        scores[0, :] = scores[0, 0]  # a tie: the first column wins
        costs = np.round(rng.uniform(0, 0.2, size=k), 4) if "wtp" in extra else None
        choice, confidence = decide(scores, target, costs=costs, **extra)
        cases.append(
            {
                "name": name,
                "target": target,
                "scores": scores.astype(float).tolist(),
                "costs": None if costs is None else costs.tolist(),
                "wtp": extra.get("wtp"),
                "temperature": extra.get("temperature", 1.0),
                "min_confidence": extra.get("min_confidence", 0.0),
                "fallback": extra.get("fallback"),
                "choice": choice.tolist(),
                "confidence": confidence.astype(float).tolist(),
            }
        )
    return cases


CLI_IDS = ["a1", 7, None, 2.5, {"k": [1, "x"]}, "b2"]


def cli_cases(routers: dict[str, Path], prompts: list[dict]) -> dict:
    """What `irde route` prints, byte for byte, for each of CLI_CASES.

    The rows of FILE (the hand-written prompts, some with ids) are stored once.
    """
    import subprocess
    import tempfile

    rows = []
    for i, p in enumerate(prompts):
        if "source" in p:
            continue
        row = {"text": p["text"]}
        if i % 2 == 0:
            row = {"id": CLI_IDS[(i // 2) % len(CLI_IDS)], **row}
        rows.append(row)
    cases = []
    with tempfile.TemporaryDirectory() as tmp:
        file = Path(tmp) / "prompts.jsonl"
        file.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
        for name, args, with_input in CLI_CASES:
            more = ["--input", str(file)] if with_input else []
            out = subprocess.run(
                [sys.executable, "-m", "irde_onnx", "route", str(routers[name]), *more, *args],
                check=True,
                capture_output=True,
                text=True,
                encoding="utf-8",
            )
            cases.append({"router": name, "args": args, "input": with_input, "stdout": out.stdout})
    return {"rows": rows, "cases": cases}


def close(a: object, b: object) -> bool:
    """Equal JSON values, floats within CHECK_ATOL (ints, strings, lists, keys: exactly)."""
    if isinstance(a, float) or isinstance(b, float):
        return (
            isinstance(a, (int, float)) and isinstance(b, (int, float)) and abs(a - b) <= CHECK_ATOL
        )
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(close(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return list(a) == list(b) and all(close(a[k], b[k]) for k in a)
    return a == b


DEFAULT_ROUTERS = ROOT / "js" / "test" / "routers"
REGENERATE = "run conformance/generate.py --only golden"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of this generator (also those of conformance/generate.py)."""
    parser.add_argument(
        "--routers",
        type=Path,
        default=DEFAULT_ROUTERS,
        help="folder for the golden routers (built when missing)",
    )
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="../shared/data")


def main(argv: list[str] | None = None) -> int:
    """Write golden.json, or with --check compare it with the Python runtime (exit 1 if stale)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(parser)
    parser.add_argument(
        "--check",
        action="store_true",
        help="compare with the committed golden.json instead of writing it",
    )
    args = parser.parse_args(argv)
    return run(args.check, routers=args.routers, data=args.data)


def run(check: bool, routers: Path = DEFAULT_ROUTERS, data: Path = DEFAULT_DATA) -> int:
    """Write golden.json (check False) or compare it with the Python runtime (1 if stale)."""
    routers = build_routers(routers)
    hand = [{"name": n, "text": t} for n, t in HAND_WRITTEN]
    prompts = hand + data_prompts(data)
    got = compute(routers, prompts)
    record = {
        "about": "written by conformance/generate.py (make_golden.py) from the Python runtime; "
        "do not edit",
        "prompts": [
            {k: v for k, v in p.items() if k != "text" or "source" not in p} for p in prompts
        ],
        **got,
        "decide": decide_cases(),
        "cli": cli_cases(routers, prompts),
    }
    if not check:
        # ensure_ascii keeps lone surrogates as \\ud800 escapes, which JSON.parse restores
        GOLDEN.write_text(json.dumps(record, ensure_ascii=True) + "\n", encoding="utf-8")
        print(f"wrote {GOLDEN}: {len(prompts)} prompts x {len(routers)} routers")
        return 0
    golden = json.loads(GOLDEN.read_text(encoding="utf-8"))
    # floats computed by another CPU's kernels (fitted temperatures, float32 exp) may move in
    # their last bits: those are compared within CHECK_ATOL, everything else exactly
    stale = [key for key in ("prompts", "ids", "cli") if golden.get(key) != record[key]]
    stale += [key for key in ("decide", "routers") if not close(golden.get(key), record[key])]
    if stale:
        print(f"golden.json is stale: {', '.join(stale)} differ; {REGENERATE}", file=sys.stderr)
        return 1
    for name in routers:
        diff = np.abs(np.array(golden["scores"][name]) - np.array(record["scores"][name])).max()
        conf = np.abs(
            np.array(golden["confidence"][name], float)
            - np.array(record["confidence"][name], float)
        ).max()
        print(f"{name}: max |score - golden| = {diff:.2e}, max |confidence - golden| = {conf:.2e}")
        if (
            diff > CHECK_ATOL
            or conf > CHECK_ATOL
            or golden["experts"][name] != record["experts"][name]
        ):
            print(f"golden.json is stale for the {name} router; {REGENERATE}", file=sys.stderr)
            return 1
    if not close(golden.get("wtp"), record["wtp"]):
        print(f"golden.json is stale for the per-call wtp; {REGENERATE}", file=sys.stderr)
        return 1
    have, want = golden.get("uncertainty", {}), record["uncertainty"]
    if sorted(have) != sorted(want):
        print(
            f"golden.json has the uncertainty of {sorted(have)}, the routers give it for "
            f"{sorted(want)}; {REGENERATE}",
            file=sys.stderr,
        )
        return 1
    for name in want:
        diff = np.abs(np.array(have[name]) - np.array(want[name])).max()
        print(f"{name}: max |uncertainty - golden| = {diff:.2e}")
        if diff > CHECK_ATOL:
            print(f"golden.json is stale for the {name} uncertainty; {REGENERATE}", file=sys.stderr)
            return 1
    print(f"golden.json matches the Python runtime ({len(prompts)} prompts)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
