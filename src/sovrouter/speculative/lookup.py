"""Prompt-lookup drafting with acceptance counting.

llama-cpp-python's :class:`LlamaPromptLookupDecoding` proposes tokens but keeps no statistics, and its server
reports none. :class:`CountingPromptLookup` wraps the same drafting and scores each proposal when it is next
called: ``Llama.generate`` passes the whole token history every time, so the tokens that actually followed the
previous proposal are known; the accepted count is the length of the common prefix. The last proposal of a
generation is scored by :meth:`finish` against the tokens the model kept.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from llama_cpp.llama_speculative import LlamaPromptLookupDecoding


@dataclass
class DraftStats:
    drafted: int = 0
    accepted: int = 0
    proposals: int = 0

    @property
    def acceptance(self) -> float | None:
        return self.accepted / self.drafted if self.drafted else None


def _common_prefix(a: npt.NDArray[np.intc], b: npt.NDArray[np.intc]) -> int:
    n = min(len(a), len(b))
    if n == 0:
        return 0
    diff = np.nonzero(a[:n] != b[:n])[0]
    return int(diff[0]) if len(diff) else n


class CountingPromptLookup(LlamaPromptLookupDecoding):
    """Prompt-lookup draft model that counts drafted and accepted tokens. Call :meth:`reset` before each
    generation and :meth:`finish` after it (not thread-safe: one generation at a time, like ``Llama``)."""

    def __init__(self, max_ngram_size: int = 2, num_pred_tokens: int = 10) -> None:
        super().__init__(max_ngram_size=max_ngram_size, num_pred_tokens=num_pred_tokens)
        self.stats = DraftStats()
        self._pending: tuple[int, npt.NDArray[np.intc]] | None = None

    def reset(self) -> None:
        self.stats = DraftStats()
        self._pending = None

    def _score(self, ids: npt.NDArray[np.intc], final: bool) -> None:
        if self._pending is None:
            return
        start, proposal = self._pending
        self._pending = None
        actual = ids[start : start + len(proposal)]
        accepted = _common_prefix(proposal, actual)
        # If generation stopped inside the proposal, the rest of it was never verified.
        unverified = final and accepted == len(actual) < len(proposal)
        drafted = accepted if unverified else len(proposal)
        self.stats.drafted += drafted
        self.stats.accepted += accepted

    def __call__(self, input_ids: npt.NDArray[np.intc], /, **kwargs: Any) -> npt.NDArray[np.intc]:
        self._score(input_ids, final=False)
        proposal = np.asarray(super().__call__(input_ids, **kwargs), dtype=np.intc)
        if len(proposal):
            self.stats.proposals += 1
            self._pending = (int(input_ids.shape[0]), proposal.copy())
        return proposal

    def finish(self, kept_ids: npt.NDArray[np.intc]) -> DraftStats:
        """Score the last proposal against ``kept_ids`` (prompt + output tokens the model kept)."""
        self._score(np.asarray(kept_ids, dtype=np.intc), final=True)
        return self.stats
