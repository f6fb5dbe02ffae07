"""texts, top_k and wtp: the Python API, the server and the CLI refuse the same values with
the same function (irde_onnx.arguments), each host naming the argument its own way."""

from __future__ import annotations

import math

import pytest
from starlette.testclient import TestClient

from irde_onnx.arguments import check_texts, check_top_k, check_wtp
from irde_onnx.cli import main
from irde_onnx.errors import InvalidInputError
from irde_onnx.runtime import Router
from irde_onnx.serve import ServeSettings, create_app

N = 3  # the toy router's experts
BAD_TOP_K = [0, -1, N + 1, True, 1.5, "2", None, 10**100]
BAD_TEXTS = ["one string", {"a": 1}, {"a"}, b"bytes", 5, None, ["a", 3]]
BAD_WTP = [-1, 0, math.nan, math.inf, True, "cheap"]


def refusal(check, *args) -> str:
    with pytest.raises(InvalidInputError) as exc:
        check(*args)
    return str(exc.value)


@pytest.fixture(scope="module")
def router(toy_router_dir):
    return Router.load(toy_router_dir)


@pytest.fixture(scope="module")
def client(toy_router_dir, monkeypatch_module):
    monkeypatch_module.delenv("IRDE_CLIENT_TOKEN", raising=False)
    with TestClient(create_app(ServeSettings(router=str(toy_router_dir)))) as c:
        yield c


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as mp:
        yield mp


def server_refusal(client, body: dict) -> str:
    resp = client.post("/route", json=body)
    assert resp.status_code == 422, resp.text
    return resp.json()["error"]["message"]


@pytest.mark.parametrize("top_k", BAD_TOP_K, ids=repr)
def test_top_k_is_refused_alike_by_router_and_server(router, client, top_k):
    with pytest.raises(InvalidInputError) as exc:
        router.route(["x"], top_k=top_k)
    assert str(exc.value) == refusal(check_top_k, top_k, N)
    got = server_refusal(client, {"text": "x", "top_k": top_k})
    assert got == refusal(check_top_k, top_k, N, '"top_k"')


def test_top_k_wording_names_each_hosts_argument():
    assert refusal(check_top_k, 0, 5) == "top_k must be an integer in 1..5, got 0"
    assert (
        refusal(check_top_k, True, 5, '"top_k"') == '"top_k" must be an integer in 1..5, got True'
    )
    assert refusal(check_top_k, 9, 5, "--top-k") == "--top-k 9 exceeds the 5 experts"  # JS pins it
    assert "(101 characters)" in refusal(check_top_k, 10**100, 5)  # never echoed whole
    assert check_top_k(5, 5) == 5


def test_cli_top_k_goes_through_the_same_check(toy_router_dir, capsys):
    assert main(["route", str(toy_router_dir), "x", "--top-k", str(N + 1)]) == 2
    want = refusal(check_top_k, N + 1, N, "--top-k")
    assert capsys.readouterr().err == f"irde route: error: {want}\n"


@pytest.mark.parametrize("texts", BAD_TEXTS, ids=repr)
def test_texts_are_refused_alike_by_router_and_server(router, client, texts):
    with pytest.raises(InvalidInputError) as exc:
        router.route(texts)
    assert str(exc.value) == refusal(check_texts, texts)
    if isinstance(texts, (set, bytes)):
        return  # not JSON
    got = server_refusal(client, {"texts": texts})
    assert got == refusal(check_texts, texts, '"texts"')


@pytest.mark.parametrize("wtp", BAD_WTP, ids=repr)
def test_wtp_is_refused_alike_by_router_server_and_cli(router, client, toy_router_dir, wtp, capsys):
    with pytest.raises(InvalidInputError) as exc:
        router.route(["x"], wtp=wtp)
    assert str(exc.value) == refusal(check_wtp, wtp)
    if isinstance(wtp, float) and not math.isfinite(wtp):
        return  # not JSON; the CLI's parser refuses it as text ("'nan' must be finite")
    got = server_refusal(client, {"text": "x", "wtp": wtp})
    assert got == refusal(check_wtp, wtp, '"wtp"')
    if type(wtp) in (int, float):  # the CLI parses numbers: the router's check answers
        assert main(["route", str(toy_router_dir), "x", "--wtp", str(wtp)]) == 2
        err = capsys.readouterr().err
        assert err == f"irde route: error: {refusal(check_wtp, float(wtp))}\n"


def test_good_values_pass():
    assert check_texts(("a", "b")) == ["a", "b"]
    assert check_wtp(None) is None and check_wtp(2) == 2.0
