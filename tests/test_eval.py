"""irde eval: metrics against numpy/scikit-learn references, the CLI end to end, user errors."""

import json

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, recall_score

from irde_onnx import cli
from irde_onnx.errors import IrdeError
from irde_onnx.evaluation.routing import check_experts, label_metrics, score_metrics

from .conftest import DEMO, read_rows, shared_data_or_fail


def _main(argv):
    return cli.main(argv)


def _run(capsys, *argv):
    code = _main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


# -- metrics -----------------------------------------------------------------------------------
def test_score_metrics_match_a_direct_computation(rng):
    n, experts = 60, ["a", "b", "c"]
    y = rng.random((n, 3))
    tasks = np.array(["t1"] * 40 + ["t2"] * 20)
    chosen = rng.integers(0, 3, n)
    got = score_metrics(chosen, y, experts, tasks.tolist())
    picked = y[np.arange(n), chosen]
    for t in ("t1", "t2"):
        rows = tasks == t
        task = got["tasks"][t]
        assert task["n"] == rows.sum()
        assert task["router"] == pytest.approx(picked[rows].mean())
        assert task["oracle"] == pytest.approx(y[rows].max(1).mean())
        assert task["random"] == pytest.approx(y[rows].mean())
        assert task["best_expert"]["name"] == experts[int(np.argmax(y[rows].mean(0)))]
        assert task["fraction_of_oracle"] == pytest.approx(task["router"] / task["oracle"])
        assert sum(task["chosen"].values()) == pytest.approx(1.0)
    # plain mean over tasks: the 20-row task weighs as much as the 40-row one
    mean = got["mean"]
    assert mean["router"] == pytest.approx((picked[:40].mean() + picked[40:].mean()) / 2)
    per_expert = (y[:40].mean(0) + y[40:].mean(0)) / 2
    assert mean["best_single_expert"] == {
        "name": experts[int(np.argmax(per_expert))],
        "score": pytest.approx(per_expert.max()),
    }
    assert mean["best_expert_per_task"] == pytest.approx(
        (y[:40].mean(0).max() + y[40:].mean(0).max()) / 2
    )
    counts = np.bincount(chosen, minlength=3) / n
    assert list(got["chosen"].values()) == pytest.approx(counts.tolist())


def test_score_metrics_oracle_choice_scores_the_oracle(rng):
    y = rng.random((30, 4))
    got = score_metrics(np.argmax(y, 1), y, list("abcd"))
    assert list(got["tasks"]) == ["all"]
    assert got["mean"]["router"] == pytest.approx(got["mean"]["oracle"])
    assert got["mean"]["fraction_of_oracle"] == pytest.approx(1.0)


def test_label_metrics_match_sklearn(rng):
    labels = ["law", "math", "code", "unused"]
    true = [labels[i] for i in rng.integers(0, 3, 80)]
    pred = [labels[i] for i in rng.integers(0, 4, 80)]
    got = label_metrics(true, pred, labels)
    present = ["law", "math", "code"]
    assert got["accuracy"] == pytest.approx(accuracy_score(true, pred))
    assert got["macro_f1"] == pytest.approx(f1_score(true, pred, labels=present, average="macro"))
    recalls = recall_score(true, pred, labels=present, average=None)
    assert [got["per_class"][c]["recall"] for c in present] == pytest.approx(recalls.tolist())
    assert "unused" not in got["per_class"]
    np.testing.assert_array_equal(
        got["confusion"]["matrix"], confusion_matrix(true, pred, labels=labels)
    )
    assert got["confusion"]["labels"] == labels


def test_check_experts_names_both_lists():
    with pytest.raises(IrdeError, match=r"\['m1', 'm2'\].*\['m1', 'm3'\].*not in the router"):
        check_experts(["m1", "m2"], ["m1", "m3"], "scores")
    with pytest.raises(IrdeError, match="missing from the data"):
        check_experts(["m1"], ["m1", "m3"], "scores")
    check_experts(["law"], ["law", "math"], "labels")  # a subset of labels is fine
    with pytest.raises(IrdeError, match=r"\['bio', 'law'\].*\['law', 'math'\]"):
        check_experts(["law", "bio"], ["law", "math"], "labels")


# -- the command ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def routerdc_rows():
    path = shared_data_or_fail("routerdc7", "train.jsonl")
    rows = read_rows(path)
    # a few dozen rows of every task, in file order
    keep, seen = [], {}
    for r in rows:
        if seen.get(r["task"], 0) < 8:
            seen[r["task"]] = seen.get(r["task"], 0) + 1
            keep.append(r)
    return keep


@pytest.fixture(scope="module")
def score_router(routerdc_rows, tmp_path_factory):
    from irde_onnx.export import RouterTrainer

    experts = list(routerdc_rows[0]["scores"])
    trainer = RouterTrainer(encoder="static", strategy="mean", lam=1.0, progress=False)
    trainer.fit(
        [r["text"] for r in routerdc_rows],
        scores=[r["scores"] for r in routerdc_rows],
        experts=experts,
    )
    return trainer.save(tmp_path_factory.mktemp("eval") / "router")


def _write(path, rows):
    path.write_text(
        "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8"
    )
    return str(path)


@pytest.mark.slow
def test_eval_scores_follows_the_routerdc_protocol(score_router, routerdc_rows, tmp_path, capsys):
    from irde_onnx import Router

    # columns in another order than the router's: eval must match them by name
    rows = [{**r, "scores": dict(reversed(list(r["scores"].items())))} for r in routerdc_rows]
    data = _write(tmp_path / "s.jsonl", rows)
    code, out, _ = _run(capsys, "eval", str(score_router), "--data", data)
    assert code == 0
    got = json.loads(out)
    router = Router.load(score_router)
    experts = router.experts
    chosen = np.argmax(router.scores([r["text"] for r in routerdc_rows]), 1)
    y = np.array([[r["scores"][e] for e in experts] for r in routerdc_rows])
    tasks = [r["task"] for r in routerdc_rows]
    want = score_metrics(chosen, y, experts, tasks)
    assert got["kind"] == "score" and got["n"] == len(rows) and got["experts"] == experts
    assert list(got["tasks"]) == list(dict.fromkeys(tasks))
    for key in ("router", "oracle", "random", "best_expert_per_task", "fraction_of_oracle"):
        assert got["mean"][key] == pytest.approx(want["mean"][key])
    assert got["mean"]["best_single_expert"]["name"] == want["mean"]["best_single_expert"]["name"]
    assert got["tasks"]["gsm8k"]["router"] == pytest.approx(want["tasks"]["gsm8k"]["router"])
    assert got["chosen"] == pytest.approx(want["chosen"])


def test_eval_labels(static_router_dir, demo_samples, capsys):
    from irde_onnx import Router

    code, out, _ = _run(
        capsys, "eval", str(static_router_dir), "--data", str(DEMO / "samples.jsonl")
    )
    assert code == 0
    got = json.loads(out)
    texts, labels = demo_samples
    router = Router.load(static_router_dir)
    pred = [r.expert for r in router.route(texts)]
    assert got["kind"] == "label" and got["n"] == len(texts)
    assert got["accuracy"] == pytest.approx(accuracy_score(labels, pred))
    assert got["macro_f1"] == pytest.approx(f1_score(labels, pred, average="macro"))
    assert np.sum(got["confusion"]["matrix"]) == len(texts)


def test_eval_label_field(static_router_dir, tmp_path, capsys):
    rows = [{"text": r["text"], "domain": r["expert"]} for r in read_rows(DEMO / "samples.jsonl")]
    data = _write(tmp_path / "d.jsonl", rows)
    code, out, _ = _run(
        capsys, "eval", str(static_router_dir), "--data", data, "--label-field", "domain"
    )
    assert code == 0 and json.loads(out)["label_field"] == "domain"


@pytest.mark.parametrize(
    ("rows", "extra", "message"),
    [
        ([{"text": "a", "scores": {"m1": 1.0, "zz": 0.0}}], [], "but the router's experts are"),
        ([{"text": "a", "expert": "biology"}], [], "not in the router: ['biology']"),
        ([{"text": "a", "domain": "law"}], [], "--label-field"),
        ([{"text": "a", "expert": "law"}], ["--threads", "0"], None),
    ],
)
def test_eval_user_errors_exit_2_with_one_line(
    static_router_dir, tmp_path, capsys, rows, extra, message
):
    data = _write(tmp_path / "bad.jsonl", rows)
    if message is None:  # a usage error: argparse exits 2
        with pytest.raises(SystemExit) as exc:
            _main(["eval", str(static_router_dir), "--data", data, *extra])
        assert exc.value.code == 2
        return
    code, _, err = _run(capsys, "eval", str(static_router_dir), "--data", data, *extra)
    assert code == 2
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert message in err, err


def test_eval_missing_files_exit_2(static_router_dir, tmp_path, capsys):
    code, _, err = _run(
        capsys, "eval", str(static_router_dir), "--data", str(tmp_path / "nope.jsonl")
    )
    assert code == 2 and "not found" in err
    code, _, err = _run(
        capsys, "eval", str(tmp_path / "norouter"), "--data", str(DEMO / "samples.jsonl")
    )
    assert code == 2 and err.count("\n") == 1


@pytest.mark.slow
def test_eval_partial_task_field_is_an_error(score_router, routerdc_rows, tmp_path, capsys):
    rows = [dict(r) for r in routerdc_rows[:4]]
    del rows[1]["task"]
    code, _, err = _run(
        capsys, "eval", str(score_router), "--data", _write(tmp_path / "t.jsonl", rows)
    )
    assert code == 2 and '1 of 4 rows lack the "task" field' in err


def test_eval_help_has_examples(capsys):
    with pytest.raises(SystemExit) as exc:
        _main(["eval", "--help"])
    assert exc.value.code == 0
    assert "examples:" in capsys.readouterr().out
