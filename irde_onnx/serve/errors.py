"""Errors of the HTTP API: a status code and a JSON body that says what is wrong."""

from __future__ import annotations

from starlette.responses import JSONResponse


class ApiError(Exception):
    """An error response: ``{"error": {"message", "type", "status"}}`` (OpenAI's shape).

    Args:
        status: the HTTP status code.
        message: what is wrong and how to fix it.
        kind: a short machine-readable type, e.g. ``invalid_request``.
        headers: extra response headers.

    """

    def __init__(
        self,
        status: int,
        message: str,
        kind: str = "invalid_request",
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.kind = kind
        self.headers = headers

    def response(self) -> JSONResponse:
        """The JSON response of this error."""
        body = {"error": {"message": self.message, "type": self.kind, "status": self.status}}
        return JSONResponse(body, status_code=self.status, headers=self.headers)
