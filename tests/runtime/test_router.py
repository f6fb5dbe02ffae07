"""Runtime: loading errors, routing API, thread safety (base install only, toy router)."""

import json
import threading

import numpy as np
import pytest

from irde_onnx.errors import InvalidInputError, RouterFormatError
from irde_onnx.learning.statistics import RouterStats
from irde_onnx.runtime import Router
from irde_onnx.store.config import CONFIG_FILE, REQUIRED_FILES, STATS_FILE


@pytest.fixture
def router_copy(toy_router):
    return toy_router


@pytest.mark.parametrize("name", REQUIRED_FILES)
def test_missing_file_is_named(router_copy, name):
    (router_copy / name).unlink()
    with pytest.raises(FileNotFoundError, match=name.replace(".", r"\.")):
        Router.load(router_copy)


def test_unknown_format_version_is_refused(router_copy):
    cfg = json.loads((router_copy / CONFIG_FILE).read_text())
    cfg["format_version"] = 99
    (router_copy / CONFIG_FILE).write_text(json.dumps(cfg))
    with pytest.raises(RouterFormatError, match="format_version 99"):
        Router.load(router_copy)


def test_corrupt_files(router_copy):
    (router_copy / CONFIG_FILE).write_text("{not json")
    with pytest.raises(RouterFormatError, match="not valid JSON"):
        Router.load(router_copy)


def test_stats_round_trip_without_pickle(toy_router_dir, tmp_path):
    router = Router.load(toy_router_dir)
    stats = router.stats
    with np.load(toy_router_dir / STATS_FILE, allow_pickle=False) as data:
        assert all(
            data[k].dtype == np.float64
            for k in data.files
            if k not in ("experts", "modes", "fingerprint")
        )
        assert list(data["experts"]) == router.experts
    w, b = stats.solve(router.config.lam, router.embedding_table)
    np.testing.assert_allclose(w, router.head[0], atol=1e-6)  # the file holds float32
    np.testing.assert_allclose(b, router.head[1], atol=1e-6)
    stats.save(tmp_path / "s.npz")
    again = RouterStats.load(tmp_path / "s.npz")
    np.testing.assert_array_equal(again.sum_xy, stats.sum_xy)


def test_route_api(toy_router_dir):
    router = Router.load(toy_router_dir, threads=1)
    routes = router.route(["integrate x^2 dx", "", "A" * 5000], top_k=3)
    assert len(routes) == 3
    for r in routes:
        assert set(r.scores) == set(router.experts) and len(r.top) == 3
        assert r.expert == max(r.scores, key=r.scores.get) == r.top[0]
        assert json.loads(json.dumps(r.to_dict()))["expert"] == r.expert
    assert router.route([]) == []
    assert router.scores([]).shape == (0, len(router.experts))


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda r: r.route("one string"), "not one string"),
        (lambda r: r.route([1, 2]), "not a string"),
        (lambda r: r.route(["x"], top_k=0), "top_k"),
        (lambda r: r.route(["x"], top_k=99), "top_k"),
        (lambda r: r.route(["x"], batch_size=0), "batch_size"),
        (lambda r: r.features(["x"]), "no pooled features"),
    ],
)
def test_route_errors(toy_router_dir, call, match):
    with pytest.raises(InvalidInputError, match=match):
        call(Router.load(toy_router_dir))


def test_bad_threads_and_providers(toy_router_dir):
    with pytest.raises(InvalidInputError, match="threads"):
        Router.load(toy_router_dir, threads=0)
    with pytest.raises(InvalidInputError, match="available"):
        Router.load(toy_router_dir, providers=["NoSuchExecutionProvider"])


def test_concurrent_routes_equal_sequential(toy_router_dir, demo_train):
    texts, _ = demo_train
    router = Router.load(toy_router_dir, threads=1)
    expected = router.scores(texts)
    errors, results = [], {}

    def work(i):
        try:
            chunk = texts[i::8]
            for _ in range(5):
                results[i] = router.scores(chunk, batch_size=7)
        except Exception as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    for i in range(8):
        np.testing.assert_allclose(results[i], expected[i::8], atol=1e-6)


def test_prepare_text_reads_utf16_and_cuts_by_code_points():
    from irde_onnx.runtime.tokenize import MAX_CHARS_PER_TOKEN, prepare_text

    assert prepare_text("a\ud800b", 8) == "a\ufffdb"  # lone high surrogate
    assert prepare_text("\udc00\ud800", 8) == "\ufffd\ufffd"  # reversed pair: both lone
    assert prepare_text("\ud83d\ude00", 8) == "\U0001f600"  # a pair is its code point
    assert prepare_text("\U0001f600" * 1000, 4) == "\U0001f600" * (4 * MAX_CHARS_PER_TOKEN)
    assert prepare_text("plain text", 8) == "plain text"
