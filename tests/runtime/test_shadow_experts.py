"""Shadow experts (issue 19 point 4): a scored expert with few rows routes once its gate passes.

On a pooled toy router (tests/runtime/pooled_toy.py): the shadow's round trips through
save/load, promotion (by its gate at a save, or forced) equal to adding it with
``gate=False``, feedback naming it, removal, old statistics files, and ``irde experts``.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from irde_onnx.cli import main
from irde_onnx.errors import InvalidInputError, RouterFormatError
from irde_onnx.learning.statistics import RouterStats
from irde_onnx.runtime import Router, RouterEditor
from tests.runtime.pooled_toy import build_pooled_router, math_share, prompts, split_prompts

FEW = prompts(20, 5)  # too few rows for the gate: a shadow
FEW_Y = (math_share(FEW) > 0.3) * 1.0
MORE = split_prompts(80, 6)  # feedback rows that make the gate pass
MORE_Y = (math_share(MORE) > 0.3) * 1.0


@pytest.fixture(scope="module")
def pooled_dir(tmp_path_factory):
    return build_pooled_router(tmp_path_factory.mktemp("pooled") / "router")


@pytest.fixture
def pooled(pooled_dir, tmp_path):
    return shutil.copytree(pooled_dir, tmp_path / "router")


def _stats_arrays(root):
    cfg = json.loads((root / "router.json").read_text())
    with np.load(root / cfg["files"]["stats"]["name"]) as z:
        return set(z.files)


def test_a_failing_gate_adds_a_shadow_that_round_trips(pooled):
    editor = RouterEditor.open(pooled)
    before = editor.scores(FEW)
    result = editor.add_expert("new", FEW, FEW_Y)
    assert result is not None and not result.passed and result.n == 20
    assert editor.experts == ["a", "b"] and editor.shadow_experts == ["new"]
    np.testing.assert_array_equal(editor.scores(FEW), before)  # routing unchanged
    editor.save()
    assert json.loads((pooled / "router.json").read_text())["experts"] == ["a", "b"]
    assert "shadow" in _stats_arrays(pooled)
    loaded = Router.load(pooled)
    assert loaded.experts == ["a", "b"] and loaded.scores(FEW).shape == (20, 2)
    rows = loaded.stats.shadows["new"]
    np.testing.assert_array_equal(rows.features, editor.features(FEW))
    np.testing.assert_array_equal(rows.scores, FEW_Y)
    assert loaded.stats.experts == ["a", "b", "new"] and loaded.stats.modes[-1] == "own"
    again = RouterEditor.open(pooled).shadow_gates()["new"]
    assert again.to_dict() == pytest.approx(result.to_dict())


def test_promotion_equals_adding_directly(pooled):
    direct = RouterEditor.open(pooled)
    assert direct.add_expert("new", FEW, FEW_Y, gate=False) is None
    shadow = RouterEditor.open(pooled)
    shadow.add_expert("new", FEW, FEW_Y)
    shadow.save()
    shadow = RouterEditor.open(pooled)
    shadow.promote_expert("new")
    assert shadow.experts == direct.experts == ["a", "b", "new"] and not shadow.shadow_experts
    for got, want in zip(shadow.head, direct.head, strict=True):
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)
    shadow.save()
    assert "shadow" not in _stats_arrays(pooled)
    np.testing.assert_allclose(Router.load(pooled).scores(MORE), direct.scores(MORE), atol=1e-6)


def test_feedback_folds_into_the_shadow_and_its_gate_promotes_it_at_save(pooled):
    rows = [{"text": t, "scores": {"new": float(y)}} for t, y in zip(MORE, MORE_Y, strict=True)]
    rows.append({"text": MORE[0], "expert": "new", "outcome": 1.0})  # bandit row, same column
    editor = RouterEditor.open(pooled)
    editor.add_expert("new", FEW, FEW_Y)
    editor.add_feedback(rows)
    shadow = editor.stats.shadows["new"]
    assert len(shadow) == 20 + len(rows)
    np.testing.assert_array_equal(shadow.weights, [1.0] * 20 + [10.0] * len(rows))
    assert editor.shadow_experts == ["new"]  # re-gated at the save, not before
    editor.save()
    assert editor.experts == ["a", "b", "new"] and not editor.shadow_experts
    direct = RouterEditor.open(shutil.copytree(pooled, pooled.parent / "direct"))
    direct.remove_expert("new")
    direct.add_expert("new", FEW, FEW_Y, gate=False)
    direct.add_feedback(rows)
    loaded = Router.load(pooled)
    assert loaded.experts == ["a", "b", "new"]
    np.testing.assert_allclose(loaded.scores(MORE), direct.scores(MORE), atol=1e-6)
    for got, want in zip(editor.head, direct.head, strict=True):
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-9)


def test_removing_a_shadow_and_name_clashes(pooled):
    editor = RouterEditor.open(pooled)
    editor.add_expert("new", FEW, FEW_Y)
    with pytest.raises(InvalidInputError, match="already exists as a shadow"):
        editor.add_expert("new", FEW, FEW_Y)
    with pytest.raises(InvalidInputError, match="shadow experts: \\['new'\\]"):
        editor.remove_expert("nobody")
    with pytest.raises(InvalidInputError, match="not a shadow expert"):
        editor.promote_expert("a")
    with pytest.raises(InvalidInputError, match="cannot be merged"):
        editor.merge_stats(editor.stats.copy())
    editor.remove_expert("new")
    editor.save()
    loaded = Router.load(pooled)
    assert loaded.stats.experts == ["a", "b"] and not loaded.stats.shadows
    assert "shadow" not in _stats_arrays(pooled)


def test_which_adds_are_gated(pooled, toy_router):
    editor = RouterEditor.open(pooled)  # 200 training rows
    assert editor.gated(None, True, 199) and not editor.gated(None, True, 200)
    assert not editor.gated(None, False, 10) and not editor.gated(False, True, 10)
    assert editor.gated(True, True, 5000)
    with pytest.raises(InvalidInputError, match="domain texts"):
        editor.gated(True, False, 10)
    static = RouterEditor.open(toy_router)
    assert not static.gated(None, True, 5)
    with pytest.raises(InvalidInputError, match="static router"):
        static.add_expert("llm", ["solve x"], [1.0], gate=True)
    assert static.experts == ["code", "law", "math"]


def test_a_shadow_keeps_its_cost_for_its_promotion(pooled):
    editor = RouterEditor.open(pooled)
    editor.set_costs({"a": 1.0, "b": 2.0})
    editor.add_expert("new", FEW, FEW_Y, cost=0.5)
    assert set(editor.policy.costs) == {"a", "b"}
    editor.save()
    editor = RouterEditor.open(pooled)
    editor.promote_expert("new")
    assert editor.policy.costs == {"a": 1.0, "b": 2.0, "new": 0.5}


def test_old_statistics_load_with_no_shadows_and_damaged_ones_are_refused(pooled, tmp_path):
    stats = Router.load(pooled).stats
    assert not stats.shadows and "shadow" not in _stats_arrays(pooled)
    editor = RouterEditor.open(pooled)
    editor.add_expert("new", FEW, FEW_Y)
    path = tmp_path / "stats.npz"
    editor.stats.save(path)
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    assert RouterStats.load(path).shadows["new"].cost is None
    for key, bad in (("shadow", np.array([True, False])), ("shadow_scores_2", np.zeros(3))):
        broken = dict(arrays, **{key: bad})
        np.savez(tmp_path / "bad.npz", **broken)
        with pytest.raises(RouterFormatError, match="shadow"):
            RouterStats.load(tmp_path / "bad.npz")


def test_experts_command_shows_gates_and_shadows(pooled, tmp_path, capsys):
    data = tmp_path / "new.jsonl"
    data.write_text(
        "".join(json.dumps({"text": t, "score": y}) + "\n" for t, y in zip(FEW, FEW_Y, strict=True))
    )
    assert main(["experts", "add", str(pooled), "new", "--data", str(data), "--quiet"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["experts"] == ["a", "b"] and out["shadow_experts"] == ["new"]
    assert out["gate"]["passed"] is False and out["gate"]["n"] == 20
    assert main(["experts", "list", str(pooled)]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [x["name"] for x in lines] == ["a", "b", "new"]
    assert lines[2]["shadow"] is True and lines[2]["column"] is None and lines[2]["rows"] == 20
    assert lines[2]["gate"] == pytest.approx(out["gate"])
    assert main(["info", str(pooled)]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["experts"] == ["a", "b"] and info["shadow_experts"] == {
        "new": {"rows": 20, "cost": None}
    }
    assert main(["experts", "promote", str(pooled), "new"]) == 0
    assert json.loads(capsys.readouterr().out)["experts"] == ["a", "b", "new"]
    assert main(["experts", "remove", str(pooled), "new"]) == 0
    capsys.readouterr()
    argv = ["experts", "add", str(pooled), "new", "--data", str(data), "--quiet", "--no-gate"]
    assert main(argv) == 0
    out = json.loads(capsys.readouterr().out)
    assert out == {"router": str(pooled), "experts": ["a", "b", "new"]}


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["experts", "add", "{toy}", "x", "--data", "{domain}", "--gate"], "domain texts"),
        (["experts", "add", "{r}", "x", "--data", "{scored}", "--engine", "ray"], "--no-gate"),
        (["experts", "promote", "{r}", "a"], "not a shadow expert"),
    ],
)
def test_experts_command_errors(pooled, toy_router, tmp_path, capsys, argv, message):
    domain = tmp_path / "domain.jsonl"
    domain.write_text('{"text": "solve x"}\n')
    scored = tmp_path / "scored.jsonl"
    scored.write_text('{"text": "solve x", "score": 1}\n')
    names = {"r": str(pooled), "toy": str(toy_router), "domain": str(domain), "scored": str(scored)}
    assert main([a.format(**names) for a in argv]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_journaled_feedback_for_a_shadow_is_replayed_at_load(pooled):
    from irde_onnx.runtime.live import LiveRouter

    editor = RouterEditor.open(pooled)
    editor.add_expert("new", FEW, FEW_Y)
    editor.save()
    LiveRouter(pooled).feedback([{"text": MORE[0], "expert": "new", "outcome": 1.0}])
    loaded = Router.load(pooled)  # replays the journal: the shadow's column and rows grow
    assert loaded.experts == ["a", "b"] and len(loaded.stats.shadows["new"]) == 21
    assert loaded.stats.feedback_rows[loaded.stats.experts.index("new")] == 1
