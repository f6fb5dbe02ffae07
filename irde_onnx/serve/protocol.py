"""Deadlines and a connection limit for the HTTP connections of ``irde serve``.

uvicorn closes a connection that idles between requests (``timeout_keep_alive``) but starts
no clock on a connection that sends part of its headers, or a body one byte at a time: such
clients were held open until the file-descriptor limit (issue 16, point 10). This subclass of
uvicorn's h11 protocol adds three bounds, all per worker process:

- ``header_timeout``: the request line and headers must be complete this many seconds after
  the connection opened or the previous response ended; else the connection is closed;
- ``body_timeout``: the whole body must arrive within this many seconds of the headers (a
  trickle of bytes does not extend it); else the connection is closed and the handler sees
  a client that left (status 499 in ``irde_requests_total``);
- ``max_connections``: a connection beyond this many open ones gets ``503`` with a JSON error
  and is closed at once.

The h11 implementation is used whether or not ``httptools`` is installed, so these bounds
hold in every install (the routing itself, not HTTP parsing, dominates a request's time).
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

log = logging.getLogger("irde.serve")

HEADER_TIMEOUT = 10.0
BODY_TIMEOUT = 30.0
MAX_CONNECTIONS = 512


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with header and body deadlines and a connection limit."""

    header_timeout: float = HEADER_TIMEOUT
    body_timeout: float = BODY_TIMEOUT
    max_connections: int = MAX_CONNECTIONS

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deadline: asyncio.TimerHandle | None = None

    def _arm(self, delay: float, check: Any) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(delay, check, self.cycle)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _close(self, why: str) -> None:
        if not self.transport.is_closing():
            client = f"{self.client[0]}:{self.client[1]}" if self.client else "a client"
            log.info("closed the connection of %s: %s", client, why)
            self.transport.close()

    def _headers_due(self, cycle: Any) -> None:
        if self.cycle is cycle:  # no new request has started since the clock was set
            self._close(f"no complete request headers within {self.header_timeout:g} s")

    def _body_due(self, cycle: Any) -> None:
        if self.cycle is cycle and cycle.more_body and not cycle.response_complete:
            self._close(f"the request body did not arrive within {self.body_timeout:g} s")

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """Refuse the connection past the limit; else start the clock for its headers."""
        super().connection_made(transport)
        if len(self.connections) > self.max_connections:
            body = json.dumps(
                {
                    "error": {
                        "message": f"the server holds its limit of {self.max_connections} "
                        "connections (--max-connections); retry shortly",
                        "type": "too_many_connections",
                        "status": 503,
                    }
                }
            ).encode()
            transport.write(
                b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n"
                b"retry-after: 1\r\nconnection: close\r\ncontent-length: %d\r\n\r\n%s"
                % (len(body), body)
            )
            log.warning("refused a connection: %d open (--max-connections)", len(self.connections))
            transport.close()
            return
        self._arm(self.header_timeout, self._headers_due)

    def data_received(self, data: bytes) -> None:
        """Feed the parser; once a request's headers are complete, start its body clock."""
        before = self.cycle
        super().data_received(data)
        if self.cycle is not before and self.cycle is not None:
            self._arm(self.body_timeout, self._body_due)

    def on_response_complete(self) -> None:
        """A response ended: the next request's headers are due within ``header_timeout``."""
        before = self.cycle
        super().on_response_complete()  # may start a pipelined request already received
        if not self.transport.is_closing():
            if self.cycle is before:
                self._arm(self.header_timeout, self._headers_due)
            else:
                self._arm(self.body_timeout, self._body_due)

    def connection_lost(self, exc: Exception | None) -> None:
        """Stop the clock."""
        self._disarm()
        super().connection_lost(exc)


def guarded_protocol(
    header_timeout: float = HEADER_TIMEOUT,
    body_timeout: float = BODY_TIMEOUT,
    max_connections: int = MAX_CONNECTIONS,
) -> type[GuardedH11Protocol]:
    """A :class:`GuardedH11Protocol` subclass with these bounds, for ``uvicorn.Config(http=)``."""
    return type(
        "GuardedH11Protocol",
        (GuardedH11Protocol,),
        {
            "header_timeout": float(header_timeout),
            "body_timeout": float(body_timeout),
            "max_connections": int(max_connections),
        },
    )
