"""Online estimates the prefix-affinity router learns from the completions it observes: decode time per
request (overall, or per prompt template) and the prefill speed."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable


class DecodeEstimator:
    """Mean decode seconds per request, learned from completions (plus a one-observation prior)."""

    __slots__ = ("_n", "_sum")

    def __init__(self, prior_s: float) -> None:
        self._sum = prior_s
        self._n = 1

    def observe(self, decode_s: float) -> None:
        self._sum += max(0.0, decode_s)
        self._n += 1

    @property
    def mean_s(self) -> float:
        return self._sum / self._n


class PrefillRateEstimator:
    """Seconds per uncached token: the slope of observed service time on uncached tokens (exponentially weighted
    least squares), clamped around the prior; the prior until enough completions have been seen.

    The clamp is asymmetric: at most ``FASTEST`` times faster than the prior, at most ``SLOWEST`` times slower. An
    estimate that is too fast is the harmful error (cached prefixes and queued prefill look nearly free, so
    follow-up turns leave their cached replica), and the configured default (10,000 tokens/s, an accelerator's)
    is already fast; a CPU engine left at that default prefills 100-1,000 times slower (SmolLM2-135M on one
    thread: ~140 tokens/s), which a 10x clamp could never learn."""

    __slots__ = ("_prior", "_ss", "_su", "_sus", "_suu", "_w")

    MIN_WEIGHT = 20.0
    FORGET = 0.995
    FASTEST = 10.0
    SLOWEST = 100.0

    def __init__(self, prior_s_per_token: float) -> None:
        self._prior = prior_s_per_token
        self._w = self._su = self._ss = self._suu = self._sus = 0.0

    def observe(self, uncached_tokens: int, service_s: float) -> None:
        f = self.FORGET
        u, y = float(uncached_tokens), max(0.0, service_s)
        self._w = f * self._w + 1.0
        self._su = f * self._su + u
        self._ss = f * self._ss + y
        self._suu = f * self._suu + u * u
        self._sus = f * self._sus + u * y

    @property
    def seconds_per_token(self) -> float:
        if self._w < self.MIN_WEIGHT:
            return self._prior
        den = self._w * self._suu - self._su * self._su
        if den <= 1e-9 * max(1.0, self._w * self._suu):
            return self._prior
        slope = (self._w * self._sus - self._su * self._ss) / den
        return min(self.SLOWEST * self._prior, max(self._prior / self.FASTEST, slope))


class TemplateDecodeEstimator:
    """Mean decode seconds per prompt template, the template being the prompt's first block (its system prompt
    or tool preamble): requests of one template ask for similar answers (a tool call's few tokens, a chat
    reply's hundreds), which one mean for every request blurs. A template seen ``n`` times is predicted by its
    own mean shrunk towards the overall mean with the weight of ``prior_n`` observations; its count is capped at
    ``window`` so a template's mean follows drift. At most ``max_templates`` are kept (least recently seen
    forgotten)."""

    __slots__ = ("_by_key", "max_templates", "overall", "prior_n", "window")

    def __init__(self, prior_s: float, prior_n: float = 3.0, window: float = 200.0,
                 max_templates: int = 4096) -> None:
        self.overall = DecodeEstimator(prior_s)
        self.prior_n = prior_n
        self.window = window
        self.max_templates = max_templates
        self._by_key: OrderedDict[Hashable, list[float]] = OrderedDict()  # key -> [n, mean]

    def observe(self, key: Hashable | None, decode_s: float) -> None:
        decode_s = max(0.0, decode_s)
        self.overall.observe(decode_s)
        if key is None:
            return
        entry = self._by_key.get(key)
        if entry is None:
            entry = self._by_key[key] = [0.0, 0.0]
            if len(self._by_key) > self.max_templates:
                self._by_key.popitem(last=False)
        else:
            self._by_key.move_to_end(key)
        entry[0] = min(self.window, entry[0] + 1.0)
        entry[1] += (decode_s - entry[1]) / entry[0]

    def predict(self, key: Hashable | None) -> float:
        overall = self.overall.mean_s
        entry = None if key is None else self._by_key.get(key)
        if entry is None:
            return overall
        n, mean = entry
        return (n * mean + self.prior_n * overall) / (n + self.prior_n)
