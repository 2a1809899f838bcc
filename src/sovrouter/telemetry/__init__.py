"""Metrics and traces derived from the per-request record (so both agree with it by construction)."""
