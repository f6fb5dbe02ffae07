"""``irde policy``, ``irde experts add --cost`` / ``remove --fallback`` and ``irde eval``'s
decision metrics (ECE, coverage, the quality-cost curve and AIQ) on the toy router."""

import json

import numpy as np
import pytest

from irde_onnx.cli import main
from irde_onnx.evaluation.decisions import accuracy_at_coverage, aiq, expected_calibration_error
from irde_onnx.runtime import Router, RouterEditor

COSTS = {"code": 0.002, "law": 0.01, "math": 0.001}
TEXTS = [
    "solve the integral of x",
    "a clause of the contract",
    "fix the python bug",
    "the sum of a prime",
    "appeal to the court",
    "write a function for the list",
]


def _run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_policy_command_sets_and_clears(toy_router, tmp_path, capsys):
    costs = tmp_path / "costs.json"
    costs.write_text(json.dumps(COSTS))
    code, out, _ = _run(
        capsys,
        "policy",
        toy_router,
        "--costs",
        costs,
        "--wtp",
        "0.5",
        "--min-confidence",
        "0.5",
        "--fallback",
        "law",
    )
    assert code == 0
    assert json.loads(out)["policy"] == {
        "costs": COSTS,
        "wtp": 0.5,
        "min_confidence": 0.5,
        "fallback": "law",
    }
    assert Router.load(toy_router).policy.fallback == "law"
    code, out, _ = _run(capsys, "info", toy_router)
    assert json.loads(out)["policy"]["wtp"] == 0.5
    # a new expert needs a cost; removing the fallback needs a new one
    data = tmp_path / "med.jsonl"
    data.write_text('{"text": "the patient heart"}\n{"text": "a dose"}\n')
    code, _, err = _run(capsys, "experts", "add", toy_router, "medicine", "--data", data)
    assert code == 2 and "cost" in err and len(err.strip().splitlines()) == 1
    code, out, _ = _run(
        capsys, "experts", "add", toy_router, "medicine", "--data", data, "--cost", "0.003"
    )
    assert code == 0 and Router.load(toy_router).policy.costs["medicine"] == 0.003
    code, _, err = _run(capsys, "experts", "remove", toy_router, "law")
    assert code == 2 and "fallback" in err
    code, _, _ = _run(capsys, "experts", "remove", toy_router, "law", "--fallback", "math")
    assert code == 0 and Router.load(toy_router).policy.fallback == "math"
    code, out, _ = _run(
        capsys,
        "policy",
        toy_router,
        "--costs",
        "none",
        "--wtp",
        "none",
        "--min-confidence",
        "0",
        "--fallback",
        "none",
    )
    assert code == 0 and json.loads(out)["policy"] == {}
    code, _, err = _run(capsys, "policy", toy_router, "--min-confidence", "0.5")
    assert code == 2 and "fallback" in err


def test_eval_json_with_costs_and_labels(toy_router, tmp_path, capsys):
    rng = np.random.default_rng(0)
    rows = []
    for text in TEXTS * 3:
        rows.append(
            {
                "text": text,
                "task": "t",
                "scores": {e: float(rng.integers(0, 2)) for e in COSTS},
                "costs": {e: c * float(rng.uniform(0.5, 1.5)) for e, c in COSTS.items()},
            }
        )
    data = tmp_path / "scored.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    path = tmp_path / "s"
    text = json.loads((toy_router / "router.json").read_text())
    text["target"] = "score"
    (toy_router / "router.json").write_text(json.dumps(text))
    code, out, _ = _run(capsys, "eval", toy_router, "--data", data, "--json")
    assert code == 0 and len(out.strip().splitlines()) == 1
    m = json.loads(out)
    assert {"aiq", "quality", "cost", "ece", "cost_curve"} <= set(m)
    # --plot draws the curve with matplotlib (the bench extra), or names the extra to install
    plot = tmp_path / "curve.png"
    code, _, err = _run(capsys, "eval", toy_router, "--data", data, "--json", "--plot", plot)
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert code == 2 and 'pip install "irde-onnx[bench]"' in err
    else:
        assert code == 0 and plot.stat().st_size > 1000
    # the numbers against the definitions, from the router's own scores
    router = Router.load(toy_router)
    scores = router.scores([r["text"] for r in rows])
    experts = router.experts
    y = np.array([[r["scores"][e] for e in experts] for r in rows])
    c = np.array([[r["costs"][e] for e in experts] for r in rows])
    choice, conf = router.decide(scores)
    n = np.arange(len(rows))
    assert m["quality"] == pytest.approx(y[n, choice].mean())
    assert m["cost"] == pytest.approx(c[n, choice].mean())
    assert m["ece"] == pytest.approx(expected_calibration_error(conf, y[n, choice]))
    pts = m["cost_curve"]["points"]
    assert m["aiq"] == pytest.approx(
        aiq([p["cost"] for p in pts], [p["quality"] for p in pts], c.mean(0).min(), c.mean(0).max())
    )
    labelled = tmp_path / "labels.jsonl"
    labels = ["math", "law", "code", "math", "law", "code"]
    labelled.write_text(
        "".join(
            json.dumps({"text": t, "expert": e}) + "\n" for t, e in zip(TEXTS, labels, strict=True)
        )
    )
    (toy_router / "router.json").write_text(json.dumps({**text, "target": "domain"}))
    code, out, _ = _run(capsys, "eval", toy_router, "--data", labelled, "--json")
    m = json.loads(out)
    assert code == 0
    # the same rows through router.route: its decisions and confidences give every figure
    routes = Router.load(toy_router).route(list(TEXTS))
    correct = np.array([r.expert == e for r, e in zip(routes, labels, strict=True)], float)
    conf = np.array([r.confidence for r in routes])
    assert m["accuracy"] == pytest.approx(correct.mean())
    assert m["ece"] == pytest.approx(expected_calibration_error(conf, correct))
    assert m["at_coverage"] == pytest.approx(
        {f"{c:g}": accuracy_at_coverage(conf, correct, c) for c in (0.5, 0.8, 0.9, 1.0)}
    )
    code, _, err = _run(capsys, "eval", toy_router, "--data", labelled, "--plot", path / "x.png")
    assert code == 2 and "--plot" in err


def test_route_wtp_overrides_the_default_like_the_api(toy_router, tmp_path, capsys):
    code, _, err = _run(capsys, "route", toy_router, TEXTS[0], "--wtp", "1")
    assert code == 2 and "costs" in err and len(err.strip().splitlines()) == 1
    router = RouterEditor.open(toy_router)
    router.set_costs(COSTS)
    router.set_policy(wtp=0.5)
    router.save()
    for arg, wtp in (("0.001", 0.001), ("none", None), (None, None)):
        extra = [] if arg is None else ["--wtp", arg]
        code, out, _ = _run(capsys, "route", toy_router, *TEXTS, *extra)
        assert code == 0
        loaded = Router.load(toy_router)  # no --wtp: the graph's own decision
        want = loaded.route(TEXTS) if arg is None else loaded.route(TEXTS, wtp=wtp)
        assert [json.loads(line) for line in out.splitlines()] == [
            json.loads(json.dumps(r.to_dict())) for r in want
        ]
    with pytest.raises(SystemExit) as exc:  # argparse: exit 2, one line naming --wtp
        main(["route", str(toy_router), TEXTS[0], "--wtp", "cheap"])
    assert exc.value.code == 2 and "--wtp" in capsys.readouterr().err
