"""``POST /feedback`` helpers: recent prompts by request id, and rows naming them.

The server keeps the text of its most recent routed prompts (``POST /route`` with one
``"text"``, and routed chat completions) keyed by the request id it answered with
(``x-request-id``), so a client can send ``{"request_id", "expert", "outcome"}`` instead of the
prompt. The cache is bounded (least recently routed first out); ids that fell out are
remembered (ids only, bounded too) so that they answer 410 rather than 404. The text, not the
features, is kept: the journal stores the text so that any process can replay it.

Beside the text, the expert the request was routed to is kept (and whether exploration chose
it, ``irde serve --explore``). A bandit row ``{"request_id", "outcome"}`` then gets that
expert, and a row that names another expert for the outcome of an *explored* request is
refused: the outcome belongs to the expert that served it, not to the router's own pick.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from irde_onnx.serve.errors import ApiError

RECENT_PROMPTS = 10_000  # prompts kept for feedback by request id
FORGOTTEN_IDS = 100_000  # evicted ids remembered, to answer 410 instead of 404


@dataclass(frozen=True)
class Served:
    """What the server did with one routed prompt.

    Attributes:
        text: the prompt routed on.
        expert: the expert it was routed to (served by, through the gateway), or None.
        greedy: the router's own pick (differs from ``expert`` when explored), or None.
        explored: True when exploration chose ``expert`` over ``greedy``.

    """

    text: str
    expert: str | None = None
    greedy: str | None = None
    explored: bool = False


class RecentPrompts:
    """A bounded, thread-safe map request id -> :class:`Served`, remembering evicted ids."""

    def __init__(self, size: int = RECENT_PROMPTS, forgotten: int = FORGOTTEN_IDS) -> None:
        self.size, self.forgotten_size = size, forgotten
        self._texts: OrderedDict[str, Served] = OrderedDict()
        self._gone: OrderedDict[str, None] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._texts)

    def put(
        self,
        request_id: str,
        text: str,
        expert: str | None = None,
        greedy: str | None = None,
        explored: bool = False,
    ) -> None:
        """Remember the prompt a request was routed on, and the expert it went to."""
        if self.size <= 0:
            return
        with self._lock:
            self._texts[request_id] = Served(text, expert, greedy or expert, explored)
            self._texts.move_to_end(request_id)
            while len(self._texts) > self.size:
                old, _ = self._texts.popitem(last=False)
                self._gone[old] = None
                if len(self._gone) > self.forgotten_size:
                    self._gone.popitem(last=False)

    def text(self, request_id: str, where: str) -> str:
        """The prompt of ``request_id``; ApiError 404 (unknown) or 410 (expired)."""
        return self.served(request_id, where).text

    def served(self, request_id: str, where: str) -> Served:
        """What was done with ``request_id``; ApiError 404 (unknown) or 410 (expired)."""
        with self._lock:
            served = self._texts.get(request_id)
            gone = request_id in self._gone
        if served is not None:
            return served
        if gone:
            raise ApiError(
                410,
                f"{where}: request id {request_id[:64]!r} has expired from this server's "
                f'cache of the last {self.size} routed prompts; send the prompt as "text"',
                "request_expired",
                param="request_id",
            )
        raise ApiError(
            404,
            f"{where}: unknown request id {request_id[:64]!r}: not routed by this server "
            "process (ids are per process: send feedback to the replica that routed it), "
            'or long expired; send the prompt as "text"',
            "request_not_found",
            param="request_id",
        )


def resolve_rows(rows: object, recent: RecentPrompts) -> list[dict[str, Any]]:
    """Rows with each ``request_id`` replaced by the prompt it was routed on.

    A row with ``"outcome"`` and no ``"expert"`` gets the expert the request was routed to;
    one that names another expert for an explored request is refused (422).
    """
    if not isinstance(rows, list) or not rows:
        raise ApiError(
            422,
            '"rows" must be a non-empty list of {"text" or "request_id", "expert"}, '
            '{..., "scores": {...}} or {..., "expert", "outcome"}',
            param="rows",
        )
    out = []
    for i, row in enumerate(rows):
        if isinstance(row, Mapping) and "request_id" in row:
            rid = row["request_id"]
            if "text" in row:
                raise ApiError(422, f'rows[{i}]: give "text" or "request_id", not both')
            if not isinstance(rid, str):
                raise ApiError(422, f'rows[{i}]: "request_id" must be a string', param="rows")
            served = recent.served(rid, f"rows[{i}]")
            row = {k: v for k, v in row.items() if k != "request_id"}
            row["text"] = served.text
            if "outcome" in row and served.expert is not None:
                if "expert" not in row:
                    row["expert"] = served.expert
                elif served.explored and row["expert"] != served.expert:
                    raise ApiError(
                        422,
                        f"rows[{i}]: request {rid[:64]!r} was explored: expert "
                        f"{served.expert!r} served it (the router's own pick was "
                        f"{served.greedy!r}), so the outcome belongs to {served.expert!r}: "
                        'name that expert or leave "expert" out',
                        param="rows",
                    )
        out.append(row)
    return out
