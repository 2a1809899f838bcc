"""Latency estimates that know a deployment's speculative decoding (``Deployment.speculative``).

Speculative decoding only speeds up decoding (time to first token is unchanged), and how much depends on how
much of the output the draft can guess: prompt lookup guesses only text copied from the prompt, a draft model
guesses more but also does best on predictable text. The speed-up is interpolated between the declared
``base_speedup`` (output that copies nothing) and ``expected_speedup`` (output copied from the prompt)::

    speedup = base + (expected - base) * copy_fraction
    latency = ttft + output_tokens / (tokens_per_s * speedup) * 1000
"""

from __future__ import annotations

from sovrouter.catalog import Deployment


def expected_speedup(deployment: Deployment, copy_fraction: float) -> float:
    spec = deployment.speculative
    if spec is None:
        return 1.0
    share = min(1.0, max(0.0, copy_fraction))
    return spec.base_speedup + (spec.expected_speedup - spec.base_speedup) * share


def expected_latency_ms(deployment: Deployment, output_tokens: int, copy_fraction: float = 0.0) -> float:
    """End-to-end latency estimate of ``output_tokens`` on ``deployment`` for a request whose predicted copy
    fraction (:class:`~sovrouter.speculative.predictor.CopyPredictor`) is ``copy_fraction``."""
    lat = deployment.latency
    rate = lat.tokens_per_s * expected_speedup(deployment, copy_fraction)
    return lat.ttft_ms + max(0, output_tokens) / rate * 1000.0
