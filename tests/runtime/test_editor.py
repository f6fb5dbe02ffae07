"""The read-only Router, the one editor, and the store's in-memory writer."""

import numpy as np
import onnx
import pytest

from irde_onnx.runtime import Router, RouterEditor
from irde_onnx.runtime import router as router_module
from irde_onnx.store.folder import generation_files, generation_from_files

from .. import toy

MEDICINE = ["the patient heart", "a dose"]
TEXTS = ["solve the integral", "a contract clause", "python bug in my loop"]


@pytest.mark.parametrize(
    "name",
    [
        "add_expert",
        "remove_expert",
        "set_statistics",
        "set_policy",
        "set_costs",
        "merge_stats",
        "annotate",
        "set_selection",
        "save",
        "lock",
        "reload",
    ],
)
def test_a_router_has_no_mutating_methods(name):
    assert not hasattr(Router, name)
    assert hasattr(RouterEditor, name) or name == "reload"


@pytest.fixture
def sessions(monkeypatch):
    opened = []
    real = router_module.open_session

    def counting(*args, **kwargs):
        opened.append(args[0])
        return real(*args, **kwargs)

    monkeypatch.setattr(router_module, "open_session", counting)
    return opened


def test_one_session_per_batch_of_changes(toy_router, sessions):
    editor = RouterEditor.open(toy_router)
    assert len(sessions) == 1  # the load
    before = editor.router
    editor.add_expert("medicine", MEDICINE)
    editor.set_costs({"code": 1.0, "law": 1.0, "math": 1.0, "medicine": 1.0})
    editor.set_policy(wtp=0.5, min_confidence=0.2, fallback="law")
    editor.annotate(note="batch")
    assert len(sessions) == 1  # the setters solve in memory: no session yet
    routes = editor.route(TEXTS)
    assert len(sessions) == 2 and editor.router is not before
    assert editor.route(TEXTS) == routes and len(sessions) == 2
    editor.save()
    assert len(sessions) == 2  # the save writes the graph that router runs
    assert editor.router.graph == (toy_router / editor.config.graph_file).read_bytes()
    assert before.experts == ["code", "law", "math"]  # the old Router is unchanged
    assert Router.load(toy_router).route(TEXTS) == routes


def test_the_editor_writes_the_complete_graph(toy_router):
    editor = RouterEditor.open(toy_router)
    editor.set_policy(min_confidence=0.3, fallback="law")
    path = editor.save()
    model = onnx.load(str(path / editor.config.graph_file), load_external_data=False)
    outputs = {o.name for o in model.graph.output}
    assert {"scores", "choice", "confidence"} <= outputs
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["irde.experts"] == '["code", "law", "math"]'


def test_a_generation_shipped_as_bytes_routes_as_the_folder(toy_router):
    files = generation_files(toy_router)
    shipped = Router.open(generation_from_files(files))
    assert shipped.path is None and not shipped.changed_on_disk()
    np.testing.assert_array_equal(shipped.scores(TEXTS), Router.load(toy_router).scores(TEXTS))


def test_the_in_memory_split_is_the_layout_onnx_saves(tmp_path):
    """split_external keeps router.onnx and router.onnx.data (so the fingerprint) as before."""
    from onnx.external_data_helper import convert_model_to_external_data

    from irde_onnx.graph.build import static_router
    from irde_onnx.store.config import DATA_FILE, HEAD_B, HEAD_W
    from irde_onnx.store.graph_file import split_external

    rng = np.random.default_rng(0)
    table = rng.normal(size=(len(toy.VOCAB), 64)).astype(np.float16)
    model = static_router(
        table, np.ones(len(toy.VOCAB)), rng.normal(size=(64, 3)), np.zeros(3), "vote"
    )
    graph, data = split_external(model)
    convert_model_to_external_data(model, location=DATA_FILE, size_threshold=1024)
    for tensor in model.graph.initializer:
        if tensor.name in (HEAD_W, HEAD_B):
            del tensor.external_data[:]
            tensor.data_location = onnx.TensorProto.DEFAULT
    onnx.save_model(model, str(tmp_path / "router.onnx"))
    assert (tmp_path / "router.onnx").read_bytes() == graph
    assert (tmp_path / DATA_FILE).read_bytes() == data
