"""Pair verifier artifact, logistic fit, threshold calibration, pair features."""

from __future__ import annotations

import json

import numpy as np
import pytest

from sovrouter.cache.calibrate import choose_threshold, clopper_pearson_upper
from sovrouter.cache.textfeat import FEATURE_NAMES, alt_features, analyse, hard_mismatch, pair_features
from sovrouter.cache.verifier import PairVerifier, TreeEnsemble, fit_logistic
from sovrouter.errors import ConfigError


def test_shipped_artifact_loads_and_round_trips() -> None:
    v = PairVerifier.load()
    assert 0.0 < v.threshold <= 1.0 and v.cos_floor > 0 and isinstance(v.model, TreeEnsemble)
    again = PairVerifier.from_json(v.to_json())
    assert again.to_json() == v.to_json()
    x = np.random.default_rng(0).uniform(0, 1, size=(50, len(v.feature_names)))
    assert np.array_equal(again.probability(x), v.probability(x))
    assert v.alt_embedder == "multilingual-e5-small" and len(v.feature_names) == len(FEATURE_NAMES) + 3


def test_tree_export_matches_scikit_learn() -> None:
    from sovrouter.cache.training import _hgb

    rng = np.random.default_rng(1)
    x = rng.normal(size=(2000, len(FEATURE_NAMES)))
    x[:7, 2] = np.nan  # missing values follow the learned side
    y = ((np.nan_to_num(x[:, 0]) + x[:, 3] * x[:, 5] + 0.5 * rng.normal(size=2000)) > 0).astype(float)
    clf = _hgb().fit(x, y)
    trees = TreeEnsemble.from_sklearn(clf)
    assert np.allclose(trees.probability(x), clf.predict_proba(x)[:, 1], atol=1e-12)
    one_by_one = np.concatenate([trees.probability(x[i:i + 1]) for i in range(50)])
    assert np.allclose(one_by_one, clf.predict_proba(x[:50])[:, 1], atol=1e-12)
    again = PairVerifier.from_json(PairVerifier(model=trees, threshold=0.9, cos_floor=0.8).to_json())
    assert np.allclose(again.probability(x), clf.predict_proba(x)[:, 1], atol=1e-12)


def test_tree_arrays_that_do_not_walk_like_the_stated_trees_are_refused() -> None:
    """Walked together with other ensembles, a negative child index would land in another ensemble's trees, and a
    tree deeper than its stated depth would be walked further than on its own: both refused at load."""
    good = PairVerifier.load().model
    assert isinstance(good, TreeEnsemble)
    raw = good.to_dict()
    inner = next(i for i, leaf in enumerate(raw["nodes"]["leaf"]) if not leaf)
    for field, value in (("left", -1), ("right", -2), ("feature", -1)):
        bad = json.loads(json.dumps(raw))
        bad["nodes"][field][inner] = value
        with pytest.raises(ConfigError, match="out of range"):
            TreeEnsemble.from_dict(bad, good.n_features)
    shallow = dict(raw, depth=good.depth - 1)
    with pytest.raises(ConfigError, match="deeper"):
        TreeEnsemble.from_dict(shallow, good.n_features)
    cycle = json.loads(json.dumps(raw))
    root = raw["roots"][0]
    cycle["nodes"]["left"][root] = cycle["nodes"]["right"][root] = root  # never reaches a leaf
    with pytest.raises(ConfigError, match="deeper"):
        TreeEnsemble.from_dict(cycle, good.n_features)
    assert TreeEnsemble.from_dict(raw, good.n_features).depth == good.depth


def test_corrupt_artifacts_are_config_errors() -> None:
    body = json.loads(PairVerifier.load().to_json())
    body["model"]["nodes"]["left"][0] = 10**9
    body["model"]["nodes"]["leaf"][0] = False
    with pytest.raises(ConfigError):
        PairVerifier.from_json(json.dumps(body))
    body = json.loads(PairVerifier.load().to_json())
    body["model"]["kind"] = "pickle"
    with pytest.raises(ConfigError):
        PairVerifier.from_json(json.dumps(body))
    with pytest.raises(ConfigError):
        PairVerifier.from_json("{}")


def test_shipped_verifier_accepts_near_copy_and_rejects_entity_swap() -> None:
    v = PairVerifier.load()
    a = analyse("What is the difference between a midget and a dwarf?")
    copy = pair_features(a, analyse("What is the difference between a dwarf and a midget?"), 0.998, 0.998, 0.85, 1)
    swap = pair_features(analyse("How do I learn Python quickly?"), analyse("How do I learn Java quickly?"),
                         0.82, 0.82, 0.78, 1)
    # the second model's view (one candidate each: cosine, margin = cosine, rank 0), as multilingual-e5-small scores
    # these pairs (0.999 and 0.941: e5 cosines sit high)
    copy, swap = copy + alt_features([0.999])[0], swap + alt_features([0.941])[0]
    p = v.probability(np.asarray([copy, swap]))
    assert p[0] > p[1] and p[1] < v.threshold


def test_fit_logistic_separates() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 2))
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).astype(float)
    w, b = fit_logistic(x, y, l2=0.1)
    acc = float((((x @ w + b) > 0) == (y > 0)).mean())
    assert acc > 0.95 and w[0] > w[1] > 0


def test_clopper_pearson_bounds() -> None:
    assert clopper_pearson_upper(0, 100, 0.05) == pytest.approx(0.0295, abs=1e-3)
    assert clopper_pearson_upper(5, 100, 0.05) > 0.05


def test_threshold_stops_at_first_failing_step() -> None:
    right = [(0.99 - i * 0.001, True) for i in range(300)]
    wrong = [(0.5 - i * 0.001, False) for i in range(50)]
    t, info = choose_threshold(right + wrong, alpha=0.01, delta=0.05)
    assert t == pytest.approx(0.99 - 299 * 0.001) and info["wrong"] == 0 and info["hits"] == 300


def test_threshold_none_when_too_few_hits() -> None:
    t, _ = choose_threshold([(0.9, True)] * 50, alpha=0.01, delta=0.05)
    assert t > 1.0


def test_point_estimate_counts_verbatim_hits() -> None:
    decisions = [(0.9, True)] * 10 + [(0.8, False)] + [(0.7, True)] * 10 + [(0.6, False)]
    t, info = choose_threshold(decisions, alpha=0.015, delta=None, verbatim_hits=100)
    assert t == 0.7 and info == {"hits": 121.0, "wrong": 1.0, "fhr": 1 / 121}
    t0, _ = choose_threshold(decisions, alpha=0.015, delta=None, verbatim_hits=0)
    assert t0 == 0.9


def test_features_and_hard_mismatch() -> None:
    a, b = analyse("Why can't I sleep at night?"), analyse("Why can I sleep at night?")
    assert hard_mismatch(a, b)  # negation differs
    assert hard_mismatch(analyse("Is 7 prime?"), analyse("Is 9 prime?"))
    shots = "Question: Which gas do plants absorb?\nAnswer: CO2\n\nQuestion: "
    assert hard_mismatch(analyse(shots + "What is the boiling point?"), analyse(shots + "What is the melting point?"))
    assert hard_mismatch(analyse("word " * 41), analyse("word " * 41))
    assert hard_mismatch(analyse("🙂🙂"), analyse("🙂🙂🙂"))  # nothing to compare: never a semantic match
    assert not hard_mismatch(analyse("How do I learn Python?"), analyse("How can I learn Python?"))
    f = pair_features(analyse("What is the best laptop?"), analyse("What is the worst laptop?"), 0.9, 0.9, 0.8, 1)
    assert len(f) == len(FEATURE_NAMES) and f[FEATURE_NAMES.index("polarity_mismatch")] == 2.0
