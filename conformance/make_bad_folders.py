"""Write the conformance fixtures of broken router folders that every host must refuse alike.

``conformance/bad_folders/good/`` is the toy router of ``tests/toy.py`` (a few KB, built
without torch; router.json format_version 3). ``cases.json`` lists one case per kind of
damage: the steps that break a copy of the good folder, and the error type a load must raise
(``null``: it must load). ``graphs/`` holds graphs the cases put in place of the good one.
The Python tests (``tests/runtime/test_bad_folders.py``) and the Node tests
(``js/test/bad_folders.test.mjs``) copy the good folder to a temporary one, apply each case's
steps and load it. ``rules`` records the graph rules (``irde_onnx.graph.rules``) that both
hosts must hold alike.

Steps (applied in order; a role is ``config`` (router.json), ``graph``, ``stats``, ``data``
or ``tokenizer``, its file named by router.json):

* ``{"flip": role, "at": i}``: flip the low bit of byte ``i`` (negative: from the end);
* ``{"replace_text": role, "old": s, "new": t}``: replace the first ``s`` by ``t``;
* ``{"set": "a.b", "value": v, "json": t}`` / ``{"delete": "a.b"}``: edit a field of
  router.json (``t``: the value's JSON text as Python writes it, e.g. ``256.0``);
* ``{"put": role, "from": "graphs/x.onnx"}``: replace the file by a fixture file;
* ``{"rehash": role}``: record the file's sha256 in router.json (the content rule decides);
* ``{"symlink_outside": role}``: move the file out of the folder, leave a symlink to it;
* ``{"symlink_inside": role}``: move the file to a hidden name inside, leave a symlink;
* ``{"remove": role}``: delete the file;
* ``{"symlink_lock": true}``: make ``.irde.lock`` a symlink to a file outside.

A case with ``"hosts": ["python"]`` runs only where that host has the feature (the JS host
never takes the folder's lock). Regenerate after a change of the toy router, the rules or the
folder format, from the repository root::

    python -m conformance.generate --only bad_folders

(``--check`` writes them into a temporary folder and compares every byte.)
"""

from __future__ import annotations

import filecmp
import json
import shutil
import sys
import tempfile
from pathlib import Path

import onnx
from onnx import TensorProto, helper

from irde_onnx.encoders import ENCODERS
from irde_onnx.graph.rules import ALLOWED_OPS, SIZE_INPUTS, SLACK_BYTES
from tests.toy import build_toy_router

HERE = Path(__file__).resolve().parent
OUT = HERE / "bad_folders"

RANGE = "RouterFormatError"


def _graph_variants(good: Path) -> dict[str, onnx.ModelProto]:
    """Graphs that keep the good one's weights and add what the rules refuse."""
    config = json.loads((good / "router.json").read_text(encoding="utf-8"))
    path = good / config["files"]["graph"]["name"]

    def load() -> onnx.ModelProto:
        model = onnx.load(str(path), load_external_data=False)
        scores = next(n for n in model.graph.node if "scores" in n.output)
        scores.output[list(scores.output).index("scores")] = "scores_raw"
        return model

    out = {}
    # the graph: 2 GB of zeros per route, summed into the scores
    model = load()
    model.graph.node.extend(
        [
            helper.make_node(
                "Constant",
                [],
                ["huge_shape"],
                value=helper.make_tensor("s", TensorProto.INT64, [2], [1, 500_000_000]),
            ),
            helper.make_node("ConstantOfShape", ["huge_shape"], ["huge"]),
            helper.make_node("ReduceSum", ["huge"], ["huge_sum"], keepdims=0),
            helper.make_node("Add", ["scores_raw", "huge_sum"], ["scores"]),
        ]
    )
    out["constant_of_shape"] = model
    # an operator no exporter writes
    model = load()
    model.graph.node.extend(
        [
            helper.make_node("RandomNormal", [], ["noise"], shape=[1], scale=0.0),
            helper.make_node("Add", ["scores_raw", "noise"], ["scores"]),
        ]
    )
    out["foreign_operator"] = model
    # a weight far larger than the encoder needs (declared; never read: refused before)
    model = load()
    big = TensorProto(name="unused.big", data_type=TensorProto.FLOAT, dims=[250_000_000])
    big.data_location = TensorProto.EXTERNAL
    for key, value in (("location", "router.onnx.data"), ("offset", "0"), ("length", "0")):
        big.external_data.add(key=key, value=value)
    model.graph.initializer.append(big)
    model.graph.node.append(helper.make_node("Identity", ["scores_raw"], ["scores"]))
    out["huge_initializer"] = model
    return out


def _case(name: str, steps: list[dict], error: str | None, **extra: object) -> dict:
    # a "set" step also carries its value's JSON text: JSON.parse reads 256.0 as 256
    steps = [{**s, "json": json.dumps(s["value"])} if "set" in s else s for s in steps]
    return {"name": name, "steps": steps, "error": error, **extra}


def cases() -> list[dict]:
    """Every case: name, steps, expected error type name (None: loads)."""
    to_v2 = [
        {"delete": "files.data"},
        {"delete": "files.tokenizer"},
        {"set": "format_version", "value": 2},
    ]
    out = [
        _case("good folder", [], None),
        _case("format_version 2 with its two hashes", to_v2, None),
        _case(
            "format_version 2 without sha256",
            [*to_v2, {"delete": "files.graph.sha256"}, {"delete": "files.stats.sha256"}],
            RANGE,
        ),
        _case("format_version 3 without the data sha256", [{"delete": "files.data.sha256"}], RANGE),
        _case("format_version 3 without the tokenizer", [{"delete": "files.tokenizer"}], RANGE),
        _case("format_version 1 with files", [{"set": "format_version", "value": 1}], RANGE),
        _case("sha256 not hex", [{"set": "files.stats.sha256", "value": "Z" * 64}], RANGE),
        _case("tampered graph", [{"flip": "graph", "at": -1}], RANGE),
        _case("tampered statistics", [{"flip": "stats", "at": -1}], RANGE),
        _case("tampered encoder weights", [{"flip": "data", "at": 0}], RANGE),
        _case(
            "tampered tokenizer vocabulary",
            [{"replace_text": "tokenizer", "old": '"solve"', "new": '"solvf"'}],
            RANGE,
        ),
        _case(
            "traversal graph name", [{"set": "files.graph.name", "value": "../router.onnx"}], RANGE
        ),
        _case("absolute stats name", [{"set": "files.stats.name", "value": "/etc/passwd"}], RANGE),
        _case("data under another name", [{"set": "files.data.name", "value": "w.data"}], RANGE),
        _case("missing statistics", [{"remove": "stats"}], "FileNotFoundError"),
        _case("symlinked tokenizer inside the folder", [{"symlink_inside": "tokenizer"}], None),
    ]
    for role in ("config", "graph", "stats", "data", "tokenizer"):
        out.append(_case(f"{role} symlinked outside", [{"symlink_outside": role}], RANGE))
    for field, value in (
        ("max_length", 10**15),
        ("max_length", 1),
        ("max_length", "256"),
        ("max_length", 256.0),
        ("feature_dim", 0),
        ("lam", -1),
        ("top_k_tokens", 0),
        ("format_version", 4),
        ("format_version", True),
        ("experts", ["code", "law", " math"]),
        ("target", "quality"),
        ("fingerprint", 5),
    ):
        out.append(_case(f"{field} {json.dumps(value)}", [{"set": field, "value": value}], RANGE))
    for graph in ("constant_of_shape", "foreign_operator", "huge_initializer"):
        steps = [{"put": "graph", "from": f"graphs/{graph}.onnx"}, {"rehash": "graph"}]
        out.append(_case(f"graph {graph.replace('_', ' ')} with a matching hash", steps, RANGE))
    out.append(
        _case(
            "lock symlinked outside", [{"symlink_lock": True}], "RouterFileError", hosts=["python"]
        )
    )
    return out


def write(out: Path) -> int:
    """Write the good folder, the graphs and ``cases.json`` into ``out``; the case count."""
    shutil.rmtree(out, ignore_errors=True)
    good = build_toy_router(out / "good")
    (good / ".irde.lock").unlink(missing_ok=True)
    (out / "graphs").mkdir()
    for name, model in _graph_variants(good).items():
        onnx.save_model(model, str(out / "graphs" / f"{name}.onnx"))
    record = {
        "about": "written by conformance/make_bad_folders.py; do not edit",
        "rules": {
            "allowed_ops": {k: sorted(v) for k, v in sorted(ALLOWED_OPS.items())},
            "size_inputs": {k: list(v) for k, v in sorted(SIZE_INPUTS.items())},
            "slack_bytes": SLACK_BYTES,
            "encoders": {
                name: {"token_weights": spec.token_weights, "fixed_weights": spec.fixed_weights}
                for name, spec in sorted(ENCODERS.items())
            },
        },
        "cases": cases(),
    }
    (out / "cases.json").write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    return len(record["cases"])


def _differences(a: Path, b: Path) -> list[str]:
    """Files that differ between two folders, or exist in one only (relative paths)."""
    cmp = filecmp.dircmp(a, b)
    out = [*cmp.left_only, *cmp.right_only, *cmp.funny_files]
    _, mismatch, errors = filecmp.cmpfiles(a, b, cmp.common_files, shallow=False)
    out += mismatch + errors
    for sub in cmp.common_dirs:
        out += [f"{sub}/{name}" for name in _differences(a / sub, b / sub)]
    return sorted(out)


def run(check: bool) -> int:
    """Write ``conformance/bad_folders`` (check False) or compare it byte for byte (1: stale)."""
    if not check:
        print(f"wrote {OUT}: {write(OUT)} cases")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        fresh = Path(tmp) / "bad_folders"
        count = write(fresh)
        stale = _differences(OUT, fresh)
    if stale:
        print(
            f"bad_folders is stale ({', '.join(stale)}); "
            "run conformance/generate.py --only bad_folders",
            file=sys.stderr,
        )
        return 1
    print(f"bad_folders matches what the generator writes ({count} cases)")
    return 0


if __name__ == "__main__":
    sys.exit(run(check="--check" in sys.argv[1:]))
