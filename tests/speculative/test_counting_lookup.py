from __future__ import annotations

import numpy as np

from sovrouter.speculative.lookup import CountingPromptLookup


def ids(*xs: int) -> np.ndarray:
    return np.array(xs, dtype=np.intc)


def test_counts_accepted_prefix_of_each_proposal() -> None:
    d = CountingPromptLookup(max_ngram_size=2, num_pred_tokens=3)
    prompt = [1, 2, 3, 4, 5, 6, 9, 1, 2]
    p1 = d(ids(*prompt))  # last bigram (1, 2) seen at the start: proposes 3, 4, 5
    assert list(p1) == [3, 4, 5]
    # the model kept 3, 4 then produced 7 (mismatch) -> 2 of 3 accepted
    p2 = d(ids(*prompt, 3, 4, 7))
    assert d.stats.drafted == 3 and d.stats.accepted == 2
    assert len(p2) == 0  # (4, 7) and (7,) never seen: nothing proposed, nothing pending
    d(ids(*prompt, 3, 4, 7, 8))
    assert d.stats.drafted == 3 and d.stats.proposals == 1
    assert d.stats.acceptance == 2 / 3


def test_finish_scores_the_last_proposal_only_as_far_as_generation_went() -> None:
    d = CountingPromptLookup(max_ngram_size=1, num_pred_tokens=4)
    prompt = [5, 6, 7, 8, 9, 5]
    assert list(d(ids(*prompt))) == [6, 7, 8, 9]
    stats = d.finish(ids(*prompt, 6, 7))  # stopped (max_tokens) after two matching tokens
    assert stats.drafted == 2 and stats.accepted == 2
    d.reset()
    assert d.stats.drafted == 0 and d.stats.acceptance is None
    d(ids(*prompt))
    stats = d.finish(ids(*prompt, 6, 1, 2))  # mismatch on the second token: the whole proposal counts
    assert stats.drafted == 4 and stats.accepted == 1
