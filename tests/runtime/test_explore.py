"""Exploration where feedback is collected (issue 19 point 3): the setting, its choices
against numpy, its seed, and LiveRouter.route (off by default, bit for bit)."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

import irde_onnx.runtime.live as live_module
from irde_onnx.decision.explore import Exploration, Explorer, utility
from irde_onnx.decision.policy import decide, softmax
from irde_onnx.errors import InvalidInputError
from irde_onnx.runtime import LiveRouter, Router, RouterEditor
from irde_onnx.runtime.live import LiveRoute

TEXTS = [
    "solve the equation for x",
    "the judge of the appeal court",
    "fix the bug in my python loop",
    "what is the dose for the patient",
    "a clause of the contract",
    "the sum of a prime number",
]


# -- the setting ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "want"),
    [
        (None, Exploration()),
        ("off", Exploration()),
        (" Greedy ", Exploration()),
        ("eps:0.05", Exploration("epsilon", rate=0.05)),
        ("epsilon:1", Exploration("epsilon", rate=1.0)),
        ("eps:0", Exploration("epsilon", rate=0.0)),
        ("bonus:0.1", Exploration("bonus", alpha=0.1)),
        ("bonus:0", Exploration("bonus", alpha=0.0)),
    ],
)
def test_parse_reads_the_command_line_forms(text, want):
    got = Exploration.parse(text)
    assert got == want
    assert Exploration.parse(str(got)) == got  # str() is the form parse reads
    assert got.enabled == (want.mode != "off")
    assert Exploration.parse(text, seed=7).seed == 7


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("eps", "'eps:RATE'"),
        ("eps:", "not a number"),
        ("eps:x", "not a number"),
        ("eps:1.5", "in [0, 1]"),
        ("eps:-0.1", "in [0, 1]"),
        ("eps:nan", "finite"),
        ("bonus:-1", ">= 0"),
        ("bonus:inf", "finite"),
        ("thompson:0.1", "'bonus:ALPHA'"),
        ("linucb", "'off'"),
    ],
)
def test_parse_errors_name_the_forms(text, words):
    with pytest.raises(InvalidInputError, match="exploration|epsilon|alpha") as info:
        Exploration.parse(text)
    assert words in str(info.value)


def test_setting_checks_its_fields():
    with pytest.raises(InvalidInputError, match="mode"):
        Exploration("ucb")  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="seed"):
        Exploration("epsilon", rate=0.1, seed=-1)
    with pytest.raises(InvalidInputError, match="seed"):
        Exploration("epsilon", rate=0.1, seed=1.5)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="stream"):
        Explorer("eps:0.1", stream=-1)


# -- the choices ------------------------------------------------------------------------------
def _problem(n: int, n_experts: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    u = rng.normal(size=(n, n_experts)).astype(np.float32)
    return u, rng.uniform(0, 1, size=(n, n_experts)).astype(np.float32), np.argmax(u, axis=1)


def test_epsilon_explores_at_its_rate_and_only_to_other_experts():
    n, n_experts, rate = 2000, 4, 0.1
    u, _, greedy = _problem(n, n_experts)
    choice, explored = Explorer(Exploration("epsilon", rate=rate, seed=3)).choose(u, None, greedy)
    assert choice.dtype == np.int64 and explored.dtype == bool
    np.testing.assert_array_equal(explored, choice != greedy)
    # binomial(2000, 0.1): mean 200, sd 13.4; 4 sd either side
    sd = math.sqrt(n * rate * (1 - rate))
    assert abs(int(explored.sum()) - n * rate) < 4 * sd
    # explored prompts go to each of the other 3 experts alike: binomial(k, 1/3) each
    k = int(explored.sum())
    offsets = (choice[explored] - greedy[explored]) % n_experts  # 1, 2 or 3
    counts = np.bincount(offsets, minlength=n_experts)[1:]
    assert counts.sum() == k
    assert np.all(np.abs(counts - k / 3) < 4 * math.sqrt(k * (1 / 3) * (2 / 3)))


def test_epsilon_extremes_and_one_expert():
    u, _, greedy = _problem(500, 3)
    choice, explored = Explorer("eps:0").choose(u, None, greedy)
    assert not explored.any() and np.array_equal(choice, greedy)
    choice, explored = Explorer("eps:1").choose(u, None, greedy)
    assert explored.all() and not np.any(choice == greedy)
    one = np.zeros((50, 1), np.float32)
    choice, explored = Explorer("eps:1").choose(one, None, np.zeros(50, np.int64))
    assert not explored.any() and not choice.any()


def test_same_seed_same_choices_and_call_order_matters():
    u, _, greedy = _problem(300, 5)
    setting = Exploration("epsilon", rate=0.3, seed=42)
    a, b = Explorer(setting), Explorer(setting)
    first = [a.choose(u[i : i + 30], None, greedy[i : i + 30])[0] for i in range(0, 300, 30)]
    second = [b.choose(u[i : i + 30], None, greedy[i : i + 30])[0] for i in range(0, 300, 30)]
    np.testing.assert_array_equal(np.concatenate(first), np.concatenate(second))
    # another seed, or another stream of the same seed, draws otherwise
    other = Explorer(Exploration("epsilon", rate=0.3, seed=43)).choose(u, None, greedy)[0]
    stream = Explorer(setting, stream=1).choose(u, None, greedy)[0]
    assert not np.array_equal(other, np.concatenate(first))
    assert not np.array_equal(stream, np.concatenate(first))
    # stream 0 is numpy's default_rng(seed): the draws are documented, not private
    rng = np.random.default_rng(42)
    flips = rng.random(300)
    others = rng.integers(0, 4, 300)
    want = np.where(flips < 0.3, others + (others >= greedy), greedy)
    np.testing.assert_array_equal(Explorer(setting).choose(u, None, greedy)[0], want)


def test_a_seedless_explorer_draws_and_keeps_its_seed():
    explorer = Explorer("eps:0.5")
    assert isinstance(explorer.seed, int) and explorer.seed >= 0
    u, _, greedy = _problem(200, 3)
    replay = Explorer(Exploration("epsilon", rate=0.5, seed=explorer.seed))
    np.testing.assert_array_equal(
        explorer.choose(u, None, greedy)[0], replay.choose(u, None, greedy)[0]
    )


@pytest.mark.parametrize("alpha", [0.0, 0.1, 0.7, 5.0])
def test_bonus_is_the_argmax_of_utility_plus_alpha_uncertainty(alpha):
    u, unc, greedy = _problem(1000, 6, seed=int(alpha * 10))
    choice, explored = Explorer(Exploration("bonus", alpha=alpha)).choose(u, unc, greedy)
    want = np.argmax(u.astype(np.float64) + alpha * unc.astype(np.float64), axis=1)
    np.testing.assert_array_equal(choice, want)
    np.testing.assert_array_equal(explored, want != greedy)
    if alpha == 0:
        assert not explored.any()
    else:
        assert explored.any()


def test_bonus_keeps_the_greedy_pick_on_ties_and_checks_its_input():
    u = np.array([[0.5, 0.5, 0.1]], np.float32)
    unc = np.zeros((1, 3), np.float32)
    choice, explored = Explorer("bonus:1").choose(u, unc, np.array([1]))
    assert choice.tolist() == [1] and not explored.any()  # argmax alone would say 0
    explorer = Explorer("bonus:1")
    with pytest.raises(InvalidInputError, match="uncertainty output"):
        explorer.choose(u, None, np.array([0]))
    with pytest.raises(InvalidInputError, match="shape"):
        explorer.choose(u, np.zeros((1, 2)), np.array([0]))
    with pytest.raises(InvalidInputError, match="not finite"):
        explorer.choose(u, np.full((1, 3), np.nan), np.array([0]))
    with pytest.raises(InvalidInputError, match="column indices"):
        explorer.choose(u, unc, np.array([3]))
    with pytest.raises(InvalidInputError, match="abstained"):
        explorer.choose(u, unc, np.array([0]), np.zeros(2, bool))


def test_a_prompt_sent_to_the_fallback_is_never_explored():
    u, unc, greedy = _problem(400, 4)
    abstained = np.arange(400) % 2 == 0
    for setting in ("eps:1", "bonus:100"):
        choice, explored = Explorer(setting).choose(u, unc, greedy, abstained)
        assert not explored[abstained].any()
        np.testing.assert_array_equal(choice[abstained], greedy[abstained])
        assert explored[~abstained].mean() > 0.5


@pytest.mark.parametrize("target", ["domain", "scores"])
def test_utility_is_what_the_policy_maximises(target, rng):
    scores = rng.normal(size=(500, 5)).astype(np.float32)
    costs = rng.uniform(0, 0.01, 5)
    for wtp in (None, 0.01, 0.1):
        u = utility(scores, target, costs=costs, wtp=wtp, temperature=0.7)
        pick, _ = decide(scores, target, costs=costs, wtp=wtp, temperature=0.7)
        np.testing.assert_array_equal(np.argmax(u, axis=1), pick)
    q = softmax(scores / 0.7) if target == "domain" else scores
    u = utility(scores, target, costs=costs, wtp=0.1, temperature=0.7)
    np.testing.assert_allclose(u, q - costs / 0.1, rtol=1e-5, atol=1e-6)


# -- LiveRouter.route -------------------------------------------------------------------------
def test_live_routes_are_greedy_by_default_bit_for_bit(toy_router):
    live = LiveRouter(toy_router)
    assert live.exploration == Exploration() and not live.exploration.enabled
    got = live.route(TEXTS, top_k=2)
    want = Router.load(toy_router).route(TEXTS, top_k=2)
    assert all(isinstance(r, LiveRoute) for r in got)
    for g, w in zip(got, want, strict=True):
        assert (g.expert, g.top, g.confidence) == (w.expert, w.top, w.confidence)
        assert g.scores == w.scores
        assert g.greedy == w.expert and g.explored is False
        assert g.to_dict() == {**w.to_dict(), "explored": False, "greedy": w.expert}
    assert live.route([]) == []


def test_live_epsilon_is_seeded_and_serves_another_expert(toy_router):
    texts = TEXTS * 50
    a = LiveRouter(toy_router, exploration=Exploration.parse("eps:0.2", seed=5))
    b = LiveRouter(toy_router, exploration=Exploration.parse("eps:0.2", seed=5))
    first, second = a.route(texts), b.route(texts)
    assert [r.expert for r in first] == [r.expert for r in second]
    greedy = [r.expert for r in Router.load(toy_router).route(texts)]
    assert [r.greedy for r in first] == greedy
    explored = [r.explored for r in first]
    assert explored == [r.expert != r.greedy for r in first]
    assert abs(sum(explored) - 60) < 4 * math.sqrt(300 * 0.2 * 0.8)
    always = LiveRouter(toy_router, exploration="eps:1").route(TEXTS)
    assert all(r.explored and r.expert != r.greedy for r in always)


def test_live_exploration_respects_the_fallback(toy_router):
    editor = RouterEditor.open(toy_router)
    editor.set_policy(min_confidence=0.99, fallback="law")  # every prompt is unsure
    editor.save()
    routes = LiveRouter(toy_router, exploration="eps:1").route(TEXTS)
    assert all(r.expert == r.greedy == "law" and not r.explored for r in routes)


class _Uncertain(Router):
    """A router with a made-up uncertainty output (the graph's own is another helper's)."""

    has_uncertainty = True
    calls: list[int] = []

    def uncertainty(self, texts, batch_size=None):  # noqa: ANN001, ANN201
        type(self).calls.append(len(texts))
        rng = np.random.default_rng([len(t) for t in texts])
        return rng.uniform(0, 1, size=(len(texts), len(self.experts))).astype(np.float32)

    def route(self, texts, top_k=1, batch_size=None, *, with_uncertainty=False, **kw):  # noqa: ANN001, ANN201
        routes = super().route(texts, top_k, batch_size, **kw)
        if not with_uncertainty:
            return routes
        widths = self.uncertainty(texts, batch_size)
        return [
            replace(r, uncertainty=dict(zip(self.experts, map(float, u), strict=True)))
            for r, u in zip(routes, widths, strict=True)
        ]


@pytest.mark.parametrize("costs", [False, True])
def test_live_bonus_matches_numpy(toy_router, monkeypatch, costs):
    if costs:
        editor = RouterEditor.open(toy_router)
        editor.set_policy(costs={"code": 0.002, "law": 0.001, "math": 0.004}, wtp=0.05)
        editor.save()
    monkeypatch.setattr(live_module, "Router", _Uncertain)
    alpha = 0.3
    live = LiveRouter(toy_router, exploration=f"bonus:{alpha}")
    router = live.router
    assert isinstance(router, _Uncertain)
    for wtp in ([], [0.01]) if costs else ([],):
        kw = {"wtp": wtp[0]} if wtp else {}
        got = live.route(TEXTS, **kw)
        policy = router.policy
        scores = router.scores(TEXTS).astype(np.float64)
        q = softmax(scores)
        if costs:
            q = q - policy.cost_vector(router.experts) / (wtp[0] if wtp else policy.wtp)
        unc = router.uncertainty(TEXTS).astype(np.float64)
        want = np.argmax(q + alpha * unc, axis=1)
        assert [r.expert for r in got] == [router.experts[i] for i in want]
        assert [r.greedy for r in got] == [r.expert for r in router.route(TEXTS, **kw)]
        assert any(r.explored for r in got)
    # alpha 0: the bonus is the policy's own choice (costs and wtp included)
    zero = LiveRouter(toy_router, exploration="bonus:0").route(TEXTS)
    assert not any(r.explored for r in zero)


def test_live_bonus_needs_the_uncertainty_output_at_start(toy_router, monkeypatch):
    monkeypatch.setattr(Router, "has_uncertainty", False, raising=False)
    with pytest.raises(InvalidInputError, match="no uncertainty output") as info:
        LiveRouter(toy_router, exploration="bonus:0.1")
    assert "eps:RATE" in str(info.value) and str(toy_router) in str(info.value)
    LiveRouter(toy_router, exploration="eps:0.1")  # epsilon needs nothing more


def test_a_generation_without_uncertainty_is_served_greedy(toy_router, monkeypatch, caplog):
    monkeypatch.setattr(live_module, "Router", _Uncertain)
    live = LiveRouter(toy_router, exploration="bonus:100")
    plain = Router.load(toy_router)
    monkeypatch.setattr(Router, "has_uncertainty", False, raising=False)
    with caplog.at_level("WARNING", logger="irde.serve"):
        got = live.route(TEXTS, router=plain)
        live.route(TEXTS, router=plain)
    assert not any(r.explored for r in got)
    assert sum("no uncertainty output" in m for m in caplog.messages) == 1  # once per generation


def test_the_seed_is_logged_at_start(toy_router, caplog):
    with caplog.at_level("INFO", logger="irde.serve"):
        live = LiveRouter(toy_router, exploration="eps:0.1")
    assert f"exploring with eps:0.1, seed {live.explorer.seed} (stream 0)" in caplog.text
