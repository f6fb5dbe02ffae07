"""Write (or check) js/test/golden.json: what the Python runtime decides, for the JS tests.

Builds three small routers from models/demo (static fp16 vote, MiniLM fp32, MiniLM int8),
then records, for every golden prompt, the token ids of the Python tokenizer and each
router's scores and decision. The JS tests (``node --test`` in js/) load the same routers and
compare. Prompts cover every script found in ../shared/data/domains (referenced by file and
id with a sha256 of the text, never copied here), rare CJK ideographs above U+FFFF, emoji,
combining marks, right-to-left text, control characters, lone surrogates, empty and
whitespace-only texts, and texts far over ``max_length * 32`` characters.

    .venv/bin/python js/test/make_golden.py --routers js/test/routers           # write
    .venv/bin/python js/test/make_golden.py --routers js/test/routers --check   # CI
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import unicodedata
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = ROOT / "js" / "test" / "golden.json"
DEMO = ROOT / "models" / "demo"
DEFAULT_DATA = ROOT.parent / "shared" / "data"
ROUTERS = {
    "static": {"encoder": "static", "precision": "fp16", "strategy": "vote", "lam": 1.0},
    "fp32": {"encoder": "minilm", "precision": "fp32", "lam": 1.0},
    "int8": {"encoder": "minilm", "precision": "int8", "lam": 1.0},
}
PER_FILE = 10  # prompts per domains file, besides one per script
CHECK_ATOL = 1e-6
SPACE = " "
# start + spaces + ideographs above U+FFFF: where the cut at max_length * 32 code points
# falls decides how many ideographs are kept (counting UTF-16 units would keep fewer)
CUT_PADDING = 256 * 32 - 12

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
    ("cut falls in spaces then surrogates",
     "start" + SPACE * CUT_PADDING + "\ud800" * 20 + "tail"),
    ("surrogates then far over the cut", "\udc00" * 5000 + "medicine " * 2000),
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
        rows = [json.loads(line) for line in file.read_text(encoding="utf-8").split("\n")
                if line.strip()]
        picks = set(rng.choice(len(rows), size=min(PER_FILE, len(rows)), replace=False).tolist())
        for i, row in enumerate(rows):
            scripts = {s for s in map(script_of, row["text"]) if s} - seen_scripts
            if scripts or i in picks:
                seen_scripts |= scripts
                chosen.append({
                    "name": f"{file.stem} {row['id']}" + (f" ({', '.join(sorted(scripts))})"
                                                          if scripts else ""),
                    "source": f"domains/{file.name}",
                    "id": row["id"],
                    "sha256": hashlib.sha256(row["text"].encode("utf-8", "surrogatepass"))
                    .hexdigest(),
                    "text": row["text"],
                })
    return chosen


def build_routers(folder: Path) -> dict[str, Path]:
    """Train the three demo routers into ``folder`` (kept when already there)."""
    from irde_onnx.export import RouterTrainer

    lines = (DEMO / "train.jsonl").read_text(encoding="utf-8").split("\n")
    rows = [json.loads(line) for line in lines if line.strip()]
    texts, labels = [r["text"] for r in rows], [r["expert"] for r in rows]
    out = {}
    for name, spec in ROUTERS.items():
        target = folder / name
        if not (target / "router.json").is_file():
            print(f"building the {name} router in {target}", file=sys.stderr)
            RouterTrainer(**spec, progress=False).fit(texts, labels).save(target)
        out[name] = target
    return out


def compute(routers: dict[str, Path], prompts: list[dict]) -> dict:
    """Ids (one list per prompt, the same for every router) and each router's scores."""
    from irde_onnx.runtime import Router

    texts = [p["text"] for p in prompts]
    ids = None
    result: dict = {"routers": {}, "scores": {}, "experts": {}}
    for name, path in routers.items():
        router = Router.load(path, threads=1)
        these = [e.tolist() for e in router.tokenizer.encode(texts)]
        if ids is None:
            ids = these
        elif these != ids:
            raise SystemExit(f"the {name} router tokenizes differently from the others")
        routes = router.route(texts, top_k=len(router.experts))
        result["routers"][name] = {"spec": ROUTERS[name], "experts": router.experts,
                                   "max_length": router.config.max_length}
        result["scores"][name] = [[r.scores[e] for e in router.experts] for r in routes]
        result["experts"][name] = [r.expert for r in routes]
    result["ids"] = ids
    return result


CLI_IDS = ["a1", 7, None, 2.5, {"k": [1, "x"]}, "b2"]


def cli_cases(routers: dict[str, Path], prompts: list[dict]) -> list[dict]:
    """What `irde route DIR --input FILE --top-k 2` prints, byte for byte, for two routers."""
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
        for name in ("static", "int8"):
            args = ["--top-k", "2"]
            out = subprocess.run(
                [sys.executable, "-m", "irde_onnx", "route", str(routers[name]), "--input",
                 str(file), *args], check=True, capture_output=True, text=True, encoding="utf-8")
            cases.append({"router": name, "args": args, "rows": rows, "stdout": out.stdout})
            text_args = ["Solve 3x + 5 = 20", "What is habeas corpus?"]
            out = subprocess.run(
                [sys.executable, "-m", "irde_onnx", "route", str(routers[name]), *text_args],
                check=True, capture_output=True, text=True, encoding="utf-8")
            cases.append({"router": name, "args": text_args, "rows": None, "stdout": out.stdout})
    return cases


def main(argv: list[str] | None = None) -> int:
    """Write golden.json, or with --check compare it with the Python runtime (exit 1 if stale)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--routers", type=Path, default=ROOT / "js" / "test" / "routers",
                        help="folder for the three routers (built when missing)")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="../shared/data")
    parser.add_argument("--check", action="store_true",
                        help="compare with the committed golden.json instead of writing it")
    args = parser.parse_args(argv)
    routers = build_routers(args.routers)
    hand = [{"name": n, "text": t} for n, t in HAND_WRITTEN]
    prompts = hand + data_prompts(args.data)
    got = compute(routers, prompts)
    record = {
        "about": "written by js/test/make_golden.py from the Python runtime; do not edit",
        "prompts": [{k: v for k, v in p.items() if k != "text" or "source" not in p}
                    for p in prompts],
        **got,
        "cli": cli_cases(routers, prompts),
    }
    if not args.check:
        # ensure_ascii keeps lone surrogates as \\ud800 escapes, which JSON.parse restores
        GOLDEN.write_text(json.dumps(record, ensure_ascii=True) + "\n", encoding="utf-8")
        print(f"wrote {GOLDEN}: {len(prompts)} prompts x {len(routers)} routers")
        return 0
    golden = json.loads(GOLDEN.read_text(encoding="utf-8"))
    if golden["prompts"] != record["prompts"] or golden["ids"] != record["ids"] or \
            golden["cli"] != record["cli"]:
        print("golden.json is stale: prompts or token ids differ; run make_golden.py",
              file=sys.stderr)
        return 1
    for name in routers:
        diff = np.abs(np.array(golden["scores"][name]) - np.array(record["scores"][name])).max()
        print(f"{name}: max |score - golden| = {diff:.2e}")
        if diff > CHECK_ATOL or golden["experts"][name] != record["experts"][name]:
            print(f"golden.json is stale for the {name} router; run make_golden.py",
                  file=sys.stderr)
            return 1
    print(f"golden.json matches the Python runtime ({len(prompts)} prompts)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
