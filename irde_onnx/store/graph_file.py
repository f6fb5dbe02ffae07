"""Reading and writing ``router.onnx``: encoder weights external, the head inline.

``router.onnx`` holds the graph, the head initializers and small constants;
``router.onnx.data`` holds the encoder's weights. A change rewrites the small file alone (the
proto without its external data), so the encoder bytes are never touched.
Needs the ``onnx`` package, a base dependency that routing alone never imports.
"""

from __future__ import annotations

import io
import os
import sys
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper
from onnx.external_data_helper import (
    ExternalDataInfo,
    load_external_data_for_tensor,
    set_external_data,
    uses_external_data,
)

from irde_onnx.errors import RouterFormatError
from irde_onnx.graph.metadata import graph_metadata, set_metadata
from irde_onnx.learning.statistics import RouterStats
from irde_onnx.store.config import DATA_FILE, HEAD_B, HEAD_W, RouterConfig, fingerprint
from irde_onnx.store.folder import Generation

# tensors of at least this many bytes (sys.getsizeof of their raw data) go to the data file
EXTERNAL_THRESHOLD = 1024


def split_external(model: onnx.ModelProto) -> tuple[bytes, bytes]:
    """``(router.onnx, router.onnx.data)`` bytes of ``model``, split in memory.

    Every large tensor but the head moves to the data file, laid out exactly as
    ``onnx.save_model`` writes it (so the bytes and the fingerprint stay as they were).
    """
    model = onnx.ModelProto.FromString(model.SerializeToString())
    data = bytearray()
    for tensor in model.graph.initializer:
        if tensor.name in (HEAD_W, HEAD_B):
            tensor.data_location = onnx.TensorProto.DEFAULT  # set, as save_model's path did
            continue
        if not tensor.HasField("raw_data"):
            continue
        if sys.getsizeof(tensor.raw_data) < EXTERNAL_THRESHOLD:
            continue
        offset = len(data)
        data += tensor.raw_data
        set_external_data(tensor, DATA_FILE, offset, len(tensor.raw_data))
        tensor.ClearField("raw_data")
    return model.SerializeToString(), bytes(data)


def parse_graph(graph: bytes, where: str) -> onnx.ModelProto:
    """The proto of ``router.onnx`` bytes (external data stays where it is)."""
    try:
        return onnx.ModelProto.FromString(graph)
    except Exception as exc:  # protobuf's DecodeError and friends
        raise RouterFormatError(f"{where} is not a readable ONNX file: {exc}") from exc


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


def read_head(
    graph: str | os.PathLike | bytes, where: str = "the graph"
) -> tuple[np.ndarray, np.ndarray]:
    """The head ``(W, b)`` stored in ``router.onnx`` (a path or its bytes)."""
    if isinstance(graph, bytes):
        model = parse_graph(graph, where)
    else:
        model, where = load_graph_proto(graph), str(graph)
    heads = {
        t.name: numpy_helper.to_array(t)
        for t in model.graph.initializer
        if t.name in (HEAD_W, HEAD_B)
    }
    if set(heads) != {HEAD_W, HEAD_B}:
        raise RouterFormatError(f"{where} has no head initializers {HEAD_W} and {HEAD_B}")
    return heads[HEAD_W], heads[HEAD_B]


def read_initializer(
    graph: bytes, name: str, external: Path | Mapping[str, bytes], where: str = "the graph"
) -> np.ndarray:
    """One initializer of ``router.onnx`` bytes.

    Its data is read from ``external`` if it lives there (the router folder, or
    ``{file name: bytes}``).
    """
    for tensor in parse_graph(graph, where).graph.initializer:
        if tensor.name != name:
            continue
        if uses_external_data(tensor):
            if isinstance(external, Mapping):
                info = ExternalDataInfo(tensor)
                blob = external[info.location]
                start = info.offset or 0
                end = start + info.length if info.length else len(blob)
                tensor.raw_data = blob[start:end]
                tensor.data_location = onnx.TensorProto.DEFAULT
                del tensor.external_data[:]
            else:
                load_external_data_for_tensor(tensor, str(external))
        return numpy_helper.to_array(tensor)
    raise RouterFormatError(f"{where} has no initializer {name}")


def new_generation(
    model: onnx.ModelProto,
    config: RouterConfig,
    tokenizer: bytes,
    stats: RouterStats | None = None,
) -> Generation:
    """A fresh router in memory: ``model`` (all weights inline) split as saved.

    ``config`` gets the fingerprint of the encoder files; its metadata goes into the graph.

    ``stats`` (given the same fingerprint) are serialised as ``stats.npz``; without them the
    generation is for :meth:`Router.open` with statistics given there.
    """
    set_metadata(model, graph_metadata(config))
    graph, data = split_external(model)
    fp = fingerprint(
        (tokenizer, data),
        config.encoder,
        config.precision,
        config.max_length,
        config.view,
        tuple(config.layers),
    )
    config = replace(config, fingerprint=fp)
    blob = None
    if stats is not None:
        stats = stats.copy()
        stats.fingerprint = fp
        buffer = io.BytesIO()
        stats.save(buffer)
        blob = buffer.getvalue()
    return Generation(config, graph, blob, tokenizer=tokenizer, data=data)
