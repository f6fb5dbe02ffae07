"""Light runtime: onnxruntime + numpy + tokenizers. Never imports torch."""

from irde_onnx.runtime.editor import RouterEditor
from irde_onnx.runtime.live import LiveRouter
from irde_onnx.runtime.router import Route, Router

__all__ = ["LiveRouter", "Route", "Router", "RouterEditor"]
