"""Speculative decoding awareness: predict copy-heavy output, switch prompt lookup on per request, count
acceptance, and fold declared draft/target speed-ups into latency estimates. See docs/batching-and-speculation.md."""
