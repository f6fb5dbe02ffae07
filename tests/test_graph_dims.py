"""The ``scores`` output keeps a symbolic ``n_experts`` through changes, so other hosts
(onnxruntime-node, onnxruntime-web) run a saved router whatever its expert count."""

import json
import shutil

import numpy as np
import onnxruntime as ort

from irde_onnx.runtime import Router, RouterEditor
from irde_onnx.store.config import CONFIG_FILE, GRAPH_FILE
from irde_onnx.store.graph_file import load_graph_proto


def _graph_file(folder):
    config = json.loads((folder / CONFIG_FILE).read_text(encoding="utf-8"))
    return folder / config.get("files", {}).get("graph", {}).get("name", GRAPH_FILE)


def _declared(path):
    model = load_graph_proto(path)
    return {
        o.name: [d.dim_param or d.dim_value for d in o.type.tensor_type.shape.dim]
        for o in model.graph.output
    }


def test_scores_dim_stays_symbolic_after_an_added_expert_is_saved(
    static_router_dir, tmp_path, demo_train
):
    assert _declared(_graph_file(static_router_dir))["scores"] == ["batch", "n_experts"]
    work = tmp_path / "router"
    shutil.copytree(static_router_dir, work)
    router = RouterEditor.open(work)
    texts, _ = demo_train
    router.add_expert(
        "physics", ["What is the speed of light in vacuum?", "State Newton's second law of motion."]
    )
    in_memory = router.scores(texts[:5])
    router.save()
    graph = _graph_file(work)
    assert _declared(graph)["scores"] == ["batch", "n_experts"]
    sess = ort.InferenceSession(str(graph))
    ids = np.array([[101, 2054, 2003, 102]], np.int64)
    got = sess.run(["scores"], {"input_ids": ids, "attention_mask": np.ones_like(ids)})[0]
    assert got.shape == (1, 6)
    saved = Router.load(work)
    assert saved.experts[-1] == "physics"
    np.testing.assert_allclose(saved.scores(texts[:5]), in_memory, atol=1e-5)
