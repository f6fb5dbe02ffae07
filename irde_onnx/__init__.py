"""irde-onnx: the IR3DE ridge-regression prompt router as one ONNX graph.

``from irde_onnx import Router`` needs only the base install (onnxruntime, numpy, tokenizers).
Training and export live in :mod:`irde_onnx.export` (``pip install "irde-onnx[export]"``).
"""

from irde_onnx._version import __version__
from irde_onnx.errors import (
    ExportValidationError,
    InvalidInputError,
    IrdeError,
    MissingExtraError,
    RouterBusyError,
    RouterChangedError,
    RouterFileError,
    RouterFormatError,
)
from irde_onnx.runtime import LiveRoute, LiveRouter, Route, Router, RouterEditor

__all__ = [
    "__version__",
    "ExportValidationError",
    "InvalidInputError",
    "IrdeError",
    "LiveRoute",
    "LiveRouter",
    "MissingExtraError",
    "Route",
    "Router",
    "RouterBusyError",
    "RouterChangedError",
    "RouterEditor",
    "RouterFileError",
    "RouterFormatError",
]
