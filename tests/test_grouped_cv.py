"""Grouped model selection: folds that keep groups together, CV errors equal to a brute-force
refit on each held-out group, and the trainer's choices (lam, static strategy and k)."""

import json

import numpy as np
import pytest
from sklearn.linear_model import Ridge

from irde_onnx.cli import main
from irde_onnx.errors import InvalidInputError
from irde_onnx.export import RouterTrainer
from irde_onnx.learning.moments import (
    MAX_LOGO_GROUPS,
    Moments,
    choose_lam,
    group_fold_ids,
    lam_grid,
)
from irde_onnx.learning.selection import AUTO_STRATEGIES, choose_features, fold_moments


def _data(rng, n=240, d=10, m=3):
    x = rng.normal(size=(n, d)) + 2.0
    y = x @ rng.normal(size=(d, m)) + rng.normal(size=m) + 0.3 * rng.normal(size=(n, m))
    return x, y


def test_few_groups_are_left_out_one_by_one():
    groups = ["b", "a", "c", "a", "b", "c", "c"]
    fold, method = group_fold_ids(groups, k=5)
    assert method == "leave-one-group-out"
    assert fold.tolist() == [1, 0, 2, 0, 1, 2, 2]  # one fold per group, in sorted order


def test_many_groups_are_dealt_into_k_balanced_folds(rng):
    groups = [f"g{int(i)}" for i in rng.integers(0, 40, size=2000)]
    fold, method = group_fold_ids(groups, k=5)
    assert method == "grouped k-fold" and set(fold.tolist()) == set(range(5))
    for g in set(groups):  # a group never spans two folds
        assert len(set(fold[np.array(groups) == g].tolist())) == 1
    sizes = np.bincount(fold)
    assert sizes.max() - sizes.min() <= max(np.unique(groups, return_counts=True)[1])
    again, _ = group_fold_ids(list(reversed(groups)), k=5)
    assert again[::-1].tolist() == fold.tolist()  # independent of row order
    assert MAX_LOGO_GROUPS < 40


def test_one_group_is_refused():
    with pytest.raises(InvalidInputError, match="at least 2 groups"):
        group_fold_ids(["a", "a"])


@pytest.mark.parametrize("n_groups", [4, 30])
def test_grouped_cv_equals_brute_force_refit_per_held_out_group(rng, n_groups):
    x, y = _data(rng)
    groups = rng.integers(0, n_groups, size=len(x))
    fold, _ = group_fold_ids(groups, k=5)
    grid = lam_grid(Moments.from_rows(x, y), num=5)
    _, errors = choose_lam(fold_moments(x, y, fold), grid)
    for lam in grid:
        total = 0.0
        for f in np.unique(fold):
            held = fold == f
            ref = Ridge(alpha=lam).fit(x[~held], y[~held])
            total += float(((y[held] - ref.predict(x[held])) ** 2).sum())
        assert errors[float(lam)] == pytest.approx(total / len(x), rel=1e-6, abs=1e-6)


def test_choose_features_compares_views_and_layer_blocks(rng):
    x, y = _data(rng, d=8)
    noise = rng.normal(size=x.shape)
    fold, _ = group_fold_ids(rng.integers(0, 4, size=len(x)))
    # blocks [layer 6 | layer 5]: the useful features sit in layer 6 of the "good" view
    feats = {"good": np.hstack([x, noise]), "bad": np.hstack([noise, noise[::-1]])}
    best, table = choose_features(feats, (6, 5), [(), (6, 5)], 8, y, fold, 6)
    assert best.setting == {"view": "good", "layers": []}
    assert len(table) == 4
    # each candidate's criterion is choose_lam's on its own columns
    lam, errors = choose_lam(fold_moments(feats["good"], y, fold))
    entry = next(c for c in table if c.setting == {"view": "good", "layers": [6, 5]})
    assert entry.error == pytest.approx(errors[lam]) and entry.lam == lam


def _groups_of(texts):
    return [f"g{sum(map(ord, t)) % 3}" for t in texts]


@pytest.fixture(scope="module")
def grouped_static(demo_train):
    texts, labels = demo_train
    tr = RouterTrainer(encoder="static", strategy="auto", progress=False)
    return tr.fit(texts, labels, groups=_groups_of(texts), group_name="hash")


def test_trainer_lam_cv_equals_brute_force_on_token_rows(grouped_static, demo_train):
    from irde_onnx.export.minilm import minilm_word_embeddings

    texts, labels = demo_train
    tr = grouped_static
    assert tr.selection_["method"] == "leave-one-group-out"
    assert tr.selection_["groups"] == 3 and tr.selection_["group_field"] == "hash"
    table = minilm_word_embeddings().astype(np.float16).astype(np.float64)
    ids = tr.router_.tokenizer.content_ids(texts)
    names = tr.experts_
    groups = np.array(_groups_of(texts))
    rows_x = [table[i] for i in ids]
    rows_y = [
        np.tile(np.eye(len(names))[names.index(lab)], (len(i), 1))
        for i, lab in zip(ids, labels, strict=True)
    ]
    n_tokens = sum(len(i) for i in ids)
    for lam in list(tr.cv_errors_)[::4]:
        total = 0.0
        for g in sorted(set(groups)):
            held = groups == g
            x = np.concatenate([r for r, h in zip(rows_x, held, strict=True) if not h])
            y = np.concatenate([r for r, h in zip(rows_y, held, strict=True) if not h])
            xt = np.concatenate([r for r, h in zip(rows_x, held, strict=True) if h])
            yt = np.concatenate([r for r, h in zip(rows_y, held, strict=True) if h])
            total += float(((yt - Ridge(alpha=lam).fit(x, y).predict(xt)) ** 2).sum())
        assert tr.cv_errors_[lam] == pytest.approx(total / n_tokens, rel=1e-6, abs=1e-6)


def test_trainer_strategy_choice_equals_brute_force_refits(grouped_static, demo_train):
    """Each candidate's held-out accuracy equals training on the other groups and routing."""
    texts, labels = demo_train
    tr = grouped_static
    table = {(c["strategy"], c["top_k_tokens"]): c for c in tr.selection_["strategy"]}
    assert set(table) == set(AUTO_STRATEGIES)
    groups = np.array(_groups_of(texts))
    for strategy, k in [("vote", 10), ("entropy_top_k", 5)]:
        correct = 0
        for g in sorted(set(groups)):
            held = groups == g
            fit = RouterTrainer(
                encoder="static",
                strategy=strategy,
                top_k_tokens=k,
                lam=tr.lam_,
                progress=False,
                validate=False,
            ).fit(
                [t for t, h in zip(texts, held, strict=True) if not h],
                [lab for lab, h in zip(labels, held, strict=True) if not h],
                experts=tr.experts_,
            )
            chosen = fit.router_.scores([t for t, h in zip(texts, held, strict=True) if h])
            truth = [lab for lab, h in zip(labels, held, strict=True) if h]
            correct += sum(
                tr.experts_[j] == lab for j, lab in zip(chosen.argmax(1), truth, strict=True)
            )
        assert table[(strategy, k)]["accuracy"] == pytest.approx(correct / len(texts))
    best = max(tr.selection_["strategy"], key=lambda c: c["accuracy"])
    cfg = tr.router_.config
    assert (cfg.strategy, cfg.top_k_tokens) == (best["strategy"], best["top_k_tokens"])
    assert cfg.selection == tr.selection_


def test_cli_train_group_field_reports_the_method(tmp_path, demo_train):
    texts, labels = demo_train
    data = tmp_path / "rows.jsonl"
    with open(data, "w", encoding="utf-8") as fh:
        for t, lab, g in zip(texts, labels, _groups_of(texts), strict=True):
            fh.write(json.dumps({"text": t, "expert": lab, "source": g}) + "\n")
    out = tmp_path / "router"
    assert (
        main(
            [
                "train",
                "--data",
                str(data),
                "--encoder",
                "static",
                "--group-field",
                "source",
                "--out",
                str(out),
                "--quiet",
            ]
        )
        == 0
    )
    from irde_onnx.cli.info import router_info

    info = router_info(out)
    assert info["selection"]["method"] == "leave-one-group-out"
    assert info["selection"]["group_field"] == "source"
    assert info["view"] == "full" and info["layers"] == []


def test_cli_train_group_field_missing_is_one_line(tmp_path, capsys, demo_train):
    data = tmp_path / "rows.jsonl"
    data.write_text(
        '{"text": "a", "expert": "x"}\n{"text": "b", "expert": "y"}\n', encoding="utf-8"
    )
    code = main(
        [
            "train",
            "--data",
            str(data),
            "--encoder",
            "static",
            "--group-field",
            "source",
            "--out",
            str(tmp_path / "r"),
            "--quiet",
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and 'no "source" field' in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"view": "nope"}, "unknown view"),
        ({"layers": (6, 5)}, "no layers to pool"),
        ({"layers": "6"}, "layer numbers"),
    ],
)
def test_bad_selection_arguments(kwargs, match):
    with pytest.raises(InvalidInputError, match=match):
        RouterTrainer(encoder="static", progress=False, **kwargs).fit(["a", "b"], ["x", "y"])
