"""Policy: the allowed set of candidates per request (hard constraints, before any scoring)."""
