"""The online estimates of the prefix-affinity router: decode time per prompt template."""

from __future__ import annotations

import pytest

from sovrouter.reuse.estimators import TemplateDecodeEstimator


def test_a_template_is_predicted_by_its_own_mean_shrunk_towards_the_overall_one() -> None:
    e = TemplateDecodeEstimator(prior_s=0.25, prior_n=3.0)
    assert e.predict("tool") == pytest.approx(0.25)  # nothing seen: the prior
    for _ in range(30):
        e.observe("tool", 0.01)
        e.observe("chat", 1.0)
    overall = e.overall.mean_s
    assert overall == pytest.approx((0.25 + 30 * 0.01 + 30 * 1.0) / 61)
    assert e.predict("tool") == pytest.approx((30 * 0.01 + 3 * overall) / 33)
    assert e.predict("chat") == pytest.approx((30 * 1.0 + 3 * overall) / 33)
    assert e.predict("never seen") == pytest.approx(overall)
    assert e.predict(None) == pytest.approx(overall)


def test_a_templates_mean_follows_drift_and_old_templates_are_forgotten() -> None:
    e = TemplateDecodeEstimator(prior_s=0.0, prior_n=0.0, window=10.0, max_templates=2)
    for _ in range(100):
        e.observe("t", 1.0)
    for _ in range(30):
        e.observe("t", 0.0)
    assert e.predict("t") < 0.05  # a window of 10: the old mean is gone after 30 new observations
    e.observe("u", 2.0)
    e.observe("v", 3.0)  # a third template: the least recently seen ("t") is dropped
    assert e.predict("t") == pytest.approx(e.overall.mean_s)
    assert e.predict("v") == pytest.approx(3.0)
    e.observe(None, 5.0)  # no template: counts only in the overall mean
    assert e.predict("u") == pytest.approx(2.0)
