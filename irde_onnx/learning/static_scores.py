"""Numpy reference of the static (token-level) router, mirroring its ONNX graph.

Used to validate every static export and in tests. All arithmetic is float32, as in the graph.
"""

from __future__ import annotations

import numpy as np

ENTROPY_FLOOR = 1e-30
INVALID_ENTROPY = 1e9


def _softmax(x: np.ndarray, axis: int) -> np.ndarray:
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def static_scores(
    input_ids: np.ndarray,
    attention_mask: np.ndarray,
    table: np.ndarray,
    token_mask: np.ndarray,
    w: np.ndarray,
    b: np.ndarray,
    strategy: str,
    top_k_tokens: int = 10,
) -> tuple[np.ndarray, np.ndarray]:
    """Scores of the static router and the vote counts behind them.

    Args:
        input_ids: (batch, sequence) token ids.
        attention_mask: (batch, sequence), 1 for real tokens.
        table: (vocab, d) embedding table (as stored: fp16 or fp32).
        token_mask: (vocab,) 1.0 for tokens that count, 0.0 for special tokens.
        w: (d, E) head weights.
        b: (E,) head bias.
        strategy: ``mean``, ``vote`` or ``entropy_top_k``.
        top_k_tokens: k of ``entropy_top_k``.

    Returns:
        ``(scores, votes)``, both (batch, E). For ``vote`` and ``entropy_top_k`` the score is
        the vote share plus ``softmax(mean score) / (voters + 1)``, a tie-breaker smaller than
        one vote, so argmax(scores) is the majority with ties going to the best mean score.
        For ``mean`` the votes are zeros.

    """
    w = np.asarray(w, np.float32)
    b = np.asarray(b, np.float32)
    emb = np.asarray(table)[input_ids].astype(np.float32)
    valid = np.asarray(token_mask, np.float32)[input_ids] * attention_mask.astype(np.float32)
    n = valid.sum(axis=1, keepdims=True)
    pooled = (emb * valid[..., None]).sum(axis=1) / np.maximum(n, np.float32(1.0))
    mean_scores = pooled @ w + b
    votes = np.zeros_like(mean_scores)
    if strategy == "mean":
        return mean_scores, votes
    tok = emb @ w + b
    best = tok.argmax(axis=-1)
    voters = valid
    if strategy == "entropy_top_k":
        p = _softmax(tok, axis=-1)
        ent = -(p * np.log(np.maximum(p, np.float32(ENTROPY_FLOOR)))).sum(axis=-1)
        ent = ent + (1.0 - valid) * np.float32(INVALID_ENTROPY)
        k = min(top_k_tokens, input_ids.shape[1])
        sel = np.argsort(ent, axis=1, kind="stable")[:, :k]
        voters = np.zeros_like(valid)
        np.put_along_axis(voters, sel, np.take_along_axis(valid, sel, axis=1), axis=1)
    elif strategy != "vote":
        raise ValueError(f"unknown strategy {strategy!r}")
    onehot = np.eye(w.shape[1], dtype=np.float32)[best]
    votes = (onehot * voters[..., None]).sum(axis=1)
    nv = voters.sum(axis=1, keepdims=True)
    scores = votes / np.maximum(nv, np.float32(1.0)) + _softmax(mean_scores, axis=1) / (nv + 1.0)
    return scores, votes
