"""Passing a backend's answer through the gateway: headers, bytes, and failures mid-answer.

A backend can fail after its status line: it dies, cuts a body short of its
``Content-Length``, or stalls longer than the gateway's ``timeout``. The client already has
a 200, so the only honest signal left is to break the connection (no final chunk): every
HTTP client then raises instead of returning a partial answer as complete. For a stream of
server-sent events the gateway first sends one ``data: {"error": ...}`` event, which the
``openai`` client raises as an ``APIError`` with its message.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Callable

import httpx
from starlette.requests import Request

from irde_onnx.serve.errors import openai_error

log = logging.getLogger("irde.serve")

# headers that describe one hop, not the answer: never passed through (RFC 9110 7.6.1)
HOP_HEADERS = {
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "content-length",
    "te",
    "trailer",
    "upgrade",
    "proxy-authenticate",
    "proxy-authorization",
}
# the gateway writes these itself; a backend's copies would make two of each (a backend that
# is itself an irde gateway sends x-irde-*), and its CORS headers would override the
# gateway's --cors-origin (a backend answering "access-control-allow-origin: *" would open
# the gateway to every web page)
OWN_HEADERS = {"date", "server", "x-irde-expert", "x-irde-decision"}
OWN_PREFIXES = ("access-control-",)
UPSTREAM_ID = "x-upstream-request-id"  # the backend's own x-request-id, renamed


class BackendFailedMidAnswer(Exception):
    """Raised into the ASGI server to abort a response whose backend failed after its start.

    Not a bug of the gateway: the failure is logged as one warning line and counted in
    ``irde_errors_total{type="backend_failed"}``; :class:`QuietAborts` keeps the ASGI
    server from logging it again with a traceback.
    """


class QuietAborts(logging.Filter):
    """Drops the ASGI server's "Exception in ASGI application" record for an abort."""

    def filter(self, record: logging.LogRecord) -> bool:  # noqa: D102
        exc = record.exc_info[1] if record.exc_info else None
        while exc is not None:
            if isinstance(exc, BackendFailedMidAnswer):
                return False
            group = getattr(exc, "exceptions", None)  # starlette may wrap it in a group
            exc = group[0] if group else exc.__cause__ or exc.__context__
        return True


def upstream_headers(base: dict[str, str], request: Request) -> dict[str, str]:
    """The backend request's headers: ``base`` and the client's ``Accept-Encoding``.

    The answer's bytes are passed through unchanged, so the backend may only encode them in
    a way the client accepts: the client's own ``Accept-Encoding``, or ``identity`` when it
    sent none (httpx would otherwise ask for gzip on the client's behalf).
    """
    return {**base, "accept-encoding": request.headers.get("accept-encoding", "identity")}


def answer_headers(answer: httpx.Response) -> list[tuple[bytes, bytes]]:
    """The backend's response headers to pass on, each one apart (two ``Set-Cookie`` stay two).

    Dropped: hop-by-hop headers, any header the backend names in its ``Connection`` header,
    ``date``/``server`` and ``x-irde-*`` (the gateway sends its own) and ``access-control-*``
    (CORS is the gateway's, ``--cors-origin``). The backend's ``x-request-id`` is passed on
    as ``x-upstream-request-id``: the response's ``x-request-id`` is the gateway's.
    """
    named = {
        token.strip().lower()
        for value in answer.headers.get_list("connection")
        for token in value.split(",")
    }
    drop = HOP_HEADERS | OWN_HEADERS | named
    out = []
    for key, value in answer.headers.raw:
        name = key.decode("latin-1").lower()
        if name in drop or name.startswith(OWN_PREFIXES):
            continue
        out.append((UPSTREAM_ID.encode() if name == "x-request-id" else name.encode(), value))
    return out


def _at_event_boundary(tail: bytes) -> bool:
    return tail in (b"",) or tail.endswith((b"\n\n", b"\r\n\r\n", b"\r\r"))


async def passthrough(
    answer: httpx.Response, target: str, on_failure: Callable[[str], None]
) -> AsyncIterator[bytes]:
    """The backend's bytes as they arrive; a failure mid-answer aborts the client's response.

    ``target`` names the backend for messages by its expert ("the backend of expert 'math'"),
    never by its URL. ``on_failure`` is called with a one-line description. The backend
    connection is closed however the stream ends (also when the client leaves).
    """
    events = answer.headers.get("content-type", "").startswith("text/event-stream")
    tail = b""
    try:
        try:
            async for chunk in answer.aiter_raw():
                if chunk:
                    tail = (tail + chunk)[-4:]
                yield chunk
        except httpx.HTTPError as exc:
            kind = "stalled" if isinstance(exc, httpx.TimeoutException) else "failed"
            what = f"{target} {kind} mid-answer ({type(exc).__name__})"
            log.warning("%s: %s", what, exc)
            on_failure(what)
            if events and _at_event_boundary(tail):
                error = openai_error(502, f"{what}; the answer is incomplete", "backend_failed")
                yield f"data: {json.dumps(error)}\n\n".encode()
            raise BackendFailedMidAnswer(what) from None
    finally:
        await answer.aclose()
