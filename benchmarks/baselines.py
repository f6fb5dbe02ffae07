"""Baseline routers on the same features: kNN, logistic regression, an MLP (scikit-learn).

Hyper-parameters are chosen by cross-validation on the training rows only.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

KNN_KS = (1, 3, 5, 10, 20, 50, 100, 200, 500, 1000)
LOGREG_CS = (0.1, 1.0, 10.0)
SEED = 0


def knn_predict(xtr: np.ndarray, ytr: np.ndarray, xte: np.ndarray, k: int) -> np.ndarray:
    """Mean target of the k nearest training rows by cosine similarity."""
    from sklearn.neighbors import KNeighborsRegressor

    knn = KNeighborsRegressor(n_neighbors=min(k, len(xtr)), metric="cosine", algorithm="brute")
    return knn.fit(xtr, ytr).predict(xte)


def knn_classify(xtr: np.ndarray, labels: np.ndarray, xte: np.ndarray, k: int) -> np.ndarray:
    """Class scores (vote shares) of the k nearest training rows by cosine similarity."""
    from sklearn.neighbors import KNeighborsClassifier

    knn = KNeighborsClassifier(n_neighbors=min(k, len(xtr)), metric="cosine", algorithm="brute")
    return knn.fit(xtr, labels).predict_proba(xte)


def logreg_scores(xtr: np.ndarray, ytr: np.ndarray, xte: np.ndarray, c: float) -> np.ndarray:
    """P(LLM answers well) per LLM: one logistic regression each, fractional scores as weights.

    A row with score s counts as a positive with weight s and a negative with weight 1 - s.
    """
    from sklearn.linear_model import LogisticRegression

    out = np.zeros((len(xte), ytr.shape[1]))
    xx = np.vstack([xtr, xtr])
    for k in range(ytr.shape[1]):
        s = np.clip(ytr[:, k], 0.0, 1.0)
        target = np.r_[np.ones(len(xtr)), np.zeros(len(xtr))]
        weight = np.r_[s, 1.0 - s]
        if s.min() == s.max():  # one class only: a constant
            out[:, k] = s[0]
            continue
        model = LogisticRegression(C=c, max_iter=2000)
        model.fit(xx, target, sample_weight=weight)
        out[:, k] = model.predict_proba(xte)[:, 1]
    return out


def logreg_classify(xtr: np.ndarray, labels: np.ndarray, xte: np.ndarray, c: float) -> np.ndarray:
    """Multinomial logistic regression class probabilities."""
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=c, max_iter=2000).fit(xtr, labels).predict_proba(xte)


def mlp_model(classifier: bool, n: int) -> Any:
    """The MLP baseline: one hidden layer of 256, early stopping on 10% of the training rows."""
    from sklearn.neural_network import MLPClassifier, MLPRegressor

    cls = MLPClassifier if classifier else MLPRegressor
    return cls(
        hidden_layer_sizes=(256,),
        early_stopping=n >= 50,
        validation_fraction=0.1,
        max_iter=300,
        random_state=SEED,
    )


def class_columns(p: np.ndarray, train_labels: np.ndarray, classes: list[str]) -> np.ndarray:
    """sklearn's class-probability columns (sorted labels seen in training) in ``classes``."""
    seen = sorted(set(train_labels.tolist()))
    out = np.zeros((len(p), len(classes)))
    out[:, [classes.index(c) for c in seen]] = p
    return out


def static_mean_features(texts: list[str], max_length: int = 256) -> np.ndarray:
    """Mean of the static table's rows over a prompt's content tokens, L2-normalised.

    A cheap stand-in for MiniLM features, used only when the run has no MiniLM encoder
    (``--baseline-features static-mean``: smoke tests).
    """
    from irde_onnx.export.minilm import minilm_tokenizer_file
    from irde_onnx.runtime.tokenize import TextTokenizer

    table = _static_table()
    ids = TextTokenizer(minilm_tokenizer_file(), max_length).content_ids(texts)
    x = np.stack(
        [table[i].mean(axis=0) if len(i) else np.zeros(table.shape[1], np.float32) for i in ids]
    )
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


@functools.lru_cache(maxsize=1)
def _static_table() -> np.ndarray:
    from irde_onnx.export.minilm import minilm_word_embeddings

    return minilm_word_embeddings().astype(np.float16).astype(np.float32)
