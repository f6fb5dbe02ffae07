"""Prove an export: run the saved graph in onnxruntime and compare with a reference."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from irde_onnx.errors import ExportValidationError
from irde_onnx.learning.static_scores import static_scores
from irde_onnx.learning.tiny_features import TinyTable, tiny_scores
from irde_onnx.runtime.router import Router
from irde_onnx.runtime.tokenize import prepare_text

PROBE_TEXTS = [
    "What is the derivative of x^3 + 2x with respect to x?",
    "def fib(n):\n    return n if n < 2 else fib(n - 1) + fib(n - 2)  # make this faster",
    "Is a verbal agreement to sell land enforceable under the statute of frauds?",
    "请介绍一下唐朝的历史和文化。",
    "",
    "A 54-year-old man presents with crushing chest pain radiating to the left arm. " * 8,
]
FEATURE_ATOL_FP32 = 1e-4
MIN_COSINE_INT8 = 0.95
SCORE_ATOL = 1e-4
STATIC_ATOL = 1e-5
TINY_ATOL = 1e-5


@dataclass(frozen=True)
class ValidationReport:
    """What was compared and the worst difference seen."""

    reference: str
    metric: str
    value: float
    tolerance: float
    scores_max_abs_diff: float

    def as_dict(self) -> dict[str, object]:
        """JSON-ready."""
        return dict(self.__dict__)


# features of texts (already cut to the router's view) from the encoder's own library:
# reference(texts, max_length, layers), e.g. irde_onnx.export.minilm.minilm_reference_features
ReferenceFeatures = Callable[[list[str], int, tuple[int, ...]], np.ndarray]


def validate_pooled(
    router: Router, w: np.ndarray, b: np.ndarray, reference: ReferenceFeatures
) -> ValidationReport:
    """Graph features against ``reference`` (transformers); graph scores against numpy.

    The reference is passed in (the encoder's export module holds it), so this module does
    not import the export it proves.
    """
    cfg = router.config
    feats = router.features(PROBE_TEXTS).astype(np.float64)
    scores = router.scores(PROBE_TEXTS).astype(np.float64)
    # the reference sees the text the router tokenizes (its input view applied)
    viewed = [prepare_text(t, cfg.max_length, cfg.view) for t in PROBE_TEXTS]
    ref = reference(viewed, cfg.max_length, cfg.layers)
    if cfg.precision == "fp32":
        metric, value, tol = "max_abs_diff", float(np.abs(feats - ref).max()), FEATURE_ATOL_FP32
        ok = value <= tol
    else:
        cos = (feats * ref).sum(1) / (np.linalg.norm(feats, axis=1) * np.linalg.norm(ref, axis=1))
        metric, value, tol = "min_cosine", float(cos.min()), MIN_COSINE_INT8
        ok = value >= tol
    if not ok:
        raise ExportValidationError(
            f"exported {cfg.encoder} {cfg.precision} features differ from transformers: "
            f"{metric}={value:.3g}, tolerance {tol:g}"
        )
    diff = float(np.abs(scores - (feats @ w + b)).max())
    if diff > SCORE_ATOL:
        raise ExportValidationError(
            f"graph scores differ from features @ W + b by {diff:.3g} (tolerance {SCORE_ATOL:g})"
        )
    return ValidationReport("transformers", metric, value, tol, diff)


def validate_static(
    router: Router, table: np.ndarray, token_mask: np.ndarray, w: np.ndarray, b: np.ndarray
) -> ValidationReport:
    """Graph scores and decisions against :func:`static_scores` (numpy)."""
    cfg = router.config
    worst = 0.0
    scores = router.scores(PROBE_TEXTS)  # masked per row: padding does not change a row
    for idx, ids, mask in router.tokenizer.batches(PROBE_TEXTS, 4):
        got = scores[idx]
        ref, _ = static_scores(ids, mask, table, token_mask, w, b, cfg.strategy, cfg.top_k_tokens)
        worst = max(worst, float(np.abs(got - ref).max()))
        if not np.array_equal(got.argmax(1), ref.argmax(1)):
            raise ExportValidationError(
                f"static {cfg.strategy} graph picks other experts than the numpy reference "
                f"for texts {idx.tolist()}"
            )
    if worst > STATIC_ATOL:
        raise ExportValidationError(
            f"static graph scores differ from numpy by {worst:.3g} (tolerance {STATIC_ATOL:g})"
        )
    return ValidationReport("numpy", "max_abs_diff", worst, STATIC_ATOL, worst)


def validate_tiny(
    router: Router, table: TinyTable, normalize: bool, w: np.ndarray, b: np.ndarray
) -> ValidationReport:
    """Graph features, scores and decisions against :func:`tiny_scores` (numpy)."""
    worst = 0.0
    feats = router.features(PROBE_TEXTS)
    scores = router.scores(PROBE_TEXTS)
    for idx, ids, mask in router.tokenizer.batches(PROBE_TEXTS, 4):
        ref, ref_feats = tiny_scores(ids, mask, table, w, b, normalize)
        worst = max(
            worst,
            float(np.abs(scores[idx] - ref).max()),
            float(np.abs(feats[idx] - ref_feats).max()),
        )
        if not np.array_equal(scores[idx].argmax(1), ref.argmax(1)):
            raise ExportValidationError(
                f"tiny graph picks other experts than the numpy reference for texts {idx.tolist()}"
            )
    if worst > TINY_ATOL:
        raise ExportValidationError(
            f"tiny graph features or scores differ from numpy by {worst:.3g} "
            f"(tolerance {TINY_ATOL:g})"
        )
    return ValidationReport("numpy", "max_abs_diff", worst, TINY_ATOL, worst)
