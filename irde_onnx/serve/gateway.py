"""OpenAI-compatible gateway: route a chat request, forward it to the chosen expert's backend.

``backends.json``::

    {
      "experts": {
        "math": {"base_url": "http://127.0.0.1:9001/v1", "model": "qwen-math",
                 "api_key_env": "MATH_API_KEY"},
        "law":  {"base_url": "http://10.0.0.7:8000/v1", "model": "saul-7b"}
      },
      "default": {"base_url": "http://127.0.0.1:9000/v1", "model": "general"},
      "route_on": "last_user",
      "timeout": 60,
      "connect_timeout": 5
    }

``route_on`` is ``last_user`` (the last user message, default) or ``all_user`` (every user
message, joined). ``default`` serves experts with no entry (e.g. one added at run time) and
conversations with no user text.

A request's ``model`` that names an expert pins it: the router is not asked. ``irde`` (the
gateway's own model, :data:`ROUTER_MODEL`), ``auto`` and any other name are routed.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from irde_onnx.errors import InvalidInputError

ROUTE_ON = ("last_user", "all_user")
ROUTER_MODEL = "irde"  # the model id of "route it" in /v1/models
ROUTER_NAMES = (ROUTER_MODEL, "auto")  # always routed, even if an expert has this name
_KEYS = {"experts", "default", "route_on", "timeout", "connect_timeout"}
_BACKEND_KEYS = {"base_url", "model", "api_key_env"}


@dataclass(frozen=True)
class Backend:
    """One OpenAI-compatible endpoint: where to send a request and which model to ask for."""

    base_url: str
    model: str
    api_key_env: str | None = None

    @property
    def chat_url(self) -> str:
        """The chat completions URL."""
        return self.base_url.rstrip("/") + "/chat/completions"

    def headers(self) -> dict[str, str]:
        """Request headers: JSON, and the bearer key from ``api_key_env`` when set."""
        headers = {
            "content-type": "application/json",
            "accept": "application/json, text/event-stream",
        }
        key = os.environ.get(self.api_key_env) if self.api_key_env else None
        if key:
            headers["authorization"] = f"Bearer {key}"
        return headers


@dataclass(frozen=True)
class Backends:
    """The gateway's configuration (see the module docstring)."""

    experts: Mapping[str, Backend]
    default: Backend | None = None
    route_on: str = "last_user"
    timeout: float = 60.0
    connect_timeout: float = 5.0
    source: str = field(default="backends.json", compare=False)

    def for_expert(self, expert: str) -> Backend | None:
        """The backend of ``expert``, else the default one, else None."""
        return self.experts.get(expert, self.default)


def _backend(where: str, value: Any) -> Backend:
    if not isinstance(value, dict):
        raise InvalidInputError(f'{where} must be an object {{"base_url", "model"}}')
    unknown = sorted(set(value) - _BACKEND_KEYS)
    if unknown:
        raise InvalidInputError(
            f"{where}: unknown key(s) {unknown}; allowed {sorted(_BACKEND_KEYS)}"
        )
    url, model = value.get("base_url"), value.get("model")
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise InvalidInputError(f'{where}: "base_url" must be an http(s) URL, got {url!r}')
    if not isinstance(model, str) or not model:
        raise InvalidInputError(f'{where}: "model" must be a non-empty string')
    env = value.get("api_key_env")
    if env is not None and not (isinstance(env, str) and env):
        raise InvalidInputError(f'{where}: "api_key_env" must name an environment variable')
    return Backend(url, model, env)


def load_backends(path: str | os.PathLike) -> Backends:
    """Read and check ``backends.json``; errors name the file, the key and the fix."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"backends file not found: {path}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidInputError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise InvalidInputError(f'{path} must hold an object {{"experts": {{...}}}}')
    unknown = sorted(set(data) - _KEYS)
    if unknown:
        raise InvalidInputError(f"{path}: unknown key(s) {unknown}; allowed {sorted(_KEYS)}")
    experts = data.get("experts", {})
    if not isinstance(experts, dict):
        raise InvalidInputError(f'{path}: "experts" must map expert names to backends')
    backends = {name: _backend(f"{path}: experts.{name}", v) for name, v in experts.items()}
    default = _backend(f"{path}: default", data["default"]) if "default" in data else None
    if not backends and default is None:
        raise InvalidInputError(f'{path}: give "experts" with at least one backend, or a "default"')
    route_on = data.get("route_on", "last_user")
    if route_on not in ROUTE_ON:
        raise InvalidInputError(
            f'{path}: "route_on" must be one of {list(ROUTE_ON)}, got {route_on!r}'
        )
    timeouts = {}
    for key, default_value in (("timeout", 60.0), ("connect_timeout", 5.0)):
        value = data.get(key, default_value)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            raise InvalidInputError(f'{path}: "{key}" must be a number of seconds > 0')
        timeouts[key] = float(value)
    return Backends(
        backends, default, route_on, timeouts["timeout"], timeouts["connect_timeout"], str(path)
    )


def _content_text(content: Any) -> str | None:
    """The text of a message's content: a string, or the text parts of a list of parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = [
            p.get("text")
            for p in content
            if isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str)
        ]
        return "\n".join(texts) if texts else None
    return None


def prompt_text(messages: Any, route_on: str = "last_user") -> str | None:
    """The text a chat request is routed on; None when no user message has text.

    A conversation with no user text (only a system prompt, say) is sent to the ``default``
    backend by the gateway, or routed on :func:`conversation_text` when there is none.

    Raises:
        InvalidInputError: ``messages`` is not a non-empty list of ``{"role", ...}`` objects.

    """
    if not isinstance(messages, list) or not messages:
        raise InvalidInputError('"messages" must be a non-empty list of {"role", "content"}')
    user: list[str] = []
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise InvalidInputError(f'messages[{i}] must be an object with a string "role"')
        if message["role"] == "user":
            text = _content_text(message.get("content"))
            if text is not None:
                user.append(text)
    if not user:
        return None
    return user[-1] if route_on == "last_user" else "\n\n".join(user)


def conversation_text(messages: list[dict[str, Any]]) -> str | None:
    """The text of every message with text, joined (None: no message has any)."""
    texts = [t for m in messages if (t := _content_text(m.get("content"))) is not None]
    return "\n\n".join(texts) if texts else None
