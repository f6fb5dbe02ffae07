"""Tokenization outside the graph (``tokenizers``), batched and padded with numpy."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Sequence

import numpy as np
from tokenizers import Tokenizer

from irde_onnx.errors import InvalidInputError, RouterFormatError
from irde_onnx.views import DEFAULT_VIEW, apply_view, check_view

# A prompt is cut to ``max_length * MAX_CHARS_PER_TOKEN`` code points before tokenizing, so
# tokenizing costs the same time and memory for a 1 MB prompt as for an 8 KB one. A token
# spans far fewer characters than this in any text a router is shown, so prompts that fit
# are tokenized exactly as before; every host (Python, Node, browser) applies the same cut.
MAX_CHARS_PER_TOKEN = 32
_SURROGATE = re.compile("[\ud800-\udfff]")


def prepare_text(text: str, max_length: int, view: str = DEFAULT_VIEW) -> str:
    """The text every host tokenizes: well-formed, viewed, and cut to a bound from max_length.

    Texts are read as UTF-16, as JavaScript holds them: a surrogate pair stands for its code
    point and every unpaired surrogate becomes U+FFFD (``String.prototype.toWellFormed``).
    Then the router's input view (:mod:`irde_onnx.views`) is applied to the well-formed
    text, so that it counts the same code points in every host. Then only the first
    ``max_length * MAX_CHARS_PER_TOKEN`` code points are kept.
    """
    if _SURROGATE.search(text):
        text = text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
    if view != DEFAULT_VIEW:
        text = apply_view(view, text, max_length)
    limit = max_length * MAX_CHARS_PER_TOKEN
    return text[:limit] if len(text) > limit else text


class TextTokenizer:
    """A ``tokenizer.json`` with truncation to ``max_length`` and no built-in padding.

    ``view`` names the input view applied to every text first (:mod:`irde_onnx.views`).
    """

    def __init__(
        self, path: str | os.PathLike | bytes, max_length: int, view: str = DEFAULT_VIEW
    ) -> None:
        try:
            if isinstance(path, bytes):
                tok = Tokenizer.from_str(path.decode("utf-8"))
            else:
                tok = Tokenizer.from_file(str(path))
        except Exception as exc:  # tokenizers raises a bare Exception on bad files
            where = "tokenizer.json (in memory)" if isinstance(path, bytes) else path
            raise RouterFormatError(f"{where} is not a readable tokenizer.json: {exc}") from exc
        if max_length < 2:
            raise InvalidInputError(f"max_length must be >= 2, got {max_length}")
        tok.no_padding()
        tok.enable_truncation(max_length)
        self.tokenizer = tok
        self.max_length = max_length
        self.view = check_view(view)
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
        """Token ids of each text, special tokens included, truncated (see :func:`prepare_text`)."""
        prepared = [prepare_text(t, self.max_length, self.view) for t in texts]
        return [np.asarray(e.ids, dtype=np.int64) for e in self._encode_batch(prepared)]

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
            idx = order[start : start + batch_size]
            width = max(1, max(lengths[i] for i in idx))
            ids = np.full((len(idx), width), self.pad_id, dtype=np.int64)
            mask = np.zeros((len(idx), width), dtype=np.int64)
            for row, i in enumerate(idx):
                ids[row, : lengths[i]] = encoded[i]
                mask[row, : lengths[i]] = 1
            yield idx, ids, mask
