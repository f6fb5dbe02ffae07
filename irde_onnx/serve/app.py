"""The ASGI app of ``irde serve``: routing, expert changes, health, metrics, gateway."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import os
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import asdict, dataclass, field
from functools import partial
from typing import Any
from urllib.parse import quote

import anyio
import httpx
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from irde_onnx.arguments import check_texts, check_top_k, check_wtp, shorten
from irde_onnx.data import expert_rows
from irde_onnx.decision.explore import Exploration
from irde_onnx.errors import InvalidInputError, IrdeError, RouterBusyError
from irde_onnx.runtime import LiveRouter, Router, RouterEditor
from irde_onnx.serve.auth import CLIENT_TOKEN_ENV, load_client_keys
from irde_onnx.serve.edge import (
    REQUEST_ID,
    RequestIds,
    ScopedCors,
    cors_origin_problem,
    request_id_of,
)
from irde_onnx.serve.errors import ApiError
from irde_onnx.serve.feedback import RecentPrompts, resolve_rows
from irde_onnx.serve.gateway import (
    ROUTER_MODEL,
    ROUTER_NAMES,
    Backends,
    conversation_text,
    load_backends,
    prompt_text,
)
from irde_onnx.serve.metrics import ServerMetrics
from irde_onnx.serve.proxy import QuietAborts, answer_headers, passthrough, upstream_headers
from irde_onnx.store.config import expert_name_problem

log = logging.getLogger("irde.serve")
access_log = logging.getLogger("irde.access")
explore_log = logging.getLogger("irde.explore")
EXPLORED = "x-irde-explored"  # "1" on a response whose expert exploration chose

SETTINGS_ENV = "IRDE_SERVE_SETTINGS"
MAX_MESSAGE = 1000  # characters of an error message: a request's value is never echoed whole
_PLAIN = re.compile(r"[A-Za-z0-9._:/@+-]{1,200}")
ROUTE_FIELDS = {"text", "texts", "top_k", "wtp"}
EXPERT_FIELDS = {"name", "rows", "gate"}
FEEDBACK_FIELDS = {"rows", "traffic_weight", "half_life"}
ROW_FIELDS = {"text", "score"}


@dataclass
class ServeSettings:
    """What ``irde serve`` is started with.

    Attributes:
        router: the router folder.
        threads: onnxruntime intra-op threads (None: onnxruntime decides).
        max_body_bytes: larger request bodies get 413 (all but the chat endpoint).
        chat_max_body_bytes: larger chat completion bodies get 413 (images in base64 make
            real chat requests larger than routing requests).
        max_texts: more texts in one ``POST /route`` get 413.
        token_env: environment variable holding the bearer token of ``POST/DELETE /experts``;
            when it is unset or empty, expert changes are disabled (403).
        reload_interval: seconds between checks of ``router.json`` (0: never reload).
        backends: ``backends.json`` of the OpenAI-compatible gateway (None: no gateway).
        client_token_env: environment variable holding a client key of ``/route`` and
            ``/v1/*`` (unset or empty: no key from it).
        client_keys: a file of client keys, one per line (None: none).
        cors_origins: origins allowed to call ``/route`` and ``/v1/*`` from a browser; with
            no client key, those endpoints are open (``irde serve`` allows that on
            loopback only, unless ``--allow-anonymous``).
        explore: exploration of routed requests (``off``, ``eps:RATE`` or ``bonus:ALPHA``;
            see :mod:`irde_onnx.decision.explore`); off by default.
        explore_seed: the seed of the exploration's draws (None: drawn and logged).
        explore_stream: a second seed component; ``--workers`` gives each worker its
            number, so workers started with one seed draw different sequences.

    """

    router: str
    threads: int | None = None
    max_body_bytes: int = 1 << 20
    max_texts: int = 256
    token_env: str = "IRDE_TOKEN"
    reload_interval: float = 1.0
    backends: str | None = None
    chat_max_body_bytes: int = 20 << 20
    client_token_env: str = CLIENT_TOKEN_ENV
    client_keys: str | None = None
    cors_origins: list[str] = field(default_factory=list)
    explore: str = "off"
    explore_seed: int | None = None
    explore_stream: int = 0

    def to_json(self) -> str:
        """JSON, to pass the settings to worker processes."""
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> ServeSettings:
        """Settings written by :meth:`to_json`."""
        return cls(**json.loads(text))


async def read_json(request: Request, limit: int, flag: str = "--max-body-bytes") -> dict[str, Any]:
    """The request body as a JSON object; 413 past ``limit`` bytes, 400 if not an object.

    The body is counted as it arrives: a request past ``limit`` is refused as soon as it
    says so (``Content-Length``) or sends one byte too many, never read to its end.
    ``flag`` is the option that sets ``limit``, for the message.

    Strict JSON: ``NaN`` and ``Infinity`` (which Python's parser accepts and no other JSON
    parser does), nesting deeper than Python can parse and integers of more than 4300 digits
    are refused with 400, never forwarded and never a 500.
    """
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and (len(length) > 18 or int(length) > limit):
        raise ApiError(
            413,
            f"request body of {shorten(length, 20)} bytes exceeds the limit of {limit} "
            f"bytes; send less per request or raise {flag}",
            "request_too_large",
        )
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise ApiError(
                413,
                f"request body exceeds the limit of {limit} bytes; send less "
                f"per request or raise {flag}",
                "request_too_large",
            )
    try:
        data = json.loads(bytes(body), parse_constant=_refuse_constant)
    except RecursionError as exc:
        raise ApiError(400, "the request body is JSON nested too deeply to parse") from exc
    except (ValueError, UnicodeDecodeError) as exc:  # JSONDecodeError, int digit limit
        message = shorten(str(exc), 200)
        raise ApiError(400, f"the request body is not valid JSON: {message}") from exc
    if not isinstance(data, dict):
        raise ApiError(400, "the request body must be a JSON object")
    return data


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number; send a finite number or null")


def quoted(name: str, limit: int = 80) -> str:
    """A name from the request for a message: ``repr`` (control characters escaped), cut."""
    if len(name) <= limit:
        return repr(name)
    return f"{name[:limit]!r}... ({len(name)} characters)"


def _check_fields(data: dict[str, Any], allowed: set[str]) -> None:
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise ApiError(422, f"unknown field(s) {unknown}; allowed: {sorted(allowed)}")


def route_request(
    data: dict[str, Any], experts: list[str], max_texts: int
) -> tuple[list[str], int, bool]:
    """Check a ``POST /route`` body; returns (texts, top_k, whether one text was sent)."""
    _check_fields(data, ROUTE_FIELDS)
    if ("text" in data) == ("texts" in data):
        raise ApiError(422, 'give exactly one of "text" (a string) or "texts" (a list of strings)')
    single = "text" in data
    if single:
        if not isinstance(data["text"], str):
            raise ApiError(422, f'"text" must be a string, got {type(data["text"]).__name__}')
        texts = [data["text"]]
    else:
        texts = _checked(check_texts, data["texts"], '"texts"')
        if not texts:
            raise ApiError(422, '"texts" is empty: give at least one prompt')
        if len(texts) > max_texts:
            raise ApiError(
                413,
                f"{len(texts)} texts exceed the limit of {max_texts} per "
                "request; split the request or raise --max-texts",
                "request_too_large",
            )
    top_k = _checked(check_top_k, data.get("top_k", 1), len(experts), '"top_k"')
    if "wtp" in data:  # null: quality only; the router checks its costs
        _checked(check_wtp, data["wtp"], '"wtp"')
    return texts, top_k, single


def _checked(check: Callable[..., Any], *args: Any) -> Any:
    """``check(*args)`` (from :mod:`irde_onnx.arguments`), its refusal a 422."""
    try:
        return check(*args)
    except InvalidInputError as exc:
        raise ApiError(422, shorten(str(exc), MAX_MESSAGE)) from None


def read_token(env: str) -> str | None:
    """The bearer token of expert changes from ``env`` (None: unset or empty, changes off).

    Raises:
        InvalidInputError: the value has leading or trailing white space (a newline from
            ``$(cat secret)`` or a copied space): clients would never match it.

    """
    token = os.environ.get(env) or None
    if token is not None and token != token.strip():
        raise InvalidInputError(
            f"the token in {env} has leading or trailing white space (a newline or a "
            f"space); set {env} to the token alone, e.g. {env}=\"$(tr -d '[:space:]' < file)\""
        )
    return token


class Server:
    """The state behind the endpoints: settings, the live router, metrics, gateway."""

    def __init__(self, settings: ServeSettings) -> None:
        self.settings = settings
        self.metrics = ServerMetrics()
        exploration = Exploration.parse(settings.explore, settings.explore_seed)
        self.holder = LiveRouter(
            settings.router,
            settings.threads,
            on_swap=self._on_swap,
            on_reload_failure=self.metrics.reload_failures.inc,
            retry_first=max(settings.reload_interval, 0.05),
            exploration=exploration,  # a bonus without the uncertainty output fails here
            explore_stream=settings.explore_stream,
        )
        self.exploring = exploration.enabled
        self.metrics.experts.set(len(self.holder.router.experts))
        self.token = read_token(settings.token_env)
        self.client_keys = load_client_keys(settings.client_token_env, settings.client_keys)
        self.created = int(time.time())  # "created" of the models in /v1/models
        self.backends: Backends | None = (
            load_backends(settings.backends) if settings.backends else None
        )
        self.client: httpx.AsyncClient | None = None
        self.recent = RecentPrompts()  # prompts of recent routes, for feedback by request id

    def _on_swap(self, cause: str) -> None:
        self.metrics.swaps.labels(cause).inc()
        self.metrics.experts.set(len(self.holder.router.experts))

    # -- plumbing -------------------------------------------------------------------------
    def endpoint(
        self, name: str, fn: Callable[[Request], Awaitable[Response]], openai: bool = False
    ) -> Callable[[Request], Awaitable[Response]]:
        """Wrap a handler: JSON errors, request counts, latency and error metrics.

        ``openai``: errors in OpenAI's shape (see :mod:`irde_onnx.serve.errors`).
        """

        async def handler(request: Request) -> Response:
            start = time.perf_counter()
            try:
                response = await fn(request)
            except ClientDisconnect:
                # the client left before sending its whole request: nothing to answer, and
                # not an error of this server (status 499, as nginx logs it)
                self.metrics.requests.labels(name, "499").inc()
                return Response(status_code=499)
            except ApiError as exc:
                response = exc.response(openai)
                self.metrics.errors.labels(name, exc.kind).inc()
            except InvalidInputError as exc:  # the router refused the input, as in the CLI
                response = ApiError(422, shorten(str(exc), MAX_MESSAGE)).response(openai)
                self.metrics.errors.labels(name, "invalid_request").inc()
            except RouterBusyError as exc:  # another process holds the folder's lock
                response = ApiError(
                    503, str(exc), "router_busy", headers={"Retry-After": "1"}
                ).response(openai)
                self.metrics.errors.labels(name, "router_busy").inc()
            except RecursionError:  # a value nested too deeply for a check or for json.dumps
                response = ApiError(400, "the request is nested too deeply").response(openai)
                self.metrics.errors.labels(name, "invalid_request").inc()
            except (IrdeError, OSError) as exc:  # the folder, not the request, is at fault
                log.error("%s failed: %s", name, exc)
                response = ApiError(
                    500, f"the router folder cannot be used: {exc}", "router_error"
                ).response(openai)
                self.metrics.errors.labels(name, "router_error").inc()
            except Exception:
                log.exception("internal error in %s", name)
                response = ApiError(
                    500, "internal server error; see the server log", "internal_error"
                ).response(openai)
                self.metrics.errors.labels(name, "internal_error").inc()
            self.metrics.requests.labels(name, str(response.status_code)).inc()
            self.metrics.latency.labels(name).observe(time.perf_counter() - start)
            return response

        return handler

    def check_token(self, request: Request) -> None:
        """Expert changes need ``Authorization: Bearer <token>``; none are allowed unset."""
        env = self.settings.token_env
        if self.token is None:
            raise ApiError(
                403,
                f"expert changes are disabled: start the server with the "
                f"environment variable {env} set to a secret token",
                "changes_disabled",
            )
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            given.strip().encode(), self.token.encode()
        ):
            raise ApiError(
                401,
                f"a valid bearer token is required (the value of {env}): "
                "send the header Authorization: Bearer <token>",
                "unauthorized",
                headers={"www-authenticate": "Bearer"},
            )

    def check_client(self, request: Request) -> None:
        """With client keys set, ``/route`` and ``/v1/*`` need ``Authorization: Bearer <key>``."""
        if not self.client_keys:
            return
        header = request.headers.get("authorization")
        if self.client_keys.accepts(header):
            return
        if header is None:
            message, code = (
                "a client key is required: send the header Authorization: Bearer <key> "
                "(an OpenAI client sends its api_key so) with a key the server's operator "
                "gave you",
                "missing_api_key",
            )
        else:
            message, code = (
                "the client key is not valid: send Authorization: Bearer <key> with one of "
                "the server's client keys (not the admin token of expert changes)",
                "invalid_api_key",
            )
        raise ApiError(401, message, code, headers={"www-authenticate": "Bearer"})

    # -- endpoints --------------------------------------------------------------------------
    async def route(self, request: Request) -> Response:
        """``POST /route``: ``{"text"}`` -> one route, ``{"texts"}`` -> a list of routes."""
        self.check_client(request)
        data = await read_json(request, self.settings.max_body_bytes)
        router = self.holder.router  # this request uses this router to the end
        texts, top_k, single = route_request(data, router.experts, self.settings.max_texts)
        kw = {"wtp": data["wtp"]} if "wtp" in data else {}  # null: quality only
        rid = request_id_of(request.scope)
        if not self.exploring:
            routes = await run_in_threadpool(partial(router.route, texts, top_k, **kw))
            for r in routes:
                self.metrics.decisions.labels(r.expert).inc()
            if single:
                self.recent.put(rid, texts[0], routes[0].expert)
            out = [r.to_dict() for r in routes]
            return JSONResponse(out[0] if single else out)
        live = await run_in_threadpool(
            partial(self.holder.route, texts, top_k, router=router, **kw)
        )
        for i, r in enumerate(live):
            self.count_decision(r.expert, r.greedy, r.explored, rid, i, "route")
        if single:
            self.recent.put(rid, texts[0], live[0].expert, live[0].greedy, live[0].explored)
        body = [r.to_dict() for r in live]
        headers = {EXPLORED: "1"} if any(r.explored for r in live) else None
        return JSONResponse(body[0] if single else body, headers=headers)

    def count_decision(
        self, expert: str, greedy: str, explored: bool, rid: str, index: int, endpoint: str
    ) -> None:
        """Count a routing decision; an explored one also in its metric and one log line."""
        self.metrics.decisions.labels(expert).inc()
        if not explored:
            return
        self.metrics.explored.labels(expert).inc()
        explore_log.info(
            "explored request_id=%s index=%d greedy=%s chosen=%s mode=%s endpoint=%s",
            rid,
            index,
            log_value(greedy),
            log_value(expert),
            self.holder.exploration,
            endpoint,
        )

    async def list_experts(self, request: Request) -> Response:
        """``GET /experts``: what ``irde experts list`` prints, as one object.

        Shadow experts come last, without their gate figures (``irde experts list`` computes
        those).
        """
        router = self.holder.router
        cfg = router.config
        shadows = router.stats.shadows
        return JSONResponse(
            {
                "experts": [
                    {"column": i, "name": name, "mode": mode}
                    for i, (name, mode) in enumerate(
                        zip(cfg.experts, cfg.expert_modes, strict=True)
                    )
                ]
                + [
                    {"column": None, "name": name, "mode": "own", "shadow": True, "rows": len(r)}
                    for name, r in shadows.items()
                ]
            }
        )

    async def add_expert(self, request: Request) -> Response:
        """``POST /experts`` ``{"name", "rows": [{"text"} or {"text", "score"}], "gate"?}``.

        ``gate`` as ``RouterEditor.add_expert``: a scored expert on few rows may be added as
        a shadow (listed in ``shadow_experts``, routing once its gate passes).
        """
        self.check_token(request)
        data = await read_json(request, self.settings.max_body_bytes)
        _check_fields(data, EXPERT_FIELDS)
        name, rows = data.get("name"), data.get("rows")
        if not isinstance(name, str) or not name.strip():
            raise ApiError(422, '"name" must be a non-empty string')
        problem = expert_name_problem(name)
        if problem:  # here, so the message quotes the name cut short
            raise ApiError(422, f"the expert name {quoted(name)} {problem}")
        if not isinstance(rows, list):
            raise ApiError(422, '"rows" must be a list of {"text"} or {"text", "score"}')
        gate = data.get("gate")
        if gate is not None and not isinstance(gate, bool):
            raise ApiError(422, '"gate" must be true, false or null (the default rule)')
        texts, scores = expert_rows(((f"rows[{i}]", r) for i, r in enumerate(rows)), '"rows"')
        for i, row in enumerate(rows):
            if not set(row) <= ROW_FIELDS:
                unknown = shorten(sorted(set(row) - ROW_FIELDS))
                raise ApiError(
                    422, f"rows[{i}]: unknown key(s) {unknown}; allowed: {sorted(ROW_FIELDS)}"
                )

        result: dict[str, Any] = {}

        def add(editor: RouterEditor) -> None:
            # checked on the folder as it is now, under its lock: a replica's list may be stale
            if name in editor.experts or name in editor.shadow_experts:
                raise ApiError(
                    409,
                    f"expert {quoted(name)} already exists; remove it first or choose another name",
                    "conflict",
                )
            gated = editor.add_expert(name, texts, scores, gate=gate)
            result["gate"] = None if gated is None else gated.to_dict()
            result["shadow_experts"] = editor.shadow_experts

        router = await run_in_threadpool(self.holder.change, add)
        return JSONResponse({"experts": router.experts, **result}, status_code=201)

    async def remove_expert(self, request: Request) -> Response:
        """``DELETE /experts/{name}``."""
        self.check_token(request)
        name = request.path_params["name"]

        def remove(editor: RouterEditor) -> None:
            # checked on the folder as it is now, under its lock: a replica's list may be stale
            if name not in editor.experts and name not in editor.shadow_experts:
                known = [*editor.experts, *editor.shadow_experts]
                raise ApiError(
                    404,
                    f"unknown expert {quoted(name)}; experts: {shorten(known, 400)}",
                    "not_found",
                )
            editor.remove_expert(name)

        router = await run_in_threadpool(self.holder.change, remove)
        return JSONResponse({"experts": router.experts})

    async def feedback(self, request: Request) -> Response:
        """``POST /feedback`` ``{"rows": [...], "traffic_weight"?, "half_life"?}``: journal, fold.

        Rows are ``{"text", "expert"}``, ``{"text", "scores": {...}}`` or ``{"text", "expert",
        "outcome"}``, each with ``"request_id"`` (an ``x-request-id`` this process answered a
        route with) in place of ``"text"`` if wanted. The 200 comes after the rows are in the
        folder's journal and fsync'd: accepted feedback survives a crash.
        """
        self.check_token(request)
        data = await read_json(request, self.settings.max_body_bytes)
        _check_fields(data, FEEDBACK_FIELDS)
        rows = resolve_rows(data.get("rows"), self.recent)
        weight, half_life = data.get("traffic_weight"), data.get("half_life")
        seq, router = await run_in_threadpool(self.holder.feedback, rows, weight, half_life)
        self.metrics.observe_feedback(rows)
        return JSONResponse({"accepted": len(rows), "seq": seq, "generation": router.generation})

    async def healthz(self, request: Request) -> Response:
        """``GET /healthz``: 200 while this process routes, with ``status`` ok or degraded.

        ``degraded``: the folder on disk cannot be loaded, so an older router is served;
        ``reload_error`` says why.
        """
        holder = self.holder
        router = holder.router  # read once: the fields below describe one router
        stale, error, since = holder.stale, holder.reload_error, holder.reload_error_at
        self.metrics.stale.set(int(stale))
        return JSONResponse(
            {
                "status": "degraded" if stale else "ok",
                "experts": router.experts,
                "generation": router.generation,
                "stale": stale,
                "reload_error": error,
                "stale_since": since,
                "swaps": holder.swaps,
                "pid": os.getpid(),
            }
        )

    async def metrics_text(self, request: Request) -> Response:
        """``GET /metrics``: Prometheus text format."""
        self.metrics.stale.set(int(self.holder.stale))
        return Response(
            self.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8"
        )

    def _model(self, model_id: str) -> dict[str, Any]:
        return {"id": model_id, "object": "model", "created": self.created, "owned_by": "irde"}

    async def list_models(self, request: Request) -> Response:
        """``GET /v1/models``: the router itself (``irde``: route it), then each expert."""
        self.check_client(request)
        experts = [e for e in self.holder.router.experts if e not in ROUTER_NAMES]
        data = [self._model(m) for m in (ROUTER_MODEL, *experts)]
        return JSONResponse({"object": "list", "data": data})

    async def get_model(self, request: Request) -> Response:
        """``GET /v1/models/{id}``: one of the list, or ``auto``; else 404."""
        self.check_client(request)
        model_id = request.path_params["model_id"]
        experts = self.holder.router.experts
        if model_id not in ROUTER_NAMES and model_id not in experts:
            raise ApiError(
                404,
                f"the model {quoted(model_id)} does not exist; models: {ROUTER_MODEL!r} (the "
                f"router chooses the expert) and the experts {shorten(experts, 400)}",
                "model_not_found",
                param="model",
            )
        return JSONResponse(self._model(model_id))

    def _decide(self, data: dict[str, Any]) -> tuple[str | None, str, str | None]:
        """(expert, decision, text to route on) of a chat request; see the README.

        ``model`` naming an expert pins it; otherwise the last user message (or every user
        message) is routed on; with no user text, the ``default`` backend answers, and
        without one, the text of every message is routed on.
        """
        assert self.backends is not None
        messages = data.get("messages")
        try:
            text = prompt_text(messages, self.backends.route_on)
        except IrdeError as exc:
            raise ApiError(400, str(exc), param="messages") from exc
        model = data.get("model")
        if isinstance(model, str) and model not in ROUTER_NAMES:
            if model in self.holder.router.experts:
                return model, "pinned", None
        if text is not None:
            return None, "routed", text
        if self.backends.default is not None:
            return None, "default", None
        text = conversation_text(messages)
        if text is None:
            raise ApiError(
                400,
                "no message has text to route on; send a user message with text content",
                param="messages",
            )
        return None, "routed", text

    async def chat_completions(self, request: Request) -> Response:
        """``POST /v1/chat/completions``: route, forward, stream the backend's answer back."""
        assert self.backends is not None and self.client is not None
        start = time.perf_counter()
        self.check_client(request)
        data = await read_json(request, self.settings.chat_max_body_bytes, "--chat-max-body-bytes")
        expert, decision, text = self._decide(data)
        rid = request_id_of(request.scope)
        explored = False
        if text is not None:
            # the expert served is the one exploration chose, when it explores
            (routed,) = await run_in_threadpool(self.holder.route, [text])
            expert, explored = routed.expert, routed.explored
            self.count_decision(expert, routed.greedy, explored, rid, 0, "chat_completions")
            self.recent.put(rid, text, expert, routed.greedy, explored)
        if expert is None:  # no user text: the default backend
            backend, target = self.backends.default, "the default backend"
            headers = {"x-irde-decision": decision}
        else:
            backend, target = self.backends.for_expert(expert), f"the backend of expert {expert!r}"
            headers = {"x-irde-expert": expert_header(expert), "x-irde-decision": decision}
        if explored:
            headers[EXPLORED] = "1"
        client = request.client.host if request.client else "-"

        def access(status: int) -> None:
            access_log.info(
                '%s "POST %s" %d expert=%s decision=%s model=%s stream=%s request_id=%s %.1fms',
                client,
                request.url.path,
                status,
                log_value(expert) if expert is not None else "-",
                decision,
                log_value(backend.model) if backend else "-",
                bool(data.get("stream")),
                rid,
                1000 * (time.perf_counter() - start),
            )

        try:
            if backend is None:
                raise ApiError(
                    502,
                    f"no backend for expert {expert!r}: the server's operator must add it "
                    'under "experts" in the backends file (or give a "default")',
                    "no_backend",
                    headers=headers,
                )
            body = json.dumps({**data, "model": backend.model}).encode("utf-8")
            upstream = self.client.build_request(
                "POST",
                backend.chat_url,
                content=body,
                headers={**upstream_headers(backend.headers(), request), REQUEST_ID: rid},
            )
            try:
                answer = await self.client.send(upstream, stream=True)
            except httpx.TimeoutException as exc:
                # the URL and the cause go to the log; the client learns the expert only
                log.warning("request %s: %s (%s) timed out: %r", rid, target, backend.chat_url, exc)
                raise ApiError(
                    504,
                    f"{target} did not answer within {self.backends.timeout:g} s "
                    f"({type(exc).__name__}, request id {rid}); retry later",
                    "backend_timeout",
                    headers=headers,
                ) from exc
            except httpx.HTTPError as exc:
                log.warning(
                    "request %s: %s (%s) cannot be reached: %r", rid, target, backend.chat_url, exc
                )
                raise ApiError(
                    502,
                    f"{target} cannot be reached ({type(exc).__name__}); the server log has "
                    f"the details under request id {rid}",
                    "backend_unreachable",
                    headers=headers,
                ) from exc
        except ApiError as exc:
            access(400 if exc.status == 422 else exc.status)
            raise
        access(answer.status_code)

        def failed(what: str) -> None:
            self.metrics.errors.labels("chat_completions", "backend_failed").inc()

        response = StreamingResponse(
            passthrough(answer, target, failed),
            status_code=answer.status_code,
            headers=headers,
            background=BackgroundTask(answer.aclose),
        )
        response.raw_headers.extend(answer_headers(answer))
        return response

    @contextlib.asynccontextmanager
    async def lifespan(self, app: Starlette) -> AsyncIterator[None]:
        """Start the reload watcher and the backend client; stop them on shutdown."""
        quiet = QuietAborts()
        for name in ("uvicorn.error", "uvicorn.asgi"):  # configured by now: filters stay
            logging.getLogger(name).addFilter(quiet)
        if self.backends is not None:
            timeout = httpx.Timeout(self.backends.timeout, connect=self.backends.connect_timeout)
            self.client = httpx.AsyncClient(timeout=timeout, trust_env=False)
        watcher = None
        if self.settings.reload_interval > 0:
            watcher = asyncio.create_task(self._watch(self.settings.reload_interval))
        try:
            yield
        finally:
            if watcher is not None:
                watcher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watcher
            if self.client is not None:
                await self.client.aclose()
            for name in ("uvicorn.error", "uvicorn.asgi"):
                logging.getLogger(name).removeFilter(quiet)

    async def _watch(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await anyio.to_thread.run_sync(self.holder.reload_if_changed)
            except Exception:
                log.exception("checking %s for changes failed", self.holder.path)


def log_value(value: str) -> str:
    """``value`` for a ``key=value`` log field: a plain word as it is, anything else quoted.

    JSON quoting keeps a name with spaces, ``=`` or quotes from adding fields to the line.
    """
    if _PLAIN.fullmatch(value):
        return value
    return json.dumps(value)


def expert_header(expert: str) -> str:
    """The ``x-irde-expert`` value: the name, percent-encoded if it is not printable ASCII."""
    if expert.isascii() and expert.isprintable():
        return expert
    return quote(expert, safe="")


OPENAI_PREFIXES = ("/v1/", "/models", "/chat/completions")


def is_openai_path(path: str) -> bool:
    """Whether ``path`` is one of the OpenAI-compatible endpoints (errors in OpenAI's shape)."""
    return path.startswith(OPENAI_PREFIXES)


async def _not_found(request: Request, exc: Exception) -> Response:
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    detail = exc.detail if isinstance(exc, HTTPException) else "internal server error"
    if status == 404:
        detail = f"no endpoint {quoted(request.url.path)}; see the README for the endpoints"
    elif status == 405:
        detail = f"{quoted(request.method)} is not allowed on {quoted(request.url.path)}"
    kind = {404: "not_found", 405: "method_not_allowed"}.get(status, "http_error")
    return ApiError(status, str(detail), kind).response(is_openai_path(request.url.path))


def _both(path: str, endpoint: Callable, methods: list[str]) -> list[Route]:
    """``path`` and ``path/``: clients that join URLs with a trailing slash get no 307."""
    return [Route(p, endpoint, methods=methods) for p in (path, path + "/")]


def create_app(settings: ServeSettings) -> Starlette:
    """The ASGI app for ``settings``; loads the router (and backends) now, so errors show early.

    Raises:
        IrdeError, FileNotFoundError: the router folder, ``backends.json``, the client keys
            or a CORS origin is not usable.

    """
    for origin in settings.cors_origins:
        problem = cors_origin_problem(origin)
        if problem:
            raise InvalidInputError(problem)
    server = Server(settings)
    e = server.endpoint
    routes = [
        *_both("/route", e("route", server.route), ["POST"]),
        Route("/experts", e("experts_list", server.list_experts), methods=["GET"]),
        Route("/experts", e("experts_add", server.add_expert), methods=["POST"]),
        Route(
            "/experts/{name:path}", e("experts_remove", server.remove_expert), methods=["DELETE"]
        ),
        Route("/feedback", e("feedback", server.feedback, openai=True), methods=["POST"]),
        Route("/healthz", e("healthz", server.healthz), methods=["GET"]),
        Route("/metrics", server.metrics_text, methods=["GET"]),
    ]
    if server.backends is not None:
        chat = e("chat_completions", server.chat_completions, openai=True)
        models = e("models", server.list_models, openai=True)
        model = e("model", server.get_model, openai=True)
        for prefix in ("/v1", ""):  # base URLs with and without /v1
            routes += _both(f"{prefix}/chat/completions", chat, ["POST"])
            routes += _both(f"{prefix}/models", models, ["GET"])
            routes.append(Route(f"{prefix}/models/{{model_id:path}}", model, methods=["GET"]))
    app = Starlette(
        routes=routes, lifespan=server.lifespan, exception_handlers={HTTPException: _not_found}
    )
    if settings.cors_origins:
        app.add_middleware(ScopedCors, origins=list(settings.cors_origins))
    app.add_middleware(RequestIds)  # outermost: CORS preflights and 404s get an id, too
    app.state.server = server
    return app


def app_from_environment() -> Starlette:
    """App factory for ``uvicorn --factory`` and worker processes: settings from the env."""
    text = os.environ.get(SETTINGS_ENV)
    if not text:
        raise RuntimeError(f"{SETTINGS_ENV} is not set; start the server with `irde serve`")
    return create_app(ServeSettings.from_json(text))


def router_of(app: Starlette) -> Router:
    """The router an app serves right now."""
    return app.state.server.holder.router


__all__ = ["ServeSettings", "create_app", "app_from_environment", "router_of"]
