"""The pair verifier's second embedding model: features, lazy embedding, order independence, artifact."""

from __future__ import annotations

import json
import random
from collections.abc import Sequence

import numpy as np
import pytest

from sovrouter.cache.semantic import SemanticCache
from sovrouter.cache.semindex import SemanticIndex
from sovrouter.cache.textfeat import ALT_FEATURE_NAMES, FEATURE_NAMES, alt_features
from sovrouter.cache.verifier import LogisticModel, PairVerifier, expand, feature_names
from sovrouter.clock import SimClock
from sovrouter.embed import HashingEmbedder, Vectors
from sovrouter.errors import ConfigError


class Counting:
    """An embedder that records every text it is asked for."""

    def __init__(self, dim: int = 64) -> None:
        self.base = HashingEmbedder(dim)
        self.dim = dim
        self.seen: list[str] = []

    def embed(self, texts: Sequence[str]) -> Vectors:
        self.seen.extend(texts)
        return self.base.embed(texts)


def alt_verifier(threshold: float = 0.5) -> PairVerifier:
    """Accepts a candidate when the *second* model's cosine is >= 0.6 (the first model only retrieves)."""
    width = expand(np.zeros((1, len(feature_names(True))))).shape[1]
    weights = [0.0] * width
    weights[feature_names(True).index("alt_cos")] = 200.0
    model = LogisticModel(mean=[0.0] * width, scale=[1.0] * width, weights=weights, bias=-200.0 * 0.6)
    return PairVerifier(model=model, threshold=threshold, cos_floor=0.3, top_k=8, embedder="hashing",
                        alt_embedder="hashing-64")


def test_alt_features_are_set_based() -> None:
    feats = alt_features([0.9, 0.7, 0.9, 0.5])
    assert feats[0] == [0.9, pytest.approx(0.0), 0.0]
    assert feats[1] == [0.7, pytest.approx(-0.2), 2.0]
    assert feats[3][2] == 3.0
    assert alt_features([0.8]) == [[0.8, 0.8, 0.0]]
    assert alt_features([]) == []
    assert feature_names(True) == FEATURE_NAMES + ALT_FEATURE_NAMES


def test_index_needs_the_second_model_when_the_verifier_reads_it() -> None:
    with pytest.raises(ConfigError):
        SemanticIndex(alt_verifier(), 384)
    with pytest.raises(ConfigError):
        SemanticCache(SimClock(), HashingEmbedder(384), alt_verifier())


STORED = ["How do I learn Python programming quickly?", "How can I learn Python programming fast?",
          "What is the capital of France?", "Why is the sky blue during the day?", "What is machine learning?"]


def test_second_model_is_embedded_lazily_and_once_per_entry() -> None:
    main, alt = HashingEmbedder(384), Counting()
    index: SemanticIndex[str] = SemanticIndex(alt_verifier(), main.dim, alt)
    for t in STORED:
        index.add(t, main.embed([t])[0], t)
    assert alt.seen == []  # storing never calls the second model
    unrelated = "Zebras quokkas narwhals?"
    assert index.match(unrelated, main.embed([unrelated])[0]) is None
    assert alt.seen == []  # no candidate over the floor: no second embedding
    q = "How do I learn Python programming fast?"
    m = index.match(q, main.embed([q])[0])
    assert m is not None and m.text in STORED[:2]
    first = list(alt.seen)
    assert first[0] == q and set(first[1:]) <= set(STORED) and len(first) == len(set(first))
    scored = index.score_many([q], main.embed([q]))[0]
    assert all(len(s.features) == len(feature_names(True)) for s in scored)
    for s in scored:  # the features are the second model's cosine, as computed directly
        direct = float(alt.base.embed([q])[0] @ alt.base.embed([s.text])[0])
        assert s.features[len(FEATURE_NAMES)] == pytest.approx(direct, abs=1e-6)
    assert alt.seen[len(first):] == [q]  # entries' vectors were kept: only the query is embedded again


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_decisions_with_second_model_do_not_depend_on_insertion_order(seed: int) -> None:
    main = HashingEmbedder(384)
    queries = ["How do I learn Python programming fast?", "What's the capital of France?", "Why is the sky blue?"]

    def decide(order: list[str]) -> list[tuple[str, float] | None]:
        index: SemanticIndex[str] = SemanticIndex(alt_verifier(0.0), main.dim, Counting())
        for t in order:
            index.add(t, main.embed([t])[0], t)
        out = index.match_many(queries, main.embed(queries))
        return [None if m is None else (m.text, round(m.probability, 9)) for m in out]

    shuffled = list(STORED)
    random.Random(seed).shuffle(shuffled)
    assert decide(STORED) == decide(shuffled)


def test_artifact_with_second_model_round_trips_and_is_checked() -> None:
    v = alt_verifier()
    again = PairVerifier.from_json(v.to_json())
    assert again.alt_embedder == "hashing-64" and again.to_json() == v.to_json()
    body = json.loads(v.to_json())
    body["alt_embedder"] = None  # the features no longer match what the model was built for
    with pytest.raises(ConfigError):
        PairVerifier.from_json(json.dumps(body))
    plain = json.loads(PairVerifier.cosine_only(0.9).to_json())
    plain["alt_embedder"] = "hashing-64"
    with pytest.raises(ConfigError):
        PairVerifier.from_json(json.dumps(plain))


def test_second_model_vectors_follow_their_entries_when_others_are_removed() -> None:
    main = HashingEmbedder(384)
    queries = ["How do I learn Python programming fast?", "What's the capital of France?", "Why is the sky blue?",
               "How can I learn Python programming quickly?", "What is deep machine learning?"]
    alt = Counting()
    index: SemanticIndex[str] = SemanticIndex(alt_verifier(0.0), main.dim, alt)
    zebra = "Zebras quokkas narwhals?"  # stored last, never a candidate below: no second vector kept for it
    for t in [*STORED, zebra]:
        index.add(t, main.embed([t])[0], t)
    index.match_many(queries, main.embed(queries))  # the second model's vectors are now kept per row
    assert zebra not in alt.seen
    # the last rows move into the holes: kept vectors move with them, and a hole's own vector never stays
    assert index.remove({STORED[0]}) == 1  # the zebra row (no vector) moves into row 0
    assert index.remove({STORED[1], "never stored"}) == 1  # the last row (with a vector) moves into row 1
    survivors = [*STORED[2:], zebra]
    seen = len(alt.seen)
    index.match_many(queries, main.embed(queries))
    assert set(alt.seen[seen:]) <= set(queries)  # only queries: kept vectors were moved, not recomputed
    queries.append("Do zebras quokkas narwhals?")
    late = "What is deep learning in machines?"
    index.add(late, main.embed([late])[0], late)
    fresh: SemanticIndex[str] = SemanticIndex(alt_verifier(0.0), main.dim, Counting())
    for t in [*survivors, late]:
        fresh.add(t, main.embed([t])[0], t)

    def decide(ix: SemanticIndex[str]) -> list[list[tuple[str, float, list[float]]]]:
        return [[(s.text, round(s.probability, 9), [round(f, 9) for f in s.features]) for s in row]
                for row in ix.score_many(queries, main.embed(queries))]

    assert decide(index) == decide(fresh)
