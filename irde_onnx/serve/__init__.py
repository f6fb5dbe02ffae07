"""The router as an HTTP service: ``irde serve`` (``pip install "irde-onnx[serve]"``).

Needs starlette, uvicorn, httpx and prometheus-client; the routing runtime never imports
this package.
"""

from __future__ import annotations

from importlib.util import find_spec

from irde_onnx.errors import MissingExtraError

_REQUIRED = {
    "starlette": "starlette",
    "uvicorn": "uvicorn",
    "httpx": "httpx",
    "prometheus_client": "prometheus-client",
}
_missing = [pkg for mod, pkg in _REQUIRED.items() if find_spec(mod) is None]
if _missing:
    raise MissingExtraError(
        f"irde serve needs {', '.join(_missing)}, which are not installed. "
        'Install the serve extra: pip install "irde-onnx[serve]"'
    )

from irde_onnx.serve.app import ServeSettings, create_app  # noqa: E402

__all__ = ["ServeSettings", "create_app"]
