"""Write (or check) the tables every host shares, and the check cases both hosts run.

Three outputs, each computed from the Python package (its source of truth):

* ``spec``: ``conformance/spec.json``, the tables the JS host used to copy by hand: the
  encoder registry (``irde_onnx/encoders.py``), router.json's format (versions, file roles
  and names, required fields, targets, expert modes; ``irde_onnx/store/config.py``), the
  views' names and patterns (``irde_onnx/views.py``), the policy's fields
  (``irde_onnx/decision/policy.py``), the graph rules (``irde_onnx/graph/rules.py``) and the
  text rule. The npm package ships the same JSON as ``js/src/spec.js`` (an ES module, so
  every runtime and bundler imports it without JSON import attributes).
* ``router_json``: ``conformance/router_json_cases.json``, router.json texts and what
  ``RouterConfig.from_json`` makes of them: the error type and message, or the view, layers
  and policy it reads. ``tests/runtime/test_conformance_cases.py`` and
  ``js/test/checks.test.mjs`` run every case.
* ``policy``: ``conformance/policy_cases.json``, ``policy`` objects and what
  ``Policy.from_dict`` and ``Policy.check`` make of them, for the same two tests.

Where the JS host's message differs from Python's, the case records the JS message under
``"js"`` (:data:`JS_MESSAGES`, the one list of such differences): a test fails when a host
changes a message, and a difference is removed by changing the JS message and deleting its
entry here.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

from irde_onnx import views
from irde_onnx.decision.policy import Policy
from irde_onnx.encoders import DEFAULT_ENCODER, ENCODERS
from irde_onnx.errors import InvalidInputError, RouterFormatError
from irde_onnx.graph import rules
from irde_onnx.learning import uncertainty
from irde_onnx.runtime import router as runtime_router
from irde_onnx.runtime.tokenize import MAX_CHARS_PER_TOKEN
from irde_onnx.store import config as store_config
from irde_onnx.store.config import RouterConfig

ROOT = Path(__file__).resolve().parents[1]
SPEC_JSON = ROOT / "conformance" / "spec.json"
SPEC_JS = ROOT / "js" / "src" / "spec.js"
ROUTER_JSON_CASES = ROOT / "conformance" / "router_json_cases.json"
POLICY_CASES = ROOT / "conformance" / "policy_cases.json"
SOURCE = store_config.CONFIG_FILE  # the source name both hosts put in front of messages


# --- spec.json ---------------------------------------------------------------------------------
def spec() -> dict[str, Any]:
    """The shared tables, read from the Python modules that define them."""
    config_fields = dataclasses.fields(RouterConfig)
    no_default = dataclasses.MISSING
    return {
        "about": "written by conformance/generate.py (make_spec.py) from the Python package; "
        "do not edit. js/src/spec.js holds the same tables for the npm package.",
        "text": {"max_chars_per_token": MAX_CHARS_PER_TOKEN},
        "views": {
            "names": views.view_names(),
            "default": views.DEFAULT_VIEW,
            "auto": list(views.AUTO_VIEWS),
            "tail_chars_per_token": views.TAIL_CHARS_PER_TOKEN,
            "min_option_lines": views.MIN_OPTION_LINES,
            # whole-line patterns (Python's fullmatch; "option" is matched at a line's start)
            "patterns": {
                "blank": views.BLANK_LINE.pattern,
                "cue": views.ANSWER_CUE.pattern,
                "option": views.OPTION_LINE.pattern,
            },
            "trailing": views.TRAILING_SPACE,
        },
        "router_json": {
            "file": store_config.CONFIG_FILE,
            "format_version": store_config.FORMAT_VERSION,
            "readable_versions": list(store_config.READABLE_VERSIONS),
            "file_roles": {str(k): list(v) for k, v in store_config.FILE_ROLES.items()},
            "fixed_role_names": dict(store_config.FIXED_ROLE_NAMES),
            "fixed_files": list(store_config.FIXED_FILES),
            # the file of each role when router.json names none (format_version 1)
            "default_files": {
                "graph": store_config.GRAPH_FILE,
                "stats": store_config.STATS_FILE,
                "data": store_config.DATA_FILE,
                "tokenizer": store_config.TOKENIZER_FILE,
            },
            "file_name_pattern": store_config.FILE_NAME_PATTERN.pattern,
            "sha256_pattern": store_config.SHA256_PATTERN.pattern,
            "required_fields": [
                f.name
                for f in config_fields
                if f.default is no_default and f.default_factory is no_default
            ],
            "optional_fields": list(store_config.OPTIONAL_FIELDS),
            "targets": list(store_config.TARGETS),
            "expert_modes": list(store_config.EXPERT_MODES),
            "max_name_length": store_config.MAX_NAME_LENGTH,
        },
        "encoders": {
            name: {
                "feature_dim": e.feature_dim,
                "precisions": list(e.precisions),
                "strategies": list(e.strategies),
                "pooled": e.pooled,
                "layers": e.layers,
                "token_weights": e.token_weights,
                "fixed_weights": e.fixed_weights,
            }
            for name, e in ENCODERS.items()
        },
        "default_encoder": DEFAULT_ENCODER,
        "graph_rules": {
            "allowed_ops": {k: sorted(v) for k, v in sorted(rules.ALLOWED_OPS.items())},
            "size_inputs": {k: list(v) for k, v in rules.SIZE_INPUTS.items()},
            "slack_bytes": rules.SLACK_BYTES,
            "element_bytes": {str(k): v for k, v in rules.ELEMENT_BYTES.items()},
            # pooled encoders' weight bound adds the uncertainty output's floats:
            # feature_dim * (k + 1) + n_experts * (k + 1)^2, k = min(rank, feature_dim)
            "uncertainty_rank": uncertainty.UNCERTAINTY_RANK,
        },
        "policy": {
            "fields": [f.name for f in dataclasses.fields(Policy)],
            "defaults": dataclasses.asdict(Policy()),
        },
        "runtime": {
            "decision_outputs": list(runtime_router.DECISION_OUTPUTS),
            # optional graph output, float32 (batch, n_experts): pooled routers saved by
            # this version have it (irde_onnx/learning/uncertainty.py)
            "uncertainty_output": uncertainty.UNCERTAINTY_OUTPUT,
            "default_batch_size": runtime_router.DEFAULT_BATCH_SIZE,
            "int8_batch_size": runtime_router.INT8_BATCH_SIZE,
        },
    }


def spec_js(text: str) -> str:
    """js/src/spec.js: the same JSON as an ES module, frozen."""
    return (
        "// Generated by conformance/generate.py (conformance/make_spec.py) from the Python\n"
        "// package: the tables every host shares, the same JSON as conformance/spec.json.\n"
        "// Do not edit: change the Python source, then run\n"
        "//     python -m conformance.generate --only spec\n"
        "\n"
        "function freeze(value) {\n"
        '  if (value !== null && typeof value === "object") {\n'
        "    Object.values(value).forEach(freeze);\n"
        "    Object.freeze(value);\n"
        "  }\n"
        "  return value;\n"
        "}\n"
        "\n"
        f"export const SPEC = freeze({text.rstrip()});\n"
    )


# --- router.json cases -------------------------------------------------------------------------
BASE: dict[str, Any] = {
    "format_version": 1,
    "experts": ["a", "b", "c"],
    "expert_modes": ["pooled", "pooled", "pooled"],
    "encoder": "static",
    "precision": "fp16",
    "strategy": "vote",
    "target": "domain",
    "lam": 1,
    "max_length": 16,
    "feature_dim": 384,
    "fingerprint": "x",
    "package_version": "0",
}
MINILM = {"encoder": "minilm", "precision": "int8", "strategy": "mean"}
SHA = "0" * 64
FILES_V2 = {
    "graph": {"name": "router.onnx", "sha256": SHA},
    "stats": {"name": "s.npz", "sha256": SHA},
}
FILES_V3 = {
    **FILES_V2,
    "data": {"name": "router.onnx.data", "sha256": SHA},
    "tokenizer": {"name": "tokenizer.json", "sha256": SHA},
}
V3 = {"format_version": 3, "files": FILES_V3}
DELETE = object()


def _files(**roles: dict[str, Any]) -> dict[str, Any]:
    return {"format_version": 3, "files": {**FILES_V3, **roles}}


def _text(edits: dict[str, Any]) -> str:
    data = {**BASE, **edits}
    return json.dumps({k: v for k, v in data.items() if v is not DELETE})


# (name, router.json text); the text is Python's json.dumps, so 256.0 stays a float literal
ROUTER_JSON: list[tuple[str, str]] = [
    ("format_version 1, the required fields only", _text({})),
    ("format_version 3 with its files", _text(V3)),
    ("format_version 2 with its two files", _text({"format_version": 2, "files": FILES_V2})),
    (
        "view and policy",
        _text({"view": "strip_options+tail", "policy": {"costs": {"a": 1, "b": 2, "c": 3}}}),
    ),
    ("pooled layers", _text({**MINILM, "layers": [6, 5], "feature_dim": 768})),
    ("not JSON", "{"),
    ("a JSON array", "[1]"),
    ("format_version 4", _text({"format_version": 4})),
    ("format_version missing", _text({"format_version": DELETE})),
    ("format_version true", _text({"format_version": True})),
    ("format_version 2.0", _text({"format_version": 2.0})),
    ("format_version '3'", _text({"format_version": "3"})),
    ("lacks experts and lam", _text({"experts": DELETE, "lam": DELETE})),
    ("experts not a list", _text({"experts": "a,b,c"})),
    ("experts of numbers", _text({"experts": [1, 2, 3]})),
    ("encoder a number", _text({"encoder": 5})),
    ("lam negative", _text({"lam": -1})),
    ("lam a string", _text({"lam": "1"})),
    ("lam true", _text({"lam": True})),
    ("max_length 1", _text({"max_length": 1})),
    ("max_length 10**15", _text({"max_length": 10**15})),
    ("max_length 256.0", _text({"max_length": 256.0})),
    ("max_length '256'", _text({"max_length": "256"})),
    ("feature_dim 0", _text({"feature_dim": 0})),
    ("top_k_tokens 0", _text({"top_k_tokens": 0})),
    ("extra a list", _text({"extra": []})),
    ("policy null", _text({"policy": None})),
    ("selection a number", _text({"selection": 3})),
    ("view a number", _text({"view": 3})),
    ("layers a string", _text({"layers": "6,5"})),
    ("format_version 1 with files", _text({"files": FILES_V2})),
    ("format_version 2 without files", _text({"format_version": 2})),
    ("format_version 3 with the files of 2", _text({"format_version": 3, "files": FILES_V2})),
    ("files.graph a string", _text(_files(graph="router.onnx"))),
    ("files.data under another name", _text(_files(data={"name": "w.data", "sha256": SHA}))),
    ("files.graph out of the folder", _text(_files(graph={"name": "../g.onnx", "sha256": SHA}))),
    ("files.stats a fixed name", _text(_files(stats={"name": "router.json", "sha256": SHA}))),
    ("files.stats sha256 upper case", _text(_files(stats={"name": "s.npz", "sha256": "A" * 64}))),
    ("files.stats without sha256", _text(_files(stats={"name": "s.npz"}))),
    ("unknown encoder", _text({"encoder": "bert"})),
    ("precision of another encoder", _text({"precision": "int8"})),
    ("unknown strategy", _text({"strategy": "max"})),
    ("unknown target", _text({"target": "quality"})),
    ("no experts", _text({"experts": [], "expert_modes": []})),
    ("fewer modes than experts", _text({"expert_modes": ["pooled"]})),
    ("duplicate experts", _text({"experts": ["a", "a", "c"]})),
    ("expert name with a leading space", _text({"experts": ["a", " b", "c"]})),
    ("expert name with a newline", _text({"experts": ["a", "b\nx", "c"]})),
    ("expert name of 201 characters", _text({"experts": ["a", "b" * 201, "c"]})),
    ("unknown expert mode", _text({"expert_modes": ["pooled", "shared", "own"]})),
    ("unknown view", _text({"view": "middle"})),
    ("empty view", _text({"view": ""})),
    ("layers of the static encoder", _text({"layers": [6]})),
    ("layers out of range", _text({**MINILM, "layers": [7, 5], "feature_dim": 768})),
    ("layers repeated", _text({**MINILM, "layers": [6, 6], "feature_dim": 768})),
    ("layers and feature_dim apart", _text({**MINILM, "layers": [6, 5]})),
    ("policy with an unknown field", _text({"policy": {"colour": 1}})),
    ("policy threshold without fallback", _text({"policy": {"min_confidence": 0.5}})),
    ("policy costs of some experts", _text({"policy": {"costs": {"a": 1}}})),
    ("policy fallback not an expert", _text({"policy": {"fallback": "z"}})),
    ("policy calibration of another expert", _text({"policy": {"calibration": {"z": [1, 0]}}})),
    ("policy wtp 0", _text({"policy": {"wtp": 0}})),
    ("policy a list", _text({"policy": [1]})),
]
# Messages of the JS host (js/src/core.js) that differ from Python's, by case name. A case's
# JS message equals Python's unless listed here.
JS_MESSAGES: dict[str, str] = {
    "format_version 2.0": "router.json has format_version 2; this irde-onnx reads versions "
    "1, 2, 3. Upgrade irde-onnx or train the router again.",
    "max_length 256.0": "router.json: field 'max_length' must be an integer in 2..1000000, got 256",
    "format_version 3 with the files of 2": "router.json: format_version 3 needs the field "
    '\'files\' = {"graph": {"name", "sha256"}, "stats": {"name", "sha256"}, '
    '"data": {"name", "sha256"}, "tokenizer": {"name", "sha256"}}; the folder is '
    "incomplete or was edited by hand: copy it again",
    "format_version 2 without files": "router.json: format_version 2 needs the field 'files' = "
    '{"graph": {"name", "sha256"}, "stats": {"name", "sha256"}}; the folder is incomplete or '
    "was edited by hand: copy it again",
    "files.stats sha256 upper case": "router.json: files.stats.sha256 must be the file's sha256 "
    "(64 lower-case hex digits); a format_version 3 router.json records one for each file: "
    "copy the router folder again from a good copy",
    "files.stats without sha256": "router.json: files.stats.sha256 must be the file's sha256 "
    "(64 lower-case hex digits); a format_version 3 router.json records one for each file: "
    "copy the router folder again from a good copy",
    "unknown encoder": 'router.json: unknown encoder "bert"; known: ' + ",".join(ENCODERS),
    "precision of another encoder": 'router.json: unknown precision "int8"',
    "unknown strategy": 'router.json: unknown strategy "max"',
    "unknown target": "router.json: unknown target 'quality'; known: domain,score",
    "unknown expert mode": "router.json: expert_modes must be in pooled,own",
    # JS's pyRepr writes a string's characters as they are (Python escapes \n)
    "expert name with a newline": "router.json: expert name 'b\nx' contains the control "
    "character U+000A",
    "empty view": 'router.json: view must be a non-empty string, got ""; upgrade irde-onnx or '
    "train the router again",
}
# cases whose message ends in the JSON parser's own words (they differ between engines)
PREFIX_ONLY = {"not JSON": "router.json is not valid JSON: "}


def _outcome(run: Any) -> dict[str, Any]:  # noqa: ANN401 - a thunk
    """``{"error": None, "result": ...}`` or ``{"error": type name, "message": str}``."""
    try:
        result = run()
    except (InvalidInputError, RouterFormatError) as exc:
        return {"error": type(exc).__name__, "message": str(exc)}
    return {"error": None, "result": result}


def router_json_cases() -> dict[str, Any]:
    """Every router.json case with Python's outcome (and the JS message where it differs)."""

    def read(text: str) -> dict[str, Any]:
        config = RouterConfig.from_json(text, SOURCE)
        return {"view": config.view, "layers": list(config.layers), "policy": config.policy}

    cases = []
    names = [name for name, _ in ROUTER_JSON]
    if len(set(names)) != len(names):
        raise SystemExit("make_spec.py: two router.json cases share a name")
    for name, text in ROUTER_JSON:
        case: dict[str, Any] = {"name": name, "text": text, **_outcome(lambda t=text: read(t))}
        if name in PREFIX_ONLY:
            if not case["message"].startswith(PREFIX_ONLY[name]):
                raise SystemExit(f"make_spec.py: {name}: {case['message']!r}")
            case["message"] = PREFIX_ONLY[name]
            case["compare"] = "prefix"
        if name in JS_MESSAGES:
            if JS_MESSAGES[name] == case.get("message"):
                raise SystemExit(f"make_spec.py: {name}: the JS message is Python's: drop it")
            case["js"] = {"message": JS_MESSAGES[name]}
        cases.append(case)
    unknown = set(JS_MESSAGES) - set(names)
    if unknown:
        raise SystemExit(f"make_spec.py: JS_MESSAGES names no case: {sorted(unknown)}")
    return {
        "about": "written by conformance/generate.py (make_spec.py): router.json texts and what "
        "RouterConfig.from_json(text, 'router.json') makes of them (error type and message, or "
        "the view, layers and policy read); 'js': the JS host's message where it differs; "
        "compare 'prefix': only the message's start is the same on every JSON parser",
        "source": SOURCE,
        "cases": cases,
    }


# --- policy cases ------------------------------------------------------------------------------
EXPERTS = ["a", "b", "c"]
FULL_POLICY = {
    "costs": {"a": 1, "b": 0, "c": 2},
    "wtp": 0.5,
    "min_confidence": 0.3,
    "fallback": "b",
    "temperature": 2,
    "calibration": {"a": [1.5, -0.1]},
}
# (name, policy object): Policy.from_dict(data, "policy"), then .check(EXPERTS, "policy")
POLICIES: list[tuple[str, Any]] = [
    ("absent", None),
    ("empty", {}),
    ("an empty list", []),
    ("every field", FULL_POLICY),
    ("costs and wtp", {"costs": {"a": 0.5, "b": 0.25, "c": 0.0}, "wtp": 2}),
    ("unknown field", {"colour": 1}),
    ("a list", [1]),
    ("empty costs", {"costs": {}}),
    ("costs a list", {"costs": [1, 2, 3]}),
    ("a negative cost", {"costs": {"a": -1}}),
    ("a cost as text", {"costs": {"a": "1", "b": 1, "c": 1}}),
    ("wtp 0", {"wtp": 0}),
    ("wtp as text", {"wtp": "high"}),
    ("wtp true", {"wtp": True}),
    ("min_confidence 1.5", {"min_confidence": 1.5}),
    ("min_confidence as text", {"min_confidence": "0.5"}),
    ("temperature -1", {"temperature": -1}),
    ("temperature 0", {"temperature": 0}),
    ("fallback a number", {"fallback": 3}),
    ("calibration of one number", {"calibration": {"a": [1]}}),
    ("calibration a list", {"calibration": [[1, 0]]}),
    ("costs of other experts", {"costs": {"a": 1, "b": 1, "d": 1}}),
    ("fallback not an expert", {"fallback": "z"}),
    ("threshold without fallback", {"min_confidence": 0.5}),
    ("threshold with fallback", {"min_confidence": 0.5, "fallback": "c"}),
    ("calibration of another expert", {"calibration": {"z": [1, 0]}}),
]


def policy_cases() -> dict[str, Any]:
    """Every policy case: Python's parse outcome, then (when it parses) its check's."""
    cases = []
    for name, data in POLICIES:
        parsed = _outcome(lambda d=data: dataclasses.asdict(Policy.from_dict(d, "policy")))
        case: dict[str, Any] = {"name": name, "policy": data, "parse": parsed}
        if parsed["error"] is None:
            policy = Policy.from_dict(data, "policy")
            case["check"] = _outcome(lambda p=policy: p.check(EXPERTS, "policy"))
            case["check"].pop("result", None)
        cases.append(case)
    return {
        "about": "written by conformance/generate.py (make_spec.py): policy objects and what "
        "Policy.from_dict(policy, 'policy') makes of them (error type and message, or every "
        "field, with its default when absent), then Policy.check(experts, 'policy')",
        "experts": EXPERTS,
        "cases": cases,
    }


# --- writing and checking ----------------------------------------------------------------------
def _dump(record: dict[str, Any]) -> str:
    return json.dumps(record, indent=1, ensure_ascii=True) + "\n"


def outputs(name: str) -> dict[Path, str]:
    """The files of one output (``spec``, ``router_json`` or ``policy``) and their text."""
    if name == "spec":
        text = _dump(spec())
        return {SPEC_JSON: text, SPEC_JS: spec_js(text)}
    if name == "router_json":
        return {ROUTER_JSON_CASES: _dump(router_json_cases())}
    if name == "policy":
        return {POLICY_CASES: _dump(policy_cases())}
    raise ValueError(name)


def run(name: str, check: bool) -> int:
    """Write one output's files, or with check compare them with what would be written."""
    stale = []
    for path, text in outputs(name).items():
        rel = path.relative_to(ROOT)
        if not check:
            path.write_text(text, encoding="utf-8")
            print(f"wrote {rel}")
        elif not path.is_file() or path.read_text(encoding="utf-8") != text:
            stale.append(str(rel))
    if stale:
        print(
            f"{', '.join(stale)} stale: run conformance/generate.py --only {name}", file=sys.stderr
        )
        return 1
    if check:
        print(f"{name}: up to date")
    return 0


if __name__ == "__main__":
    check = "--check" in sys.argv[1:]
    sys.exit(max(run(name, check) for name in ("spec", "router_json", "policy")))
