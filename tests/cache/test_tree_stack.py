"""TreeStack: ensembles of different depths walked together; each answer-shape output from its own trees."""

from __future__ import annotations

import numpy as np
import pytest

from sovrouter.cache.verifier import PairVerifier, TreeEnsemble, TreeStack


def _walk(trees: TreeEnsemble, x: np.ndarray) -> np.ndarray:
    """Each row's score by the plain per-ensemble walk (the evaluation used until 2026-11-28)."""
    node = np.broadcast_to(trees.roots, (x.shape[0], trees.roots.shape[0])).copy()
    rows = np.arange(x.shape[0])[:, None]
    for _ in range(trees.depth):
        v = x[rows, trees.feature[node]]
        go_left = np.where(np.isnan(v), trees.missing_left[node], v <= trees.threshold[node])
        node = np.where(trees.leaf[node], node, np.where(go_left, trees.left[node], trees.right[node]))
    out: np.ndarray = trees.baseline + trees.value[node].sum(axis=1)
    return out


def test_stacked_trees_give_each_ensembles_own_floats_one_row_or_many() -> None:
    from sovrouter.speculative.answer_shape import AnswerShapeModel

    shape = AnswerShapeModel.load()
    verifier = PairVerifier.load().model
    assert isinstance(verifier, TreeEnsemble)
    rng = np.random.default_rng(3)
    for ensembles in ([shape.copy, shape.tokens_p50, shape.tokens_p90], [verifier]):
        n = ensembles[0].n_features
        x = rng.normal(size=(300, n)) * rng.uniform(0.1, 50.0, size=n)
        x[rng.uniform(size=x.shape) < 0.1] = np.nan  # missing values take each node's learned side
        stack = TreeStack(ensembles)
        expected = [_walk(e, x) for e in ensembles]
        assert all(np.array_equal(a, b) for a, b in zip(stack.raw(x), expected, strict=True))
        for i in range(0, 300, 7):  # the one-row path
            got = stack.raw(x[i:i + 1])
            assert all(np.array_equal(a, b[i:i + 1]) for a, b in zip(got, expected, strict=True))
        assert all(a.shape == (0,) for a in stack.raw(np.zeros((0, n))))
    with pytest.raises(ValueError):
        TreeStack([])


def test_ensembles_of_different_depths_stack_to_their_own_floats() -> None:
    """The shipped ensembles are all depth 4, so a stack walked min(depth) levels (or its own depth only for the
    first ensemble) went unnoticed; a retrained artifact with different depths would have been truncated."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    rng = np.random.default_rng(5)
    x = rng.normal(size=(1500, 6))
    x[rng.uniform(size=x.shape) < 0.05] = np.nan
    y = ((np.nan_to_num(x[:, 0]) * np.nan_to_num(x[:, 1]) + np.nan_to_num(x[:, 2]) ** 2) > 0.5).astype(float)
    ensembles = [TreeEnsemble.from_sklearn(HistGradientBoostingClassifier(max_depth=d, max_iter=it, random_state=0)
                                           .fit(x, y)) for d, it in ((2, 9), (7, 40), (1, 3))]
    assert len({e.depth for e in ensembles}) == 3
    stack = TreeStack(ensembles)
    expected = [_walk(e, x) for e in ensembles]
    assert all(np.array_equal(a, b) for a, b in zip(stack.raw(x), expected, strict=True))
    for i in range(0, 1500, 37):
        assert all(np.array_equal(a, b[i:i + 1]) for a, b in zip(stack.raw(x[i:i + 1]), expected, strict=True))


def test_answer_shape_outputs_each_come_from_their_own_ensemble() -> None:
    """predict_matrix reads a stack of (copy, p50, p90): a stack built in another order went unnoticed."""
    from sovrouter.speculative.answer_shape import MAX_LOG_TOKENS, AnswerShapeModel

    model = AnswerShapeModel.load()
    rng = np.random.default_rng(11)
    n = model.copy.n_features
    for rows in (1, 40):
        x = np.abs(rng.normal(size=(rows, n))) * rng.uniform(0.1, 8.0, size=n)
        copy, p50, p90 = model.predict_matrix(x)
        assert np.array_equal(copy, np.clip(_walk(model.copy, x), 0.0, 1.0))
        assert np.array_equal(p50, np.expm1(np.clip(_walk(model.tokens_p50, x), 0.0, MAX_LOG_TOKENS)))
        own90 = np.expm1(np.clip(_walk(model.tokens_p90, x), 0.0, MAX_LOG_TOKENS))
        assert np.array_equal(p90, np.maximum(p50, own90))
        if rows > 1:
            assert np.any(own90 > p50)  # p90 is not just p50 here
