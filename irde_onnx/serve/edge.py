"""What every request meets before an endpoint: its request id, and CORS for browsers.

**Request ids.** A client's ``X-Request-Id`` is kept if it is usable: the characters
``A-Z a-z 0-9 . _ : / @ + -`` are kept, anything else dropped, and the rest cut to 128
characters; when nothing is left (or none was sent) the server makes one (32 hex digits).
The id is returned in the response's ``x-request-id`` header (also on errors and 404s), is
in the access log line of the gateway, and is sent upstream to the backend. A backend's own
``x-request-id`` comes back as ``x-upstream-request-id``.

**CORS** (``--cors-origin``, off by default) covers the endpoints a browser page calls:
``/route`` and the OpenAI-compatible ones (``/v1/*``, ``/models``, ``/chat/completions``).
Preflight ``OPTIONS`` requests are answered there for listed origins only; responses carry
``Access-Control-Allow-Origin`` for a listed origin and expose ``x-irde-expert``,
``x-irde-decision``, ``x-irde-explored`` and ``x-request-id`` to the page. Expert changes,
``/healthz`` and ``/metrics`` get no CORS headers. No cookies are used, so credentials are
not allowed; a client key travels in the ``Authorization`` header, which preflight allows.
"""

from __future__ import annotations

import re
import uuid
from urllib.parse import urlsplit

from starlette.datastructures import MutableHeaders
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from irde_onnx.errors import InvalidInputError

REQUEST_ID = "x-request-id"
REQUEST_ID_KEY = "irde.request_id"  # where the id is kept in the ASGI scope
MAX_REQUEST_ID = 128
_UNSAFE = re.compile(r"[^A-Za-z0-9._:/@+-]")
EXPOSED = ("x-irde-expert", "x-irde-decision", "x-irde-explored", REQUEST_ID)
CORS_PREFIXES = ("/v1/", "/models", "/chat/completions")
CORS_PATHS = ("/route", "/route/")


def request_id(given: str | None) -> str:
    """The request id for a client's ``X-Request-Id`` value (None: make one)."""
    if given:
        kept = _UNSAFE.sub("", given)[:MAX_REQUEST_ID]
        if kept:
            return kept
    return uuid.uuid4().hex


def request_id_of(scope: Scope) -> str:
    """The id :class:`RequestIds` gave this request (one is made if it did not run)."""
    rid = scope.get(REQUEST_ID_KEY)
    if rid is None:
        rid = scope[REQUEST_ID_KEY] = uuid.uuid4().hex
    return rid


class RequestIds:
    """ASGI middleware: give each request its id and return it in ``x-request-id``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve the request with its id in the scope and in the response headers."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = None
        for key, value in scope.get("headers", ()):
            if key == b"x-request-id":
                given = value.decode("latin-1")
                break
        rid = scope[REQUEST_ID_KEY] = request_id(given)

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message)[REQUEST_ID] = rid
            await send(message)

        await self.app(scope, receive, send_with_id)


def cors_origin_problem(origin: str) -> str | None:
    """Why ``origin`` (``--cors-origin``) can never match a browser's ``Origin`` header."""
    if origin == "*":
        return None
    parts = urlsplit(origin)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return (
            f"--cors-origin {origin!r} is not an origin: give scheme://host[:port], "
            "e.g. https://chat.example.com or http://localhost:5173 (or * for any)"
        )
    if parts.path or parts.query or parts.fragment or parts.username or parts.password:
        bare = f"{parts.scheme}://{parts.hostname}" + (f":{parts.port}" if parts.port else "")
        return (
            f"--cors-origin {origin!r} has more than an origin (a path, a trailing slash, "
            f"a query or a user); browsers send scheme://host[:port] only: use {bare}"
        )
    return None


class ScopedCors:
    """Starlette's CORSMiddleware on the paths a browser page calls, the app elsewhere."""

    def __init__(self, app: ASGIApp, origins: list[str]) -> None:
        for origin in origins:
            problem = cors_origin_problem(origin)
            if problem:
                raise InvalidInputError(problem)
        self.app = app
        self.cors = CORSMiddleware(
            app,
            allow_origins=[o.lower() for o in origins],
            allow_methods=["GET", "POST", "OPTIONS"],
            allow_headers=["*"],  # the openai JS client sends x-stainless-* headers, too
            expose_headers=list(EXPOSED),
            allow_credentials=False,
            max_age=600,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """CORS on the browser-facing paths, the app as it is on the others."""
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if path in CORS_PATHS or path.startswith(CORS_PREFIXES):
            await self.cors(scope, receive, send)
        else:
            await self.app(scope, receive, send)
