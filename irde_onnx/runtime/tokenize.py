"""Tokenization outside the graph (``tokenizers``), batched and padded with numpy."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence

import numpy as np
from tokenizers import Tokenizer

from irde_onnx.errors import InvalidInputError, RouterFormatError


def check_texts(texts: Sequence[str]) -> list[str]:
    """Return ``texts`` as a list, or raise if it is not a sequence of strings."""
    if isinstance(texts, str):
        raise InvalidInputError("texts must be a list of strings, not one string: wrap it in [...]")
    try:
        out = list(texts)
    except TypeError as exc:
        raise InvalidInputError(
            f"texts must be a list of strings, got {type(texts).__name__}") from exc
    for i, t in enumerate(out):
        if not isinstance(t, str):
            raise InvalidInputError(f"texts[{i}] is {type(t).__name__}, not a string")
    return out


class TextTokenizer:
    """A ``tokenizer.json`` with truncation to ``max_length`` and no built-in padding."""

    def __init__(self, path: str | os.PathLike, max_length: int) -> None:
        try:
            tok = Tokenizer.from_file(str(path))
        except Exception as exc:  # tokenizers raises a bare Exception on bad files
            raise RouterFormatError(f"{path} is not a readable tokenizer.json: {exc}") from exc
        if max_length < 2:
            raise InvalidInputError(f"max_length must be >= 2, got {max_length}")
        tok.no_padding()
        tok.enable_truncation(max_length)
        self.tokenizer = tok
        self.max_length = max_length
        self.vocab_size = tok.get_vocab_size()
        pad = tok.token_to_id("[PAD]")
        self.pad_id = 0 if pad is None else pad
        # encode_batch_fast (tokenizers >= 0.21) skips the character offsets we never use
        self._encode_batch = getattr(tok, "encode_batch_fast", tok.encode_batch)
        self.special_ids = np.array(
            sorted(i for i, t in tok.get_added_tokens_decoder().items() if t.special),
            dtype=np.int64,
        )

    def encode(self, texts: Sequence[str]) -> list[np.ndarray]:
        """Token ids of each text, special tokens included, truncated."""
        return [np.asarray(e.ids, dtype=np.int64) for e in self._encode_batch(list(texts))]

    def content_ids(self, texts: Sequence[str]) -> list[np.ndarray]:
        """Token ids of each text without special tokens (what the static router counts)."""
        return [ids[~np.isin(ids, self.special_ids)] for ids in self.encode(texts)]

    def batches(
        self, texts: Sequence[str], batch_size: int
    ) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Yield ``(indices, input_ids, attention_mask)``, texts of similar length together."""
        if batch_size < 1:
            raise InvalidInputError(f"batch_size must be >= 1, got {batch_size}")
        encoded = self.encode(texts)
        lengths = [len(e) for e in encoded]
        if len(encoded) <= batch_size:
            order = np.arange(len(encoded))  # one call: no need to sort
        else:
            order = np.argsort(lengths, kind="stable")
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            width = max(1, max(lengths[i] for i in idx))
            ids = np.full((len(idx), width), self.pad_id, dtype=np.int64)
            mask = np.zeros((len(idx), width), dtype=np.int64)
            for row, i in enumerate(idx):
                ids[row, : lengths[i]] = encoded[i]
                mask[row, : lengths[i]] = 1
            yield idx, ids, mask
