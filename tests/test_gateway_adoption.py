"""The gateway as real clients use it (issue 18, points 2 to 7): ``GET /v1/models``, a
``model`` that pins an expert, CORS for browsers, client keys, errors in OpenAI's shape with
request ids, and requests real clients send (a system-only conversation, a 1.4 MB image, a
trailing slash). The official ``openai`` client against stub backends on 127.0.0.1."""

from __future__ import annotations

import base64
import json
import logging
import shutil
import time
from pathlib import Path

import httpx
import openai
import pytest

from irde_onnx.errors import InvalidInputError
from irde_onnx.runtime import Router, RouterEditor
from irde_onnx.serve import ServeSettings, create_app
from irde_onnx.serve.auth import ClientKeys, exposure_problem, is_loopback, load_client_keys
from irde_onnx.serve.edge import request_id

from .serve_helpers import CHEMISTRY, free_port, openai_stub, running

MATH = "Solve for x: 3x - 7 = 2x + 5."
KEY = "client-key-1"
FILE_KEY = "client-key-from-file"
ADMIN = "admin-token"
OPENAI_ERROR_KEYS = {"message", "type", "param", "code"}


@pytest.fixture(scope="module")
def backend():
    seen: list[dict] = []
    with running(openai_stub(seen)) as url:
        yield url, seen


@pytest.fixture
def router_dir(static_router_dir, tmp_path) -> Path:
    return Path(shutil.copytree(static_router_dir, tmp_path / "router"))


@pytest.fixture
def gateway(router_dir, tmp_path, backend, monkeypatch):
    """gateway(default=True, backend_url=None, **settings) -> the URL of a running gateway."""
    monkeypatch.delenv("IRDE_CLIENT_TOKEN", raising=False)
    monkeypatch.setenv("IRDE_TOKEN", ADMIN)
    experts = Router.load(router_dir).experts
    stack = []

    def start(default: bool = True, backend_url: str | None = None, **settings) -> str:
        base = backend_url or f"{backend[0]}/v1"
        config: dict = {
            "experts": {e: {"base_url": base, "model": f"model-{e}"} for e in experts},
            "timeout": 5,
            "connect_timeout": 1,
        }
        if default:
            config["default"] = {"base_url": base, "model": "general"}
        path = tmp_path / f"backends{len(stack)}.json"
        path.write_text(json.dumps(config))
        settings = {"reload_interval": 0.1, **settings}
        ctx = running(
            create_app(ServeSettings(router=str(router_dir), backends=str(path), **settings))
        )
        stack.append(ctx)
        return ctx.__enter__()

    yield start
    for ctx in reversed(stack):
        ctx.__exit__(None, None, None)


def client(url: str, key: str = "unused") -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0, timeout=30)


def user(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


# -- point 2: GET /v1/models ------------------------------------------------------------------


def test_models_list_the_router_then_each_expert(gateway, router_dir):
    url = gateway()
    experts = Router.load(router_dir).experts
    models = client(url).models.list()
    assert [m.id for m in models.data] == ["irde", *experts]
    assert {m.object for m in models.data} == {"model"} and {m.owned_by for m in models} == {"irde"}
    raw = httpx.get(f"{url}/v1/models", timeout=10)
    assert raw.status_code == 200 and raw.json()["object"] == "list"
    assert isinstance(raw.json()["data"][0]["created"], int)
    # base URLs without /v1, and with a trailing slash, list the same
    for path in ("/models", "/v1/models/", "/models/"):
        assert httpx.get(f"{url}{path}", timeout=10).json() == raw.json(), path
    assert client(url).models.retrieve("math").id == "math"
    assert client(url).models.retrieve("auto").id == "auto"  # routes, as irde does
    with pytest.raises(openai.NotFoundError) as info:
        client(url).models.retrieve("gpt-4o")
    error = info.value.body
    assert set(error) == OPENAI_ERROR_KEYS
    assert (error["type"], error["code"], error["param"]) == (
        "not_found_error",
        "model_not_found",
        "model",
    )
    assert "'gpt-4o'" in error["message"] and "irde" in error["message"]


def test_models_follow_expert_changes_and_reloads(gateway, router_dir):
    url = gateway()
    admin = {"authorization": f"Bearer {ADMIN}"}
    added = httpx.post(
        f"{url}/experts",
        json={"name": "chemistry", "rows": [{"text": t} for t in CHEMISTRY]},
        headers=admin,
        timeout=60,
    )
    assert added.status_code == 201, added.text
    assert "chemistry" in [m.id for m in client(url).models.list()]
    assert client(url).models.retrieve("chemistry").id == "chemistry"
    # another process removes it on disk: the next reload drops it from the list
    router = RouterEditor.open(router_dir)
    with router.lock():
        router.remove_expert("chemistry")
        router.save()
    deadline = time.monotonic() + 20
    while "chemistry" in [m.id for m in client(url).models.list()]:
        assert time.monotonic() < deadline, "the reload did not reach /v1/models"
        time.sleep(0.05)
    with pytest.raises(openai.NotFoundError):
        client(url).models.retrieve("chemistry")


# -- point 3: a model that names an expert pins it --------------------------------------------


def test_a_model_naming_an_expert_pins_it(gateway, backend, router_dir):
    url = gateway()
    routed = Router.load(router_dir).route([MATH])[0].expert
    pinned = "law" if routed != "law" else "code"
    raw = client(url).chat.completions.with_raw_response.create(model=pinned, messages=user(MATH))
    assert raw.headers["x-irde-expert"] == pinned
    assert raw.headers["x-irde-decision"] == "pinned"
    assert raw.parse().choices[0].message.content == f"answer from model-{pinned}"
    assert backend[1][-1]["body"]["model"] == f"model-{pinned}"
    # streamed, too
    with client(url).chat.completions.with_streaming_response.create(
        model=pinned, messages=user(MATH), stream=True
    ) as stream:
        assert stream.headers["x-irde-expert"] == pinned
        text = "".join(c.choices[0].delta.content or "" for c in stream.parse() if c.choices)
    assert text == f"answer from model-{pinned}"
    # the router's own name, auto, an unknown name and no name are routed
    for model in ("irde", "auto", "gpt-4o", None):
        body = {"messages": user(MATH)} | ({"model": model} if model else {})
        resp = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=30)
        assert resp.status_code == 200, resp.text
        assert resp.headers["x-irde-expert"] == routed, model
        assert resp.headers["x-irde-decision"] == "routed", model


# -- point 4: CORS --------------------------------------------------------------------------

ORIGIN = "https://chat.example.com"


def preflight(url: str, path: str, origin: str = ORIGIN) -> httpx.Response:
    return httpx.options(
        f"{url}{path}",
        headers={
            "origin": origin,
            "access-control-request-method": "POST",
            "access-control-request-headers": "authorization, content-type, x-stainless-os",
        },
        timeout=10,
    )


def test_cors_is_off_by_default_and_a_backends_cors_header_is_not_passed_on(gateway):
    url = gateway()
    assert preflight(url, "/v1/chat/completions").status_code == 405
    resp = httpx.post(
        f"{url}/v1/chat/completions",
        json={"messages": user(MATH)},
        headers={"origin": ORIGIN},
        timeout=30,
    )
    # the stub backend answers "access-control-allow-origin: *": not the gateway's answer
    assert resp.status_code == 200 and "access-control-allow-origin" not in resp.headers


def test_cors_answers_preflight_for_listed_origins_only(gateway):
    url = gateway(cors_origins=[ORIGIN, "http://localhost:5173"], client_keys=None)
    for path in ("/v1/chat/completions", "/v1/chat/completions/", "/v1/models", "/route"):
        resp = preflight(url, path)
        assert resp.status_code == 200, (path, resp.text)
        assert resp.headers["access-control-allow-origin"] == ORIGIN
        allowed = resp.headers["access-control-allow-headers"].lower()
        assert "authorization" in allowed and "x-stainless-os" in allowed
        assert "POST" in resp.headers["access-control-allow-methods"]
    refused = preflight(url, "/v1/chat/completions", "https://evil.example.com")
    assert refused.status_code == 400
    assert "access-control-allow-origin" not in refused.headers
    # expert changes are not for browsers: no preflight answer there
    assert preflight(url, "/experts").status_code == 405
    resp = httpx.post(
        f"{url}/v1/chat/completions",
        json={"messages": user(MATH)},
        headers={"origin": ORIGIN},
        timeout=30,
    )
    assert resp.status_code == 200
    assert resp.headers.get_list("access-control-allow-origin") == [ORIGIN]
    exposed = {h.strip() for h in resp.headers["access-control-expose-headers"].split(",")}
    assert {"x-irde-expert", "x-irde-decision", "x-request-id"} <= exposed
    other = httpx.post(
        f"{url}/v1/chat/completions",
        json={"messages": user(MATH)},
        headers={"origin": "https://evil.example.com"},
        timeout=30,
    )
    assert "access-control-allow-origin" not in other.headers


def test_cors_origins_that_never_match_are_refused_at_start(router_dir):
    for origin, words in (
        ("https://chat.example.com/", "use https://chat.example.com"),
        ("chat.example.com", "scheme://host"),
    ):
        with pytest.raises(InvalidInputError, match=words):
            create_app(ServeSettings(router=str(router_dir), cors_origins=[origin]))


# -- point 5: client keys -------------------------------------------------------------------


def test_client_keys_guard_route_and_the_v1_endpoints(gateway, backend, monkeypatch, tmp_path):
    monkeypatch.setenv("IRDE_CLIENT_TOKEN", KEY)
    keys = tmp_path / "keys.txt"
    keys.write_text(f"# one key per line\n\n{FILE_KEY}\n")
    url = gateway(client_keys=str(keys))
    with pytest.raises(openai.AuthenticationError) as info:
        client(url, "wrong").chat.completions.create(model="irde", messages=user(MATH))
    error = info.value.body
    assert set(error) == OPENAI_ERROR_KEYS
    assert (error["type"], error["code"]) == ("authentication_error", "invalid_api_key")
    assert info.value.response.headers["www-authenticate"] == "Bearer"
    with pytest.raises(openai.AuthenticationError):
        client(url, ADMIN).models.list()  # the admin token is not a client key
    missing = httpx.get(f"{url}/v1/models", timeout=10)
    assert missing.status_code == 401
    assert missing.json()["error"]["code"] == "missing_api_key"
    assert "Authorization: Bearer" in missing.json()["error"]["message"]
    for key in (KEY, FILE_KEY):
        answer = client(url, key).chat.completions.create(model="irde", messages=user(MATH))
        assert answer.choices[0].message.content.startswith("answer from")
        # the client's key stays at the gateway: the backend gets its own (none here)
        assert "authorization" not in backend[1][-1]["headers"]
        assert [m.id for m in client(url, key).models.list()][0] == "irde"
    route = httpx.post(f"{url}/route", json={"text": MATH}, timeout=30)
    assert route.status_code == 401 and route.json()["error"]["status"] == 401
    auth = {"authorization": f"Bearer {KEY}"}
    assert httpx.post(f"{url}/route", json={"text": MATH}, headers=auth, timeout=30).is_success
    # a client key cannot change experts; health and metrics stay open for probes
    change = httpx.delete(f"{url}/experts/math", headers=auth, timeout=30)
    assert change.status_code == 401
    assert httpx.get(f"{url}/healthz", timeout=10).status_code == 200


def test_every_key_is_compared_in_constant_time(monkeypatch):
    import irde_onnx.serve.auth as auth

    calls = []
    real = auth.hmac.compare_digest
    monkeypatch.setattr(
        auth.hmac, "compare_digest", lambda a, b: calls.append((len(a), len(b))) or real(a, b)
    )
    keys = ClientKeys(["first", "second", "third"], ["test"])
    assert keys.accepts("Bearer first") and keys.accepts("bearer  third ")
    assert not keys.accepts("Bearer firs") and not keys.accepts("Basic first")
    assert not keys.accepts(None)
    # all three keys each time (no early exit on a match), digests of equal length
    assert len(calls) == 9 and set(calls) == {(32, 32)}


def test_client_key_sources_are_checked(monkeypatch, tmp_path):
    monkeypatch.setenv("K", "spaced \n")
    with pytest.raises(InvalidInputError, match="white space"):
        load_client_keys("K")
    monkeypatch.delenv("K")
    with pytest.raises(InvalidInputError, match="K is not set"):
        load_client_keys("K", env_required=True)
    empty = tmp_path / "keys.txt"
    empty.write_text("# nothing yet\n\n")
    with pytest.raises(InvalidInputError, match="no client key"):
        load_client_keys("K", empty)
    with pytest.raises(FileNotFoundError, match="client keys file"):
        load_client_keys("K", tmp_path / "absent.txt")
    assert not load_client_keys("K")


def test_serving_beyond_loopback_needs_client_keys_or_allow_anonymous(
    router_dir, monkeypatch, capsys
):
    from irde_onnx.cli import main

    monkeypatch.delenv("IRDE_CLIENT_TOKEN", raising=False)
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert is_loopback("127.0.0.2") and not is_loopback("0.0.0.0") and not is_loopback("")
    none = ClientKeys([], [])
    assert exposure_problem("127.0.0.1", none, False) is None
    assert exposure_problem("0.0.0.0", none, True) is None
    assert exposure_problem("0.0.0.0", ClientKeys(["k"], ["env"]), False) is None
    port = str(free_port())
    code = main(["serve", str(router_dir), "--host", "0.0.0.0", "--port", port])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "--host 0.0.0.0" in err and "IRDE_CLIENT_TOKEN" in err and "--allow-anonymous" in err
    code = main(["serve", str(router_dir), "--client-token-env", "NOT_SET_ANYWHERE"])
    err = capsys.readouterr().err
    assert code == 2 and "NOT_SET_ANYWHERE is not set" in err
    code = main(["serve", str(router_dir), "--cors-origin", "https://a.example.com/"])
    err = capsys.readouterr().err
    assert code == 2 and "use https://a.example.com" in err


def test_backend_errors_name_the_expert_not_the_url(gateway, router_dir):
    secret_port = free_port()  # nothing listens there
    url = gateway(backend_url=f"http://127.0.0.1:{secret_port}/v1")
    expert = Router.load(router_dir).route([MATH])[0].expert
    with pytest.raises(openai.APIStatusError) as info:
        client(url).chat.completions.create(model="irde", messages=user(MATH))
    assert info.value.status_code == 502
    message = info.value.body["message"]
    assert f"expert {expert!r}" in message and "cannot be reached" in message
    assert str(secret_port) not in message and "127.0.0.1" not in message
    assert info.value.body["type"] == "api_error"
    assert info.value.body["code"] == "backend_unreachable"
    rid = info.value.response.headers["x-request-id"]
    assert rid in message  # the log line with the URL is found by this id


# -- point 6: OpenAI's error shape and request ids --------------------------------------------


def test_v1_errors_are_in_openais_shape(gateway):
    url = gateway(chat_max_body_bytes=1000)
    cases = [
        ("POST", "/v1/chat/completions", b"{not json", 400, "invalid_request_error"),
        ("POST", "/v1/chat/completions", b'{"messages": 5}', 400, "invalid_request_error"),
        ("POST", "/v1/chat/completions", b"x" * 2000, 413, "invalid_request_error"),
        ("GET", "/v1/chat/completions", None, 405, "invalid_request_error"),
        ("GET", "/v1/embeddings", None, 404, "not_found_error"),
    ]
    for method, path, body, status, kind in cases:
        resp = httpx.request(method, f"{url}{path}", content=body, timeout=10)
        assert resp.status_code == status, (path, resp.text)
        error = resp.json()["error"]
        assert set(error) == OPENAI_ERROR_KEYS and error["type"] == kind, (path, error)
        assert error["message"]
    # the openai client reads them into its exceptions
    with pytest.raises(openai.BadRequestError) as info:
        client(url).chat.completions.create(model="irde", messages=[])
    assert (info.value.type, info.value.param) == ("invalid_request_error", "messages")
    assert (
        "--chat-max-body-bytes"
        in httpx.post(f"{url}/v1/chat/completions", content=b"x" * 2000, timeout=10).json()[
            "error"
        ]["message"]
    )
    # /route keeps its own shape, with the status
    route = httpx.post(f"{url}/route", content=b"{}", timeout=10)
    assert route.status_code == 422 and route.json()["error"]["status"] == 422


def test_request_ids_are_kept_returned_logged_and_sent_upstream(gateway, backend, caplog):
    url = gateway()
    with caplog.at_level(logging.INFO, logger="irde.access"):
        resp = httpx.post(
            f"{url}/v1/chat/completions",
            json={"messages": user(MATH)},
            headers={"x-request-id": "trace-42"},
            timeout=30,
        )
    assert resp.status_code == 200
    assert resp.headers["x-request-id"] == "trace-42"
    assert resp.headers["x-upstream-request-id"] == "upstream-1"  # the backend's own
    assert backend[1][-1]["headers"]["x-request-id"] == "trace-42"
    lines = [r.getMessage() for r in caplog.records if r.name == "irde.access"]
    assert any("request_id=trace-42" in line for line in lines), lines
    # made when absent, one per request, also on errors and on /route
    made = [httpx.get(f"{url}/v1/nothing", timeout=10).headers["x-request-id"] for _ in range(2)]
    assert made[0] != made[1] and all(len(r) == 32 for r in made)
    assert httpx.post(f"{url}/route", json={"text": MATH}, timeout=30).headers["x-request-id"]
    # sanitised and bounded
    assert request_id('a b"c=d\\e') == "abcde"
    assert request_id("x" * 500) == "x" * 128
    assert len(request_id(" ")) == 32 and request_id(None) != request_id(None)
    odd = httpx.get(f"{url}/healthz", headers={"x-request-id": 'id "1"'}, timeout=10)
    assert odd.headers["x-request-id"] == "id1"


# -- point 7: what real clients send -----------------------------------------------------------


def test_a_system_only_conversation_goes_to_the_default_backend(gateway, backend, router_dir):
    url = gateway()
    system = [{"role": "system", "content": "You are a helpful assistant."}]
    raw = client(url).chat.completions.with_raw_response.create(model="irde", messages=system)
    assert raw.headers["x-irde-decision"] == "default"
    assert "x-irde-expert" not in raw.headers
    assert raw.parse().choices[0].message.content == "answer from general"
    assert backend[1][-1]["body"]["model"] == "general"


def test_without_a_default_a_system_only_conversation_is_routed_on_its_text(gateway, router_dir):
    url = gateway(default=False)
    messages = [{"role": "system", "content": MATH}]
    raw = client(url).chat.completions.with_raw_response.create(model="irde", messages=messages)
    assert raw.headers["x-irde-decision"] == "routed"
    assert raw.headers["x-irde-expert"] == Router.load(router_dir).route([MATH])[0].expert
    empty = httpx.post(
        f"{url}/v1/chat/completions",
        json={"messages": [{"role": "system", "content": [{"type": "image_url"}]}]},
        timeout=10,
    )
    assert empty.status_code == 400 and "no message has text" in empty.json()["error"]["message"]


def test_a_request_with_a_large_base64_image_is_forwarded(gateway, backend):
    url = gateway()
    image = base64.b64encode(b"\x89PNG" + bytes(1_050_000)).decode()  # 1.4 MB in base64
    messages = [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": MATH},
                {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{image}"}},
            ],
        }
    ]
    body = json.dumps({"model": "irde", "messages": messages})
    assert 1_400_000 < len(body) < 1_500_000
    answer = client(url).chat.completions.create(model="irde", messages=messages)
    assert answer.choices[0].message.content.startswith("answer from")
    sent = backend[1][-1]
    assert sent["body"]["messages"] == messages and sent["size"] > 1_400_000
    # /route keeps its 1 MiB limit
    route = httpx.post(f"{url}/route", json={"text": "x" * 1_500_000}, timeout=30)
    assert route.status_code == 413 and "--max-body-bytes" in route.json()["error"]["message"]


def test_trailing_slashes_and_base_urls_without_v1_are_accepted(gateway):
    url = gateway()
    for path in ("/v1/chat/completions/", "/chat/completions", "/chat/completions/"):
        resp = httpx.post(
            f"{url}{path}", json={"messages": user(MATH)}, timeout=30, follow_redirects=False
        )
        assert resp.status_code == 200, (path, resp.status_code)
        assert resp.json()["choices"][0]["message"]["content"].startswith("answer from")
    slash = openai.OpenAI(base_url=f"{url}/", api_key="unused", max_retries=0)
    assert slash.chat.completions.create(model="irde", messages=user(MATH)).choices
    route = httpx.post(f"{url}/route/", json={"text": MATH}, timeout=30, follow_redirects=False)
    assert route.status_code == 200
