"""A cold start (issue 19, point 3): a router of named experts trained on no rows.

Each column predicts its prior until feedback rows arrive; then it is an exact weighted
ridge of its rows with lam by the relative rule (kappa 3.16, floor COLD_LAM), checked against numpy.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from irde_onnx.cli import main
from irde_onnx.errors import InvalidInputError
from irde_onnx.export import RouterTrainer
from irde_onnx.learning.moments import COLD_KAPPA, COLD_LAM
from irde_onnx.runtime import Router, RouterEditor

from .conftest import DEMO

EXPERTS = ["gpt-4o", "llama-3", "mistral"]
PRIOR = {"gpt-4o": 0.5, "llama-3": 0.7, "mistral": 0.6}


@pytest.fixture(scope="module")
def cold_dir(tmp_path_factory):
    tr = RouterTrainer(encoder="static", progress=False).fit_prior(EXPERTS, PRIOR)
    return tr.save(tmp_path_factory.mktemp("cold") / "router")


def rule_ridge(x, y, w, kappa, floor=0.0):
    """Weighted ridge on rows, lam = max(floor, kappa * trace(Sxx)/d) of the same rows."""
    n = w.sum()
    mx, my = w @ x / n, w @ y / n
    xc, yc = x - mx, y - my
    lam = max(floor, kappa * float(np.einsum("i,ij,ij->", w, xc, xc)) / x.shape[1])
    a = (xc * w[:, None]).T @ xc + lam * np.eye(x.shape[1])
    coef = np.linalg.solve(a, (xc * w[:, None]).T @ yc)
    return coef, my - mx @ coef


def test_a_cold_router_predicts_its_prior(cold_dir):
    router = Router.load(cold_dir)
    assert router.experts == EXPERTS and router.config.target == "score"
    texts = ["Solve 3x + 5 = 20", "Draft an NDA", ""]
    np.testing.assert_allclose(router.scores(texts), [[0.5, 0.7, 0.6]] * 3, atol=1e-7)
    assert {r.expert for r in router.route(texts)} == {"llama-3"}
    w, b = router.head
    assert not np.asarray(w).any()
    stats = router.stats
    assert stats.kappa == COLD_KAPPA and router.config.lam == COLD_LAM
    np.testing.assert_array_equal(stats.prior, [0.5, 0.7, 0.6])
    assert stats.shared.n == 0 and all(m.n == 0 for m in stats.owned)
    assert stats.dim == router.tokenizer.vocab_size  # token counts of the static encoder
    assert router.config.selection["method"] == "prior"


def test_costs_decide_while_the_priors_are_equal(tmp_path):
    tr = RouterTrainer(encoder="static", progress=False, validate=False)
    tr.fit_prior(EXPERTS, 0.5, costs={"gpt-4o": 0.01, "llama-3": 0.001, "mistral": 0.002}, wtp=0.1)
    router = Router.load(tr.save(tmp_path / "r"))
    assert router.route(["any prompt"])[0].expert == "llama-3"  # the cheapest
    assert router.route(["any prompt"], wtp=None)[0].expert == "gpt-4o"  # quality ties: first


def test_feedback_moves_the_columns_exactly(cold_dir, tmp_path):
    import shutil

    root = shutil.copytree(cold_dir, tmp_path / "r")
    editor = RouterEditor.open(root)
    rng = np.random.default_rng(4)
    texts = [r["text"] for r in map(json.loads, (DEMO / "train.jsonl").open())][:24]
    served = [EXPERTS[i % 2] for i in range(len(texts))]  # mistral is never served
    rows = [
        {"text": t, "expert": e, "outcome": float(rng.uniform())}
        for t, e in zip(texts, served, strict=True)
    ]
    rows.append({"text": texts[0], "scores": {"gpt-4o": 0.25, "llama-3": 0.75}})
    editor.add_feedback(rows[:10], traffic_weight=1)
    editor.save()
    editor = RouterEditor.open(root)  # across a save
    editor.add_feedback(rows[10:])
    table = np.asarray(editor.embedding_table, np.float64)
    w1, b1 = editor.stats.solve(editor.config.lam, table)
    for k, e in enumerate(EXPERTS[:2]):
        mine = [r for r in rows if r.get("expert") == e or e in r.get("scores", {})]
        ids = editor.tokenizer.content_ids([r["text"] for r in mine])
        ys = [r["outcome"] if "outcome" in r else r["scores"][e] for r in mine]
        x = np.vstack([table[i] for i in ids])
        y = np.concatenate([np.full(len(i), v) for i, v in zip(ids, ys, strict=True)])[:, None]
        w0, b0 = rule_ridge(x, y, np.ones(len(x)), COLD_KAPPA, COLD_LAM)
        assert np.abs(w1[:, k] - w0[:, 0]).max() < 1e-9 and abs(b1[k] - b0[0]) < 1e-9
    assert not w1[:, 2].any() and b1[2] == 0.6  # no rows yet: still its prior
    np.testing.assert_allclose(editor.scores(["x"])[0, 2], 0.6, atol=1e-7)
    assert editor.config.expert_modes == ("own",) * 3


def test_the_tiny_encoder_starts_cold(tmp_path):
    tr = RouterTrainer(encoder="tiny", progress=False).fit_prior(["a", "b"], 0.3)
    router = Router.load(tr.save(tmp_path / "tiny"))
    np.testing.assert_allclose(router.scores(["hello there"]), [[0.3, 0.3]], atol=1e-7)
    editor = RouterEditor(router)
    editor.add_feedback([{"text": "solve the integral", "expert": "a", "outcome": 0.9}])
    assert editor.head[1][0] == pytest.approx(0.9, abs=1e-6)  # one row: its outcome


@pytest.mark.parametrize(
    ("experts", "prior", "message"),
    [
        (["a"], 0.5, "at least 2 experts"),
        (["a", "a", "b"], 0.5, r"duplicate expert names \['a'\]"),
        (["a", ""], 0.5, "the expert name ''"),
        ("a,b", 0.5, "experts must be a list of names"),
        (["a", "b"], float("nan"), "a prior must be finite"),
        (["a", "b"], "high", "a prior must be a number"),
        (["a", "b"], True, "a prior must be a number"),
        (["a", "b"], {"a": 0.5}, r"missing \['b'\]"),
        (["a", "b"], {"a": 0.5, "b": 0.5, "c": 1}, r"unknown \['c'\]"),
    ],
)
def test_bad_experts_or_priors_are_refused(experts, prior, message):
    with pytest.raises(InvalidInputError, match=message):
        RouterTrainer(encoder="static", progress=False).fit_prior(experts, prior)


def test_choices_by_cross_validation_need_rows():
    with pytest.raises(InvalidInputError, match="cannot choose its view"):
        RouterTrainer(encoder="minilm", view="auto", progress=False).fit_prior(["a", "b"])


# -- the command line ------------------------------------------------------------------------
def test_irde_train_experts(tmp_path, capsys):
    costs = tmp_path / "costs.json"
    costs.write_text(json.dumps({"a": 0.02, "b": 0.01}))
    out = tmp_path / "cold"
    argv = ["train", "--experts", "a,b", "--prior", "0.4", "--costs", str(costs)]
    argv += ["--wtp", "1", "--encoder", "static", "--out", str(out), "--quiet"]
    assert main(argv) == 0
    line = json.loads(capsys.readouterr().out)
    assert line["experts"] == ["a", "b"] and line["n_texts"] == 0 and line["target"] == "score"
    router = Router.load(out)
    np.testing.assert_allclose(router.scores(["q"]), [[0.4, 0.4]], atol=1e-7)
    assert router.route(["q"])[0].expert == "b"  # cheaper at equal quality


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--data", str(DEMO / "train.jsonl"), "--prior", "0.5"], "--prior goes with --experts"),
        (["--experts", "a,b", "--group-field", "source"], "a cold start has none"),
        (["--experts", "a,b", "--wtp", "1"], "--wtp needs costs"),
    ],
)
def test_irde_train_cold_start_errors(tmp_path, capsys, extra, message):
    code = main(["train", "--out", str(tmp_path / "r"), "--encoder", "static", *extra])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and message in err, err


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (["--experts", "a,,b"], "empty expert name"),
        (["--experts", "a,b,a"], "twice"),
        (["--experts", "a"], "at least 2 experts"),
        (["--experts", "a,b", "--prior", "nan"], "must be a finite number"),
        (["--experts", "a,b", "--prior", "high"], "is not a number"),
        (["--experts", "a,b", "--data", str(DEMO / "train.jsonl")], "not allowed with"),
        ([], "one of the arguments --data --experts is required"),
    ],
)
def test_irde_train_bad_names_or_prior_exit_2(tmp_path, capsys, value, message):
    with pytest.raises(SystemExit) as exc:
        main(["train", "--out", str(tmp_path / "r"), *value])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and err.count("\n") == 1 and message in err, err


# -- from a few labelled rows ------------------------------------------------------------------
def _demo_rows(n):
    rows = [json.loads(line) for line in (DEMO / "train.jsonl").open()]
    keep = np.random.default_rng(0).permutation(len(rows))[:n]
    return [rows[i] for i in sorted(keep)]


def test_irde_train_from_50_domain_rows(tmp_path, capsys):
    data = tmp_path / "fifty.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in _demo_rows(50)))
    out = tmp_path / "r"
    argv = ["train", "--data", str(data), "--encoder", "static", "--out", str(out), "--quiet"]
    assert main(argv) == 0
    line = json.loads(capsys.readouterr().out)
    router = Router.load(out)
    lam = router.config.selection["lam"]
    assert lam["chosen"] and lam["value"] == line["lam"] > 0
    assert router.stats.kappa == lam["kappa"] > 0
    assert router.config.selection["folds"] == 5


def test_score_rows_from_50_rows_skip_a_calibration_that_flips_columns():
    rows = _demo_rows(50)
    y = np.random.default_rng(1).uniform(size=(50, 3))  # scores with no signal at all
    tr = RouterTrainer(encoder="tiny", progress=False, validate=False)
    tr.fit([r["text"] for r in rows], scores=y, experts=["a", "b", "c"])
    skipped = tr.selection_.get("calibration")
    assert skipped is not None and skipped["fitted"] is False and skipped["experts"]
    assert "calibration" not in tr.router_.policy.to_dict()
    assert tr.stats_.kappa is not None


def test_too_few_rows_are_refused_with_the_fix():
    one = _demo_rows(1)[0]["text"]
    with pytest.raises(InvalidInputError, match="1 training row is too few.*--experts"):
        RouterTrainer(encoder="static", lam=1.0, progress=False).fit(
            [one], scores=[[0.1, 0.2]], experts=["a", "b"]
        )
    rows = _demo_rows(8)
    texts, labels = [r["text"] for r in rows], [r["expert"] for r in rows]
    with pytest.raises(InvalidInputError, match="leave 1 in a cross-validation fold, too few to c"):
        RouterTrainer(encoder="static", progress=False).fit(texts, labels)
