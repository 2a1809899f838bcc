"""ResidualWindow: numpy's statistics for any floats (NaN and infinities included), and a window of size 0."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sovrouter.speculative.shape_online import OnlineAnswerShape, ResidualWindow


def _numpy(rows: list[tuple[float, float, float]]) -> tuple[float, float, float]:
    a = np.asarray(rows)
    with np.errstate(all="ignore"):
        return float(a[:, 0].mean()), float(np.median(a[:, 1])), float(np.percentile(a[:, 2], 90))


def _same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == b


@pytest.mark.parametrize(("size", "column"), [
    (4, [-3.0, math.nan, -5.0, -2.0, 5.0, 4.0, 1.0, 1.0, 1.0]),  # NaN gone, yet the sorted copy keeps it, lost -2
    (4, [3.0, math.nan, 0.0, -5.0, math.nan, 1.0, 2.0]),  # IndexError on the fifth append
    (3, [0.5, math.nan, -1.0, 2.0, 3.0, 4.0, -5.0, 6.0]),
])
def test_a_nan_residual_neither_breaks_the_window_nor_outlives_it(size: int, column: list[float]) -> None:
    """A NaN sorts nowhere: insort leaves the sorted copy unsorted, and its removal (bisect_left finds no NaN) deletes
    another value, so the NaN can stay for good (wrong median/p90 ever after) or a later removal raises IndexError
    (out of observe, i.e. out of the adapter's generate/stream after a successful answer). numpy's statistics:
    NaN while a NaN is in the window, the plain values once it left."""
    window = ResidualWindow(size)
    rows: list[tuple[float, float, float]] = []
    for v in column:
        row = (0.0, v, v)
        window.append(row)
        rows = [*rows, row][-size:]
        got, want = window.stats(), _numpy(rows)
        assert _same(got[1], want[1]) and _same(got[2], want[2]), (rows, got, want)


@pytest.mark.parametrize("copies", [[math.inf, -math.inf], [1e308, 1e308], [math.inf, 1.0]])
def test_the_mean_of_extreme_copy_residuals_does_not_raise(copies: list[float]) -> None:
    """math.fsum raises on inf + -inf and on an intermediate overflow, where the numpy mean it replaced gave NaN or
    inf; stats() runs on the routing path (shift), so a raise there fails the request."""
    window = ResidualWindow(8)
    for c in copies:
        window.append((c, 0.0, 0.0))
    got = window.stats()[0]
    want = _numpy([(c, 0.0, 0.0) for c in copies])[0]
    assert _same(got, want)


def test_p90_at_an_interpolation_weight_of_one_half_is_numpys() -> None:
    """0.9 * (n - 1) has a fraction of exactly 0.5 for n = 6 (and 16, 26, ...): numpy takes b - diff * 0.5 there."""
    for values in ([0.0] * 4 + [0.1, 0.7], [0.0] * 4 + [1e-3, 0.3333333333333333], [0.0] * 4 + [-2.2, 0.35]):
        window = ResidualWindow(6)
        for v in values:
            window.append((0.0, 0.0, v))
        assert window.stats()[2] == float(np.percentile(values, 90))
    a, b = 0.1, 0.7
    assert b - (b - a) * 0.5 != a + (b - a) * 0.5  # the two sides really differ for these values


def test_a_window_of_zero_keeps_nothing_as_before() -> None:
    """Until 2026-11-28 ``window=0`` (a deque of maxlen 0) turned the per-template correction off; a
    ResidualWindow(0) keeps one row."""
    from sovrouter.intake import normalize_chat
    from sovrouter.speculative.answer_shape import AnswerShape

    class Fixed:
        def shape(self, request: object) -> AnswerShape:
            return AnswerShape(0.5, 100, 200, "open")

    online = OnlineAnswerShape(Fixed(), window=0, global_window=0)
    req = normalize_chat({"messages": [{"role": "user", "content": "hi there"}]}, tenant="t", request_id="r")
    online.observe(req, "word " * 2000)
    assert online.shift(req) == (0.0, 0.0, 0.0)
