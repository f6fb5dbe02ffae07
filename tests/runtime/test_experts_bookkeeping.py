"""Expert changes and saves on the toy router: errors leave it unchanged, saves are atomic.

The exactness of adds, removes and merges against training from scratch is tested with real
routers in tests/test_experts.py.
"""

import hashlib
import json
import os
import threading

import numpy as np
import onnxruntime as ort
import pytest

from irde_onnx.errors import InvalidInputError
from irde_onnx.runtime import Router, RouterEditor
from irde_onnx.store.config import DATA_FILE

MEDICINE = ["the patient heart", "a dose for the patient", "symptom of the heart"]


def _sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _hashes(folder):
    """sha256 of every file of a router folder but the (empty) lock file."""
    return {p.name: _sha(p) for p in folder.iterdir() if p.name != ".irde.lock"}


def test_add_then_remove_gives_back_the_head(toy_router):
    router = RouterEditor.open(toy_router)
    w0, b0 = router.head
    router.add_expert("medicine", MEDICINE)
    assert router.experts[-1] == "medicine" and router.head[0].shape[1] == 4
    router.remove_expert("medicine")
    np.testing.assert_allclose(router.head[0], w0, atol=1e-6)
    np.testing.assert_allclose(router.head[1], b0, atol=1e-6)


def test_routes_during_swaps_all_succeed(toy_router):
    """Routing threads overlap the swaps, and every answer is the old or the new head's."""
    router = RouterEditor.open(toy_router, threads=1)
    texts = ["solve x", "a contract", "python bug", "the patient"] * 3
    expected = {tuple(router.experts): router.scores(texts)}
    router.add_expert("medicine", MEDICINE)
    expected[tuple(router.experts)] = router.scores(texts)
    router.remove_expert("medicine")
    swapping, stop = threading.Event(), threading.Event()
    errors, during, straddling = [], [0], [0]
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
                got = np.array([[r.scores[e] for e in key] for r in routes])
                np.testing.assert_allclose(got, expected[key], atol=1e-5)
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
    for _ in range(20):
        router.add_expert("medicine", MEDICINE)
        swaps[0] += 1
        router.remove_expert("medicine")
        swaps[0] += 1
    swapping.clear()
    stop.set()
    for t in threads:
        t.join()
    assert errors == []
    assert during[0] >= 20 and straddling[0] >= 4, (during, straddling)


def test_save_in_place_commits_a_new_generation(toy_router):
    data_hash, data_inode = _sha(toy_router / DATA_FILE), (toy_router / DATA_FILE).stat().st_ino
    router = RouterEditor.open(toy_router)
    old_graph = router.graph_path
    router.add_expert("medicine", MEDICINE)
    in_memory = router.scores(MEDICINE)
    assert router.save() == toy_router
    manifest = json.loads((toy_router / "router.json").read_text())
    assert manifest["format_version"] == 3
    assert manifest["files"]["data"] == {"name": DATA_FILE, "sha256": data_hash}
    graph = toy_router / manifest["files"]["graph"]["name"]
    assert graph == router.graph_path != old_graph and not old_graph.exists()
    assert manifest["files"]["graph"]["sha256"] == _sha(graph)
    assert _sha(toy_router / DATA_FILE) == data_hash  # the encoder is never rewritten
    assert (toy_router / DATA_FILE).stat().st_ino == data_inode
    assert [p for p in os.listdir(toy_router) if p.startswith(".")] == [".irde.lock"]
    again = Router.load(toy_router)
    assert again.experts == router.experts
    np.testing.assert_allclose(again.scores(MEDICINE), in_memory, atol=1e-5)
    # a plain onnxruntime host sees the new expert in the scores and the metadata
    sess = ort.InferenceSession(str(graph))
    ids = np.array([[2, 28, 30, 3]], np.int64)
    out = sess.run(["scores"], {"input_ids": ids, "attention_mask": np.ones_like(ids)})[0]
    assert out.shape == (1, 4)
    meta = sess.get_modelmeta().custom_metadata_map
    assert json.loads(meta["irde.experts"])[-1] == "medicine"


def test_save_elsewhere_copies_the_encoder(toy_router, tmp_path):
    router = RouterEditor.open(toy_router)
    router.remove_expert("law")
    out = router.save(tmp_path / "copy")
    assert _sha(out / DATA_FILE) == _sha(toy_router / DATA_FILE)
    assert Router.load(out).experts == ["code", "math"]
    assert Router.load(toy_router).experts == ["code", "law", "math"]  # source untouched
    with pytest.raises(InvalidInputError, match="not empty"):
        router.save(tmp_path)


def test_a_failed_save_changes_nothing(toy_router, monkeypatch):
    router = RouterEditor.open(toy_router)
    hashes = _hashes(toy_router)
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
    assert _hashes(toy_router) == hashes  # no temporary files left either


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
def test_errors_leave_the_router_unchanged(toy_router_dir, call, match):
    router = RouterEditor.open(toy_router_dir)
    experts, scores = router.experts, router.scores(["check"])
    with pytest.raises(InvalidInputError, match=match):
        call(router)
    assert router.experts == experts
    np.testing.assert_array_equal(router.scores(["check"]), scores)


def test_removing_the_last_expert_is_refused(toy_router_dir):
    router = RouterEditor.open(toy_router_dir)
    for name in ["code", "law"]:
        router.remove_expert(name)
    with pytest.raises(InvalidInputError, match="last expert"):
        router.remove_expert("math")
    assert router.experts == ["math"]


def test_merge_refuses_statistics_of_other_features(toy_router, tmp_path):
    from ..toy import build_toy_router

    other = build_toy_router(tmp_path / "other", seed=1)  # another table: other features
    router = RouterEditor.open(toy_router)
    with pytest.raises(InvalidInputError, match="fingerprint"):
        router.merge_stats(other)
    assert router.experts == ["code", "law", "math"]


def test_the_fingerprint_changes_with_the_features(toy_router_dir):
    from irde_onnx.store.config import fingerprint

    base = fingerprint(toy_router_dir, "static", "fp32", 16)
    assert base == Router.load(toy_router_dir).config.fingerprint
    assert fingerprint(toy_router_dir, "static", "fp16", 16) != base
    assert fingerprint(toy_router_dir, "static", "fp32", 8) != base


def test_statistics_that_do_not_fit_are_refused_by_one_rule(toy_router, tmp_path):
    """set_statistics and the loader apply stats_mismatch: other features, other encoder."""
    import shutil

    from irde_onnx.errors import RouterFormatError
    from irde_onnx.learning.moments import Moments
    from irde_onnx.learning.statistics import RouterStats
    from irde_onnx.runtime.router import stats_mismatch

    from ..toy import build_toy_router

    router = RouterEditor.open(toy_router)
    vocab = router.tokenizer.vocab_size
    assert stats_mismatch(router.stats, router.config, vocab) is None
    other = Router.load(build_toy_router(tmp_path / "other", seed=1)).stats
    assert stats_mismatch(other, router.config, vocab) == "fingerprint"
    dense = RouterStats.empty(8, diagonal=False, fingerprint=router.config.fingerprint)
    for name in router.experts:
        dense.append(name, "pooled", Moments.zeros(8, 0, diagonal=False), np.zeros(8), 0.0, 0.0)
    assert stats_mismatch(dense, router.config, vocab) == "features"
    with pytest.raises(InvalidInputError, match="fingerprint"):
        router.set_statistics(other)
    with pytest.raises(InvalidInputError, match="token counts of dimension"):
        router.set_statistics(dense)
    assert router.experts == ["code", "law", "math"]
    # the same rule at load: a folder whose stats file came from another encoder
    copy = shutil.copytree(toy_router, tmp_path / "copy")
    cfg = json.loads((copy / "router.json").read_text())
    stats_name = cfg.get("files", {}).get("stats", {}).get("name", "stats.npz")
    shutil.copyfile(tmp_path / "other" / stats_name, copy / stats_name)
    cfg.get("files", {}).get("stats", {})["sha256"] = _sha(copy / stats_name)
    (copy / "router.json").write_text(json.dumps(cfg))
    with pytest.raises(RouterFormatError, match="another encoder"):
        Router.load(copy)
