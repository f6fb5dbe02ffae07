"""Errors of the HTTP API: a status code and a JSON body that says what is wrong.

Two shapes, one per family of endpoints:

- ``/route``, ``/experts``, ``/healthz``: ``{"error": {"message", "type", "status"}}``, where
  ``type`` is this server's own short name (``invalid_request``, ``request_too_large`` ...);
- the OpenAI-compatible ``/v1/*`` (and ``/models``, ``/chat/completions``): OpenAI's shape,
  ``{"error": {"message", "type", "param", "code"}}``, where ``type`` is one of OpenAI's
  names (``invalid_request_error``, ``authentication_error``, ``not_found_error`` ...), the
  server's own name is the ``code``, and a field check that is a 422 elsewhere is a 400,
  as OpenAI answers it. OpenAI's clients read these into their exception's ``message``,
  ``type``, ``param`` and ``code``.
"""

from __future__ import annotations

from starlette.responses import JSONResponse

# OpenAI's error types by HTTP status; anything else of 5xx is an api_error
OPENAI_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    409: "invalid_request_error",
    413: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
}


def openai_type(status: int) -> str:
    """OpenAI's error ``type`` for an HTTP status."""
    return OPENAI_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")


def openai_error(
    status: int, message: str, code: str | None = None, param: str | None = None
) -> dict:
    """An error body in OpenAI's shape."""
    error = {"message": message, "type": openai_type(status), "param": param, "code": code}
    return {"error": error}


class ApiError(Exception):
    """An error response (see the module docstring for its two shapes).

    Args:
        status: the HTTP status code.
        message: what is wrong and how to fix it.
        kind: a short machine-readable name, e.g. ``invalid_request`` (OpenAI shape: ``code``).
        headers: extra response headers.
        param: the request field at fault, if one is (OpenAI shape only).

    """

    def __init__(
        self,
        status: int,
        message: str,
        kind: str = "invalid_request",
        headers: dict[str, str] | None = None,
        param: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.kind = kind
        self.headers = headers
        self.param = param

    def response(self, openai: bool = False) -> JSONResponse:
        """The JSON response of this error; ``openai``: OpenAI's shape, 422 answered as 400."""
        if openai:
            status = 400 if self.status == 422 else self.status
            body = openai_error(status, self.message, self.kind, self.param)
        else:
            status = self.status
            body = {"error": {"message": self.message, "type": self.kind, "status": status}}
        return JSONResponse(body, status_code=status, headers=self.headers)
