"""``irde.*`` entries of the ONNX ``metadata_props``: expert names travel with the graph."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import onnx

    from irde_onnx.store.config import RouterConfig


def graph_metadata(config: RouterConfig) -> dict[str, object]:
    """What a host that reads only the graph needs to interpret ``scores``."""
    return {
        "experts": list(config.experts),
        "encoder": config.encoder,
        "precision": config.precision,
        "strategy": config.strategy,
        "max_length": config.max_length,
        "view": config.view,
        "layers": list(config.layers),
        "format_version": config.format_version,
        "package_version": config.package_version,
    }


def set_metadata(model: onnx.ModelProto, meta: dict[str, object]) -> None:
    """Write ``irde.<key>`` entries (strings as is, other values JSON-encoded)."""
    import onnx

    keep = [p for p in model.metadata_props if not p.key.startswith("irde.")]
    del model.metadata_props[:]
    model.metadata_props.extend(keep)
    for key, value in meta.items():
        text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
        model.metadata_props.append(onnx.StringStringEntryProto(key=f"irde.{key}", value=text))
