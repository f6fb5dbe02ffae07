"""Reading and writing ``router.onnx``: encoder weights external, the head inline.

``router.onnx`` holds the graph, the head initializers and small constants;
``router.onnx.data`` holds the encoder's weights. Rewriting the head loads the small file
without its external data and writes it back, so the encoder bytes are never touched.
Needs the ``onnx`` package, a base dependency that routing alone never imports.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from irde_onnx.errors import RouterFormatError
from irde_onnx.store.config import DATA_FILE, HEAD_B, HEAD_W


def save_router_graph(model: onnx.ModelProto, path: str | os.PathLike) -> None:
    """Save ``model`` to ``path`` with every large tensor but the head in ``router.onnx.data``."""
    from onnx.external_data_helper import convert_model_to_external_data

    path = Path(path)
    (path.parent / DATA_FILE).unlink(missing_ok=True)
    convert_model_to_external_data(
        model, all_tensors_to_one_file=True, location=DATA_FILE, size_threshold=1024
    )
    for tensor in model.graph.initializer:
        if tensor.name in (HEAD_W, HEAD_B):
            del tensor.external_data[:]
            tensor.data_location = onnx.TensorProto.DEFAULT
    onnx.save_model(model, str(path))


def load_graph_proto(path: str | os.PathLike) -> onnx.ModelProto:
    """Load ``router.onnx`` without its external data (fast; the encoder stays on disk)."""
    try:
        return onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf's DecodeError and friends
        raise RouterFormatError(f"{path} is not a readable ONNX file: {exc}") from exc


def replace_head(model: onnx.ModelProto, w: np.ndarray, b: np.ndarray) -> None:
    """Replace the ``head.W``/``head.b`` initializers of ``model`` in place."""
    found = set()
    for tensor in model.graph.initializer:
        if tensor.name in (HEAD_W, HEAD_B):
            arr = w if tensor.name == HEAD_W else b
            tensor.CopyFrom(
                numpy_helper.from_array(np.ascontiguousarray(arr, np.float32), tensor.name)
            )
            found.add(tensor.name)
    if found != {HEAD_W, HEAD_B}:
        raise RouterFormatError(f"the graph has no head initializers {HEAD_W} and {HEAD_B}")


def read_head(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """The head ``(W, b)`` stored in ``router.onnx``."""
    model = load_graph_proto(path)
    heads = {
        t.name: numpy_helper.to_array(t)
        for t in model.graph.initializer
        if t.name in (HEAD_W, HEAD_B)
    }
    if set(heads) != {HEAD_W, HEAD_B}:
        raise RouterFormatError(f"{path} has no head initializers {HEAD_W} and {HEAD_B}")
    return heads[HEAD_W], heads[HEAD_B]


def read_initializer(path: str | os.PathLike, name: str) -> np.ndarray:
    """One initializer of ``router.onnx``, read from the external data file if it lives there."""
    from onnx.external_data_helper import load_external_data_for_tensor, uses_external_data

    model = load_graph_proto(path)
    for tensor in model.graph.initializer:
        if tensor.name == name:
            if uses_external_data(tensor):
                load_external_data_for_tensor(tensor, str(Path(path).parent))
            return numpy_helper.to_array(tensor)
    raise RouterFormatError(f"{path} has no initializer {name}")
