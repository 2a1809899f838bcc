"""Latency estimates that know a deployment's speculative decoding (``Deployment.speculative``).

Speculative decoding only speeds up decoding (time to first token is unchanged), and how much depends on how
much of the output the draft can guess: prompt lookup guesses only text copied from the prompt, a draft model
guesses more but also does best on predictable text. The speed-up is interpolated between the declared
``base_speedup`` (output that copies nothing) and ``expected_speedup`` (output copied from the prompt)::

    speedup = base + (expected - base) * copy_fraction
    latency = ttft + output_tokens / (tokens_per_s * speedup) * 1000

The pair is a low-load figure. Under load a decode step turns compute-bound and verifying drafts costs time again
(on an H200 an 8B model's 11-token verification costs 1.3x a plain step at 1 request, 3.0x at 64; see
``bench/speculative_gpu_batch.py``), so with ``in_flight`` calls already running at or above the deployment's
declared ``max_batch`` the request decodes plainly: speed-up 1.0.
"""

from __future__ import annotations

from sovrouter.catalog import Deployment


def expected_speedup(deployment: Deployment, copy_fraction: float, in_flight: int = 0) -> float:
    """Decode speed-up of a request expected to copy ``copy_fraction`` of its answer from the prompt, arriving
    while ``in_flight`` other calls run on the deployment (0: load unknown or idle)."""
    spec = deployment.speculative
    if spec is None or (spec.max_batch is not None and in_flight >= spec.max_batch):
        return 1.0
    share = min(1.0, max(0.0, copy_fraction))
    return spec.base_speedup + (spec.expected_speedup - spec.base_speedup) * share


def expected_latency_ms(deployment: Deployment, output_tokens: int, copy_fraction: float = 0.0,
                        in_flight: int = 0) -> float:
    """End-to-end latency estimate of ``output_tokens`` on ``deployment`` for a request whose predicted copy
    fraction (:class:`~sovrouter.speculative.predictor.CopyPredictor`) is ``copy_fraction``, arriving while
    ``in_flight`` calls run on the deployment."""
    lat = deployment.latency
    rate = lat.tokens_per_s * expected_speedup(deployment, copy_fraction, in_flight)
    return lat.ttft_ms + max(0, output_tokens) / rate * 1000.0
