"""``irde serve --explore`` (issue 19 point 3): off by default and unchanged; when exploring,
the route JSON, the header, the log line, the metrics, the gateway's backend and feedback by
request id all name the expert actually served."""

from __future__ import annotations

import json
import logging

import httpx
import pytest

import irde_onnx.runtime.live as live_module
from irde_onnx.errors import InvalidInputError
from irde_onnx.runtime import Router
from irde_onnx.serve import ServeSettings, create_app

from .runtime.test_explore import TEXTS, _Uncertain
from .runtime.test_feedback import build_score_router
from .serve_helpers import openai_stub, running

TOKEN = "explore-token"
AUTH = {"authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def serve(toy_router, monkeypatch):
    """serve(router=..., **settings) -> (client, server); the toy router by default."""
    monkeypatch.setenv("IRDE_TOKEN", TOKEN)
    stack = []

    def start(router=None, **kw):
        settings = ServeSettings(router=str(router or toy_router), **{"reload_interval": 0, **kw})
        app = create_app(settings)
        ctx = running(app)
        url = ctx.__enter__()
        stack.append(ctx)
        return httpx.Client(base_url=url, timeout=30), app.state.server

    yield start
    for ctx in reversed(stack):
        ctx.__exit__(None, None, None)


def _plain(routes):
    return json.loads(json.dumps([r.to_dict() for r in routes]))


def test_off_by_default_changes_nothing(serve, toy_router):
    client, server = serve()
    assert not server.exploring and str(server.holder.exploration) == "off"
    want = _plain(Router.load(toy_router).route(TEXTS, top_k=2))
    one = client.post("/route", json={"text": TEXTS[0], "top_k": 2})
    many = client.post("/route", json={"texts": TEXTS, "top_k": 2})
    assert one.json() == want[0] and many.json() == want  # no "explored", no "greedy"
    assert "x-irde-explored" not in one.headers and "x-irde-explored" not in many.headers
    assert "irde_explored_total{" not in client.get("/metrics").text


def test_epsilon_explores_says_so_logs_and_counts(serve, toy_router, caplog):
    client, server = serve(explore="eps:1", explore_seed=3)
    assert str(server.holder.exploration) == "eps:1.0" and server.holder.explorer.seed == 3
    greedy = [r.expert for r in Router.load(toy_router).route(TEXTS)]
    served = []
    with caplog.at_level(logging.INFO, logger="irde.explore"):
        for text, own in zip(TEXTS, greedy, strict=True):
            resp = client.post("/route", json={"text": text}, headers={"x-request-id": "r-" + own})
            body = resp.json()
            assert body["explored"] is True and body["greedy"] == own and body["expert"] != own
            assert resp.headers["x-irde-explored"] == "1"
            served.append(body["expert"])
        batch = client.post("/route", json={"texts": TEXTS[:2]})
    assert batch.headers["x-irde-explored"] == "1"
    assert [r["explored"] for r in batch.json()] == [True, True]
    lines = [r.getMessage() for r in caplog.records if r.name == "irde.explore"]
    assert len(lines) == len(TEXTS) + 2  # one per explored decision
    assert lines[0] == (
        f"explored request_id=r-{greedy[0]} index=0 greedy={greedy[0]} chosen={served[0]} "
        "mode=eps:1.0 endpoint=route"
    )
    metrics = client.get("/metrics").text
    chosen = served + [r["expert"] for r in batch.json()]
    for expert in set(chosen):
        n = chosen.count(expert)
        assert f'irde_explored_total{{expert="{expert}"}} {float(n)}' in metrics
        assert f'irde_decisions_total{{expert="{expert}"}} {float(n)}' in metrics


def test_a_zero_rate_reports_no_exploration(serve, toy_router):
    client, _ = serve(explore="eps:0")
    want = _plain(Router.load(toy_router).route(TEXTS))
    resp = client.post("/route", json={"texts": TEXTS})
    assert resp.json() == [{**w, "explored": False, "greedy": w["expert"]} for w in want]
    assert "x-irde-explored" not in resp.headers
    assert "irde_explored_total{" not in client.get("/metrics").text


def test_the_seed_fixes_the_choices(serve):
    texts = TEXTS * 10

    def choices(seed):
        client, _ = serve(explore="eps:0.5", explore_seed=seed)
        return [client.post("/route", json={"text": t}).json()["expert"] for t in texts]

    first = choices(11)
    assert first == choices(11)
    assert first != choices(12)


def test_bonus_needs_the_uncertainty_output_at_start_up(toy_router, monkeypatch):
    monkeypatch.setattr(Router, "has_uncertainty", False, raising=False)
    with pytest.raises(InvalidInputError, match="no uncertainty output"):
        create_app(ServeSettings(router=str(toy_router), explore="bonus:0.1"))
    with pytest.raises(InvalidInputError, match="not a number"):
        create_app(ServeSettings(router=str(toy_router), explore="eps:lots"))


def test_bonus_serves_the_best_utility_plus_uncertainty(serve, toy_router, monkeypatch):
    monkeypatch.setattr(live_module, "Router", _Uncertain)
    client, server = serve(explore="bonus:0.3")
    want = [r.to_dict() for r in server.holder.route(TEXTS)]
    got = client.post("/route", json={"texts": TEXTS}).json()
    assert got == json.loads(json.dumps(want))
    assert any(r["explored"] for r in got)  # the made-up uncertainty moves some prompts


def test_feedback_by_request_id_names_the_expert_served(serve, tmp_path):
    root, _ = build_score_router(tmp_path / "score")
    client, _ = serve(router=root, explore="eps:1", explore_seed=0)
    resp = client.post("/route", json={"text": TEXTS[0]})
    body, rid = resp.json(), resp.headers["x-request-id"]
    assert body["explored"]
    # the outcome goes to the expert served, not the router's own pick
    wrong = client.post(
        "/feedback",
        json={"rows": [{"request_id": rid, "expert": body["greedy"], "outcome": 0.2}]},
        headers=AUTH,
    )
    assert wrong.status_code == 400, wrong.text  # OpenAI's shape, as every /feedback error
    message = wrong.json()["error"]["message"]
    assert "was explored" in message and repr(body["expert"]) in message
    ok = client.post(
        "/feedback", json={"rows": [{"request_id": rid, "outcome": 0.9}]}, headers=AUTH
    )
    assert ok.status_code == 200, ok.text
    rows = Router.load(root).stats.feedback_rows.tolist()
    experts = Router.load(root).experts
    assert rows == [int(e == body["expert"]) for e in experts]


def test_the_gateway_forwards_to_the_explored_expert(serve, toy_router, tmp_path, caplog):
    seen: list[dict] = []
    with running(openai_stub(seen)) as url:
        experts = Router.load(toy_router).experts
        config = {"experts": {e: {"base_url": f"{url}/v1", "model": f"model-{e}"} for e in experts}}
        path = tmp_path / "backends.json"
        path.write_text(json.dumps(config))
        client, _ = serve(explore="eps:1", explore_seed=1, backends=str(path))
        greedy = Router.load(toy_router).route([TEXTS[1]])[0].expert
        with caplog.at_level(logging.INFO, logger="irde.explore"):
            resp = client.post(
                "/v1/chat/completions",
                json={"model": "irde", "messages": [{"role": "user", "content": TEXTS[1]}]},
            )
        assert resp.status_code == 200, resp.text
        chosen = resp.headers["x-irde-expert"]
        assert chosen != greedy and resp.headers["x-irde-explored"] == "1"
        assert seen[-1]["body"]["model"] == f"model-{chosen}"  # served by the chosen expert
        line = f"greedy={greedy} chosen={chosen} mode=eps:1.0 endpoint=chat_completions"
        assert any(line in r.getMessage() for r in caplog.records)
        assert f'irde_explored_total{{expert="{chosen}"}} 1.0' in client.get("/metrics").text


def test_serve_cli_refuses_bad_exploration(toy_router, capsys, monkeypatch):
    from irde_onnx.cli import main

    for argv, words in [
        (["--explore", "eps:2"], "--explore"),
        (["--explore", "ucb:1"], "'eps:RATE'"),
        (["--explore", "eps:0.1", "--explore-seed", "-1"], "seed"),
        (["--explore-seed", "3"], "--explore eps:RATE"),
    ]:
        assert main(["serve", str(toy_router), *argv]) == 2
        err = capsys.readouterr().err
        assert words in err and "Traceback" not in err
    monkeypatch.setattr(Router, "has_uncertainty", False, raising=False)
    assert main(["serve", str(toy_router), "--explore", "bonus:0.1"]) == 2
    err = capsys.readouterr().err
    assert "no uncertainty output" in err and "Traceback" not in err


def test_each_worker_explores_with_its_own_stream(toy_router):
    """--workers N: worker i gets explore_stream i (its slot's, kept by a replacement)."""
    from irde_onnx.serve.runner import RunOptions, Supervisor

    started = []

    class FakeProcess:
        def __init__(self, target, args, daemon):  # noqa: ANN001
            started.append(ServeSettings.from_json(args[0]))

        def start(self):
            pass

    class FakeContext:
        Process = FakeProcess

        @staticmethod
        def Pipe(duplex):  # noqa: ANN001, N802
            return object(), type("End", (), {"close": lambda self: None})()

    settings = ServeSettings(router=str(toy_router), explore="eps:0.1", explore_seed=9)
    supervisor = Supervisor(settings, RunOptions(workers=3), sock=None)  # type: ignore[arg-type]
    supervisor.context = FakeContext()  # type: ignore[assignment]
    for slot in supervisor.slots:  # _start: what run() does per slot, without processes
        supervisor._start(slot)
    supervisor._start(supervisor.slots[1])  # a replacement
    assert [s.explore_stream for s in started] == [0, 1, 2, 1]
    assert {(s.explore, s.explore_seed) for s in started} == {("eps:0.1", 9)}
