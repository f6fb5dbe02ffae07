"""Adding and removing experts at run time: exact closed-form updates, swaps, saves, merges."""

import hashlib
import json
import os
import shutil
import threading

import numpy as np
import onnxruntime as ort
import pytest
from sklearn.linear_model import Ridge

from irde_onnx.cli import main
from irde_onnx.config import DATA_FILE, GRAPH_FILE, STATS_FILE
from irde_onnx.errors import InvalidInputError
from irde_onnx.export import RouterTrainer
from irde_onnx.runtime import Router

LAM = 1.0


def _hashes(folder):
    """sha256 of every file of a router folder but the (empty) lock file."""
    return {p.name: _sha(p) for p in folder.iterdir() if p.name != ".irde.lock"}


def _sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _by_expert(texts, labels, name):
    return [t for t, lab in zip(texts, labels, strict=True) if lab == name]


def _without(texts, labels, name):
    keep = [i for i, lab in enumerate(labels) if lab != name]
    return [texts[i] for i in keep], [labels[i] for i in keep]


@pytest.fixture(scope="module")
def static_four(demo_train, tmp_path_factory):
    """A static router trained without 'medicine' (the last expert in sorted order)."""
    texts, labels = _without(*demo_train, "medicine")
    tr = RouterTrainer(encoder="static", lam=LAM, progress=False).fit(texts, labels)
    return tr.save(tmp_path_factory.mktemp("four") / "router")


@pytest.fixture(scope="module")
def static_five(demo_train):
    return RouterTrainer(encoder="static", lam=LAM, progress=False).fit(*demo_train)


@pytest.fixture
def four(static_four, tmp_path):
    return shutil.copytree(static_four, tmp_path / "four")


def test_add_equals_training_from_scratch(four, static_five, demo_train):
    router = Router.load(four)
    router.add_expert("medicine", _by_expert(*demo_train, "medicine"))
    assert router.experts == static_five.experts_
    w, b = router.head
    np.testing.assert_allclose(w, static_five.coef_, atol=1e-6)
    np.testing.assert_allclose(b, static_five.intercept_, atol=1e-6)


def test_add_then_remove_gives_back_the_original_head(four):
    router = Router.load(four)
    original = router.head
    start = router.stats.copy()
    router.add_expert("extra", ["a new expert's prompt", "another prompt for it"])
    router.remove_expert("extra")
    w0, b0 = original
    w1, b1 = router.head
    # the file stores float32: compare float64 re-solves, and the stored head to float32
    w_ref, b_ref = start.solve(router.config.lam, router._embedding_table())
    np.testing.assert_allclose(w1, w_ref, atol=1e-9)
    np.testing.assert_allclose(b1, b_ref, atol=1e-9)
    np.testing.assert_allclose(w1, w0, atol=1e-6)
    np.testing.assert_allclose(b1, b0, atol=1e-6)


def test_remove_equals_training_without(static_five, demo_train, tmp_path):
    router = Router.load(static_five.save(tmp_path / "five"))
    router.remove_expert("law")
    texts, labels = _without(*demo_train, "law")
    ref = RouterTrainer(encoder="static", lam=LAM, progress=False).fit(texts, labels)
    assert router.experts == ref.experts_
    np.testing.assert_allclose(router.head[0], ref.coef_, atol=1e-6)
    np.testing.assert_allclose(router.head[1], ref.intercept_, atol=1e-6)


def test_minilm_add_and_remove_are_exact(minilm_trainer, demo_train, tmp_path):
    texts, labels = _without(*demo_train, "medicine")
    four = RouterTrainer(encoder="minilm", lam=minilm_trainer.lam_, progress=False)
    router = Router.load(four.fit(texts, labels).save(tmp_path / "four"))
    router.add_expert("medicine", _by_expert(*demo_train, "medicine"))
    np.testing.assert_allclose(router.head[0], minilm_trainer.coef_, atol=1e-6)
    np.testing.assert_allclose(router.head[1], minilm_trainer.intercept_, atol=1e-6)
    router.remove_expert("medicine")
    np.testing.assert_allclose(router.head[0], four.coef_, atol=1e-9)
    np.testing.assert_allclose(router.head[1], four.intercept_, atol=1e-9)


def test_scored_add_solves_only_the_new_column(minilm_router_dir, demo_train, tmp_path):
    router = Router.load(shutil.copytree(minilm_router_dir, tmp_path / "r"))
    before_w, before_b = router.head
    texts = demo_train[0][::5]
    scores = np.random.default_rng(3).random(len(texts))
    router.add_expert("new-llm", texts, scores)
    w, b = router.head
    np.testing.assert_allclose(w[:, :-1], before_w, atol=1e-6)  # float32 file vs float64
    np.testing.assert_allclose(b[:-1], before_b, atol=1e-6)
    feats = router.features(texts).astype(np.float64)
    ref = Ridge(alpha=router.config.lam).fit(feats, scores)
    np.testing.assert_allclose(w[:, -1], ref.coef_, atol=1e-6)
    assert b[-1] == pytest.approx(ref.intercept_, abs=1e-6)
    assert router.config.expert_modes[-1] == "own"
    scores_now = router.scores(texts)
    np.testing.assert_allclose(scores_now[:, -1], feats @ w[:, -1] + b[-1], atol=1e-4)


def test_routes_during_swaps_all_succeed_and_match_a_head(four, demo_train):
    """Routing threads overlap the swaps, and every answer is the old or the new head's."""
    router = Router.load(four, threads=1)
    texts = demo_train[0][:12]
    extra = _by_expert(*demo_train, "medicine")
    expected = {tuple(router.experts): router.scores(texts)}
    router.add_expert("medicine", extra)
    expected[tuple(router.experts)] = router.scores(texts)
    router.remove_expert("medicine")
    swapping, stop = threading.Event(), threading.Event()
    errors, during, straddling, checked = [], [0], [0], [0]
    swaps = [0]  # changes completed so far

    def reader():
        while not stop.is_set():
            try:
                before, experts_before = swaps[0], router.experts
                in_window = swapping.is_set()
                routes = router.route(texts, batch_size=4)
                after, experts_after = swaps[0], router.experts
                key = tuple(routes[0].scores)
                assert all(tuple(r.scores) == key for r in routes)  # one head per call
                assert all(r.expert == max(r.scores, key=r.scores.get) for r in routes)
                got = np.array([[r.scores[e] for e in key] for r in routes])
                np.testing.assert_allclose(got, expected[key], atol=1e-5)
                checked[0] += 1
                if in_window and swapping.is_set():
                    during[0] += 1
                if before != after or experts_before != experts_after:
                    straddling[0] += 1  # a swap happened while this call ran
            except Exception as exc:  # noqa: BLE001 - collected and asserted below
                errors.append(exc)

    threads = [threading.Thread(target=reader) for _ in range(4)]
    for t in threads:
        t.start()
    swapping.set()
    for _ in range(6):
        router.add_expert("medicine", extra)
        swaps[0] += 1
        router.remove_expert("medicine")
        swaps[0] += 1
    swapping.clear()
    stop.set()
    for t in threads:
        t.join()
    assert errors == []
    assert during[0] >= 50, (during, straddling, checked)  # routes ran while swapping
    assert straddling[0] >= 6, (during, straddling, checked)  # and across swaps


def test_save_in_place_keeps_the_encoder_bytes(four, demo_train, demo_samples):
    data_hash, graph_hash = _sha(four / DATA_FILE), _sha(four / GRAPH_FILE)
    data_inode = (four / DATA_FILE).stat().st_ino
    router = Router.load(four)
    router.add_expert("medicine", _by_expert(*demo_train, "medicine"))
    in_memory = router.scores(demo_samples[0])
    assert router.save() == four
    manifest = json.loads((four / "router.json").read_text())
    assert manifest["format_version"] == 2
    graph = four / manifest["files"]["graph"]["name"]
    assert graph.name != GRAPH_FILE and not (four / GRAPH_FILE).exists()  # a new generation
    assert manifest["files"]["graph"]["sha256"] == _sha(graph) != graph_hash
    assert _sha(four / DATA_FILE) == data_hash
    assert (four / DATA_FILE).stat().st_ino == data_inode  # never rewritten
    assert graph.stat().st_size < 100_000
    assert [p for p in os.listdir(four) if p.startswith(".")] == [".irde.lock"]
    again = Router.load(four)
    assert again.experts == router.experts
    np.testing.assert_allclose(again.scores(demo_samples[0]), in_memory, atol=1e-5)
    # a plain onnxruntime host sees the new expert in the scores and the metadata
    sess = ort.InferenceSession(str(graph))
    ids = np.array([[101, 2054, 2003, 1996, 2540, 102]], np.int64)
    out = sess.run(["scores"], {"input_ids": ids, "attention_mask": np.ones_like(ids)})[0]
    assert out.shape == (1, 5)
    meta = sess.get_modelmeta().custom_metadata_map
    assert json.loads(meta["irde.experts"])[-1] == "medicine"


def test_save_elsewhere_copies_the_encoder(four, tmp_path):
    router = Router.load(four)
    router.remove_expert("law")
    out = router.save(tmp_path / "copy")
    assert _sha(out / DATA_FILE) == _sha(four / DATA_FILE)
    assert Router.load(out).experts == ["chinese", "code", "math"]
    assert Router.load(four).experts == ["chinese", "code", "law", "math"]  # source untouched
    with pytest.raises(InvalidInputError, match="not empty"):
        router.save(tmp_path)


def test_a_failed_save_changes_nothing(four, monkeypatch):
    router = Router.load(four)
    hashes = {p.name: _sha(p) for p in four.iterdir()}
    router.remove_expert("law")
    calls = []

    def failing_replace(src, dst):
        calls.append(dst)
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk full"):
        router.save()
    monkeypatch.undo()
    assert calls
    assert {p.name: _sha(p) for p in four.iterdir()} == hashes  # no temp files left either


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda r: r.add_expert("law", ["x"]), "already exists"),
        (lambda r: r.add_expert("", ["x"]), "non-empty"),
        (lambda r: r.add_expert("new", []), "no texts"),
        (lambda r: r.add_expert("new", "one text"), "not one string"),
        (lambda r: r.add_expert("new", ["a", "b"], [1.0]), "2 texts"),
        (lambda r: r.add_expert("new", ["a", "b"], [1.0, float("nan")]), "finite"),
        (lambda r: r.add_expert("new", ["a", "b"], [1.0, float("inf")]), "finite"),
        (lambda r: r.add_expert("new", ["a", "b"], ["x", "y"]), "numbers"),
        (lambda r: r.remove_expert("nobody"), "unknown expert"),
    ],
)
def test_errors_leave_the_router_unchanged(four, call, match):
    router = Router.load(four)
    experts, scores = router.experts, router.scores(["check"])
    with pytest.raises(InvalidInputError, match=match):
        call(router)
    assert router.experts == experts
    np.testing.assert_array_equal(router.scores(["check"]), scores)


def test_removing_the_last_expert_is_refused(four):
    router = Router.load(four)
    for name in ["chinese", "code", "law"]:
        router.remove_expert(name)
    with pytest.raises(InvalidInputError, match="last expert"):
        router.remove_expert("math")
    assert router.experts == ["math"]


def test_score_routers_need_scores_to_add(tmp_path, demo_train):
    texts = demo_train[0][:30]
    y = np.random.default_rng(0).random((30, 2))
    tr = RouterTrainer(encoder="static", strategy="mean", lam=LAM, progress=False)
    router = Router.load(tr.fit(texts, scores=y, experts=["a", "b"]).save(tmp_path / "s"))
    with pytest.raises(InvalidInputError, match="with scores"):
        router.add_expert("c", texts)
    router.add_expert("c", texts, y[:, 0])
    # c is scored on the very prompts a was trained on: its own column equals a's
    np.testing.assert_allclose(router.head[0][:, 2], router.head[0][:, 0], atol=1e-9)
    before_w, before_b = router.head
    router.remove_expert("a")  # a pooled score column goes; the shared prompts stay
    np.testing.assert_allclose(router.head[0], before_w[:, 1:], atol=1e-9)
    np.testing.assert_allclose(router.head[1], before_b[1:], atol=1e-9)


# -- statistics merged across shards ---------------------------------------------------------
def test_merged_shards_equal_single_pass(demo_train, static_five, tmp_path):
    texts, labels = demo_train
    a = RouterTrainer(encoder="static", lam=LAM, progress=False).fit(texts[0::2], labels[0::2])
    b = RouterTrainer(encoder="static", lam=LAM, progress=False).fit(texts[1::2], labels[1::2])
    router = Router.load(a.save(tmp_path / "a"))
    router.merge_stats(b.save(tmp_path / "b"))
    np.testing.assert_allclose(router.head[0], static_five.coef_, atol=1e-6)
    np.testing.assert_allclose(router.head[1], static_five.intercept_, atol=1e-6)
    merged = Router.load(router.save(tmp_path / "ab")).stats
    single = static_five.stats_
    np.testing.assert_allclose(merged.sum_xy, single.sum_xy, atol=1e-9)
    for m, s in zip(merged.owned, single.owned, strict=True):
        np.testing.assert_allclose(m.gram, s.gram, atol=1e-9)


def test_merge_refuses_other_features(four, demo_train, tmp_path):
    texts, labels = demo_train
    for kwargs in ({"max_length": 64}, {"precision": "fp32"}):
        other = RouterTrainer(encoder="static", lam=LAM, progress=False, **kwargs)
        path = other.fit(texts[::5], labels[::5]).save(tmp_path / next(iter(kwargs)) / "o")
        router = Router.load(four)
        with pytest.raises(InvalidInputError, match="fingerprint"):
            router.merge_stats(path / STATS_FILE)
        assert router.experts == ["chinese", "code", "law", "math"]


def test_merge_score_shards_need_the_same_experts(demo_train, tmp_path):
    texts = demo_train[0][:40]
    y = np.random.default_rng(0).random((40, 3))
    kw = {"encoder": "static", "strategy": "mean", "lam": LAM, "progress": False}
    a = RouterTrainer(**kw).fit(texts[:20], scores=y[:20], experts=["x", "y", "z"])
    b = RouterTrainer(**kw).fit(texts[20:], scores=y[20:, :2], experts=["x", "y"])
    whole = RouterTrainer(**kw).fit(texts, scores=y, experts=["x", "y", "z"])
    c = RouterTrainer(**kw).fit(texts[20:], scores=y[20:], experts=["x", "y", "z"])
    router = Router.load(a.save(tmp_path / "a"))
    with pytest.raises(InvalidInputError, match="no scores"):
        router.merge_stats(b.stats_)
    router.merge_stats(c.stats_)
    np.testing.assert_allclose(router.head[0], whole.coef_, atol=1e-6)


# -- command line ----------------------------------------------------------------------------
def test_cli_experts_and_stats(four, tmp_path, capsys, demo_train):
    rows = tmp_path / "med.jsonl"
    rows.write_text("\n".join(json.dumps({"text": t}) for t in
                              _by_expert(*demo_train, "medicine")), encoding="utf-8")
    assert main(["experts", "add", str(four), "medicine", "--data", str(rows), "--quiet"]) == 0
    assert json.loads(capsys.readouterr().out)["experts"][-1] == "medicine"
    assert main(["experts", "list", str(four)]) == 0
    listed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["name"] for r in listed][-1] == "medicine" and listed[-1]["mode"] == "pooled"
    scored = tmp_path / "scored.jsonl"
    scored.write_text("\n".join(json.dumps({"text": t, "score": i % 2})
                                for i, t in enumerate(demo_train[0][:20])))
    assert main(["experts", "add", str(four), "llm", "--data", str(scored), "--quiet"]) == 0
    capsys.readouterr()
    assert main(["experts", "remove", str(four), "law"]) == 0
    capsys.readouterr()
    assert Router.load(four).experts == ["chinese", "code", "math", "medicine", "llm"]
    assert Router.load(four).config.expert_modes[-1] == "own"
    other = shutil.copytree(four, tmp_path / "other")
    assert main(["stats", "merge", str(four), str(other), "--out", str(tmp_path / "m")]) == 0
    assert json.loads(capsys.readouterr().out)["experts"] == Router.load(four).experts


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["experts", "remove", "{r}", "nobody"], "unknown expert"),
        (["experts", "add", "{r}", "law", "--data", "{rows}"], "already exists"),
        (["experts", "add", "{r}", "x", "--data", "{mixed}"], 'every row has a "score"'),
        (["experts", "add", "{r}", "x", "--data", "{missing}"], "not found"),
        (["experts", "list", "{missing}"], "not found"),
        (["stats", "merge", "{r}", "{missing}"], "not found"),
    ],
)
def test_cli_expert_errors(four, tmp_path, capsys, argv, message):
    rows = tmp_path / "rows.jsonl"
    rows.write_text('{"text": "a"}\n')
    mixed = tmp_path / "mixed.jsonl"
    mixed.write_text('{"text": "a", "score": 1}\n{"text": "b"}\n')
    names = {"r": str(four), "rows": str(rows), "mixed": str(mixed),
             "missing": str(tmp_path / "missing")}
    before = _hashes(four)
    code = main([a.format(**names) for a in argv])
    err = capsys.readouterr().err
    assert code == 2 and message in err and err.count("\n") == 1, err
    assert _hashes(four) == before


def test_minilm_shards_exported_separately_can_be_merged(minilm_trainer, demo_train, tmp_path):
    """Two `irde train` runs export byte-identical encoders, so their statistics merge."""
    texts, labels = demo_train
    lam = minilm_trainer.lam_
    a = RouterTrainer(encoder="minilm", lam=lam, progress=False).fit(texts[0::2], labels[0::2])
    b = RouterTrainer(encoder="minilm", lam=lam, progress=False).fit(texts[1::2], labels[1::2])
    assert a.router_.config.fingerprint == b.router_.config.fingerprint
    router = Router.load(a.save(tmp_path / "a"))
    router.merge_stats(b.stats_)
    np.testing.assert_allclose(router.head[0], minilm_trainer.coef_, atol=1e-6)
