"""The decision rule: the graph's ``choice``/``confidence`` against a numpy reference, the
threshold edges, confidence ranges, and the settings surviving add/remove/save/load/merge.

Runs on the toy router and on a graph holding the policy nodes alone (no encoder).
"""

import json

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from irde_onnx.decision.nodes import policy_initializers, policy_nodes
from irde_onnx.decision.policy import Policy, decide
from irde_onnx.errors import InvalidInputError, RouterFormatError
from irde_onnx.runtime import Router, RouterEditor
from irde_onnx.store.config import CONFIG_FILE


def reference(scores, target, costs, wtp, temperature, min_confidence, fallback):
    """The rule written out per prompt (float64), independent of policy.decide."""
    choices, confs = [], []
    for s in np.asarray(scores, np.float64):
        if target == "domain":
            e = np.exp((s - s.max()) / temperature)
            q = e / e.sum()
        else:
            q = s
        u = [q[k] - (costs[k] / wtp if wtp else 0.0) for k in range(len(q))]
        pick = max(range(len(u)), key=lambda k: (u[k], -k))  # first of ties
        conf = q[pick] if target == "domain" else min(1.0, max(0.0, q[pick]))
        choices.append(fallback if conf < min_confidence else pick)
        confs.append(conf)
    return np.array(choices), np.array(confs)


def policy_session(target, policy, experts):
    """A graph whose input is ``scores`` followed by the policy nodes."""
    inputs = [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["batch", "n"])]
    outputs = [
        helper.make_tensor_value_info("choice", TensorProto.INT64, ["batch"]),
        helper.make_tensor_value_info("confidence", TensorProto.FLOAT, ["batch"]),
    ]
    graph = helper.make_graph(
        policy_nodes(target),
        "policy",
        inputs,
        outputs,
        policy_initializers(policy, experts, target),
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=9)
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("target", ["domain", "score"])
def test_graph_choice_equals_numpy_reference_on_random_policies(target):
    rng = np.random.default_rng(0)
    for trial in range(40):
        n_exp = int(rng.integers(2, 9))
        experts = [f"e{k}" for k in range(n_exp)]
        scores = rng.normal(0.5, 0.6, size=(64, n_exp)).astype(np.float32)
        costs = rng.uniform(0, 0.01, n_exp)
        wtp = float(10 ** rng.uniform(-4, 0)) if trial % 4 else None
        temperature = float(10 ** rng.uniform(-1, 1))
        fallback = int(rng.integers(n_exp))
        min_conf = float(rng.uniform(0, 0.9)) if trial % 3 else 0.0
        policy = Policy(
            costs=dict(zip(experts, costs.tolist(), strict=True)),
            wtp=wtp,
            min_confidence=min_conf,
            fallback=experts[fallback],
            temperature=temperature,
        )
        sess = policy_session(target, policy, experts)
        choice, conf = sess.run(None, {"scores": scores})
        want_c, want_conf = reference(
            scores, target, policy.cost_vector(experts), wtp, temperature, min_conf, fallback
        )
        np.testing.assert_allclose(conf, want_conf, rtol=1e-5, atol=1e-6)
        assert (choice == want_c).mean() >= 0.99  # float32 vs float64 near-ties only
        np_c, np_conf = decide(
            scores,
            target,
            costs=policy.cost_vector(experts),
            wtp=wtp,
            temperature=temperature,
            min_confidence=min_conf,
            fallback=fallback,
        )
        np.testing.assert_array_equal(choice, np_c)  # same float32 arithmetic: exact
        np.testing.assert_allclose(conf, np_conf, rtol=1e-6, atol=1e-7)


def test_threshold_edges_and_confidence_ranges():
    experts = ["a", "b", "c"]
    scores = np.array(
        [[0.2, 0.5, 0.1], [1.7, -0.3, 0.2], [-0.5, -0.2, -0.9], [0.5, 0.5, 0.5]], np.float32
    )
    for target, conf_expected in (("score", [0.5, 1.0, 0.0, 0.5]), ("domain", None)):
        sess = policy_session(target, Policy(), experts)
        choice, conf = sess.run(None, {"scores": scores})
        assert choice.tolist() == [1, 0, 1, 0]  # no threshold: argmax, ties to the first
        assert ((conf >= 0) & (conf <= 1)).all()
        if conf_expected is not None:
            np.testing.assert_allclose(conf, conf_expected)
        else:
            np.testing.assert_allclose(conf[3], 1 / 3, rtol=1e-6)
        # a threshold equal to a confidence keeps the pick (strictly below abstains)
        at = float(conf[0])
        sess = policy_session(target, Policy(min_confidence=at, fallback="c"), experts)
        choice, _ = sess.run(None, {"scores": scores[:1]})
        assert choice.tolist() == [1]
        above = float(np.nextafter(np.float32(at), np.float32(2)))
        sess = policy_session(target, Policy(min_confidence=above, fallback="c"), experts)
        assert sess.run(None, {"scores": scores[:1]})[0].tolist() == [2]
        # threshold 1: everything below certainty goes to the fallback
        sess = policy_session(target, Policy(min_confidence=1.0, fallback="c"), experts)
        choice, conf = sess.run(None, {"scores": scores})
        assert all(c == 2 or cf >= 1 for c, cf in zip(choice, conf, strict=True))


def test_costs_trade_quality_for_money():
    experts = ["cheap", "dear"]
    scores = np.array([[0.70, 0.90]], np.float32)
    costs = {"cheap": 0.001, "dear": 0.03}
    # dear is worth it when its 0.2 more quality, valued at wtp, exceeds its 0.029 more cost
    for wtp, want in ((None, 1), (1.0, 1), (0.2, 1), (0.1, 0), (0.01, 0)):
        sess = policy_session("score", Policy(costs=costs, wtp=wtp), experts)
        assert sess.run(None, {"scores": scores})[0].tolist() == [want], wtp


def _saved_with_policy(path, **settings):
    router = RouterEditor.open(path)
    router.set_policy(**settings)
    router.save()
    return RouterEditor.open(path)


def test_route_equals_graph_choice_and_wtp_override(toy_router):
    rng = np.random.default_rng(1)
    texts = [
        "solve the integral",
        "a contract clause",
        "python bug in my loop",
        "the patient",
        "what is x",
        "the court of law",
        "write a function",
        "",
    ] * 3
    for trial in range(6):
        costs = {
            e: float(c) for e, c in zip(["code", "law", "math"], rng.uniform(0, 1, 3), strict=True)
        }
        wtp = float(10 ** rng.uniform(-1, 1))
        router = _saved_with_policy(
            toy_router,
            costs=costs,
            wtp=wtp,
            temperature=float(10 ** rng.uniform(-1, 0.5)),
            min_confidence=float(rng.uniform(0, 0.6)),
            fallback=["code", "law", "math"][trial % 3],
        )
        assert router.graph_path.is_file()
        routes = router.route(texts)  # the graph's choice
        scores = router.scores(texts)
        choice, conf = router.decide(scores)
        assert [r.expert for r in routes] == [router.experts[c] for c in choice]
        np.testing.assert_allclose([r.confidence for r in routes], conf, rtol=1e-6)
        # an override computed in Python from scores + router.json equals the graph's choice
        # for the same wtp
        assert [r.expert for r in router.route(texts, wtp=wtp)] == [r.expert for r in routes]
        cheap = router.route(texts, wtp=1e-6)
        cheapest = min(costs, key=costs.get)
        assert {r.expert for r in cheap} <= {cheapest, router.policy.fallback}


def test_settings_swap_in_without_save(toy_router):
    """Policy initializers are swapped into a live session (no constant folding of them)."""
    router = _saved_with_policy(toy_router, costs={"code": 0, "law": 0, "math": 0})
    texts = ["solve the integral", "a contract clause", "python bug in my loop"]
    assert [r.expert for r in router.route(texts)] == ["math", "law", "code"]
    router.set_policy(min_confidence=1.0, fallback="law")
    assert [r.expert for r in router.route(texts)] == ["law"] * 3
    router.set_policy(min_confidence=0.0, costs={"code": 0, "law": 0, "math": 100.0}, wtp=1.0)
    assert router.route(texts)[0].expert != "math"
    router.set_policy(wtp=None)
    assert [r.expert for r in router.route(texts)] == ["math", "law", "code"]


def test_settings_survive_add_remove_save_load_and_merge(toy_router, tmp_path):
    costs = {"code": 0.002, "law": 0.01, "math": 0.003}
    router = _saved_with_policy(
        toy_router, costs=costs, wtp=0.05, min_confidence=0.4, fallback="law"
    )
    with pytest.raises(InvalidInputError, match="cost"):
        router.add_expert("medicine", ["the patient heart"])
    assert router.experts == ["code", "law", "math"]
    router.add_expert("medicine", ["the patient heart", "a dose"], cost=0.004)
    assert router.policy.costs == {**costs, "medicine": 0.004}
    with pytest.raises(InvalidInputError, match="fallback"):
        router.remove_expert("law")
    router.remove_expert("law", fallback="math")
    assert router.policy.fallback == "math" and "law" not in router.policy.costs
    router.save()
    again = RouterEditor.open(toy_router)
    assert again.policy == router.policy
    assert again.policy.to_dict() == {
        "costs": {"code": 0.002, "math": 0.003, "medicine": 0.004},
        "wtp": 0.05,
        "min_confidence": 0.4,
        "fallback": "math",
    }
    texts = ["the patient dose", "solve x"]
    assert [r.expert for r in again.route(texts)] == [r.expert for r in router.route(texts)]
    # merging statistics of the same experts keeps the settings
    again.merge_stats(again.stats)
    assert again.policy == router.policy
    # a copy saved elsewhere carries them
    copy = Router.load(again.save(tmp_path / "copy"))
    assert copy.policy == router.policy


def test_bad_settings_are_refused_and_leave_the_router_unchanged(toy_router):
    router = RouterEditor.open(toy_router)
    before = router.config
    for kwargs, match in [
        ({"costs": {"code": 1.0}}, "missing"),
        ({"costs": {"code": -1, "law": 0, "math": 0}}, ">= 0"),
        ({"wtp": 0}, "> 0"),
        ({"min_confidence": 1.5}, r"\[0, 1\]"),
        ({"min_confidence": 0.5}, "fallback"),
        ({"fallback": "chemistry"}, "not an expert"),
        ({"temperature": float("nan")}, "> 0"),
    ]:
        with pytest.raises(InvalidInputError, match=match):
            router.set_policy(**kwargs)
        assert router.config == before
    with pytest.raises(InvalidInputError, match="costs"):
        router.route(["x"], wtp=1.0)


def test_router_json_policy_is_checked_on_load(toy_router):
    path = toy_router / CONFIG_FILE
    data = json.loads(path.read_text())
    data["policy"] = {"fallback": "nobody"}
    path.write_text(json.dumps(data))
    with pytest.raises(RouterFormatError, match="fallback"):
        Router.load(toy_router)
    data["policy"] = {"costs": {"code": 1}}
    path.write_text(json.dumps(data))
    with pytest.raises(RouterFormatError, match="costs"):
        Router.load(toy_router)


def test_router_without_policy_routes_by_argmax(toy_router):
    router = Router.load(toy_router)  # written before the policy existed: no choice output
    assert "choice" not in {o.name for o in router._session.get_outputs()}
    texts = ["solve the integral", "a contract clause", "python bug"]
    scores = router.scores(texts)
    routes = router.route(texts)
    assert [r.expert for r in routes] == [router.experts[k] for k in scores.argmax(1)]
    assert router.policy == Policy() and "policy" not in json.loads(
        (toy_router / CONFIG_FILE).read_text()
    )


def test_affine_calibration_folds_into_the_head(toy_router):
    path = toy_router / CONFIG_FILE
    data = json.loads(path.read_text())
    data["target"] = "score"
    path.write_text(json.dumps(data))
    router = RouterEditor.open(toy_router)
    texts = ["solve the integral", "a contract clause"]
    raw = router.scores(texts)
    router.set_policy(calibration={"code": [2.0, 0.1], "law": [0.5, -0.2]})
    np.testing.assert_allclose(
        router.scores(texts), raw * [2.0, 0.5, 1.0] + [0.1, -0.2, 0.0], atol=1e-5
    )
    router.remove_expert("code")  # its calibration goes with it; the others stay
    assert router.policy.calibration == {"law": [0.5, -0.2]}
