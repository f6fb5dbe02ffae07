"""Light runtime: onnxruntime + numpy + tokenizers. Never imports torch."""

from irde_onnx.runtime.router import Route, Router

__all__ = ["Route", "Router"]
