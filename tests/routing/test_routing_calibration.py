from __future__ import annotations

import pytest

from sovrouter.routing.calibration import auc, ece, reliability


def test_ece_zero_when_predictions_match_frequencies() -> None:
    pred = [0.25] * 4 + [0.75] * 4
    target = [1, 0, 0, 0, 1, 1, 1, 0]
    assert ece(pred, target) == pytest.approx(0.0)


def test_ece_known_case() -> None:
    # bin [0.9, 1.0]: predicted 0.9, observed 0.5 (4 items); bin [0.1, 0.2): predicted 0.1, observed 0.0 (4 items)
    pred = [0.9] * 4 + [0.1] * 4
    target = [1, 1, 0, 0, 0, 0, 0, 0]
    assert ece(pred, target) == pytest.approx(0.5 * 0.4 + 0.5 * 0.1)


def test_reliability_bins_include_one_and_skip_empty() -> None:
    bins = reliability([0.0, 1.0, 1.0], [0, 1, 0], n_bins=10)
    assert [b.count for b in bins] == [1, 2]
    assert bins[-1].upper == 1.0 and bins[-1].mean_observed == pytest.approx(0.5)


def test_auc_perfect_and_single_class() -> None:
    assert auc([0.1, 0.2, 0.8, 0.9], [0, 0, 1, 1]) == pytest.approx(1.0)
    assert auc([0.1, 0.9], [1, 1]) is None


def test_shape_mismatch_is_an_error() -> None:
    with pytest.raises(ValueError):
        ece([0.1, 0.2], [1])
