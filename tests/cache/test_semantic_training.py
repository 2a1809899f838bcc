"""Training of the pair verifier: deterministic, calibrated on out-of-fold decisions, vectors kept on disk."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from sovrouter.cache.calibrate import Pair
from sovrouter.cache.training import (
    ALT_EMBEDDER,
    VectorStore,
    collect,
    fit,
    oof_decisions,
    score_decisions,
    split,
    train,
)
from sovrouter.cache.verifier import PairVerifier, TreeEnsemble, feature_names
from sovrouter.embed import HashingEmbedder, Vectors
from sovrouter.errors import ConfigError

TOPICS = ["Python", "Java", "Rust", "Haskell", "Kotlin", "Swift", "Scala", "Ruby", "Perl", "Go", "Elixir", "Erlang",
          "Lua", "Julia", "Fortran", "Cobol", "Pascal", "Ada", "Prolog", "Lisp", "Scheme", "Clojure", "Dart", "Zig"]
FORMS = ["What is the best way to learn the {} programming language as a complete beginner?",
         "What's the best way to learn the {} programming language as a complete beginner?",
         "What is the best way to learn the {} programming language as a total beginner?",
         "What is the best way for me to learn the {} programming language as a complete beginner?"]


def labelled_pairs() -> list[Pair]:
    pairs = []
    for i, topic in enumerate(TOPICS):
        other = TOPICS[(i + 1) % len(TOPICS)]
        for j in range(1, len(FORMS)):
            pairs.append(Pair(f"{i}-{j}d", FORMS[0].format(topic), FORMS[j].format(topic), True))
            pairs.append(Pair(f"{i}-{j}n", FORMS[j].format(other) + " Why?", FORMS[0].format(topic), False))
    return pairs


def embed(texts: Sequence[str]) -> Vectors:
    return HashingEmbedder(384).embed(texts)


def test_training_is_deterministic_and_calibrated() -> None:
    pairs = labelled_pairs()
    a, report_a = train(pairs, embed)
    b, _ = train(pairs, embed)
    assert a.to_json() == b.to_json()
    assert isinstance(a.model, TreeEnsemble)
    assert report_a["fit_pairs"] > 0 and 0 < report_a["fit_positive"] < report_a["fit_pairs"]
    assert report_a["calibration"]["fhr"] <= report_a["alpha"]
    assert len(split(pairs)) == 2 and sum(len(h) for h in split(pairs)) == len(pairs)


def test_fit_on_one_group_scores_the_other() -> None:
    pairs = labelled_pairs()
    groups = [collect(h, embed) for h in split(pairs)]
    verifier, report = fit([groups[0]])
    assert report["groups"] == [len(groups[0].queries)]
    # the scorer counts a verbatim match as right and an unlabelled match as wrong
    decisions = [{"hit": True, "matched": p.q1 if p.duplicate else p.q2} for p in pairs]
    scores = score_decisions(pairs, decisions)
    assert scores["wrong_hits"] == 0 and scores["recall_nonverbatim"] == 1.0
    wrong = score_decisions(pairs, [{"hit": True, "matched": p.q1} for p in pairs])
    assert wrong["wrong_hits"] == sum(not p.duplicate for p in pairs)
    assert verifier.threshold > 0


def test_vector_store_embeds_each_text_once(tmp_path: Path) -> None:
    calls: list[list[str]] = []

    def counting(texts: Sequence[str]) -> Vectors:
        calls.append(list(texts))
        return embed(texts)

    store = VectorStore(counting, tmp_path)
    first = store.embed(["a b", "c d", "a b"])
    assert calls == [["a b", "c d"]]
    again = VectorStore(counting, tmp_path)  # reloaded from disk: nothing embedded
    assert np.array_equal(again.embed(["c d", "a b"]), first[[1, 0]])
    again.embed(["e f"])
    assert calls[-1] == ["e f"] and len(calls) == 2


def test_sweep_reports_thresholds_from_the_same_out_of_fold_decisions() -> None:
    groups = [collect(h, embed) for h in split(labelled_pairs())]
    verifier, report = fit([groups[0]], alpha=0.0125, sweep=(0.0125, 0.5))
    plain, plain_report = fit([groups[0]], alpha=0.0125)
    assert "sweep" not in plain_report and plain.to_json() == verifier.to_json()  # the artifact ignores the sweep
    assert report["sweep"]["0.0125"] == verifier.threshold
    assert report["sweep"]["0.5"] <= report["sweep"]["0.0125"]  # a looser target never raises the threshold
    decisions, x, y = oof_decisions([groups[0]])
    assert len(x) == len(y) == report["fit_pairs"] and len(decisions) == report["calibration_queries"]


def test_training_with_second_model_ships_it_in_the_artifact() -> None:
    pairs = labelled_pairs()
    groups = [collect(h, embed, alt=HashingEmbedder(64)) for h in split(pairs)]
    assert all(g.alt_embedder == ALT_EMBEDDER for g in groups)
    widths = {len(c.features) for g in groups for q in g.queries for c in q.candidates}
    assert widths == {len(feature_names(True))}
    verifier, _ = fit(groups)
    assert verifier.alt_embedder == ALT_EMBEDDER and isinstance(verifier.model, TreeEnsemble)
    assert verifier.model.n_features == len(feature_names(True))
    again = PairVerifier.from_json(verifier.to_json())
    assert again.to_json() == verifier.to_json()
    plain = collect(split(pairs)[0], embed)
    with pytest.raises(ConfigError):
        fit([groups[0], plain])  # candidates with different columns never mix


def test_calibration_counts_every_verbatim_answer_the_evaluation_gives() -> None:
    """The false-hit rate the threshold is calibrated on has the evaluation command's denominator: a q2 the exact
    layer answers with its own text counts as a (right) hit even when it is not eligible for the semantic cache."""
    from sovrouter.cache.evaluate import evaluate_pairs
    from sovrouter.cache.training import untrained

    pairs = [
        Pair("a", "What is the best way to learn Python?", "What is the best way to learn Python?", True),
        Pair("b", "What is the latest news today?", "What is the latest news today?", False),  # time-sensitive
        Pair("c", "Write a poem about the sea.", "Write a poem about the sea.", True),  # generative
        Pair("d", "What is the latest news today?", "What was the news yesterday?", False),  # not verbatim
        Pair("e", "Why is the sky blue?", "Why is  the sky blue?", True),  # same words, other spacing: eligible
    ]
    group = collect(pairs, embed)
    decisions, kinds = evaluate_pairs(pairs, HashingEmbedder(384), untrained())
    same_text = sum(d["hit"] and " ".join(str(d["matched"]).split()) == " ".join(p.q2.split())
                    for p, d in zip(pairs, decisions, strict=True))
    assert same_text == 4 and kinds["exact"] == 3
    assert group.verbatim_hits == same_text
    assert [q.verbatim for q in group.queries] == [True, True, True, False, True]
