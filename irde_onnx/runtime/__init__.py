"""Light runtime: onnxruntime + numpy + tokenizers. Never imports torch."""

from irde_onnx.runtime.editor import RouterEditor
from irde_onnx.runtime.live import LiveRoute, LiveRouter
from irde_onnx.runtime.router import Route, Router

__all__ = ["LiveRoute", "LiveRouter", "Route", "Router", "RouterEditor"]
